//! The ConsentTokens of one controller and when each is next looked at: the cache the reconciles
//! read, a first-come-first-served queue of objects due now, and a timer per object.
//!
//! This replaces kube-runtime's `Controller` (its reflector store, scheduler and runner) for
//! three reasons, each measured (docs/performance):
//! - **Order.** kube-runtime keeps the objects that come due while every slot is busy in a hash
//!   set and takes them in the set's order, so under a backlog that never empties some objects
//!   wait for ever. Here they wait in the order they came due.
//! - **Memory.** kube-runtime keys its store and its scheduler by copies of each object's name,
//!   namespace and uid (about 600 bytes per ConsentToken with their table slots) and keeps each
//!   object decoded; here an object costs its text ([`CachedToken`]), a slot keyed by its uid's
//!   bits, and a timer. Every trigger names the
//!   object by its uid (an owner reference, the credentials index), so no index by name is kept.
//! - **CPU.** kube-runtime's runner polls every started reconcile whenever one of them wakes; here
//!   each of `--concurrency` workers runs one reconcile at a time.
//!
//! An object is never reconciled twice at once: it is in the queue at most once, and a trigger
//! that comes while it is being reconciled makes it run again right after.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Duration;

use kube::ResourceExt;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::api::crd::ConsentToken;
use crate::basics::object_id::ObjectId;
use crate::basics::watch_cache::WatchCache;
use crate::cache::cached_token::CachedToken;

pub struct WorkQueue {
    state: Mutex<State>,
    ready_tx: mpsc::UnboundedSender<ObjectId>,
    ready_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<ObjectId>>,
    /// Wakes the timer task when an earlier timer was set.
    timers_changed: Notify,
    /// Objects waiting for a worker (the `consent_token_reconciles_queued` gauge).
    queued: Gauge,
    /// Of the slots' fingerprints. Never changes, so it is read without the lock.
    hasher: RandomState,
}

#[derive(Default)]
struct State {
    objects: HashMap<ObjectId, Slot>,
    timers: BTreeSet<(Instant, ObjectId)>,
    /// The objects a (re)list under way has delivered so far.
    relisted: Option<HashSet<ObjectId>>,
}

struct Slot {
    object: CachedToken,
    /// Of the generation and annotations: a change to either is worth a reconcile, a status
    /// write (ours) is not.
    fingerprint: u64,
    timer: Option<Instant>,
    queued: bool,
    running: bool,
    again: bool,
}

/// What a watch event did to the cache.
#[derive(Debug, PartialEq, Eq)]
pub enum Cached {
    /// New, or its spec or annotations changed: queued.
    Changed,
    /// Only the status (or nothing a reconcile acts on) changed: not queued.
    Unchanged,
}

impl WorkQueue {
    pub fn new(queued: Gauge) -> Self {
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        Self {
            state: Mutex::default(),
            ready_tx,
            ready_rx: tokio::sync::Mutex::new(ready_rx),
            timers_changed: Notify::new(),
            queued,
            hasher: RandomState::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Caches `ct` as the watch delivered it; queues it when it is new or its spec or annotations
    /// changed.
    pub fn apply(&self, ct: ConsentToken) -> Cached {
        let id = ObjectId::of(&ct.uid().unwrap_or_default());
        let fingerprint = self.hasher.hash_one((ct.metadata.generation, ct.annotations()));
        // Encoding, compressing and checking the text take microseconds: not while workers wait
        // for the lock.
        let object = CachedToken::new(ct);
        let mut state = self.lock();
        if let Some(relisted) = state.relisted.as_mut() {
            relisted.insert(id);
        }
        let changed = match state.objects.get_mut(&id) {
            Some(slot) => {
                slot.object = object;
                std::mem::replace(&mut slot.fingerprint, fingerprint) != fingerprint
            }
            None => {
                let slot = Slot { object, fingerprint, timer: None, queued: false, running: false, again: false };
                state.objects.insert(id, slot);
                true
            }
        };
        if changed {
            self.wake_locked(&mut state, id);
            Cached::Changed
        } else {
            Cached::Unchanged
        }
    }

    /// Forgets a deleted object; its reconcile, if one is under way, finishes.
    pub fn remove(&self, id: ObjectId) -> Option<ConsentToken> {
        let mut state = self.lock();
        let slot = state.objects.remove(&id)?;
        if let Some(at) = slot.timer {
            state.timers.remove(&(at, id));
        }
        if slot.queued {
            self.queued.dec();
        }
        slot.object.decode()
    }

    /// The cached object.
    pub fn get(&self, id: ObjectId) -> Option<ConsentToken> {
        self.lock().objects.get(&id).and_then(|slot| slot.object.decode())
    }

    /// Every cached object (each decoded: for rare events, such as a namespace's labels changing).
    pub fn objects(&self) -> Vec<ConsentToken> {
        self.lock().objects.values().filter_map(|slot| slot.object.decode()).collect()
    }

    /// The watch (re)lists: what the list does not deliver was deleted meanwhile.
    pub fn relist_started(&self) {
        self.lock().relisted = Some(HashSet::new());
    }

    /// The (re)list is complete: forgets the cached objects it did not deliver (deleted while the
    /// watch was away) and returns them.
    pub fn relist_done(&self) -> Vec<ConsentToken> {
        let gone: Vec<ObjectId> = {
            let mut state = self.lock();
            let relisted = state.relisted.take().unwrap_or_default();
            state.objects.keys().filter(|id| !relisted.contains(id)).copied().collect()
        };
        gone.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Queues the object now (something it depends on changed).
    pub fn wake(&self, id: ObjectId) {
        let mut state = self.lock();
        self.wake_locked(&mut state, id);
    }

    fn wake_locked(&self, state: &mut State, id: ObjectId) {
        let Some(slot) = state.objects.get_mut(&id) else { return };
        if slot.running {
            slot.again = true;
            return;
        }
        if slot.queued {
            return;
        }
        slot.queued = true;
        if let Some(at) = slot.timer.take() {
            state.timers.remove(&(at, id));
        }
        self.queued.inc();
        // The receiver lives as long as the queue: sending cannot fail.
        let _ = self.ready_tx.send(id);
    }

    /// The next object due, in the order they came due; waits while there is none. The object is
    /// then the caller's until [`WorkQueue::done`].
    pub async fn next(&self) -> (ObjectId, ConsentToken) {
        let mut ready = self.ready_rx.lock().await;
        loop {
            let Some(id) = ready.recv().await else { return std::future::pending().await };
            let mut state = self.lock();
            // Deleted while it waited: `remove` counted it out already.
            let Some(slot) = state.objects.get_mut(&id) else { continue };
            slot.queued = false;
            self.queued.dec();
            // Cannot fail (see `CachedToken::decode`); if it did, the next watch event queues it.
            let Some(ct) = slot.object.decode() else { continue };
            slot.running = true;
            return (id, ct);
        }
    }

    /// The reconcile of `id` finished and asked to look again `after` this long.
    pub fn done(&self, id: ObjectId, after: Duration) {
        let mut state = self.lock();
        let Some(slot) = state.objects.get_mut(&id) else { return };
        slot.running = false;
        if std::mem::take(&mut slot.again) {
            self.wake_locked(&mut state, id);
            return;
        }
        // Beyond what a clock can hold: no timer (a watch event still wakes it).
        let Some(at) = Instant::now().checked_add(after) else { return };
        slot.timer = Some(at);
        let earliest = state.timers.first().map(|(first, _)| *first);
        state.timers.insert((at, id));
        if earliest.is_none_or(|first| at < first) {
            self.timers_changed.notify_one();
        }
    }

    /// Moves objects to the queue as their timers come due; runs until dropped.
    pub async fn run_timers(&self) {
        loop {
            let earliest = {
                let mut state = self.lock();
                let now = Instant::now();
                while let Some(&(at, id)) = state.timers.first()
                    && at <= now
                {
                    state.timers.pop_first();
                    if let Some(slot) = state.objects.get_mut(&id) {
                        slot.timer = None;
                    }
                    self.wake_locked(&mut state, id);
                }
                state.timers.first().map(|(at, _)| *at)
            };
            match earliest {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.timers_changed.notified() => {}
                    }
                }
                None => self.timers_changed.notified().await,
            }
        }
    }
}

/// Fed by the ConsentToken watch. Relists are tracked here: the objects a relist did not deliver
/// are returned, so every cache of the watch forgets them.
impl WatchCache<ConsentToken> for WorkQueue {
    fn apply(&self, ct: &ConsentToken) {
        WorkQueue::apply(self, ct.clone());
    }
    fn delete(&self, ct: &ConsentToken) {
        self.remove(ObjectId::of(&ct.uid().unwrap_or_default()));
    }
    fn relist_started(&self, _: Option<&str>) {
        WorkQueue::relist_started(self);
    }
    fn relist_done(&self, _: Option<&str>) -> Vec<ConsentToken> {
        let gone = WorkQueue::relist_done(self);
        for ct in &gone {
            tracing::debug!(namespace = ct.namespace(), name = ct.name_any(), "deleted while the watch was away");
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn token(name: &str, uid: &str, generation: i64, annotations: &[(&str, &str)]) -> ConsentToken {
        let mut ct = crate::fixtures::fdx_consent_token("https://bank.example");
        ct.metadata.name = Some(name.into());
        ct.metadata.uid = Some(uid.into());
        ct.metadata.generation = Some(generation);
        ct.metadata.annotations =
            Some(annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>());
        ct
    }

    fn queue() -> WorkQueue {
        WorkQueue::new(Gauge::default())
    }

    /// What is queued now, in order, each then finished with no timer.
    async fn drain(queue: &WorkQueue) -> Vec<String> {
        let mut names = Vec::new();
        while queue.queued.get() > 0 {
            let (id, ct) = queue.next().await;
            names.push(ct.name_any());
            queue.done(id, Duration::MAX);
        }
        names
    }

    #[tokio::test]
    async fn new_objects_spec_and_annotation_changes_are_queued_and_status_writes_are_not() {
        let queue = queue();
        assert_eq!(queue.apply(token("a", "1", 1, &[])), Cached::Changed);
        assert_eq!(drain(&queue).await, ["a"]);
        let mut with_status = token("a", "1", 1, &[]);
        with_status.status = Some(Default::default());
        assert_eq!(queue.apply(with_status), Cached::Unchanged);
        assert!(queue.get(ObjectId::of("1")).unwrap().status.is_some(), "the cache is updated");
        assert_eq!(queue.apply(token("a", "1", 2, &[])), Cached::Changed);
        assert_eq!(queue.apply(token("a", "1", 2, &[("consent.dev/refresh-requested-at", "now")])), Cached::Changed);
        assert_eq!(drain(&queue).await, ["a"], "queued once however often it changed meanwhile");
        queue.remove(ObjectId::of("1"));
        assert_eq!(queue.apply(token("a", "1", 2, &[])), Cached::Changed, "recreated after its deletion");
    }

    #[tokio::test]
    async fn objects_are_taken_in_the_order_they_came_due() {
        let queue = queue();
        for (name, uid) in [("c", "3"), ("a", "1"), ("b", "2")] {
            queue.apply(token(name, uid, 1, &[]));
        }
        queue.wake(ObjectId::of("1")); // already queued: keeps its place
        assert_eq!(drain(&queue).await, ["c", "a", "b"]);
    }

    #[tokio::test]
    async fn a_trigger_during_a_reconcile_runs_it_again_afterwards_not_beside_it() {
        let queue = queue();
        queue.apply(token("a", "1", 1, &[]));
        let (id, _) = queue.next().await;
        queue.wake(id);
        assert_eq!(queue.queued.get(), 0, "not queued while it runs");
        queue.done(id, Duration::from_secs(3600));
        assert_eq!(queue.queued.get(), 1);
        assert_eq!(drain(&queue).await, ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_queues_the_object_when_it_comes_due_and_a_trigger_replaces_it() {
        let queue = Arc::new(queue());
        queue.apply(token("a", "1", 1, &[]));
        queue.apply(token("b", "2", 1, &[]));
        let timers = tokio::spawn({
            let queue = queue.clone();
            async move { queue.run_timers().await }
        });
        let (a, _) = queue.next().await;
        queue.done(a, Duration::from_secs(60));
        let (b, _) = queue.next().await;
        queue.done(b, Duration::from_secs(30));
        let started = Instant::now();
        assert_eq!(queue.next().await.1.name_any(), "b");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        queue.done(b, Duration::from_secs(600));
        queue.wake(a); // a trigger before its timer: now, and the timer is gone
        assert_eq!(queue.next().await.1.name_any(), "a");
        queue.done(a, Duration::MAX);
        assert_eq!(queue.next().await.1.name_any(), "b");
        assert_eq!(started.elapsed(), Duration::from_secs(30 + 600));
        timers.abort();
    }

    #[test]
    fn a_relist_forgets_what_was_deleted_while_the_watch_was_away() {
        let queue = queue();
        for (name, uid) in [("kept", "1"), ("deleted", "2"), ("recreated", "3")] {
            queue.apply(token(name, uid, 1, &[]));
        }
        queue.relist_started();
        for (name, uid) in [("kept", "1"), ("recreated", "4"), ("new", "5")] {
            queue.apply(token(name, uid, 1, &[]));
        }
        let mut gone: Vec<String> = queue.relist_done().iter().map(|ct| ct.uid().unwrap()).collect();
        gone.sort();
        assert_eq!(gone, ["2", "3"]);
        assert_eq!(queue.objects().len(), 3);
        assert_eq!(queue.queued.get(), 3, "1, 4 and 5 queued; the gone ones counted out");
    }

    #[tokio::test]
    async fn a_deleted_object_is_not_handed_out() {
        let queue = queue();
        queue.apply(token("a", "1", 1, &[]));
        queue.apply(token("b", "2", 1, &[]));
        queue.remove(ObjectId::of("1"));
        assert_eq!(queue.queued.get(), 1);
        assert_eq!(drain(&queue).await, ["b"]);
        assert!(queue.get(ObjectId::of("1")).is_none());
        assert_eq!(queue.objects().len(), 1);
    }
}
