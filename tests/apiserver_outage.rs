//! kube-apiserver killed (SIGKILL) and started again on the same port and etcd while tokens
//! are due. A test binary of its own: the outage hits every test sharing the control plane,
//! so the two phases run one after the other in one test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use support::proxy::Cut;

#[tokio::test]
async fn an_api_server_outage_delays_renewals_and_loses_nothing() {
    let figures = support::faults::outages_with_tokens_due("kube-apiserver", Duration::from_secs(12), 1).await;
    assert!(figures.due_during_outages > 0);

    // A ConsentToken and another's Secret deleted while the operator's watches are away: the
    // restarted API server's new watch cache cannot replay the deletions (410 Gone), so the
    // operator lists again, and what the lists no longer have is handled as deleted: the
    // ConsentToken forgotten, its metric series first of all (a stale expiry series would
    // raise a false alert), and the Secret put back.
    let (env, proxy, _dir) = support::proxy::env_through_proxy("relist", "45s").await;
    for name in ["kept", "deleted"] {
        env.fdx_token(name, &format!("relist-customer-{name}")).await;
        env.wait_for_ready(name, "True", "TokenValid").await;
    }
    let series = |metrics: &str, name: &str| {
        metrics.lines().any(|l| l.starts_with("consent_token_ready{") && l.contains(&format!("name=\"{name}\"")))
    };
    assert!(series(&env.operator.metrics().await, "deleted"));
    // Connections closed (not stalled: a stalled one would still deliver the deletion the API
    // server had already written into it).
    proxy.cut(Cut::Drop);
    env.tokens().delete("deleted", &Default::default()).await.unwrap();
    env.secrets().delete("kept", &Default::default()).await.unwrap();
    tokio::task::spawn_blocking(|| support::control_plane_fault("stop", "kube-apiserver")).await.unwrap();
    tokio::task::spawn_blocking(|| support::control_plane_fault("start", "kube-apiserver")).await.unwrap();
    proxy.heal();
    let metrics = support::eventually("the deleted object's series gone", Duration::from_secs(60), || async {
        let metrics = env.operator.metrics().await;
        (!series(&metrics, "deleted")).then_some(metrics)
    })
    .await;
    assert!(series(&metrics, "kept"), "the other object's series stays");
    support::eventually("kept's Secret put back", Duration::from_secs(30), || async {
        env.token_in_secret("kept", "token").await
    })
    .await;
    assert!(
        env.operator.logs().contains("deleted while the watch was away"),
        "forgotten by the relist, not by a replayed deletion"
    );
}
