//! A run second by second, to find where lateness comes from: Ready objects, reconciles waiting
//! for a worker, upstream requests and the API server's CPU, sampled every second from the
//! operator's start; and each renewal of the steady window with its planned time and lateness.
//! Written as CSV beside the report (`timeline-N.csv`, `renewals-N.csv`).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_provider::{Endpoint, FakeProvider};
use jiff::Timestamp;

use crate::cluster::{self, Error};
use crate::workload::ReadyCounter;

struct Sample {
    at_s: f64,
    ready: usize,
    queued: f64,
    upstream: u64,
    apiserver_cpu_s: f64,
}

pub struct Timeline {
    started_at: Timestamp,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Timeline {
    /// Samples from now until dropped. `apiserver` is the API server's pid, if known.
    pub fn start(ready: ReadyCounter, metrics_addr: String, fake: Arc<FakeProvider>, apiserver: Option<u32>) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let into = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let queued = match reqwest::get(format!("http://{metrics_addr}/metrics")).await {
                    Ok(response) => cluster::sum_samples(
                        &response.text().await.unwrap_or_default(),
                        "consent_token_reconciles_queued",
                    ),
                    Err(_) => f64::NAN,
                };
                let sample = Sample {
                    at_s: started.elapsed().as_secs_f64(),
                    ready: ready.count(),
                    queued,
                    upstream: [Endpoint::OneTrustOAuth, Endpoint::CollectionPointToken, Endpoint::FdxToken]
                        .into_iter()
                        .map(|e| fake.requests(e))
                        .sum(),
                    apiserver_cpu_s: apiserver.and_then(cluster::cpu_time).unwrap_or_default().as_secs_f64(),
                };
                into.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Self { started_at: Timestamp::now(), samples, task }
    }

    /// Writes both files; `renewals` are (planned time, lateness in ms).
    pub fn write(&self, out: &Path, n: usize, renewals: &[(Timestamp, f64)]) -> Result<(), Error> {
        let mut csv = String::from("seconds,ready,reconciles_queued,upstream_requests,apiserver_cpu_seconds\n");
        for s in self.samples.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            writeln!(csv, "{:.1},{},{},{},{:.2}", s.at_s, s.ready, s.queued, s.upstream, s.apiserver_cpu_s)?;
        }
        std::fs::write(out.join(format!("timeline-{n}.csv")), csv)?;
        let mut csv = String::from("planned_seconds,lateness_ms\n");
        for (planned, late) in renewals {
            let at = planned.duration_since(self.started_at).as_secs_f64();
            writeln!(csv, "{at:.3},{late:.1}")?;
        }
        std::fs::write(out.join(format!("renewals-{n}.csv")), csv)?;
        Ok(())
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}
