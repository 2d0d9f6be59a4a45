//! The status a ConsentToken should show, as a pure function of what the reconcile saw.
//!
//! `Ready` follows the clock: it is True only while the token in the Secret has not expired,
//! so a token that expires while nothing else happens turns Ready False with reason `Expired`
//! (the reconcile is woken at the expiry time for this).
//!
//! A routine renewal changes nothing here: while tokens are renewed on time the status says
//! what stays true from one token to the next (Ready, the lifetime, the renewal policy), and the
//! times of the token of the moment live on the target Secret, written with it. The times are
//! shown in the status only where it describes one token that stays put until the status is
//! written again: while a refresh fails, and once the token has expired.
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::borrow::Cow;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::crd::{ConsentTokenStatus, FailureStatus, ProviderKind, RateLimitStatus};
use crate::api::rate_limit::RateLimit;
use crate::error::Error;
use crate::reconcile::{token_lifetime, token_record::TokenRecord};
use crate::scheduling::schedule::Schedule;

pub const READY: &str = "Ready";
/// The condition GitOps tools and `kubectl wait` read for refreshes: False while the last one
/// failed (also while Ready stays True on a token still valid), True once one succeeds.
pub const SYNCED: &str = "Synced";

/// Every Ready reason this operator writes: its own three and each failure's
/// ([`Error::reason`]).
const OWN_REASONS: [&str; 20] = [
    "TokenValid",
    "Pending",
    "Expired",
    "CredentialsNotFound",
    "ProviderNotFound",
    "NamespaceNotAllowed",
    "RequestNotAllowed",
    "CredentialsNotAllowed",
    "ProviderNotAllowed",
    "ProviderAddressNotAllowed",
    "Unauthorized",
    "Forbidden",
    "UpstreamRejected",
    "RateLimited",
    "UpstreamError",
    "InvalidResponse",
    "TargetConflict",
    "InvalidSpec",
    "InternalError",
    "KubernetesError",
];

/// A reason as kept per object between reconciles (the status memory, the metric records): one
/// of the operator's own refers to the program's copy, any other (a status someone else wrote)
/// is copied. A copy is a small allocation per object and record, about 64 bytes an object.
pub fn kept_reason(reason: &str) -> Cow<'static, str> {
    match OWN_REASONS.iter().find(|own| **own == reason) {
        Some(own) => Cow::Borrowed(own),
        None => Cow::Owned(reason.to_owned()),
    }
}

/// Everything the status is computed from.
pub struct Observed<'a> {
    pub now: Timestamp,
    pub generation: Option<i64>,
    pub provider: Option<ProviderKind>,
    /// The token now in the target Secret, if there is an intact one.
    pub current: Option<&'a TokenRecord>,
    /// The failure to show: this reconcile's, or the one carried over while failures go on.
    pub failure: Option<&'a Failure>,
    pub consecutive_failures: i32,
    pub next_refresh: Timestamp,
    pub refresh_requested_at: Option<String>,
    /// A refresh request waits until `next_refresh`: the status says when (one write per held
    /// request, which a person made), though the token is renewed on time.
    pub request_held: bool,
    /// The spec's renewal policy, described in the Ready message.
    pub schedule: Schedule,
}

/// A refresh failure as the status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: String,
    pub message: String,
    pub time: Time,
    pub rate_limit: Option<RateLimitStatus>,
}

impl Failure {
    pub fn new(err: &Error, now: Timestamp) -> Self {
        let rate_limit = match err {
            Error::RateLimited(limit) => Some(rate_limit_status(limit, now)),
            _ => None,
        };
        Self { reason: err.reason().to_owned(), message: err.to_string(), time: whole_seconds(now), rate_limit }
    }

    /// The failure a status already shows, while failures go on (so a reconcile that only
    /// waits, a restart or a relist does not make it disappear).
    pub fn carried(status: &ConsentTokenStatus) -> Option<Self> {
        if status.consecutive_failures == 0 {
            return None;
        }
        let last = status.last_failure.as_ref()?;
        Some(Self {
            reason: last.reason.clone(),
            message: last.message.clone(),
            time: last.time.clone(),
            rate_limit: status.rate_limit.as_deref().cloned(),
        })
    }
}

/// The status for what the reconcile saw; `previous` is the one the API server holds (its Ready
/// transition time and lifetime shown are kept).
pub fn desired(previous: Option<&ConsentTokenStatus>, observed: &Observed<'_>) -> ConsentTokenStatus {
    let current = observed.current;
    let valid = current.is_some_and(|c| c.expires_at.is_none_or(|exp| exp > observed.now));
    let (status, reason, message) = match (current, valid, observed.failure) {
        (Some(c), true, None) => ("True", "TokenValid", healthy_message(c, &observed.schedule)),
        (Some(c), true, Some(failure)) => (
            "True",
            failure.reason.as_str(),
            format!("{}; the last refresh failed: {}", valid_message(c), failure.message),
        ),
        (Some(_), false, failure) => (
            "False",
            "Expired",
            match failure {
                Some(failure) => format!("the token in the Secret has expired; refreshing failed: {}", failure.message),
                None => "the token in the Secret has expired".to_owned(),
            },
        ),
        (None, _, Some(failure)) => ("False", failure.reason.as_str(), failure.message.clone()),
        (None, _, None) => ("False", "Pending", "no token fetched yet".to_owned()),
    };
    // Renewed on time: the token of the moment is described on the Secret, not here.
    let renewed_on_time = reason == "TokenValid";
    let one_token = if renewed_on_time { None } else { current };
    let token_lifetime = current.and_then(|c| {
        let lifetime = crate::basics::time_math::between(c.refreshed_at, c.expires_at?);
        Some(token_lifetime::shown(previous.and_then(|p| p.token_lifetime.as_deref()), lifetime))
    });
    let last_transition_time = transition_time(previous, READY, status, observed.now);
    let synced = synced_condition(previous, observed);
    let failing = observed.failure.filter(|_| observed.consecutive_failures > 0);
    let rate_limit = failing.and_then(|f| f.rate_limit.clone());
    let last_failure =
        failing.map(|f| FailureStatus { reason: f.reason.clone(), message: f.message.clone(), time: f.time.clone() });
    ConsentTokenStatus {
        observed_generation: observed.generation,
        provider: observed.provider.map(|p| p.as_str().to_owned()),
        conditions: vec![
            Condition {
                type_: READY.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message,
                observed_generation: observed.generation,
                last_transition_time,
            },
            synced,
        ],
        token_lifetime,
        expires_at: one_token.and_then(|c| c.expires_at).map(whole_seconds),
        last_refresh_time: one_token.map(|c| whole_seconds(c.refreshed_at)),
        next_refresh_time: (!renewed_on_time || observed.request_held).then(|| whole_seconds(observed.next_refresh)),
        consecutive_failures: observed.consecutive_failures,
        token_fingerprint: one_token.map(|c| c.fingerprint.clone()),
        collection_point_version: current.and_then(|c| c.collection_point_version),
        credentials_version: current.map(|c| c.credentials_version.clone()),
        refresh_requested_at: observed.refresh_requested_at.clone(),
        rate_limit: rate_limit.map(Box::new),
        last_failure: last_failure.map(Box::new),
    }
}

/// Synced: whether the last refresh succeeded. Unlike Ready it does not follow the clock, and
/// its True message names no time, so a routine renewal leaves it as it is (no status write).
fn synced_condition(previous: Option<&ConsentTokenStatus>, observed: &Observed<'_>) -> Condition {
    let (status, reason, message) = match (observed.failure, observed.current) {
        (Some(failure), _) => {
            ("False", failure.reason.as_str(), format!("the last refresh failed: {}", failure.message))
        }
        (None, Some(_)) => ("True", "Refreshed", "the last refresh succeeded".to_owned()),
        (None, None) => ("False", "Pending", "no token fetched yet".to_owned()),
    };
    Condition {
        type_: SYNCED.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: observed.generation,
        last_transition_time: transition_time(previous, SYNCED, status, observed.now),
    }
}

/// When condition `type_` last changed to `status`: kept from `previous` while its status is the
/// same, else now.
fn transition_time(previous: Option<&ConsentTokenStatus>, type_: &str, status: &str, now: Timestamp) -> Time {
    match previous.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_)) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => whole_seconds(now),
    }
}

/// The Ready message while tokens are renewed on time: true from one token to the next.
fn healthy_message(current: &TokenRecord, schedule: &Schedule) -> String {
    let expires = current.expires_at.is_some();
    let token = if expires { "a valid token" } else { "a token without expiry" };
    format!(
        "the Secret holds {token}, {}; `kubectl consent status` shows when it expires and is renewed",
        schedule.describe(expires)
    )
}

/// A time as the API server stores it (RFC 3339, whole seconds), so a status read back equals
/// the one computed and is not written again for a difference in nanoseconds.
pub fn whole_seconds(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

fn valid_message(current: &TokenRecord) -> String {
    match current.expires_at {
        Some(exp) => format!("token valid until {exp}"),
        None => "token fetched; it carries no expiry".to_owned(),
    }
}

fn rate_limit_status(limit: &RateLimit, now: Timestamp) -> RateLimitStatus {
    RateLimitStatus {
        retry_after: Some(whole_seconds(crate::basics::time_math::later(now, limit.retry_after))),
        period: limit.period.clone(),
        requests_allowed: limit.requests_allowed,
        requests_made: limit.requests_made,
        event_id: limit.event_id.clone(),
    }
}

/// The Ready condition as the operator reads it: whether it is True, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub is_true: bool,
    pub reason: Cow<'static, str>,
}

/// The Ready condition of a status, wherever it is in the list.
pub fn ready_condition(status: &ConsentTokenStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == READY)
}

/// Ready's state, to tell transitions (which get an Event) from repeats (which do not).
pub fn ready(status: Option<&ConsentTokenStatus>) -> Option<Ready> {
    ready_condition(status?).map(|c| Ready { is_true: c.status == "True", reason: kept_reason(&c.reason) })
}

/// `previous` without its target conflict, now that the target Secret is this object's: the
/// failure, its count and its retry time go, so the token is judged afresh (fetched at once if it
/// answers another request) and Ready tells the truth. Any other failure stays.
pub fn conflict_over(previous: ConsentTokenStatus) -> ConsentTokenStatus {
    let conflict = Error::TargetConflict { secret: String::new(), consent_token: String::new() }.reason();
    match &previous.last_failure {
        Some(failure) if previous.consecutive_failures > 0 && failure.reason == conflict => {
            ConsentTokenStatus { consecutive_failures: 0, last_failure: None, next_refresh_time: None, ..previous }
        }
        _ => previous,
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // small test numbers
mod tests;
