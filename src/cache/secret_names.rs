//! Which Secret names are taken by Secrets that are not the operator's, in the namespaces the
//! credentials watch covers (it sees the metadata of every Secret not labelled as ours anyway).
//! A new ConsentToken's target name that is neither here nor among the operator's own Secrets is
//! free: the Secret is created without first asking the API server whether someone else's has
//! that name. That read was the one request per new object the floor does not make.
//!
//! Only hashes of the names are kept (8 bytes a Secret), so memory still does not grow with the
//! cluster's Secrets beyond that. A hash shared by two names can only make a free name look
//! taken, which costs the read it would have cost anyway; a Secret created after the last event
//! seen makes the create fail with AlreadyExists, which the create handles.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;

use crate::basics::watch_cache::WatchCache;

#[derive(Default)]
pub struct SecretNames(Mutex<Names>);

#[derive(Default)]
struct Names {
    by_namespace: HashMap<String, HashSet<u64>>,
    /// The watch scopes (`None`: all namespaces) whose list is complete.
    listed: HashSet<Option<String>>,
    hasher: std::hash::RandomState,
}

impl SecretNames {
    /// A (re)list of `scope` begins: what was known of it is forgotten until it completes.
    pub fn relisting(&self, scope: Option<&str>) {
        let mut names = self.lock();
        names.listed.remove(&scope.map(str::to_owned));
        match scope {
            Some(namespace) => {
                names.by_namespace.remove(namespace);
            }
            None => names.by_namespace.clear(),
        }
    }

    pub fn listed(&self, scope: Option<&str>) {
        self.lock().listed.insert(scope.map(str::to_owned));
    }

    pub fn add(&self, namespace: &str, name: &str) {
        let mut names = self.lock();
        let hash = names.hasher.hash_one(name);
        names.by_namespace.entry(namespace.to_owned()).or_default().insert(hash);
    }

    pub fn remove(&self, namespace: &str, name: &str) {
        let mut names = self.lock();
        let hash = names.hasher.hash_one(name);
        if let Some(set) = names.by_namespace.get_mut(namespace) {
            set.remove(&hash);
            if set.is_empty() {
                names.by_namespace.remove(namespace);
            }
        }
    }

    /// Whether a Secret that is not the operator's may have this name: `Some(false)` when the
    /// namespace is listed and no such name was seen, `None` when it is not known (yet).
    pub fn taken(&self, namespace: &str, name: &str) -> Option<bool> {
        let names = self.lock();
        let listed = names.listed.contains(&None) || names.listed.contains(&Some(namespace.to_owned()));
        listed.then(|| {
            let hash = names.hasher.hash_one(name);
            names.by_namespace.get(namespace).is_some_and(|set| set.contains(&hash))
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Names> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Fed by the metadata watches of Secrets that are not the operator's.
impl WatchCache<PartialObjectMeta<Secret>> for SecretNames {
    fn apply(&self, secret: &PartialObjectMeta<Secret>) {
        self.add(&secret.namespace().unwrap_or_default(), &secret.name_any());
    }
    fn delete(&self, secret: &PartialObjectMeta<Secret>) {
        self.remove(&secret.namespace().unwrap_or_default(), &secret.name_any());
    }
    fn relist_started(&self, scope: Option<&str>) {
        self.relisting(scope);
    }
    fn relist_done(&self, scope: Option<&str>) -> Vec<PartialObjectMeta<Secret>> {
        self.listed(scope);
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_known_free_only_once_its_namespace_is_listed() {
        let names = SecretNames::default();
        names.add("a", "taken");
        assert_eq!(names.taken("a", "free"), None, "not listed yet");
        names.listed(Some("a"));
        assert_eq!(names.taken("a", "taken"), Some(true));
        assert_eq!(names.taken("a", "free"), Some(false));
        assert_eq!(names.taken("b", "free"), None, "another namespace, not watched");
        names.remove("a", "taken");
        assert_eq!(names.taken("a", "taken"), Some(false));
        names.relisting(Some("a"));
        assert_eq!(names.taken("a", "free"), None, "during a relist");
    }

    #[test]
    fn a_cluster_wide_watch_covers_every_namespace() {
        let names = SecretNames::default();
        names.add("b", "x");
        names.listed(None);
        assert_eq!(names.taken("b", "x"), Some(true));
        assert_eq!(names.taken("c", "x"), Some(false));
        names.relisting(None);
        assert_eq!(names.taken("b", "x"), None);
    }
}
