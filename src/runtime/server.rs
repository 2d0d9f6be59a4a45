//! The HTTP server for Prometheus and the kubelet: `/metrics`, `/healthz`, `/readyz`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::config::ServerArgs;
use crate::observability::metrics::Metrics;
use crate::runtime::leader::Role;

/// What `/readyz` answers: ready once every watch has listed its objects, leader and standby
/// alike (a standby keeps the same caches, so it can lead at once); the body says which it is.
/// Losing the Lease does not make a replica unready, and `/healthz` never depends on it.
#[derive(Default)]
pub struct Readiness {
    watches_synced: AtomicBool,
    leader: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.watches_synced.load(Ordering::Relaxed)
    }

    pub fn set_watches_synced(&self) {
        self.watches_synced.store(true, Ordering::Relaxed);
    }

    pub fn set_role(&self, role: Role) {
        self.leader.store(role == Role::Leader, Ordering::Relaxed);
    }

    fn role(&self) -> &'static str {
        if self.leader.load(Ordering::Relaxed) { "leader" } else { "standby" }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

pub async fn serve(
    args: ServerArgs,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness });
    let listener = bind(args.metrics_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Binds the address given. The default `[::]` takes IPv4 and IPv6 connections on the same
/// port (Linux's default `net.ipv6.bindv6only=0`); on a node without IPv6 it falls back to
/// `0.0.0.0`, so the default works on single-stack clusters of either kind.
async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Err(err) if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
            tracing::info!(error = %err, "no IPv6 here: serving on IPv4 only");
            tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port())).await
        }
        bound => bound,
    }
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let role = state.readiness.role();
    if state.readiness.is_ready() {
        (StatusCode::OK, format!("ok: {role}"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("caches not synced ({role})"))
    }
}
