//! The ConsentTokens of one controller and when each is next looked at: the cache the reconciles
//! read, a queue of objects due now (first come, first served within a namespace; namespaces
//! take turns, see [`FairQueue`]), and a timer per object.
//!
//! This replaces kube-runtime's `Controller` (its reflector store, scheduler and runner) for
//! three reasons, each measured (docs/performance):
//! - **Order.** kube-runtime keeps the objects that come due while every slot is busy in a hash
//!   set and takes them in the set's order, so under a backlog that never empties some objects
//!   wait for ever. Here they wait in the order they came due, and one namespace's backlog
//!   delays another namespace's objects by one turn each, not by the whole backlog.
//! - **Memory.** kube-runtime keys its store and its scheduler by copies of each object's name,
//!   namespace and uid (about 600 bytes per ConsentToken with their table slots) and keeps each
//!   object decoded; here an object costs its text ([`CachedToken`]), a slot keyed by its uid's
//!   bits, and a timer. Every trigger names the
//!   object by its uid (an owner reference, the credentials index), so no index by name is kept.
//! - **CPU.** kube-runtime's runner polls every started reconcile whenever one of them wakes; here
//!   each of `--concurrency` workers runs one reconcile at a time.
//!
//! An object is never reconciled twice at once: it is taken from the queue once however often it
//! was queued, and a trigger that comes while it is being reconciled makes it run again right
//! after.
//!
//! An object whose timer comes due (its renewal, a retry, its expiry) goes before the objects
//! queued by a change in its namespace ([`FairQueue::push_due`]), also when a change queued it
//! earlier: a change leaves the timer set, and the timer then moves the object ahead.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::crd::ConsentToken;
use crate::basics::fair_queue::FairQueue;
use crate::basics::object_id::ObjectId;
use crate::basics::watch_cache::WatchCache;
use crate::cache::cached_token::CachedToken;

pub struct WorkQueue {
    state: Mutex<State>,
    /// Wakes a worker when an object is queued.
    ready_changed: Notify,
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
    /// Objects due now (an object deleted while queued stays until its turn, then is skipped).
    ready: FairQueue<ObjectId>,
    /// One copy of each namespace's name, shared by its objects' slots.
    namespaces: HashSet<Arc<str>>,
    timers: BTreeSet<(Instant, ObjectId)>,
    /// The objects a (re)list under way has delivered so far.
    relisted: Option<HashSet<ObjectId>>,
}

struct Slot {
    object: CachedToken,
    namespace: Arc<str>,
    /// Of the generation and annotations: a change to either is worth a reconcile, a status
    /// write (ours) is not.
    fingerprint: u64,
    timer: Option<Instant>,
    queued: bool,
    /// Queued in its namespace's due line (it may also wait in the line of changes: it is
    /// taken once, from whichever line reaches it first).
    queued_due: bool,
    running: bool,
    again: Option<Trigger>,
}

/// Why an object is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// Its timer came due.
    Due,
    /// A change to it or to something it depends on.
    Change,
}

/// What a watch event did to the cache.
#[derive(Debug, PartialEq, Eq)]
pub enum Cached {
    /// New, or its spec or annotations changed: queued.
    Changed,
    /// Only the status (or nothing a reconcile acts on) changed: not queued.
    Unchanged,
}

/// Whether an object whose reconcile just finished is still watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Watched {
    Still,
    /// Its deletion arrived while the reconcile ran.
    DeletedMeanwhile,
}

impl WorkQueue {
    pub fn new(queued: Gauge) -> Self {
        Self {
            state: Mutex::default(),
            ready_changed: Notify::new(),
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
        let namespace = ct.namespace().unwrap_or_default();
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
                let namespace = match state.namespaces.get(namespace.as_str()) {
                    Some(shared) => shared.clone(),
                    None => {
                        let shared: Arc<str> = Arc::from(namespace);
                        state.namespaces.insert(shared.clone());
                        shared
                    }
                };
                let slot = Slot {
                    object,
                    namespace,
                    fingerprint,
                    timer: None,
                    queued: false,
                    queued_due: false,
                    running: false,
                    again: None,
                };
                state.objects.insert(id, slot);
                true
            }
        };
        if changed {
            self.wake_locked(&mut state, id, Trigger::Change);
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

    /// Whether the object is watched (it exists, as far as the watch knows).
    pub fn contains(&self, id: ObjectId) -> bool {
        self.lock().objects.contains_key(&id)
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
        self.wake_locked(&mut state, id, Trigger::Change);
    }

    fn wake_locked(&self, state: &mut State, id: ObjectId, trigger: Trigger) {
        let Some(slot) = state.objects.get_mut(&id) else { return };
        if slot.running {
            slot.again = Some(match slot.again {
                Some(Trigger::Due) => Trigger::Due,
                _ => trigger,
            });
            return;
        }
        let namespace = slot.namespace.clone();
        match trigger {
            Trigger::Due if !slot.queued_due => {
                // Ahead of the changes, also if a change queued it already.
                slot.queued_due = true;
                state.ready.push_due(&namespace, id);
            }
            Trigger::Change if !slot.queued => state.ready.push(&namespace, id),
            // Already waiting where this trigger would put it, or further ahead.
            _ => return,
        }
        if !std::mem::replace(&mut slot.queued, true) {
            self.queued.inc();
        }
        self.ready_changed.notify_one();
    }

    /// The next object due (its namespace's turn, and first in that namespace's line); waits
    /// while there is none. The object is then the caller's until [`WorkQueue::done`].
    pub async fn next(&self) -> (ObjectId, ConsentToken) {
        loop {
            // Registered before looking, so a push between the look and the wait still wakes us.
            let notified = self.ready_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(taken) = self.take_ready() {
                return taken;
            }
            notified.await;
        }
    }

    fn take_ready(&self) -> Option<(ObjectId, ConsentToken)> {
        let mut state = self.lock();
        while let Some(id) = state.ready.pop() {
            // Deleted while it waited: `remove` counted it out already.
            let Some(slot) = state.objects.get_mut(&id) else { continue };
            // Taken already from its other line.
            if !slot.queued {
                continue;
            }
            slot.queued = false;
            slot.queued_due = false;
            self.queued.dec();
            // The reconcile sets the next timer; one left from before would only wake it again.
            if let Some(at) = slot.timer.take() {
                state.timers.remove(&(at, id));
            }
            let Some(slot) = state.objects.get_mut(&id) else { continue };
            // Cannot fail (see `CachedToken::decode`); if it did, the next watch event queues it.
            let Some(ct) = slot.object.decode() else { continue };
            slot.running = true;
            // Others may be due: let the next idle worker look too.
            if !state.ready.is_empty() {
                self.ready_changed.notify_one();
            }
            return Some((id, ct));
        }
        None
    }

    /// The reconcile of `id` finished and asked to look again `after` this long. Whether the
    /// object was deleted while it ran: what that reconcile recorded of it must then go too.
    pub fn done(&self, id: ObjectId, after: Duration) -> Watched {
        let mut state = self.lock();
        let Some(slot) = state.objects.get_mut(&id) else { return Watched::DeletedMeanwhile };
        slot.running = false;
        let again = slot.again.take();
        // The timer is set also when a trigger came meanwhile (typically the watch event of the
        // Secret this reconcile wrote): that trigger queues the object behind every change
        // waiting in its namespace, a whole fill of new objects, and only the timer moves it
        // ahead when its renewal comes due. Beyond what a clock can hold: no timer.
        if let Some(at) = Instant::now().checked_add(after) {
            slot.timer = Some(at);
            let earliest = state.timers.first().map(|(first, _)| *first);
            state.timers.insert((at, id));
            if earliest.is_none_or(|first| at < first) {
                self.timers_changed.notify_one();
            }
        }
        if let Some(trigger) = again {
            self.wake_locked(&mut state, id, trigger);
        }
        Watched::Still
    }

    /// Gives back an object whose reconcile was dropped before it finished (this replica lost
    /// its leadership): it is due again at once, for whoever reconciles next.
    pub fn abandon(&self, id: ObjectId) {
        let mut state = self.lock();
        let Some(slot) = state.objects.get_mut(&id) else { return };
        slot.running = false;
        slot.again = None;
        self.wake_locked(&mut state, id, Trigger::Change);
    }

    /// Queues every object now (this replica leads again: another may have acted meanwhile,
    /// and each object's series and status memory are rebuilt).
    pub fn wake_all(&self) {
        let mut state = self.lock();
        let ids: Vec<ObjectId> = state.objects.keys().copied().collect();
        for id in ids {
            self.wake_locked(&mut state, id, Trigger::Change);
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
                    self.wake_locked(&mut state, id, Trigger::Due);
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
mod tests;
