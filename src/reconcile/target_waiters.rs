//! ConsentTokens waiting for a target Secret name that another object's Secret holds
//! (`TargetConflict`), so that the Secret's deletion wakes them at once.
//!
//! The usual case is `kubectl replace --force` (or an Argo CD Replace) of a ConsentToken: the new
//! object, with a new uid, finds its predecessor's Secret still there and may not overwrite it.
//! The garbage collector deletes that Secret a moment later, but its deletion names only the old
//! owner, and the conflict's back-off (doubling up to 30 minutes) would leave pods without a
//! Secret until it ended. The same holds when a second ConsentToken waits for a name a deleted
//! one held.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use crate::basics::object_id::ObjectId;

#[derive(Default)]
pub struct TargetWaiters {
    /// (namespace, Secret name) -> the ConsentTokens that found it held by someone else.
    waiting: Mutex<HashMap<(String, String), BTreeSet<ObjectId>>>,
}

impl TargetWaiters {
    /// `object` found the Secret `namespace/name` held by someone else.
    pub fn wait(&self, namespace: &str, name: &str, object: ObjectId) {
        self.lock().entry((namespace.to_owned(), name.to_owned())).or_default().insert(object);
    }

    /// `object` no longer waits for `namespace/name` (it was deleted, or it got the name).
    pub fn stop_waiting(&self, namespace: &str, name: &str, object: ObjectId) {
        let mut waiting = self.lock();
        // Called after every reconcile: nothing to build a key for in the usual case.
        if waiting.is_empty() {
            return;
        }
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(objects) = waiting.get_mut(&key) {
            objects.remove(&object);
            if objects.is_empty() {
                waiting.remove(&key);
            }
        }
    }

    /// The Secret `namespace/name` is gone (or changed: its owner may offer it): the objects
    /// that waited for it, to be woken.
    pub fn freed(&self, namespace: &str, name: &str) -> BTreeSet<ObjectId> {
        let mut waiting = self.lock();
        // Called for every change of a Secret that is not ours: no key built in the usual case.
        if waiting.is_empty() {
            return BTreeSet::new();
        }
        waiting.remove(&(namespace.to_owned(), name.to_owned())).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), BTreeSet<ObjectId>>> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_name_wakes_its_waiters_once_and_only_in_its_namespace() {
        let waiters = TargetWaiters::default();
        let (a, b, c) = (ObjectId::of("a"), ObjectId::of("b"), ObjectId::of("c"));
        waiters.wait("team", "token", a);
        waiters.wait("team", "token", b);
        waiters.wait("other", "token", c);
        waiters.stop_waiting("team", "token", b);
        assert_eq!(waiters.freed("team", "token"), BTreeSet::from([a]));
        assert!(waiters.freed("team", "token").is_empty(), "woken once");
        assert_eq!(waiters.freed("other", "token"), BTreeSet::from([c]));
    }
}
