//! One tenant cannot hurt another. A victim namespace holds 20 MX / FDX tokens of 120 s (renewed
//! at 60 s left); a hostile namespace then does everything at once: 100 ConsentTokens on a
//! tarpit (a host that answers every request after 8 s, uselessly, under 60 names and its
//! address: each request holds a worker, and no answer is a failure its breaker counts),
//! 20 on ports the admin does not allow, 200 with the largest annotations the API server accepts,
//! 1,000 on a host that answers 500, and a loop of refresh requests on 20 more that share the
//! victim's provider host. The operator runs cluster-wide, as the chart installs it, on the
//! chart's defaults (concurrency, write budget, per-host and per-namespace caps, Lease, minimum
//! token lifetime, refresh-request interval); only the ports the fakes listen on are allowed.
//!
//! First two minutes with the victim alone (the baseline), then five with the hostile namespace:
//! the victim's least time left, measured from the `exp` of the tokens in its Secrets, stays at or
//! above 55 s, the operator keeps running, and its memory stays under the chart's limit. The
//! figures are printed (`-- --nocapture`) and recorded in docs/reliability.md. A test binary of
//! its own: a cluster-wide operator must not meet other tests' objects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::{Duration, Instant};

use fake_provider::{Endpoint, FakeProvider, Fault};
use rand::distr::{Alphanumeric, SampleString};
use support::faults::SecretSampler;
use support::operator::{Launch, TestEnv};

const VICTIMS: usize = 20;
const LIFETIME: u64 = 120;
const TARPIT_NAMES: usize = 60;
const TARPIT_ADDRESS: usize = 40;
const CLOSED_PORTS: usize = 20;
const FAT: usize = 200;
const FAILING: usize = 1000;
const REFRESH_LOOP: usize = 20;
const BASELINE: Duration = Duration::from_secs(120);
const UNDER_ATTACK: Duration = Duration::from_secs(300);
/// The chart's `resources.limits.memory`.
const MEMORY_LIMIT: f64 = 128.0 * 1024.0 * 1024.0;
/// The API server's limit on all annotations of one object, keys included (256 KiB).
const ANNOTATIONS_LIMIT: usize = 256 * 1024;

fn fdx(base_url: &str, customer: &str, secret: &str) -> serde_json::Value {
    serde_json::json!({"fdx": {"baseUrl": base_url, "customerId": customer, "credentialsSecretRef": {"name": secret}}})
}

/// What the victim saw over one phase, and the operator's peak memory.
#[derive(Debug)]
struct Phase {
    least_time_left: i64,
    expired_or_lost: Vec<String>,
    renewals: usize,
    peak_memory_mib: f64,
}

async fn watch_victim(env: &mut TestEnv, victim: &str, length: Duration) -> Phase {
    let sampler = SecretSampler::start(env.client.clone(), victim);
    let started = Instant::now();
    let mut peak: f64 = 0.0;
    while started.elapsed() < length {
        let metrics = env.operator.metrics().await;
        let resident = metrics
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        peak = peak.max(resident.unwrap_or_default());
        assert!(env.operator.is_running(), "the operator exited");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut expired_or_lost = sampler.lost();
    let samples = sampler.samples();
    let expired = samples.iter().filter(|(_, s)| s.iter().any(|s| s.exp <= s.at.as_second()));
    expired_or_lost.extend(expired.map(|(name, _)| name.clone()));
    assert_eq!(samples.len(), VICTIMS, "every victim Secret was sampled");
    // Each new token a victim Secret was seen holding.
    let renewals =
        samples.values().map(|s| s.windows(2).filter(|w| w[0].fingerprint != w[1].fingerprint).count()).sum();
    Phase {
        least_time_left: sampler.least_time_left(),
        expired_or_lost,
        renewals,
        peak_memory_mib: peak / 1024.0 / 1024.0,
    }
}

#[tokio::test]
async fn a_hostile_namespace_leaves_another_namespaces_renewals_on_time() {
    let setup = TestEnv::setup("noisy", &["hostile", "victim"]).await;
    let [hostile, victim] = [0, 1].map(|i| setup.other_namespaces[i].clone());
    setup.fake.set_fdx_lifetime(LIFETIME);
    let failing = FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    failing.inject(Endpoint::FdxToken, Fault::Status(500), None);
    // Slow and useless: an answer 8 s later (within the 10 s timeout) that holds no token.
    let tarpit = FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let late = Fault::Late { delay: Duration::from_secs(8), then: Box::new(Fault::Garbage("{}".into())) };
    tarpit.inject(Endpoint::FdxToken, late, None);
    let tarpit_port = tarpit.addr().port();
    let ports = format!("{},{},{tarpit_port}", setup.fake.addr().port(), failing.addr().port());
    let launch = Launch {
        namespace: None,
        ca_pem: format!("{}{}{}", setup.fake.ca_pem(), failing.ca_pem(), tarpit.ca_pem()),
        provider_ports: ports,
        // The chart's defaults where tests usually shorten them.
        min_token_lifetime: "90s".into(),
        refresh_request_interval: "30s".into(),
        lease_duration: support::faults::chart_lease_duration(),
        // The tarpit's certificate names *.fake.test.
        hosts: (0..TARPIT_NAMES).map(|i| ("127.0.0.1".to_owned(), format!("tarpit-{i}.fake.test"))).collect(),
        ..setup.launch_defaults()
    };
    let mut env = setup.launch(launch).await;

    // The victim: 20 tokens, Ready, then two minutes alone.
    env.namespace = victim.clone();
    env.fake.add_fdx_client("mx-victim", "mx-secret-victim");
    env.put_secret("victim-credentials", &[("client_id", "mx-victim"), ("client_secret", "mx-secret-victim")]).await;
    for i in 0..VICTIMS {
        env.create_token(
            &format!("victim-{i}"),
            fdx(&env.fake.base_url(), &format!("victim-customer-{i}"), "victim-credentials"),
        )
        .await;
    }
    for i in 0..VICTIMS {
        env.wait_for_ready(&format!("victim-{i}"), "True", "TokenValid").await;
    }
    let baseline = watch_victim(&mut env, &victim, BASELINE).await;
    eprintln!("noisy neighbour: baseline (victim alone, {BASELINE:?}): {baseline:?}");

    // The hostile namespace, all at once. Its Secret's owner allows every host.
    env.namespace = hostile.clone();
    env.fake.add_fdx_client("mx-hostile", "mx-secret-hostile");
    failing.add_fdx_client("mx-hostile", "mx-secret-hostile");
    tarpit.add_fdx_client("mx-hostile", "mx-secret-hostile");
    env.put_secret_annotated(
        "hostile-credentials",
        &[("client_id", "mx-hostile"), ("client_secret", "mx-secret-hostile")],
        &[("consent.dev/allowed-hosts", "*")],
    )
    .await;
    let mut objects: Vec<(String, serde_json::Value, bool)> = Vec::new();
    for i in 0..TARPIT_NAMES {
        let url = format!("https://tarpit-{i}.fake.test:{tarpit_port}");
        objects.push((format!("tarpit-name-{i}"), fdx(&url, &format!("h-{i}"), "hostile-credentials"), false));
    }
    for i in 0..TARPIT_ADDRESS {
        let url = format!("https://127.0.0.1:{tarpit_port}");
        objects.push((format!("tarpit-address-{i}"), fdx(&url, &format!("h-{i}"), "hostile-credentials"), false));
    }
    for i in 0..CLOSED_PORTS {
        let url = format!("https://127.0.0.1:{}", support::operator::free_port());
        objects.push((format!("closed-port-{i}"), fdx(&url, &format!("h-{i}"), "hostile-credentials"), false));
    }
    for i in 0..FAT {
        objects.push((format!("fat-{i}"), fdx(&failing.base_url(), &format!("h-{i}"), "hostile-credentials"), true));
    }
    for i in 0..FAILING {
        objects.push((
            format!("failing-{i}"),
            fdx(&failing.base_url(), &format!("h-{i}"), "hostile-credentials"),
            false,
        ));
    }
    for i in 0..REFRESH_LOOP {
        let spec = fdx(&env.fake.base_url(), &format!("h-{i}"), "hostile-credentials");
        objects.push((format!("refresh-loop-{i}"), spec, false));
    }
    let objects = objects
        .into_iter()
        .map(|(name, spec, fat)| {
            let mut object = serde_json::json!({
                "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
                "metadata": {"name": name}, "spec": spec,
            });
            if fat {
                let key = "hostile.example/padding";
                // Random, so nothing along the way compresses it.
                let value = Alphanumeric.sample_string(&mut rand::rng(), ANNOTATIONS_LIMIT - key.len() - 64);
                object["metadata"]["annotations"] = serde_json::json!({ key: value });
            }
            object
        })
        .collect();
    let attack_started = Instant::now();
    let created = env.create_tokens(objects).await;
    let total = TARPIT_NAMES + TARPIT_ADDRESS + CLOSED_PORTS + FAT + FAILING + REFRESH_LOOP;
    assert_eq!(created, total, "the API server took every hostile object");
    eprintln!("noisy neighbour: {total} hostile objects created in {:?}", attack_started.elapsed());
    let refresh_loop = {
        let tokens = env.tokens();
        tokio::spawn(async move {
            loop {
                for i in 0..REFRESH_LOOP {
                    let value = jiff::Timestamp::now().to_string();
                    let patch =
                        serde_json::json!({"metadata": {"annotations": {"consent.dev/refresh-requested-at": value}}});
                    let params = kube::api::PatchParams::default();
                    let _ = tokens.patch(&format!("refresh-loop-{i}"), &params, &kube::api::Patch::Merge(&patch)).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let hostile_requests = (
        failing.requests(Endpoint::FdxToken),
        env.fake.requests(Endpoint::FdxToken),
        tarpit.requests(Endpoint::FdxToken),
    );
    let attacked = watch_victim(&mut env, &victim, UNDER_ATTACK).await;
    refresh_loop.abort();
    let reconciles = env.operator.reconciles().await;
    eprintln!(
        "noisy neighbour: under attack ({UNDER_ATTACK:?}): {attacked:?}; requests to the failing host {}, \
         to the tarpit {}, to the shared host (victim and refresh loop) {}; reconciles in all {reconciles}",
        failing.requests(Endpoint::FdxToken) - hostile_requests.0,
        tarpit.requests(Endpoint::FdxToken) - hostile_requests.2,
        env.fake.requests(Endpoint::FdxToken) - hostile_requests.1,
    );

    // The proof the hostile namespace was served too (its objects were reconciled, the failing
    // host was tried), before what did not happen to the victim.
    let hostile_statuses = env.tokens().list(&Default::default()).await.unwrap().items;
    let reported =
        hostile_statuses.iter().filter(|ct| ct.status.as_ref().is_some_and(|s| !s.conditions.is_empty())).count();
    assert_eq!(reported, total, "every hostile object has a status with a reason");
    assert!(failing.requests(Endpoint::FdxToken) > 0, "the failing host was tried");
    assert!(tarpit.requests(Endpoint::FdxToken) > 0, "the tarpit was tried");
    for phase in [&baseline, &attacked] {
        assert!(phase.expired_or_lost.is_empty(), "victim tokens expired or lost: {:?}", phase.expired_or_lost);
        assert!(
            phase.least_time_left >= 55,
            "a victim renewal came late: {} s left ({phase:?})",
            phase.least_time_left
        );
        assert!(phase.peak_memory_mib * 1024.0 * 1024.0 < MEMORY_LIMIT, "memory over the chart's limit: {phase:?}");
    }
    // Renewed every 60 s or so: about five times each in five minutes.
    assert!(attacked.renewals >= VICTIMS * 4, "the victim's tokens kept being renewed: {attacked:?}");
}
