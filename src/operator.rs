//! Starting the operator from its configuration: clients, shared state, controllers, server.

use std::num::NonZeroU32;
use std::sync::Arc;

use kube::Client;
use kube::runtime::events::Reporter;

use crate::config::Config;
use crate::controller::{self, Shared, Synced};
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::provider::{Providers, UpstreamConfig};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Upstream(#[from] crate::provider::http::SetupError),
    #[error("cannot serve metrics and probes: {0}")]
    Server(#[from] std::io::Error),
    #[error("--kube-api-qps and --kube-api-burst must be at least 1")]
    WriteRate,
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
    let upstream = UpstreamConfig {
        extra_ca_bundle: config.extra_ca_bundle.clone(),
        allow_insecure_http: config.allow_insecure_http,
        request_timeout: config.upstream_timeout,
    };
    if config.allow_insecure_http {
        tracing::warn!("--allow-insecure-http is set: plain http provider URLs are allowed (local development only)");
    }
    let providers = Arc::new(Providers::new(&upstream, metrics.clone())?);
    let qps = NonZeroU32::new(config.kube_api_qps).ok_or(StartError::WriteRate)?;
    let burst = NonZeroU32::new(config.kube_api_burst).ok_or(StartError::WriteRate)?;
    let api_writes = Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(qps).allow_burst(burst)));
    let reporter = Reporter {
        controller: "consent-token-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let shared = Shared { client, providers, metrics: metrics.clone(), api_writes, reporter, calendar: Default::default() };
    let settings = controller::Settings {
        namespaces: config.watched_namespaces(),
        concurrency: config.concurrency,
        overdue_spread: config.overdue_spread,
    };
    let synced = Arc::new(Synced::default());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing reconciles under way");
        let _ = stop_tx.send(true);
    });

    let server = tokio::spawn(crate::server::serve(config.metrics_addr, metrics, synced.clone(), stopped()));

    let mut leadership = None;
    if config.leader_election {
        let identity = config.identity.clone().unwrap_or_else(default_identity);
        let mut election =
            Leadership::start(shared.client.clone(), &config.lease_namespace, &config.lease_name, identity, config.lease_duration)
                .await?;
        tracing::info!(identity = election.identity(), lease = %config.lease_name, "waiting to become leader");
        synced.set_standby(true);
        tokio::select! {
            _ = election.acquired() => tracing::info!(identity = election.identity(), "became leader"),
            _ = stopped() => return finish(server).await,
        }
        synced.set_standby(false);
        leadership = Some(election);
    }

    tracing::info!(namespaces = ?settings.namespaces, concurrency = settings.concurrency, "starting controllers");
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let controllers_stop = {
        let stop = stopped();
        async move {
            tokio::select! {
                _ = stop => {}
                _ = lost_rx => {}
            }
        }
    };
    let watch_leadership = async move {
        match leadership.as_mut() {
            Some(election) => {
                election.lost().await;
                let _ = lost_tx.send(());
                true
            }
            None => std::future::pending().await,
        }
    };
    let lost = tokio::select! {
        _ = controller::run(shared, settings, synced, controllers_stop) => false,
        lost = watch_leadership => lost,
    };
    if lost {
        return Err(StartError::LostLeadership);
    }
    finish(server).await
}

async fn finish(server: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<(), StartError> {
    match server.await {
        Ok(result) => result?,
        Err(err) => tracing::warn!(error = %err, "metrics server task failed"),
    }
    Ok(())
}

/// The pod name when set (the chart sets POD_NAME), else the host name and a random suffix.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!("{host}-{:08x}", rand::random::<u32>())
}

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
}
