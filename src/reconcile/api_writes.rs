//! The operator's own limit on writes to the Kubernetes API (Secrets, statuses, Events), shared
//! by every reconcile, so a burst of renewals cannot flood the API server.

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "consent-token-operator";

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::KubeApiArgs;

#[derive(Debug, thiserror::Error)]
#[error("--kube-api-qps and --kube-api-burst must be at least 1")]
pub struct InvalidWriteRate;

pub struct ApiWrites(DefaultDirectRateLimiter);

impl ApiWrites {
    pub fn new(args: &KubeApiArgs) -> Result<Self, InvalidWriteRate> {
        let qps = NonZeroU32::new(args.qps).ok_or(InvalidWriteRate)?;
        let burst = NonZeroU32::new(args.burst).ok_or(InvalidWriteRate)?;
        Ok(Self(RateLimiter::direct(Quota::per_second(qps).allow_burst(burst))))
    }

    /// Waits until one more write is allowed.
    pub async fn permit(&self) {
        self.0.until_ready().await;
    }
}
