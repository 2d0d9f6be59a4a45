//! `consent-bench --hostile N`: what a hostile namespace costs another namespace's renewals, as
//! a figure. A victim namespace holds N ConsentTokens (the bench workload: MX tokens of 300 s,
//! one in ten a OneTrust collection point); the operator runs cluster-wide as the chart
//! installs it, on the chart's defaults. The victim's renewal lateness (each renewal against its
//! own scheduled time) is measured over one token lifetime alone, then over one lifetime while a
//! hostile namespace does what `tests/noisy_neighbour.rs` does: 100 ConsentTokens on a tarpit
//! (answers after 8 s with no token), 1,000 on a host that answers 500, 200 with 256 KiB of
//! annotations, and refresh requests twice a second on 20 that share the victim's provider.

use std::time::{Duration, Instant};

use fake_provider::{Endpoint, FakeProvider, Fault};
use futures::StreamExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::Serialize;

use consent_token_operator::api::crd::ConsentToken;

use crate::cluster::{self, ControlPlane, Error, Operator};
use crate::workload;

const LIFETIME_S: u64 = 300;
const TARPIT: usize = 100;
const FAILING: usize = 1000;
const FAT: usize = 200;
const REFRESH_LOOP: usize = 20;
/// The API server's limit on all annotations of one object, keys included (256 KiB).
const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// The victim's renewals over one window.
#[derive(Serialize, Debug)]
pub struct Window {
    pub renewals: usize,
    pub lateness_p50_ms: f64,
    pub lateness_p99_ms: f64,
    pub lateness_max_ms: f64,
    pub expired_tokens: usize,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub victim_objects: usize,
    pub hostile_objects: usize,
    pub window_s: u64,
    pub time_to_all_ready_s: f64,
    pub alone: Window,
    pub under_attack: Window,
    pub tarpit_requests: u64,
    pub failing_host_requests: u64,
}

pub async fn run(root: &std::path::Path, n: usize, operator_bin: &std::path::Path) -> Result<Report, Error> {
    let dir = std::env::temp_dir().join(format!("consent-bench-hostile-{n}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let control_plane = ControlPlane::start(root)?;
    let client = control_plane.client().await?;
    workload::install_crds(root, &control_plane.kubeconfig)?;
    let fake = FakeProvider::start("127.0.0.1:0".parse()?).await?;
    fake.set_fdx_lifetime(LIFETIME_S);
    let failing = FakeProvider::start("127.0.0.1:0".parse()?).await?;
    failing.inject(Endpoint::FdxToken, Fault::Status(500), None);
    let tarpit = FakeProvider::start("127.0.0.1:0".parse()?).await?;
    let late = Fault::Late { delay: Duration::from_secs(8), then: Box::new(Fault::Garbage("{}".into())) };
    tarpit.inject(Endpoint::FdxToken, late, None);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, format!("{}{}{}", fake.ca_pem(), failing.ca_pem(), tarpit.ca_pem()))?;

    workload::namespace(&client, "victim").await?;
    workload::create_credentials(&client, "victim", 5, &fake).await?;
    workload::create_consent_tokens(&client, "victim", n, 5, &fake).await?;
    let ready = workload::ReadyCounter::start(client.clone(), "victim");
    let mut operator =
        Operator::start_as_the_chart_does(operator_bin, &control_plane.kubeconfig, &ca, &dir.join("op.log"))?;
    let time_to_ready = cluster::wait_until("all Ready", Duration::from_secs(1800), Duration::from_millis(250), || {
        let ready = ready.clone();
        async move { ready.count() >= n }
    })
    .await?;
    ready.stop();
    eprintln!("hostile: {n} victim ConsentTokens Ready after {time_to_ready:?}");
    let window = Duration::from_secs(LIFETIME_S + 30);
    let alone = measure(&client, window).await;
    eprintln!("hostile: victim alone: {alone:?}");

    let hostile_objects = create_hostile(&client, &fake, &failing, &tarpit).await?;
    let refresh_loop = tokio::spawn(refresh_loop(Api::namespaced(client.clone(), "hostile")));
    let before = (tarpit.requests(Endpoint::FdxToken), failing.requests(Endpoint::FdxToken));
    let under_attack = measure(&client, window).await;
    refresh_loop.abort();
    eprintln!("hostile: victim under attack: {under_attack:?}");
    let running = operator.is_running();
    drop(operator);
    drop(control_plane);
    let _ = std::fs::remove_dir_all(&dir);
    if !running {
        return Err("the operator exited during the run".into());
    }
    Ok(Report {
        victim_objects: n,
        hostile_objects,
        window_s: window.as_secs(),
        time_to_all_ready_s: time_to_ready.as_secs_f64(),
        alone,
        under_attack,
        tarpit_requests: tarpit.requests(Endpoint::FdxToken) - before.0,
        failing_host_requests: failing.requests(Endpoint::FdxToken) - before.1,
    })
}

async fn measure(client: &Client, window: Duration) -> Window {
    let refreshes = workload::RefreshWatch::start(client.clone(), "victim");
    tokio::time::sleep(Duration::from_secs(5)).await; // let the watch list everything
    refreshes.start_window();
    tokio::time::sleep(window).await;
    let (mut lateness, expired, renewals) = refreshes.finish();
    lateness.sort_by(f64::total_cmp);
    let pct = |p: f64| lateness.get(((lateness.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    Window {
        renewals,
        lateness_p50_ms: pct(0.5),
        lateness_p99_ms: pct(0.99),
        lateness_max_ms: lateness.last().copied().unwrap_or(0.0),
        expired_tokens: expired + refreshes.expired_now(),
    }
}

async fn create_hostile(
    client: &Client,
    fake: &FakeProvider,
    failing: &FakeProvider,
    tarpit: &FakeProvider,
) -> Result<usize, Error> {
    workload::namespace(client, "hostile").await?;
    for provider in [fake, failing, tarpit] {
        provider.add_fdx_client("mx-hostile", "mx-secret-hostile");
    }
    let secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "hostile", "annotations": {"consent.dev/allowed-hosts": "*"}},
        "stringData": {"client_id": "mx-hostile", "client_secret": "mx-secret-hostile"},
    }))?;
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), "hostile")
        .create(&PostParams::default(), &secret)
        .await?;
    let fdx = |url: String, i: usize| serde_json::json!({"fdx": {"baseUrl": url, "customerId": format!("h-{i}"), "credentialsSecretRef": {"name": "hostile"}}});
    let mut objects = Vec::new();
    objects.extend((0..TARPIT).map(|i| (format!("tarpit-{i}"), fdx(tarpit.base_url(), i), false)));
    objects.extend((0..FAILING).map(|i| (format!("failing-{i}"), fdx(failing.base_url(), i), false)));
    objects.extend((0..FAT).map(|i| (format!("fat-{i}"), fdx(failing.base_url(), i), true)));
    objects.extend((0..REFRESH_LOOP).map(|i| (format!("refresh-loop-{i}"), fdx(fake.base_url(), i), false)));
    let total = objects.len();
    let api: Api<ConsentToken> = Api::namespaced(client.clone(), "hostile");
    let started = Instant::now();
    let created = futures::stream::iter(objects.into_iter().enumerate())
        .map(|(seed, (name, spec, fat))| {
            let api = api.clone();
            async move {
                let mut object = serde_json::json!({"apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
                    "metadata": {"name": name}, "spec": spec});
                if fat {
                    let key = "hostile.example/padding";
                    object["metadata"]["annotations"] =
                        serde_json::json!({ key: noise(seed as u64, ANNOTATIONS_LIMIT - key.len() - 64) });
                }
                api.create(&PostParams::default(), &serde_json::from_value(object)?).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(16)
        .filter(|created| std::future::ready(created.is_ok()))
        .count()
        .await;
    if created != total {
        return Err(format!("the API server took {created} of {total} hostile objects").into());
    }
    eprintln!("hostile: {total} hostile ConsentTokens created in {:?}", started.elapsed());
    Ok(total)
}

/// Refresh requests on the refresh-loop objects, twice a second, until aborted.
async fn refresh_loop(api: Api<ConsentToken>) {
    loop {
        for i in 0..REFRESH_LOOP {
            let value = jiff::Timestamp::now().to_string();
            let patch = serde_json::json!({"metadata": {"annotations": {"consent.dev/refresh-requested-at": value}}});
            let _ = api.patch(&format!("refresh-loop-{i}"), &PatchParams::default(), &Patch::Merge(&patch)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `len` letters and digits nothing along the way compresses (xorshift: a benchmark's filler).
fn noise(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(ALPHABET[(x % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

/// The report as a markdown table, for docs/performance/hostile.md.
pub fn markdown(report: &Report, machine: &str) -> String {
    let row = |w: &Window| {
        format!(
            "{} | {:.0} / {:.0} / {:.0} ms | {}",
            w.renewals, w.lateness_p50_ms, w.lateness_p99_ms, w.lateness_max_ms, w.expired_tokens
        )
    };
    format!(
        "Measured on {machine} with `consent-bench --hostile {n}` (`make bench-hostile`): {n} victim \
         ConsentTokens (MX tokens of 300 s, one in ten a OneTrust collection point), Ready in {ready:.1} s; \
         the operator cluster-wide on the chart's defaults. Each window is {window} s.\n\n\
         | victim namespace | renewals | lateness p50 / p99 / max | tokens expired |\n|---|---|---|---|\n\
         | alone | {alone} |\n| beside {hostile} hostile ConsentTokens | {attacked} |\n\n\
         In the window under attack the tarpit got {tarpit} requests and the host that answers 500 got {failing}.\n",
        n = report.victim_objects,
        ready = report.time_to_all_ready_s,
        window = report.window_s,
        alone = row(&report.alone),
        hostile = report.hostile_objects,
        attacked = row(&report.under_attack),
        tarpit = report.tarpit_requests,
        failing = report.failing_host_requests,
    )
}
