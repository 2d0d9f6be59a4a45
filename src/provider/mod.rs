//! Talking to the providers: the clients for the two token providers behind one entry point
//! ([`Providers::fetch`]), the network policy every connection obeys ([`policy`],
//! [`host_guard`], [`http`]), credentials ([`credentials`]), token values ([`token`]) and the
//! one provider lookup ([`lookup`]: from a ConsentToken to the provider it uses).
//!
//! A spec is turned into a [`Source`] (a validated request: URLs built, scheme and host checked
//! against the [`UpstreamPolicy`]) before anything is read or sent; the clients only ever see
//! validated requests.
//!
//! May use: [`crate::api`], [`crate::basics`], [`crate::error`], [`crate::config`],
//! [`crate::observability`].
//!
//! # Where OneTrust and FDX differ
//!
//! Only in the types that carry different data, each an enum with one variant per provider:
//!
//! | step | type | OneTrust | FDX |
//! |---|---|---|---|
//! | a ConsentToken's own provider | [`crate::api::crd::ProviderSource`] | `OneTrustSource`: hostname, collection point | `FdxSource`: base URL, API version, customer id |
//! | a shared provider object's endpoint | [`crate::api::crd::Endpoint`] | `OneTrustTenant`: hostname | `FdxEndpoint`: base URL, API version |
//! | the validated request | [`Source`] | [`OneTrustRequest`]: OAuth, then the collection point's token | [`FdxRequest`]: one call that mints a customer's token |
//! | a provider object's check | [`ValidEndpoint`] | an access token can be obtained | the credentials are present and allowed |
//! | the client | `onetrust.rs`, with OAuth access tokens cached per credential (`access_tokens.rs`) | `fdx.rs`: Basic client credentials, one token per customer |
//!
//! [`crate::api::crd::ProviderKind`] names them in status and metrics. Everything else (the
//! lookup, validation, scheduling, the Secret, status) is the same code for both. A third
//! provider adds a variant to each row, a client module beside `onetrust.rs` and `fdx.rs`, and
//! an endpoint in the fake provider (CONTRIBUTING.md, "Adding a provider").

mod access_tokens;
pub mod account_shares;
pub mod addresses;
pub mod credentials;
mod fdx;
pub mod host_guard;
pub mod http;
pub mod lookup;
pub mod namespace_slots;
mod onetrust;
pub mod policy;
mod rate_limit_blocks;
pub mod token;

use std::sync::Arc;

use jiff::Timestamp;
use secrecy::SecretString;

use crate::api::crd::ProviderSource;
use crate::config::UpstreamArgs;
use crate::error::Error;
use crate::observability::metrics::Metrics;
use crate::provider::token::Token;
pub use fdx::FdxRequest;
pub use http::UpstreamClient;
pub use onetrust::{OneTrustRequest, OneTrustTenantRequest};
pub use policy::UpstreamPolicy;

/// Client credentials read from the credentials Secret. Neither value can be printed.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub client_id: SecretString,
    pub client_secret: SecretString,
    /// `resourceVersion` of the Secret they were read from.
    pub version: String,
    /// The provider hosts the Secret's owner allows them to be sent to.
    pub allowed_hosts: crate::api::hosts::HostPatterns,
}

/// A token fresh from a provider, already checked to be a usable JWT.
#[derive(Clone, Debug)]
pub struct FetchedToken {
    pub token: Token,
    pub fetched_at: Timestamp,
    /// On this node's clock (see `token`: a token is judged by its own clock).
    pub expires_at: Option<Timestamp>,
    /// How far the provider's clock was ahead of this node's, when the token tells.
    pub provider_clock_ahead: Option<jiff::SignedDuration>,
    /// OneTrust: the collection point version the token belongs to.
    pub collection_point_version: Option<i64>,
}

/// A validated request to one provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    OneTrust(OneTrustRequest),
    Fdx(FdxRequest),
}

impl Source {
    /// Builds and checks the request a spec's provider describes, without sending anything.
    pub fn new(provider: &ProviderSource, policy: &UpstreamPolicy) -> Result<Self, Error> {
        Ok(match provider {
            ProviderSource::OneTrust(source) => Self::OneTrust(OneTrustRequest::new(source, policy)?),
            ProviderSource::Fdx(source) => Self::Fdx(FdxRequest::new(source, policy)?),
        })
    }

    /// Everything that decides which token comes back; personal data in it, so only ever hashed.
    pub fn identity(&self) -> String {
        match self {
            Self::OneTrust(request) => request.identity(),
            Self::Fdx(request) => request.identity(),
        }
    }

    /// The host credentials are sent to (without port): what a credentials Secret must allow.
    pub fn host(&self) -> &str {
        match self {
            Self::OneTrust(request) => request.host(),
            Self::Fdx(request) => request.host(),
        }
    }

    /// The port credentials are sent to.
    pub fn port(&self) -> u16 {
        match self {
            Self::OneTrust(request) => request.port(),
            Self::Fdx(request) => request.port(),
        }
    }
}

/// A provider object's endpoint, checked against the policy without sending anything.
#[derive(Debug, Clone, PartialEq)]
pub enum ValidEndpoint {
    OneTrust(OneTrustTenantRequest),
    Fdx { host: String, port: u16 },
}

impl ValidEndpoint {
    pub fn new(endpoint: crate::api::crd::Endpoint<'_>, policy: &UpstreamPolicy) -> Result<Self, Error> {
        Ok(match endpoint {
            crate::api::crd::Endpoint::OneTrust(tenant) => {
                Self::OneTrust(OneTrustTenantRequest::new(&tenant.hostname, policy)?)
            }
            crate::api::crd::Endpoint::Fdx(endpoint) => {
                let base = url::Url::parse(&endpoint.base_url)
                    .map_err(|_| Error::InvalidSpec("spec.fdx.baseUrl is not an absolute URL".into()))?;
                policy.check_url(&base, "spec.fdx.baseUrl")?;
                Self::Fdx {
                    host: base.host_str().unwrap_or_default().to_owned(),
                    port: base.port_or_known_default().unwrap_or(443),
                }
            }
        })
    }

    /// The host credentials are sent to (without port): what a credentials Secret must allow.
    pub fn host(&self) -> &str {
        match self {
            Self::OneTrust(tenant) => tenant.host(),
            Self::Fdx { host, .. } => host,
        }
    }

    /// The port credentials are sent to.
    pub fn port(&self) -> u16 {
        match self {
            Self::OneTrust(tenant) => tenant.port(),
            Self::Fdx { port, .. } => *port,
        }
    }
}

/// Fetches tokens from whichever provider a [`Source`] names.
pub struct Providers {
    onetrust: onetrust::OneTrustClient,
    fdx: fdx::FdxClient,
}

impl Providers {
    pub fn new(
        args: &UpstreamArgs,
        policy: Arc<UpstreamPolicy>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, http::SetupError> {
        let upstream = Arc::new(UpstreamClient::new(args, policy, metrics)?);
        Ok(Self { onetrust: onetrust::OneTrustClient::new(upstream.clone()), fdx: fdx::FdxClient::new(upstream) })
    }

    /// What a provider object's Ready condition says when its credentials work: for OneTrust,
    /// an access token was obtained (or is cached) with them; for FDX, whose only call mints a
    /// customer's token, that they were found and allowed (checked for real at each fetch).
    /// `namespace` is the provider object's (empty for a ClusterConsentProvider).
    pub async fn check(
        &self,
        endpoint: &ValidEndpoint,
        credentials: &Credentials,
        namespace: &str,
    ) -> Result<&'static str, Error> {
        match endpoint {
            ValidEndpoint::OneTrust(tenant) => {
                self.onetrust.obtain_access_token(tenant, credentials, namespace).await.map(|()| "AccessTokenObtained")
            }
            ValidEndpoint::Fdx { .. } => Ok("CredentialsValid"),
        }
    }

    /// A token for a ConsentToken of `namespace` (its share of the providers' quotas).
    pub async fn fetch(
        &self,
        source: &Source,
        credentials: &Credentials,
        namespace: &str,
    ) -> Result<FetchedToken, Error> {
        match source {
            Source::OneTrust(request) => self.onetrust.fetch(request, credentials, namespace).await,
            Source::Fdx(request) => self.fdx.fetch(request, credentials, namespace).await,
        }
    }
}
