//! When to try again after a failure. Pure: the current time and the random jitter (a number
//! in `[0, 1)`) are arguments, so every rule is tested without a clock.
//!
//! A provider's `Retry-After` is honoured in full. Retries after transient failures back off
//! exponentially, but never past the point where the current token expires, and within half a
//! minute once a workload has no usable token. Configuration failures back off slowly: retrying
//! sooner fixes nothing, and a fix (a new spec, a rotated Secret) wakes the object at once.
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::time::Duration;

use jiff::Timestamp;

use crate::basics::time_math::{between, later, scale};
use crate::error::RetryClass;
use crate::scheduling::schedule::{KUBELET_PROPAGATION, MIN_RETRY};

/// Transient failures: first retry after about this long, doubling up to `MAX_BACKOFF`.
const BASE_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// ...or up to this, once the workload has no usable token.
pub const URGENT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Retries held back by a provider (`Retry-After`) are spread over a tenth of the wait, at least
/// a minute and at most ten.
const MIN_BLOCK_SPREAD: Duration = Duration::from_secs(60);
const MAX_BLOCK_SPREAD: Duration = Duration::from_secs(600);
/// Objects held back by a busy or paused host come back spread over this long.
const SOON_SPREAD: Duration = Duration::from_secs(5);
/// Configuration failures: first retry after about this long, doubling up to `MAX_CONFIG_BACKOFF`.
const BASE_CONFIG_BACKOFF: Duration = Duration::from_secs(30);
const MAX_CONFIG_BACKOFF: Duration = Duration::from_secs(1800);

/// A failed attempt, as a retry is planned from it.
#[derive(Debug, Clone, Copy)]
pub struct FailedAttempt {
    pub at: Timestamp,
    pub class: RetryClass,
    /// Failures in a row, this one included (1: the first).
    pub in_a_row: u32,
    /// When the workload's current token expires (`None`: no token, or no expiry known).
    pub token_expires_at: Option<Timestamp>,
    /// The workload has no usable token (none, expired, or inside the kubelet's margin).
    pub urgent: bool,
}

impl FailedAttempt {
    /// A request held back before it was sent: the first of its kind, nothing urgent.
    pub fn held_back(at: Timestamp, class: RetryClass) -> Self {
        Self { at, class, in_a_row: 1, token_expires_at: None, urgent: false }
    }
}

/// When to try again after `failed`: a window, in which the refresh calendar picks the quietest
/// second (for most failures the window is a single instant, already jittered by `jitter`, a
/// random number in [0, 1)).
pub fn retry_window(failed: &FailedAttempt, jitter: f64) -> (Timestamp, Timestamp) {
    let FailedAttempt { at: now, class, in_a_row: failures, token_expires_at: expires_at, urgent } = *failed;
    let (base, max) = match class {
        // Honoured in full, never earlier; everything the provider held back together comes
        // back spread over at least a minute.
        // Nothing was sent; look again when the host may take it, spread over a few seconds.
        RetryClass::Soon(wait) => {
            let at = later(now, wait.saturating_add(scale(SOON_SPREAD, jitter.clamp(0.0, 1.0))).max(MIN_RETRY));
            return (at, at);
        }
        RetryClass::After(wait) => {
            let from = later(now, wait);
            let spread = scale(wait, 0.1).clamp(MIN_BLOCK_SPREAD, MAX_BLOCK_SPREAD);
            return (from, later(from, spread));
        }
        // A workload without a usable token is broken already: look again soon, so a recovered
        // provider is noticed within half a minute.
        RetryClass::Transient if urgent => (BASE_BACKOFF, URGENT_MAX_BACKOFF),
        RetryClass::Transient => (BASE_BACKOFF, MAX_BACKOFF),
        RetryClass::Configuration => (BASE_CONFIG_BACKOFF, MAX_CONFIG_BACKOFF),
    };
    let exponent = failures.saturating_sub(1).min(20);
    let full = base.saturating_mul(1u32 << exponent).min(max);
    // Between half and all of the backoff, so objects that failed together drift apart.
    let mut wait = scale(full, 0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    if let Some(expires_at) = expires_at {
        let left = between(now, expires_at);
        if left > Duration::ZERO {
            // Still leave room for another try before the current token runs out.
            wait = wait.min(left.checked_div(2).unwrap_or_default());
        }
    }
    let at = later(now, wait.max(MIN_RETRY));
    (at, at)
}

/// Whether a workload with this token (or none) is without a usable one at `now`: no token,
/// an expired one, or one expiring before the kubelet could bring a new one into pods.
pub fn urgent(now: Timestamp, token: Option<Option<Timestamp>>) -> bool {
    match token {
        None => true,
        Some(None) => false,
        Some(Some(expires_at)) => between(now, expires_at) <= KUBELET_PROPAGATION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures::t;

    /// The start of the retry window for a workload that still has a usable token.
    fn retry_at(
        now: Timestamp,
        class: RetryClass,
        failures: u32,
        expires_at: Option<Timestamp>,
        jitter: f64,
    ) -> Timestamp {
        retry_window(
            &FailedAttempt { at: now, class, in_a_row: failures, token_expires_at: expires_at, urgent: false },
            jitter,
        )
        .0
    }

    #[test]
    fn retry_after_is_honoured_in_full_and_what_it_held_back_is_spread() {
        let wait = Duration::from_secs(2135); // OneTrust's own example
        for jitter in [0.0, 0.5, 0.99] {
            let (from, to) = retry_window(
                &FailedAttempt {
                    at: t(0),
                    class: RetryClass::After(wait),
                    in_a_row: 1,
                    token_expires_at: Some(t(100)),
                    urgent: true,
                },
                jitter,
            );
            assert_eq!(from, t(2135), "never earlier, whatever the token's state");
            assert_eq!(between(from, to), Duration::from_millis(213_500), "spread over a tenth of the wait");
        }
        // A short wait is still spread over a minute; a long one over at most ten.
        let (from, to) = retry_window(&FailedAttempt::held_back(t(0), RetryClass::After(Duration::from_secs(5))), 0.5);
        assert_eq!((from, to), (t(5), t(65)));
        let (from, to) =
            retry_window(&FailedAttempt::held_back(t(0), RetryClass::After(Duration::from_secs(86_400))), 0.5);
        assert_eq!(between(from, to), Duration::from_secs(600));
    }

    #[test]
    fn without_a_usable_token_transient_retries_come_within_half_a_minute() {
        for failures in [1, 5, 10, 30] {
            let (at, _) = retry_window(
                &FailedAttempt {
                    at: t(0),
                    class: RetryClass::Transient,
                    in_a_row: failures,
                    token_expires_at: Some(t(-10)),
                    urgent: true,
                },
                0.999_999,
            );
            assert!(at <= t(30), "failure {failures}: {at}");
        }
        let (calm, _) = retry_window(
            &FailedAttempt {
                at: t(0),
                class: RetryClass::Transient,
                in_a_row: 10,
                token_expires_at: None,
                urgent: false,
            },
            0.999_999,
        );
        assert!(calm > t(200), "with a good token the backoff grows as before: {calm}");
        // Configuration errors keep their slow backoff: retrying faster fixes nothing, and a fix
        // (a rotated Secret, a new spec) triggers a reconcile at once.
        let (slow, _) = retry_window(
            &FailedAttempt {
                at: t(0),
                class: RetryClass::Configuration,
                in_a_row: 10,
                token_expires_at: None,
                urgent: true,
            },
            0.5,
        );
        assert!(slow > t(600));
        assert!(urgent(t(0), None) && urgent(t(0), Some(Some(t(90)))) && urgent(t(0), Some(Some(t(-1)))));
        assert!(!urgent(t(0), Some(Some(t(91)))) && !urgent(t(0), Some(None)));
    }

    #[test]
    fn transient_backoff_grows_and_stays_before_expiry() {
        let first = retry_at(t(0), RetryClass::Transient, 1, None, 0.999);
        let fifth = retry_at(t(0), RetryClass::Transient, 5, None, 0.999);
        assert!(first <= t(2) && fifth > t(16), "{first} {fifth}");
        let capped = retry_at(t(0), RetryClass::Transient, 30, None, 0.999_999);
        assert!(capped > t(299) && capped <= t(300), "capped at five minutes: {capped}");
        // 40 s left on the current token: the retry comes within 20 s.
        assert!(retry_at(t(0), RetryClass::Transient, 10, Some(t(40)), 0.99) <= t(20));
    }

    #[test]
    fn configuration_errors_do_not_hot_loop() {
        assert!(retry_at(t(0), RetryClass::Configuration, 1, None, 0.0) >= t(15));
        assert!(retry_at(t(0), RetryClass::Configuration, 20, None, 0.0) >= t(900));
    }

    proptest::proptest! {
        /// Whatever waits and failure counts upstreams cause, a retry never panics and never
        /// goes back in time.
        #[test]
        fn retry_maths_never_panics(
            expires in proptest::prelude::any::<i64>(),
            now in -1_000_000_000i64..5_000_000_000,
            wait in proptest::prelude::any::<u64>(),
            failures in proptest::prelude::any::<u32>(),
            jitter in proptest::prelude::any::<f64>(),
            urgent_now in proptest::prelude::any::<bool>(),
        ) {
            let clamp = |s: i64| Timestamp::from_second(s.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second())).unwrap();
            let (expires, now) = (clamp(expires), t(now));
            for class in [RetryClass::After(Duration::from_secs(wait)), RetryClass::Soon(Duration::from_secs(wait)), RetryClass::Transient, RetryClass::Configuration] {
                let attempt = FailedAttempt { at: now, class, in_a_row: failures, token_expires_at: Some(expires), urgent: urgent_now };
                let (from, to) = retry_window(&attempt, jitter);
                proptest::prop_assert!(now <= from && from <= to);
            }
        }
    }
}
