//! What protects a provider host, and the operator from it, whatever the number of objects:
//!
//! - a limit on requests under way per host, so a host that takes the whole timeout for every
//!   request (a tarpit) holds only that many reconciles, not all of them: a reconcile that
//!   finds the host full waits up to [`QUEUE_WAIT`] for a slot (a healthy host frees one within
//!   milliseconds), then is put back in the queue, nothing sent;
//! - a circuit breaker: after [`OPEN_AFTER`] transient failures in a row (5xx, timeouts,
//!   connection failures), no request goes to the host for a cooldown; then one probe goes,
//!   and the host opens up again when it succeeds (the cooldown doubles while it fails, up to
//!   [`MAX_COOLDOWN`], so a recovered host is noticed within that). During an outage the host
//!   gets a handful of requests, not every object's retries. A probe that was never sent (the
//!   address was refused, or the reconcile was dropped) gives its turn to the next request;
//! - bounded memory whatever hosts tenants name: a host with nothing under way and a closed
//!   breaker is dropped once the map has grown (see [`HostGuard::prune`]).
// Time arithmetic here is fed by upstream behaviour: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::basics::time_math::instant_after;

/// How long a request waits for one of its host's slots before it is held back.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);
/// Transient failures in a row that open the breaker.
pub const OPEN_AFTER: u32 = 5;
const FIRST_COOLDOWN: Duration = Duration::from_secs(5);
/// The longest pause between probes of a failing host.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(20);
/// How long a request held back while a probe is under way waits before it looks again.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// Why a request was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// As many requests as allowed are under way to the host.
    Busy,
    /// The host is failing; the next probe may go in this long.
    Failing(Duration),
}

/// The outcome of a request, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Any HTTP answer but a 5xx: the host works (a 4xx is about the request).
    Working,
    /// A 5xx, a timeout or a failed connection.
    Failing,
}

#[derive(Default)]
struct Breaker {
    failures_in_a_row: u32,
    /// Set while open: no request before this.
    open_until: Option<Instant>,
    cooldown: Duration,
    /// A probe is under way.
    probing: bool,
}

/// Hosts kept before the first pruning; after one, twice what it left.
const PRUNE_AT: usize = 256;

type Hosts = Arc<Mutex<HostMap>>;

struct HostMap {
    hosts: HashMap<String, (Arc<Semaphore>, Breaker)>,
    /// The size at which the next pruning runs: doubling keeps its cost constant per request.
    prune_at: usize,
}

/// Per host: its request slots and its breaker.
pub struct HostGuard {
    per_host: usize,
    hosts: Hosts,
}

/// Permission to send one request to a host; report how it went with [`HostGuard::record`].
/// Dropped unreported (nothing was sent), a probe's turn goes to the next request.
pub struct Pass {
    host: String,
    hosts: Hosts,
    /// This request is its host's probe, and has not been reported yet.
    unreported_probe: bool,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Pass {
    fn drop(&mut self) {
        if !self.unreported_probe {
            return;
        }
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, breaker)) = map.hosts.get_mut(&self.host) {
            breaker.probing = false;
        }
    }
}

impl HostGuard {
    pub fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            hosts: Arc::new(Mutex::new(HostMap { hosts: HashMap::new(), prune_at: PRUNE_AT })),
        }
    }

    /// Hosts the guard holds state for.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).hosts.len()
    }

    /// A pass for one request to `host`, or why not now.
    pub async fn admit(&self, host: &str) -> Result<Pass, Held> {
        let slots = {
            let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            if map.hosts.len() >= map.prune_at && !map.hosts.contains_key(host) {
                Self::prune(&mut map);
            }
            let (slots, breaker) = map
                .hosts
                .entry(host.to_owned())
                .or_insert_with(|| (Arc::new(Semaphore::new(self.per_host)), Breaker::default()));
            Self::closed(breaker)?;
            slots.clone()
        };
        let slot = match tokio::time::timeout(QUEUE_WAIT, slots.acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            _ => return Err(Held::Busy),
        };
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let mut probe = false;
        if let Some((_, breaker)) = map.hosts.get_mut(host) {
            // The breaker may have opened while this request waited for its slot.
            Self::closed(breaker)?;
            if breaker.open_until.is_some() {
                breaker.probing = true;
                probe = true;
            }
        }
        Ok(Pass { host: host.to_owned(), hosts: self.hosts.clone(), unreported_probe: probe, _slot: slot })
    }

    /// Drops the hosts nobody uses: nothing under way or waiting (only the map holds their
    /// slots), and a breaker that is not open or probing. A host that failed a few times and
    /// is forgotten learns it again in [`OPEN_AFTER`] failures; an open breaker is kept until
    /// its cooldown is over, so no tenant can close one by naming many hosts.
    fn prune(map: &mut HostMap) {
        let now = Instant::now();
        map.hosts.retain(|_, (slots, breaker)| {
            let in_use = Arc::strong_count(slots) > 1;
            let open = breaker.probing || breaker.open_until.is_some_and(|until| until > now);
            in_use || open
        });
        map.prune_at = map.hosts.len().saturating_mul(2).max(PRUNE_AT);
    }

    /// Whether a request may go: the breaker is closed, or its cooldown is over and no probe is
    /// under way (this request will be the probe).
    fn closed(breaker: &Breaker) -> Result<(), Held> {
        let Some(until) = breaker.open_until else { return Ok(()) };
        let now = Instant::now();
        if until > now {
            return Err(Held::Failing(until.saturating_duration_since(now)));
        }
        if breaker.probing {
            // The probe's answer comes within a request timeout: look again soon, not a whole
            // cooldown later (a host that recovered would otherwise keep these waiting ~20 s
            // after its probe succeeded).
            return Err(Held::Failing(PROBE_WAIT));
        }
        Ok(())
    }

    /// How the request sent with `pass` went.
    pub fn record(&self, mut pass: Pass, answer: Answer) {
        pass.unreported_probe = false;
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let Some((_, breaker)) = map.hosts.get_mut(&pass.host) else { return };
        match answer {
            Answer::Working => *breaker = Breaker::default(),
            Answer::Failing => {
                breaker.failures_in_a_row = breaker.failures_in_a_row.saturating_add(1);
                if breaker.probing || (breaker.open_until.is_none() && breaker.failures_in_a_row >= OPEN_AFTER) {
                    breaker.cooldown = if breaker.cooldown.is_zero() {
                        FIRST_COOLDOWN
                    } else {
                        breaker.cooldown.saturating_mul(2).min(MAX_COOLDOWN)
                    };
                    breaker.open_until = Some(instant_after(Instant::now(), breaker.cooldown));
                    breaker.probing = false;
                    tracing::warn!(host = %pass.host, cooldown = ?breaker.cooldown, "provider host failing; pausing requests to it");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_host_gets_one_probe_per_cooldown_and_opens_on_success() {
        let guard = HostGuard::new(4);
        for _ in 0..OPEN_AFTER {
            let pass = guard.admit("h:443").await.unwrap();
            guard.record(pass, Answer::Failing);
        }
        assert!(matches!(guard.admit("h:443").await, Err(Held::Failing(wait)) if wait <= FIRST_COOLDOWN));
        assert!(guard.admit("other:443").await.is_ok(), "per host");
        // Cooldown over (simulated): exactly one probe goes.
        guard.hosts.lock().unwrap().hosts.get_mut("h:443").unwrap().1.open_until = Some(Instant::now());
        let probe = guard.admit("h:443").await.unwrap();
        assert_eq!(
            guard.admit("h:443").await.err(),
            Some(Held::Failing(PROBE_WAIT)),
            "one probe at a time; the others look again as soon as it may have answered"
        );
        guard.record(probe, Answer::Failing);
        let cooldown = guard.hosts.lock().unwrap().hosts["h:443"].1.cooldown;
        assert_eq!(cooldown, FIRST_COOLDOWN * 2, "the pause doubles while it fails");
        guard.hosts.lock().unwrap().hosts.get_mut("h:443").unwrap().1.open_until = Some(Instant::now());
        let probe = guard.admit("h:443").await.unwrap();
        guard.record(probe, Answer::Working);
        assert!(guard.admit("h:443").await.is_ok(), "open again after a successful probe");
    }

    #[tokio::test]
    async fn requests_under_way_are_limited_per_host() {
        let guard = HostGuard::new(2);
        let (a, b) = (guard.admit("tarpit:443").await.unwrap(), guard.admit("tarpit:443").await.unwrap());
        assert_eq!(guard.admit("tarpit:443").await.err(), Some(Held::Busy));
        assert!(guard.admit("healthy:443").await.is_ok());
        guard.record(a, Answer::Working);
        assert!(guard.admit("tarpit:443").await.is_ok(), "a slot is free again");
        drop(b);
    }

    #[tokio::test]
    async fn the_cooldown_never_exceeds_its_ceiling() {
        let guard = HostGuard::new(1);
        for _ in 0..100 {
            guard
                .hosts
                .lock()
                .unwrap()
                .hosts
                .entry("h".into())
                .or_insert_with(|| (Arc::new(Semaphore::new(1)), Breaker::default()))
                .1
                .open_until = Some(Instant::now());
            if let Ok(pass) = guard.admit("h").await {
                guard.record(pass, Answer::Failing);
            }
        }
        assert!(guard.hosts.lock().unwrap().hosts["h"].1.cooldown <= MAX_COOLDOWN);
    }

    fn open_breaker(guard: &HostGuard, host: &str) {
        guard.hosts.lock().unwrap().hosts.get_mut(host).unwrap().1.open_until = Some(Instant::now());
    }

    async fn fail_until_open(guard: &HostGuard, host: &str) {
        for _ in 0..OPEN_AFTER {
            let pass = guard.admit(host).await.unwrap();
            guard.record(pass, Answer::Failing);
        }
        assert!(matches!(guard.admit(host).await, Err(Held::Failing(_))));
    }

    #[tokio::test]
    async fn a_probe_that_was_never_sent_lets_the_next_request_probe() {
        let guard = HostGuard::new(4);
        fail_until_open(&guard, "h:443").await;
        open_breaker(&guard, "h:443");
        let probe = guard.admit("h:443").await.unwrap();
        assert_eq!(guard.admit("h:443").await.err(), Some(Held::Failing(PROBE_WAIT)), "a probe is under way");
        // Refused before it was sent (say, no allowed address): no answer to report.
        drop(probe);
        let next = guard.admit("h:443").await.expect("the next request is the probe");
        guard.record(next, Answer::Working);
        assert!(guard.admit("h:443").await.is_ok(), "open again");
    }

    #[tokio::test]
    async fn a_probe_dropped_while_it_waited_for_its_answer_lets_the_next_request_probe() {
        let guard = Arc::new(HostGuard::new(4));
        fail_until_open(&guard, "h:443").await;
        open_breaker(&guard, "h:443");
        // A reconcile holding the probe is dropped (leadership lost) before the answer came.
        let holder = {
            let guard = guard.clone();
            tokio::spawn(async move {
                let _probe = guard.admit("h:443").await.unwrap();
                std::future::pending::<()>().await;
            })
        };
        while guard.admit("h:443").await.err() != Some(Held::Failing(PROBE_WAIT)) {
            tokio::task::yield_now().await;
        }
        holder.abort();
        let _ = holder.await;
        assert!(guard.admit("h:443").await.is_ok(), "the next request is the probe");
    }

    #[tokio::test]
    async fn a_hundred_thousand_hosts_leave_the_map_bounded() {
        let guard = HostGuard::new(2);
        fail_until_open(&guard, "failing:443").await;
        // Open for longer than the loop can take on a slow machine.
        guard.hosts.lock().unwrap().hosts.get_mut("failing:443").unwrap().1.open_until =
            Some(Instant::now() + Duration::from_secs(3600));
        let held = guard.admit("busy:443").await.unwrap();
        for i in 0..100_000 {
            let host = format!("h{i}.tenant.example:443");
            let pass = guard.admit(&host).await.unwrap();
            guard.record(pass, if i % 2 == 0 { Answer::Working } else { Answer::Failing });
            assert!(guard.len() <= 2 * PRUNE_AT, "{} hosts after {i}", guard.len());
        }
        // What must not be forgotten is kept: an open breaker and a host with a request under way.
        assert!(matches!(guard.admit("failing:443").await, Err(Held::Failing(_))), "still open");
        let map = guard.hosts.lock().unwrap();
        assert!(map.hosts.contains_key("busy:443"));
        drop(map);
        drop(held);
    }
}
