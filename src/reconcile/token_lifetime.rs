//! The token lifetime the status shows (`status.tokenLifetime`, the LIFETIME column): a rounded
//! figure that stays the same from one renewal to the next, so a routine renewal has nothing new
//! to write into the status.
//!
//! Measured as expiry minus fetch time, a five-minute token reads 299.4 s once and 300.1 s the
//! next time; shown to the second, every renewal would change the status. So the figure is
//! rounded to a step that grows with it (10 s below 10 minutes, a minute below 2 hours, 10 minutes
//! above), and a figure already shown is kept while the measured one stays within a step or 5 %
//! of it: only a real change of the provider's lifetime (a new plan, a changed setting) is
//! written.

use std::time::Duration;

use crate::scheduling::schedule::{format_duration, parse_duration};

/// How far a measured lifetime may drift from the one shown before it is shown anew (or one
/// rounding step, if that is more).
const KEEP_WITHIN: f64 = 0.05;

/// The lifetime to show for a token measured at `measured`, given the one the status shows.
pub fn shown(previous: Option<&str>, measured: Duration) -> String {
    if let Some(previous) = previous.and_then(parse_duration)
        && !previous.is_zero()
        && (measured.as_secs_f64() - previous.as_secs_f64()).abs()
            <= (previous.as_secs_f64() * KEEP_WITHIN).max(step(previous) as f64)
    {
        return format_duration(previous);
    }
    format_duration(rounded(measured))
}

/// The rounding step of a lifetime, in seconds.
fn step(lifetime: Duration) -> u64 {
    match lifetime.as_secs() {
        0..600 => 10,
        600..7200 => 60,
        _ => 600,
    }
}

fn rounded(measured: Duration) -> Duration {
    let step = step(measured);
    let steps = (measured.as_secs_f64() / step as f64).round().max(1.0);
    // At most a few million steps: the cast cannot lose anything that matters.
    Duration::from_secs((steps as u64).saturating_mul(step))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_lifetime_is_shown_rounded_to_a_step_that_grows_with_it() {
        assert_eq!(shown(None, secs(299.4)), "5m");
        assert_eq!(shown(None, secs(290.2)), "4m50s");
        assert_eq!(shown(None, secs(3599.0)), "1h");
        assert_eq!(shown(None, secs(5400.3)), "1h30m");
        assert_eq!(shown(None, secs(86_399.0)), "24h");
        assert_eq!(shown(None, secs(3.0)), "10s");
    }

    #[test]
    fn a_lifetime_shown_stays_while_the_measured_one_stays_near_it() {
        assert_eq!(shown(Some("5m"), secs(294.6)), "5m", "rounds to 4m50s, but within 5 % of 5m");
        assert_eq!(shown(Some("5m"), secs(315.0)), "5m");
        assert_eq!(shown(Some("1m"), secs(65.0)), "1m", "rounds to 1m10s, but within a step of 1m");
        assert_eq!(shown(Some("5m"), secs(600.0)), "10m", "a real change is shown");
        assert_eq!(shown(Some("not a duration"), secs(300.0)), "5m");
    }

    proptest! {
        /// Between renewals of one provider's tokens (a second of jitter either way) the figure
        /// shown does not move, whatever the lifetime.
        #[test]
        fn jitter_of_a_second_never_changes_what_is_shown(lifetime in 60u64..200_000, jitter in -1.0f64..1.0) {
            let first = shown(None, Duration::from_secs(lifetime));
            let next = shown(Some(&first), secs(lifetime as f64 + jitter));
            prop_assert_eq!(first, next);
        }
    }
}
