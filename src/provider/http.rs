//! The one HTTP client all provider calls go through. It enforces https (unless local
//! development allows http), bounds every answer in size and time, turns HTTP answers into
//! typed errors without ever keeping a response body, and holds back requests to an endpoint
//! that answered 429 until its `Retry-After` has passed: one object's 429 protects the
//! provider's quota from every other object. Before it does, each namespace gets its fair share
//! of an account's quota (see [`crate::provider::account_shares`]).
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::HeaderMap;

use crate::api::proxy::{NoProxy, ProxyUrl};
use crate::api::rate_limit::RateLimit;
use crate::config::UpstreamArgs;
use crate::error::Error;
use crate::observability::metrics::{Metrics, ProviderLabels};
use crate::provider::account_shares::{AccountShares, Budget};
use crate::provider::addresses::AddressBook;
use crate::provider::host_guard::{Answer, Held, HostGuard};
use crate::provider::policy::{PolicyResolver, RefusedAddresses, UpstreamPolicy};
use crate::provider::rate_limit_blocks::RateLimitBlocks;

/// Larger answers are not tokens: read no further.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A successful (2xx) answer.
pub struct UpstreamResponse {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Which endpoint a request goes to: the unit of rate limiting and of latency metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub provider: &'static str,
    pub name: &'static str,
    /// The provider's documented limit for this endpoint, per account.
    pub endpoint_budget: Option<Budget>,
    /// The provider's documented limit for all endpoints of an account together.
    pub account_budget: Option<Budget>,
}

/// Who a request is for: the account whose quota it spends, and the namespace of the object
/// that asked (its share of that quota).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub client: &'a ClientKey,
    pub namespace: &'a str,
}

/// Whose quota a request counts against, with the host: a provider limits each API client
/// (OneTrust: per account and endpoint), so one tenant's 429 must not hold back another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(String);

impl ClientKey {
    /// A hash of the client id (not secret, but not shown either).
    pub fn of(credentials: &super::Credentials) -> Self {
        use secrecy::ExposeSecret;
        Self(crate::provider::token::fingerprint(credentials.client_id.expose_secret().as_bytes()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Account {
    host: String,
    client: ClientKey,
}

/// An account, and the endpoint it may not call (`None`: any of its endpoints).
type BlockKey = (Account, Option<Endpoint>);

pub struct UpstreamClient {
    http: reqwest::Client,
    /// Requests to hosts not covered by `--no-proxy`, through `--https-proxy`.
    egress: Option<Egress>,
    metrics: Arc<Metrics>,
    /// Per account and endpoint (`None`: every endpoint of the account, after an hourly limit):
    /// no request before this instant, and what the provider said.
    blocked: RateLimitBlocks<BlockKey>,
    /// Each namespace's share of each account's quota, same keys as `blocked`.
    shares: AccountShares<BlockKey>,
    /// Requests under way per provider address, and each address's circuit breaker.
    guard: HostGuard,
    /// The address each request is accounted to in `guard`.
    addresses: AddressBook,
}

/// The proxied client and the hosts it does not serve.
struct Egress {
    http: reqwest::Client,
    no_proxy: NoProxy,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read the extra CA bundle {path}: {source}")]
    ReadCa { path: String, source: std::io::Error },
    #[error("the extra CA bundle {0} holds no usable PEM certificate")]
    BadCa(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl UpstreamClient {
    pub fn new(args: &UpstreamArgs, policy: Arc<UpstreamPolicy>, metrics: Arc<Metrics>) -> Result<Self, SetupError> {
        let extra_roots = match &args.extra_ca_bundle {
            Some(path) => read_ca(path)?,
            None => Vec::new(),
        };
        // Every direct connection goes to an address the policy allows, checked after
        // resolution. The environment's HTTP(S)_PROXY is never used: a proxy named there would
        // resolve names itself, out of reach of that check, without the admin having said so.
        let direct = builder(args, &extra_roots).no_proxy().dns_resolver(Arc::new(PolicyResolver::new(policy.clone())));
        let http = direct.build().map_err(|e| SetupError::Client(e.to_string()))?;
        let egress = match &args.https_proxy {
            Some(proxy) => Some(Egress { http: proxied(args, &extra_roots, proxy)?, no_proxy: args.no_proxy.clone() }),
            None => None,
        };
        let guard = HostGuard::new(usize::from(args.upstream_concurrency_per_host));
        let addresses = AddressBook::new(policy);
        let (blocked, shares) = (RateLimitBlocks::default(), AccountShares::default());
        Ok(Self { http, egress, metrics, blocked, shares, guard, addresses })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends a request and returns a 2xx answer, or the typed error for anything else.
    pub async fn send(
        &self,
        endpoint: Endpoint,
        caller: Caller<'_>,
        request: reqwest::Request,
    ) -> Result<UpstreamResponse, Error> {
        let host = request.url().host_str().unwrap_or_default().to_owned();
        let port = request.url().port_or_known_default().unwrap_or_default();
        let account = Account { host: format!("{host}:{port}"), client: caller.client.clone() };
        let blocked = self
            .blocked
            .still_blocked(&(account.clone(), Some(endpoint)))
            .or_else(|| self.blocked.still_blocked(&(account.clone(), None)));
        if let Some(limit) = blocked {
            self.metrics.rate_limit_waits.get_or_create(&ProviderLabels { provider: endpoint.provider }).inc();
            return Err(Error::RateLimited(Box::new(limit)));
        }

        // Slots and breakers belong to the server (its address and port), not to the name.
        // Through the proxy the operator never learns the address: they belong to the name.
        let egress = self.egress.as_ref().filter(|e| request.url().scheme() == "https" && !e.no_proxy.covers(&host));
        let server = match egress {
            Some(_) => format!("{host}:{port}"),
            None => self.addresses.account_of(request.url()).await?.to_string(),
        };
        let pass = self.guard.admit(&server, caller.namespace).await.map_err(|held| match held {
            Held::Busy => Error::HostBusy,
            Held::Failing(retry_in) => Error::HostFailing { retry_in },
        })?;
        // Counted only when it goes: last before sending (a probe's pass, dropped, lets another probe).
        let quotas = [
            ((account.clone(), Some(endpoint)), endpoint.endpoint_budget),
            ((account.clone(), None), endpoint.account_budget),
        ];
        if let Err(used) = self.shares.admit(&quotas, caller.namespace) {
            self.metrics.quota_share_holds.get_or_create(&ProviderLabels { provider: endpoint.provider }).inc();
            return Err(Error::QuotaShareUsed {
                retry_in: used.retry_in,
                share: used.share,
                period: used.period,
                sharing: used.sharing,
            });
        }

        let started = Instant::now();
        let result = egress.map_or(&self.http, |e| &e.http).execute(request).await;
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                self.metrics.observe_upstream(endpoint.provider, endpoint.name, None, started.elapsed());
                if let Some(refused) = find_source::<RefusedAddresses>(&err) {
                    return Err(Error::AddressNotAllowed(refused.0));
                }
                self.guard.record(pass, Answer::Failing);
                // reqwest's message names the URL; ours names only what went wrong.
                return Err(Error::Transport(if err.is_timeout() {
                    "the request timed out"
                } else if err.is_connect() && egress.is_some() {
                    "the connection through the egress proxy failed (the proxy unreachable, refusing the credentials or the tunnel)"
                } else if err.is_connect() {
                    "the connection failed"
                } else {
                    "the request failed"
                }));
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = if (200..300).contains(&status) { read_limited(response).await } else { Ok(Vec::new()) };
        self.metrics.observe_upstream(endpoint.provider, endpoint.name, Some(status), started.elapsed());
        let cut_off = matches!(body, Err(Error::Transport(_)));
        self.guard.record(pass, if status >= 500 || cut_off { Answer::Failing } else { Answer::Working });
        match status {
            200..=299 => Ok(UpstreamResponse { headers, body: body? }),
            429 => {
                let limit = RateLimit::from_headers(&headers, jiff::Timestamp::now());
                // OneTrust's per-minute limit is per endpoint; its hourly one is the account's.
                let scope = if limit.is_hourly() { None } else { Some(endpoint) };
                self.shares.learn(&(account.clone(), scope), &limit);
                self.blocked.block((account, scope), &limit);
                Err(Error::RateLimited(Box::new(limit)))
            }
            401 => Err(Error::Unauthorized { status }),
            403 => Err(Error::Forbidden { status }),
            400 | 404 | 405 | 409 | 415 | 422 => Err(Error::Rejected { status }),
            // Honoured like a 429's, up to the same ceiling.
            503 => Err(Error::UpstreamStatus {
                status,
                retry_after: crate::api::rate_limit::retry_after(&headers, jiff::Timestamp::now())
                    .map(|(wait, _)| wait),
            }),
            _ => Err(Error::UpstreamStatus { status, retry_after: None }),
        }
    }
}

/// What both clients share: TLS roots, deadlines, no redirects, a small pool.
fn builder(args: &UpstreamArgs, extra_roots: &[reqwest::Certificate]) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(!args.allow_insecure_http)
        .timeout(args.upstream_timeout)
        .connect_timeout(args.upstream_timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        // Hosts are the tenants' to name: few idle connections per host, closed soon.
        .pool_max_idle_per_host(4)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("consent-token-operator/", env!("CARGO_PKG_VERSION")));
    for certificate in extra_roots {
        builder = builder.add_root_certificate(certificate.clone());
    }
    builder
}

/// The client whose every connection is a `CONNECT` tunnel through the proxy. It resolves only
/// the proxy's name (the admin's, so no address rule applies); the provider's name goes to the
/// proxy as it is, after the host and port rules passed.
fn proxied(
    args: &UpstreamArgs,
    extra_roots: &[reqwest::Certificate],
    proxy: &ProxyUrl,
) -> Result<reqwest::Client, SetupError> {
    let mut through = reqwest::Proxy::all(proxy.url().clone()).map_err(|e| SetupError::Client(e.to_string()))?;
    if let (Some(user), Some(password)) = (&args.https_proxy_username, &args.https_proxy_password) {
        use secrecy::ExposeSecret;
        through = through.basic_auth(user, password.expose_secret());
    }
    builder(args, extra_roots).no_proxy().proxy(through).build().map_err(|e| SetupError::Client(e.to_string()))
}

/// The first error of type `T` in `err`'s chain of sources.
fn find_source<'a, T: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, SetupError> {
    let pem = std::fs::read(path).map_err(|source| SetupError::ReadCa { path: path.display().to_string(), source })?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        _ => Err(SetupError::BadCa(path.display().to_string())),
    }
}

/// Reads at most `MAX_BODY_BYTES`; the request timeout bounds the time.
async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, Error> {
    if response.content_length().is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(Error::InvalidResponse("the answer is larger than 64 KiB"));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Error::Transport(if e.is_timeout() { "the answer timed out" } else { "the answer was cut off" })
        })?;
        if body.len().saturating_add(chunk.len()) > MAX_BODY_BYTES {
            return Err(Error::InvalidResponse("the answer is larger than 64 KiB"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
