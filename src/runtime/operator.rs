//! Starting the operator from its configuration: clients, shared state, the server, the
//! controllers, and (when it is on) leader election, which says when they may write.

use std::sync::Arc;

use futures::FutureExt;
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::config::Config;
use crate::observability::metrics::Metrics;
use crate::provider::namespace_slots::NamespaceSlots;
use crate::provider::{Providers, UpstreamPolicy};
use crate::reconcile::api_writes::{ApiWrites, InvalidWriteRate};
use crate::reconcile::context::{Kube, Scheduling, Upstream};
use crate::runtime::controller::{self, Shared};
use crate::runtime::leader::{Elector, LeaseTiming, Role};
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
        allowed_provider_ports = %config.upstream.allowed_provider_ports,
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
            namespace_slots: Arc::new(NamespaceSlots::new(config.upstream.upstream_concurrency_per_namespace)),
        },
        scheduling: Scheduling {
            calendar: Default::default(),
            first_tokens: Default::default(),
            overdue_spread: config.controller.overdue_spread,
            min_token_lifetime: config.controller.min_token_lifetime,
            min_refresh_request_interval: config.controller.min_refresh_request_interval,
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

    // The watches run from the start, whatever the role; reconciles only while leading.
    let election = &config.leader_election;
    let (role_tx, role) = watch::channel(if election.enabled { Role::Standby } else { Role::Leader });
    let follow = follow_role(role.clone(), metrics.clone(), readiness.clone());
    let follow = tokio::spawn(follow);
    let controllers = controller::run(shared, &config.controller, readiness.clone(), role, shutdown.clone());
    if election.enabled {
        let identity = election.identity.clone().unwrap_or_else(default_identity);
        let leases = Api::namespaced(client, &election.lease_namespace);
        let timing = LeaseTiming::new(election.lease_duration);
        let elector = Elector::new(leases, &election.lease_name, identity, timing);
        // The Lease is given up only once the controllers stopped (at shutdown, after the
        // reconciles under way finished): only then may a standby write.
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel::<()>();
        let elect = elector.run(role_tx, async move {
            let _ = stopped.await;
        });
        let controllers = async move {
            controllers.await;
            let _ = stopped_tx.send(());
        };
        futures::join!(elect, controllers);
    } else {
        controllers.await;
        drop(role_tx);
    }
    follow.abort();
    match server.await {
        Ok(served) => served?,
        Err(err) => tracing::warn!(error = %err, "metrics server task failed"),
    }
    Ok(())
}

/// Keeps the `consent_token_leader` gauge and what `/readyz` says in step with the role.
async fn follow_role(mut role: watch::Receiver<Role>, metrics: Arc<Metrics>, readiness: Arc<Readiness>) {
    loop {
        let now = *role.borrow_and_update();
        metrics.leader.set(i64::from(now == Role::Leader));
        readiness.set_role(now);
        if role.changed().await.is_err() {
            return;
        }
    }
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
