//! `make bench`: N ConsentTokens on one operator replica, against a real control plane and the
//! fake provider, measured against what a minimal client of the same API server can do.
//!
//! For each size: time to all Ready and the floor (the same API writes by a minimal kube-rs
//! client at the same concurrency); steady state over at least one MX token lifetime (refresh
//! lateness against each token's own scheduled time, tokens that ever expired in their Secret,
//! API writes per refresh, upstream requests by endpoint); cost (RSS, CPU); and a SIGKILL restart
//! (upstream requests per minute after it, time until every object is Ready in the new process).
//!
//! With `--hostile N`: N ConsentTokens with and without a hostile namespace beside them, on the
//! chart's defaults (see `hostile.rs`).

mod cluster;
mod hostile;
mod plot;
mod timeline;
mod workload;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use fake_provider::{Endpoint, FakeProvider};
use serde::Serialize;

use cluster::{ControlPlane, Error, Operator};

#[derive(Parser)]
struct Args {
    /// Numbers of ConsentTokens to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    sizes: Vec<usize>,
    /// Length of the steady-state window in seconds (at least one 300 s MX lifetime).
    #[arg(long, default_value_t = 330)]
    steady_seconds: u64,
    /// Where results go (JSON, markdown, PNG).
    #[arg(long, default_value = "docs/performance")]
    out: PathBuf,
    /// For profiling: a command to run the first operator process under, such as
    /// `heaptrack -o /tmp/op` or `perf record -g -o /tmp/perf.data --` (its RSS and CPU
    /// figures are then the wrapper's), and the operator binary to use instead of the release one
    /// (e.g. target/profiling/consent-token-operator, which has symbols).
    #[arg(long, allow_hyphen_values = true)]
    wrap: Option<String>,
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Instead of the sizes: the victim's renewal lateness with N ConsentTokens, alone and with
    /// a hostile namespace beside them (results: hostile.json and hostile.md in `--out`).
    #[arg(long)]
    hostile: Option<usize>,
    /// The FDX tokens' lifetime in seconds (MX: 300). The largest size whose tokens of this
    /// lifetime never expire is the operator's ceiling on this machine (docs/performance).
    #[arg(long, default_value_t = MX_LIFETIME_S)]
    token_lifetime_seconds: u64,
    /// Skip the restart measurement (for profiling runs).
    #[arg(long)]
    no_restart: bool,
    /// Measure nothing: write the report (table, memory and time plots) into `--out` from the
    /// results of earlier runs, sizes in the order given (the lateness plot needs a run's own data
    /// and is left as it is).
    #[arg(long, value_delimiter = ',')]
    render: Vec<PathBuf>,
}

#[derive(Serialize, serde::Deserialize, Clone, Default)]
#[serde(default)]
pub struct Result_ {
    n: usize,
    onetrust_credentials: usize,
    time_to_all_ready_s: f64,
    floor_s: f64,
    ready_over_floor: f64,
    /// The FDX tokens' lifetime (`--token-lifetime-seconds`, 300 s as MX's by default).
    token_lifetime_s: u64,
    /// The floor with only the Secret and the status written (the operator's Event left out).
    floor_without_events_s: f64,
    ready_over_floor_without_events: f64,
    steady_window_s: f64,
    refreshes: usize,
    lateness_p50_ms: f64,
    lateness_p99_ms: f64,
    lateness_max_ms: f64,
    expired_tokens: usize,
    /// Writes to Secrets and ConsentTokens per renewal in the steady window. Its floor is 1:
    /// a new token is one Secret write, and nothing else has to change.
    api_writes_per_refresh: f64,
    /// CPU milliseconds kube-apiserver and etcd spent per renewal in the steady window.
    apiserver_cpu_ms_per_refresh: f64,
    etcd_cpu_ms_per_refresh: f64,
    /// API requests (Secrets, ConsentTokens, Events; by verb) per object, made by the floor
    /// client, and while the operator brought every object to Ready (the watch that counts
    /// Ready included, its list is one request); per refresh in the steady window.
    floor_requests_per_object: BTreeMap<String, f64>,
    ready_requests_per_object: BTreeMap<String, f64>,
    steady_requests_per_refresh: BTreeMap<String, f64>,
    upstream_requests: HashMap<String, u64>,
    oauth_requests: u64,
    rss_peak_mib: f64,
    rss_steady_mib: f64,
    rss_idle_mib: f64,
    mib_per_1000: f64,
    cpu_seconds_per_minute: f64,
    /// Upstream requests per minute, averaged over the steady window.
    normal_minute_requests: u64,
    /// The busiest 60 s of the steady window: tokens created together renew in waves.
    steady_peak_minute_requests: u64,
    restart_first_minute_requests: u64,
    restart_second_minute_requests: u64,
    /// Busiest minute after the restart over the average minute (target <= 1.2).
    restart_peak_ratio: f64,
    /// Busiest minute after the restart over the steady window's own busiest minute.
    restart_peak_over_steady_peak: f64,
    restart_time_to_all_ready_s: f64,
    /// CPU cores used on average, by process (the operator, kube-apiserver, etcd,
    /// kube-controller-manager), while the floor client wrote, while the operator brought every
    /// object to Ready, and in the steady window: where the API server's share nears the
    /// machine's cores, the API server is the limit.
    floor_cores: BTreeMap<String, f64>,
    ready_cores: BTreeMap<String, f64>,
    steady_cores: BTreeMap<String, f64>,
    #[serde(skip)]
    lateness_ms: Vec<f64>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::create_dir_all(&args.out)?;
    let mut results = Vec::new();
    let machine = machine();
    if let Some(n) = args.hostile {
        let operator = args.operator.clone().unwrap_or_else(|| root.join("target/release/consent-token-operator"));
        let report = hostile::run(&root, n, &operator).await?;
        std::fs::write(args.out.join("hostile.json"), serde_json::to_string_pretty(&report)? + "\n")?;
        std::fs::write(args.out.join("hostile.md"), hostile::markdown(&report, &machine))?;
        println!("{}", hostile::markdown(&report, &machine));
        return Ok(());
    }
    if !args.render.is_empty() {
        for path in &args.render {
            let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
            results.extend(serde_json::from_value::<Vec<Result_>>(run["results"].clone())?);
        }
        return write_report(&args, &results, &machine, false);
    }
    for &n in &args.sizes {
        eprintln!("== N = {n}");
        let result = run(&root, n, Duration::from_secs(args.steady_seconds), &args).await?;
        eprintln!("{}", serde_json::to_string_pretty(&result)?);
        results.push(result);
        // After each size: a larger one that fails or is stopped leaves the smaller ones' figures.
        write_report(&args, &results, &machine, true)?;
    }
    println!("{}", plot::markdown(&results, &machine));
    Ok(())
}

fn write_report(args: &Args, results: &[Result_], machine: &str, lateness: bool) -> Result<(), Error> {
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&serde_json::json!({"machine": machine, "results": results}))? + "\n",
    )?;
    std::fs::write(args.out.join("results.md"), plot::markdown(results, machine))?;
    if lateness {
        plot::lateness(results, &args.out.join("lateness.png"))?;
    }
    plot::memory(results, &args.out.join("memory.png"))?;
    plot::time_to_ready(results, &args.out.join("ready.png"))?;
    Ok(())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(0);
    format!("{cpus} CPUs, {} GiB RAM, {}", mem / 1024 / 1024, std::env::consts::ARCH)
}

async fn run(root: &std::path::Path, n: usize, steady: Duration, args: &Args) -> Result<Result_, Error> {
    let dir = std::env::temp_dir().join(format!("consent-bench-{n}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let control_plane = ControlPlane::start(root)?;
    let client = control_plane.client().await?;
    workload::install_crds(root, &control_plane.kubeconfig)?;

    let fake = Arc::new(FakeProvider::start("127.0.0.1:0".parse()?).await?);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, fake.ca_pem())?;
    fake.set_fdx_lifetime(MX_LIFETIME_S);
    fake.set_oauth_expires_in(3600);
    let operator_bin = args.operator.clone().unwrap_or_else(|| root.join("target/release/consent-token-operator"));
    let wrap: Vec<String> = args.wrap.iter().flat_map(|w| w.split_whitespace().map(str::to_owned)).collect();

    // Idle memory: the operator with nothing to do.
    workload::namespace(&client, "empty").await?;
    let idle = Operator::start(&[], &operator_bin, &control_plane.kubeconfig, "empty", &ca, &dir.join("idle.log"))?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let rss_idle = cluster::rss_bytes(idle.pid()).unwrap_or(0);
    drop(idle);

    // The floor: the same API writes by a minimal client, in a namespace of its own.
    let onetrust_credentials = 5;
    workload::namespace(&client, "floor").await?;
    workload::create_consent_tokens(&client, "floor", n, onetrust_credentials, &fake).await?;
    let mut measured_pids = cluster::control_plane_processes(&control_plane.kubeconfig);
    // The bench itself: the floor client, then the fake provider and the watches that measure.
    measured_pids.insert("bench".into(), std::process::id());
    // The bench watches the operator's ConsentTokens to see them Ready, which costs the API
    // server a watch event per status write: the floor client is watched the same way.
    let floor_watch = workload::ReadyCounter::start(client.clone(), "floor");
    cluster::wait_until("the floor's watch listed", Duration::from_secs(120), Duration::from_millis(100), || {
        let floor_watch = floor_watch.clone();
        async move { floor_watch.seen() >= n }
    })
    .await?;
    let floor_before = cluster::api_requests(&client).await?;
    let floor_cpu_before = cluster::cpu_times(&measured_pids);
    let floor = workload::floor(&client, "floor", n, "a", true).await?;
    let floor_cores = cluster::cores(&floor_cpu_before, &cluster::cpu_times(&measured_pids), floor);
    let floor_requests = per(&cluster::difference(&floor_before, &cluster::api_requests(&client).await?), n);
    let floor_without_events = workload::floor(&client, "floor", n, "b", false).await?;
    floor_watch.stop();
    eprintln!("floor: {floor:?} ({floor_without_events:?} without Events)");

    // MX tokens live 300 s: renewed at half their life with one write each, N of them need
    // N/150 writes a second in the steady state. Where the API server cannot write that many
    // (and the fill's), tokens expire: the report shows it, and the largest N without is the
    // ceiling (docs/performance). The steady window covers a whole lifetime.
    let lifetime = Duration::from_secs(args.token_lifetime_seconds);
    fake.set_fdx_lifetime(lifetime.as_secs());
    let steady = steady.max(lifetime + Duration::from_secs(30));

    // The operator from a standing start.
    workload::namespace(&client, "bench").await?;
    workload::create_credentials(&client, "bench", onetrust_credentials, &fake).await?;
    workload::create_consent_tokens(&client, "bench", n, onetrust_credentials, &fake).await?;
    let ready = workload::ReadyCounter::start(client.clone(), "bench");
    let ready_before = cluster::api_requests(&client).await?;
    let mut operator =
        Operator::start(&wrap, &operator_bin, &control_plane.kubeconfig, "bench", &ca, &dir.join("operator.log"))?;
    let pid = operator.pid();
    let timeline = timeline::Timeline::start(
        ready.clone(),
        operator.metrics_addr.clone(),
        fake.clone(),
        measured_pids.get("kube-apiserver").copied(),
    );
    let mut processes = measured_pids.clone();
    processes.insert("operator".into(), pid);
    let ready_cpu_before = cluster::cpu_times(&processes);
    let peak = Arc::new(Mutex::new(0u64));
    let sampler = rss_sampler(pid, peak.clone());
    let time_to_ready = cluster::wait_until("all Ready", Duration::from_secs(1800), Duration::from_millis(250), || {
        let ready = ready.clone();
        async move { ready.count() >= n }
    })
    .await?;
    eprintln!("all {n} Ready after {time_to_ready:?}");
    let ready_cores = cluster::cores(&ready_cpu_before, &cluster::cpu_times(&processes), time_to_ready);
    let ready_requests = per(&cluster::difference(&ready_before, &cluster::api_requests(&client).await?), n);

    // Steady state.
    let refreshes = workload::RefreshWatch::start(client.clone(), "bench");
    tokio::time::sleep(Duration::from_secs(5)).await; // let the watch list everything
    refreshes.start_window();
    let requests_before = upstream_counts(&fake);
    let writes_before = cluster::api_writes(&client).await?;
    let steady_before = cluster::api_requests(&client).await?;
    let cpu_before = cluster::cpu_time(pid).unwrap_or_default();
    let steady_cpu_before = cluster::cpu_times(&processes);
    let window_start = Instant::now();
    let mut rss_samples = Vec::new();
    let per_10s_start = upstream_total(&fake);
    let mut per_10s = vec![per_10s_start];
    while window_start.elapsed() < steady {
        tokio::time::sleep(Duration::from_secs(10)).await;
        rss_samples.push(cluster::rss_bytes(pid).unwrap_or(0));
        per_10s.push(upstream_total(&fake));
    }
    let window = window_start.elapsed();
    let cpu = cluster::cpu_time(pid).unwrap_or_default().saturating_sub(cpu_before);
    let steady_cores = cluster::cores(&steady_cpu_before, &cluster::cpu_times(&processes), window);
    let writes = cluster::api_writes(&client).await? - writes_before;
    let steady_after = cluster::api_requests(&client).await?;
    let requests = upstream_counts(&fake);
    let (lateness, expired, refresh_count) = refreshes.finish();
    let expired = expired + refreshes.expired_now();
    timeline.write(&args.out, n, &refreshes.planned())?;
    drop(timeline);
    let window_requests = per_10s.last().copied().unwrap_or(0) - per_10s_start;
    let normal_minute = (window_requests as f64 / (window.as_secs_f64() / 60.0)).round() as u64;
    let steady_peak_minute = per_10s.windows(7).map(|w| w[6] - w[0]).max().unwrap_or(window_requests);

    sampler.abort();
    let (first_minute, second_minute, restart_ready) = if args.no_restart {
        // Let a wrapping profiler write its data.
        operator.interrupt();
        (0, 0, Duration::ZERO)
    } else {
        // Restart: SIGKILL at steady state, start again at once.
        operator.kill();
        let before_restart = upstream_total(&fake);
        let restarted =
            Operator::start(&[], &operator_bin, &control_plane.kubeconfig, "bench", &ca, &dir.join("restart.log"))?;
        let restart_ready = cluster::wait_until(
            "all Ready after restart",
            Duration::from_secs(900),
            Duration::from_millis(250),
            || {
                let restarted = &restarted;
                async move { restarted.metric_sum("consent_token_ready").await >= n as f64 }
            },
        )
        .await?;
        let restart_started = Instant::now() - restart_ready;
        sleep_until(restart_started + Duration::from_secs(60)).await;
        let first_minute = upstream_total(&fake) - before_restart;
        sleep_until(restart_started + Duration::from_secs(120)).await;
        let second_minute = upstream_total(&fake) - before_restart - first_minute;
        (first_minute, second_minute, restart_ready)
    };

    let mut sorted = lateness.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    let mib = |b: u64| b as f64 / 1024.0 / 1024.0;
    let rss_steady = rss_samples.iter().sum::<u64>() / rss_samples.len().max(1) as u64;
    let upstream_requests: HashMap<String, u64> = [
        ("onetrust_oauth", Endpoint::OneTrustOAuth),
        ("collection_point_token", Endpoint::CollectionPointToken),
        ("fdx_token", Endpoint::FdxToken),
    ]
    .into_iter()
    .map(|(name, e)| (name.to_owned(), requests[&e] - requests_before[&e]))
    .collect();
    let result = Result_ {
        n,
        onetrust_credentials,
        time_to_all_ready_s: time_to_ready.as_secs_f64(),
        floor_s: floor.as_secs_f64(),
        token_lifetime_s: lifetime.as_secs(),
        ready_over_floor: time_to_ready.as_secs_f64() / floor.as_secs_f64(),
        floor_without_events_s: floor_without_events.as_secs_f64(),
        ready_over_floor_without_events: time_to_ready.as_secs_f64() / floor_without_events.as_secs_f64(),
        steady_window_s: window.as_secs_f64(),
        refreshes: refresh_count,
        lateness_p50_ms: pct(0.5),
        lateness_p99_ms: pct(0.99),
        lateness_max_ms: sorted.last().copied().unwrap_or(0.0),
        expired_tokens: expired,
        api_writes_per_refresh: writes / refresh_count.max(1) as f64,
        apiserver_cpu_ms_per_refresh: cpu_ms_per(&steady_cores, "kube-apiserver", window, refresh_count),
        etcd_cpu_ms_per_refresh: cpu_ms_per(&steady_cores, "etcd", window, refresh_count),
        floor_requests_per_object: floor_requests,
        ready_requests_per_object: ready_requests,
        steady_requests_per_refresh: per(&cluster::difference(&steady_before, &steady_after), refresh_count),
        oauth_requests: fake.requests(Endpoint::OneTrustOAuth),
        upstream_requests,
        rss_peak_mib: mib(*peak.lock().unwrap_or_else(|p| p.into_inner())),
        rss_steady_mib: mib(rss_steady),
        rss_idle_mib: mib(rss_idle),
        mib_per_1000: (mib(rss_steady) - mib(rss_idle)) / (n as f64 / 1000.0),
        cpu_seconds_per_minute: cpu.as_secs_f64() / (window.as_secs_f64() / 60.0),
        normal_minute_requests: normal_minute,
        restart_first_minute_requests: first_minute,
        restart_second_minute_requests: second_minute,
        steady_peak_minute_requests: steady_peak_minute,
        restart_peak_ratio: first_minute.max(second_minute) as f64 / normal_minute.max(1) as f64,
        restart_peak_over_steady_peak: first_minute.max(second_minute) as f64 / steady_peak_minute.max(1) as f64,
        restart_time_to_all_ready_s: restart_ready.as_secs_f64(),
        floor_cores,
        ready_cores,
        steady_cores,
        lateness_ms: lateness,
    };
    drop(control_plane);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result)
}

/// CPU milliseconds `process` spent per refresh, from its average cores over the window.
fn cpu_ms_per(cores: &BTreeMap<String, f64>, process: &str, window: Duration, refreshes: usize) -> f64 {
    cores.get(process).copied().unwrap_or(0.0) * window.as_secs_f64() * 1000.0 / refreshes.max(1) as f64
}

const MX_LIFETIME_S: u64 = 300;

/// Each count divided by `n`, to two decimals, leaving out what rounds to zero (the lists
/// and the like that happen once per run).
fn per(counts: &BTreeMap<String, f64>, n: usize) -> BTreeMap<String, f64> {
    counts
        .iter()
        .map(|(k, v)| (k.clone(), (v / n.max(1) as f64 * 100.0).round() / 100.0))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

async fn sleep_until(deadline: Instant) {
    tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
}

fn upstream_counts(fake: &FakeProvider) -> HashMap<Endpoint, u64> {
    [Endpoint::OneTrustOAuth, Endpoint::CollectionPointToken, Endpoint::FdxToken]
        .into_iter()
        .map(|e| (e, fake.requests(e)))
        .collect()
}

fn upstream_total(fake: &FakeProvider) -> u64 {
    upstream_counts(fake).values().sum()
}

fn rss_sampler(pid: u32, peak: Arc<Mutex<u64>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Some(rss) = cluster::rss_bytes(pid) {
                let mut peak = peak.lock().unwrap_or_else(|p| p.into_inner());
                *peak = (*peak).max(rss);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_refresh_is_the_cores_over_the_window_per_refresh() {
        let cores = BTreeMap::from([("kube-apiserver".to_owned(), 0.84)]);
        // The 10,000 run before one write per renewal: 0.84 cores for 330 s, 19,887 renewals.
        let ms = cpu_ms_per(&cores, "kube-apiserver", Duration::from_secs(330), 19_887);
        assert!((ms - 13.94).abs() < 0.01, "{ms}");
        assert_eq!(cpu_ms_per(&cores, "etcd", Duration::from_secs(330), 0), 0.0);
    }
}
