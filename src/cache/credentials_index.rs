//! Which ConsentTokens take their credentials through which Secret or provider object, kept in
//! step with the ConsentToken watch, so that a change to a credentials Secret finds its users
//! without looking at every cached ConsentToken (at 30,000 objects that scan ran once per change
//! of any Secret in the watched namespaces).
//!
//! The index names candidates; the caller still checks each one against its cached object, so an
//! index that is briefly behind the cache can cost a look, never a missed or a wrong reconcile.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

use kube::ResourceExt;

use crate::api::crd::{ConsentToken, ProviderRefKind};
use crate::basics::object_id::ObjectId;
use crate::basics::watch_cache::WatchCache;
use crate::cache::work_queue::WorkQueue;
use crate::provider::credentials::{CredentialsChange, PendingRotations};
use crate::provider::lookup::{self, Catalog, ProviderKey};

/// What a ConsentToken takes its credentials through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialsSource {
    /// A Secret it names itself (in its own namespace).
    Secret { namespace: String, name: String },
    /// A provider object, whose credentials Secret may change without the ConsentToken changing.
    Provider(ProviderKey),
}

impl CredentialsSource {
    pub fn of(ct: &ConsentToken) -> Option<Self> {
        let namespace = ct.namespace()?;
        if let Some(inline) = ct.spec.inline_provider() {
            return Some(Self::Secret { namespace, name: inline.credentials_secret_ref().name.clone() });
        }
        lookup::provider_key(ct).map(Self::Provider)
    }
}

/// The ConsentTokens of each credentials source.
#[derive(Default)]
pub struct CredentialsIndex(Mutex<Index>);

/// Sources are keyed by their hashes and objects by their uids, so each object costs a few words;
/// a hash collision could only make a candidate of an object that is not one, which the caller's
/// check drops.
#[derive(Default)]
struct Index {
    users: HashMap<u64, HashSet<ObjectId>>,
    source_of: HashMap<ObjectId, u64>,
    hasher: std::hash::RandomState,
}

impl Index {
    fn hash(&self, value: &impl Hash) -> u64 {
        self.hasher.hash_one(value)
    }

    fn remove(&mut self, object: ObjectId) {
        let Some(source) = self.source_of.remove(&object) else { return };
        if let Some(users) = self.users.get_mut(&source) {
            users.remove(&object);
            if users.is_empty() {
                self.users.remove(&source);
            }
        }
    }

    fn users(&self, source: &CredentialsSource) -> impl Iterator<Item = &ObjectId> {
        self.users.get(&self.hash(source)).into_iter().flatten()
    }
}

impl CredentialsIndex {
    /// Records `ct` as it is now (a new or changed object).
    pub fn insert(&self, ct: &ConsentToken) {
        let object = ObjectId::of(&ct.uid().unwrap_or_default());
        let mut index = self.lock();
        let source = CredentialsSource::of(ct).map(|source| index.hash(&source));
        if source.is_some() && index.source_of.get(&object).copied() == source {
            return; // unchanged: the common case, one event per status write
        }
        index.remove(object);
        if let Some(source) = source {
            index.source_of.insert(object, source);
            index.users.entry(source).or_default().insert(object);
        }
    }

    pub fn remove(&self, ct: &ConsentToken) {
        self.lock().remove(ObjectId::of(&ct.uid().unwrap_or_default()));
    }

    /// The ConsentTokens that may use the Secret `namespace/name` as credentials: those naming
    /// it, and those naming a provider object that names it.
    pub fn users_of_secret(&self, catalog: &Catalog, namespace: &str, name: &str) -> Vec<ObjectId> {
        let mut sources = vec![CredentialsSource::Secret { namespace: namespace.to_owned(), name: name.to_owned() }];
        let secret = Some((namespace.to_owned(), name.to_owned()));
        for provider in catalog.all() {
            if catalog.credentials_secret(&provider) == secret {
                sources.push(CredentialsSource::Provider(provider.key()));
            }
        }
        let index = self.lock();
        sources.iter().flat_map(|source| index.users(source)).cloned().collect()
    }

    /// The ConsentTokens that name a provider object.
    pub fn users_of_provider(&self, provider: ProviderKey) -> Vec<ObjectId> {
        self.lock().users(&CredentialsSource::Provider(provider)).cloned().collect()
    }

    /// How many ConsentTokens name a provider object.
    pub fn count_users_of_provider(&self, provider: &ProviderKey) -> usize {
        let index = self.lock();
        let source = index.hash(&CredentialsSource::Provider(provider.clone()));
        index.users.get(&source).map_or(0, HashSet::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Fed by the ConsentToken watch.
impl WatchCache<ConsentToken> for CredentialsIndex {
    fn apply(&self, ct: &ConsentToken) {
        self.insert(ct);
    }
    fn delete(&self, ct: &ConsentToken) {
        self.remove(ct);
    }
}

/// The ConsentTokens that use the changed Secret as credentials (directly or through their
/// provider object) and did not get their token from this version of it. Each is marked so its
/// next reconcile fetches with the new credentials. The index names the candidates; each is
/// checked against its cached object.
pub fn users_of_change(
    tokens: &WorkQueue,
    index: &CredentialsIndex,
    catalog: &Catalog,
    pending: &PendingRotations,
    change: Option<&CredentialsChange>,
) -> Vec<ObjectId> {
    let candidates: Vec<ConsentToken> = match change {
        Some(change) => index
            .users_of_secret(catalog, &change.namespace, &change.name)
            .into_iter()
            .filter_map(|object| tokens.get(object))
            .collect(),
        None => tokens.objects(),
    };
    let users: Vec<_> = candidates
        .into_iter()
        .filter(|ct| {
            let Some(change) = change else { return true };
            lookup::credentials_secret_of(ct, catalog)
                .is_some_and(|(namespace, name)| namespace == change.namespace && name == change.name)
                && ct.status.as_ref().and_then(|s| s.credentials_version.as_deref()) != change.version.as_deref()
        })
        .map(|ct| {
            let object = ObjectId::of(&ct.uid().unwrap_or_default());
            if let Some(CredentialsChange { version: Some(version), .. }) = change {
                pending.record(object, version.clone());
            }
            object
        })
        .collect();
    if let Some(change) = change
        && !users.is_empty()
    {
        tracing::debug!(
            namespace = change.namespace,
            secret = change.name,
            users = users.len(),
            "credentials Secret changed"
        );
    }
    users
}

/// The ConsentTokens in `namespace` that use a ClusterConsentProvider: its labels decide whether
/// the provider serves them.
pub fn users_of_cluster_providers_in(tokens: &WorkQueue, namespace: &str) -> Vec<ObjectId> {
    tokens
        .objects()
        .into_iter()
        .filter(|ct| ct.namespace().as_deref() == Some(namespace))
        .filter(|ct| ct.spec.provider_ref.as_ref().is_some_and(|r| r.kind == ProviderRefKind::ClusterConsentProvider))
        .map(|ct| ObjectId::of(&ct.uid().unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::{ProviderRef, ProviderRefKind};
    use kube::runtime::reflector::store;

    fn catalog() -> Catalog {
        Catalog {
            providers: store::Writer::default().as_reader(),
            cluster_providers: store::Writer::default().as_reader(),
            namespaces: store::Writer::default().as_reader(),
            operator_namespace: "operator".into(),
        }
    }

    fn token(namespace: &str, name: &str, credentials: &str) -> ConsentToken {
        let mut ct = crate::fixtures::fdx_consent_token("https://bank.example");
        ct.metadata.name = Some(name.into());
        ct.metadata.namespace = Some(namespace.into());
        ct.metadata.uid = Some(format!("{namespace}/{name}"));
        if let Some(inline) = ct.spec.fdx.as_mut() {
            inline.credentials_secret_ref.name = credentials.into();
        }
        ct
    }

    /// The objects of the (test) uids `namespace/name`, in any order.
    fn names(ids: Vec<ObjectId>) -> Vec<String> {
        let all = ["a/one", "a/two", "a/three", "b/four", "team-a/web"];
        let mut names: Vec<String> =
            ids.iter().filter_map(|id| all.iter().find(|n| ObjectId::of(n) == *id)).map(|n| (*n).to_owned()).collect();
        names.sort();
        assert_eq!(names.len(), ids.len(), "unknown objects");
        names
    }

    #[test]
    fn a_secret_finds_the_tokens_that_name_it_in_its_namespace_only() {
        let index = CredentialsIndex::default();
        index.insert(&token("a", "one", "mx"));
        index.insert(&token("a", "two", "mx"));
        index.insert(&token("a", "three", "other"));
        index.insert(&token("b", "four", "mx"));
        assert_eq!(names(index.users_of_secret(&catalog(), "a", "mx")), ["a/one", "a/two"]);
        assert_eq!(names(index.users_of_secret(&catalog(), "b", "mx")), ["b/four"]);
        assert!(index.users_of_secret(&catalog(), "c", "mx").is_empty());
    }

    #[test]
    fn a_token_that_changes_its_credentials_moves_and_a_deleted_one_goes() {
        let index = CredentialsIndex::default();
        index.insert(&token("a", "one", "mx"));
        index.insert(&token("a", "one", "new"));
        assert!(index.users_of_secret(&catalog(), "a", "mx").is_empty());
        assert_eq!(names(index.users_of_secret(&catalog(), "a", "new")), ["a/one"]);
        index.remove(&token("a", "one", "new"));
        assert!(index.users_of_secret(&catalog(), "a", "new").is_empty());
        assert!(index.lock().users.is_empty() && index.lock().source_of.is_empty());
    }

    #[test]
    fn a_provider_reference_is_found_by_the_provider() {
        let index = CredentialsIndex::default();
        let mut ct = token("team-a", "web", "unused");
        ct.spec.fdx = None;
        ct.spec.provider_ref = Some(ProviderRef { kind: ProviderRefKind::ClusterConsentProvider, name: "bank".into() });
        index.insert(&ct);
        assert_eq!(names(index.users_of_provider(ProviderKey::Cluster { name: "bank".into() })), ["team-a/web"]);
        assert_eq!(index.count_users_of_provider(&ProviderKey::Cluster { name: "bank".into() }), 1);
        assert!(index.users_of_provider(ProviderKey::Cluster { name: "other".into() }).is_empty());
    }
}
