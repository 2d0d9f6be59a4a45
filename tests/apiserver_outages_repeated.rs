//! A flapping control plane (an upgrade, a cloud provider's API server rollout): kube-apiserver
//! killed for 12 s five times, a minute apart, while tokens are due. Each outage makes the
//! leader stand by and lead again in the same process; none may cost a restart. A test binary
//! of its own: the outages hit every test sharing the control plane.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

#[tokio::test]
async fn five_api_server_outages_a_minute_apart_cost_no_restart() {
    let figures = support::faults::outages_with_tokens_due("kube-apiserver", Duration::from_secs(12), 5).await;
    assert!(figures.due_during_outages > 0);
}
