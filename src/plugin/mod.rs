//! `kubectl consent`: the operator's kubectl plugin (binary `kubectl-consent`). It talks only
//! to the API server, as the user running it, with that user's permissions, through the
//! kubeconfig kubectl would use (`--kubeconfig`, `--context` as kubectl's flags).
//!
//! - `status [NAME] [-l SELECTOR] [-A] [-o json|yaml|wide]`: a table of ConsentTokens with time
//!   to expiry, next refresh (both from the target Secrets' annotations), reason and message, or
//!   the objects as a List;
//! - `refresh NAME | -l SELECTOR | --all`: asks for a new token (the refresh annotation), at a
//!   capped rate, and waits for the operator's answer;
//! - `inspect NAME`: the non-secret claims of the token in the target Secret (never the token);
//! - `status --providers`: the ConsentProviders and ClusterConsentProviders, Ready and users;
//! - `check`: the APIs served, a replica leading, the caller allowed to create ConsentTokens;
//! - `version [--client]`: the plugin's version and source revision and, when the cluster
//!   answers, the leading replica's (written on its Lease);
//! - `completion SHELL`: a completion script; and, run as `kubectl_complete-consent` (a link to
//!   the plugin), the candidates kubectl's own completion asks for.

mod check;
pub mod complete;
mod inspect;
mod providers;
mod refresh;
mod status;
mod version;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kube::api::ListParams;
use kube::{Api, Client};

use crate::api::crd::ConsentToken;

/// Look after ConsentTokens: their state, a refresh on demand, what their tokens say.
#[derive(Debug, Parser)]
#[command(name = "kubectl consent", bin_name = "kubectl consent", version)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// `-o`: how `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The ConsentTokens as a JSON `List`, as `kubectl get -o json`.
    Json,
    /// The same in YAML.
    Yaml,
    /// The table with the target Secret and the count of failed refreshes.
    Wide,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A table of ConsentTokens: Ready reason, time to expiry, next refresh, message.
    Status {
        /// One ConsentToken; without it, all of the namespace (or of the selector).
        name: Option<String>,
        #[command(flatten)]
        scope: Scope,
        /// Output format: json, yaml or wide (default: the table).
        #[arg(short = 'o', long, value_enum, conflicts_with = "providers")]
        output: Option<Output>,
        /// The ConsentProviders (of the namespace, or of all with -A) and ClusterConsentProviders
        /// instead: Ready, reason, how many ConsentTokens use each.
        #[arg(long, conflicts_with_all = ["name", "selector"])]
        providers: bool,
    },
    /// Check that ConsentTokens can work here for you: the APIs are served, a replica of the
    /// operator leads, and you may create ConsentTokens in the namespace. Exits 1 with the reason
    /// of the first check that fails.
    Check {
        /// Namespace (default: the kubeconfig context's).
        #[arg(short, long)]
        namespace: Option<String>,
        #[command(flatten)]
        installation: InstallationArgs,
    },
    /// Ask the operator for a new token now, and wait until it has answered.
    Refresh {
        /// One ConsentToken (or use --selector or --all).
        name: Option<String>,
        #[command(flatten)]
        scope: Scope,
        /// Every ConsentToken in the namespace (or with -A, the cluster).
        #[arg(long, conflicts_with_all = ["name", "selector"])]
        all: bool,
        /// Refresh requests sent per second at most: each may cost a provider request, and
        /// providers rate-limit.
        #[arg(long, default_value_t = 2.0, value_parser = positive)]
        rate: f64,
        /// How long to wait for the operator's answers (0s: do not wait).
        #[arg(long, default_value = "60s", value_parser = crate::config::parse_duration)]
        timeout: Duration,
    },
    /// The token's non-secret claims (expiry, issue time, collection point version). The token
    /// itself, and claims that may identify a customer, are never printed.
    Inspect {
        name: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// The plugin's version and source revision and, when the cluster answers, the leading
    /// operator replica's (from its Lease).
    Version {
        /// Only the plugin's: do not contact the cluster.
        #[arg(long)]
        client: bool,
        #[command(flatten)]
        installation: InstallationArgs,
    },
    /// A shell completion script for `kubectl-consent` (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
}

/// Where the operator's Lease is (`check` and `version` read it).
#[derive(Debug, Args)]
pub struct InstallationArgs {
    /// The operator's namespace (where its Lease is).
    #[arg(long, default_value = "consent-token-operator")]
    pub operator_namespace: String,
    /// The operator's Lease (the chart's `lease.name`).
    #[arg(long, default_value = "consent-token-operator")]
    pub lease_name: String,
}

impl InstallationArgs {
    fn installation(&self) -> check::Installation<'_> {
        check::Installation { namespace: &self.operator_namespace, lease: &self.lease_name }
    }
}

/// Which namespaces and objects.
#[derive(Debug, Args)]
pub struct Scope {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Only ConsentTokens with these labels (`key=value,...`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("cannot read the kubeconfig: {0}")]
    Config(#[from] kube::config::InferConfigError),
    #[error("cannot use the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

/// Runs a command; what it prints goes to `out`.
pub async fn run(cli: Cli, out: &mut impl std::io::Write) -> Result<(), PluginError> {
    let write = |e: std::io::Error| PluginError::Failed(format!("cannot write the output: {e}"));
    // These need no cluster: they answer before the kubeconfig is read.
    match cli.command {
        Command::Version { client: true, .. } => {
            return out.write_all(version::client_line().as_bytes()).map_err(write);
        }
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "kubectl-consent", out);
            return Ok(());
        }
        _ => {}
    }
    let config = match client_config(cli.kubeconfig.as_deref(), cli.context.as_deref()).await {
        Ok(config) => config,
        Err(err) if matches!(cli.command, Command::Version { .. }) => {
            let text = format!("{}{}", version::client_line(), version::unreachable_line(&err));
            return out.write_all(text.as_bytes()).map_err(write);
        }
        Err(err) => return Err(err),
    };
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config)?;
    match cli.command {
        Command::Status { scope, providers: true, .. } => {
            let namespace = scope.namespace.unwrap_or(default_namespace);
            let text = providers::providers(&client, (!scope.all_namespaces).then_some(namespace.as_str())).await?;
            out.write_all(text.as_bytes()).map_err(write)
        }
        Command::Status { name, scope, output, .. } => {
            let tokens = select(&client, &scope, &default_namespace, name.as_deref()).await?;
            let text = match output {
                Some(Output::Json) => format!("{:#}\n", status::list(&tokens)),
                Some(Output::Yaml) => serde_yaml::to_string(&status::list(&tokens))
                    .map_err(|e| PluginError::Failed(format!("cannot write YAML: {e}")))?,
                Some(Output::Wide) | None => {
                    let live = status::live(&client, &tokens).await?;
                    let columns =
                        status::Columns { namespace: scope.all_namespaces, wide: output == Some(Output::Wide) };
                    status::table(&tokens, live.as_ref(), jiff::Timestamp::now(), columns)
                }
            };
            out.write_all(text.as_bytes()).map_err(write)
        }
        Command::Refresh { name, scope, all, rate, timeout } => {
            if name.is_none() && scope.selector.is_none() && !all {
                return Err(PluginError::Usage("name a ConsentToken, or use --selector or --all".into()));
            }
            let tokens = select(&client, &scope, &default_namespace, name.as_deref()).await?;
            refresh::refresh(&client, &tokens, rate, timeout, out).await
        }
        Command::Inspect { name, scope } => {
            let namespace = scope.namespace.unwrap_or(default_namespace);
            let text = inspect::inspect(&client, &namespace, &name).await?;
            out.write_all(text.as_bytes()).map_err(write)
        }
        Command::Check { namespace, installation } => {
            let namespace = namespace.unwrap_or(default_namespace);
            check::check(&client, &namespace, &installation.installation(), out).await
        }
        Command::Version { installation, .. } => {
            let text = format!(
                "{}{}",
                version::client_line(),
                version::operator_line(&client, &installation.installation()).await
            );
            out.write_all(text.as_bytes()).map_err(write)
        }
        Command::Completion { .. } => Ok(()),
    }
}

/// The client's configuration, as kubectl would find it: `--kubeconfig` (else $KUBECONFIG, else
/// ~/.kube/config, else in-cluster) and `--context` (else the current context).
async fn client_config(path: Option<&std::path::Path>, context: Option<&str>) -> Result<kube::Config, PluginError> {
    let options = kube::config::KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
    Ok(match path {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await?,
    })
}

/// The ConsentTokens a command acts on.
async fn select(
    client: &Client,
    scope: &Scope,
    default_namespace: &str,
    name: Option<&str>,
) -> Result<Vec<ConsentToken>, PluginError> {
    let namespace = scope.namespace.as_deref().unwrap_or(default_namespace);
    let api: Api<ConsentToken> =
        if scope.all_namespaces { Api::all(client.clone()) } else { Api::namespaced(client.clone(), namespace) };
    if let Some(name) = name {
        if scope.all_namespaces {
            return Err(PluginError::Usage("a name needs one namespace (-n), not -A".into()));
        }
        return Ok(vec![api.get(name).await?]);
    }
    let mut params = ListParams::default();
    if let Some(selector) = &scope.selector {
        params = params.labels(selector);
    }
    let mut tokens = api.list(&params).await?.items;
    tokens.sort_by_key(|t| (t.metadata.namespace.clone(), t.metadata.name.clone()));
    Ok(tokens)
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

/// `in 4m10s` for a time ahead of `now`, `1m40s ago` for one behind it.
pub(crate) fn relative(at_seconds: i64, now: jiff::Timestamp) -> String {
    let delta = at_seconds.saturating_sub(now.as_second());
    if delta >= 0 { format!("in {}", short_duration(delta)) } else { format!("{} ago", short_duration(delta)) }
}

/// `2m10s`, `45s`, `3h5m`, `4d2h`: how people read a span at a glance (as kubectl's AGE).
pub(crate) fn short_duration(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_kubectl() {
        assert_eq!(short_duration(45), "45s");
        assert_eq!(short_duration(-130), "2m10s");
        assert_eq!(short_duration(3 * 3600 + 300), "3h5m");
        assert_eq!(short_duration(4 * 86400 + 7200), "4d2h");
        let now = jiff::Timestamp::from_second(1_000).unwrap();
        assert_eq!((relative(1_250, now), relative(900, now)), ("in 4m10s".into(), "1m40s ago".into()));
    }

    #[test]
    fn the_command_line() {
        let cli = Cli::try_parse_from(["kubectl-consent", "refresh", "-l", "team=web", "--rate", "5"]).unwrap();
        assert!(matches!(cli.command, Command::Refresh { rate, .. } if rate == 5.0));
        assert!(Cli::try_parse_from(["kubectl-consent", "refresh", "a", "--all"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-consent", "refresh", "--all", "--rate", "0"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-consent", "status", "-A", "-n", "x"]).is_err());
    }
}
