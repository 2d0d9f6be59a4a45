//! Time arithmetic that saturates instead of panicking.
//!
//! Numbers from upstreams (`Retry-After`, `expires_in`, `exp`) reach these sums, and
//! `Timestamp + Duration` or `Instant + Duration` panic on overflow: one absurd answer would end
//! the process, and the same request after the restart would end it again. The modules that do
//! time arithmetic deny clippy's `arithmetic_side_effects` and use these instead.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// As far as an `Instant` is taken into the future when a sum would overflow.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `t + d`, or the latest representable time.
pub fn later(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// `t - d`, or the earliest representable time.
pub fn earlier(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_sub(d).ok()).unwrap_or(Timestamp::MIN)
}

/// `to - from`, or zero when `to` is not after `from`.
pub fn between(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// `now + d`, or a century from now (or `now` itself, where even that does not fit).
pub fn instant_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).or_else(|| now.checked_add(FAR)).unwrap_or(now)
}

/// `d * factor` for a factor from 0 up, saturating; a factor that is not a number is 0.
pub fn scale(d: Duration, factor: f64) -> Duration {
    let factor = if factor.is_nan() { 0.0 } else { factor.clamp(0.0, 1.0e6) };
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_that_would_overflow_saturate() {
        let huge = Duration::from_secs(u64::MAX);
        assert_eq!(later(Timestamp::now(), huge), Timestamp::MAX);
        assert_eq!(earlier(Timestamp::now(), huge), Timestamp::MIN);
        assert!(instant_after(Instant::now(), huge) > Instant::now());
        assert_eq!(scale(huge, 2.0), Duration::MAX);
        assert_eq!(scale(Duration::from_secs(10), f64::NAN), Duration::ZERO);
        assert_eq!(between(Timestamp::MAX, Timestamp::MIN), Duration::ZERO);
    }
}
