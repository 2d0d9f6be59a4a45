//! Clients for the two token providers, behind one entry point: [`Providers::fetch`].

mod access_tokens;
mod fdx;
pub mod http;
mod onetrust;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use reqwest::header::HeaderMap;
use secrecy::SecretString;

use crate::crd::ConsentTokenSpec;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::token::Token;
pub use http::{UpstreamClient, UpstreamConfig};

/// Client credentials read from the credentials Secret. Neither value can be printed.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub client_id: SecretString,
    pub client_secret: SecretString,
    /// `resourceVersion` of the Secret they were read from.
    pub version: String,
}

/// A token fresh from a provider, already checked to be a usable JWT.
#[derive(Clone, Debug)]
pub struct FetchedToken {
    pub token: Token,
    pub fetched_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// OneTrust: the collection point version the token belongs to.
    pub collection_point_version: Option<i64>,
}

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
            text(name).filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).map(str::to_owned)
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

/// Fetches tokens from whichever provider a ConsentToken names.
pub struct Providers {
    onetrust: onetrust::OneTrustClient,
    fdx: fdx::FdxClient,
}

impl Providers {
    pub fn new(config: &UpstreamConfig, metrics: Arc<Metrics>) -> Result<Self, http::SetupError> {
        let upstream = Arc::new(UpstreamClient::new(config, metrics)?);
        Ok(Self { onetrust: onetrust::OneTrustClient::new(upstream.clone()), fdx: fdx::FdxClient::new(upstream) })
    }

    pub async fn fetch(&self, spec: &ConsentTokenSpec, credentials: &Credentials) -> Result<FetchedToken, Error> {
        match (&spec.one_trust, &spec.fdx) {
            (Some(source), None) => self.onetrust.fetch(source, credentials).await,
            (None, Some(source)) => self.fdx.fetch(source, credentials).await,
            _ => Err(Error::InvalidSpec("set exactly one provider: spec.oneTrust or spec.fdx".into())),
        }
    }

    /// Checks the provider URL of a spec without sending anything.
    pub fn check_spec(&self, spec: &ConsentTokenSpec) -> Result<(), Error> {
        match (&spec.one_trust, &spec.fdx) {
            (Some(source), None) => onetrust::collection_point_url(source).map(|_| ()),
            (None, Some(source)) => self.fdx.token_url(source).map(|_| ()),
            _ => Err(Error::InvalidSpec("set exactly one provider: spec.oneTrust or spec.fdx".into())),
        }
    }
}

/// The provider's name as shown in status and metrics.
pub fn provider_name(spec: &ConsentTokenSpec) -> &'static str {
    if spec.one_trust.is_some() { "OneTrust" } else { "FDX" }
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
