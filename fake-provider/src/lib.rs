//! A fake of both upstream token APIs, over HTTPS with a generated test CA, for the
//! operator's tests, the local demo and the benchmark.
//!
//! It follows the documented APIs (see `shared/seeds` and `providers.md`) and is never more
//! lenient than they are: OneTrust OAuth 2.0 client credentials as `multipart/form-data` only,
//! as OneTrust's OpenAPI document declares (form-urlencoded only in "sample-code" mode, which
//! then refuses multipart), collection point tokens shaped like real ones (RS512, no `exp`,
//! `iat` as a string, `processVersion`), and MX / FDX tokens (only with `Content-Type:
//! application/json` and exactly the documented body) as HS256 JWTs with a configurable
//! lifetime. Each client gets 1,000 requests a minute per OneTrust endpoint, as documented (a
//! knob sets any endpoint's limit). Knobs inject 429s with `Retry-After` and the
//! `ot-*` headers, 5xx, slow answers and garbage bodies; rotating a client's secret makes the
//! old one (and access tokens issued to it) answer 401; a clock offset writes its tokens' `iat`
//! and `exp` as a provider with a clock that is off would. Every request is counted.

mod fdx;
pub mod issued;
mod onetrust;
mod state;
pub mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use state::{CollectionPointBody, Endpoint, Fault};
use state::{Shared, State};

/// A running fake provider. Dropping it stops the server.
pub struct FakeProvider {
    addr: SocketAddr,
    ca_pem: String,
    state: Shared,
    handle: axum_server::Handle<SocketAddr>,
}

impl FakeProvider {
    /// Starts on `listen` (use port 0 for a free port).
    pub async fn start(listen: SocketAddr) -> std::io::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = tls::generate().map_err(std::io::Error::other)?;
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            pki.server_cert_pem.into_bytes(),
            pki.server_key_pem.into_bytes(),
        )
        .await?;
        let state: Shared = Arc::new(Mutex::new(State::new()));
        let app = Router::new()
            .route("/api/access/v1/oauth/token", post(onetrust::oauth_token))
            .route("/api/consentmanager/v1/collectionpoints/{guid}/token", get(onetrust::collection_point_token))
            .route("/api/{version}/token", post(fdx::token))
            .route("/_fake/stats", get(stats))
            .with_state(state.clone());
        let handle = axum_server::Handle::new();
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let server = axum_server::from_tcp_rustls(listener, tls)?.handle(handle.clone());
        tokio::spawn(async move {
            if let Err(err) = server.serve(app.into_make_service()).await {
                tracing::error!(%err, "fake provider stopped");
            }
        });
        Ok(Self { addr, ca_pem: pki.ca_pem, state, handle })
    }

    /// `localhost:PORT`: what goes into `spec.oneTrust.hostname` (the certificate names `localhost`).
    pub fn host(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// `https://localhost:PORT`: what goes into `spec.fdx.baseUrl`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.host())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The test CA's certificate in PEM: the operator trusts it with `--extra-ca-bundle`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn add_onetrust_client(&self, client_id: &str, client_secret: &str) {
        issued::remember_client(client_id, client_secret);
        self.state().onetrust_clients.insert(client_id.into(), client_secret.into());
    }

    /// Replaces a OneTrust client's secret: the old one and every access token issued so far
    /// are refused from now on.
    pub fn rotate_onetrust_secret(&self, client_id: &str, new_secret: &str) {
        issued::remember_client(client_id, new_secret);
        let mut st = self.state();
        st.onetrust_clients.insert(client_id.into(), new_secret.into());
        st.access_tokens.retain(|_, issued| issued.client_id != client_id);
    }

    pub fn add_fdx_client(&self, client_id: &str, client_secret: &str) {
        issued::remember_client(client_id, client_secret);
        self.state().fdx_clients.insert(client_id.into(), client_secret.into());
    }

    /// `expires_in` of OneTrust OAuth access tokens, in seconds (default 3600).
    /// Any number, to test what a lying upstream does to the operator.
    pub fn set_oauth_expires_in(&self, seconds: i64) {
        self.state().oauth_expires_in = seconds;
    }

    /// Lifetime of MX / FDX tokens, in seconds (default 300).
    pub fn set_fdx_lifetime(&self, seconds: u64) {
        self.state().fdx_lifetime = seconds;
    }

    /// Sets this provider's clock `seconds` ahead of the machine's (negative: behind): the
    /// `iat` and `exp` of the tokens it hands out say so, as a provider with a clock that is
    /// off would. What it accepts is still judged on the machine's clock.
    pub fn set_clock_offset(&self, seconds: i64) {
        self.state().clock_offset = seconds;
    }

    /// Publishes a new version of a collection point (the latest one is served by default).
    pub fn set_collection_point_version(&self, guid: &str, version: i64) {
        self.state().collection_point_versions.insert(guid.into(), version);
    }

    /// Makes the OAuth endpoint behave like OneTrust's sample code: form-urlencoded only,
    /// multipart refused with 415 (by default it follows the OpenAPI document: multipart only).
    pub fn set_oauth_sample_code_mode(&self, on: bool) {
        self.state().oauth_sample_code = on;
    }

    pub fn set_collection_point_body(&self, body: CollectionPointBody) {
        self.state().collection_point_body = body;
    }

    /// Requests a client may make to `endpoint` in a minute before it answers 429 with
    /// `ot-period: MINUTE` (`None`: no limit). By default OneTrust's documented 1,000 on both of
    /// its endpoints, and none on MX's, which publishes none.
    pub fn set_rate_limit(&self, endpoint: Endpoint, per_minute: Option<u32>) {
        self.state().set_rate_limit(endpoint, per_minute);
    }

    /// Injects `fault` into the next `times` answers of `endpoint` (`None`: until cleared).
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: Option<u32>) {
        self.state().set_fault(endpoint, Some(fault), times);
    }

    pub fn clear_faults(&self, endpoint: Endpoint) {
        self.state().set_fault(endpoint, None, None);
    }

    /// Requests received by `endpoint` so far.
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.state().count(endpoint)
    }

    /// Answers with `status` sent by `endpoint` so far.
    pub fn answers(&self, endpoint: Endpoint, status: u16) -> u64 {
        self.state().count_status(endpoint, status)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

async fn stats(axum::extract::State(state): axum::extract::State<Shared>) -> Response {
    let stats = state.lock().unwrap().stats();
    axum::Json(stats).into_response()
}

/// Counts the request and, if a fault is injected, answers with it (or delays).
pub(crate) async fn apply_fault(state: &Shared, endpoint: Endpoint) -> Option<Response> {
    let arrived = state.lock().unwrap().arrive(endpoint)?;
    let fault = match arrived {
        Fault::Late { delay, then } => {
            tokio::time::sleep(delay).await;
            *then
        }
        fault => fault,
    };
    let response = match fault {
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            return None;
        }
        Fault::RateLimited { retry_after } => rate_limited(retry_after, "MINUTE".to_owned(), 1000, 1001),
        Fault::RateLimitedFor { retry_after, period } => rate_limited(retry_after, period, 1000, 1001),
        Fault::Unavailable { retry_after } => {
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", retry_after)]).into_response()
        }
        Fault::Status(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response(),
        Fault::Garbage(body) => ([("content-type", "application/json")], body).into_response(),
        // A `Late` inside a `Late` is a test's mistake.
        Fault::Late { .. } => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    Some(finish(state, endpoint, response))
}

/// Counts an authenticated request of `client` against its minute (`State::spend`); over the
/// limit, the 429 OneTrust sends.
pub(crate) fn over_minute_limit(state: &mut State, endpoint: Endpoint, client: &str) -> Option<Response> {
    let (wait, allowed, made) = state.spend(endpoint, client)?;
    Some(rate_limited(wait.to_string(), "MINUTE".to_owned(), allowed, made))
}

/// A 429 as OneTrust sends it.
fn rate_limited(retry_after: String, period: String, allowed: u32, made: u32) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            ("retry-after", retry_after),
            ("ot-period", period),
            ("ot-requests-allowed", allowed.to_string()),
            ("ot-request-made", made.to_string()),
            ("ot-ratelimit-event-id", uuid::Uuid::new_v4().to_string()),
        ],
    )
        .into_response()
}

/// Records the answer's status for the counters.
pub(crate) fn finish(state: &Shared, endpoint: Endpoint, response: Response) -> Response {
    state.lock().unwrap().answered(endpoint, response.status().as_u16());
    response
}
