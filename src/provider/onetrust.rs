//! OneTrust: OAuth 2.0 client credentials, then the collection point token.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::access_tokens::AccessTokenCache;
use super::account_shares::Budget;
use super::http::{Caller, ClientKey, Endpoint, UpstreamClient};
use super::{Credentials, FetchedToken, UpstreamPolicy};
use crate::api::crd::OneTrustSource;
use crate::error::Error;
use crate::provider::token::{self, Token};

/// OneTrust's documented limits (providers.md): 1,000 requests a minute per endpoint and
/// 200,000 an hour per account, shared with the tenant's other integrations.
const OAUTH: Endpoint = Endpoint {
    provider: "OneTrust",
    name: "oauth_token",
    endpoint_budget: Some(Budget::per_minute(1000)),
    account_budget: Some(Budget::per_hour(200_000)),
};
const COLLECTION_POINT: Endpoint = Endpoint { name: "collection_point_token", ..OAUTH };
/// OneTrust's shortest credential lifetime, assumed when `expires_in` is missing.
const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// `expires_in` is clamped to this: zero, negative or garbled values would mean an OAuth request
/// per reconcile...
pub const MIN_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// ...and absurd ones an overflow. OneTrust's longest credential lifetime is a year.
pub const MAX_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// A validated OneTrust request: the tenant's OAuth endpoint and one collection point's token URL.
#[derive(Debug, Clone, PartialEq)]
pub struct OneTrustRequest {
    /// `host[:port]`, part of the access-token cache key.
    hostname: String,
    oauth_url: url::Url,
    collection_point_url: url::Url,
}

/// A OneTrust tenant's OAuth endpoint, checked: what a provider object's status is about.
#[derive(Debug, Clone, PartialEq)]
pub struct OneTrustTenantRequest {
    hostname: String,
    oauth_url: url::Url,
}

impl OneTrustTenantRequest {
    /// OneTrust is always https, whatever the policy says about http.
    pub fn new(hostname: &str, policy: &UpstreamPolicy) -> Result<Self, Error> {
        let base = base_url(hostname)?;
        policy.check_url(&base, "spec.oneTrust.hostname")?;
        let oauth_url = base.join("/api/access/v1/oauth/token").map_err(|_| invalid_hostname())?;
        Ok(Self { hostname: hostname.to_owned(), oauth_url })
    }

    pub fn host(&self) -> &str {
        self.oauth_url.host_str().unwrap_or_default()
    }

    /// The port credentials are sent to.
    pub fn port(&self) -> u16 {
        self.oauth_url.port_or_known_default().unwrap_or(443)
    }
}

impl OneTrustRequest {
    /// OneTrust is always https, whatever the policy says about http.
    pub fn new(source: &OneTrustSource, policy: &UpstreamPolicy) -> Result<Self, Error> {
        let tenant = OneTrustTenantRequest::new(&source.hostname, policy)?;
        let base = base_url(&source.hostname)?;
        Ok(Self {
            hostname: tenant.hostname,
            oauth_url: tenant.oauth_url,
            collection_point_url: collection_point_url(base, source)?,
        })
    }

    pub fn host(&self) -> &str {
        self.oauth_url.host_str().unwrap_or_default()
    }

    /// The port credentials are sent to.
    pub fn port(&self) -> u16 {
        self.oauth_url.port_or_known_default().unwrap_or(443)
    }

    /// Everything that decides which token comes back (see `spec::ValidSpec::request`).
    pub fn identity(&self) -> String {
        format!("onetrust\0{}\0{}", self.oauth_url, self.collection_point_url)
    }
}

/// How a host takes the OAuth token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OAuthEncoding {
    /// What OneTrust's OpenAPI document declares.
    Multipart,
    /// What OneTrust's sample code sends; used only for hosts that refused multipart.
    FormUrlEncoded,
}

/// OAuth hosts remembered as taking form-urlencoded, at most.
const MAX_FORM_HOSTS: usize = 1024;

pub struct OneTrustClient {
    upstream: Arc<UpstreamClient>,
    access_tokens: AccessTokenCache,
    /// `host:port` of OAuth endpoints that refused multipart and took form-urlencoded (at most
    /// [`MAX_FORM_HOSTS`]).
    form_hosts: Mutex<HashSet<String>>,
}

impl OneTrustClient {
    pub fn new(upstream: Arc<UpstreamClient>) -> Self {
        Self { upstream, access_tokens: AccessTokenCache::default(), form_hosts: Mutex::default() }
    }

    /// The collection point's token, asked for a ConsentToken of `namespace`.
    pub async fn fetch(
        &self,
        request: &OneTrustRequest,
        credentials: &Credentials,
        namespace: &str,
    ) -> Result<FetchedToken, Error> {
        let key = cache_key(&request.hostname, credentials);
        let client = ClientKey::of(credentials);
        let caller = Caller { client: &client, namespace };
        let access = self.access_token(&key, &request.oauth_url, credentials, caller).await?;
        match self.collection_point_token(&request.collection_point_url, caller, &access).await {
            // The access token was revoked or rotated: drop it and try once with a new one. (A
            // 403 is about scope or organisation: a new access token would not change it.)
            Err(Error::Unauthorized { .. }) => {
                self.access_tokens.invalidate(&key, &access).await;
                let access = self.access_token(&key, &request.oauth_url, credentials, caller).await?;
                self.collection_point_token(&request.collection_point_url, caller, &access).await
            }
            other => other,
        }
    }

    async fn access_token(
        &self,
        key: &str,
        oauth_url: &url::Url,
        credentials: &Credentials,
        caller: Caller<'_>,
    ) -> Result<SecretString, Error> {
        self.access_tokens.get_or_fetch(key, || self.request_access_token(oauth_url, credentials, caller)).await
    }

    /// Obtains the tenant's access token with these credentials, or finds it cached: the one
    /// every ConsentToken of the tenant then uses (same cache key as [`Self::fetch`]).
    /// `namespace` is the provider object's (empty for a ClusterConsentProvider).
    pub async fn obtain_access_token(
        &self,
        tenant: &OneTrustTenantRequest,
        credentials: &Credentials,
        namespace: &str,
    ) -> Result<(), Error> {
        let key = cache_key(&tenant.hostname, credentials);
        let client = ClientKey::of(credentials);
        self.access_token(&key, &tenant.oauth_url, credentials, Caller { client: &client, namespace }).await.map(drop)
    }

    /// Asks for an access token as OneTrust's OpenAPI document says (multipart/form-data). A
    /// host that refuses that with 400 or 415 is asked once more form-urlencoded (as OneTrust's
    /// sample code sends it), and if that works, it is asked that way from then on.
    async fn request_access_token(
        &self,
        url: &url::Url,
        credentials: &Credentials,
        caller: Caller<'_>,
    ) -> Result<(SecretString, Duration), Error> {
        let authority =
            format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(443));
        let remembered = self.form_hosts.lock().unwrap_or_else(|p| p.into_inner()).contains(&authority);
        let first = if remembered { OAuthEncoding::FormUrlEncoded } else { OAuthEncoding::Multipart };
        let response = match self.post_oauth(url, credentials, caller, first).await {
            Err(Error::Rejected { status: 400 | 415 }) if first == OAuthEncoding::Multipart => {
                let response = self
                    .post_oauth(url, credentials, caller, OAuthEncoding::FormUrlEncoded)
                    .await
                    .map_err(oauth_error)?;
                tracing::info!(host = %authority, "the OAuth endpoint refused multipart/form-data and took form-urlencoded; using that for this host");
                let mut form_hosts = self.form_hosts.lock().unwrap_or_else(|p| p.into_inner());
                // Hosts are the tenants' to name: past a bound the memory starts again, at the
                // cost of one more multipart attempt per host.
                if form_hosts.len() >= MAX_FORM_HOSTS {
                    form_hosts.clear();
                }
                form_hosts.insert(authority);
                response
            }
            other => other.map_err(oauth_error)?,
        };
        parse_oauth_answer(&response.body)
    }

    async fn post_oauth(
        &self,
        url: &url::Url,
        credentials: &Credentials,
        caller: Caller<'_>,
        encoding: OAuthEncoding,
    ) -> Result<super::http::UpstreamResponse, Error> {
        let (id, secret) = (credentials.client_id.expose_secret(), credentials.client_secret.expose_secret());
        let builder = self.upstream.client().post(url.clone()).header("accept", "application/json");
        let builder = match encoding {
            OAuthEncoding::Multipart => builder.multipart(
                reqwest::multipart::Form::new()
                    .text("grant_type", "client_credentials")
                    .text("client_id", id.to_owned())
                    .text("client_secret", secret.to_owned()),
            ),
            OAuthEncoding::FormUrlEncoded => {
                builder.form(&[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret)])
            }
        };
        let request = builder.build().map_err(|_| Error::Internal("cannot build the OAuth request"))?;
        self.upstream.send(OAUTH, caller, request).await
    }

    async fn collection_point_token(
        &self,
        url: &url::Url,
        caller: Caller<'_>,
        access: &SecretString,
    ) -> Result<FetchedToken, Error> {
        let request = self
            .upstream
            .client()
            .get(url.clone())
            .header("accept", "application/json")
            .bearer_auth(access.expose_secret())
            .build()
            // The only part that can make it fail is the access token OneTrust sent.
            .map_err(|_| Error::InvalidResponse("the OAuth access token cannot be sent in an HTTP header"))?;
        let response = self.upstream.send(COLLECTION_POINT, caller, request).await?;
        let fetched_at = Timestamp::now();
        let value = token_from_body(&response.body)?;
        let claims = token::read_claims(&value, fetched_at)?;
        Ok(FetchedToken {
            token: Token::new(value),
            fetched_at,
            expires_at: claims.expires_at,
            provider_clock_ahead: claims.provider_clock_ahead,
            collection_point_version: claims.process_version,
        })
    }
}

/// A refusal by the OAuth endpoint is about the credentials, never about the ConsentToken's spec.
fn oauth_error(err: Error) -> Error {
    match err {
        Error::Rejected { status } => Error::OAuthRejected { status },
        other => other,
    }
}

/// Reads OneTrust's OAuth answer: the access token and how long to keep it (`expires_in`,
/// clamped to [`MIN_ACCESS_TOKEN_LIFETIME`] and [`MAX_ACCESS_TOKEN_LIFETIME`]).
fn parse_oauth_answer(body: &[u8]) -> Result<(SecretString, Duration), Error> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: String,
        token_type: Option<String>,
        expires_in: Option<serde_json::Value>,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| Error::InvalidResponse("the OAuth answer is not the documented JSON"))?;
    if answer.access_token.is_empty() {
        return Err(Error::InvalidResponse("the OAuth answer has an empty access_token"));
    }
    if answer.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(Error::InvalidResponse("the OAuth answer is not a bearer token"));
    }
    let seconds = match answer.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(n.as_f64().unwrap_or(0.0)),
        Some(serde_json::Value::String(s)) => Some(s.trim().parse::<f64>().unwrap_or(0.0)),
        Some(_) => Some(0.0),
    };
    let lifetime = match seconds {
        None => DEFAULT_ACCESS_TOKEN_LIFETIME,
        Some(s) if s.is_finite() && s > 0.0 => {
            Duration::from_secs_f64(s.min(MAX_ACCESS_TOKEN_LIFETIME.as_secs_f64())).max(MIN_ACCESS_TOKEN_LIFETIME)
        }
        Some(_) => MIN_ACCESS_TOKEN_LIFETIME,
    };
    Ok((SecretString::from(answer.access_token), lifetime))
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
mod tests;
