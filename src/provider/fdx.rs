//! MX / FDX Consent Management Dashboard: `POST {baseUrl}/api/{version}/token` with HTTP
//! Basic client credentials, one token per customer.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use secrecy::ExposeSecret;

use super::http::{Endpoint, UpstreamClient};
use super::{Credentials, FetchedToken};
use crate::crd::FdxSource;
use crate::error::Error;
use crate::token::{self, Token};

const TOKEN: Endpoint = Endpoint { provider: "FDX", name: "token" };
/// "Each token expires in five minutes": assumed when a token carries no `exp`.
const DOCUMENTED_LIFETIME: SignedDuration = SignedDuration::from_secs(300);

pub struct FdxClient {
    upstream: Arc<UpstreamClient>,
}

impl FdxClient {
    pub fn new(upstream: Arc<UpstreamClient>) -> Self {
        Self { upstream }
    }

    pub fn token_url(&self, source: &FdxSource) -> Result<url::Url, Error> {
        let base = url::Url::parse(&source.base_url)
            .map_err(|_| Error::InvalidSpec("spec.fdx.baseUrl is not an absolute URL".into()))?;
        self.upstream.check_scheme(&base)?;
        if !source.api_version.starts_with('v') || !source.api_version[1..].chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::InvalidSpec("spec.fdx.apiVersion must look like v4".into()));
        }
        let path = format!("{}/api/{}/token", base.path().trim_end_matches('/'), source.api_version);
        let mut url = base;
        url.set_path(&path);
        Ok(url)
    }

    pub async fn fetch(&self, source: &FdxSource, credentials: &Credentials) -> Result<FetchedToken, Error> {
        let url = self.token_url(source)?;
        let body = serde_json::json!({
            "type": "consent_management",
            "scopes": format!("customer.modify_consent:{}", source.customer_id),
        });
        let request = self
            .upstream
            .client()
            .post(url)
            .header("accept", "application/json")
            .basic_auth(credentials.client_id.expose_secret(), Some(credentials.client_secret.expose_secret()))
            .json(&body)
            .build()
            .map_err(|_| Error::InvalidSpec("cannot build the token request".into()))?;
        let response = self.upstream.send(TOKEN, request).await?;
        let fetched_at = Timestamp::now();

        #[derive(serde::Deserialize)]
        struct Answer {
            access_token: String,
        }
        let answer: Answer = serde_json::from_slice(&response.body)
            .map_err(|_| Error::InvalidResponse("the answer is not {\"access_token\": ...}"))?;
        let claims = token::read_claims(&answer.access_token, fetched_at)?;
        Ok(FetchedToken {
            token: Token::new(answer.access_token),
            fetched_at,
            expires_at: Some(claims.expires_at.unwrap_or(fetched_at + DOCUMENTED_LIFETIME)),
            collection_point_version: None,
        })
    }
}
