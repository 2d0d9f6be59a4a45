//! One controller: the watches of one namespace (or of all), the caches they feed, and the
//! workers that reconcile what the work queue hands out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{broadcast, mpsc, watch};

use super::listed::Listed;
use super::watches::{self, WakeOwner, WakeWaiters, WatchName};
use super::{SecretsSeen, Shared, until, worker};
use crate::api::annotations::MANAGED_SELECTOR;
use crate::api::crd::{ClusterConsentProvider, ConsentProvider, ConsentToken};
use crate::basics::object_id::ObjectId;
use crate::basics::watch_cache::WatchCache;
use crate::cache::cached_token::{slim_consent_token, slim_provider};
use crate::cache::credentials_index::{self, CredentialsIndex};
use crate::cache::owned_secrets::OwnedSecrets;
use crate::cache::undecodable::{Guarded, UndecodableObjects, UndecodableReport};
use crate::cache::watch_backoff::WatchBackoff;
use crate::cache::watch_filters::spec_changes;
use crate::cache::work_queue::WorkQueue;
use crate::config::ControllerArgs;
use crate::observability::metrics::KindLabels;
use crate::provider::credentials::CredentialsChange;
use crate::provider::lookup::{Catalog, ProviderKey};
use crate::reconcile::context::{Caches, Context, ObjectRecords};
use crate::reconcile::target_waiters::TargetWaiters;
use crate::runtime::leader::Role;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What one controller leaves for the others and for the provider status writer.
pub struct NamespaceController {
    pub run: Task,
    /// Resolves once every watch of the controller has listed.
    pub listed: Task,
    /// Its ConsentTokens by credentials source (the provider status counts users in it).
    pub index: Arc<CredentialsIndex>,
    pub catalog: Catalog,
}

const TOKENS: &str = "ConsentTokens";
const OWNED_SECRETS: &str = "owned Secrets";
const PROVIDERS: &str = "ConsentProviders";
const CLUSTER_PROVIDERS: &str = "ClusterConsentProviders";
const NAMESPACES: &str = "Namespaces";

/// Where one controller works, and where it reports objects that do not decode.
pub struct Scoped<'a> {
    /// `None`: every namespace.
    pub namespace: Option<&'a str>,
    pub undecodable: &'a mpsc::Sender<UndecodableReport>,
}

/// The controller of `scoped.namespace`.
pub fn controller<S>(
    shared: &Shared,
    seen: &SecretsSeen,
    args: &ControllerArgs,
    scoped: Scoped<'_>,
    role: watch::Receiver<Role>,
    shutdown: S,
) -> NamespaceController
where
    S: Future<Output = ()> + Send + Sync + Clone + 'static,
{
    let (client, namespace) = (&shared.kube.client, scoped.namespace);
    let named = |name| WatchName { name, namespace: namespace.map(str::to_owned) };
    let mut listed = Listed::default();
    let (catalog, catalog_changes) = catalog(client, &scoped, shared, &mut listed);
    let owned_secrets = Arc::new(OwnedSecrets::default());
    let queue = Arc::new(WorkQueue::new(shared.metrics.reconciles_queued.clone()));
    let caches = Caches {
        owned_secrets: owned_secrets.clone(),
        catalog: catalog.clone(),
        secret_names: seen.names.clone(),
        tokens: queue.clone(),
        listed: listed.when(&[OWNED_SECRETS, PROVIDERS, CLUSTER_PROVIDERS, NAMESPACES]),
        credentials_namespaces: seen.namespaces.clone(),
    };
    let context = Arc::new(Context {
        kube: shared.kube.clone(),
        upstream: shared.upstream.clone(),
        scheduling: shared.scheduling.clone(),
        metrics: shared.metrics.clone(),
        caches,
        records: ObjectRecords::default(),
    });
    let index = Arc::new(CredentialsIndex::default());

    // The index first, then the queue: a reconcile the queue starts sees the object indexed.
    // Waiters for a deleted object's target name are woken once the queue has dropped it.
    let waiters = WakeWaiters { queue: queue.clone(), waiters: context.records.target_waiters.clone() };
    let token_caches: Vec<Arc<dyn WatchCache<ConsentToken>>> =
        vec![index.clone(), shared.scheduling.first_tokens.clone(), context.clone(), queue.clone(), Arc::new(waiters)];
    let undecodable = guard("ConsentToken", shared).reporting_to(scoped.undecodable.clone());
    let cached = queue.clone();
    let tokens = watcher(api::<Guarded<ConsentToken>>(client, namespace), watcher::Config::default());
    let tokens = undecodable.skip(tokens, move |meta| cached.get(ObjectId::of(uid(meta)))).modify(slim_consent_token);
    let tokens =
        watches::feed(named(TOKENS), tokens.backoff(WatchBackoff::default()), token_caches, Some(listed.flag(TOKENS)));
    let wake = WakeOwner { queue: queue.clone(), waiters: context.records.target_waiters.clone() };
    let secret_caches: Vec<Arc<dyn WatchCache<Secret>>> = vec![owned_secrets, Arc::new(wake)];
    let secrets = watcher(api(client, namespace), watcher::Config::default().labels(MANAGED_SELECTOR));
    let secrets_listed = Some(listed.flag(OWNED_SECRETS));
    let secrets =
        watches::feed(named(OWNED_SECRETS), secrets.backoff(WatchBackoff::default()), secret_caches, secrets_listed);
    let by_catalog = wake_on_catalog(catalog_changes, namespace, &queue, &index);
    let by_credentials = wake_on_credentials(seen, shared, &queue, &index, &catalog, &context.records.target_waiters);
    let triggers = async move {
        futures::join!(tokens, secrets, by_catalog, by_credentials);
    };

    let tokens_listed = listed.wait_for(&[TOKENS]);
    let workers = workers(queue.clone(), context, args.concurrency, tokens_listed, role, shutdown.clone());
    let timers = async move { queue.run_timers().await };
    let run = async move {
        futures::join!(until(shutdown.clone(), triggers), until(shutdown.clone(), timers), workers);
    };
    NamespaceController { run: Box::pin(run), listed: Box::pin(listed.wait_for(&[])), index, catalog }
}

/// `concurrency` workers while this replica leads, started once the ConsentTokens are listed
/// (as kube-runtime's controller did), each taking the next object due; they stop taking new
/// ones at shutdown and finish what they started.
///
/// When leading ends they are dropped at once, with whatever they had under way (another
/// replica is about to write), and the objects they held are queued again. The caches stay:
/// leading again needs no relist. What this replica remembered of its own writes and its
/// per-object series go, and every object is queued, so that leading again starts from what
/// the cluster says, as a fresh process would.
async fn workers<S>(
    queue: Arc<WorkQueue>,
    context: Arc<Context>,
    concurrency: u16,
    tokens_listed: impl Future<Output = ()>,
    mut role: watch::Receiver<Role>,
    shutdown: S,
) where
    S: Future<Output = ()> + Send + Sync + Clone + 'static,
{
    tokio::select! {
        () = tokens_listed => {}
        () = shutdown.clone() => return,
    }
    loop {
        tokio::select! {
            leads = role.wait_for(|role| *role == Role::Leader) => if leads.is_err() { return },
            () = shutdown.clone() => return,
        }
        let workers = (0..concurrency.max(1)).map(|_| worker(queue.clone(), context.clone(), shutdown.clone()));
        tokio::select! {
            _ = futures::future::join_all(workers) => return,
            stands_by = role.wait_for(|role| *role == Role::Standby) => {
                context.records.status_memory.clear();
                context.metrics.forget_all();
                queue.wake_all();
                if stands_by.is_err() {
                    return;
                }
            }
        }
    }
}

/// A new spec of a provider object wakes the ConsentTokens that name it; new labels on a
/// namespace wake its ConsentTokens that use a ClusterConsentProvider.
fn wake_on_catalog(
    changes: CatalogChanges,
    namespace: Option<&str>,
    queue: &Arc<WorkQueue>,
    index: &Arc<CredentialsIndex>,
) -> impl Future<Output = ()> + Send + use<> {
    let named = |name| WatchName { name, namespace: namespace.map(str::to_owned) };
    let (i, j, tokens) = (index.clone(), index.clone(), queue.clone());
    let of = |p: &ConsentProvider| ProviderKey::Namespaced {
        namespace: p.namespace().unwrap_or_default(),
        name: p.name_any(),
    };
    let by_provider =
        watches::wake(named(PROVIDERS), changes.providers, queue.clone(), move |p| i.users_of_provider(of(&p)));
    let by_cluster_provider = watches::wake(
        named(CLUSTER_PROVIDERS),
        changes.cluster_providers,
        queue.clone(),
        move |p: ClusterConsentProvider| j.users_of_provider(ProviderKey::Cluster { name: p.name_any() }),
    );
    let by_namespace =
        watches::wake(named(NAMESPACES), changes.namespaces, queue.clone(), move |n: PartialObjectMeta<Namespace>| {
            credentials_index::users_of_cluster_providers_in(&tokens, &n.name_any())
        });
    async move {
        futures::join!(by_provider, by_cluster_provider, by_namespace);
    }
}

/// A changed credentials Secret (published by the credentials watches) wakes the ConsentTokens
/// that use it, marked to fetch with the new version.
fn wake_on_credentials(
    seen: &SecretsSeen,
    shared: &Shared,
    queue: &Arc<WorkQueue>,
    index: &Arc<CredentialsIndex>,
    catalog: &Catalog,
    waiters: &Arc<TargetWaiters>,
) -> impl Future<Output = ()> + Send + use<> {
    let (queue, index, catalog, waiters) = (queue.clone(), index.clone(), catalog.clone(), waiters.clone());
    let pending = shared.upstream.pending_rotations.clone();
    credentials_changes(seen.changes.0.subscribe()).for_each(move |change| {
        for object in credentials_index::users_of_change(&queue, &index, &catalog, &pending, change.as_ref()) {
            queue.wake(object);
        }
        // A Secret someone else holds changed (its owner may have offered it to a ConsentToken
        // waiting for its name, `consent.dev/adopt-by`): the waiters look again now rather than
        // after their back-off.
        if let Some(change) = &change {
            for waiting in waiters.freed(&change.namespace, &change.name) {
                queue.wake(waiting);
            }
        }
        async {}
    })
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

type Objects<K> = Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The provider objects whose spec changed, and the namespaces whose labels did.
struct CatalogChanges {
    providers: Objects<ConsentProvider>,
    cluster_providers: Objects<ClusterConsentProvider>,
    namespaces: Objects<PartialObjectMeta<Namespace>>,
}

/// The provider objects and namespace labels a controller resolves `providerRef`s against
/// (kube-runtime reflectors), with the objects whose spec (or labels) changed.
fn catalog(client: &Client, scoped: &Scoped<'_>, shared: &Shared, listed: &mut Listed) -> (Catalog, CatalogChanges) {
    let namespace = scoped.namespace;
    let (provider_store, writer) = reflector::store::<ConsentProvider>();
    let undecodable = guard("ConsentProvider", shared).reporting_to(scoped.undecodable.clone());
    let cached = provider_store.clone();
    let providers = watcher(api::<Guarded<ConsentProvider>>(client, namespace), watcher::Config::default());
    let providers = undecodable
        .skip(providers, move |meta| last_in(&cached, meta))
        .backoff(WatchBackoff::default())
        .modify(|p| slim_provider(&mut p.metadata))
        .reflect(writer)
        .inspect(mark(listed.flag(PROVIDERS)));
    let (cluster_store, writer) = reflector::store::<ClusterConsentProvider>();
    let (undecodable, cached) = (guard("ClusterConsentProvider", shared), cluster_store.clone());
    let cluster_providers =
        watcher(Api::<Guarded<ClusterConsentProvider>>::all(client.clone()), watcher::Config::default());
    let cluster_providers = undecodable
        .skip(cluster_providers, move |meta| last_in(&cached, meta))
        .backoff(WatchBackoff::default())
        .modify(|p| slim_provider(&mut p.metadata))
        .reflect(writer)
        .inspect(mark(listed.flag(CLUSTER_PROVIDERS)));
    let (namespace_store, writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let namespace_config = match namespace {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let namespaces = watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), namespace_config)
        .backoff(WatchBackoff::default())
        .modify(|n| {
            n.metadata.managed_fields = None;
            n.metadata.annotations = None;
        })
        .reflect(writer)
        .inspect(mark(listed.flag(NAMESPACES)))
        .touched_objects();
    let catalog = Catalog {
        providers: provider_store,
        cluster_providers: cluster_store,
        namespaces: namespace_store,
        operator_namespace: shared.operator_namespace.clone(),
    };
    let changes = CatalogChanges {
        providers: Box::pin(spec_changes(providers)),
        cluster_providers: Box::pin(spec_changes(cluster_providers)),
        namespaces: Box::pin(namespaces),
    };
    (catalog, changes)
}

/// The credentials changes published to one controller. `None`: some were missed (the
/// controller fell behind), so every ConsentToken with credentials is looked at again.
fn credentials_changes(
    receiver: broadcast::Receiver<CredentialsChange>,
) -> impl Stream<Item = Option<CredentialsChange>> + Send {
    futures::stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Ok(change) => Some((Some(change), receiver)),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "credentials changes came faster than handled; looking at all ConsentTokens");
                Some((None, receiver))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}

/// Sets `flag` once a watch has listed everything.
fn mark<K>(flag: tokio::sync::watch::Sender<bool>) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            flag.send_replace(true);
        }
    }
}

/// Skips the objects of `kind` that do not decode, counted in the shared gauge.
fn guard(kind: &'static str, shared: &Shared) -> UndecodableObjects {
    UndecodableObjects::new(kind, shared.metrics.undecodable.get_or_create(&KindLabels { kind }).clone())
}

fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

/// The version of an object a reflector's store holds.
fn last_in<K>(store: &reflector::Store<K>, meta: &ObjectMeta) -> Option<K>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    let name = meta.name.as_deref()?;
    let reference = reflector::ObjectRef::new(name);
    let reference = match meta.namespace.as_deref() {
        Some(namespace) => reference.within(namespace),
        None => reference,
    };
    store.get(&reference).map(|object| K::clone(&object))
}
