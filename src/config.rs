//! The operator's command line, in groups that are handed as they are to the part they
//! configure.
//!
//! One name per setting, in three spellings: the flag (`--kube-api-qps`), its environment
//! variable (`CONSENT_` and the flag in capitals: `CONSENT_KUBE_API_QPS`) and the chart value
//! (the flag's words in camelCase, nested under the chart's group when the flag starts with its
//! name: `kubeApi.qps`). The chart sets the variables; `tests/chart.rs` checks that every
//! variable it sets is one of these.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};

use crate::api::hosts::{HostPatterns, PrivateNetworks, ProviderPorts};
use crate::api::proxy::{NoProxy, ProxyUrl};

/// Keeps consent-platform tokens (OneTrust, MX / FDX) fresh in Kubernetes Secrets.
#[derive(Debug, Clone, Parser)]
#[command(name = "consent-token-operator", version)]
pub struct Config {
    #[command(flatten)]
    pub controller: ControllerArgs,
    #[command(flatten)]
    pub kube_api: KubeApiArgs,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub logging: LogArgs,
}

/// What is watched and how much is reconciled at once.
#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// Namespaces to watch, comma-separated. Empty: the whole cluster. With a list, the
    /// operator only needs Roles in those namespaces.
    #[arg(
        long = "watch-namespaces",
        alias = "namespaces",
        env = "CONSENT_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,

    /// ConsentTokens reconciled at the same time (per watched namespace).
    #[arg(long, env = "CONSENT_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// After a start, spread overdue renewals of still-valid tokens over up to this long
    /// (e.g. 60s), so a restart does not send every request at once.
    #[arg(long, env = "CONSENT_OVERDUE_SPREAD", default_value = "60s", value_parser = parse_duration)]
    pub overdue_spread: Duration,

    /// A token that lives less than this is never written: a Secret mounted as a volume reaches
    /// pods 60 to 90 seconds after it changes, so it would expire on the way (e.g. 90s).
    #[arg(long, env = "CONSENT_MIN_TOKEN_LIFETIME", default_value = "90s", value_parser = parse_duration)]
    pub min_token_lifetime: Duration,

    /// The least time between a token's last fetch (or failed attempt) and a fetch forced by
    /// its `consent.dev/refresh-requested-at` annotation; a request that comes sooner is served
    /// then, and `status.nextRefreshTime` says when. It keeps a loop of requests from spending
    /// the provider quota every namespace on the account shares (e.g. 30s).
    #[arg(long, env = "CONSENT_MIN_REFRESH_REQUEST_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub min_refresh_request_interval: Duration,

    /// The operator's own namespace, where a ClusterConsentProvider's credentials Secret is
    /// looked for when it names no `credentialsNamespace`. Default: the Lease's namespace
    /// (`--lease-namespace`, in a cluster the pod's namespace).
    #[arg(long, env = "CONSENT_OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,
}

impl ControllerArgs {
    /// Watched namespaces with empty entries (from an empty variable) removed.
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces.iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect()
    }
}

/// The operator's own write rate to the Kubernetes API.
#[derive(Debug, Clone, Args)]
pub struct KubeApiArgs {
    /// Writes per second to the Kubernetes API, sustained (Secrets, statuses, events).
    #[arg(long = "kube-api-qps", env = "CONSENT_KUBE_API_QPS", default_value_t = 50)]
    pub qps: u32,

    /// Writes allowed in a burst above --kube-api-qps.
    #[arg(long = "kube-api-burst", env = "CONSENT_KUBE_API_BURST", default_value_t = 100)]
    pub burst: u32,
}

/// How providers are called.
#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    /// PEM file of extra CA certificates to trust for provider connections (besides the
    /// public web roots), for providers behind a private CA.
    #[arg(long, env = "CONSENT_EXTRA_CA_BUNDLE")]
    pub extra_ca_bundle: Option<PathBuf>,

    /// Allow plain http:// provider URLs. For local development against a fake provider only:
    /// credentials and tokens would cross the network unencrypted.
    #[arg(long, env = "CONSENT_ALLOW_INSECURE_HTTP", default_value_t = false)]
    pub allow_insecure_http: bool,

    /// Provider hosts ConsentTokens may name, comma-separated: `*` (any host, the default),
    /// exact names (`app-eu.onetrust.com`) or `*.suffix` (`*.onetrust.com`).
    #[arg(long, env = "CONSENT_ALLOWED_PROVIDER_HOSTS", default_value = "*")]
    pub allowed_provider_hosts: HostPatterns,

    /// Ports provider URLs may name, comma-separated (`443,8443`), or `*` for any. A ConsentToken
    /// naming another port is refused before anything is sent.
    #[arg(long, env = "CONSENT_ALLOWED_PROVIDER_PORTS", default_value = "443")]
    pub allowed_provider_ports: ProviderPorts,

    /// Loopback, private and cluster-internal networks providers may be in, as CIDRs,
    /// comma-separated (`10.20.0.0/16`, `127.0.0.0/8,::1/128`). Default: none, so only public
    /// addresses are called. Link-local and cloud-metadata addresses are refused whatever this says.
    #[arg(long, env = "CONSENT_ALLOWED_PRIVATE_NETWORKS", default_value = "")]
    pub allowed_private_networks: PrivateNetworks,

    /// Requests under way to one provider host at most. Keep it below --concurrency, so a host
    /// that answers slowly (or not at all) cannot hold every reconcile.
    #[arg(long, env = "CONSENT_UPSTREAM_CONCURRENCY_PER_HOST", default_value_t = 8)]
    pub upstream_concurrency_per_host: u16,

    /// Provider requests under way for the ConsentTokens of one namespace at most, while
    /// another namespace has asked a provider within the last minute (alone, a namespace gets
    /// every worker). Keep it below --concurrency: a namespace whose hosts answer slowly (or not
    /// at all) then holds at most this many reconciles, and the rest serve other namespaces.
    #[arg(long, env = "CONSENT_UPSTREAM_CONCURRENCY_PER_NAMESPACE", default_value_t = 8)]
    pub upstream_concurrency_per_namespace: u16,

    /// An HTTP proxy every https request to a provider goes through (`CONNECT`), for clusters
    /// that reach the internet only that way: `http://HOST:PORT` (or `https://`). The host and
    /// port rules above are checked before the tunnel is asked for; the address rules, which
    /// need the provider's address, become the proxy's job (the proxy resolves the name).
    /// Credentials never go in the URL: see --https-proxy-username. Not read from HTTPS_PROXY.
    #[arg(long, env = "CONSENT_HTTPS_PROXY")]
    pub https_proxy: Option<ProxyUrl>,

    /// Provider hosts called directly, not through --https-proxy, comma-separated as no_proxy
    /// is: `*`, names (each also covering its subdomains; `.bank.example` means the same) or IP
    /// addresses. They keep every address rule.
    #[arg(long, env = "CONSENT_NO_PROXY", default_value = "")]
    pub no_proxy: NoProxy,

    /// User name for the proxy (Basic authentication). Set it, and the password, from a Secret
    /// (the chart's `upstream.proxyCredentialsSecret`).
    #[arg(long, env = "CONSENT_HTTPS_PROXY_USERNAME", hide_env_values = true, requires = "https_proxy_password")]
    pub https_proxy_username: Option<String>,

    /// Password for the proxy. Give it through the environment, from a Secret, not on the
    /// command line (where `ps` shows it).
    #[arg(long, env = "CONSENT_HTTPS_PROXY_PASSWORD", hide_env_values = true, value_parser = secret_value, requires = "https_proxy_username")]
    pub https_proxy_password: Option<secrecy::SecretString>,

    /// Deadline for one provider request, answer included (e.g. 10s).
    #[arg(long, env = "CONSENT_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
}

/// Leader election on a Lease.
#[derive(Debug, Clone, Args)]
pub struct LeaderElectionArgs {
    /// Run only while holding a Lease, so that of several replicas exactly one writes.
    #[arg(long = "leader-election", env = "CONSENT_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "CONSENT_LEASE_NAME", default_value = "consent-token-operator")]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (in a cluster: the operator's own namespace).
    #[arg(long, env = "CONSENT_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// How long a leader's Lease stays valid without renewal; a standby takes over within it.
    #[arg(long, env = "CONSENT_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// This replica's identity in the Lease (in a cluster: the pod name).
    #[arg(long, env = "CONSENT_IDENTITY")]
    pub identity: Option<String>,
}

/// The HTTP server for metrics and probes.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address of the HTTP server for /metrics, /healthz and /readyz. The default, `[::]`,
    /// takes IPv4 and IPv6 (IPv4 only where the node has no IPv6).
    #[arg(long, env = "CONSENT_METRICS_ADDR", default_value = "[::]:8080")]
    pub metrics_addr: SocketAddr,
}

/// Logging.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log level (error, warn, info, debug, trace) or a tracing filter such as
    /// `consent_token_operator=debug,kube=info`. Unset: `RUST_LOG` if set, else `info`. A value
    /// that is neither is refused at start.
    #[arg(long, env = "CONSENT_LOG_LEVEL", value_parser = parse_log_filter)]
    pub log_level: Option<String>,

    /// Log format: `text`, or `json` (one object a line; a reconcile's lines carry the
    /// ConsentToken's `namespace` and `name` as top-level members, the event's fields are under
    /// `fields`).
    #[arg(long, env = "CONSENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub use crate::observability::logging::LogFormat;

/// A secret given on the command line or in the environment, kept so it cannot be printed.
fn secret_value(text: &str) -> Result<secrecy::SecretString, std::convert::Infallible> {
    Ok(secrecy::SecretString::from(text))
}

impl LogArgs {
    /// The filter to log with: `--log-level`, else `rust_log` (the `RUST_LOG` variable), else
    /// `info`; an error names the value that is not a filter.
    pub fn filter(&self, rust_log: Option<&str>) -> Result<String, String> {
        match (&self.log_level, rust_log) {
            (Some(level), _) => Ok(level.clone()),
            (None, Some(rust_log)) => parse_log_filter(rust_log).map_err(|e| format!("RUST_LOG: {e}")),
            (None, None) => Ok("info".to_owned()),
        }
    }
}

fn parse_log_filter(text: &str) -> Result<String, String> {
    let refused = || {
        format!(
            "{text:?} is not a log level (off, error, warn, info, debug, trace) or a filter such as consent_token_operator=debug"
        )
    };
    // A bare word would be taken as a module name to log at every level: only levels are.
    let bare = !text.contains(['=', ',', ':', '[']);
    if bare && !["off", "error", "warn", "info", "debug", "trace"].contains(&text.trim().to_lowercase().as_str()) {
        return Err(refused());
    }
    tracing_subscriber::EnvFilter::try_new(text).map(|_| text.to_owned()).map_err(|_| refused())
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::scheduling::schedule::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 10s, 2m or 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_namespace_list() {
        let config = Config::try_parse_from(["op"]).unwrap();
        assert!(config.controller.watched_namespaces().is_empty());
        assert!(!config.upstream.allow_insecure_http);
        assert!(config.leader_election.enabled);
        let config = Config::try_parse_from(["op", "--namespaces", "a,b", "--upstream-timeout", "2s"]).unwrap();
        assert_eq!(config.controller.watched_namespaces(), ["a", "b"]);
        assert_eq!(config.upstream.upstream_timeout, Duration::from_secs(2));
        assert!(Config::try_parse_from(["op", "--overdue-spread", "soon"]).is_err());
        let config = Config::try_parse_from(["op", "--leader-election", "false", "--kube-api-qps", "7"]).unwrap();
        assert!(!config.leader_election.enabled);
        assert_eq!(config.kube_api.qps, 7);
    }

    #[test]
    fn the_log_filter_comes_from_the_flag_then_rust_log_and_a_bad_one_is_refused() {
        let config = Config::try_parse_from(["op"]).unwrap();
        assert_eq!(config.logging.filter(None).unwrap(), "info");
        assert_eq!(config.logging.filter(Some("kube=debug")).unwrap(), "kube=debug");
        assert!(config.logging.filter(Some("verbose")).is_err(), "a bare word that is not a level");
        let config = Config::try_parse_from(["op", "--log-level", "warn"]).unwrap();
        assert_eq!(config.logging.filter(Some("trace")).unwrap(), "warn", "the flag wins");
        let err = Config::try_parse_from(["op", "--log-level", "verbose"]).unwrap_err().to_string();
        assert!(err.contains("is not a log level"), "{err}");
    }
}
