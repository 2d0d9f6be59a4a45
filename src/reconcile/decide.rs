//! Whether to fetch a token now or keep the current one until a later time. Pure: every input
//! is an argument, so each rule is a unit test.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::crd::ConsentTokenStatus;
use crate::reconcile::token_record::TokenRecord;

/// A wake-up later than this after its scheduled time was not our own timer (a restart).
const OVERDUE_SLACK: Duration = Duration::from_secs(2);

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
    /// A refresh request came within `--min-refresh-request-interval` of the last attempt: it is
    /// served then (or sooner, when the token is due sooner), and stays unhandled meanwhile.
    HoldRequest(Timestamp),
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
    /// Fingerprint of the request the spec asks for now (see `spec::ValidSpec::request`).
    pub request: &'a str,
    /// The least time between the last attempt and a fetch a refresh request forces.
    pub request_interval: Duration,
}

/// Whether to fetch now or wait. `defer` picks a deferral for an overdue object on the first
/// reconcile after a start (see [`crate::scheduling::schedule::overdue_window`]).
pub fn decide(s: &Situation<'_>, defer: impl FnOnce(Option<Timestamp>) -> Option<Timestamp>) -> Decision {
    let other_request = answers_other_request(s);
    // What a person did comes first, even during a backoff. A change of only the target or
    // the schedule keeps a good token (the Secret is reshaped without a fetch).
    let spec_changed = s.previous.observed_generation.is_some() && s.previous.observed_generation != s.generation;
    if spec_changed && (other_request || s.current.is_none() || s.previous.consecutive_failures > 0) {
        return Decision::Fetch(Why::SpecChanged);
    }
    if let Some(requested) = s.refresh_requested_at
        && s.previous.refresh_requested_at.as_deref() != Some(requested)
    {
        // Each new annotation value would force a request to a quota the account's other
        // users share: at most one per interval.
        let last_attempt = [s.current.map(|c| c.refreshed_at), s.previous.last_failure.as_ref().map(|f| f.time.0)]
            .into_iter()
            .flatten()
            .max();
        let allowed_at = last_attempt.map(|at| crate::basics::time_math::later(at, s.request_interval));
        match allowed_at {
            Some(allowed_at) if allowed_at > s.now => {
                return match decide_unrequested(s, defer) {
                    Decision::Wait(until) | Decision::HoldRequest(until) => {
                        Decision::HoldRequest(until.min(allowed_at))
                    }
                    fetch => fetch,
                };
            }
            _ => return Decision::Fetch(Why::Requested),
        }
    }
    decide_unrequested(s, defer)
}

/// The token in the Secret answers another request (a spec or provider change). Secrets
/// written before requests were recorded go by the spec's generation.
fn answers_other_request(s: &Situation<'_>) -> bool {
    s.current.is_some_and(|c| match &c.request {
        Some(request) => request != s.request,
        None => c.generation != s.generation.unwrap_or_default(),
    })
}

/// [`decide`] for everything after a person's requests.
fn decide_unrequested(s: &Situation<'_>, defer: impl FnOnce(Option<Timestamp>) -> Option<Timestamp>) -> Decision {
    let other_request = answers_other_request(s);
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
    if other_request && s.previous.consecutive_failures == 0 {
        return Decision::Fetch(Why::SpecChanged);
    }
    let due = if s.previous.consecutive_failures > 0 {
        retry_at.unwrap_or(s.now)
    } else {
        // A deferral planned by an earlier reconcile of this process (an overdue token after a
        // start, see `schedule::overdue_window`) holds for the reconciles that follow, as long
        // as it leaves the kubelet its time before expiry.
        let safe = |at: Timestamp| {
            current.expires_at.is_none_or(|exp| {
                crate::basics::time_math::between(at, exp) > crate::scheduling::schedule::KUBELET_PROPAGATION
            })
        };
        match retry_at {
            Some(planned) if !s.first_reconcile && planned > current.next_refresh_at && safe(planned) => planned,
            _ => current.next_refresh_at,
        }
    };
    if due > s.now {
        return Decision::Wait(due);
    }
    if s.first_reconcile
        && crate::basics::time_math::between(due, s.now) > OVERDUE_SLACK
        && let Some(later) = defer(current.expires_at)
    {
        return Decision::Wait(later);
    }
    Decision::Fetch(Why::Due)
}

/// Whether an attempt the operator held back (nothing sent: a busy or paused host, a namespace
/// that used its share) goes back in the queue without a failure to report: where the workload
/// still has a usable token, and where the status already shows a failure. A held attempt is
/// not a failed one: it neither counts nor rewrites what a reader sees (thousands of held
/// objects would otherwise spend the API write budget on messages that alternate with each
/// retry). Only an object with no usable token and no failure shown yet reports it.
pub fn held_quietly(urgent: bool, failures_shown: i32) -> bool {
    !urgent || failures_shown > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, t};

    #[test]
    fn a_held_attempt_is_reported_only_where_no_usable_token_and_no_failure_are_shown() {
        assert!(held_quietly(false, 0), "a usable token: nothing to report");
        assert!(held_quietly(true, 3), "already failing: the status stays as it is");
        assert!(!held_quietly(true, 0), "no usable token and nothing shown: say why");
    }
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn record(next: i64, expires: i64) -> TokenRecord {
        TokenRecord { next_refresh_at: t(next), expires_at: Some(t(expires)), ..fixtures::record() }
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
            request: "sha256:aaaaaaaaaaaaaaaa",
            request_interval: Duration::ZERO,
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
        let backing_off =
            ConsentTokenStatus { consecutive_failures: 3, next_refresh_time: Some(Time(t(100))), ..ok_status() };
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
    fn refresh_requests_are_served_at_most_once_per_interval() {
        // Fetched at t(100) (fixtures::record), due at t(250).
        let rec = TokenRecord { refreshed_at: t(100), ..record(250, 400) };
        let prev = ok_status();
        let mut s = situation(110, Some(&rec), &prev);
        s.request_interval = Duration::from_secs(30);
        s.refresh_requested_at = Some("one");
        assert_eq!(decide(&s, |_| None), Decision::HoldRequest(t(130)), "served 30 s after the last fetch");
        s.now = t(130);
        assert_eq!(decide(&s, |_| None), Decision::Fetch(Why::Requested));
        // A due renewal is not put off by a held request.
        let due_soon = TokenRecord { refreshed_at: t(100), ..record(120, 400) };
        let mut s = situation(110, Some(&due_soon), &prev);
        s.request_interval = Duration::from_secs(30);
        s.refresh_requested_at = Some("two");
        assert_eq!(decide(&s, |_| None), Decision::HoldRequest(t(120)));
        // A failed attempt counts as the last one too, even during a back-off.
        let failed = ConsentTokenStatus {
            consecutive_failures: 1,
            next_refresh_time: Some(Time(t(400))),
            last_failure: Some(Box::new(crate::api::crd::FailureStatus {
                reason: "UpstreamError".into(),
                message: "m".into(),
                time: Time(t(200)),
            })),
            ..ok_status()
        };
        let mut s = situation(210, Some(&rec), &failed);
        s.request_interval = Duration::from_secs(30);
        s.refresh_requested_at = Some("three");
        assert_eq!(decide(&s, |_| None), Decision::HoldRequest(t(230)));
        s.now = t(231);
        assert_eq!(decide(&s, |_| None), Decision::Fetch(Why::Requested));
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
    #[test]
    fn a_new_request_fetches_and_a_new_target_alone_does_not() {
        let rec = record(150, 300);
        let prev = ok_status();
        // The spec changed (generation 2) but asks for the same request: keep the token.
        let mut s = situation(10, Some(&rec), &prev);
        s.generation = Some(2);
        assert_eq!(decide(&s, |_| None), Decision::Wait(t(150)));
        // Another request, with or without a spec change (a provider object changed).
        s.request = "sha256:bbbbbbbbbbbbbbbb";
        assert_eq!(decide(&s, |_| None), Decision::Fetch(Why::SpecChanged));
        let mut s = situation(10, Some(&rec), &prev);
        s.request = "sha256:bbbbbbbbbbbbbbbb";
        assert_eq!(decide(&s, |_| None), Decision::Fetch(Why::SpecChanged));
        // A Secret written before requests were recorded: the generation decides.
        let legacy = TokenRecord { request: None, ..record(150, 300) };
        let mut s = situation(10, Some(&legacy), &prev);
        assert_eq!(decide(&s, |_| None), Decision::Wait(t(150)));
        s.generation = Some(2);
        assert_eq!(decide(&s, |_| None), Decision::Fetch(Why::SpecChanged));
    }

    #[test]
    fn a_deferral_after_a_start_holds_for_the_reconciles_that_follow() {
        // A 300-second token due at t(150); the first reconcile after a start deferred it to t(170).
        let rec = TokenRecord { expires_at: Some(t(400)), ..record(150, 400) };
        let deferred = ConsentTokenStatus { next_refresh_time: Some(Time(t(170))), ..ok_status() };
        assert_eq!(decide(&situation(160, Some(&rec), &deferred), |_| None), Decision::Wait(t(170)));
        assert_eq!(decide(&situation(170, Some(&rec), &deferred), |_| None), Decision::Fetch(Why::Due));
        // Never closer to expiry than the kubelet needs.
        let late = ConsentTokenStatus { next_refresh_time: Some(Time(t(350))), ..ok_status() };
        assert_eq!(decide(&situation(160, Some(&rec), &late), |_| None), Decision::Fetch(Why::Due));
    }
}
