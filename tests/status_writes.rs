//! One API write per routine renewal: the Secret. The ConsentToken's status is written when
//! something its readers need changes (a failure, a recovery, expiry, a spec change), once
//! each, and what `kubectl get` shows between two renewals is true.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use consent_token_operator::api::crd::ConsentTokenStatus;
use fake_provider::{Endpoint, Fault};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use support::operator::TestEnv;

/// Every status the API server stored for one ConsentToken, in order, from the moment it starts
/// (a watch sees each write; a write that changes only metadata is not counted).
#[derive(Clone, Default)]
struct StatusWrites(Arc<Mutex<Vec<ConsentTokenStatus>>>);

impl StatusWrites {
    fn start(env: &TestEnv, name: &str) -> (Self, tokio::task::JoinHandle<()>) {
        let writes = Self::default();
        let seen = writes.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher::watcher(env.tokens(), config);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut last: Option<ConsentTokenStatus> = None;
            while let Some(event) = stream.next().await {
                let (watcher::Event::Apply(ct) | watcher::Event::InitApply(ct)) = event.unwrap() else { continue };
                let status = ct.status.unwrap_or_default();
                if last.as_ref().is_some_and(|last| *last != status) {
                    seen.0.lock().unwrap().push(status.clone());
                }
                last = Some(status);
            }
        });
        (writes, task)
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The Ready reasons of the writes since `from`.
    fn reasons_since(&self, from: usize) -> Vec<String> {
        self.0.lock().unwrap()[from..].iter().map(|s| s.conditions[0].reason.clone()).collect()
    }
}

async fn next_renewal(env: &TestEnv, name: &str) -> String {
    let before = env.on_secret(name).await.unwrap().fingerprint;
    support::eventually(&format!("{name} renewed in its Secret"), Duration::from_secs(60), || async {
        let now = env.on_secret(name).await?.fingerprint;
        (now != before).then_some(now)
    })
    .await
}

#[tokio::test]
async fn the_status_is_written_for_what_a_reader_needs_and_not_for_routine_renewals() {
    let env = TestEnv::start("writes").await;
    env.fake.set_fdx_lifetime(40);
    env.fdx_token("mx", "status-writes-customer").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    let (writes, watch) = StatusWrites::start(&env, "mx");
    let version = env.tokens().get("mx").await.unwrap().resource_version();

    // Routine renewals: the Secret changes, the ConsentToken does not. The second renewal seen
    // in the Secret proves the first one's reconcile has ended, status and all.
    next_renewal(&env, "mx").await;
    let table = support::kubectl(&["get", "ctok", "mx", "-n", &env.namespace, "-o", "wide"]);
    next_renewal(&env, "mx").await;
    assert_eq!(env.tokens().get("mx").await.unwrap().resource_version(), version, "a renewal wrote the ConsentToken");
    assert_eq!(writes.count(), 0);

    // `kubectl get` between two renewals: nothing in it can have gone stale.
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PROVIDER", "READY", "REASON", "SYNCED", "LIFETIME", "SINCE", "AGE", "MESSAGE"],
        "{table}"
    );
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[..6], ["mx", "FDX", "True", "TokenValid", "True", "40s"], "{table}");
    assert!(lines[1].contains("the Secret holds a valid token, renewed with 50% of their lifetime left"), "{table}");
    let year = jiff::Timestamp::now().strftime("%Y-").to_string();
    assert!(!table.contains(&year), "a point in time in the table goes stale: {table}");

    // A failure, then its recovery: one write each.
    let from = writes.count();
    env.fake.inject(Endpoint::FdxToken, Fault::Status(503), Some(1));
    // A request within --min-refresh-request-interval (1 s here) of the renewal just seen would
    // be held back, and the wait written (a write of its own, by design): ask after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.request_refresh("mx").await;
    env.wait_for_ready("mx", "True", "UpstreamError").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    next_renewal(&env, "mx").await;
    assert_eq!(writes.reasons_since(from), ["UpstreamError", "TokenValid"]);

    // A spec change: one write.
    let from = writes.count();
    let patch = serde_json::json!({"spec": {"refresh": {"renewBefore": "60%"}}});
    let changed = env.tokens().patch("mx", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    support::eventually("the spec change observed", Duration::from_secs(30), || async {
        let status = env.tokens().get("mx").await.ok()?.status?;
        (status.observed_generation == changed.metadata.generation).then_some(())
    })
    .await;
    next_renewal(&env, "mx").await;
    assert_eq!(writes.reasons_since(from), ["TokenValid"]);
    let message = support::operator::ready_message(&env.tokens().get("mx").await.unwrap());
    assert!(message.contains("renewed with 60% of their lifetime left"), "{message}");

    // Expiry: the provider asks to wait an hour (one write), the token expires meanwhile (one).
    let from = writes.count();
    env.fake.inject(Endpoint::FdxToken, Fault::RateLimited { retry_after: "3600".into() }, Some(1));
    tokio::time::sleep(Duration::from_secs(2)).await; // past the request interval, as above
    env.request_refresh("mx").await;
    let expired = env.wait_for_ready("mx", "False", "Expired").await;
    assert_eq!(writes.reasons_since(from), ["RateLimited", "Expired"]);
    // Now the status describes one token that stays put: its times are shown.
    let status = expired.status.unwrap();
    let on_secret = env.on_secret("mx").await.unwrap();
    assert_eq!(status.expires_at.map(|t| t.0), on_secret.expires_at);
    assert_eq!(status.token_fingerprint, Some(on_secret.fingerprint));
    watch.abort();
}
