//! Every way a reconcile can fail, each with the condition reason users see and a stable
//! label for metrics. Messages never contain a token, a client secret, a customer id or an
//! upstream response body: they are built only from facts the operator chose to show.

use std::time::Duration;

use crate::api::hosts::AddressClass;
use crate::api::rate_limit::RateLimit;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("credentials Secret {secret:?} was not found in namespace {namespace:?}")]
    CredentialsNotFound { secret: String, namespace: String },

    #[error(
        "{kind} {name:?} named in spec.providerRef does not exist{}",
        if *.kind == "ConsentProvider" { " in the ConsentToken's namespace" } else { "" }
    )]
    ProviderNotFound { kind: &'static str, name: String },

    #[error(
        "ClusterConsentProvider {provider:?} does not allow this namespace (its spec.allowedNamespaces); nothing was sent. Ask its owner to add the namespace, or use another provider"
    )]
    NamespaceNotAllowed { provider: String },

    /// The value asked for is not named: a customer id is personal data.
    #[error(
        "{provider} allows only the {what} in its {list}, and this ConsentToken's is not one of them; nothing was sent. Ask the provider's owner to add it, or use another provider"
    )]
    RequestNotAllowed { provider: String, what: &'static str, list: &'static str },

    #[error(
        "the credentials Secret is in namespace {namespace:?}, which this operator does not watch (--namespaces); put it in the operator's namespace or a watched one"
    )]
    CredentialsNamespaceNotWatched { namespace: String },

    #[error("credentials Secret {secret:?} has no non-empty key {key:?}")]
    CredentialsKeyMissing { secret: String, key: String },

    #[error("{}", credentials_not_allowed(.asked_by, .secret, .host, .listed.as_deref()))]
    CredentialsNotAllowed {
        /// Who asked, as "ConsentToken team/app": the Secret's owner decides whether to allow it.
        asked_by: String,
        secret: String,
        host: String,
        listed: Option<String>,
    },

    #[error(
        "the operator may not call provider host {host:?}: the cluster admin allows only {allowed:?} (operator flag --allowed-provider-hosts, Helm value allowedProviderHosts)"
    )]
    ProviderNotAllowed { host: String, allowed: String },

    #[error(
        "the operator may not call port {port} of provider host {host:?}: the cluster admin allows only ports {allowed} (operator flag --allowed-provider-ports, Helm value allowedProviderPorts)"
    )]
    PortNotAllowed { host: String, port: u16, allowed: String },

    #[error("{}", match .0 {
        AddressClass::Private => "the provider host is at a loopback or private address, which the operator connects to only in networks the cluster admin allows (operator flag --allowed-private-networks, Helm value allowedPrivateNetworks)",
        _ => "the provider host is at a link-local or cloud-metadata address, which the operator never connects to",
    })]
    AddressNotAllowed(AddressClass),

    #[error("the provider refused the credentials (HTTP {status}); check the credentials Secret")]
    Unauthorized { status: u16 },

    #[error(
        "the provider refused access (HTTP {status}): the credentials lack the scope or organisation for this request (OneTrust: a credential with the CONSENT scope in the collection point's organisation)"
    )]
    Forbidden { status: u16 },

    #[error("the provider rejected the request (HTTP {status}); check the ConsentToken's spec")]
    Rejected { status: u16 },

    #[error(
        "OneTrust's OAuth token endpoint rejected the request for an access token (HTTP {status}); check the credentials Secret (client id and secret) and that the OneTrust credential is active"
    )]
    OAuthRejected { status: u16 },

    #[error("the provider is rate limiting requests; next attempt after {}s{}", .0.retry_after.as_secs(),
        if .0.capped { " (it asked to wait longer than a day; the operator waits at most a day)" } else { "" })]
    RateLimited(Box<RateLimit>),

    #[error(
        "this namespace has used its share of the provider account's rate limit ({share} requests in {}s, shared by {sharing} namespaces); nothing was sent, next attempt in {}s",
        .period.as_secs(), .retry_in.as_secs()
    )]
    QuotaShareUsed { retry_in: Duration, share: u32, period: Duration, sharing: usize },

    #[error("the provider answered HTTP {status}{}", match .retry_after {
        Some(wait) => format!(" and asked to wait {}s", wait.as_secs()),
        None => String::new(),
    })]
    UpstreamStatus { status: u16, retry_after: Option<Duration> },

    #[error(
        "as many requests as allowed are under way to this provider host (--upstream-concurrency-per-host); queued"
    )]
    HostBusy,

    #[error(
        "as many provider requests as one namespace may have under way are under way for this namespace (--upstream-concurrency-per-namespace); queued"
    )]
    NamespaceBusy,

    #[error("the provider host is failing; requests to it are paused and it is probed again in {}s", .retry_in.as_secs())]
    HostFailing { retry_in: Duration },

    #[error("the provider could not be reached: {0}")]
    Transport(&'static str),

    #[error("the provider's answer is not a usable token: {0}")]
    InvalidResponse(&'static str),

    #[error(
        "Secret {secret:?} exists and is not managed by this ConsentToken; delete it, set spec.target.secretName to another name, or, to take it over with no gap for the pods that mount it, its owner annotates it: kubectl annotate secret {secret} consent.dev/adopt-by={consent_token}"
    )]
    TargetConflict { secret: String, consent_token: String },

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
    /// Nothing was sent: the host is busy or paused; look again after this long (plus a little).
    Soon(Duration),
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
            Self::CredentialsNotFound { .. }
            | Self::CredentialsKeyMissing { .. }
            | Self::CredentialsNamespaceNotWatched { .. } => "CredentialsNotFound",
            Self::ProviderNotFound { .. } => "ProviderNotFound",
            Self::NamespaceNotAllowed { .. } => "NamespaceNotAllowed",
            Self::RequestNotAllowed { .. } => "RequestNotAllowed",
            Self::CredentialsNotAllowed { .. } => "CredentialsNotAllowed",
            Self::ProviderNotAllowed { .. } | Self::PortNotAllowed { .. } => "ProviderNotAllowed",
            Self::AddressNotAllowed(_) => "ProviderAddressNotAllowed",
            Self::Unauthorized { .. } => "Unauthorized",
            Self::Forbidden { .. } => "Forbidden",
            Self::Rejected { .. } | Self::OAuthRejected { .. } => "UpstreamRejected",
            Self::RateLimited(_) | Self::QuotaShareUsed { .. } => "RateLimited",
            Self::UpstreamStatus { .. }
            | Self::Transport(_)
            | Self::HostBusy
            | Self::NamespaceBusy
            | Self::HostFailing { .. } => "UpstreamError",
            Self::InvalidResponse(_) => "InvalidResponse",
            Self::TargetConflict { .. } => "TargetConflict",
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::Internal(_) => "InternalError",
            Self::Kube(_) => "KubernetesError",
        }
    }

    /// A stable snake_case label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::CredentialsNotFound { .. } => "credentials_not_found",
            Self::CredentialsNamespaceNotWatched { .. } => "credentials_namespace_not_watched",
            Self::ProviderNotFound { .. } => "provider_not_found",
            Self::NamespaceNotAllowed { .. } => "namespace_not_allowed",
            Self::RequestNotAllowed { .. } => "request_not_allowed",
            Self::CredentialsKeyMissing { .. } => "credentials_key_missing",
            Self::CredentialsNotAllowed { .. } => "credentials_not_allowed",
            Self::ProviderNotAllowed { .. } => "provider_not_allowed",
            Self::PortNotAllowed { .. } => "port_not_allowed",
            Self::NamespaceBusy => "namespace_busy",
            Self::AddressNotAllowed(_) => "address_not_allowed",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::Rejected { .. } => "upstream_rejected",
            Self::OAuthRejected { .. } => "oauth_rejected",
            Self::RateLimited(_) => "rate_limited",
            Self::QuotaShareUsed { .. } => "quota_share_used",
            Self::UpstreamStatus { .. } => "upstream_status",
            Self::HostBusy => "host_busy",
            Self::HostFailing { .. } => "host_failing",
            Self::Transport(_) => "transport",
            Self::InvalidResponse(_) => "invalid_response",
            Self::TargetConflict { .. } => "target_conflict",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::Internal(_) => "internal",
            Self::Kube(_) => "kubernetes",
        }
    }

    pub fn retry_class(&self) -> RetryClass {
        match self {
            Self::RateLimited(limit) => RetryClass::After(limit.retry_after),
            Self::QuotaShareUsed { retry_in, .. } => RetryClass::After(*retry_in),
            Self::UpstreamStatus { retry_after: Some(wait), .. } => RetryClass::After(*wait),
            Self::HostBusy | Self::NamespaceBusy => RetryClass::Soon(Duration::from_secs(1)),
            Self::HostFailing { retry_in } => RetryClass::Soon(*retry_in),
            Self::UpstreamStatus { .. }
            | Self::Transport(_)
            | Self::InvalidResponse(_)
            | Self::Internal(_)
            | Self::Kube(_) => RetryClass::Transient,
            Self::CredentialsNotFound { .. }
            | Self::CredentialsNamespaceNotWatched { .. }
            | Self::ProviderNotFound { .. }
            | Self::NamespaceNotAllowed { .. }
            | Self::RequestNotAllowed { .. }
            | Self::CredentialsKeyMissing { .. }
            | Self::CredentialsNotAllowed { .. }
            | Self::ProviderNotAllowed { .. }
            | Self::PortNotAllowed { .. }
            | Self::AddressNotAllowed(_)
            | Self::Unauthorized { .. }
            | Self::Forbidden { .. }
            | Self::Rejected { .. }
            | Self::OAuthRejected { .. }
            | Self::TargetConflict { .. }
            | Self::InvalidSpec(_) => RetryClass::Configuration,
        }
    }
}

/// What a ConsentToken's author reads when the credentials Secret does not allow the host: the
/// exact annotation its owner has to add.
/// Addressed to the Secret's owner as much as to the asker: it names who asks and where the
/// values would go, and says to allow it only if that use is intended (the asker chose the host).
fn credentials_not_allowed(asked_by: &str, secret: &str, host: &str, listed: Option<&str>) -> String {
    let annotation = crate::api::hosts::ALLOWED_HOSTS_ANNOTATION;
    match listed {
        None => format!(
            "{asked_by} asks to send credentials Secret {secret:?} to {host}, and the Secret is not marked for use by ConsentTokens. Only if its owner intends this use, they annotate it with the provider hosts its values may be sent to: kubectl annotate secret {secret} {annotation}={host}"
        ),
        Some(listed) => format!(
            "{asked_by} asks to send credentials Secret {secret:?} to {host}, and its {annotation} annotation allows only {listed:?}. Only if its owner intends this use, they add {host} there"
        ),
    }
}

impl Error {
    /// Whether the operator sent nothing, to share out hosts and quotas (see
    /// `provider::host_guard`, `provider::namespace_slots`, `provider::account_shares`).
    pub fn was_held(&self) -> bool {
        matches!(self, Self::HostBusy | Self::NamespaceBusy | Self::HostFailing { .. } | Self::QuotaShareUsed { .. })
    }

    /// The same failure again, for every caller that shares one attempt's result (a failed
    /// OAuth request is answered to all who waited for it). Kubernetes errors are not shared.
    pub fn duplicate(&self) -> Self {
        match self {
            Self::CredentialsNotFound { secret, namespace } => {
                Self::CredentialsNotFound { secret: secret.clone(), namespace: namespace.clone() }
            }
            Self::CredentialsNamespaceNotWatched { namespace } => {
                Self::CredentialsNamespaceNotWatched { namespace: namespace.clone() }
            }
            Self::ProviderNotFound { kind, name } => Self::ProviderNotFound { kind, name: name.clone() },
            Self::NamespaceNotAllowed { provider } => Self::NamespaceNotAllowed { provider: provider.clone() },
            Self::RequestNotAllowed { provider, what, list } => {
                Self::RequestNotAllowed { provider: provider.clone(), what, list }
            }
            Self::CredentialsKeyMissing { secret, key } => {
                Self::CredentialsKeyMissing { secret: secret.clone(), key: key.clone() }
            }
            Self::CredentialsNotAllowed { asked_by, secret, host, listed } => Self::CredentialsNotAllowed {
                asked_by: asked_by.clone(),
                secret: secret.clone(),
                host: host.clone(),
                listed: listed.clone(),
            },
            Self::PortNotAllowed { host, port, allowed } => {
                Self::PortNotAllowed { host: host.clone(), port: *port, allowed: allowed.clone() }
            }
            Self::ProviderNotAllowed { host, allowed } => {
                Self::ProviderNotAllowed { host: host.clone(), allowed: allowed.clone() }
            }
            Self::AddressNotAllowed(class) => Self::AddressNotAllowed(*class),
            Self::Unauthorized { status } => Self::Unauthorized { status: *status },
            Self::Forbidden { status } => Self::Forbidden { status: *status },
            Self::Rejected { status } => Self::Rejected { status: *status },
            Self::OAuthRejected { status } => Self::OAuthRejected { status: *status },
            Self::RateLimited(limit) => Self::RateLimited(limit.clone()),
            Self::QuotaShareUsed { retry_in, share, period, sharing } => {
                Self::QuotaShareUsed { retry_in: *retry_in, share: *share, period: *period, sharing: *sharing }
            }
            Self::UpstreamStatus { status, retry_after } => {
                Self::UpstreamStatus { status: *status, retry_after: *retry_after }
            }
            Self::HostBusy => Self::HostBusy,
            Self::NamespaceBusy => Self::NamespaceBusy,
            Self::HostFailing { retry_in } => Self::HostFailing { retry_in: *retry_in },
            Self::Transport(what) => Self::Transport(what),
            Self::InvalidResponse(what) => Self::InvalidResponse(what),
            Self::TargetConflict { secret, consent_token } => {
                Self::TargetConflict { secret: secret.clone(), consent_token: consent_token.clone() }
            }
            Self::InvalidSpec(message) => Self::InvalidSpec(message.clone()),
            Self::Internal(what) => Self::Internal(what),
            Self::Kube(_) => Self::Internal("a Kubernetes API failure seen by another reconcile"),
        }
    }
}

#[cfg(test)]
mod tests;
