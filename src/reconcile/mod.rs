//! One reconcile of one ConsentToken, as a pipeline of stages, each one call:
//!
//! 1. **observe** the target Secret ([`secret::observe`]);
//! 2. **resolve** the provider (written out, or a shared provider object: [`lookup::resolve`],
//!    pure), **validate** the spec ([`spec::validate`], pure) and **decide** whether to fetch a
//!    token now or keep the current one ([`decide::decide`], pure);
//! 3. **fetch** a token and write it ([`fetch::refresh`]), or reshape a Secret whose target
//!    spec changed or that someone edited, keeping its token ([`secret::repair`]);
//! 4. **report**: status, an Event on Ready transitions, metrics, and the requeue
//!    ([`report::report`]).
//!
//! A failed fetch never touches the Secret: the last good token stays where pods read it.
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

pub mod api_writes;
pub mod context;
mod decide;
mod fetch;
pub mod memory;
mod report;
mod secret;
pub mod spec;
pub mod status;
pub mod target_secret;
pub mod target_waiters;
pub mod token_lifetime;
pub mod token_record;
pub mod unwritten;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use crate::api::annotations::REFRESH_REQUESTED_AT;
use crate::api::crd::{ConsentToken, ConsentTokenStatus};
use crate::basics::object_id::ObjectId;
use crate::error::Error;
use crate::provider::lookup;
use crate::reconcile::status::Failure;
use crate::reconcile::token_record::TokenRecord;
use crate::scheduling::retry::{self, FailedAttempt};
use crate::scheduling::schedule;
use context::Context;
use decide::{Decision, Situation, Why, decide};
use fetch::{Refresh, Replace};
use report::{Attempt, Outcome};
use secret::Target;
use spec::ValidSpec;

/// Reconciles `ct`; returns how long until it is looked at again (unless a change comes first).
pub async fn reconcile(ct: &ConsentToken, ctx: &Context) -> Duration {
    // Every line this reconcile logs names its object (in JSON as top-level fields). At level
    // ERROR, so that the span is on at every log level (`--log-level warn` included).
    let span = tracing::error_span!(
        crate::observability::logging::RECONCILE_SPAN,
        namespace = ct.metadata.namespace.as_deref().unwrap_or_default(),
        name = ct.metadata.name.as_deref().unwrap_or_default(),
    );
    async {
        let started = Instant::now();
        let result = reconcile_one(ct, ctx).await;
        ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
        result.unwrap_or_else(|err| retry_after(&err))
    }
    .instrument(span)
    .await
}

/// When to retry after an error the reconcile could not report in status (the API server
/// refused a write).
fn retry_after(err: &Error) -> Duration {
    tracing::warn!(reason = err.metric_label(), error = %err, "reconcile failed; retrying");
    Duration::from_secs(5).saturating_add(Duration::from_millis(rand::random_range(0..5000)))
}

async fn reconcile_one(ct: &ConsentToken, ctx: &Context) -> Result<Duration, Error> {
    // Decisions rest on the cache of our Secrets; before it is complete a reconcile would see
    // tokens as missing. Instant once listed.
    let _ = ctx.caches.listed.clone().wait_for(|listed| *listed).await.map(drop);
    let now = Timestamp::now();
    let uid = ct.uid().unwrap_or_default();
    let last_written = ctx.records.status_memory.recall(&uid);
    let cached = ct.status.clone().unwrap_or_default();
    let previous = match &last_written {
        Some(written) => written.overlay(cached),
        None => cached,
    };
    // 1. observe
    let target = secret::observe(ct, ctx, &previous).await?;
    // A target conflict is over once the Secret is ours (freed, or taken over from a deleted
    // ConsentToken) or its owner offers it: its failure and back-off no longer hold.
    let previous =
        if matches!(target, Target::Ours(_) | Target::Offered) { status::conflict_over(previous) } else { previous };
    let refresh_requested_at = ct.annotations().get(REFRESH_REQUESTED_AT).cloned();
    let credentials_changed_to = ctx.upstream.pending_rotations.take(ObjectId::of(&uid));
    let resolution = lookup::resolve(ct, &ctx.caches.catalog);
    let base = Outcome {
        now,
        provider: match &resolution {
            Ok(resolution) => Some(resolution.provider.kind()),
            Err(_) => lookup::inline_kind(ct),
        },
        token: None,
        attempt: Attempt::Waited,
        consecutive_failures: previous.consecutive_failures,
        next_refresh: now,
        refresh_requested_at,
        request_held: false,
        carried_failure: Failure::carried(&previous),
    };

    let current = target.record(ct.target_key());
    let observed = Observed {
        // The workload has no usable token: failures retry sooner, and nothing is held back quietly.
        urgent: retry::urgent(now, current.as_ref().map(|r| r.expires_at)),
        uid,
        previous,
        current,
    };
    let Observed { uid, previous, current, urgent } = &observed;

    // 2. validate and decide
    let previous_generation = previous.observed_generation;
    let plan = validate(ct, ctx, &target, resolution).map(|spec| {
        let situation = Situation {
            now,
            generation: ct.meta().generation,
            current: current.as_ref(),
            previous,
            refresh_requested_at: base.refresh_requested_at.as_deref(),
            credentials_changed_to: credentials_changed_to.as_deref(),
            first_reconcile: last_written.is_none(),
            request: &spec.request,
            request_interval: ctx.scheduling.min_refresh_request_interval,
        };
        let decision = decide(&situation, |expires_at| {
            let (from, to) = schedule::overdue_window(now, expires_at, ctx.scheduling.overdue_spread)?;
            Some(ctx.scheduling.calendar.place(uid, from, to))
        });
        (spec, decision)
    });

    // 3. fetch, or keep what is there
    let outcome = match plan {
        Ok((spec, Decision::Fetch(why))) => {
            tracing::debug!(namespace = ct.namespace(), name = ct.name_any(), ?why, "fetching a token");
            let refresh = Refresh {
                spec: &spec,
                target: &target,
                current: current.as_ref(),
                replace: match why {
                    Why::SpecChanged | Why::CredentialsChanged => Replace::Anyway,
                    _ => Replace::UnlessShorterLived,
                },
                credentials_version: credentials_changed_to.as_deref(),
            };
            match fetch::refresh(ct, ctx, &refresh).await {
                Ok(record) => refreshed(base, record),
                // Nothing was sent: a place back in the queue, and no failure to report unless
                // there is no usable token and no failure shown yet.
                Err(err) if err.was_held() && decide::held_quietly(*urgent, previous.consecutive_failures) => {
                    if let Some(version) = credentials_changed_to {
                        ctx.upstream.pending_rotations.record(ObjectId::of(uid), version);
                    }
                    return Ok(held_back(&err));
                }
                Err(err) => failed(ctx, base, err, observed),
            }
        }
        Ok((_, Decision::HoldRequest(until))) => {
            tracing::debug!(namespace = ct.namespace(), name = ct.name_any(), %until, "refresh request held back until then");
            if let Some(record) = current {
                secret::repair(ct, ctx, &target, record).await?;
            }
            // Not handled yet: the status keeps the last request it served.
            let refresh_requested_at = previous.refresh_requested_at.clone();
            Outcome { token: observed.current, next_refresh: until, refresh_requested_at, request_held: true, ..base }
        }
        Ok((_, Decision::Wait(until))) => {
            tracing::debug!(namespace = ct.namespace(), name = ct.name_any(), %until, "token in place; waiting");
            if let Some(record) = current {
                secret::repair(ct, ctx, &target, record).await?;
            }
            Outcome { token: observed.current, next_refresh: until, ..base }
        }
        Err(err) => failed(ctx, base, err, observed),
    };

    // A target name someone else's Secret holds: the Secret's deletion wakes this object.
    let (namespace, id) = (ct.namespace().unwrap_or_default(), ObjectId::of(&ct.uid().unwrap_or_default()));
    match &outcome.attempt {
        Attempt::Failed(Error::TargetConflict { secret, .. }) => {
            ctx.records.target_waiters.wait(&namespace, secret, id)
        }
        _ => ctx.records.target_waiters.stop_waiting(&namespace, &ct.target_secret_name(), id),
    }

    // A renamed target: once the token is under the new name, the old Secret goes. Also when
    // the first fetch after the rename failed: the failure recorded the new spec, and only the
    // creation of a target Secret for an object reconciled before tells of it (the cache is
    // scanned then; never in the first fill of new objects).
    let spec_changed = previous_generation.is_some() && previous_generation != ct.meta().generation;
    let recreated = matches!(target, Target::Missing) && previous_generation.is_some();
    if (spec_changed || recreated) && outcome.token.is_some() {
        secret::delete_renamed(ct, ctx).await?;
    }

    // 4. report and requeue. Every failure, Kubernetes API ones included (say, no RBAC
    // permission to read the credentials), is reported in status.
    report::report(ct, ctx, last_written.as_ref(), outcome).await
}

/// What stage 1 found, handed to the stages after it.
struct Observed {
    uid: String,
    /// The status as last written (by this process, or as the watch delivered it).
    previous: ConsentTokenStatus,
    /// The intact token in the target Secret, if there is one.
    current: Option<TokenRecord>,
    /// The workload has no usable token.
    urgent: bool,
}

/// The spec, checked, with its provider resolved, credentials where the operator watches
/// them, and a target that is ours to write (or free).
fn validate(
    ct: &ConsentToken,
    ctx: &Context,
    target: &Target,
    resolution: Result<lookup::Resolution, Error>,
) -> Result<ValidSpec, Error> {
    if matches!(target, Target::Foreign) {
        return Err(secret::conflict(ct));
    }
    let resolution = resolution?;
    if let Some(watched) = &ctx.caches.credentials_namespaces
        && !watched.contains(&resolution.credentials_namespace)
    {
        return Err(Error::CredentialsNamespaceNotWatched { namespace: resolution.credentials_namespace });
    }
    spec::validate(ct, &resolution, &ctx.upstream.policy)
}

/// When to look again after a request was held back without being sent.
fn held_back(err: &Error) -> Duration {
    let (at, _) = retry::retry_window(&FailedAttempt::held_back(Timestamp::now(), err.retry_class()), rand::random());
    tracing::debug!(reason = err.metric_label(), %at, "provider host busy or paused; queued");
    crate::basics::time_math::between(Timestamp::now(), at)
}

fn refreshed(base: Outcome, record: TokenRecord) -> Outcome {
    Outcome {
        now: Timestamp::now(),
        next_refresh: record.next_refresh_at,
        token: Some(record),
        attempt: Attempt::Refreshed,
        consecutive_failures: 0,
        ..base
    }
}

/// A failure keeps the current token and retries after a backoff that depends on the failure
/// (a window the calendar spreads, where the provider held many objects back at once).
fn failed(ctx: &Context, base: Outcome, err: Error, observed: Observed) -> Outcome {
    let failures = observed.previous.consecutive_failures.saturating_add(1);
    let attempt = FailedAttempt {
        at: base.now,
        class: err.retry_class(),
        in_a_row: u32::try_from(failures).unwrap_or(u32::MAX),
        token_expires_at: observed.current.as_ref().and_then(|r| r.expires_at),
        urgent: observed.urgent,
    };
    let (from, to) = retry::retry_window(&attempt, rand::random());
    let retry = if from < to { ctx.scheduling.calendar.place(&observed.uid, from, to) } else { from };
    Outcome {
        token: observed.current,
        attempt: Attempt::Failed(err),
        consecutive_failures: failures,
        next_refresh: retry,
        ..base
    }
}
