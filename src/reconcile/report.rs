//! The last stage of a reconcile: make what happened visible and say when to look again.
//! Fed by one [`Outcome`], it writes the status (only when it changed), publishes an Event on a
//! Ready transition, updates the metrics, and returns the requeue.
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};

use crate::api::crd::{ConsentToken, ConsentTokenStatus, ProviderKind};
use crate::error::Error;
use crate::observability::metrics::{FailureLabels, ProviderLabels};
use crate::observability::object_metrics::ObjectFacts;
use crate::reconcile::api_writes::FIELD_MANAGER;
use crate::reconcile::context::Context;
use crate::reconcile::memory::{self, Written, needs_status_write};
use crate::reconcile::status::{self, Failure, Ready};
use crate::reconcile::token_record::TokenRecord;
use crate::scheduling::schedule::Schedule;

/// What the fetch stage did, if anything.
#[derive(Debug)]
pub enum Attempt {
    /// Nothing was due: the current token stays.
    Waited,
    /// A new token was fetched and written.
    Refreshed,
    /// Fetching or writing failed; the Secret was left as it was.
    Failed(Error),
}

/// How one reconcile ended.
#[derive(Debug)]
pub struct Outcome {
    pub now: Timestamp,
    pub provider: Option<ProviderKind>,
    /// The token now in the target Secret, if an intact one is there.
    pub token: Option<TokenRecord>,
    pub attempt: Attempt,
    pub consecutive_failures: i32,
    /// The next fetch (or retry after a failure).
    pub next_refresh: Timestamp,
    /// The refresh request (annotation value) this reconcile has handled.
    pub refresh_requested_at: Option<String>,
    /// A newer refresh request waits until `next_refresh` (`--min-refresh-request-interval`).
    pub request_held: bool,
    /// The failure the status shows from an earlier attempt, while failures go on.
    pub carried_failure: Option<Failure>,
}

impl Outcome {
    /// The failure the status should show.
    fn failure(&self) -> Option<Failure> {
        match &self.attempt {
            Attempt::Failed(err) => Some(Failure::new(err, self.now)),
            Attempt::Waited => self.carried_failure.clone(),
            Attempt::Refreshed => None,
        }
    }
}

pub async fn report(
    ct: &ConsentToken,
    ctx: &Context,
    last: Option<&Written>,
    outcome: Outcome,
) -> Result<Duration, Error> {
    count_attempt(ct, ctx, &outcome);
    let failure = outcome.failure();
    let desired = status::desired(
        ct.status.as_ref(),
        &status::Observed {
            now: outcome.now,
            generation: ct.meta().generation,
            provider: outcome.provider,
            current: outcome.token.as_ref(),
            failure: failure.as_ref(),
            consecutive_failures: outcome.consecutive_failures,
            next_refresh: outcome.next_refresh,
            refresh_requested_at: outcome.refresh_requested_at.clone(),
            request_held: outcome.request_held,
            // An invalid policy fails the reconcile before a token is kept; the default here
            // only words a message.
            schedule: Schedule::from_policy(&ct.spec.refresh).unwrap_or_default(),
        },
    );
    let write = write_status(ct, ctx, &desired, last).await?;
    remember(ct, ctx, last, write, &desired, outcome.next_refresh);
    announce_transition(ct, ctx, last, &desired).await;
    export_metrics(ct, ctx, &outcome, &desired);
    Ok(requeue(&outcome))
}

/// What became of the desired status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusWrite {
    Written,
    /// The API server already holds it.
    NotNeeded,
    /// Only a failure's count and retry time changed (see [`memory::deferred`]).
    Deferred,
}

/// Writes the status if it says something new to its readers.
async fn write_status(
    ct: &ConsentToken,
    ctx: &Context,
    desired: &ConsentTokenStatus,
    last: Option<&Written>,
) -> Result<StatusWrite, Error> {
    if !needs_status_write(ct.status.as_ref(), desired, last) {
        return Ok(StatusWrite::NotNeeded);
    }
    if memory::deferred(ct.status.as_ref(), desired, last) {
        return Ok(StatusWrite::Deferred);
    }
    let namespace = ct.namespace().unwrap_or_default();
    ctx.kube.api_writes.permit(&namespace).await;
    let patch = serde_json::json!({
        "apiVersion": ConsentToken::api_version(&()),
        "kind": ConsentToken::kind(&()),
        "status": desired,
    });
    Api::<ConsentToken>::namespaced(ctx.kube.client.clone(), &namespace)
        .patch_status(&ct.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await?;
    Ok(StatusWrite::Written)
}

fn remember(
    ct: &ConsentToken,
    ctx: &Context,
    last: Option<&Written>,
    write: StatusWrite,
    desired: &ConsentTokenStatus,
    next_refresh: Timestamp,
) {
    let record = match (last, write) {
        (_, StatusWrite::Deferred) => Written::deferred(last, desired, ct.status.as_ref()),
        (Some(last), StatusWrite::NotNeeded) => last.with_ready_of(desired),
        _ => Written::of(desired, ct.status.as_ref()),
    }
    .planning(next_refresh);
    let uid = ct.uid().unwrap_or_default();
    ctx.scheduling.calendar.keep(&uid, next_refresh);
    ctx.records.status_memory.remember(&uid, record);
}

/// One Event per Ready transition (not per refresh).
async fn announce_transition(ct: &ConsentToken, ctx: &Context, last: Option<&Written>, desired: &ConsentTokenStatus) {
    let before = match last {
        Some(written) => written.ready.clone(),
        None => status::ready(ct.status.as_ref()),
    };
    let after = status::ready(Some(desired));
    let (Some(Ready { is_true, reason }), Some(condition)) = (after.clone(), status::ready_condition(desired)) else {
        return;
    };
    if before == after {
        return;
    }
    let event = Event {
        type_: if is_true { EventType::Normal } else { EventType::Warning },
        reason: reason.into_owned(),
        note: Some(condition.message.clone()),
        action: "Refresh".into(),
        secondary: None,
    };
    let reporter = &ctx.kube.reporter;
    crate::observability::events::publish(&ctx.kube.client, reporter, &event, &ct.object_ref(&())).await;
}

/// Counted before the status is written: the attempt happened even if that write fails.
fn count_attempt(ct: &ConsentToken, ctx: &Context, outcome: &Outcome) {
    let provider = outcome.provider.map_or("none", ProviderKind::as_str);
    match &outcome.attempt {
        Attempt::Refreshed => {
            ctx.metrics.refreshes.get_or_create(&ProviderLabels { provider }).inc();
        }
        Attempt::Failed(err) => {
            tracing::info!(namespace = ct.namespace(), name = ct.name_any(), reason = err.reason(), error = %err, "refresh failed");
            ctx.metrics.failures.get_or_create(&FailureLabels { provider, reason: err.metric_label() }).inc();
        }
        Attempt::Waited => {}
    }
}

fn export_metrics(ct: &ConsentToken, ctx: &Context, outcome: &Outcome, desired: &ConsentTokenStatus) {
    let ready = status::ready(Some(desired));
    let facts = ObjectFacts {
        provider: outcome.provider.map_or("none", ProviderKind::as_str),
        ready: ready.as_ref().is_some_and(|r| r.is_true),
        reason: ready.map(|r| r.reason).unwrap_or_default(),
        expires_at: outcome.token.as_ref().and_then(|c| c.expires_at).map(Timestamp::as_second),
        next_refresh: outcome.next_refresh.as_second(),
        last_refresh: outcome.token.as_ref().map(|c| c.refreshed_at.as_second()),
        consecutive_failures: outcome.consecutive_failures,
        failure_reason: desired.last_failure.as_ref().map(|f| status::kept_reason(&f.reason)).unwrap_or_default(),
    };
    ctx.metrics.objects.set(&ct.namespace().unwrap_or_default(), &ct.name_any(), facts);
}

/// Wake at the next refresh, or at expiry if that comes first, so Ready turns False on time.
fn requeue(outcome: &Outcome) -> Duration {
    let mut wake = outcome.next_refresh;
    if let Some(exp) = outcome.token.as_ref().and_then(|c| c.expires_at)
        && exp > outcome.now
        && exp < wake
    {
        wake = exp;
    }
    crate::basics::time_math::between(Timestamp::now(), wake).max(Duration::from_millis(200))
}
