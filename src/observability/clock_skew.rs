//! How far each provider's clock is from this node's, as its tokens tell (`iat` against the
//! moment of the fetch): a gauge per provider, and a warning in the log when the gap is large.
//!
//! Tokens are judged by their own clock (see `provider::token`), so a gap costs no token and no
//! renewal; it is shown because whoever reads the token elsewhere may judge it by their own
//! clock, and a consumer on this node checking `exp` against a clock minutes off would refuse
//! a good token.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use jiff::SignedDuration;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::observability::metrics::ProviderLabels;

/// A gap over this is logged. NTP keeps clocks within milliseconds, so it is a clock that is
/// not kept; and it is half the minute of leeway JWT libraries commonly allow, so it is seen
/// before a consumer's check trips over it.
pub const WARN_OVER: Duration = Duration::from_secs(30);

/// At most one warning per provider in this time: every token of a provider says the same.
const WARN_EVERY: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct ClockSkew {
    pub gauge: Family<ProviderLabels, Gauge<f64, AtomicU64>>,
    last_warned: Mutex<BTreeMap<&'static str, Instant>>,
}

impl ClockSkew {
    /// Records what a token fetched from `provider` told of its clock.
    pub fn observe(&self, provider: &'static str, ahead: SignedDuration) {
        self.gauge.get_or_create(&ProviderLabels { provider }).set(ahead.as_secs_f64());
        if ahead.unsigned_abs() > WARN_OVER && self.warn_now(provider, Instant::now()) {
            tracing::warn!(
                provider,
                ahead_seconds = ahead.as_secs(),
                "the provider's clock and this node's are far apart: tokens are still timed from their own lifetime, but a consumer that checks exp against this node's clock may refuse them"
            );
        }
    }

    fn warn_now(&self, provider: &'static str, now: Instant) -> bool {
        let mut last = self.last_warned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = last.get(provider).is_none_or(|at| now.saturating_duration_since(*at) >= WARN_EVERY);
        if due {
            last.insert(provider, now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(skew: &ClockSkew, provider: &'static str) -> f64 {
        skew.gauge.get_or_create(&ProviderLabels { provider }).get()
    }

    #[test]
    fn sets_the_gauge_every_time_and_warns_once_per_provider_in_ten_minutes() {
        let skew = ClockSkew::default();
        skew.observe("FDX", SignedDuration::from_secs(-180));
        skew.observe("OneTrust", SignedDuration::from_millis(-300));
        assert_eq!((gauge(&skew, "FDX"), gauge(&skew, "OneTrust")), (-180.0, -0.3));
        let now = Instant::now();
        assert!(!skew.warn_now("FDX", now), "FDX warned a moment ago");
        assert!(skew.warn_now("OneTrust", now), "OneTrust's small gap used no warning");
        assert!(skew.warn_now("FDX", now + WARN_EVERY), "FDX warns again after ten minutes");
        skew.observe("FDX", SignedDuration::from_secs(2));
        assert_eq!(gauge(&skew, "FDX"), 2.0);
    }
}
