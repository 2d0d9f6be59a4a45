//! What a reconcile works with, in parts named by role. The runtime builds the parts shared by
//! every namespace's controller once ([`Kube`], [`Upstream`], [`Scheduling`], the metrics) and a
//! [`Caches`] and [`ObjectRecords`] per controller.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::Reporter;
use kube::{Client, ResourceExt};

use crate::api::crd::ConsentToken;
use crate::basics::object_id::ObjectId;
use crate::basics::watch_cache::WatchCache;
use crate::cache::owned_secrets::OwnedSecrets;
use crate::cache::secret_names::SecretNames;
use crate::cache::work_queue::WorkQueue;
use crate::observability::metrics::Metrics;
use crate::provider::credentials::{CredentialsCache, PendingRotations};
use crate::provider::lookup::Catalog;
use crate::provider::namespace_slots::NamespaceSlots;
use crate::provider::{Providers, UpstreamPolicy};
use crate::reconcile::api_writes::ApiWrites;
use crate::reconcile::memory::StatusMemory;
use crate::reconcile::target_waiters::TargetWaiters;
use crate::reconcile::unwritten::UnwrittenTokens;
use crate::scheduling::calendar::Calendar;
use crate::scheduling::first_tokens::FirstTokens;

/// What every reconcile of one controller works with.
pub struct Context {
    pub kube: Kube,
    pub upstream: Upstream,
    pub caches: Caches,
    pub scheduling: Scheduling,
    pub records: ObjectRecords,
    pub metrics: Arc<Metrics>,
}

/// Talking to the Kubernetes API: the client, the write budget every write waits for, and who
/// the Events are from. One for the process.
#[derive(Clone)]
pub struct Kube {
    pub client: Client,
    pub api_writes: Arc<ApiWrites>,
    pub reporter: Reporter,
}

/// Talking to the providers: their clients, where credentials may go, the credentials read so
/// far, the credentials rotations not yet fetched with, and each namespace's share of requests
/// under way. One for the process.
#[derive(Clone)]
pub struct Upstream {
    pub providers: Arc<Providers>,
    pub policy: Arc<UpstreamPolicy>,
    pub credentials: Arc<CredentialsCache>,
    pub pending_rotations: Arc<PendingRotations>,
    pub namespace_slots: Arc<NamespaceSlots>,
}

/// Planning refreshes: one calendar and one count of first tokens for every namespace (the
/// provider sees the sum), and the flags that shape the plans.
#[derive(Clone)]
pub struct Scheduling {
    pub calendar: Arc<Calendar>,
    /// The objects still waiting for a first token (a first renewal is not planned among them).
    pub first_tokens: Arc<FirstTokens>,
    /// Longest deferral of an overdue token after a start (see
    /// [`crate::scheduling::schedule::overdue_window`]).
    pub overdue_spread: Duration,
    /// Shorter-lived tokens are not written (see `fetch::worth_writing`).
    pub min_token_lifetime: Duration,
    /// A refresh request sooner than this after the last attempt waits (see `decide`).
    pub min_refresh_request_interval: Duration,
}

/// What one controller's watches keep, as a reconcile reads it.
pub struct Caches {
    /// The Secrets this operator manages (label-selected), as summaries.
    pub owned_secrets: Arc<OwnedSecrets>,
    /// Shared provider objects and namespace labels.
    pub catalog: Catalog,
    /// Names of Secrets that are not ours, to create a new target Secret without a read first.
    pub secret_names: Arc<SecretNames>,
    /// Every watched ConsentToken (the work queue is their cache): a Secret of ours whose
    /// controller is not among them belongs to a deleted one.
    pub tokens: Arc<WorkQueue>,
    /// Turns true once `owned_secrets` has listed every managed Secret and `catalog` every
    /// provider and namespace: from then on, what is missing from them is missing from the
    /// cluster (or, for a Secret, not labelled as ours).
    pub listed: tokio::sync::watch::Receiver<bool>,
    /// Namespaces whose credentials Secrets are watched; `None`: all.
    pub credentials_namespaces: Option<Arc<BTreeSet<String>>>,
}

/// What the reconciles remember of each object between reconciles, beyond the caches.
#[derive(Default)]
pub struct ObjectRecords {
    /// The status last written (the watch may not have delivered it yet).
    pub status_memory: StatusMemory,
    /// Tokens fetched whose write failed, for the next attempt.
    pub unwritten: UnwrittenTokens,
    /// Objects waiting for a target name another's Secret holds (shared with the Secret watch).
    pub target_waiters: Arc<TargetWaiters>,
}

/// Fed by the ConsentToken watch: a deleted ConsentToken's records go with it, its metric
/// series first (or they would raise a false expiry alert), its last written status, a token
/// not yet written and its place in the calendar.
impl Context {
    /// Forgets what this replica holds of a deleted ConsentToken: its metric series, its last
    /// written status, a token kept for it, its place in the calendar and its wait for a target
    /// name. (Those that waited for its own target name are woken by `WakeWaiters`, after the
    /// work queue has dropped it.)
    pub fn forget(&self, ct: &ConsentToken) {
        let uid = ct.uid().unwrap_or_default();
        self.metrics.forget(&ct.namespace().unwrap_or_default(), &ct.name_any());
        self.records.status_memory.forget(&uid);
        self.records.unwritten.forget(&uid);
        self.scheduling.calendar.forget(&uid);
        let (namespace, target) = (ct.namespace().unwrap_or_default(), ct.target_secret_name());
        self.records.target_waiters.stop_waiting(&namespace, &target, ObjectId::of(&uid));
    }
}

impl WatchCache<ConsentToken> for Context {
    fn apply(&self, _: &ConsentToken) {}
    fn delete(&self, ct: &ConsentToken) {
        tracing::debug!(namespace = ct.namespace(), name = ct.name_any(), "deleted; its records forgotten");
        self.forget(ct);
    }
}
