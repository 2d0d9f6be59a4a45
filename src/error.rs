//! Every way a reconcile can fail, each with the condition reason users see and a stable
//! label for metrics. Messages never contain a token, a client secret, a customer id or an
//! upstream response body: they are built only from facts the operator chose to show.

use std::time::Duration;

use crate::hosts::AddressClass;
use crate::rate_limit::RateLimit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("credentials Secret {0:?} was not found in the ConsentToken's namespace")]
    CredentialsNotFound(String),

    #[error("credentials Secret {secret:?} has no non-empty key {key:?}")]
    CredentialsKeyMissing { secret: String, key: String },

    #[error("{}", credentials_not_allowed(.secret, .host, .listed.as_deref()))]
    CredentialsNotAllowed { secret: String, host: String, listed: Option<String> },

    #[error(
        "the operator may not call provider host {host:?}: the cluster admin allows only {allowed:?} (operator flag --allowed-provider-hosts, Helm value upstream.allowedProviderHosts)"
    )]
    ProviderNotAllowed { host: String, allowed: String },

    #[error("{}", match .0 {
        AddressClass::Private => "the provider host is at a loopback or private address, which the operator connects to only in networks the cluster admin allows (operator flag --allowed-private-networks, Helm value upstream.allowedPrivateNetworks)",
        _ => "the provider host is at a link-local or cloud-metadata address, which the operator never connects to",
    })]
    AddressNotAllowed(AddressClass),

    #[error("the provider refused the credentials (HTTP {status}); check the credentials Secret")]
    Unauthorized { status: u16 },

    #[error("the provider rejected the request (HTTP {status}); check the ConsentToken's spec")]
    Rejected { status: u16 },

    #[error("the provider is rate limiting requests; next attempt after {}s", .0.retry_after.as_secs())]
    RateLimited(Box<RateLimit>),

    #[error("the provider answered HTTP {status}")]
    UpstreamStatus { status: u16 },

    #[error("the provider could not be reached: {0}")]
    Transport(&'static str),

    #[error("the provider's answer is not a usable token: {0}")]
    InvalidResponse(&'static str),

    #[error(
        "Secret {0:?} exists and is not managed by this ConsentToken; delete it or set spec.target.secretName to another name"
    )]
    TargetConflict(String),

    #[error("{0}")]
    InvalidSpec(String),

    /// A request the operator could not build: a defect, not something a user can fix.
    #[error("internal error: {0}")]
    Internal(&'static str),

    #[error("Kubernetes API request failed: {0}")]
    Kube(#[source] Box<kube::Error>),
}

impl From<kube::Error> for Error {
    fn from(err: kube::Error) -> Self {
        Self::Kube(Box::new(err))
    }
}

/// How soon a failed refresh may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// The provider said when: wait exactly that long.
    After(Duration),
    /// Likely to pass on its own (5xx, timeouts, garbage): exponential backoff.
    Transient,
    /// Needs a person to fix the spec, the credentials or the target (a change triggers a
    /// retry at once): slow backoff so it never hot-loops.
    Configuration,
}

impl Error {
    /// The `Ready` condition reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CredentialsNotFound(_) | Self::CredentialsKeyMissing { .. } => "CredentialsNotFound",
            Self::CredentialsNotAllowed { .. } => "CredentialsNotAllowed",
            Self::ProviderNotAllowed { .. } => "ProviderNotAllowed",
            Self::AddressNotAllowed(_) => "ProviderAddressNotAllowed",
            Self::Unauthorized { .. } => "Unauthorized",
            Self::Rejected { .. } => "UpstreamRejected",
            Self::RateLimited(_) => "RateLimited",
            Self::UpstreamStatus { .. } | Self::Transport(_) => "UpstreamError",
            Self::InvalidResponse(_) => "InvalidResponse",
            Self::TargetConflict(_) => "TargetConflict",
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::Internal(_) => "InternalError",
            Self::Kube(_) => "KubernetesError",
        }
    }

    /// A stable snake_case label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::CredentialsNotFound(_) => "credentials_not_found",
            Self::CredentialsKeyMissing { .. } => "credentials_key_missing",
            Self::CredentialsNotAllowed { .. } => "credentials_not_allowed",
            Self::ProviderNotAllowed { .. } => "provider_not_allowed",
            Self::AddressNotAllowed(_) => "address_not_allowed",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Rejected { .. } => "upstream_rejected",
            Self::RateLimited(_) => "rate_limited",
            Self::UpstreamStatus { .. } => "upstream_status",
            Self::Transport(_) => "transport",
            Self::InvalidResponse(_) => "invalid_response",
            Self::TargetConflict(_) => "target_conflict",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::Internal(_) => "internal",
            Self::Kube(_) => "kubernetes",
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            Self::RateLimited(limit) => RetryClass::After(limit.retry_after),
            Self::UpstreamStatus { .. }
            | Self::Transport(_)
            | Self::InvalidResponse(_)
            | Self::Internal(_)
            | Self::Kube(_) => RetryClass::Transient,
            Self::CredentialsNotFound(_)
            | Self::CredentialsKeyMissing { .. }
            | Self::CredentialsNotAllowed { .. }
            | Self::ProviderNotAllowed { .. }
            | Self::AddressNotAllowed(_)
            | Self::Unauthorized { .. }
            | Self::Rejected { .. }
            | Self::TargetConflict(_)
            | Self::InvalidSpec(_) => RetryClass::Configuration,
        }
    }
}

/// What a ConsentToken's author reads when the credentials Secret does not allow the host: the
/// exact annotation its owner has to add.
fn credentials_not_allowed(secret: &str, host: &str, listed: Option<&str>) -> String {
    match listed {
        None => format!(
            "credentials Secret {secret:?} is not marked for use by ConsentTokens; its owner must annotate it with the provider hosts its values may be sent to: kubectl annotate secret {secret} {}={host}",
            crate::hosts::ALLOWED_HOSTS_ANNOTATION
        ),
        Some(listed) => format!(
            "credentials Secret {secret:?} may not be sent to {host}: its {} annotation allows {listed:?}; its owner must add {host} there if this use is intended",
            crate::hosts::ALLOWED_HOSTS_ANNOTATION
        ),
    }
}
