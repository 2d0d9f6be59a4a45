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
    pub outages: usize,
    pub tokens: usize,
    /// Renewals that fell due during an outage (or before the leader led again after it).
    pub due_during_outages: usize,
    /// Longest time from recovery (or from the due time, if later) to the new token in place.
    pub worst_renewal_after_recovery: Duration,
    pub least_time_left_seconds: i64,
    pub upstream_requests_during_outages: u64,
}

/// The chart's default `--lease-duration` (values.yaml `lease.duration`): the fault tests run
/// on it, as users do.
pub fn chart_lease_duration() -> String {
    let values =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/charts/consent-token-operator/values.yaml"))
            .unwrap();
    let lease = values.split("\nlease:\n").nth(1).expect("a lease: block in values.yaml");
    let duration = lease.lines().find_map(|l| l.trim().strip_prefix("duration: ")).expect("lease.duration");
    duration.trim().to_owned()
}

/// Whether at most one of `operators` wrote at any moment, told from their own logs: each
/// one's leading spans ("became leader" to "standing by") do not overlap another's, and each
/// "token written" lies in a span of its writer's. Returns the number of writes checked.
pub fn one_writer_at_a_time(operators: &[&super::operator::Operator]) -> usize {
    let mut spans = Vec::new();
    let mut writes = 0;
    for (who, operator) in operators.iter().enumerate() {
        let logs = operator.logs();
        let mut leading_since: Option<Timestamp> = None;
        let mut own = Vec::new();
        for line in logs.lines() {
            let Some(at) = operator.log_time(line) else { continue };
            if line.contains("became leader") {
                leading_since = Some(at);
            } else if line.contains("standing by") {
                own.push((leading_since.take().expect("standing by without having led"), at));
            } else if line.contains("token written") {
                assert!(leading_since.is_some(), "{} wrote at {at} while not leading", operator.identity);
                writes += 1;
            }
        }
        if let Some(since) = leading_since {
            own.push((since, Timestamp::MAX));
        }
        spans.extend(own.into_iter().map(|(from, to)| (from, to, who)));
    }
    spans.sort();
    for pair in spans.windows(2) {
        let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
        assert!(a == b || end <= start, "replicas {a} and {b} led at once: one until {end}, the other from {start}");
    }
    writes
}

/// A control plane component down `outages` times for `outage` each, a minute apart, while
/// tokens are due, with two operator processes on the chart's default Lease: neither process
/// exits, at most one writes at any moment, every missed renewal is done within 30 s of the
/// recovery, no token is seen expired, no Secret goes back to an older token or disappears, and
/// the watches resume in the same processes (a new ConsentToken is served, a deleted Secret put
/// back).
pub async fn outages_with_tokens_due(component: &str, outage: Duration, outages: usize) -> OutageFigures {
    use fake_provider::Endpoint;
    let setup = super::operator::TestEnv::setup(&format!("{component}-outage"), &[]).await;
    let lease_duration = chart_lease_duration();
    let launch = super::operator::Launch { lease_duration: lease_duration.clone(), ..setup.launch_defaults() };
    let mut env = setup.launch(launch).await;
    env.operator.wait_until_leader(&env.namespace).await;
    let standby_launch =
        super::operator::Launch { lease_duration, ..super::operator::Launch::new(&env.namespace, env.fake.ca_pem()) };
    let mut standby = super::operator::Operator::launch(standby_launch).await;
    // Renewed at half their life (60 s left): more than the longest outage and the time to
    // lead again after it, so a token that expires is the operator's fault.
    env.fake.set_fdx_lifetime(120);
    let tokens = 12;
    for i in 0..tokens {
        env.fdx_token(&format!("t{i}"), &format!("outage-customer-{i}")).await;
    }
    for i in 0..tokens {
        env.wait_for_ready(&format!("t{i}"), "True", "TokenValid").await;
    }
    let sampler = SecretSampler::start(env.client.clone(), &env.namespace);
    let (mut missed_total, mut worst, mut requests_during) = (0, Duration::ZERO, 0);
    for round in 0..outages {
        // The next ones a minute after the previous recovery; the renewals due are read after
        // that minute, or those done meanwhile would count as missed.
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        let mut due = BTreeMap::new();
        for i in 0..tokens {
            let name = format!("t{i}");
            let on_secret = env.on_secret(&name).await.unwrap();
            due.insert(name, on_secret.next_refresh_at);
        }
        // The first outage starts just before the first renewal falls due.
        if round == 0 {
            let first_due = *due.values().min().unwrap();
            let wait = first_due.duration_since(Timestamp::now()) - jiff::SignedDuration::from_secs(3);
            tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
        }
        let requests_before = env.fake.requests(Endpoint::FdxToken);
        let down = Timestamp::now();
        let fault = component.to_owned();
        tokio::task::spawn_blocking(move || super::control_plane_fault("stop", &fault)).await.unwrap();
        tokio::time::sleep(outage).await;
        let fault = component.to_owned();
        tokio::task::spawn_blocking(move || super::control_plane_fault("start", &fault)).await.unwrap();
        let up = Timestamp::now();
        let during = env.fake.requests(Endpoint::FdxToken) - requests_before;
        let missed: Vec<(String, Timestamp)> = due.into_iter().filter(|(_, at)| *at < up).collect();
        assert!(round > 0 || !missed.is_empty(), "the outage was meant to cover due renewals");
        // A token whose write failed is kept and written later, not fetched again.
        assert!(
            during <= missed.len() as u64,
            "{during} upstream requests during the outage for {} due tokens",
            missed.len()
        );
        for (name, due_at) in &missed {
            let changed =
                super::eventually(&format!("{name} renewed after the outage"), Duration::from_secs(60), || async {
                    sampler.first_change_after(name, down)
                })
                .await;
            let from = if *due_at > up { *due_at } else { up };
            worst = worst.max(Duration::try_from(changed.duration_since(from)).unwrap_or_default());
        }
        missed_total += missed.len();
        requests_during += during;
        assert!(env.operator.is_running() && standby.is_running(), "an operator process exited");
    }
    assert!(worst <= Duration::from_secs(30), "a missed renewal took {worst:?} after recovery");

    // The same processes, their watches resumed: a new ConsentToken is served, a deleted
    // Secret put back.
    env.fdx_token("after", "outage-customer-after").await;
    env.wait_for_ready("after", "True", "TokenValid").await;
    env.secrets().delete("t0", &Default::default()).await.unwrap();
    super::eventually("t0's Secret put back", Duration::from_secs(30), || async {
        env.token_in_secret("t0", "token").await
    })
    .await;

    assert!(env.operator.is_running() && standby.is_running(), "an operator process exited");
    let writes = one_writer_at_a_time(&[&env.operator, &standby]);
    assert!(writes > 0);
    let backwards = sampler.went_backwards();
    assert!(backwards.is_empty(), "Secrets went back to an older token: {backwards:?}");
    let lost: Vec<String> = sampler.lost().into_iter().filter(|n| n != "t0").collect();
    assert!(lost.is_empty(), "Secrets disappeared: {lost:?}");
    let least = sampler.least_time_left();
    assert!(least > 0, "a token was seen expired ({least}s left)");
    env.other_namespaces.clear();
    let figures = OutageFigures {
        outage,
        outages,
        tokens,
        due_during_outages: missed_total,
        worst_renewal_after_recovery: worst,
        least_time_left_seconds: least,
        upstream_requests_during_outages: requests_during,
    };
    eprintln!("FIGURES {component}: {figures:?}");
    figures
}
