//! What the benchmark puts into the cluster, the floor client, and the watches that measure.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_provider::FakeProvider;
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use consent_token_operator::api::crd::ConsentToken;

use crate::cluster::Error;

/// Concurrency of the benchmark's own writes and of the floor client: the operator's default.
const CONCURRENCY: usize = 16;

pub fn install_crds(root: &Path, kubeconfig: &Path) -> Result<(), Error> {
    for args in [
        vec!["apply", "--server-side", "-f", "crds/"],
        vec!["wait", "--for=condition=Established", "--timeout=60s", "crd/consenttokens.consent.dev"],
    ] {
        let status = std::process::Command::new("kubectl")
            .args(&args)
            .current_dir(root)
            .env("KUBECONFIG", kubeconfig)
            .status()?;
        if !status.success() {
            return Err(format!("kubectl {args:?} failed").into());
        }
    }
    std::thread::sleep(Duration::from_secs(2)); // served a moment after Established
    Ok(())
}

pub async fn namespace(client: &Client, name: &str) -> Result<(), Error> {
    let ns = Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    Ok(())
}

/// A credentials Secret, marked for the fake provider on localhost.
fn secret(name: &str, data: &[(&str, &[u8])]) -> Secret {
    let marking = [("consent.dev/allowed-hosts".to_owned(), "localhost".to_owned())];
    Secret {
        metadata: ObjectMeta { name: Some(name.into()), annotations: Some(marking.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
        ..Default::default()
    }
}

/// One MX credential and `onetrust` OneTrust credentials, known to the fake provider.
pub async fn create_credentials(client: &Client, ns: &str, onetrust: usize, fake: &FakeProvider) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    fake.add_fdx_client("bench-mx", "bench-mx-secret");
    secrets
        .create(
            &PostParams::default(),
            &secret("mx", &[("client_id", b"bench-mx"), ("client_secret", b"bench-mx-secret")]),
        )
        .await?;
    for i in 0..onetrust {
        let id = format!("bench-ot-{i}");
        fake.add_onetrust_client(&id, "bench-ot-secret");
        let s = secret(&format!("ot-{i}"), &[("client_id", id.as_bytes()), ("client_secret", b"bench-ot-secret")]);
        secrets.create(&PostParams::default(), &s).await?;
    }
    Ok(())
}

/// `n` ConsentTokens: one in ten a OneTrust collection point (sharing `onetrust` credentials),
/// the rest MX tokens of 300 seconds, one per customer.
pub async fn create_consent_tokens(
    client: &Client,
    ns: &str,
    n: usize,
    onetrust: usize,
    fake: &FakeProvider,
) -> Result<(), Error> {
    let api: Api<ConsentToken> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let spec = if i % 10 == 0 {
                serde_json::json!({"oneTrust": {"hostname": fake.host(),
                    "collectionPoint": {"guid": format!("00000000-0000-4000-8000-{i:012}")},
                    "credentialsSecretRef": {"name": format!("ot-{}", (i / 10) % onetrust)}}})
            } else {
                serde_json::json!({"fdx": {"baseUrl": fake.base_url(), "customerId": format!("customer-{i}"),
                    "credentialsSecretRef": {"name": "mx"}}})
            };
            async move {
                let ct: ConsentToken = serde_json::from_value(serde_json::json!({
                    "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
                    "metadata": {"name": format!("ct-{i}")}, "spec": spec}))?;
                api.create(&PostParams::default(), &ct).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    eprintln!("created {n} ConsentTokens in {ns} in {:?}", started.elapsed());
    Ok(())
}

/// The floor: the API writes the operator makes to bring `n` ConsentTokens to Ready (a Secret
/// created with a token and its annotations, a status applied and, with `events`, the Event
/// announcing the first token), by a minimal client with the same client library and
/// concurrency, and no operator logic. `run` tells the Secrets of two runs apart. Each Secret
/// is the operator's: the same annotations and an owner reference to its ConsentToken, which
/// makes kube-controller-manager's garbage collector look at it as it does at the operator's.
pub async fn floor(client: &Client, ns: &str, n: usize, run: &str, events: bool) -> Result<Duration, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let tokens: Api<ConsentToken> = Api::namespaced(client.clone(), ns);
    // Read before the clock starts: the operator knows its objects from its watch.
    let owners: Arc<HashMap<String, OwnerReference>> = Arc::new(
        tokens
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter_map(|ct| Some((ct.name_any(), ct.controller_owner_ref(&())?)))
            .collect(),
    );
    let token = vec![b'x'; 600];
    let reporter = Reporter { controller: "bench-floor".into(), instance: None };
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (secrets, tokens, token, owners) = (secrets.clone(), tokens.clone(), token.clone(), owners.clone());
            let recorder = events.then(|| (Recorder::new(client.clone(), reporter.clone()), ns.to_owned()));
            async move {
                let now = Timestamp::now().to_string();
                let mut s = secret(&format!("floor-{run}-{i}"), &[("token", &token)]);
                s.metadata.labels = Some(BTreeMap::from([("app.kubernetes.io/managed-by".into(), "bench-floor".into())]));
                s.metadata.annotations = Some(
                    ["token-fingerprint", "refreshed-at", "expires-at", "next-refresh-at", "generation", "credentials-version"]
                        .iter()
                        .map(|k| (format!("consent.dev/{k}"), now.clone()))
                        .chain([
                            ("consent.dev/request-fingerprint".into(), format!("sha256:{i:064x}")),
                            ("consent.dev/written-keys".into(), "labels=;annotations=;data=token".into()),
                        ])
                        .collect(),
                );
                s.metadata.owner_references = owners.get(&format!("ct-{i}")).map(|owner| vec![owner.clone()]);
                secrets.create(&PostParams::default(), &s).await?;
                let status = serde_json::json!({
                    "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
                    "status": {"observedGeneration": 1, "provider": "FDX", "consecutiveFailures": 0,
                        "conditions": [{"type": "Ready", "status": "True", "reason": "TokenValid",
                            "message": format!("the Secret holds a valid token ({run}), renewed with 50% of their lifetime left"),
                            "lastTransitionTime": now, "observedGeneration": 1}],
                        "tokenLifetime": "5m", "credentialsVersion": "1"}});
                let ct = tokens.patch_status(&format!("ct-{i}"), &PatchParams::apply("bench-floor").force(), &Patch::Apply(&status)).await?;
                if let Some((recorder, _)) = recorder {
                    let event = Event {
                        type_: EventType::Normal,
                        reason: "TokenValid".into(),
                        note: Some(format!("token valid until {now}")),
                        action: "Refresh".into(),
                        secondary: None,
                    };
                    recorder.publish(&event, &ct.object_ref(&())).await?;
                }
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(started.elapsed())
}

/// Counts the ConsentTokens of a namespace whose Ready condition is True, from a watch.
#[derive(Clone)]
pub struct ReadyCounter(Arc<Mutex<HashMap<String, bool>>>, tokio::task::AbortHandle);

impl ReadyCounter {
    pub fn start(client: Client, ns: &str) -> Self {
        let state = Arc::new(Mutex::new(HashMap::new()));
        let seen = state.clone();
        let api: Api<ConsentToken> = Api::namespaced(client, ns);
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).default_backoff().applied_objects().boxed();
            while let Some(Ok(ct)) = events.next().await {
                let ready = ct
                    .status
                    .as_ref()
                    .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                seen.lock().unwrap_or_else(|p| p.into_inner()).insert(ct.name_any(), ready);
            }
        });
        Self(state, task.abort_handle())
    }

    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).values().filter(|r| **r).count()
    }

    /// Objects seen so far (listed or written).
    pub fn seen(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn stop(&self) {
        self.1.abort();
    }
}

#[derive(Clone)]
struct Facts {
    fingerprint: String,
    refreshed_at: Timestamp,
    next_refresh_at: Timestamp,
    expires_at: Option<Timestamp>,
}

#[derive(Default)]
struct Refreshes {
    last: HashMap<String, Facts>,
    lateness_ms: Vec<f64>,
    /// Each counted renewal's planned time and lateness (ms), for the timeline.
    planned: Vec<(Timestamp, f64)>,
    expired: usize,
    count: usize,
}

/// Watches the target Secrets: each new token is compared with the schedule its predecessor
/// was written with (`consent.dev/next-refresh-at`) and its expiry.
pub struct RefreshWatch {
    state: Arc<Mutex<Refreshes>>,
    counting: Arc<AtomicBool>,
}

impl RefreshWatch {
    pub fn start(client: Client, ns: &str) -> Self {
        let state = Arc::new(Mutex::new(Refreshes::default()));
        let counting = Arc::new(AtomicBool::new(false));
        let (s, c) = (state.clone(), counting.clone());
        let api: Api<Secret> = Api::namespaced(client, ns);
        let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=consent-token-operator");
        tokio::spawn(async move {
            let mut events = watcher(api, config).default_backoff().applied_objects().boxed();
            while let Some(Ok(secret)) = events.next().await {
                let Some(facts) = facts(&secret) else { continue };
                let mut state = s.lock().unwrap_or_else(|p| p.into_inner());
                let previous = state.last.insert(secret.name_any(), facts.clone());
                if let Some(previous) = previous
                    && previous.fingerprint != facts.fingerprint
                    && c.load(Ordering::Relaxed)
                {
                    let late = facts.refreshed_at.duration_since(previous.next_refresh_at).as_secs_f64() * 1000.0;
                    state.lateness_ms.push(late);
                    state.planned.push((previous.next_refresh_at, late));
                    state.count += 1;
                    if previous.expires_at.is_some_and(|exp| facts.refreshed_at > exp) {
                        state.expired += 1;
                    }
                }
            }
        });
        Self { state, counting }
    }

    pub fn start_window(&self) {
        self.counting.store(true, Ordering::Relaxed);
    }

    /// Stops counting; returns refresh lateness (ms), refreshes that came after expiry, and the
    /// number of refreshes.
    pub fn finish(&self) -> (Vec<f64>, usize, usize) {
        self.counting.store(false, Ordering::Relaxed);
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.lateness_ms.clone(), state.expired, state.count)
    }

    /// Each counted renewal's planned time and its lateness in milliseconds.
    pub fn planned(&self) -> Vec<(Timestamp, f64)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).planned.clone()
    }

    /// Secrets holding an expired token right now.
    pub fn expired_now(&self) -> usize {
        let now = Timestamp::now();
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last.values().filter(|f| f.expires_at.is_some_and(|exp| exp <= now)).count()
    }
}

fn facts(secret: &Secret) -> Option<Facts> {
    let a = secret.annotations();
    let time = |k: &str| a.get(&format!("consent.dev/{k}"))?.parse::<Timestamp>().ok();
    Some(Facts {
        fingerprint: a.get("consent.dev/token-fingerprint")?.clone(),
        refreshed_at: time("refreshed-at")?,
        next_refresh_at: time("next-refresh-at")?,
        expires_at: time("expires-at"),
    })
}
