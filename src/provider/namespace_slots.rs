//! A cap on provider requests under way for the ConsentTokens of one namespace
//! (`--upstream-concurrency-per-namespace`), so one namespace's slow or silent hosts hold at
//! most that many reconciles, whatever number of hosts, ports or names it uses, and the other
//! workers keep serving the other namespaces. A reconcile that finds its namespace's slots full
//! sends nothing and goes back in the queue at once ([`Error::NamespaceBusy`]); it does not wait
//! holding a worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Error;

pub struct NamespaceSlots {
    per_namespace: usize,
    /// Requests under way per namespace; a namespace with none has no entry, so the map holds
    /// only namespaces with a request under way (at most `--concurrency` of them).
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

/// One of a namespace's slots, given back when dropped.
pub struct NamespaceSlot {
    namespace: String,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl NamespaceSlots {
    pub fn new(per_namespace: u16) -> Self {
        Self { per_namespace: usize::from(per_namespace).max(1), in_flight: Arc::default() }
    }

    /// A slot for one more request of `namespace`, or [`Error::NamespaceBusy`] at once.
    pub fn take(&self, namespace: &str) -> Result<NamespaceSlot, Error> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let count = in_flight.entry(namespace.to_owned()).or_default();
        if *count >= self.per_namespace {
            return Err(Error::NamespaceBusy);
        }
        *count = count.saturating_add(1);
        Ok(NamespaceSlot { namespace: namespace.to_owned(), in_flight: self.in_flight.clone() })
    }

    #[cfg(test)]
    fn namespaces(&self) -> usize {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for NamespaceSlot {
    fn drop(&mut self) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = in_flight.get_mut(&self.namespace) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&self.namespace);
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
        let (a, b) = (slots.take("noisy").unwrap(), slots.take("noisy").unwrap());
        assert!(matches!(slots.take("noisy"), Err(Error::NamespaceBusy)), "the third waits");
        let quiet = slots.take("quiet").expect("another namespace is not held back");
        drop(a);
        let c = slots.take("noisy").expect("a slot came back");
        drop((b, c, quiet));
        assert_eq!(slots.namespaces(), 0, "nothing kept once nothing is under way");
    }

    #[test]
    fn a_hundred_thousand_namespaces_leave_nothing_behind() {
        let slots = NamespaceSlots::new(8);
        let held = slots.take("held").unwrap();
        for n in 0..100_000 {
            let slot = slots.take(&format!("ns-{n}")).unwrap();
            drop(slot);
            assert!(slots.namespaces() <= 2);
        }
        drop(held);
        assert_eq!(slots.namespaces(), 0);
    }
}
