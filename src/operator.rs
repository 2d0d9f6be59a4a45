//! Starting the operator from its configuration: clients, shared state, controllers, server.

use std::num::NonZeroU32;
use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::config::Config;
use crate::controller::{self, Shared, Synced};
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
    let recorder = Recorder::new(client.clone(), reporter);
    let shared = Shared { client, providers, metrics: metrics.clone(), api_writes, recorder };
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
    tracing::info!(namespaces = ?settings.namespaces, concurrency = settings.concurrency, "starting controllers");
    controller::run(shared, settings, synced, stopped()).await;
    match server.await {
        Ok(result) => result?,
        Err(err) => tracing::warn!(error = %err, "metrics server task failed"),
    }
    Ok(())
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
