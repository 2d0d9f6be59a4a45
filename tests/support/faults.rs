//! What the fault tests observe from outside the operator: every target Secret of a namespace,
//! sampled twice a second, with the `exp` of the token it holds. From the samples: whether a
//! Secret ever went back to an older token or disappeared, whether a token was ever seen
//! expired, and when each Secret first changed after a moment.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// One look at one Secret.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Timestamp,
    pub exp: i64,
    pub fingerprint: String,
}

pub struct SecretSampler {
    samples: Arc<Mutex<BTreeMap<String, Vec<Sample>>>>,
    /// Secrets seen once and missing from a later successful list.
    lost: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SecretSampler {
    /// Starts sampling the operator's Secrets in `namespace` (lists that fail, as during an
    /// outage, are skipped).
    pub fn start(client: Client, namespace: &str) -> SecretSampler {
        let samples: Arc<Mutex<BTreeMap<String, Vec<Sample>>>> = Arc::default();
        let lost: Arc<Mutex<Vec<String>>> = Arc::default();
        let api: Api<Secret> = Api::namespaced(client, namespace);
        let (into, lost_into) = (samples.clone(), lost.clone());
        let task = tokio::spawn(async move {
            let params = ListParams::default().labels("app.kubernetes.io/managed-by=consent-token-operator");
            loop {
                if let Ok(Ok(list)) = tokio::time::timeout(Duration::from_secs(2), api.list(&params)).await {
                    let at = Timestamp::now();
                    let mut samples = into.lock().unwrap();
                    for known in samples.keys() {
                        if !list.items.iter().any(|s| &s.name_any() == known) {
                            lost_into.lock().unwrap().push(known.clone());
                        }
                    }
                    for secret in list.items {
                        let Some(token) = secret.data.as_ref().and_then(|d| d.get("token")) else { continue };
                        let token = String::from_utf8_lossy(&token.0).into_owned();
                        let exp = super::operator::claims(&token)["exp"].as_i64().unwrap_or_default();
                        let fingerprint = consent_token_operator::provider::token::fingerprint(token.as_bytes());
                        samples.entry(secret.name_any()).or_default().push(Sample { at, exp, fingerprint });
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        SecretSampler { samples, lost, task }
    }

    pub fn samples(&self) -> BTreeMap<String, Vec<Sample>> {
        self.samples.lock().unwrap().clone()
    }

    /// Secrets whose token was ever replaced by one that expires earlier.
    pub fn went_backwards(&self) -> Vec<String> {
        self.samples()
            .into_iter()
            .filter(|(_, s)| s.windows(2).any(|w| w[1].exp < w[0].exp))
            .map(|(name, _)| name)
            .collect()
    }

    /// Secrets that disappeared after being seen.
    pub fn lost(&self) -> Vec<String> {
        self.lost.lock().unwrap().clone()
    }

    /// The least time to expiry seen in any sample (seconds; negative: seen expired).
    pub fn least_time_left(&self) -> i64 {
        self.samples().values().flatten().map(|s| s.exp - s.at.as_second()).min().unwrap_or(i64::MAX)
    }

    /// When `name` was first seen holding a token other than the one it held at `since`.
    pub fn first_change_after(&self, name: &str, since: Timestamp) -> Option<Timestamp> {
        let samples = self.samples().remove(name)?;
        let before = samples.iter().rev().find(|s| s.at <= since)?.fingerprint.clone();
        samples.iter().find(|s| s.at > since && s.fingerprint != before).map(|s| s.at)
    }
}

impl Drop for SecretSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What an outage test measured, printed for `docs/reliability.md`.
#[derive(Debug)]
pub struct OutageFigures {
    pub outage: Duration,
    pub tokens: usize,
    pub due_during_outage: usize,
    /// Longest time from recovery (or from the due time, if later) to the new token in place.
    pub worst_renewal_after_recovery: Duration,
    pub least_time_left_seconds: i64,
    pub upstream_requests_during_outage: u64,
}

/// A control plane component down for `outage` while tokens are due, then back: every missed
/// renewal is done soon after, no token is seen expired, no Secret goes back to an older token
/// or disappears, and the watches resume in the same operator process (a new ConsentToken is
/// served, a deleted Secret put back).
pub async fn outage_with_tokens_due(component: &str, outage: Duration) -> OutageFigures {
    use fake_provider::Endpoint;
    // A Lease longer than the outage: the leader keeps it across (with the tests' usual 6 s
    // Lease it would stand down and exit, to be restarted by its Deployment; see
    // high_availability and leader_partition for that).
    let setup = super::operator::TestEnv::setup(&format!("{component}-outage"), &[]).await;
    let launch = super::operator::Launch { lease_duration: "45s".into(), ..setup.launch_defaults() };
    let mut env = setup.launch(launch).await;
    env.fake.set_fdx_lifetime(40);
    let tokens = 12;
    for i in 0..tokens {
        env.fdx_token(&format!("t{i}"), &format!("outage-customer-{i}")).await;
    }
    for i in 0..tokens {
        env.wait_for_ready(&format!("t{i}"), "True", "TokenValid").await;
    }
    let sampler = SecretSampler::start(env.client.clone(), &env.namespace);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut due = BTreeMap::new();
    for i in 0..tokens {
        let name = format!("t{i}");
        let status = env.tokens().get(&name).await.unwrap().status.unwrap();
        due.insert(name, status.next_refresh_time.unwrap().0);
    }

    let requests_before = env.fake.requests(Endpoint::FdxToken);
    let down = Timestamp::now();
    let fault = component.to_owned();
    tokio::task::spawn_blocking(move || super::control_plane_fault("stop", &fault)).await.unwrap();
    tokio::time::sleep(outage).await;
    let fault = component.to_owned();
    tokio::task::spawn_blocking(move || super::control_plane_fault("start", &fault)).await.unwrap();
    let up = Timestamp::now();
    let requests_during = env.fake.requests(Endpoint::FdxToken) - requests_before;

    let missed: Vec<(String, Timestamp)> = due.into_iter().filter(|(_, at)| *at < up).collect();
    assert!(!missed.is_empty(), "the outage was meant to cover due renewals");
    // A token whose write failed is kept and written later, not fetched again.
    assert!(
        requests_during <= missed.len() as u64,
        "{requests_during} upstream requests during the outage for {} due tokens",
        missed.len()
    );
    let mut worst = Duration::ZERO;
    for (name, due_at) in &missed {
        let changed =
            super::eventually(&format!("{name} renewed after the outage"), Duration::from_secs(60), || async {
                sampler.first_change_after(name, down)
            })
            .await;
        let from = if *due_at > up { *due_at } else { up };
        worst = worst.max(Duration::try_from(changed.duration_since(from)).unwrap_or_default());
    }
    assert!(worst <= Duration::from_secs(30), "a missed renewal took {worst:?} after recovery");

    // The same process, its watches resumed: a new ConsentToken is served, a deleted Secret
    // put back.
    assert!(env.operator.is_running(), "the operator was not restarted");
    env.fdx_token("after", "outage-customer-after").await;
    env.wait_for_ready("after", "True", "TokenValid").await;
    env.secrets().delete("t0", &Default::default()).await.unwrap();
    super::eventually("t0's Secret put back", Duration::from_secs(30), || async {
        env.token_in_secret("t0", "token").await
    })
    .await;

    let backwards = sampler.went_backwards();
    assert!(backwards.is_empty(), "Secrets went back to an older token: {backwards:?}");
    let lost: Vec<String> = sampler.lost().into_iter().filter(|n| n != "t0").collect();
    assert!(lost.is_empty(), "Secrets disappeared: {lost:?}");
    let least = sampler.least_time_left();
    assert!(least > 0, "a token was seen expired ({least}s left)");
    env.other_namespaces.clear();
    let figures = OutageFigures {
        outage,
        tokens,
        due_during_outage: missed.len(),
        worst_renewal_after_recovery: worst,
        least_time_left_seconds: least,
        upstream_requests_during_outage: requests_during,
    };
    eprintln!("FIGURES {component}: {figures:?}");
    figures
}
