//! kube-apiserver killed (SIGKILL) for 30 s, the longest outage the chart's defaults are made to
//! ride out, and started again on the same port and etcd while tokens are due. A test binary
//! of its own: the outage hits every test sharing the control plane.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

#[tokio::test]
async fn a_30_second_api_server_outage_delays_renewals_and_loses_nothing() {
    let figures = support::faults::outages_with_tokens_due("kube-apiserver", Duration::from_secs(30), 1).await;
    assert!(figures.due_during_outages > 0);
}
