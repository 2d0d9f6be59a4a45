//! A watch as a named task: its events fed to its caches ([`feed`]), or the objects it touches
//! waking the ConsentTokens that depend on them ([`wake`]). Each task runs in a span that names
//! the watch, and a watch error says which watch failed.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::Instrument;

use crate::api::crd::ConsentToken;
use crate::basics::object_id::ObjectId;
use crate::basics::watch_cache::{WatchCache, deliver};
use crate::cache::work_queue::WorkQueue;
use crate::reconcile::target_waiters::TargetWaiters;

/// Which watch: what it watches, and where (`None`: all namespaces).
#[derive(Clone)]
pub struct WatchName {
    pub name: &'static str,
    pub namespace: Option<String>,
}

impl WatchName {
    fn span(&self) -> tracing::Span {
        tracing::info_span!("watch", watch = self.name, namespace = self.namespace.as_deref().unwrap_or("*"))
    }
}

/// Feeds every event of `events` to `caches`, in order, and sets `listed` once the first list is
/// complete.
pub async fn feed<K: Send + Sync + 'static>(
    watch: WatchName,
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    caches: Vec<Arc<dyn WatchCache<K>>>,
    listed: Option<watch::Sender<bool>>,
) {
    let (name, scope, span) = (watch.name, watch.namespace.clone(), watch.span());
    let run = async move {
        let caches: Vec<&dyn WatchCache<K>> = caches.iter().map(|cache| cache.as_ref()).collect();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    deliver(&caches, scope.as_deref(), &event);
                    if let (watcher::Event::InitDone, Some(listed)) = (&event, &listed) {
                        listed.send_replace(true);
                    }
                }
                Err(err) => tracing::warn!(watch = name, error = %err, "watch failed; retrying with backoff"),
            }
        }
    };
    run.instrument(span).await;
}

/// Wakes the ConsentTokens `users` names for each object `objects` touches.
pub async fn wake<K>(
    watch: WatchName,
    objects: impl Stream<Item = Result<K, watcher::Error>> + Send,
    queue: Arc<WorkQueue>,
    users: impl Fn(K) -> Vec<ObjectId> + Send,
) {
    let name = watch.name;
    let run = objects.for_each(move |object| {
        match object {
            Ok(object) => users(object).into_iter().for_each(|user| queue.wake(user)),
            Err(err) => tracing::warn!(watch = name, error = %err, "watch failed; retrying with backoff"),
        }
        async {}
    });
    run.instrument(watch.span()).await;
}

/// Wakes the ConsentToken that controls a Secret of ours when the Secret changes or goes: its
/// reconcile puts it back. A Secret that goes also wakes the ConsentTokens that wait for its
/// name (see `TargetWaiters`): one may take it now.
pub struct WakeOwner {
    pub queue: Arc<WorkQueue>,
    pub waiters: Arc<TargetWaiters>,
}

impl WakeOwner {
    fn wake(&self, secret: &Secret) {
        for owner in secret.owner_references() {
            if owner.kind == "ConsentToken" && owner.api_version.starts_with("consent.dev/") {
                self.queue.wake(ObjectId::of(&owner.uid));
            }
        }
    }
}

/// Wakes the ConsentTokens that wait for a deleted ConsentToken's target name: they may take
/// the Secret it leaves (see `secret::left_by_a_deleted_consent_token`) without waiting for the
/// garbage collector. After the work queue among the watch's caches, so that a woken object's
/// reconcile no longer finds the deleted one among the watched.
pub struct WakeWaiters {
    pub queue: Arc<WorkQueue>,
    pub waiters: Arc<TargetWaiters>,
}

impl WatchCache<ConsentToken> for WakeWaiters {
    fn apply(&self, _: &ConsentToken) {}
    fn delete(&self, ct: &ConsentToken) {
        for waiting in self.waiters.freed(&ct.namespace().unwrap_or_default(), &ct.target_secret_name()) {
            self.queue.wake(waiting);
        }
    }
}

impl WatchCache<Secret> for WakeOwner {
    fn apply(&self, secret: &Secret) {
        self.wake(secret);
    }
    fn delete(&self, secret: &Secret) {
        self.wake(secret);
        let namespace = secret.namespace().unwrap_or_default();
        for waiting in self.waiters.freed(&namespace, &secret.name_any()) {
            self.queue.wake(waiting);
        }
    }
}
