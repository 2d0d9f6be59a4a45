//! One reconcile of one ConsentToken, as a pipeline:
//!
//! 1. **observe** the target Secret (from the cache of owned Secrets);
//! 2. **decide** whether to fetch a token now, wait, or only repair the Secret (pure: [`decide`]);
//! 3. **fetch** with the credentials from the referenced Secret;
//! 4. **apply** the desired Secret ([`target_secret::desired`]);
//! 5. **report**: status ([`status::desired`]), an Event on Ready transitions, metrics;
//! 6. **requeue** at the next refresh time, or at expiry so Ready turns False on time.
//!
//! A failed fetch never touches the Secret: the last good token stays where pods read it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{GetParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use crate::calendar::Calendar;
use crate::credentials::CredentialsCache;
use crate::crd::{ConsentToken, ConsentTokenStatus};
use crate::error::Error;
use crate::metrics::{FailureLabels, Metrics, ObjectLabels, ProviderLabels};
use crate::provider::{self, Providers};
use crate::schedule::{self, Schedule};
use crate::status;
use crate::target_secret::{self, TokenRecord};

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "consent-token-operator";
/// Annotation users set (to any new value, e.g. a timestamp) to refresh now.
pub const REFRESH_REQUESTED_AT: &str = "consent.dev/refresh-requested-at";
/// A wake-up later than this after its scheduled time was not our own timer (a restart).
const OVERDUE_SLACK: Duration = Duration::from_secs(2);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub providers: Arc<Providers>,
    /// Cache of the Secrets this operator manages (label-selected), fed by the controller's watch.
    pub owned_secrets: Store<Secret>,
    /// Turns true once `owned_secrets` has listed every managed Secret: from then on, a Secret
    /// missing from it is missing from the cluster (or not labelled as ours).
    pub owned_secrets_listed: tokio::sync::watch::Receiver<bool>,
    pub credentials: CredentialsCache,
    pub calendar: Arc<Calendar>,
    /// Who the Events are from.
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub api_writes: Arc<ApiWriteLimiter>,
    pub credential_changes: Arc<CredentialChanges>,
    /// What this process last wrote into each object's status (by uid). The cached object can
    /// lag behind our own status write (the Secret's watch event may arrive first), and a
    /// stale status would make a handled refresh request or spec change look new. Also tells a
    /// first reconcile after a start (no entry) from later ones.
    pub written: Mutex<HashMap<String, Written>>,
    pub overdue_spread: Duration,
}

/// The decision-relevant part of the last status written for an object.
#[derive(Debug, Clone, Default)]
pub struct Written {
    observed_generation: Option<i64>,
    refresh_requested_at: Option<String>,
    consecutive_failures: i32,
    next_refresh_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Ready's (status, reason), so a transition gets exactly one Event.
    ready: Option<(String, String)>,
    /// Hash of the status written, and of the cached status it replaced: a cache still showing
    /// the replaced one is stale, not in disagreement (see [`needs_status_write`]).
    status_hash: u64,
    replaced_hash: u64,
}

impl Written {
    fn of(status: &ConsentTokenStatus, replaced: Option<&ConsentTokenStatus>) -> Self {
        Self {
            status_hash: status_hash(Some(status)),
            replaced_hash: status_hash(replaced),
            observed_generation: status.observed_generation,
            refresh_requested_at: status.refresh_requested_at.clone(),
            consecutive_failures: status.consecutive_failures,
            next_refresh_time: status.next_refresh_time.clone(),
            ready: status::ready_state(Some(status)),
        }
    }

    /// `status` with what we wrote laid over it, where the cached copy is older.
    fn overlay(&self, mut status: ConsentTokenStatus) -> ConsentTokenStatus {
        if status.observed_generation < self.observed_generation {
            status.observed_generation = self.observed_generation;
        }
        status.refresh_requested_at = self.refresh_requested_at.clone();
        status.consecutive_failures = self.consecutive_failures;
        status.next_refresh_time = self.next_refresh_time.clone();
        status
    }
}

fn status_hash(status: Option<&ConsentTokenStatus>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&status).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// Whether the status must be written: it differs from the cached one, unless the cached one
/// is merely stale, still showing what our last write replaced while that write equals `desired`.
pub fn needs_status_write(
    cached: Option<&ConsentTokenStatus>,
    desired: &ConsentTokenStatus,
    written: Option<&Written>,
) -> bool {
    if cached == Some(desired) {
        return false;
    }
    !written.is_some_and(|w| w.status_hash == status_hash(Some(desired)) && w.replaced_hash == status_hash(cached))
}

/// Client-side limit on writes to the API server, shared by all reconciles.
pub type ApiWriteLimiter = governor::DefaultDirectRateLimiter;

/// Credentials Secrets seen to change, per ConsentToken that uses them, until its next reconcile.
#[derive(Default)]
pub struct CredentialChanges(Mutex<HashMap<ObjectRef<ConsentToken>, String>>);

impl CredentialChanges {
    pub fn record(&self, object: ObjectRef<ConsentToken>, version: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(object, version);
    }
    fn take(&self, object: &ObjectRef<ConsentToken>) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(object)
    }
}

/// Why a token is fetched now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    NoToken,
    SpecChanged,
    CredentialsChanged,
    Requested,
    Due,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Fetch(Why),
    /// Keep the current token until then.
    Wait(Timestamp),
}

/// The inputs of [`decide`].
pub struct Situation<'a> {
    pub now: Timestamp,
    pub generation: Option<i64>,
    pub current: Option<&'a TokenRecord>,
    pub previous: &'a ConsentTokenStatus,
    pub refresh_requested_at: Option<&'a str>,
    pub credentials_changed_to: Option<&'a str>,
    pub first_reconcile: bool,
}

/// Whether to fetch now or wait. `defer` picks a deferral for an overdue object on the first
/// reconcile after a start (see [`schedule::defer_overdue`]).
pub fn decide(s: &Situation<'_>, defer: impl FnOnce(Option<Timestamp>) -> Option<Timestamp>) -> Decision {
    // What a person did comes first, even during a backoff.
    if s.previous.observed_generation.is_some() && s.previous.observed_generation != s.generation {
        return Decision::Fetch(Why::SpecChanged);
    }
    if let Some(requested) = s.refresh_requested_at
        && s.previous.refresh_requested_at.as_deref() != Some(requested)
    {
        return Decision::Fetch(Why::Requested);
    }
    if let Some(version) = s.credentials_changed_to
        && s.current.is_none_or(|c| c.credentials_version != version)
    {
        return Decision::Fetch(Why::CredentialsChanged);
    }
    // After a failure, the retry time in status holds.
    let retry_at = s.previous.next_refresh_time.as_ref().map(|t| t.0);
    if s.previous.consecutive_failures > 0
        && let Some(retry_at) = retry_at
        && retry_at > s.now
    {
        return Decision::Wait(retry_at);
    }
    let Some(current) = s.current else { return Decision::Fetch(Why::NoToken) };
    if current.generation != s.generation.unwrap_or_default() && s.previous.consecutive_failures == 0 {
        return Decision::Fetch(Why::SpecChanged);
    }
    let due = if s.previous.consecutive_failures > 0 { retry_at.unwrap_or(s.now) } else { current.next_refresh_at };
    if due > s.now {
        return Decision::Wait(due);
    }
    if s.first_reconcile
        && schedule::duration_between(due, s.now) > OVERDUE_SLACK
        && let Some(later) = defer(current.expires_at)
    {
        return Decision::Wait(later);
    }
    Decision::Fetch(Why::Due)
}

pub async fn reconcile(ct: Arc<ConsentToken>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_one(&ct, &ctx).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    result
}

/// Requeue after an error the reconcile could not report in status (the API server refused a write).
pub fn error_policy(_ct: Arc<ConsentToken>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(reason = err.metric_label(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5) + Duration::from_millis(rand::random_range(0..5000)))
}

async fn reconcile_one(ct: &ConsentToken, ctx: &Context) -> Result<Action, Error> {
    // Decisions rest on the cache of our Secrets; before it is complete a reconcile would see
    // tokens as missing. Instant once listed.
    let _ = ctx.owned_secrets_listed.clone().wait_for(|listed| *listed).await.map(drop);
    let now = Timestamp::now();
    let namespace = ct.namespace().unwrap_or_default();
    let name = ct.name_any();
    let object = ObjectRef::from_obj(ct);
    let uid = ct.uid().unwrap_or_default();
    let written = ctx.written.lock().unwrap_or_else(|p| p.into_inner()).get(&uid).cloned();
    let first_reconcile = written.is_none();
    let cached = ct.status.clone().unwrap_or_default();
    let previous = match &written {
        Some(written) => written.overlay(cached),
        None => cached,
    };
    let provider_name = provider::provider_name(&ct.spec);

    // 1. observe
    let target = observe_target(ct, ctx, &namespace, &previous).await?;
    let current = match &target {
        Target::Ours(secret) => target_secret::read(secret, ct.target_key()),
        Target::Missing | Target::Foreign => None,
    };
    let current_record = current.as_ref();

    // 2. decide
    let refresh_requested_at = ct.annotations().get(REFRESH_REQUESTED_AT).cloned();
    let credentials_changed_to = ctx.credential_changes.take(&object);
    let schedule = Schedule::from_policy(&ct.spec.refresh);
    let spec_error = match &schedule {
        Err(message) => Some(Error::InvalidSpec(message.clone())),
        Ok(_) => ctx.providers.check_spec(&ct.spec).err(),
    };
    let decision = match (&target, spec_error) {
        (Target::Foreign, _) => Err(Error::TargetConflict(ct.target_secret_name())),
        (_, Some(err)) => Err(err),
        _ => Ok(decide(
            &Situation {
                now,
                generation: ct.meta().generation,
                current: current_record,
                previous: &previous,
                refresh_requested_at: refresh_requested_at.as_deref(),
                credentials_changed_to: credentials_changed_to.as_deref(),
                first_reconcile,
            },
            |expires_at| {
                let (from, to) = schedule::overdue_window(now, expires_at, ctx.overdue_spread)?;
                Some(ctx.calendar.place(&uid, from, to))
            },
        )),
    };
    let schedule = schedule.unwrap_or_default();

    // 3-4. fetch and apply, or keep what is there
    let outcome = match decision {
        Ok(Decision::Fetch(why)) => {
            tracing::debug!(namespace, name, ?why, "fetching a token");
            refresh(ct, ctx, &schedule, &target, credentials_changed_to.as_deref()).await
        }
        Ok(Decision::Wait(until)) => {
            tracing::debug!(namespace, name, %until, "token in place; waiting");
            if let (Target::Ours(secret), Some(record)) = (&target, &current) {
                repair(ct, ctx, secret, record).await?;
            }
            let failures = previous.consecutive_failures;
            return finish(ct, ctx, written.as_ref(), failures, current_record, None, until, refresh_requested_at, now).await;
        }
        Err(err) => Err(err),
    };

    // 5-6. report and requeue. Every failure, Kubernetes API ones included (say, no RBAC
    // permission to read the credentials), is reported in status.
    match outcome {
        Ok(record) => {
            ctx.metrics.refreshes.get_or_create(&ProviderLabels { provider: provider_name }).inc();
            let next = record.next_refresh_at;
            finish(ct, ctx, written.as_ref(), 0, Some(&record), None, next, refresh_requested_at, Timestamp::now()).await
        }
        Err(err) => {
            ctx.metrics.failures.get_or_create(&FailureLabels { provider: provider_name, reason: err.metric_label() }).inc();
            tracing::info!(namespace, name, reason = err.reason(), error = %err, "refresh failed");
            let failures = previous.consecutive_failures.saturating_add(1);
            let retry = schedule::retry_at(
                now,
                err.retry_class(),
                u32::try_from(failures).unwrap_or(u32::MAX),
                current_record.and_then(|r| r.expires_at),
                rand::random(),
            );
            finish(ct, ctx, written.as_ref(), failures, current_record, Some(&err), retry, refresh_requested_at, now).await
        }
    }
}

/// The target Secret as the reconcile finds it.
enum Target {
    Missing,
    /// A Secret of that name this ConsentToken does not control: never overwritten.
    Foreign,
    /// Summarized (see [`target_secret::summarize`]): no token in it. Shared with the cache
    /// when it came from there.
    Ours(Arc<Secret>),
}

async fn observe_target(ct: &ConsentToken, ctx: &Context, namespace: &str, previous: &ConsentTokenStatus) -> Result<Target, Error> {
    let name = ct.target_secret_name();
    let secret = match ctx.owned_secrets.get(&ObjectRef::new(&name).within(namespace)) {
        Some(cached) => Some(cached),
        // Not in the (complete) cache of labelled Secrets: absent, foreign, or ours with the
        // label removed. For a new object (no token yet) a metadata read from the API server's
        // watch cache tells: cheap, and a foreign Secret is found before a token is fetched for
        // it. Where a Secret of ours was expected, it is read in full (its token may still be good).
        None => {
            let api = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
            let expected = previous.token_fingerprint.is_some();
            let read = if expected {
                api.get_opt(&name).await?
            } else {
                match api.get_metadata_opt_with(&name, &GetParams::any()).await? {
                    Some(meta) if target_secret::is_controlled_by(&meta, ct) => api.get_opt(&name).await?,
                    Some(_) => return Ok(Target::Foreign),
                    None => None,
                }
            };
            read.map(|mut secret| {
                target_secret::summarize(&mut secret);
                Arc::new(secret)
            })
        }
    };
    Ok(match secret {
        None => Target::Missing,
        Some(secret) if target_secret::is_controlled_by(&*secret, ct) => Target::Ours(secret),
        Some(_) => Target::Foreign,
    })
}

/// Steps 3 and 4: credentials, provider, Secret. `credentials_version`: the version of the
/// credentials Secret a change was seen to, if that is why this reconcile runs.
async fn refresh(
    ct: &ConsentToken,
    ctx: &Context,
    schedule: &Schedule,
    target: &Target,
    credentials_version: Option<&str>,
) -> Result<TokenRecord, Error> {
    let namespace = ct.namespace().unwrap_or_default();
    let reference = ct
        .credentials_secret_ref()
        .ok_or_else(|| Error::InvalidSpec("set exactly one provider: spec.oneTrust or spec.fdx".into()))?;
    let credentials = ctx.credentials.get(&ctx.client, &namespace, reference, credentials_version).await?;
    let fetched = ctx.providers.fetch(&ct.spec, &credentials).await?;
    let first = !matches!(target, Target::Ours(_));
    let (earliest, latest) = schedule.renewal_window(fetched.fetched_at, fetched.expires_at, first);
    let record = TokenRecord {
        fingerprint: fetched.token.fingerprint(),
        refreshed_at: fetched.fetched_at,
        expires_at: fetched.expires_at,
        next_refresh_at: ctx.calendar.place(&ct.uid().unwrap_or_default(), earliest, latest),
        generation: ct.meta().generation.unwrap_or_default(),
        credentials_version: credentials.version.clone(),
        collection_point_version: fetched.collection_point_version,
    };
    let desired = target_secret::desired(ct, &fetched.token, &record);
    match target {
        Target::Ours(_) => apply_secret(ctx, &desired).await?,
        Target::Missing | Target::Foreign => create_secret(ct, ctx, &desired).await?,
    }
    Ok(record)
}

/// Puts back labels, annotations or owner if someone changed them (an edited token is not
/// intact, so [`decide`] has a new one fetched instead). `summary` is the Secret as cached (see [`target_secret::summarize`]): the token itself is
/// read from the API server only when something has to be put back.
async fn repair(ct: &ConsentToken, ctx: &Context, summary: &Secret, record: &TokenRecord) -> Result<(), Error> {
    if target_secret::matches(summary, &target_secret::desired_without_token(ct, record)) {
        return Ok(());
    }
    tracing::info!(namespace = ct.namespace(), name = ct.name_any(), "target Secret was changed; putting it back");
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ct.namespace().unwrap_or_default());
    let secret = api.get_opt(&ct.target_secret_name()).await?;
    // Gone or its token edited meanwhile: the watch event that follows triggers a new token.
    if let Some(token) = secret.and_then(|s| target_secret::intact_token(&s, ct.target_key(), record)) {
        apply_secret(ctx, &target_secret::desired(ct, &token, record)).await?;
    }
    Ok(())
}

/// Creates the target Secret; never writes into someone else's.
async fn create_secret(ct: &ConsentToken, ctx: &Context, desired: &Secret) -> Result<(), Error> {
    let namespace = ct.namespace().unwrap_or_default();
    let name = desired.metadata.name.clone().unwrap_or_default();
    // Create, not apply: an apply would take over a Secret someone created meanwhile.
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    ctx.api_writes.until_ready().await;
    match api.create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, desired).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            // Ours after all (the label was removed, or our own create is not in the cache
            // yet), or someone else's.
            match api.get_opt(&name).await? {
                Some(existing) if target_secret::is_controlled_by(&existing, ct) => apply_secret(ctx, desired).await,
                _ => Err(Error::TargetConflict(name)),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// Server-side apply of a Secret this ConsentToken controls.
async fn apply_secret(ctx: &Context, desired: &Secret) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), desired.metadata.namespace.as_deref().unwrap_or_default());
    let name = desired.metadata.name.clone().unwrap_or_default();
    ctx.api_writes.until_ready().await;
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired)).await?;
    Ok(())
}

/// Step 5 and 6: status, event, metrics, requeue.
#[allow(clippy::too_many_arguments)]
async fn finish(
    ct: &ConsentToken,
    ctx: &Context,
    last_written: Option<&Written>,
    consecutive_failures: i32,
    current: Option<&TokenRecord>,
    failure: Option<&Error>,
    next_refresh: Timestamp,
    refresh_requested_at: Option<String>,
    now: Timestamp,
) -> Result<Action, Error> {
    let namespace = ct.namespace().unwrap_or_default();
    let observed = status::Observed {
        now,
        generation: ct.meta().generation,
        provider: provider::provider_name(&ct.spec),
        current,
        failure,
        consecutive_failures,
        next_refresh,
        refresh_requested_at,
    };
    let desired = status::desired(ct.status.as_ref(), &observed);
    let uid = ct.uid().unwrap_or_default();
    let write = needs_status_write(ct.status.as_ref(), &desired, last_written);
    if write {
        ctx.api_writes.until_ready().await;
        let patch = serde_json::json!({
            "apiVersion": ConsentToken::api_version(&()),
            "kind": ConsentToken::kind(&()),
            "status": desired,
        });
        Api::<ConsentToken>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(&ct.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await?;
    }
    let record = match (last_written, write) {
        // Unchanged: keep what the last write replaced, so the stale cache is still recognised.
        (Some(last), false) => Written { ready: status::ready_state(Some(&desired)), ..last.clone() },
        _ => Written::of(&desired, ct.status.as_ref()),
    };
    ctx.calendar.keep(&uid, next_refresh);
    ctx.written.lock().unwrap_or_else(|p| p.into_inner()).insert(uid, record);
    let before = match last_written {
        Some(written) => written.ready.clone(),
        None => status::ready_state(ct.status.as_ref()),
    };
    let after = status::ready_state(Some(&desired));
    if before != after
        && let (Some((ready, reason)), Some(condition)) = (after, desired.conditions.first())
    {
        let event = Event {
            type_: if ready == "True" { EventType::Normal } else { EventType::Warning },
            reason,
            note: Some(condition.message.clone()),
            action: "Refresh".into(),
            secondary: None,
        };
        // A Recorder per Event: a shared one keeps every Event it published for six minutes and
        // scans them all on each publish (to fold repeats into a series), which with 10,000
        // objects turning Ready is megabytes held and quadratic work. Ours are one per
        // transition, so there are no repeats to fold.
        let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
        if let Err(err) = recorder.publish(&event, &ct.object_ref(&())).await {
            tracing::warn!(error = %err, "could not publish an event");
        }
    }

    let labels = ObjectLabels { namespace, name: ct.name_any() };
    match current.and_then(|c| c.expires_at) {
        Some(exp) => {
            ctx.metrics.token_expiry.get_or_create(&labels).set(exp.as_second());
        }
        None => {
            ctx.metrics.token_expiry.remove(&labels);
        }
    }
    ctx.metrics.next_refresh.get_or_create(&labels).set(next_refresh.as_second());
    let ready = desired.conditions.first().is_some_and(|c| c.status == "True");
    ctx.metrics.ready.get_or_create(&labels).set(i64::from(ready));

    // Wake at the next refresh, or at expiry if that comes first, so Ready turns False on time.
    let mut wake = next_refresh;
    if let Some(exp) = current.and_then(|c| c.expires_at)
        && exp > now
        && exp < wake
    {
        wake = exp;
    }
    let wait = schedule::duration_between(Timestamp::now(), wake).max(Duration::from_millis(200));
    Ok(Action::requeue(wait))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn record(next: i64, expires: i64) -> TokenRecord {
        TokenRecord {
            fingerprint: "f".into(),
            refreshed_at: t(0),
            expires_at: Some(t(expires)),
            next_refresh_at: t(next),
            generation: 1,
            credentials_version: "5".into(),
            collection_point_version: None,
        }
    }

    fn situation<'a>(now: i64, current: Option<&'a TokenRecord>, previous: &'a ConsentTokenStatus) -> Situation<'a> {
        Situation {
            now: t(now),
            generation: Some(1),
            current,
            previous,
            refresh_requested_at: None,
            credentials_changed_to: None,
            first_reconcile: false,
        }
    }

    fn ok_status() -> ConsentTokenStatus {
        ConsentTokenStatus { observed_generation: Some(1), ..Default::default() }
    }

    #[test]
    fn waits_for_the_schedule_then_fetches() {
        let rec = record(150, 300);
        let prev = ok_status();
        assert_eq!(decide(&situation(10, Some(&rec), &prev), |_| None), Decision::Wait(t(150)));
        assert_eq!(decide(&situation(150, Some(&rec), &prev), |_| None), Decision::Fetch(Why::Due));
        assert_eq!(decide(&situation(10, None, &prev), |_| None), Decision::Fetch(Why::NoToken));
    }

    #[test]
    fn people_come_before_the_schedule_and_the_backoff() {
        let rec = record(150, 300);
        let backing_off = ConsentTokenStatus {
            consecutive_failures: 3,
            next_refresh_time: Some(Time(t(100))),
            ..ok_status()
        };
        assert_eq!(decide(&situation(10, Some(&rec), &backing_off), |_| None), Decision::Wait(t(100)));

        let mut s = situation(10, Some(&rec), &backing_off);
        s.refresh_requested_at = Some("2026-11-23T10:00:00Z");
        assert_eq!(decide(&s, |_| None), Decision::Fetch(Why::Requested));

        let mut s = situation(10, Some(&rec), &backing_off);
        s.credentials_changed_to = Some("6");
        assert_eq!(decide(&s, |_| None), Decision::Fetch(Why::CredentialsChanged));
        s.credentials_changed_to = Some("5"); // the token already came from that version
        assert_eq!(decide(&s, |_| None), Decision::Wait(t(100)));

        let mut s = situation(10, Some(&rec), &backing_off);
        s.generation = Some(2);
        assert_eq!(decide(&s, |_| None), Decision::Fetch(Why::SpecChanged));
    }

    #[test]
    fn a_handled_refresh_request_is_not_repeated() {
        let rec = record(150, 300);
        let prev = ConsentTokenStatus { refresh_requested_at: Some("x".into()), ..ok_status() };
        let mut s = situation(10, Some(&rec), &prev);
        s.refresh_requested_at = Some("x");
        assert_eq!(decide(&s, |_| None), Decision::Wait(t(150)));
    }

    #[test]
    fn a_stale_cache_of_our_own_write_does_not_cause_a_second_write() {
        let old = ConsentTokenStatus { consecutive_failures: 0, ..ok_status() };
        let new = ConsentTokenStatus { next_refresh_time: Some(Time(t(150))), ..ok_status() };
        assert!(needs_status_write(Some(&old), &new, None), "first write");
        let written = Written::of(&new, Some(&old));
        // The cache still shows what we replaced: stale, skip.
        assert!(!needs_status_write(Some(&old), &new, Some(&written)));
        // The cache caught up: nothing to do either.
        assert!(!needs_status_write(Some(&new), &new, Some(&written)));
        // Someone else changed the status since: write it back.
        let other = ConsentTokenStatus { consecutive_failures: 7, ..ok_status() };
        assert!(needs_status_write(Some(&other), &new, Some(&written)));
        // Something new to say: write.
        let newer = ConsentTokenStatus { next_refresh_time: Some(Time(t(300))), ..ok_status() };
        assert!(needs_status_write(Some(&old), &newer, Some(&written)));
    }

    #[test]
    fn only_the_first_overdue_reconcile_after_a_start_is_deferred() {
        let rec = record(150, 300);
        let prev = ok_status();
        let mut s = situation(160, Some(&rec), &prev);
        s.first_reconcile = true;
        assert_eq!(decide(&s, |_| Some(t(170))), Decision::Wait(t(170)));
        s.first_reconcile = false;
        assert_eq!(decide(&s, |_| Some(t(170))), Decision::Fetch(Why::Due));
        // On time (our own timer): not deferred even on a first reconcile.
        let mut s = situation(151, Some(&rec), &prev);
        s.first_reconcile = true;
        assert_eq!(decide(&s, |_| Some(t(170))), Decision::Fetch(Why::Due));
    }
}
