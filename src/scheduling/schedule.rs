//! When to fetch the next token (retries after a failure: [`super::retry`]). Pure functions:
//! the current time is an argument, so every rule is tested without a clock.
//!
//! The rules come from how the tokens are used. A mounted Secret reaches pods 60 to 90 seconds
//! after it changes, so a token must be replaced well before it expires (default: with half
//! its life left). Thousands of objects must not renew in lockstep, so each renewal may come
//! somewhat earlier (a window, never later), and the refresh calendar picks the quietest
//! second in it. (About half of this file is its unit and property tests.)
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::time::Duration;

use jiff::Timestamp;

use crate::api::crd::RefreshPolicy;
use crate::basics::time_math::{between, earlier, later, scale};

/// How long before expiry to renew a token that has an `exp`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenewBefore {
    /// This share of the token's lifetime, in percent (1 to 90).
    Percent(u8),
    /// This long before expiry (at most 90 % of the lifetime, so a short token is not
    /// refreshed continuously).
    Duration(Duration),
}

/// The refresh timing of one ConsentToken, parsed from its `spec.refresh`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub renew_before: RenewBefore,
    /// Refetch interval for tokens without `exp`.
    pub interval: Duration,
}

pub const DEFAULT_RENEW_BEFORE: RenewBefore = RenewBefore::Percent(50);
/// The largest share of a lifetime `renewBefore` may ask for: renewing with 99% left would
/// spend a shared account's quota on one object (the CRD refuses more).
pub const MAX_RENEW_BEFORE_PERCENT: u8 = 90;
/// The shortest `renewBefore` duration (the CRD refuses less).
pub const MIN_RENEW_BEFORE: Duration = Duration::from_secs(30);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// A renewal window opens this share of the renewal lead (or of the interval) before it
/// closes...
const SPREAD_SHARE: f64 = 0.2;
/// ...and at most this long before.
const MAX_SPREAD: Duration = Duration::from_secs(300);
/// The first renewal of a new token may come from this share of the way to its latest point.
const FIRST_RENEWAL_OPENS: f64 = 0.1;
/// The shortest wait between two attempts for one object.
pub const MIN_RETRY: Duration = Duration::from_secs(1);
/// Time the kubelet needs to bring a changed Secret into running pods.
pub const KUBELET_PROPAGATION: Duration = Duration::from_secs(90);

impl Default for Schedule {
    fn default() -> Self {
        Self { renew_before: DEFAULT_RENEW_BEFORE, interval: DEFAULT_INTERVAL }
    }
}

impl Schedule {
    /// Parses `spec.refresh`. The CRD validates the same shapes, so an error here means the
    /// object bypassed validation (or the schema is older than the operator).
    pub fn from_policy(policy: &RefreshPolicy) -> Result<Self, String> {
        let renew_before = match policy.renew_before.as_deref() {
            None => DEFAULT_RENEW_BEFORE,
            // Objects stored before the CRD's bounds (90%, 30s) were tightened keep working,
            // within them.
            Some(text) => match text.strip_suffix('%') {
                Some(pct) => match pct.parse::<u8>() {
                    Ok(p @ 1..=99) => RenewBefore::Percent(p.min(MAX_RENEW_BEFORE_PERCENT)),
                    _ => return Err(format!("spec.refresh.renewBefore {text:?} must be a percentage from 1% to 90%")),
                },
                None => RenewBefore::Duration(
                    parse_duration(text)
                        .ok_or_else(|| format!("spec.refresh.renewBefore {text:?} is not a duration such as 2m"))?
                        .max(MIN_RENEW_BEFORE),
                ),
            },
        };
        let interval = match policy.interval.as_deref() {
            None => DEFAULT_INTERVAL,
            Some(text) => match parse_duration(text) {
                Some(d) if d >= Duration::from_secs(60) => d,
                _ => return Err(format!("spec.refresh.interval {text:?} must be a duration of at least 1m")),
            },
        };
        Ok(Self { renew_before, interval })
    }

    /// The window in which to fetch the token fetched at `fetched_at` again: at its end the token
    /// still has the configured lead left; it opens a share of that lead earlier (see
    /// [`SPREAD_SHARE`]), so renewals can be spread (by [`crate::scheduling::calendar::Calendar`]) without
    /// ever being later than the lead.
    ///
    /// The `first` renewal of a new object's token may come much earlier, from a tenth of the
    /// way to the latest point: objects created together (a GitOps sync of thousands) would
    /// otherwise renew together for many lifetimes, each later window moving a renewal by only
    /// a fifth of the lead. The calendar still picks the latest quiet second, so without a
    /// crowd the first renewal is as late as any other.
    pub fn renewal_window(
        &self,
        fetched_at: Timestamp,
        expires_at: Option<Timestamp>,
        first: bool,
    ) -> (Timestamp, Timestamp) {
        let (earliest, latest) = self.later_renewal_window(fetched_at, expires_at);
        if first {
            let opens = later(fetched_at, scale(between(fetched_at, latest), FIRST_RENEWAL_OPENS).max(MIN_RETRY));
            return (opens.min(earliest), latest);
        }
        (earliest, latest)
    }

    /// When tokens are renewed, in words that stay true from one renewal to the next (the
    /// Ready message): `renewed with 50% of their lifetime left`, `renewed 2m before they
    /// expire`, or for tokens without expiry `fetched again every 1h`.
    pub fn describe(&self, tokens_expire: bool) -> String {
        match (tokens_expire, self.renew_before) {
            (false, _) => format!("fetched again every {}", format_duration(self.interval)),
            (true, RenewBefore::Percent(p)) => format!("renewed with {p}% of their lifetime left"),
            (true, RenewBefore::Duration(d)) => {
                format!("renewed {} before they expire (at most 90% of their lifetime)", format_duration(d))
            }
        }
    }

    fn later_renewal_window(&self, fetched_at: Timestamp, expires_at: Option<Timestamp>) -> (Timestamp, Timestamp) {
        let Some(expires_at) = expires_at else {
            let latest = later(fetched_at, self.interval);
            return (earlier(latest, scale(self.interval, SPREAD_SHARE).min(MAX_SPREAD)), latest);
        };
        let lifetime = between(fetched_at, expires_at);
        let lead = match self.renew_before {
            RenewBefore::Percent(p) => scale(lifetime, f64::from(p) / 100.0),
            RenewBefore::Duration(d) => d.min(scale(lifetime, 0.9)),
        };
        let latest = earlier(expires_at, lead);
        // Never open before the token was fetched.
        let spread = scale(lead, SPREAD_SHARE).min(MAX_SPREAD).min(between(fetched_at, latest));
        (earlier(latest, spread), latest)
    }
}

/// After a restart, many objects can be overdue at once. An overdue object whose token is still
/// comfortably valid may be deferred within the time it can spare (at most `spread`): this
/// returns that window, in which the calendar picks the quietest second, so the objects do
/// not all hit the provider at the same moment. Objects that never had a token, or whose
/// token is close to expiry, get no window: they go first.
pub fn overdue_window(
    now: Timestamp,
    expires_at: Option<Timestamp>,
    spread: Duration,
) -> Option<(Timestamp, Timestamp)> {
    let spare = match expires_at {
        Some(expires_at) => between(now, expires_at).saturating_sub(KUBELET_PROPAGATION),
        // A token without expiry stays usable: the whole spread is available.
        None => spread,
    };
    let spare = spare.min(spread);
    (spare >= MIN_RETRY).then(|| (later(now, MIN_RETRY), later(now, spare)))
}

/// A whole-second duration in the CRD's syntax: `5m`, `4m50s`, `1h30m`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".to_owned() } else { out }
}

/// Parses Go-style durations as used in the CRD: `90s`, `2m`, `1h30m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let value: u64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(value.checked_mul(unit)?)?;
        saw_unit = true;
    }
    (number.is_empty() && saw_unit).then_some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures::t;

    #[test]
    fn the_renewal_policy_in_words() {
        let policy = |renew: Option<&str>, interval: Option<&str>| {
            Schedule::from_policy(&RefreshPolicy {
                renew_before: renew.map(Into::into),
                interval: interval.map(Into::into),
            })
            .unwrap()
        };
        assert_eq!(policy(None, None).describe(true), "renewed with 50% of their lifetime left");
        assert_eq!(
            policy(Some("1m30s"), None).describe(true),
            "renewed 1m30s before they expire (at most 90% of their lifetime)"
        );
        assert_eq!(policy(None, Some("90m")).describe(false), "fetched again every 1h30m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn mx_token_renews_by_half_life_leaving_time_for_the_kubelet() {
        let schedule = Schedule::default();
        let (earliest, latest) = schedule.renewal_window(t(0), Some(t(300)), false);
        assert_eq!(latest, t(150), "at the latest with exactly half the lifetime left");
        assert_eq!(earliest, t(120), "the window opens a fifth of the lead earlier");
        assert!(between(latest, t(300)) >= KUBELET_PROPAGATION);
    }

    #[test]
    fn a_new_tokens_first_renewal_may_come_early_so_a_burst_can_spread() {
        let schedule = Schedule::default();
        assert_eq!(schedule.renewal_window(t(0), Some(t(300)), true), (t(15), t(150)));
        assert_eq!(schedule.renewal_window(t(0), None, true), (t(360), t(3600)));
        // 9,000 MX tokens fetched over 30 seconds, as when they are all created at once: their
        // first renewals fill the quietest seconds, so no minute carries much more than the
        // average minute of the steady state (9,000 renewals per 150 s).
        let calendar = crate::scheduling::calendar::Calendar::default();
        for i in 0..9000 {
            let fetched = t(i / 300);
            let (from, to) = schedule.renewal_window(fetched, Some(fetched + Duration::from_secs(300)), true);
            let at = calendar.place(&i.to_string(), from, to);
            assert!(at >= from && at <= to);
        }
        let average_minute = 9000 * 60 / 150;
        let busiest = (0..150).map(|s| calendar.planned_between(t(s), t(s + 60))).max().unwrap();
        assert!(busiest <= average_minute * 12 / 10, "busiest minute {busiest}, average {average_minute}");
    }

    #[test]
    fn renew_before_as_duration_is_capped_by_the_lifetime() {
        let policy = RefreshPolicy { renew_before: Some("2m".into()), interval: None };
        let schedule = Schedule::from_policy(&policy).unwrap();
        assert_eq!(schedule.renewal_window(t(0), Some(t(300)), false), (t(156), t(180)));
        // A 60-second token with "renew 2m before" renews after 6 s, not immediately and forever.
        assert_eq!(schedule.renewal_window(t(0), Some(t(60)), false).1, t(6));
        // The window never opens before the token was fetched.
        assert!(schedule.renewal_window(t(0), Some(t(60)), false).0 >= t(0));
        // Long-lived tokens: at most five minutes of spread.
        let day = Schedule::default().renewal_window(t(0), Some(t(86_400)), false);
        assert_eq!(day, (t(43_200 - 300), t(43_200)));
    }

    #[test]
    fn tokens_without_expiry_follow_the_interval() {
        let policy = RefreshPolicy { renew_before: None, interval: Some("30m".into()) };
        let schedule = Schedule::from_policy(&policy).unwrap();
        assert_eq!(schedule.renewal_window(t(0), None, false), (t(1800 - 300), t(1800)));
    }

    #[test]
    fn policy_parsing_rejects_what_the_crd_rejects() {
        for (renew, interval) in [(Some("0%"), None), (Some("100%"), None), (Some("2x"), None), (None, Some("30s"))] {
            let policy = RefreshPolicy { renew_before: renew.map(Into::into), interval: interval.map(Into::into) };
            assert!(Schedule::from_policy(&policy).is_err(), "{renew:?} {interval:?} accepted");
        }
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), None);
    }

    #[test]
    fn renew_before_stays_within_its_bounds_for_objects_stored_before_them() {
        let parse = |text: &str| {
            Schedule::from_policy(&RefreshPolicy { renew_before: Some(text.into()), interval: None })
                .unwrap()
                .renew_before
        };
        // 99% (renew every 3 s of a 300 s token) is used as 90%; 0s as 30s.
        assert_eq!(parse("99%"), RenewBefore::Percent(MAX_RENEW_BEFORE_PERCENT));
        assert_eq!(parse("90%"), RenewBefore::Percent(90));
        assert_eq!(parse("0s"), RenewBefore::Duration(MIN_RENEW_BEFORE));
        assert_eq!(parse("45s"), RenewBefore::Duration(Duration::from_secs(45)));
        let at_99 = Schedule { renew_before: parse("99%"), interval: DEFAULT_INTERVAL };
        assert_eq!(at_99.renewal_window(t(0), Some(t(300)), false).1, t(30), "at most 90% of the lifetime early");
    }

    proptest::proptest! {
        /// Whatever times and waits upstreams send, the schedule maths neither panics nor goes
        /// back in time.
        #[test]
        fn schedule_maths_never_panics(
            fetched in proptest::prelude::any::<i64>(),
            expires in proptest::prelude::any::<i64>(),
            now in -1_000_000_000i64..5_000_000_000,
            wait in proptest::prelude::any::<u64>(),
            percent in 1u8..100,
        ) {
            let clamp = |s: i64| Timestamp::from_second(s.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second())).unwrap();
            let (fetched, expires, now) = (clamp(fetched), clamp(expires), t(now));
            let schedule = Schedule { renew_before: RenewBefore::Percent(percent), interval: DEFAULT_INTERVAL };
            for first in [true, false] {
                let (earliest, latest) = schedule.renewal_window(fetched, Some(expires), first);
                proptest::prop_assert!(earliest <= latest);
                let _ = schedule.renewal_window(fetched, None, first);
            }
            let _ = overdue_window(now, Some(expires), Duration::from_secs(wait));
        }
    }

    #[test]
    fn overdue_objects_are_spread_but_urgent_ones_are_not() {
        let spread = Duration::from_secs(60);
        // 140 s left: 50 s can be spared, so the deferral is within that.
        assert_eq!(overdue_window(t(0), Some(t(140)), spread), Some((t(1), t(50))));
        // 80 s left: less than the kubelet needs, so no deferral.
        assert_eq!(overdue_window(t(0), Some(t(80)), spread), None);
        // No expiry: the whole spread.
        assert_eq!(overdue_window(t(0), None, spread), Some((t(1), t(60))));
    }
}
