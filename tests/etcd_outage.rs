//! etcd killed (SIGKILL) for 30 s and started again with the same data while tokens are due:
//! the API server stays up but can neither store nor read anything (the Lease included). A test binary of its own: the outage hits every test
//! sharing the control plane.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

#[tokio::test]
async fn a_30_second_etcd_outage_delays_renewals_and_loses_nothing() {
    let figures = support::faults::outages_with_tokens_due("etcd", Duration::from_secs(30), 1).await;
    assert!(figures.due_during_outages > 0);
}
