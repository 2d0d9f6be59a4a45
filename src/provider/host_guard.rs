//! What protects a provider host, and the operator from it, whatever the number of objects:
//!
//! - a limit on requests under way per host, so a host that takes the whole timeout for every
//!   request (a tarpit) holds only that many reconciles, not all of them: a reconcile that
//!   finds the host full waits up to [`QUEUE_WAIT`] for a slot (a healthy host frees one within
//!   milliseconds), then is put back in the queue, nothing sent. While requests of more than one
//!   namespace are under way or waiting for a host, each namespace holds at most an equal share
//!   of its slots (a namespace alone may take them all), so one namespace's slow requests to a
//!   server others use too leave them their share;
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

struct Host {
    slots: Arc<Semaphore>,
    breaker: Breaker,
    /// Requests under way or waiting for a slot, per namespace (none: no entry).
    present: HashMap<String, usize>,
}

impl Host {
    fn new(per_host: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(per_host)), breaker: Breaker::default(), present: HashMap::new() }
    }
}

struct HostMap {
    hosts: HashMap<String, Host>,
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
    /// This request is its host's probe, and has not been reported yet.
    unreported_probe: bool,
    _slot: OwnedSemaphorePermit,
    presence: Presence,
}

impl Drop for Pass {
    fn drop(&mut self) {
        if !self.unreported_probe {
            return;
        }
        let mut map = self.presence.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(host) = map.hosts.get_mut(&self.presence.host) {
            host.breaker.probing = false;
        }
    }
}

/// One request of a namespace under way or waiting at a host, counted until dropped.
struct Presence {
    host: String,
    namespace: String,
    hosts: Hosts,
}

impl Drop for Presence {
    fn drop(&mut self) {
        let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(host) = map.hosts.get_mut(&self.host) else { return };
        if let Some(count) = host.present.get_mut(&self.namespace) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                host.present.remove(&self.namespace);
            }
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

    /// A pass for one request of `namespace` to `host`, or why not now.
    pub async fn admit(&self, host: &str, namespace: &str) -> Result<Pass, Held> {
        let slots = {
            let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            if map.hosts.len() >= map.prune_at && !map.hosts.contains_key(host) {
                Self::prune(&mut map);
            }
            let state = map.hosts.entry(host.to_owned()).or_insert_with(|| Host::new(self.per_host));
            Self::closed(&state.breaker)?;
            let others = state.present.keys().filter(|other| *other != namespace).count();
            let share = self.per_host.checked_div(others.saturating_add(1)).unwrap_or(0).max(1);
            if others > 0 && state.present.get(namespace).is_some_and(|mine| *mine >= share) {
                return Err(Held::Busy);
            }
            let mine = state.present.entry(namespace.to_owned()).or_default();
            *mine = mine.saturating_add(1);
            state.slots.clone()
        };
        let presence = Presence { host: host.to_owned(), namespace: namespace.to_owned(), hosts: self.hosts.clone() };
        let slot = match tokio::time::timeout(QUEUE_WAIT, slots.acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            _ => return Err(Held::Busy),
        };
        let probe = {
            let mut map = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            match map.hosts.get_mut(host) {
                Some(state) => {
                    // The breaker may have opened while this request waited for its slot.
                    Self::closed(&state.breaker)?;
                    let probe = state.breaker.open_until.is_some();
                    state.breaker.probing |= probe;
                    probe
                }
                None => false,
            }
        };
        Ok(Pass { unreported_probe: probe, _slot: slot, presence })
    }

    /// Drops the hosts nobody uses: nothing under way or waiting (only the map holds their
    /// slots), and a breaker that is not open or probing. A host that failed a few times and
    /// is forgotten learns it again in [`OPEN_AFTER`] failures; an open breaker is kept until
    /// its cooldown is over, so no tenant can close one by naming many hosts.
    fn prune(map: &mut HostMap) {
        let now = Instant::now();
        map.hosts.retain(|_, Host { slots, breaker, present }| {
            let in_use = Arc::strong_count(slots) > 1 || !present.is_empty();
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
        let Some(Host { breaker, .. }) = map.hosts.get_mut(&pass.presence.host) else { return };
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
                    tracing::warn!(host = %pass.presence.host, cooldown = ?breaker.cooldown, "provider host failing; pausing requests to it");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // small test numbers
mod tests;
