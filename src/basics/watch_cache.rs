//! The one protocol every watch-fed cache follows, written once: an object applied (added,
//! changed, or listed again), an object deleted, a (re)list started, a (re)list done. A watch's
//! events reach each of its caches through [`deliver`], so what a relist means (objects not
//! listed again were deleted while the watch was away) is decided in one place.

use kube::runtime::watcher;

/// A cache fed by one watch. `scope` is the namespace the watch covers (`None`: all).
pub trait WatchCache<K>: Send + Sync {
    /// An object was added or changed, or listed during a relist.
    fn apply(&self, object: &K);
    /// An object was deleted (or vanished while the watch was away: see [`Self::relist_done`]).
    fn delete(&self, object: &K);
    /// A (re)list of `scope` begins.
    fn relist_started(&self, scope: Option<&str>) {
        let _ = scope;
    }
    /// The (re)list of `scope` is complete. Returns the objects cached before it and not listed
    /// again: each is then deleted from every cache of the watch.
    fn relist_done(&self, scope: Option<&str>) -> Vec<K> {
        let _ = scope;
        Vec::new()
    }
}

/// Hands one event of a watch over `scope` to each of its `caches`, in order.
pub fn deliver<K>(caches: &[&dyn WatchCache<K>], scope: Option<&str>, event: &watcher::Event<K>) {
    match event {
        watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
            caches.iter().for_each(|cache| cache.apply(object));
        }
        watcher::Event::Delete(object) => caches.iter().for_each(|cache| cache.delete(object)),
        watcher::Event::Init => caches.iter().for_each(|cache| cache.relist_started(scope)),
        watcher::Event::InitDone => {
            let vanished: Vec<K> = caches.iter().flat_map(|cache| cache.relist_done(scope)).collect();
            for object in &vanished {
                caches.iter().for_each(|cache| cache.delete(object));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;

    /// Records what it was told; with `tracks_relists`, reports the names a relist left out.
    #[derive(Default)]
    struct Recorder {
        tracks_relists: bool,
        calls: Mutex<Vec<String>>,
        names: Mutex<BTreeSet<String>>,
        relisted: Mutex<BTreeSet<String>>,
    }

    impl WatchCache<String> for Recorder {
        fn apply(&self, object: &String) {
            self.calls.lock().unwrap().push(format!("apply {object}"));
            self.names.lock().unwrap().insert(object.clone());
            self.relisted.lock().unwrap().insert(object.clone());
        }
        fn delete(&self, object: &String) {
            self.calls.lock().unwrap().push(format!("delete {object}"));
            self.names.lock().unwrap().remove(object);
        }
        fn relist_started(&self, scope: Option<&str>) {
            self.calls.lock().unwrap().push(format!("relist {scope:?}"));
            self.relisted.lock().unwrap().clear();
        }
        fn relist_done(&self, _: Option<&str>) -> Vec<String> {
            let relisted = self.relisted.lock().unwrap();
            let names = self.names.lock().unwrap();
            if !self.tracks_relists {
                return Vec::new();
            }
            names.difference(&relisted).cloned().collect()
        }
    }

    #[test]
    fn an_object_missing_from_a_relist_is_deleted_from_every_cache_of_the_watch() {
        let tracking = Recorder { tracks_relists: true, ..Recorder::default() };
        let plain = Recorder::default();
        let caches: [&dyn WatchCache<String>; 2] = [&tracking, &plain];
        let events = [
            watcher::Event::Apply("a".to_owned()),
            watcher::Event::Apply("b".to_owned()),
            watcher::Event::Init,
            watcher::Event::InitApply("a".to_owned()),
            watcher::Event::InitDone,
        ];
        for event in &events {
            deliver(&caches, Some("ns"), event);
        }
        // "b" was deleted while the watch was away: the cache that tracks relists reports it,
        // and both caches hear of it as a deletion.
        for cache in [&tracking, &plain] {
            let calls = cache.calls.lock().unwrap().clone();
            assert_eq!(calls, ["apply a", "apply b", "relist Some(\"ns\")", "apply a", "delete b"]);
            assert_eq!(*cache.names.lock().unwrap(), BTreeSet::from(["a".to_owned()]));
        }
    }
}
