//! A validating admission webhook that holds the creation of Events about one object for as
//! long as the test says: the real API server then keeps the operator's request open, which
//! times a race no other fault reaches (say, a deletion between a reconcile's status write and
//! its metrics, while the Ready transition's Event is being published). It allows everything.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tokio::sync::watch;

/// A running webhook; `register` puts it in front of one namespace's Events.
pub struct SlowAdmission {
    url: String,
    ca_pem: String,
    state: Arc<Held>,
    handle: axum_server::Handle<std::net::SocketAddr>,
}

struct Held {
    /// Events about this object wait for `release`.
    object: String,
    arrivals: watch::Sender<u32>,
    released: watch::Sender<bool>,
    /// Every Event the API server asked about (any object): proof the webhook is in force.
    seen: watch::Sender<u32>,
}

impl SlowAdmission {
    /// Starts the webhook; Events about `object` are held until [`SlowAdmission::release`].
    pub async fn start(object: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = fake_provider::tls::generate().unwrap();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            pki.server_cert_pem.into_bytes(),
            pki.server_key_pem.into_bytes(),
        )
        .await
        .unwrap();
        let state = Arc::new(Held {
            object: object.to_owned(),
            arrivals: watch::Sender::new(0),
            released: watch::Sender::new(false),
            seen: watch::Sender::new(0),
        });
        let app = axum::Router::new().route("/validate", post(review)).with_state(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls).unwrap().handle(handle.clone());
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        Self { url: format!("https://localhost:{port}/validate"), ca_pem: pki.ca_pem, state, handle }
    }

    /// Puts the webhook in front of the creation of Events in `namespace` (both API groups),
    /// and returns once the API server consults it.
    pub async fn register(&self, client: &kube::Client, namespace: &str) {
        let name = format!("slow-events-{namespace}");
        let config: ValidatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "webhooks": [{
                "name": "slow-events.consent.dev",
                "clientConfig": {
                    "url": self.url,
                    "caBundle": base64::engine::general_purpose::STANDARD.encode(&self.ca_pem),
                },
                "rules": [{"apiGroups": ["", "events.k8s.io"], "apiVersions": ["v1"],
                           "operations": ["CREATE"], "resources": ["events"]}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 15,
            }],
        }))
        .unwrap();
        let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let _ = configs.delete(&name, &DeleteParams::default()).await;
        configs.create(&PostParams::default(), &config).await.unwrap();
        // The API server reads webhook configurations from its own watch: probe until it asks.
        let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), namespace);
        let seen = self.state.seen.subscribe();
        super::eventually("the API server to consult the webhook", std::time::Duration::from_secs(30), || async {
            let probe: k8s_openapi::api::core::v1::Event = serde_json::from_value(serde_json::json!({
                "metadata": {"generateName": "webhook-probe-"},
                "involvedObject": {"kind": "ConfigMap", "name": "webhook-probe", "namespace": namespace},
                "reason": "Probe", "message": "probe", "type": "Normal",
            }))
            .unwrap();
            events.create(&PostParams::default(), &probe).await.unwrap();
            (*seen.borrow() > 0).then_some(())
        })
        .await;
    }

    /// Returns once an Event about the held object is waiting.
    pub async fn wait_for_held(&self) {
        let mut arrivals = self.state.arrivals.subscribe();
        arrivals.wait_for(|n| *n > 0).await.unwrap();
    }

    /// Lets every held Event (and those to come) through.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }
}

impl Drop for SlowAdmission {
    fn drop(&mut self) {
        self.release();
        self.handle.shutdown();
    }
}

async fn review(State(held): State<Arc<Held>>, Json(review): Json<serde_json::Value>) -> Json<serde_json::Value> {
    held.seen.send_modify(|n| *n += 1);
    let object = &review["request"]["object"];
    let about = object["regarding"]["name"].as_str().or_else(|| object["involvedObject"]["name"].as_str());
    if about == Some(held.object.as_str()) {
        held.arrivals.send_modify(|n| *n += 1);
        let mut released = held.released.subscribe();
        let _ = released.wait_for(|r| *r).await;
    }
    Json(serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": true},
    }))
}
