//! MX / FDX Consent Management Dashboard: `POST {baseUrl}/api/{version}/token` with HTTP
//! Basic client credentials, one token per customer.

use std::sync::Arc;

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use super::http::{Caller, ClientKey, Endpoint, UpstreamClient};
use super::{Credentials, FetchedToken, UpstreamPolicy};
use crate::api::crd::FdxSource;
use crate::error::Error;
use crate::provider::token::{self, Token};

/// MX publishes no rate limit: an account is shared out once a 429 has said one.
const TOKEN: Endpoint = Endpoint { provider: "FDX", name: "token", endpoint_budget: None, account_budget: None };
/// "Each token expires in five minutes": assumed when a token carries no `exp`.
const DOCUMENTED_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);

/// A validated MX / FDX token request. The customer id is personal data: it cannot be printed.
#[derive(Debug, Clone)]
pub struct FdxRequest {
    token_url: url::Url,
    customer_id: SecretString,
}

impl PartialEq for FdxRequest {
    fn eq(&self, other: &Self) -> bool {
        self.token_url == other.token_url && self.customer_id.expose_secret() == other.customer_id.expose_secret()
    }
}

impl FdxRequest {
    pub fn new(source: &FdxSource, policy: &UpstreamPolicy) -> Result<Self, Error> {
        let base = url::Url::parse(&source.base_url)
            .map_err(|_| Error::InvalidSpec("spec.fdx.baseUrl is not an absolute URL".into()))?;
        policy.check_url(&base, "spec.fdx.baseUrl")?;
        let version = &source.api_version;
        if !version.starts_with('v') || version.len() < 2 || !version[1..].chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::InvalidSpec("spec.fdx.apiVersion must look like v4".into()));
        }
        let path = format!("{}/api/{version}/token", base.path().trim_end_matches('/'));
        let mut token_url = base;
        token_url.set_path(&path);
        Ok(Self { token_url, customer_id: SecretString::from(source.customer_id.clone()) })
    }

    pub fn host(&self) -> &str {
        self.token_url.host_str().unwrap_or_default()
    }

    /// The port credentials are sent to.
    pub fn port(&self) -> u16 {
        self.token_url.port_or_known_default().unwrap_or(443)
    }

    /// Everything that decides which token comes back (see `spec::ValidSpec::request`). Holds
    /// the customer id: only ever hashed.
    pub fn identity(&self) -> String {
        format!("fdx\0{}\0{}", self.token_url, self.customer_id.expose_secret())
    }
}

pub struct FdxClient {
    upstream: Arc<UpstreamClient>,
}

impl FdxClient {
    pub fn new(upstream: Arc<UpstreamClient>) -> Self {
        Self { upstream }
    }

    /// A customer's token, asked for a ConsentToken of `namespace`.
    pub async fn fetch(
        &self,
        request: &FdxRequest,
        credentials: &Credentials,
        namespace: &str,
    ) -> Result<FetchedToken, Error> {
        let body = serde_json::json!({
            "type": "consent_management",
            "scopes": format!("customer.modify_consent:{}", request.customer_id.expose_secret()),
        });
        let request = self
            .upstream
            .client()
            .post(request.token_url.clone())
            .header("accept", "application/json")
            .basic_auth(credentials.client_id.expose_secret(), Some(credentials.client_secret.expose_secret()))
            .json(&body)
            .build()
            .map_err(|_| Error::Internal("cannot build the token request"))?;
        let client = ClientKey::of(credentials);
        let response = self.upstream.send(TOKEN, Caller { client: &client, namespace }, request).await?;
        read_answer(&response.body, Timestamp::now())
    }
}

/// Reads `{"access_token": "<JWT>"}`: the token and its expiry (`exp`, else the documented five
/// minutes).
fn read_answer(body: &[u8], fetched_at: Timestamp) -> Result<FetchedToken, Error> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: String,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| Error::InvalidResponse("the answer is not {\"access_token\": ...}"))?;
    let claims = token::read_claims(&answer.access_token, fetched_at)?;
    Ok(FetchedToken {
        token: Token::new(answer.access_token),
        fetched_at,
        expires_at: Some(
            claims.expires_at.unwrap_or_else(|| crate::basics::time_math::later(fetched_at, DOCUMENTED_LIFETIME)),
        ),
        provider_clock_ahead: claims.provider_clock_ahead,
        collection_point_version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    proptest::proptest! {
        #[test]
        fn no_token_answer_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), text in ".{0,200}") {
            let _ = read_answer(&body, Timestamp::now());
            let _ = read_answer(serde_json::json!({"access_token": text}).to_string().as_bytes(), Timestamp::now());
        }
    }

    #[test]
    fn token_url_keeps_the_base_path_and_http_needs_the_policy() {
        let source = fixtures::fdx_source("https://bank.example/consent/");
        let request = FdxRequest::new(&source, &UpstreamPolicy::default()).unwrap();
        assert_eq!(request.token_url.as_str(), "https://bank.example/consent/api/v4/token");
        assert!(!format!("{request:?}").contains(&source.customer_id), "the customer id is not printed");

        let plain = fixtures::fdx_source("http://localhost:8080");
        assert!(matches!(FdxRequest::new(&plain, &UpstreamPolicy::default()), Err(Error::InvalidSpec(_))));
        let development = UpstreamPolicy {
            allow_insecure_http: true,
            allowed_ports: crate::api::hosts::ProviderPorts::Any,
            ..Default::default()
        };
        assert!(FdxRequest::new(&plain, &development).is_ok());
    }
}
