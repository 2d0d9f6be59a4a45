//! What a provider's 429 answer said: plain data, read from the answer's headers. None of it is
//! secret; it is shown in status.
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::time::Duration;

use jiff::Timestamp;
use reqwest::header::HeaderMap;

/// What a 429 answer said. None of it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// How long to wait, from `Retry-After` (60 s when the provider did not say; at most
    /// [`MAX_RETRY_AFTER`]).
    pub retry_after: Duration,
    /// The provider asked for longer than [`MAX_RETRY_AFTER`].
    pub capped: bool,
    pub period: Option<String>,
    pub requests_allowed: Option<i64>,
    pub requests_made: Option<i64>,
    pub event_id: Option<String>,
}

/// Used when a 429 carries no usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest wait honoured: a day. OneTrust's hourly window and its own example (2135 s) fit
/// well inside; a larger value is a broken or hostile answer, and waiting for it would leave a
/// workload without a token for good.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `Retry-After` (delay-seconds or an HTTP date) as a wait from `now`, and whether it was
/// capped at [`MAX_RETRY_AFTER`]. `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<(Duration, bool)> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: a number too large for u64 is still "very long", not unreadable.
        value.parse::<u64>().map(Duration::from_secs).unwrap_or(Duration::MAX)
    } else {
        let when = Timestamp::try_from(httpdate::parse_http_date(value).ok()?).ok()?;
        crate::basics::time_math::between(now, when)
    };
    Some((wait.min(MAX_RETRY_AFTER), wait > MAX_RETRY_AFTER))
}

impl RateLimit {
    /// Reads `Retry-After` (see [`retry_after`]) and OneTrust's `ot-*` headers.
    pub fn from_headers(headers: &HeaderMap, now: Timestamp) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let (retry_after, capped) = retry_after(headers, now).unwrap_or((DEFAULT_RETRY_AFTER, false));
        // Only short, plain values are kept: they end up in the object's status.
        let short = |name: &str| {
            text(name)
                .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                .map(str::to_owned)
        };
        Self {
            retry_after,
            capped,
            period: short("ot-period"),
            requests_allowed: text("ot-requests-allowed").and_then(|v| v.parse().ok()),
            requests_made: text("ot-request-made").and_then(|v| v.parse().ok()),
            event_id: short("ot-ratelimit-event-id"),
        }
    }

    /// An `ot-period: HOUR` limit is the account's: it holds back every endpoint.
    pub fn is_hourly(&self) -> bool {
        self.period.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("HOUR"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_in_seconds_is_not_capped_and_ot_headers_are_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2135"));
        headers.insert("ot-period", HeaderValue::from_static("HOUR"));
        headers.insert("ot-requests-allowed", HeaderValue::from_static("200000"));
        headers.insert("ot-request-made", HeaderValue::from_static("200001"));
        headers.insert("ot-ratelimit-event-id", HeaderValue::from_static("4a6d1e5c-1b7a-4d8e-9f00-0c1d2e3f4a5b"));
        let limit = RateLimit::from_headers(&headers, Timestamp::now());
        assert_eq!(limit.retry_after, Duration::from_secs(2135));
        assert_eq!(limit.period.as_deref(), Some("HOUR"));
        assert_eq!((limit.requests_allowed, limit.requests_made), (Some(200_000), Some(200_001)));
        assert_eq!(limit.event_id.as_deref(), Some("4a6d1e5c-1b7a-4d8e-9f00-0c1d2e3f4a5b"));
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let later = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 7200);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap());
        assert_eq!(RateLimit::from_headers(&headers, now).retry_after, Duration::from_secs(7200));
    }

    #[test]
    fn absurd_retry_after_is_capped_at_a_day_and_says_so() {
        let mut headers = HeaderMap::new();
        for huge in ["300000000000", "99999999999999999999999999", "86401"] {
            headers.insert("retry-after", HeaderValue::from_static(huge));
            let limit = RateLimit::from_headers(&headers, Timestamp::now());
            assert_eq!((limit.retry_after, limit.capped), (MAX_RETRY_AFTER, true), "{huge}");
        }
        headers.insert("retry-after", HeaderValue::from_static("86400"));
        assert!(!RateLimit::from_headers(&headers, Timestamp::now()).capped);
        // A date in the past: no wait.
        headers.insert("retry-after", HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
        assert_eq!(RateLimit::from_headers(&headers, Timestamp::now()).retry_after, Duration::ZERO);
    }

    proptest::proptest! {
        /// Whatever the headers say, reading them does not panic and the wait stays within the ceiling.
        #[test]
        fn no_rate_limit_headers_panic(retry in ".{0,40}", period in ".{0,70}", allowed in ".{0,30}", seconds in proptest::prelude::any::<u64>()) {
            let mut headers = HeaderMap::new();
            for (name, value) in [("retry-after", retry.clone()), ("ot-period", period), ("ot-requests-allowed", allowed), ("ot-ratelimit-event-id", retry)] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
            let limit = RateLimit::from_headers(&headers, Timestamp::now());
            proptest::prop_assert!(limit.retry_after <= MAX_RETRY_AFTER);
            headers.insert("retry-after", HeaderValue::from_str(&seconds.to_string()).unwrap());
            let limit = RateLimit::from_headers(&headers, Timestamp::now());
            proptest::prop_assert!(limit.retry_after <= MAX_RETRY_AFTER);
            proptest::prop_assert_eq!(limit.capped, seconds > MAX_RETRY_AFTER.as_secs());
        }
    }

    #[test]
    fn missing_or_garbled_retry_after_waits_a_minute() {
        let mut headers = HeaderMap::new();
        assert_eq!(RateLimit::from_headers(&headers, Timestamp::now()).retry_after, DEFAULT_RETRY_AFTER);
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        headers.insert("ot-period", HeaderValue::from_static("<script>"));
        let limit = RateLimit::from_headers(&headers, Timestamp::now());
        assert_eq!(limit.retry_after, DEFAULT_RETRY_AFTER);
        assert_eq!(limit.period, None, "odd header values are not copied into status");
    }
}
