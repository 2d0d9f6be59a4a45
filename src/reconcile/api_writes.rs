//! The operator's own limit on writes to the Kubernetes API (Secrets, statuses, Events), shared
//! by every reconcile, so a burst of renewals cannot flood the API server. When writes wait for
//! the budget, namespaces take turns ([`FairQueue`]): thousands of writes queued by one
//! namespace delay another namespace's next write by one turn, not by the whole backlog.

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "consent-token-operator";

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, oneshot};

use crate::basics::fair_queue::FairQueue;
use crate::config::KubeApiArgs;

#[derive(Debug, thiserror::Error)]
#[error("--kube-api-qps and --kube-api-burst must be at least 1")]
pub struct InvalidWriteRate;

pub struct ApiWrites(Arc<Budget>);

struct Budget {
    limiter: DefaultDirectRateLimiter,
    /// The writes waiting for the budget, each a sender its writer waits on.
    waiting: Mutex<FairQueue<oneshot::Sender<()>>>,
    /// Wakes the task that hands out the budget when a write starts waiting.
    queued: Notify,
    /// That task, started by the first write that has to wait.
    dispatcher: OnceLock<()>,
}

impl ApiWrites {
    pub fn new(args: &KubeApiArgs) -> Result<Self, InvalidWriteRate> {
        let qps = NonZeroU32::new(args.qps).ok_or(InvalidWriteRate)?;
        let burst = NonZeroU32::new(args.burst).ok_or(InvalidWriteRate)?;
        Ok(Self(Arc::new(Budget {
            limiter: RateLimiter::direct(Quota::per_second(qps).allow_burst(burst)),
            waiting: Mutex::default(),
            queued: Notify::new(),
            dispatcher: OnceLock::new(),
        })))
    }

    /// Waits until one more write for an object of `namespace` is allowed.
    pub async fn permit(&self, namespace: &str) {
        let budget = &self.0;
        let (granted, grant) = oneshot::channel();
        {
            let mut waiting = budget.lock();
            // Nobody waits and the budget has room: no turn to take.
            if waiting.is_empty() && budget.limiter.check().is_ok() {
                return;
            }
            waiting.push(&Arc::from(namespace), granted);
        }
        budget.dispatcher.get_or_init(|| {
            tokio::spawn(dispatch(budget.clone()));
        });
        budget.queued.notify_one();
        // The dispatcher never drops a sender without sending; if it is gone (the runtime is
        // shutting down), writing anyway is harmless.
        let _ = grant.await;
    }
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, FairQueue<oneshot::Sender<()>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands the budget out, one write at a time, to the namespace whose turn it is.
async fn dispatch(budget: Arc<Budget>) {
    loop {
        if budget.lock().is_empty() {
            budget.queued.notified().await;
            continue;
        }
        budget.limiter.until_ready().await;
        // The first writer still waiting gets the write (one whose reconcile was dropped does not).
        while let Some(writer) = budget.lock().pop() {
            if writer.send(()).is_ok() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_namespace_with_a_backlog_of_writes_delays_another_by_one_turn() {
        let writes = Arc::new(ApiWrites::new(&KubeApiArgs { qps: 1000, burst: 1 }).unwrap());
        writes.permit("noisy").await; // the burst
        let (done, mut order) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..50 {
            let (writes, done) = (writes.clone(), done.clone());
            tokio::spawn(async move {
                writes.permit("noisy").await;
                let _ = done.send(format!("noisy-{n}"));
            });
            tokio::task::yield_now().await;
        }
        let (quiet, done_quiet) = (writes.clone(), done.clone());
        tokio::spawn(async move {
            quiet.permit("quiet").await;
            let _ = done_quiet.send("quiet".to_owned());
        });
        let mut served = Vec::new();
        while served.len() < 51 {
            served.push(order.recv().await.unwrap());
        }
        let quiet_at = served.iter().position(|w| w == "quiet").unwrap();
        assert!(quiet_at <= 2, "the quiet namespace's write waits one turn, not 50: {served:?}");
        let noisy: Vec<_> = served.iter().filter(|w| *w != "quiet").cloned().collect();
        assert_eq!(noisy, (0..50).map(|n| format!("noisy-{n}")).collect::<Vec<_>>(), "first come, first served");
    }

    #[tokio::test]
    async fn the_budget_is_kept_when_writes_wait() {
        let writes = Arc::new(ApiWrites::new(&KubeApiArgs { qps: 100, burst: 5 }).unwrap());
        let started = tokio::time::Instant::now();
        let mut all = Vec::new();
        for n in 0..25 {
            let writes = writes.clone();
            all.push(tokio::spawn(async move { writes.permit(&format!("ns-{}", n % 3)).await }));
        }
        for write in all {
            write.await.unwrap();
        }
        // 5 at once, then 20 at 100 a second (governor keeps its own clock: real time here).
        let took = started.elapsed();
        assert!(took >= std::time::Duration::from_millis(190), "{took:?}");
    }
}
