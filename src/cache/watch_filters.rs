//! Which provider watch events are worth a reconcile of the ConsentTokens that use the provider:
//! a new spec, not the operator's own status writes (each would otherwise reconcile every
//! ConsentToken of that provider). The ConsentTokens' own watch is filtered by the work queue.
//!
//! These replace kube-runtime's `predicate_filter`, whose cache keys each object by a copy of its
//! name, namespace, uid and resource version (about 190 bytes per ConsentToken with its table
//! slot, measured with heaptrack at 3,000); here each object costs two words.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use futures::{Stream, StreamExt};
use kube::runtime::watcher;

/// The objects of a watch whose spec changed (a new generation) or that were deleted.
pub fn spec_changes<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: kube::Resource + Send,
{
    changes(events, |object: &K, h: &RandomState| h.hash_one(object.meta().generation), true)
}

/// The objects whose `fingerprint` differs from the one last let through (or that are new), and
/// with `deletions`, the deleted ones.
fn changes<K>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    fingerprint: impl Fn(&K, &RandomState) -> u64 + Send,
    deletions: bool,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: kube::Resource + Send,
{
    let mut seen = Seen::default();
    events.filter_map(move |event| {
        let changed = match event {
            Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                let print = fingerprint(&object, &seen.hasher);
                seen.changed(&object, print).then_some(Ok(object))
            }
            Ok(watcher::Event::Delete(object)) => {
                seen.forget(&object);
                deletions.then_some(Ok(object))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(err) => Some(Err(err)),
        };
        futures::future::ready(changed)
    })
}

/// A fingerprint of what was last let through, per object (by a hash of its uid).
#[derive(Default)]
struct Seen {
    fingerprints: HashMap<u64, u64>,
    hasher: RandomState,
}

impl Seen {
    fn hash(&self, value: &impl Hash) -> u64 {
        self.hasher.hash_one(value)
    }

    /// Whether `object`'s fingerprint differs from the last one seen (or it is new); records it.
    fn changed<K: kube::Resource>(&mut self, object: &K, fingerprint: u64) -> bool {
        let id = self.id(object);
        self.fingerprints.insert(id, fingerprint) != Some(fingerprint)
    }

    fn forget<K: kube::Resource>(&mut self, object: &K) {
        let id = self.id(object);
        self.fingerprints.remove(&id);
    }

    /// The uid tells a recreated object from its predecessor; name and namespace stand in
    /// where there is none (objects built by hand in tests).
    fn id<K: kube::Resource>(&self, object: &K) -> u64 {
        match &object.meta().uid {
            Some(uid) => self.hash(uid),
            None => self.hash(&(object.meta().namespace.as_deref(), object.meta().name.as_deref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::ConsentToken;
    use std::collections::BTreeMap;

    fn token(uid: &str, generation: i64, annotations: &[(&str, &str)]) -> ConsentToken {
        let mut ct = crate::fixtures::fdx_consent_token("https://bank.example");
        ct.metadata.uid = Some(uid.into());
        ct.metadata.generation = Some(generation);
        ct.metadata.annotations =
            Some(annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>());
        ct
    }

    #[test]
    fn spec_changes_pass_deletions_and_new_generations_only() {
        use watcher::Event::{Apply, Delete, InitApply};
        let events =
            vec![InitApply(token("p", 1, &[])), Apply(token("p", 1, &[("x", "y")])), Delete(token("p", 1, &[]))];
        let stream = spec_changes(futures::stream::iter(events.into_iter().map(Ok)));
        let passed = futures::executor::block_on(stream.collect::<Vec<_>>());
        assert_eq!(passed.len(), 2);
    }
}
