//! Wiring: which watches trigger a reconcile, and what is cached.
//!
//! - ConsentTokens: cached (the controller needs them); a reconcile runs when the spec
//!   (generation) or the annotations change, never for the operator's own status writes.
//! - Secrets the operator manages (label-selected): cached without their tokens (each value is
//!   replaced by its fingerprint, see `target_secret::summarize`) and without managed fields;
//!   any change to one (an edit, a deletion) reconciles its owner, which puts it back.
//! - All other Secrets: watched metadata-only and not cached, so the operator's memory does not
//!   grow with the cluster's Secrets. A change to a Secret some ConsentToken uses as credentials
//!   refreshes that ConsentToken at once.
//!
//! With a list of namespaces, one controller runs per namespace, each with namespaced watches,
//! so the operator needs Roles in those namespaces only.

use std::future::Future;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::{Controller, WatchStreamExt, controller, predicates, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api_writes::ApiWrites;
use crate::calendar::Calendar;
use crate::config::ControllerArgs;
use crate::crd::ConsentToken;
use crate::credentials::{CredentialChanges, CredentialsCache};
use crate::metrics::Metrics;
use crate::provider::{Providers, UpstreamPolicy};
use crate::reconcile::{self, Context};
use crate::server::Readiness;
use crate::target_secret::{self, MANAGED_BY, MANAGED_BY_LABEL, MANAGED_SELECTOR};

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
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.into_iter().map(Some).collect() };
    tracing::info!(namespaces = ?scopes, concurrency = args.concurrency, "starting controllers");
    let mut controllers = Vec::new();
    let mut stores_ready = Vec::new();
    for scope in scopes {
        let (controller, ready) = controller_for(&shared, args, scope.as_deref(), shutdown.clone());
        controllers.push(controller);
        stores_ready.push(ready);
    }
    tokio::spawn(async move {
        futures::future::join_all(stores_ready).await;
        readiness.set_watches_synced();
        tracing::info!("caches synced");
    });
    futures::future::join_all(controllers).await;
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

fn controller_for<S>(
    shared: &Shared,
    args: &ControllerArgs,
    namespace: Option<&str>,
    shutdown: S,
) -> (impl Future<Output = ()> + use<S>, impl Future<Output = ()> + use<S>)
where
    S: Future<Output = ()> + Send + Sync + 'static,
{
    let consent_tokens: Api<ConsentToken> = api(&shared.client, namespace);
    let secrets: Api<Secret> = api(&shared.client, namespace);
    // Readiness comes from each watch's own InitDone, not from `Store::wait_until_ready`: that
    // future keeps only the last waiter's waker (kube-runtime 5's DelayedInit over a oneshot),
    // so awaiting it next to the controller's own wait can leave one of them asleep forever.
    let (secrets_listed_tx, secrets_listed) = tokio::sync::watch::channel(false);
    let (tokens_listed_tx, tokens_listed) = tokio::sync::watch::channel(false);

    let (owned_store, owned_writer) = reflector::store::<Secret>();
    let owned_secrets = watcher(secrets.clone(), watcher::Config::default().labels(MANAGED_SELECTOR))
        .default_backoff()
        .modify(target_secret::summarize)
        .reflect(owned_writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                secrets_listed_tx.send_replace(true);
            }
        })
        .touched_objects();

    let context = Arc::new(Context {
        client: shared.client.clone(),
        providers: shared.providers.clone(),
        policy: shared.policy.clone(),
        owned_secrets: owned_store.clone(),
        owned_secrets_listed: secrets_listed.clone(),
        credentials: CredentialsCache::default(),
        credential_changes: Arc::new(CredentialChanges::default()),
        calendar: shared.calendar.clone(),
        reporter: shared.reporter.clone(),
        metrics: shared.metrics.clone(),
        api_writes: shared.api_writes.clone(),
        status_memory: Default::default(),
        overdue_spread: args.overdue_spread,
        min_token_lifetime: args.min_token_lifetime,
    });

    let (token_store, token_writer) = reflector::store::<ConsentToken>();
    let forget = context.clone();
    let tokens = watcher(consent_tokens, watcher::Config::default())
        .default_backoff()
        .modify(slim_consent_token)
        .reflect(token_writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::Delete(ct)) => {
                let uid = ct.uid().unwrap_or_default();
                forget.metrics.forget(&ct.namespace().unwrap_or_default(), &ct.name_any());
                forget.status_memory.forget(&uid);
                forget.calendar.forget(&uid);
            }
            Ok(watcher::Event::InitDone) => {
                tokens_listed_tx.send_replace(true);
            }
            _ => {}
        })
        .applied_objects()
        .predicate_filter(predicates::generation.combine(predicates::annotations), Default::default());

    // Started only once the ConsentTokens are listed, so the first sight of every credentials
    // Secret is matched against complete knowledge (and rotations while the operator was
    // down are caught).
    let secret_metadata: Api<PartialObjectMeta<Secret>> = match namespace {
        Some(ns) => Api::namespaced(shared.client.clone(), ns),
        None => Api::all(shared.client.clone()),
    };
    let mut listed = tokens_listed.clone();
    let cache = context.clone();
    let credential_secrets = futures::stream::once(async move {
        let _ = listed.wait_for(|listed| *listed).await.map(drop);
        tracing::debug!("ConsentTokens listed; watching credentials Secrets");
        watcher(secret_metadata, watcher::Config::default())
            .default_backoff()
            .inspect(move |event| match event {
                Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => {
                    let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                    cache.credentials.observe(&namespace, &name, secret.resource_version().as_deref());
                }
                Ok(watcher::Event::Delete(secret)) => {
                    cache.credentials.observe(&secret.namespace().unwrap_or_default(), &secret.name_any(), None);
                }
                Ok(watcher::Event::Init) => cache.credentials.clear(),
                _ => {}
            })
            .touched_objects()
    })
    .flatten();
    let users = token_store.clone();
    let changes = context.credential_changes.clone();
    let credentials_to_tokens = move |secret: PartialObjectMeta<Secret>| users_of(&users, &changes, &secret);

    let ready = {
        let (mut a, mut b) = (tokens_listed, secrets_listed);
        async move {
            let _ = a.wait_for(|listed| *listed).await.map(drop);
            let _ = b.wait_for(|listed| *listed).await.map(drop);
        }
    };
    let run = Controller::for_stream(tokens, token_store)
        .owns_stream(owned_secrets)
        .watches_stream(credential_secrets, credentials_to_tokens)
        .with_config(controller::Config::default().concurrency(args.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            match result {
                // Reported by `reconcile::error_policy` already.
                Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                // A trigger for an object deleted meanwhile: nothing to do.
                Err(controller::Error::ObjectNotFound(_)) => {}
                Err(err) => tracing::warn!(error = %err, "watch failed; retrying with backoff"),
            }
        });
    (run, ready)
}

/// Drops from a cached ConsentToken what no reconcile reads: the field managers and a client-side
/// `kubectl apply`'s copy of the whole object.
fn slim_consent_token(ct: &mut ConsentToken) {
    ct.metadata.managed_fields = None;
    if let Some(annotations) = ct.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The ConsentTokens that use `secret` as credentials and did not get their token from this
/// version of it. Each is marked so its next reconcile fetches with the new credentials.
fn users_of(
    tokens: &Store<ConsentToken>,
    changes: &CredentialChanges,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<ConsentToken>> {
    tracing::trace!(namespace = secret.namespace(), secret = secret.name_any(), "secret metadata event");
    if secret.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY) {
        return Vec::new(); // a target Secret, not credentials
    }
    let namespace = secret.namespace();
    let name = secret.name_any();
    let version = secret.resource_version().unwrap_or_default();
    let users: Vec<_> = tokens
        .state()
        .into_iter()
        .filter(|ct| {
            ct.namespace() == namespace && ct.spec.provider().is_some_and(|p| p.credentials_secret_ref().name == name)
        })
        .filter(|ct| ct.status.as_ref().and_then(|s| s.credentials_version.as_deref()) != Some(version.as_str()))
        .map(|ct| {
            let object = ObjectRef::from_obj(&*ct);
            changes.record(object.clone(), version.clone());
            object
        })
        .collect();
    if !users.is_empty() {
        tracing::debug!(namespace, secret = name, users = users.len(), "credentials Secret changed");
    }
    users
}
