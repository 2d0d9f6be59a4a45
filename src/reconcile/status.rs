//! The status a ConsentToken should show, as a pure function of what the reconcile saw.
//!
//! `Ready` follows the clock: it is True only while the token in the Secret has not expired,
//! so a token that expires while nothing else happens turns Ready False with reason `Expired`
//! (the reconcile is woken at the expiry time for this).
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::borrow::Cow;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::crd::{ConsentTokenStatus, FailureStatus, ProviderKind, RateLimitStatus};
use crate::api::rate_limit::RateLimit;
use crate::error::Error;
use crate::reconcile::token_record::TokenRecord;

pub const READY: &str = "Ready";

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

pub fn desired(previous: Option<&ConsentTokenStatus>, observed: &Observed<'_>) -> ConsentTokenStatus {
    let current = observed.current;
    let valid = current.is_some_and(|c| c.expires_at.is_none_or(|exp| exp > observed.now));
    let (status, reason, message) = match (current, valid, observed.failure) {
        (Some(c), true, None) => ("True", "TokenValid", valid_message(c)),
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
    let previous_ready = previous.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let last_transition_time = match previous_ready {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => whole_seconds(observed.now),
    };
    let failing = observed.failure.filter(|_| observed.consecutive_failures > 0);
    let rate_limit = failing.and_then(|f| f.rate_limit.clone());
    let last_failure =
        failing.map(|f| FailureStatus { reason: f.reason.clone(), message: f.message.clone(), time: f.time.clone() });
    ConsentTokenStatus {
        observed_generation: observed.generation,
        provider: observed.provider.map(|p| p.as_str().to_owned()),
        conditions: vec![Condition {
            type_: READY.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: observed.generation,
            last_transition_time,
        }],
        expires_at: current.and_then(|c| c.expires_at).map(whole_seconds),
        last_refresh_time: current.map(|c| whole_seconds(c.refreshed_at)),
        next_refresh_time: Some(whole_seconds(observed.next_refresh)),
        consecutive_failures: observed.consecutive_failures,
        token_fingerprint: current.map(|c| c.fingerprint.clone()),
        collection_point_version: current.and_then(|c| c.collection_point_version),
        credentials_version: current.map(|c| c.credentials_version.clone()),
        refresh_requested_at: observed.refresh_requested_at.clone(),
        rate_limit: rate_limit.map(Box::new),
        last_failure: last_failure.map(Box::new),
    }
}

/// A time as the API server stores it (RFC 3339, whole seconds), so a status read back equals
/// the one computed and is not written again for a difference in nanoseconds.
fn whole_seconds(t: Timestamp) -> Time {
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
    let conflict = Error::TargetConflict(String::new()).reason();
    match &previous.last_failure {
        Some(failure) if previous.consecutive_failures > 0 && failure.reason == conflict => {
            ConsentTokenStatus { consecutive_failures: 0, last_failure: None, next_refresh_time: None, ..previous }
        }
        _ => previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_is_forgotten_once_the_target_is_ours_and_other_failures_are_not() {
        let failed = |reason: &str| ConsentTokenStatus {
            consecutive_failures: 2,
            last_failure: Some(Box::new(FailureStatus {
                reason: reason.into(),
                message: "m".into(),
                time: Time(jiff::Timestamp::UNIX_EPOCH),
            })),
            next_refresh_time: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
            ..Default::default()
        };
        let over = conflict_over(failed("TargetConflict"));
        assert_eq!((over.consecutive_failures, over.last_failure, over.next_refresh_time), (0, None, None));
        assert_eq!(conflict_over(failed("UpstreamError")), failed("UpstreamError"));
    }

    use crate::fixtures;

    fn record(expires_at: Option<&str>) -> TokenRecord {
        TokenRecord {
            refreshed_at: "2026-11-23T10:00:00Z".parse().unwrap(),
            expires_at: expires_at.map(|e| e.parse().unwrap()),
            next_refresh_at: "2026-11-23T10:02:30Z".parse().unwrap(),
            collection_point_version: Some(3),
            ..fixtures::record()
        }
    }

    fn failure_at(err: Error, now: &str) -> Failure {
        Failure::new(&err, now.parse().unwrap())
    }

    fn observed<'a>(now: &str, current: Option<&'a TokenRecord>, failure: Option<&'a Failure>) -> Observed<'a> {
        Observed {
            now: now.parse().unwrap(),
            generation: Some(1),
            provider: Some(ProviderKind::Fdx),
            current,
            failure,
            consecutive_failures: i32::from(failure.is_some()),
            next_refresh: "2026-11-23T10:02:30Z".parse().unwrap(),
            refresh_requested_at: None,
        }
    }

    fn ready(status: &ConsentTokenStatus) -> (&str, &str) {
        let c = &status.conditions[0];
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn every_reason_the_operator_writes_is_documented_for_users() {
        let page = include_str!("../../docs/reference/reasons.md");
        for reason in OWN_REASONS {
            assert!(page.contains(&format!("| `{reason}` |")), "docs/reference/reasons.md has a row for {reason}");
        }
    }

    #[test]
    fn ready_follows_the_clock() {
        let token = record(Some("2026-11-23T10:05:00Z"));
        let before = desired(None, &observed("2026-11-23T10:04:59Z", Some(&token), None));
        assert_eq!(ready(&before), ("True", "TokenValid"));
        let after = desired(Some(&before), &observed("2026-11-23T10:05:00Z", Some(&token), None));
        assert_eq!(ready(&after), ("False", "Expired"));
        assert_ne!(after.conditions[0].last_transition_time, before.conditions[0].last_transition_time);
    }

    #[test]
    fn a_failed_refresh_keeps_ready_while_the_old_token_is_valid_and_says_why() {
        let token = record(Some("2026-11-23T10:05:00Z"));
        let failure = failure_at(Error::UpstreamStatus { status: 503, retry_after: None }, "2026-11-23T10:03:00Z");
        let status = desired(None, &observed("2026-11-23T10:03:00Z", Some(&token), Some(&failure)));
        assert_eq!(ready(&status), ("True", "UpstreamError"));
        assert!(status.conditions[0].message.contains("503"));
        assert_eq!(status.token_fingerprint.as_deref(), Some("sha256:0011223344556677"));
        let unauthorized = failure_at(Error::Unauthorized { status: 401 }, "2026-11-23T10:03:00Z");
        let never = desired(None, &observed("2026-11-23T10:03:00Z", None, Some(&unauthorized)));
        assert_eq!(ready(&never), ("False", "Unauthorized"));
    }

    #[test]
    fn tokens_without_expiry_stay_ready_and_rate_limits_are_reported() {
        let token = record(None);
        let limit = RateLimit {
            retry_after: std::time::Duration::from_secs(2135),
            capped: false,
            period: Some("HOUR".into()),
            requests_allowed: Some(10),
            requests_made: Some(11),
            event_id: Some("e".into()),
        };
        let failure = failure_at(Error::RateLimited(Box::new(limit)), "2030-01-01T00:00:00Z");
        let status = desired(None, &observed("2030-01-01T00:00:00Z", Some(&token), Some(&failure)));
        assert_eq!(ready(&status), ("True", "RateLimited"));
        let rl = status.rate_limit.unwrap();
        assert_eq!(rl.retry_after.unwrap().0, "2030-01-01T00:35:35Z".parse().unwrap());
        assert_eq!(rl.period.as_deref(), Some("HOUR"));
        assert_eq!(status.collection_point_version, Some(3));
    }

    #[test]
    fn the_last_failure_stays_while_failures_go_on_and_goes_with_a_success() {
        let token = record(Some("2026-11-23T10:05:00Z"));
        let limit = RateLimit {
            retry_after: std::time::Duration::from_secs(60),
            capped: false,
            period: Some("MINUTE".into()),
            requests_allowed: None,
            requests_made: None,
            event_id: None,
        };
        let failure = failure_at(Error::RateLimited(Box::new(limit)), "2026-11-23T10:03:00Z");
        let failed = desired(None, &observed("2026-11-23T10:03:00Z", Some(&token), Some(&failure)));
        // A later reconcile that only waits (or a restarted operator) carries it.
        let carried = Failure::carried(&failed).unwrap();
        let waiting = desired(Some(&failed), &observed("2026-11-23T10:03:30Z", Some(&token), Some(&carried)));
        assert_eq!(waiting, failed, "nothing changes, so nothing is written");
        assert_eq!(waiting.last_failure.as_ref().unwrap().reason, "RateLimited");
        assert!(waiting.rate_limit.is_some());
        // At expiry it is still said why.
        let expired = desired(Some(&failed), &observed("2026-11-23T10:05:01Z", Some(&token), Some(&carried)));
        assert_eq!(ready(&expired), ("False", "Expired"));
        assert!(expired.conditions[0].message.contains("rate limiting"), "{}", expired.conditions[0].message);
        // A success clears it.
        let mut ok = observed("2026-11-23T10:04:00Z", Some(&token), None);
        ok.consecutive_failures = 0;
        let recovered = desired(Some(&failed), &ok);
        assert_eq!((&recovered.last_failure, &recovered.rate_limit), (&None, &None));
        assert!(Failure::carried(&recovered).is_none());
    }

    #[test]
    fn a_status_read_back_from_the_api_server_equals_the_one_computed() {
        // Times with nanoseconds (a fetch time, a planned refresh) are stored in whole seconds.
        let mut token = record(Some("2026-11-23T10:05:00Z"));
        token.refreshed_at = "2026-11-23T10:00:00.123456789Z".parse().unwrap();
        let mut seen = observed("2026-11-23T10:00:00.5Z", Some(&token), None);
        seen.next_refresh = "2026-11-23T10:02:30.987Z".parse().unwrap();
        let status = desired(None, &seen);
        let json = serde_json::to_string(&status).unwrap();
        assert!(!json.contains(".123") && !json.contains(".987") && !json.contains(".5Z"), "{json}");
        let stored: ConsentTokenStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(stored, status);
        assert_eq!(status.next_refresh_time.unwrap().0, "2026-11-23T10:02:30Z".parse().unwrap());
    }
}
