//! A cap on provider requests under way for the ConsentTokens of one namespace
//! (`--upstream-concurrency-per-namespace`), so one namespace's slow or silent hosts hold at
//! most that many reconciles, whatever number of hosts, ports or names it uses, and the other
//! workers keep serving the other namespaces. A reconcile that finds its namespace's slots full
//! sends nothing and goes back in the queue at once ([`Error::NamespaceBusy`]); it does not wait
//! holding a worker.
//!
//! The cap holds only while another namespace has asked a provider within the last
//! [`CONTENDED_WITHIN`]: a namespace alone (one team's installation, or the only namespace with
//! work) gets every worker. Capped always, 10,000 ConsentTokens of one namespace were renewed
//! with p99 lateness 5.9 s instead of under 1 s (`make bench`), each one over the cap put back
//! for a few seconds; work-conserving, 0.54 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;

/// How recently another namespace must have asked a provider for the cap to hold.
pub const CONTENDED_WITHIN: Duration = Duration::from_secs(60);
/// Namespaces remembered before the first pruning of those not seen within the window; after
/// one, twice what it left.
const PRUNE_AT: usize = 256;

pub struct NamespaceSlots {
    per_namespace: usize,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Requests under way per namespace; a namespace with none has no entry.
    in_flight: HashMap<String, usize>,
    /// When each namespace last asked a provider (those older than the window go at a pruning).
    last_asked: HashMap<String, Instant>,
    prune_at: usize,
}

/// One of a namespace's slots, given back when dropped.
pub struct NamespaceSlot {
    namespace: String,
    state: Arc<Mutex<State>>,
}

impl NamespaceSlots {
    pub fn new(per_namespace: u16) -> Self {
        let state = State { prune_at: PRUNE_AT, ..State::default() };
        Self { per_namespace: usize::from(per_namespace).max(1), state: Arc::new(Mutex::new(state)) }
    }

    /// A slot for one more request of `namespace`, or [`Error::NamespaceBusy`] at once.
    pub fn take(&self, namespace: &str) -> Result<NamespaceSlot, Error> {
        self.take_at(namespace, Instant::now())
    }

    fn take_at(&self, namespace: &str, now: Instant) -> Result<NamespaceSlot, Error> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.last_asked.len() >= state.prune_at && !state.last_asked.contains_key(namespace) {
            state.last_asked.retain(|_, at| now.saturating_duration_since(*at) < CONTENDED_WITHIN);
            state.prune_at = state.last_asked.len().saturating_mul(2).max(PRUNE_AT);
        }
        state.last_asked.insert(namespace.to_owned(), now);
        let contended = state
            .last_asked
            .iter()
            .any(|(other, at)| other != namespace && now.saturating_duration_since(*at) < CONTENDED_WITHIN);
        let per_namespace = self.per_namespace;
        let count = state.in_flight.entry(namespace.to_owned()).or_default();
        if contended && *count >= per_namespace {
            return Err(Error::NamespaceBusy);
        }
        *count = count.saturating_add(1);
        Ok(NamespaceSlot { namespace: namespace.to_owned(), state: self.state.clone() })
    }

    #[cfg(test)]
    fn namespaces(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.in_flight.len(), state.last_asked.len())
    }
}

impl Drop for NamespaceSlot {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = state.in_flight.get_mut(&self.namespace) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.in_flight.remove(&self.namespace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_gets_its_cap_and_the_others_are_not_touched() {
        let slots = NamespaceSlots::new(2);
        let quiet = slots.take("quiet").unwrap();
        drop(quiet);
        let (a, b) = (slots.take("noisy").unwrap(), slots.take("noisy").unwrap());
        assert!(matches!(slots.take("noisy"), Err(Error::NamespaceBusy)), "the third waits");
        let quiet = slots.take("quiet").expect("another namespace is not held back");
        drop(a);
        let c = slots.take("noisy").expect("a slot came back");
        drop((b, c, quiet));
        assert_eq!(slots.namespaces().0, 0, "nothing under way is kept once nothing is under way");
    }

    #[test]
    fn a_namespace_alone_gets_every_worker_and_is_capped_once_another_asks() {
        let slots = NamespaceSlots::new(2);
        let start = Instant::now();
        let alone: Vec<_> = (0..10).map(|_| slots.take_at("only", start).unwrap()).collect();
        slots.take_at("other", start).expect("the other namespace's first request");
        assert!(matches!(slots.take_at("only", start), Err(Error::NamespaceBusy)), "contended: capped");
        // A minute after the other namespace last asked, the first is alone again.
        let later = start + CONTENDED_WITHIN;
        assert!(slots.take_at("only", later).is_ok(), "work-conserving");
        drop(alone);
    }

    #[test]
    fn a_hundred_thousand_namespaces_leave_the_maps_bounded() {
        let slots = NamespaceSlots::new(8);
        let held = slots.take("held").unwrap();
        let start = Instant::now();
        for n in 0..100_000u64 {
            // One namespace a millisecond: 60,000 within the window at most, pruned as they age.
            let at = start + Duration::from_millis(n);
            drop(slots.take_at(&format!("ns-{n}"), at).unwrap());
            let (in_flight, remembered) = slots.namespaces();
            assert!(in_flight <= 2 && remembered <= 2 * 60_000 + PRUNE_AT, "{remembered} after {n}");
        }
        drop(held);
        assert_eq!(slots.namespaces().0, 0);
    }
}
