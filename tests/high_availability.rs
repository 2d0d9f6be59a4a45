//! Two replicas: one leads and writes; the other waits. Killing the leader hard hands over
//! within the Lease duration, and tokens keep being refreshed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::{Duration, Instant};

use support::operator::{Operator, TestEnv};

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
