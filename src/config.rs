//! The operator's command line. Every flag has an environment variable fallback, so the
//! Helm chart and plain manifests configure it the same way.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Keeps consent-platform tokens (OneTrust, MX / FDX) fresh in Kubernetes Secrets.
#[derive(Debug, Clone, Parser)]
#[command(name = "consent-token-operator", version)]
pub struct Config {
    /// Namespaces to watch, comma-separated. Empty: the whole cluster. With a list, the
    /// operator only needs Roles in those namespaces.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',', default_value = "")]
    pub namespaces: Vec<String>,

    /// ConsentTokens reconciled at the same time (per watched namespace).
    #[arg(long, env = "CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Writes per second to the Kubernetes API, sustained (Secrets, statuses, events).
    #[arg(long, env = "KUBE_API_QPS", default_value_t = 50)]
    pub kube_api_qps: u32,

    /// Writes allowed in a burst above --kube-api-qps.
    #[arg(long, env = "KUBE_API_BURST", default_value_t = 100)]
    pub kube_api_burst: u32,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log level (error, warn, info, debug, trace) or a tracing filter such as
    /// `consent_token_operator=debug,kube=info`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// PEM file of extra CA certificates to trust for provider connections (besides the
    /// public web roots), for providers behind a private CA.
    #[arg(long, env = "EXTRA_CA_BUNDLE")]
    pub extra_ca_bundle: Option<PathBuf>,

    /// Allow plain http:// provider URLs. For local development against a fake provider only:
    /// credentials and tokens would cross the network unencrypted.
    #[arg(long, env = "ALLOW_INSECURE_HTTP", default_value_t = false)]
    pub allow_insecure_http: bool,

    /// Deadline for one provider request, answer included (e.g. 10s).
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Run only while holding a Lease, so that of several replicas exactly one writes.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "consent-token-operator")]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (in a cluster: the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// How long a leader's Lease stays valid without renewal; a standby takes over within it.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// This replica's identity in the Lease (in a cluster: the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// After a start, spread overdue renewals of still-valid tokens over up to this long
    /// (e.g. 60s), so a restart does not send every request at once.
    #[arg(long, env = "OVERDUE_SPREAD", default_value = "60s", value_parser = parse_duration)]
    pub overdue_spread: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::schedule::parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration such as 10s, 2m or 1h"))
}

impl Config {
    /// Watched namespaces with empty entries (from an empty variable) removed.
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces.iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_namespace_list() {
        let config = Config::try_parse_from(["op"]).unwrap();
        assert!(config.watched_namespaces().is_empty());
        assert!(!config.allow_insecure_http);
        let config = Config::try_parse_from(["op", "--namespaces", "a,b", "--upstream-timeout", "2s"]).unwrap();
        assert_eq!(config.watched_namespaces(), ["a", "b"]);
        assert_eq!(config.upstream_timeout, Duration::from_secs(2));
        assert!(Config::try_parse_from(["op", "--overdue-spread", "soon"]).is_err());
    }
}
