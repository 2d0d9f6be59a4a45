//! Wiring: which watches trigger a reconcile, and what is cached.
//!
//! - ConsentTokens: cached in the [`WorkQueue`], which also says when each is next reconciled
//!   (namespaces take turns, first come, first served within each, by `--concurrency`
//!   workers); a reconcile runs when the spec
//!   (generation) or the annotations change, never for the operator's own status writes, and
//!   when its timer comes due. The same watch keeps the credentials index, the count of first
//!   tokens and the reconcile's per-object records.
//! - Secrets the operator manages (label-selected): cached as summaries without their tokens
//!   ([`crate::cache::owned_secrets`]); any change to one (an edit, a deletion) reconciles its
//!   owner, which puts it back.
//! - ConsentProviders, ClusterConsentProviders and Namespace labels (metadata only): cached, few
//!   and small; a change to one reconciles the ConsentTokens that name it (or, for a
//!   namespace, that use a cluster provider from it).
//! - All other Secrets: watched metadata-only and not cached (a hash of each name is kept, see
//!   [`SecretNames`]), so the operator's memory barely grows with the cluster's Secrets. A
//!   change to a Secret some ConsentToken uses as credentials (directly or through its provider
//!   object, in any namespace) refreshes that ConsentToken at once: every credentials watch
//!   publishes its changes to every controller ([`CredentialsChangeFeed`]).
//!
//! Every watch feeds its caches through one protocol ([`crate::basics::watch_cache`]) and runs
//! as a named task ([`watches`]). With a list of namespaces, one controller runs per namespace
//! ([`namespace`]), each with namespaced watches, so the operator needs Roles in those
//! namespaces only (and read access to ClusterConsentProviders and Namespaces).

mod listed;
mod namespace;
mod watches;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{broadcast, mpsc, watch};

use crate::api::annotations::NOT_MANAGED_SELECTOR;
use crate::basics::object_id::ObjectId;
use crate::basics::watch_cache::WatchCache;
use crate::cache::secret_names::SecretNames;
use crate::cache::watch_backoff::WatchBackoff;
use crate::cache::work_queue::{Watched, WorkQueue};
use crate::config::ControllerArgs;
use crate::observability::metrics::Metrics;
use crate::provider::credentials::CredentialsChangeFeed;
use crate::reconcile::context::{Kube, Scheduling, Upstream};
use crate::runtime::leader::Role;
use crate::runtime::provider_status;
use crate::runtime::server::Readiness;
use crate::runtime::undecodable_events;
use watches::WatchName;

/// The parts of the reconcile's context that every namespace's controller shares, built once
/// at start-up.
#[derive(Clone)]
pub struct Shared {
    pub kube: Kube,
    pub upstream: Upstream,
    pub scheduling: Scheduling,
    pub metrics: Arc<Metrics>,
    /// The namespace the operator runs in: where ClusterConsentProviders keep credentials by
    /// default.
    pub operator_namespace: String,
}

/// What the metadata watches of Secrets that are not the operator's keep and publish, for every
/// controller.
#[derive(Clone)]
struct SecretsSeen {
    names: Arc<SecretNames>,
    changes: CredentialsChangeFeed,
    /// Namespaces whose Secrets are watched; `None`: all.
    namespaces: Option<Arc<BTreeSet<String>>>,
}

/// Runs the controllers until `shutdown` resolves; reconciles under way are finished first.
/// The watches and caches run whatever this replica's `role`; reconciles and writes only while
/// it leads. `readiness` turns ready once every watch has listed its objects.
pub async fn run(
    shared: Shared,
    args: &ControllerArgs,
    readiness: Arc<Readiness>,
    role: watch::Receiver<Role>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.shared();
    let namespaces = args.watched_namespaces();
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.iter().cloned().map(Some).collect() };
    tracing::info!(namespaces = ?scopes, concurrency = args.concurrency, "starting controllers");
    // Credentials are watched where the ConsentTokens are, and in the operator's own namespace
    // (ClusterConsentProviders' default).
    let mut credentials_scopes = scopes.clone();
    if !namespaces.is_empty() && !namespaces.contains(&shared.operator_namespace) {
        credentials_scopes.push(Some(shared.operator_namespace.clone()));
    }
    let seen = SecretsSeen {
        names: Arc::new(SecretNames::default()),
        changes: CredentialsChangeFeed(broadcast::channel(4096).0),
        namespaces: (!namespaces.is_empty())
            .then(|| Arc::new(credentials_scopes.iter().flatten().cloned().collect::<BTreeSet<String>>())),
    };

    let (all_listed_tx, all_listed) = watch::channel(false);
    let (undecodable, undecodable_reports) = mpsc::channel(undecodable_events::QUEUE);
    let controllers: Vec<namespace::NamespaceController> = scopes
        .iter()
        .map(|scope| {
            let scoped = namespace::Scoped { namespace: scope.as_deref(), undecodable: &undecodable };
            namespace::controller(&shared, &seen, args, scoped, role.clone(), shutdown.clone())
        })
        .collect();
    drop(undecodable);
    let events = undecodable_events::publish(
        undecodable_reports,
        shared.kube.client.clone(),
        shared.kube.reporter.clone(),
        role.clone(),
    );
    let mut runs: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> = Vec::new();
    runs.push(Box::pin(until(shutdown.clone(), events)));
    let mut listed = Vec::new();
    let mut views = Vec::new();
    for controller in controllers {
        runs.push(controller.run);
        listed.push(controller.listed);
        views.push((controller.catalog, controller.index));
    }
    // The credentials watches start once every ConsentToken and provider is listed, so the first
    // sight of each Secret is matched against complete knowledge (and rotations while the
    // operator was down are caught).
    for scope in credentials_scopes {
        let watch = credentials_watch(&shared.kube.client, scope, &shared, &seen);
        let mut ready = all_listed.clone();
        let watch = async move {
            let _ = ready.wait_for(|listed| *listed).await.map(drop);
            watch.await;
        };
        runs.push(Box::pin(until(shutdown.clone(), watch)));
    }
    let status_writer = provider_status::Writer {
        client: shared.kube.client.clone(),
        providers: shared.upstream.providers.clone(),
        policy: shared.upstream.policy.clone(),
        credentials: shared.upstream.credentials.clone(),
        views,
        changes: seen.changes.0.subscribe(),
        role,
        readiness: shared.metrics.providers.clone(),
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

/// The metadata of the Secrets in `namespace` (`None`: all) that are not ours: the credentials
/// cache, the Secret names and the published changes follow it.
fn credentials_watch(
    client: &Client,
    namespace: Option<String>,
    shared: &Shared,
    seen: &SecretsSeen,
) -> impl Future<Output = ()> + Send + use<> {
    let secret_metadata: Api<PartialObjectMeta<Secret>> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Our own Secrets are left out by the API server: each write of a token would otherwise be
    // sent (and encoded) a second time, for nothing. A Secret that gains our label leaves this
    // watch as a deletion, one that loses it enters as an addition.
    let not_ours = watcher::Config::default().labels(NOT_MANAGED_SELECTOR);
    let events = watcher(secret_metadata, not_ours).backoff(WatchBackoff::default());
    let caches: Vec<Arc<dyn WatchCache<PartialObjectMeta<Secret>>>> =
        vec![seen.names.clone(), shared.upstream.credentials.clone(), Arc::new(seen.changes.clone())];
    watches::feed(WatchName { name: "credentials Secrets", namespace }, events, caches, None)
}

/// Takes objects from the queue and reconciles them until `shutdown`; a reconcile under way is
/// finished first. Dropped (leadership lost), it gives its object back to the queue.
async fn worker(
    queue: Arc<WorkQueue>,
    context: Arc<crate::reconcile::context::Context>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (id, ct) = tokio::select! {
            biased;
            () = &mut shutdown => return,
            next = queue.next() => next,
        };
        let mut in_flight = InFlight { queue: &queue, id: Some(id) };
        let after = crate::reconcile::reconcile(&ct, &context).await;
        in_flight.id = None;
        // The deletion forgot the object's series and status while its reconcile ran, which
        // may have set them again since: a stale expiry series would fire a false alert.
        if queue.done(id, after) == Watched::DeletedMeanwhile {
            tracing::debug!(
                namespace = ct.namespace(),
                name = ct.name_any(),
                "deleted during its reconcile; its records forgotten again"
            );
            context.forget(&ct);
        }
    }
}

/// An object a worker took, until its reconcile finishes.
struct InFlight<'a> {
    queue: &'a WorkQueue,
    id: Option<ObjectId>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.queue.abandon(id);
        }
    }
}
