//! OneTrust: OAuth 2.0 client credentials, then the collection point token.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::access_tokens::AccessTokenCache;
use super::http::{Endpoint, UpstreamClient};
use super::{Credentials, FetchedToken, UpstreamPolicy};
use crate::crd::OneTrustSource;
use crate::error::Error;
use crate::token::{self, Token};

const OAUTH: Endpoint = Endpoint { provider: "OneTrust", name: "oauth_token" };
const COLLECTION_POINT: Endpoint = Endpoint { provider: "OneTrust", name: "collection_point_token" };
/// OneTrust's shortest credential lifetime, assumed when `expires_in` is missing.
const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A validated OneTrust request: the tenant's OAuth endpoint and one collection point's token URL.
#[derive(Debug, Clone, PartialEq)]
pub struct OneTrustRequest {
    /// `host[:port]`, part of the access-token cache key.
    hostname: String,
    oauth_url: url::Url,
    collection_point_url: url::Url,
}

impl OneTrustRequest {
    /// OneTrust is always https, whatever the policy says about http.
    pub fn new(source: &OneTrustSource, policy: &UpstreamPolicy) -> Result<Self, Error> {
        let base = base_url(&source.hostname)?;
        policy.check_url(&base, "spec.oneTrust.hostname")?;
        let oauth_url = base.join("/api/access/v1/oauth/token").map_err(|_| invalid_hostname())?;
        Ok(Self {
            hostname: source.hostname.clone(),
            oauth_url,
            collection_point_url: collection_point_url(base, source)?,
        })
    }

    pub fn host(&self) -> &str {
        self.oauth_url.host_str().unwrap_or_default()
    }
}

pub struct OneTrustClient {
    upstream: Arc<UpstreamClient>,
    access_tokens: AccessTokenCache,
}

impl OneTrustClient {
    pub fn new(upstream: Arc<UpstreamClient>) -> Self {
        Self { upstream, access_tokens: AccessTokenCache::default() }
    }

    pub async fn fetch(&self, request: &OneTrustRequest, credentials: &Credentials) -> Result<FetchedToken, Error> {
        let key = cache_key(&request.hostname, credentials);
        let access = self.access_token(&key, request, credentials).await?;
        match self.collection_point_token(&request.collection_point_url, &access).await {
            // The access token was revoked or rotated: drop it and try once with a new one.
            Err(Error::Unauthorized { .. }) => {
                self.access_tokens.invalidate(&key, &access).await;
                let access = self.access_token(&key, request, credentials).await?;
                self.collection_point_token(&request.collection_point_url, &access).await
            }
            other => other,
        }
    }

    async fn access_token(
        &self,
        key: &str,
        request: &OneTrustRequest,
        credentials: &Credentials,
    ) -> Result<SecretString, Error> {
        self.access_tokens.get_or_fetch(key, || self.request_access_token(&request.oauth_url, credentials)).await
    }

    async fn request_access_token(
        &self,
        url: &url::Url,
        credentials: &Credentials,
    ) -> Result<(SecretString, Duration), Error> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", credentials.client_id.expose_secret()),
            ("client_secret", credentials.client_secret.expose_secret()),
        ];
        let request = self
            .upstream
            .client()
            .post(url.clone())
            .header("accept", "application/json")
            .form(&form)
            .build()
            .map_err(|_| Error::Internal("cannot build the OAuth request"))?;
        let response = self.upstream.send(OAUTH, request).await?;

        #[derive(serde::Deserialize)]
        struct Answer {
            access_token: String,
            token_type: Option<String>,
            expires_in: Option<serde_json::Value>,
        }
        let answer: Answer = serde_json::from_slice(&response.body)
            .map_err(|_| Error::InvalidResponse("the OAuth answer is not the documented JSON"))?;
        if answer.access_token.is_empty() {
            return Err(Error::InvalidResponse("the OAuth answer has an empty access_token"));
        }
        if answer.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
            return Err(Error::InvalidResponse("the OAuth answer is not a bearer token"));
        }
        let lifetime = match answer.expires_in {
            None => DEFAULT_ACCESS_TOKEN_LIFETIME,
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(Duration::from_secs).unwrap_or(DEFAULT_ACCESS_TOKEN_LIFETIME)
            }
            Some(serde_json::Value::String(s)) => {
                s.parse().map(Duration::from_secs).unwrap_or(DEFAULT_ACCESS_TOKEN_LIFETIME)
            }
            Some(_) => DEFAULT_ACCESS_TOKEN_LIFETIME,
        };
        Ok((SecretString::from(answer.access_token), lifetime))
    }

    async fn collection_point_token(&self, url: &url::Url, access: &SecretString) -> Result<FetchedToken, Error> {
        let request = self
            .upstream
            .client()
            .get(url.clone())
            .header("accept", "application/json")
            .bearer_auth(access.expose_secret())
            .build()
            // The only part that can make it fail is the access token OneTrust sent.
            .map_err(|_| Error::InvalidResponse("the OAuth access token cannot be sent in an HTTP header"))?;
        let response = self.upstream.send(COLLECTION_POINT, request).await?;
        let fetched_at = Timestamp::now();
        let value = token_from_body(&response.body)?;
        let claims = token::read_claims(&value, fetched_at)?;
        Ok(FetchedToken {
            token: Token::new(value),
            fetched_at,
            expires_at: claims.expires_at,
            collection_point_version: claims.process_version,
        })
    }
}

/// The documentation contradicts itself on the body (schema: a string; example: an object),
/// so accept `{"token": "..."}`, a JSON string, or the bare token as text.
fn token_from_body(body: &[u8]) -> Result<String, Error> {
    let text = std::str::from_utf8(body).map_err(|_| Error::InvalidResponse("the answer is not UTF-8 text"))?.trim();
    if text.starts_with('{') || text.starts_with('"') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| Error::InvalidResponse("the answer is not valid JSON"))?;
        return match value {
            serde_json::Value::String(token) => Ok(token),
            serde_json::Value::Object(mut object) => match object.remove("token") {
                Some(serde_json::Value::String(token)) => Ok(token),
                _ => Err(Error::InvalidResponse("the answer has no string field \"token\"")),
            },
            _ => Err(Error::InvalidResponse("the answer is neither an object nor a string")),
        };
    }
    Ok(text.to_owned())
}

fn collection_point_url(mut url: url::Url, source: &OneTrustSource) -> Result<url::Url, Error> {
    let guid = &source.collection_point.guid;
    if guid.len() != 36 || !guid.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Error::InvalidSpec("spec.oneTrust.collectionPoint.guid must be a UUID".into()));
    }
    url.set_path(&format!("/api/consentmanager/v1/collectionpoints/{guid}/token"));
    {
        let mut query = url.query_pairs_mut();
        if let Some(version) = source.collection_point.version {
            query.append_pair("version", &version.to_string());
        }
        if let Some(state) = source.collection_point.state {
            query.append_pair("state", state.as_str());
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(url)
}

fn base_url(hostname: &str) -> Result<url::Url, Error> {
    if hostname.is_empty() || hostname.contains(['/', '?', '#', '@', ' ']) {
        return Err(invalid_hostname());
    }
    url::Url::parse(&format!("https://{hostname}")).map_err(|_| invalid_hostname())
}

fn invalid_hostname() -> Error {
    Error::InvalidSpec("spec.oneTrust.hostname must be a host name with an optional port".into())
}

/// Same hostname and same client id and secret: same access token, whichever Secret or
/// namespace they come from. The key is a hash, so the map holds no credential.
fn cache_key(hostname: &str, credentials: &Credentials) -> String {
    let mut hash = Sha256::new();
    hash.update(hostname.as_bytes());
    hash.update([0]);
    hash.update(credentials.client_id.expose_secret().as_bytes());
    hash.update([0]);
    hash.update(credentials.client_secret.expose_secret().as_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CollectionPoint, CollectionPointState};

    use crate::fixtures;

    fn request(version: Option<i64>, state: Option<CollectionPointState>) -> OneTrustRequest {
        let mut source = fixtures::onetrust_source("app-eu.onetrust.com");
        source.collection_point = CollectionPoint { guid: fixtures::GUID.into(), version, state };
        OneTrustRequest::new(&source, &UpstreamPolicy::default()).unwrap()
    }

    #[test]
    fn collection_point_url_passes_version_and_state_through() {
        let plain = request(None, None);
        assert_eq!(
            plain.collection_point_url.as_str(),
            "https://app-eu.onetrust.com/api/consentmanager/v1/collectionpoints/123e4567-e89b-12d3-a456-426614174000/token"
        );
        assert_eq!(plain.oauth_url.as_str(), "https://app-eu.onetrust.com/api/access/v1/oauth/token");
        assert_eq!(
            request(Some(3), Some(CollectionPointState::Active)).collection_point_url.query(),
            Some("version=3&state=ACTIVE")
        );
    }

    #[test]
    fn all_three_documented_body_shapes_are_read() {
        assert_eq!(token_from_body(br#"{"token": "a.b.c"}"#).unwrap(), "a.b.c");
        assert_eq!(token_from_body(br#""a.b.c""#).unwrap(), "a.b.c");
        assert_eq!(token_from_body(b"a.b.c\n").unwrap(), "a.b.c");
        assert!(token_from_body(br#"{"nope": 1}"#).is_err());
        assert!(token_from_body(b"{not json").is_err());
    }
}
