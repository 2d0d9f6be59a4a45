//! Namespaces take turns: one namespace's backlog delays another namespace's ConsentTokens by
//! one turn each, not by the whole backlog. Against the real control plane, the operator
//! cluster-wide (one work queue for every namespace, as the chart installs it) with one worker
//! and a provider taking 2 s a token, so that a backlog lasts. A test binary of its own: a
//! cluster-wide operator must not meet other tests' objects on a shared control plane.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use fake_provider::{Endpoint, Fault};
use jiff::Timestamp;
use support::operator::{Launch, TestEnv};

const NOISY: usize = 8;

#[tokio::test]
async fn a_namespaces_backlog_delays_another_namespace_by_one_turn_per_token() {
    let setup = TestEnv::setup("fair", &["noisy", "victim"]).await;
    let [noisy, victim] = [0, 1].map(|i| setup.other_namespaces[i].clone());
    let launch = Launch { namespace: None, ..setup.launch_defaults() }.args(&["--concurrency", "1"]);
    let mut env = setup.launch(launch).await;
    env.fake.inject(Endpoint::FdxToken, Fault::Slow(Duration::from_secs(2)), None);

    env.namespace = noisy.clone();
    for i in 0..NOISY {
        env.fdx_token(&format!("noisy-{i}"), &format!("fair-customer-noisy-{i}")).await;
    }
    // One running, the others waiting, before the victim's come.
    support::eventually("the noisy backlog queued", Duration::from_secs(30), || async {
        (env.operator.queued().await >= (NOISY - 1) as f64).then_some(())
    })
    .await;
    env.namespace = victim.clone();
    for i in 0..2 {
        env.fdx_token(&format!("victim-{i}"), &format!("fair-customer-victim-{i}")).await;
    }

    // Fetches are 2 s apart, so their times are distinct and in fetch order.
    let mut fetched: Vec<(Timestamp, String)> = Vec::new();
    for namespace in [&noisy, &victim] {
        env.namespace = namespace.clone();
        let count = if namespace == &noisy { NOISY } else { 2 };
        let done = support::eventually("every token fetched", Duration::from_secs(90), || async {
            let times: Vec<(Timestamp, String)> =
                env.all_on_secrets().await.into_iter().map(|(name, on)| (on.refreshed_at, name)).collect();
            (times.len() == count).then_some(times)
        })
        .await;
        fetched.extend(done);
    }
    fetched.sort();
    let order: Vec<&str> = fetched.iter().map(|(_, name)| name.as_str()).collect();
    eprintln!("fair turns: tokens fetched in this order: {order:?}");
    let position = |name: &str| order.iter().position(|n| *n == name).unwrap();
    // First come, first served alone would give the victim's the 9th and 10th places.
    assert!(
        position("victim-0") <= 3 && position("victim-1") <= 5,
        "the victim waited behind the noisy namespace's backlog: {order:?}"
    );
    // Within each namespace, first come, first served.
    let noisy_order: Vec<&str> = order.iter().copied().filter(|n| n.starts_with("noisy-")).collect();
    assert_eq!(noisy_order, (0..NOISY).map(|i| format!("noisy-{i}")).collect::<Vec<_>>());
}
