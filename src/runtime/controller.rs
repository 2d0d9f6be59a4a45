//! Wiring: which watches trigger a reconcile, and what is cached.
//!
//! - ConsentTokens: cached in the [`WorkQueue`], which also says when each is next reconciled
//!   (first come, first served, by `--concurrency` workers); a reconcile runs when the spec
//!   (generation) or the annotations change, never for the operator's own status writes, and
//!   when its timer comes due.
//! - Secrets the operator manages (label-selected): cached as summaries without their tokens
//!   (each value is replaced by its fingerprint, see [`OwnedSecrets`]); any change to one (an
//!   edit, a deletion) reconciles its owner, which puts it back.
//! - ConsentProviders, ClusterConsentProviders and Namespace labels (metadata only): cached, few
//!   and small; a change to one reconciles the ConsentTokens that name it (or, for a
//!   namespace, that use a cluster provider from it).
//! - All other Secrets: watched metadata-only and not cached (a hash of each name is kept, see
//!   [`SecretNames`]), so the operator's memory barely grows with the cluster's Secrets. A change to a Secret some ConsentToken uses as credentials
//!   (directly or through its provider object, in any namespace) refreshes that ConsentToken at
//!   once: every credentials watch publishes its changes to every controller
//!   ([`SecretChanges`]).
//!
//! With a list of namespaces, one controller runs per namespace, each with namespaced watches,
//! so the operator needs Roles in those namespaces only (and read access to
//! ClusterConsentProviders and Namespaces).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{broadcast, watch};

use crate::api::annotations::{MANAGED_SELECTOR, NOT_MANAGED_SELECTOR};
use crate::api::crd::{ClusterConsentProvider, ConsentProvider, ConsentToken, ProviderRefKind};
use crate::basics::object_id::ObjectId;
use crate::cache::credentials_index::CredentialsIndex;
use crate::cache::owned_secrets::OwnedSecrets;
use crate::cache::secret_names::SecretNames;
use crate::cache::watch_backoff::WatchBackoff;
use crate::cache::watch_filters::spec_changes;
use crate::cache::work_queue::WorkQueue;
use crate::config::ControllerArgs;
use crate::observability::metrics::Metrics;
use crate::provider::credentials::{CredentialChanges, CredentialsCache, SecretChange};
use crate::provider::lookup::{self, Catalog, ProviderKey};
use crate::provider::{Providers, UpstreamPolicy};
use crate::reconcile::api_writes::ApiWrites;
use crate::reconcile::{self, Context};
use crate::runtime::provider_status;
use crate::runtime::server::Readiness;
use crate::scheduling::calendar::Calendar;
use crate::scheduling::first_tokens::FirstTokens;

/// What the controllers share, built once by the caller.
#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    pub providers: Arc<Providers>,
    pub policy: Arc<UpstreamPolicy>,
    pub metrics: Arc<Metrics>,
    pub api_writes: Arc<ApiWrites>,
    pub reporter: Reporter,
    /// One calendar for every namespace: the provider sees the sum.
    pub calendar: Arc<Calendar>,
    /// The objects of every namespace still waiting for a first token.
    pub first_tokens: Arc<FirstTokens>,
    /// The namespace the operator runs in: where ClusterConsentProviders keep credentials by
    /// default.
    pub operator_namespace: String,
}

/// Every credentials watch publishes here; every controller listens, because a ClusterConsentProvider's
/// Secret in one namespace serves ConsentTokens in others.
type SecretChanges = broadcast::Sender<SecretChange>;

/// What one controller leaves for the others and for the provider status writer.
struct Scope {
    run: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    listed: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Its ConsentTokens by credentials source (the provider status counts users in it).
    index: Arc<CredentialsIndex>,
    catalog: Catalog,
}

/// Runs the controllers until `shutdown` resolves; reconciles under way are finished first.
/// `readiness` turns ready once every watch has listed its objects.
pub async fn run(
    shared: Shared,
    args: &ControllerArgs,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.shared();
    let namespaces = args.watched_namespaces();
    let credentials_namespaces = (!namespaces.is_empty()).then(|| {
        let mut watched: BTreeSet<String> = namespaces.iter().cloned().collect();
        watched.insert(shared.operator_namespace.clone());
        Arc::new(watched)
    });
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.iter().cloned().map(Some).collect() };
    tracing::info!(namespaces = ?scopes, concurrency = args.concurrency, "starting controllers");

    let (changes, _) = broadcast::channel(4096);
    let (all_listed_tx, all_listed) = watch::channel(false);
    let common = Common {
        credentials: Arc::new(CredentialsCache::default()),
        credential_changes: Arc::new(CredentialChanges::default()),
        credentials_namespaces,
        changes: changes.clone(),
        secret_names: Arc::new(SecretNames::default()),
    };
    let mut runs = Vec::new();
    let mut listed = Vec::new();
    let mut views = Vec::new();
    for scope in &scopes {
        let built = controller_for(&shared, &common, args, scope.as_deref(), shutdown.clone());
        runs.push(built.run);
        listed.push(built.listed);
        views.push((built.catalog, built.index));
    }
    // The credentials watches start once every ConsentToken and provider is listed, so the first
    // sight of each Secret is matched against complete knowledge (and rotations while the
    // operator was down are caught).
    let mut watched_for_credentials = scopes.clone();
    if !namespaces.is_empty() && !namespaces.contains(&shared.operator_namespace) {
        watched_for_credentials.push(Some(shared.operator_namespace.clone()));
    }
    for scope in watched_for_credentials {
        let watch = credentials_watch(
            &shared.client,
            scope,
            common.credentials.clone(),
            common.secret_names.clone(),
            changes.clone(),
        );
        let mut ready = all_listed.clone();
        let watch = async move {
            let _ = ready.wait_for(|listed| *listed).await.map(drop);
            watch.await;
        };
        runs.push(Box::pin(until(shutdown.clone(), watch)));
    }
    let status_writer = provider_status::Writer {
        client: shared.client.clone(),
        providers: shared.providers.clone(),
        policy: shared.policy.clone(),
        credentials: common.credentials.clone(),
        views,
        operator_namespace: shared.operator_namespace.clone(),
        changes: changes.subscribe(),
    };
    runs.push(Box::pin(until(shutdown.clone(), status_writer.run(all_listed.clone()))));
    tokio::spawn(async move {
        futures::future::join_all(listed).await;
        all_listed_tx.send_replace(true);
        readiness.set_watches_synced();
        tracing::info!("caches synced");
    });
    futures::future::join_all(runs).await;
}

/// Runs `work` until `shutdown`.
async fn until(shutdown: impl Future<Output = ()>, work: impl Future<Output = ()>) {
    tokio::select! {
        () = shutdown => {}
        () = work => {}
    }
}

/// Made once, used by every controller.
struct Common {
    credentials: Arc<CredentialsCache>,
    credential_changes: Arc<CredentialChanges>,
    credentials_namespaces: Option<Arc<BTreeSet<String>>>,
    changes: SecretChanges,
    secret_names: Arc<SecretNames>,
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

/// A flag that turns true when a watch has listed everything, and a future that waits for it.
// Readiness comes from each watch's own InitDone, not from `Store::wait_until_ready`: that
// future keeps only the last waiter's waker (kube-runtime 5's DelayedInit over a oneshot), so
// awaiting it next to the controller's own wait can leave one of them asleep forever.
fn listed_flag() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

fn mark_listed<K>(flag: watch::Sender<bool>) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            flag.send_replace(true);
        }
    }
}

async fn all_true(flags: Vec<watch::Receiver<bool>>) {
    for mut flag in flags {
        let _ = flag.wait_for(|listed| *listed).await.map(drop);
    }
}

fn controller_for<S>(
    shared: &Shared,
    common: &Common,
    args: &ControllerArgs,
    namespace: Option<&str>,
    shutdown: S,
) -> Scope
where
    S: Future<Output = ()> + Send + Sync + Clone + 'static,
{
    let consent_tokens: Api<ConsentToken> = api(&shared.client, namespace);
    let secrets: Api<Secret> = api(&shared.client, namespace);
    let (secrets_listed_tx, secrets_listed) = listed_flag();
    let (tokens_listed_tx, tokens_listed) = listed_flag();
    let (providers_listed_tx, providers_listed) = listed_flag();
    let (cluster_listed_tx, cluster_listed) = listed_flag();
    let (namespaces_listed_tx, namespaces_listed) = listed_flag();

    let owned_store = Arc::new(OwnedSecrets::default());
    let caching = owned_store.clone();
    let owned_secrets = watcher(secrets, watcher::Config::default().labels(MANAGED_SELECTOR))
        .backoff(WatchBackoff::default())
        .inspect(move |event| {
            if let Ok(event) = event {
                caching.apply(event);
            }
        })
        // Downstream only the owner reference is read: no token goes further.
        .modify(|secret| secret.data = None)
        .inspect(mark_listed(secrets_listed_tx))
        .touched_objects();

    let (provider_store, provider_writer) = reflector::store::<ConsentProvider>();
    let provider_events = watcher(api::<ConsentProvider>(&shared.client, namespace), watcher::Config::default())
        .backoff(WatchBackoff::default())
        .modify(|p| p.metadata.managed_fields = None)
        .reflect(provider_writer)
        .inspect(mark_listed(providers_listed_tx));
    let (cluster_store, cluster_writer) = reflector::store::<ClusterConsentProvider>();
    let cluster_events = watcher(Api::<ClusterConsentProvider>::all(shared.client.clone()), watcher::Config::default())
        .backoff(WatchBackoff::default())
        .modify(|p| p.metadata.managed_fields = None)
        .reflect(cluster_writer)
        .inspect(mark_listed(cluster_listed_tx));
    let (namespace_store, namespace_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let namespace_config = match namespace {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let namespace_events = watcher(Api::<PartialObjectMeta<Namespace>>::all(shared.client.clone()), namespace_config)
        .backoff(WatchBackoff::default())
        .modify(|n| {
            n.metadata.managed_fields = None;
            n.metadata.annotations = None;
        })
        .reflect(namespace_writer)
        .inspect(mark_listed(namespaces_listed_tx))
        .touched_objects();

    let catalog = Catalog {
        providers: provider_store,
        cluster_providers: cluster_store,
        namespaces: namespace_store,
        operator_namespace: shared.operator_namespace.clone(),
    };
    let (caches_listed_tx, caches_listed) = watch::channel(false);
    let context_flags =
        vec![secrets_listed.clone(), providers_listed.clone(), cluster_listed.clone(), namespaces_listed.clone()];
    tokio::spawn(async move {
        all_true(context_flags).await;
        caches_listed_tx.send_replace(true);
    });

    let context = Arc::new(Context {
        client: shared.client.clone(),
        providers: shared.providers.clone(),
        policy: shared.policy.clone(),
        owned_secrets: owned_store,
        caches_listed,
        catalog: catalog.clone(),
        credentials_namespaces: common.credentials_namespaces.clone(),
        credentials: common.credentials.clone(),
        credential_changes: common.credential_changes.clone(),
        secret_names: common.secret_names.clone(),
        calendar: shared.calendar.clone(),
        first_tokens: shared.first_tokens.clone(),
        reporter: shared.reporter.clone(),
        metrics: shared.metrics.clone(),
        api_writes: shared.api_writes.clone(),
        status_memory: Default::default(),
        unwritten: Default::default(),
        overdue_spread: args.overdue_spread,
        min_token_lifetime: args.min_token_lifetime,
    });

    let queue = Arc::new(WorkQueue::new(shared.metrics.reconciles_queued.clone()));
    let index = Arc::new(CredentialsIndex::default());
    // The ConsentToken watch feeds the queue's cache; a new object, or a new spec or annotation,
    // queues it. The objects cached when a (re)list began and missing from its result were
    // deleted while the watch was disconnected: their records go as a deletion's would.
    let tokens = {
        let (queue, index, context) = (queue.clone(), index.clone(), context.clone());
        let first_tokens = shared.first_tokens.clone();
        watcher(consent_tokens, watcher::Config::default())
            .backoff(WatchBackoff::default())
            .modify(slim_consent_token)
            .for_each(move |event| {
                match event {
                    Ok(watcher::Event::Apply(ct) | watcher::Event::InitApply(ct)) => {
                        index.insert(&ct);
                        let uid = ct.uid().unwrap_or_default();
                        first_tokens.observe(&uid, ct.status.is_none(), jiff::Timestamp::now());
                        queue.apply(ct);
                    }
                    Ok(watcher::Event::Delete(ct)) => {
                        index.remove(&ct);
                        queue.remove(ObjectId::of(&ct.uid().unwrap_or_default()));
                        forget_object(&context, &ct);
                    }
                    Ok(watcher::Event::Init) => queue.relist_started(),
                    Ok(watcher::Event::InitDone) => {
                        for ct in queue.relist_done() {
                            tracing::debug!(
                                namespace = ct.namespace(),
                                name = ct.name_any(),
                                "deleted while the watch was away"
                            );
                            index.remove(&ct);
                            forget_object(&context, &ct);
                        }
                        tokens_listed_tx.send_replace(true);
                    }
                    Err(err) => tracing::warn!(error = %err, "ConsentToken watch failed; retrying with backoff"),
                }
                async {}
            })
    };

    // Whatever else a ConsentToken depends on wakes it.
    let owned_secrets = {
        let queue = queue.clone();
        owned_secrets.for_each(move |secret| {
            match secret {
                Ok(secret) => {
                    for owner in secret.owner_references() {
                        if owner.kind == "ConsentToken" && owner.api_version.starts_with("consent.dev/") {
                            queue.wake(ObjectId::of(&owner.uid));
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "Secret watch failed; retrying with backoff"),
            }
            async {}
        })
    };
    let by_provider = {
        let (queue, index) = (queue.clone(), index.clone());
        wake_users(spec_changes(provider_events), queue, move |p: ConsentProvider| {
            index.users_of_provider(ProviderKey::Namespaced {
                namespace: p.namespace().unwrap_or_default(),
                name: p.name_any(),
            })
        })
    };
    let by_cluster_provider = {
        let (queue, index) = (queue.clone(), index.clone());
        wake_users(spec_changes(cluster_events), queue, move |p: ClusterConsentProvider| {
            index.users_of_provider(ProviderKey::Cluster { name: p.name_any() })
        })
    };
    let by_namespace = {
        let queue_of = queue.clone();
        wake_users(namespace_events, queue.clone(), move |n: PartialObjectMeta<Namespace>| {
            let name = n.name_any();
            queue_of
                .objects()
                .into_iter()
                .filter(|ct| ct.namespace().as_deref() == Some(name.as_str()))
                .filter(|ct| {
                    ct.spec.provider_ref.as_ref().is_some_and(|r| r.kind == ProviderRefKind::ClusterConsentProvider)
                })
                .map(|ct| ObjectId::of(&ct.uid().unwrap_or_default()))
                .collect::<Vec<_>>()
        })
    };
    let credential_users = {
        let (queue, catalog, changes) = (queue.clone(), catalog.clone(), common.credential_changes.clone());
        let index = index.clone();
        secret_changes(common.changes.subscribe()).for_each(move |change| {
            for object in users_of(&queue, &index, &catalog, &changes, change.as_ref()) {
                queue.wake(object);
            }
            async {}
        })
    };
    let triggers = async move {
        futures::join!(tokens, owned_secrets, by_provider, by_cluster_provider, by_namespace, credential_users);
    };

    // Workers start once the ConsentTokens are listed (as kube-runtime's controller did), each
    // taking the next object due, and stop taking new ones at shutdown.
    let workers = {
        let (queue, shutdown) = (queue.clone(), shutdown.clone());
        let concurrency = args.concurrency.max(1);
        let mut tokens_listed = tokens_listed.clone();
        async move {
            tokio::select! {
                _ = tokens_listed.wait_for(|listed| *listed) => {}
                () = shutdown.clone() => return,
            }
            let workers = (0..concurrency).map(|_| worker(queue.clone(), context.clone(), shutdown.clone()));
            futures::future::join_all(workers).await;
        }
    };
    let timers = {
        let queue = queue.clone();
        async move { queue.run_timers().await }
    };

    let listed = all_true(vec![tokens_listed, secrets_listed, providers_listed, cluster_listed, namespaces_listed]);
    let run = async move {
        futures::join!(until(shutdown.clone(), triggers), until(shutdown.clone(), timers), workers);
    };
    Scope { run: Box::pin(run), listed: Box::pin(listed), index, catalog }
}

/// Takes objects from the queue and reconciles them until `shutdown`; a reconcile under way is
/// finished first.
async fn worker(queue: Arc<WorkQueue>, context: Arc<Context>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (id, ct) = tokio::select! {
            biased;
            () = &mut shutdown => return,
            next = queue.next() => next,
        };
        let after = reconcile::reconcile(&ct, &context).await;
        queue.done(id, after);
    }
}

/// Wakes the ConsentTokens `users` names for each object of a watch.
async fn wake_users<K>(
    events: impl Stream<Item = Result<K, watcher::Error>> + Send,
    queue: Arc<WorkQueue>,
    users: impl Fn(K) -> Vec<ObjectId> + Send,
) {
    events
        .for_each(|object| {
            match object {
                Ok(object) => {
                    for user in users(object) {
                        queue.wake(user);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "watch failed; retrying with backoff"),
            }
            async {}
        })
        .await;
}

/// Forgets a deleted ConsentToken: its metric series (or they would raise a false expiry alert),
/// its last written status and its place in the calendar.
fn forget_object(context: &Context, ct: &ConsentToken) {
    let uid = ct.uid().unwrap_or_default();
    context.metrics.forget(&ct.namespace().unwrap_or_default(), &ct.name_any());
    context.status_memory.forget(&uid);
    context.unwritten.forget(&uid);
    context.calendar.forget(&uid);
    context.first_tokens.forget(&uid);
}

/// Drops from a ConsentToken, before it is cached (as text: `cached_token`), what no reconcile
/// reads: the field managers, its labels, its resource version and a client-side `kubectl
/// apply`'s copy of the whole object. (Other annotations stay: a change to any annotation makes
/// the operator look again.) `lifecycle::a_cached_object_has_every_field_the_reconcile_reads`
/// shows that what remains is all a reconcile needs.
pub fn slim_consent_token(ct: &mut ConsentToken) {
    ct.metadata.managed_fields = None;
    ct.metadata.labels = None;
    ct.metadata.resource_version = None;
    if let Some(annotations) = ct.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Watches the metadata of the Secrets in `namespace` (`None`: all) and publishes each change
/// to a Secret that is not one of ours; keeps the credentials cache in step.
fn credentials_watch(
    client: &Client,
    namespace: Option<String>,
    cache: Arc<CredentialsCache>,
    names: Arc<SecretNames>,
    changes: SecretChanges,
) -> impl Future<Output = ()> + Send + use<> {
    let secret_metadata: Api<PartialObjectMeta<Secret>> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    tracing::debug!(namespace = ?namespace, "watching credentials Secrets");
    // Our own Secrets are left out by the API server: each write of a token would otherwise be
    // sent (and encoded) a second time, for nothing. A Secret that gains our label leaves this
    // watch as a deletion, one that loses it enters as an addition.
    let not_ours = watcher::Config::default().labels(NOT_MANAGED_SELECTOR);
    watcher(secret_metadata, not_ours).backoff(WatchBackoff::default()).for_each(move |event| {
        let publish = |secret: &PartialObjectMeta<Secret>, version: Option<String>| {
            let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
            match version {
                Some(_) => names.add(&namespace, &name),
                None => names.remove(&namespace, &name),
            }
            cache.observe(&namespace, &name, version.as_deref());
            // Nobody listening (no controller yet, or shutting down) is not an error.
            let _ = changes.send(SecretChange { namespace, name, version });
        };
        match &event {
            Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => {
                publish(secret, secret.resource_version());
            }
            Ok(watcher::Event::Delete(secret)) => publish(secret, None),
            Ok(watcher::Event::Init) => {
                cache.clear(namespace.as_deref());
                names.relisting(namespace.as_deref());
            }
            Ok(watcher::Event::InitDone) => names.listed(namespace.as_deref()),
            Err(err) => tracing::warn!(error = %err, "credentials watch failed; retrying with backoff"),
        }
        async {}
    })
}

/// The changes published to one controller. `None`: some were missed (the controller fell
/// behind), so every ConsentToken with credentials is looked at again.
fn secret_changes(receiver: broadcast::Receiver<SecretChange>) -> impl Stream<Item = Option<SecretChange>> + Send {
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

/// The ConsentTokens that use the changed Secret as credentials (directly or through their
/// provider object) and did not get their token from this version of it. Each is marked so its
/// next reconcile fetches with the new credentials. The index names the candidates; each is
/// checked against its cached object.
fn users_of(
    tokens: &WorkQueue,
    index: &CredentialsIndex,
    catalog: &Catalog,
    changes: &CredentialChanges,
    change: Option<&SecretChange>,
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
            if let Some(SecretChange { version: Some(version), .. }) = change {
                changes.record(object, version.clone());
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
