//! Two replicas: one leads and writes; the other waits. Killing the leader hard hands over
//! within the Lease duration, and tokens keep being refreshed; stopping it (SIGTERM, as on a
//! rollout or drain) hands over at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::{Duration, Instant};

use support::operator::{Launch, Operator, TestEnv};

/// Sum of a counter family in a Prometheus exposition (0 when absent).
fn counter_total(metrics: &str, name: &str) -> f64 {
    metrics.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_is_killed() {
    let mut env = TestEnv::start("ha").await; // the first operator, already leading
    let standby = Operator::start(&env.namespace, env.fake.ca_pem(), &[]).await;
    env.fake.set_fdx_lifetime(8);
    env.fdx_token("mx", "customer-1").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;

    // A few renewals by the leader; the standby wrote nothing meanwhile.
    support::eventually("renewals by the leader", Duration::from_secs(30), || async {
        (counter_total(&env.operator.metrics().await, "consent_token_refreshes_total") >= 2.0).then_some(())
    })
    .await;
    assert_eq!(counter_total(&standby.metrics().await, "consent_token_refreshes_total"), 0.0, "the standby wrote");

    let before = env.token_in_secret("mx", "token").await.unwrap();
    env.operator.kill();
    let killed = Instant::now();
    standby.wait_until_leader(&env.namespace).await;
    let takeover = killed.elapsed();
    // The Lease lasts 6 s; the standby polls it at its renewal period (2 s).
    assert!(takeover <= Duration::from_secs(9), "takeover took {takeover:?}");

    support::eventually("a token refreshed by the new leader", Duration::from_secs(20), || async {
        env.token_in_secret("mx", "token").await.filter(|t| *t != before)
    })
    .await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    assert!(counter_total(&standby.metrics().await, "consent_token_refreshes_total") >= 1.0);
    eprintln!("leader takeover after a hard kill: {takeover:?}");
}

/// A leader stopped as the kubelet stops a pod gives the Lease up after its last write, so the
/// standby leads at once rather than when the Lease expires. (Found on the test node,
/// tests/node.rs: the release ran in a task that the exiting process cancelled, so the standby
/// took over only when the Lease expired.)
#[tokio::test]
async fn a_leader_stopped_with_sigterm_hands_over_before_its_lease_expires() {
    let setup = TestEnv::setup("ha-term", &[]).await;
    // A long Lease, renewed every 10 s: without a release no standby could lead until the
    // Lease expired, at least 20 s after the stop.
    let launch = Launch { lease_duration: "30s".into(), ..setup.launch_defaults() };
    let mut env = setup.launch(launch.clone()).await;
    let standby = Operator::launch(launch).await;

    let stopped = Instant::now();
    assert!(env.operator.terminate().await, "the leader exits with success on SIGTERM");
    standby.wait_until_leader(&env.namespace).await;
    let takeover = stopped.elapsed();
    assert!(
        takeover < Duration::from_secs(20),
        "the standby led {takeover:?} after the stop: the Lease was not released"
    );
    assert_eq!(env.operator.log_times("Lease released").len(), 1, "the leader says it released the Lease");
    eprintln!("leader takeover after SIGTERM: {takeover:?}");
}
