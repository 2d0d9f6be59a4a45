//! What a provider's 429 answer said: plain data, read from the answer's headers. None of it is
//! secret; it is shown in status.

use std::time::Duration;

use jiff::Timestamp;
use reqwest::header::HeaderMap;

/// What a 429 answer said. None of it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// How long to wait, from `Retry-After` (60 s when the provider did not say).
    pub retry_after: Duration,
    pub period: Option<String>,
    pub requests_allowed: Option<i64>,
    pub requests_made: Option<i64>,
    pub event_id: Option<String>,
}

/// Used when a 429 carries no usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

impl RateLimit {
    /// Reads `Retry-After` (delay-seconds or an HTTP date, never capped) and OneTrust's
    /// `ot-*` headers.
    pub fn from_headers(headers: &HeaderMap, now: Timestamp) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let retry_after = text("retry-after")
            .and_then(|value| match value.parse::<u64>() {
                Ok(seconds) => Some(Duration::from_secs(seconds)),
                Err(_) => {
                    let when = httpdate::parse_http_date(value).ok()?;
                    let now = std::time::UNIX_EPOCH + Duration::from_secs(now.as_second().max(0) as u64);
                    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
                }
            })
            .unwrap_or(DEFAULT_RETRY_AFTER);
        // Only short, plain values are kept: they end up in the object's status.
        let short = |name: &str| {
            text(name)
                .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                .map(str::to_owned)
        };
        Self {
            retry_after,
            period: short("ot-period"),
            requests_allowed: text("ot-requests-allowed").and_then(|v| v.parse().ok()),
            requests_made: text("ot-request-made").and_then(|v| v.parse().ok()),
            event_id: short("ot-ratelimit-event-id"),
        }
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
