//! Starting the operator from its configuration: clients, shared state, the server, and the
//! controllers (behind leader election when it is on).

use std::sync::Arc;

use futures::FutureExt;
use kube::Client;
use kube::runtime::events::Reporter;

use crate::config::{Config, LeaderElectionArgs};
use crate::observability::metrics::Metrics;
use crate::provider::{Providers, UpstreamPolicy};
use crate::reconcile::api_writes::{ApiWrites, InvalidWriteRate};
use crate::reconcile::context::{Kube, Scheduling, Upstream};
use crate::runtime::controller::{self, Shared};
use crate::runtime::leader::Leadership;
use crate::runtime::server::{self, Readiness};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Upstream(#[from] crate::provider::http::SetupError),
    #[error("cannot serve metrics and probes: {0}")]
    Server(#[from] std::io::Error),
    #[error(transparent)]
    WriteRate(#[from] InvalidWriteRate),
    #[error("cannot take part in leader election: {0}")]
    LeaderElection(#[from] kube_lease_manager::LeaseManagerError),
    #[error("leadership lost; exiting so a fresh start rejoins as a standby")]
    LostLeadership,
}

/// Runs until SIGTERM or SIGINT, then lets reconciles under way finish.
pub async fn run(config: Config) -> Result<(), StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    if config.upstream.allow_insecure_http {
        tracing::warn!("--allow-insecure-http is set: plain http provider URLs are allowed (local development only)");
    }
    let policy = Arc::new(UpstreamPolicy::from_args(&config.upstream));
    tracing::info!(
        allowed_provider_hosts = %config.upstream.allowed_provider_hosts,
        allowed_private_networks = ?config.upstream.allowed_private_networks,
        "provider policy"
    );
    let shared = Shared {
        kube: Kube {
            client: client.clone(),
            api_writes: Arc::new(ApiWrites::new(&config.kube_api)?),
            // The replica's identity (--identity, in a cluster the pod name), as in the Lease.
            reporter: Reporter {
                controller: "consent-token-operator".into(),
                instance: config.leader_election.identity.clone(),
            },
        },
        upstream: Upstream {
            providers: Arc::new(Providers::new(&config.upstream, policy.clone(), metrics.clone())?),
            policy,
            credentials: Default::default(),
            pending_rotations: Default::default(),
        },
        scheduling: Scheduling {
            calendar: Default::default(),
            first_tokens: Default::default(),
            overdue_spread: config.controller.overdue_spread,
            min_token_lifetime: config.controller.min_token_lifetime,
        },
        metrics: metrics.clone(),
        operator_namespace: config
            .controller
            .operator_namespace
            .clone()
            .unwrap_or_else(|| config.leader_election.lease_namespace.clone()),
    };
    let readiness = Arc::new(Readiness::default());
    let shutdown = shutdown_signal().shared();
    let server =
        tokio::spawn(server::serve(config.server.clone(), metrics.clone(), readiness.clone(), shutdown.clone()));

    // Controllers start once this replica leads (at once without leader election).
    let (leading_tx, mut leading) = tokio::sync::watch::channel(!config.leader_election.enabled);
    let (release_tx, release) = tokio::sync::oneshot::channel();
    let leadership = hold_leadership(client, &config.leader_election, &readiness, leading_tx, release);
    tokio::pin!(leadership);
    let leader_gauge = shared.metrics.leader.clone();
    let controllers = async {
        tokio::select! {
            _ = leading.wait_for(|leading| *leading) => {}
            () = shutdown.clone() => return,
        }
        leader_gauge.set(1);
        controller::run(shared, &config.controller, readiness.clone(), shutdown.clone()).await;
    };
    let result = tokio::select! {
        // Losing the Lease stops the controllers at once (this future wins and they are dropped):
        // another replica is about to write.
        result = &mut leadership => result,
        // Shut down, and the reconciles under way have finished: only now may a standby write,
        // and it need not wait for the Lease to expire.
        () = controllers => {
            let _ = release_tx.send(());
            leadership.await
        }
    };
    if result.is_ok() {
        match server.await {
            Ok(served) => served?,
            Err(err) => tracing::warn!(error = %err, "metrics server task failed"),
        }
    }
    result
}

/// Takes part in leader election: sends `true` on `leading` once this replica holds the Lease.
/// Returns an error when it lost the Lease, and `Ok` once it gave the Lease up after `release`
/// fired (at shutdown; with leader election off, at once then).
async fn hold_leadership(
    client: Client,
    args: &LeaderElectionArgs,
    readiness: &Readiness,
    leading: tokio::sync::watch::Sender<bool>,
    mut release: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), StartError> {
    if !args.enabled {
        let _ = release.await;
        return Ok(());
    }
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let mut election =
        Leadership::start(client, &args.lease_namespace, &args.lease_name, identity, args.lease_duration).await?;
    tracing::info!(identity = election.identity(), lease = %args.lease_name, "waiting to become leader");
    readiness.set_standby(true);
    let released = tokio::select! {
        acquired = election.acquired() => { acquired?; false }
        _ = &mut release => true,
    };
    if released {
        election.release().await;
        return Ok(());
    }
    tracing::info!(identity = election.identity(), "became leader");
    readiness.set_standby(false);
    leading.send_replace(true);
    let released = tokio::select! {
        () = election.lost() => false,
        _ = release => true,
    };
    if !released {
        return Err(StartError::LostLeadership);
    }
    election.release().await;
    Ok(())
}

/// The pod name when set (the chart sets CONSENT_IDENTITY to it), else the host name and a random suffix.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: finishing reconciles under way");
}
