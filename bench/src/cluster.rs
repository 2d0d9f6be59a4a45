//! The pieces a benchmark run starts: a fresh control plane, the operator as a process, and
//! the measurements taken from outside them (RSS, CPU, the API server's write counters).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `scripts/control-plane up`; stops (and cleans up) when this value is dropped.
pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    process: Child,
}

impl ControlPlane {
    pub fn start(root: &Path) -> Result<Self, Error> {
        let mut process = Command::new(root.join("scripts/control-plane"))
            .arg("up")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(process.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let kubeconfig = line.strip_prefix("ready ").ok_or("control plane did not start")?.trim().into();
        Ok(Self { kubeconfig, process })
    }

    pub async fn client(&self) -> Result<Client, Error> {
        let config =
            Config::from_custom_kubeconfig(Kubeconfig::read_from(&self.kubeconfig)?, &KubeConfigOptions::default())
                .await?;
        Ok(Client::try_from(config)?)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        drop(self.process.stdin.take()); // EOF: the script stops every component
        let _ = self.process.wait();
    }
}

/// The operator binary, as its own process.
pub struct Operator {
    pub process: Child,
    pub metrics_addr: String,
}

impl Operator {
    /// Starts `bin`, under the command `wrap` when that is not empty (a profiler).
    pub fn start(
        wrap: &[String],
        bin: &Path,
        kubeconfig: &Path,
        namespace: &str,
        ca: &Path,
        log: &Path,
    ) -> Result<Self, Error> {
        let tuned = [
            "--watch-namespaces",
            namespace,
            "--leader-election",
            "false",
            // The floor client has no write limiter either: compare the work, not the limit.
            "--kube-api-qps",
            "100000",
            "--kube-api-burst",
            "100000",
            "--concurrency",
            "16",
        ];
        Self::spawn(wrap, bin, &tuned, kubeconfig, ca, log)
    }

    /// Starts `bin` as the chart starts it: every namespace, a Lease, and the chart's defaults
    /// for concurrency, write budget and upstream caps. Only what the loopback fakes need
    /// differs: their private addresses and ports are allowed, their CA trusted.
    pub fn start_as_the_chart_does(bin: &Path, kubeconfig: &Path, ca: &Path, log: &Path) -> Result<Self, Error> {
        Self::spawn(&[], bin, &["--lease-namespace", "default"], kubeconfig, ca, log)
    }

    fn spawn(
        wrap: &[String],
        bin: &Path,
        args: &[&str],
        kubeconfig: &Path,
        ca: &Path,
        log: &Path,
    ) -> Result<Self, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(bin);
                command
            }
            None => Command::new(bin),
        };
        let process = command
            .args(args)
            .args(["--metrics-addr", &metrics_addr])
            // The fake provider is on loopback, which the operator calls only when allowed.
            .args(["--allowed-private-networks", "127.0.0.0/8,::1/128"])
            // ...on a port the system picked.
            .args(["--allowed-provider-ports", "*"])
            .args(["--log-level", "warn", "--extra-ca-bundle"])
            .arg(ca)
            .env("KUBECONFIG", kubeconfig)
            .stdout(std::fs::File::create(log)?)
            .stderr(std::fs::File::options().append(true).open(log)?)
            .spawn()?;
        Ok(Self { process, metrics_addr })
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub async fn metrics(&self) -> String {
        match reqwest::get(format!("http://{}/metrics", self.metrics_addr)).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Sum of a metric family's samples.
    pub async fn metric_sum(&self, name: &str) -> f64 {
        sum_samples(&self.metrics().await, name)
    }

    /// SIGINT to the process (group), then waits for it to end: a profiler writes its data.
    pub fn interrupt(&mut self) {
        let pid = self.process.id().to_string();
        let _ = Command::new("pkill").args(["-INT", "-P", &pid]).status();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = self.process.wait();
    }

    /// Whether the process is still running (it has not exited on its own).
    pub fn is_running(&mut self) -> bool {
        matches!(self.process.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn sum_samples(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Resident set size of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User plus system CPU time of a process.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

/// The processes of this control plane (kube-apiserver, etcd, kube-controller-manager): those
/// whose command line names its directory, by program name.
pub fn control_plane_processes(kubeconfig: &Path) -> BTreeMap<String, u32> {
    let Some(dir) = kubeconfig.parent().map(|d| d.to_string_lossy().into_owned()) else { return BTreeMap::new() };
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let program = args.first().and_then(|a| a.rsplit('/').next()).unwrap_or_default().to_owned();
        if ["kube-apiserver", "etcd", "kube-controller-manager"].contains(&program.as_str())
            && args.iter().any(|a| a.contains(&dir))
        {
            found.insert(program, pid);
        }
    }
    found
}

/// CPU time of each of `processes` so far.
pub fn cpu_times(processes: &BTreeMap<String, u32>) -> BTreeMap<String, Duration> {
    processes.iter().filter_map(|(name, pid)| Some((name.clone(), cpu_time(*pid)?))).collect()
}

/// Cores used by each process between two readings `wall` apart.
pub fn cores(
    before: &BTreeMap<String, Duration>,
    after: &BTreeMap<String, Duration>,
    wall: Duration,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, t)| {
            let used = t.saturating_sub(before.get(name).copied().unwrap_or_default());
            (name.clone(), (used.as_secs_f64() / wall.as_secs_f64().max(0.001) * 100.0).round() / 100.0)
        })
        .collect()
}

/// Writes the API server has served for Secrets and ConsentTokens so far (create, update,
/// patch, apply), from its own `apiserver_request_total`.
pub async fn api_writes(client: &Client) -> Result<f64, Error> {
    Ok(api_requests(client)
        .await?
        .iter()
        .filter(|(k, _)| k.contains(" secrets") || k.contains(" consenttokens"))
        .filter(|(k, _)| ["POST ", "PATCH ", "APPLY ", "PUT "].iter().any(|v| k.starts_with(v)))
        .map(|(_, n)| n)
        .sum())
}

/// Requests the API server has served so far for Secrets, ConsentTokens and Events, by
/// "VERB resource" (e.g. "APPLY secrets"), from its own `apiserver_request_total`.
pub async fn api_requests(client: &Client) -> Result<BTreeMap<String, f64>, Error> {
    let text = client.request_text(http_request("/metrics")?).await?;
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            Some(&line[start..start + line[start..].find('"')?])
        };
        let (Some(verb), Some(resource)) = (label("verb"), label("resource")) else { continue };
        if !["secrets", "consenttokens", "events"].contains(&resource) || verb == "WATCH" {
            continue;
        }
        let subresource = label("subresource").filter(|s| !s.is_empty()).map(|s| format!("/{s}")).unwrap_or_default();
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *counts.entry(format!("{verb} {resource}{subresource}")).or_insert(0.0) += value;
    }
    Ok(counts)
}

/// `after - before`, per key, leaving out keys that did not change.
pub fn difference(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

fn http_request(path: &str) -> Result<http::Request<Vec<u8>>, Error> {
    Ok(http::Request::get(path).body(Vec::new())?)
}

/// Polls `check` every `every` until it is true or `timeout` passes; returns the time taken.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, every: Duration, mut check: F) -> Result<Duration, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        tokio::time::sleep(every).await;
    }
    Ok(started.elapsed())
}
