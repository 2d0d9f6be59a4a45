//! etcd killed (SIGKILL) and started again with the same data while tokens are due: the API
//! server stays up but can store nothing. A test binary of its own: the outage hits every test
//! sharing the control plane.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

#[tokio::test]
async fn an_etcd_outage_delays_renewals_and_loses_nothing() {
    let figures = support::faults::outage_with_tokens_due("etcd", Duration::from_secs(12)).await;
    assert!(figures.due_during_outage > 0);
}
