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
        request_held: false,
        schedule: Schedule::default(),
    }
}

fn ready(status: &ConsentTokenStatus) -> (&str, &str) {
    let c = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn every_reason_the_operator_writes_is_documented_for_users() {
    let page = include_str!("../../../docs/reference/reasons.md");
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
    // Times with nanoseconds (a fetch time, a planned retry) are stored in whole seconds.
    let mut token = record(Some("2026-11-23T10:05:00Z"));
    token.refreshed_at = "2026-11-23T10:00:00.123456789Z".parse().unwrap();
    let failure = failure_at(Error::UpstreamStatus { status: 503, retry_after: None }, "2026-11-23T10:00:00.5Z");
    let mut seen = observed("2026-11-23T10:00:00.5Z", Some(&token), Some(&failure));
    seen.next_refresh = "2026-11-23T10:02:30.987Z".parse().unwrap();
    let status = desired(None, &seen);
    let json = serde_json::to_string(&status).unwrap();
    assert!(!json.contains(".123") && !json.contains(".987") && !json.contains(".5Z"), "{json}");
    let stored: ConsentTokenStatus = serde_json::from_str(&json).unwrap();
    assert_eq!(stored, status);
    assert_eq!(status.next_refresh_time.unwrap().0, "2026-11-23T10:02:30Z".parse().unwrap());
}

#[test]
fn a_routine_renewal_leaves_nothing_new_to_write() {
    let first = record(Some("2026-11-23T10:05:00Z"));
    let status = desired(None, &observed("2026-11-23T10:00:01Z", Some(&first), None));
    assert_eq!(ready(&status), ("True", "TokenValid"));
    assert_eq!(status.token_lifetime.as_deref(), Some("5m"));
    let message = &status.conditions[0].message;
    assert!(message.contains("renewed with 50% of their lifetime left") && !message.contains("10:05"), "{message}");
    // The next token, fetched 2.6 minutes later, lives 299 s: the status is the same.
    let next = TokenRecord {
        refreshed_at: "2026-11-23T10:02:31Z".parse().unwrap(),
        expires_at: Some("2026-11-23T10:07:30Z".parse().unwrap()),
        next_refresh_at: "2026-11-23T10:05:00Z".parse().unwrap(),
        fingerprint: "sha256:ffeeddccbbaa9988".into(),
        ..first.clone()
    };
    let mut renewed = observed("2026-11-23T10:02:31Z", Some(&next), None);
    renewed.next_refresh = next.next_refresh_at;
    assert_eq!(desired(Some(&status), &renewed), status);
    // No time in it can go stale while Ready is True.
    assert_eq!((&status.expires_at, &status.last_refresh_time, &status.next_refresh_time), (&None, &None, &None));
    assert_eq!(status.token_fingerprint, None);
    // At expiry, the token it then describes is shown with its times.
    let expired = desired(Some(&status), &observed("2026-11-23T10:05:00Z", Some(&first), None));
    assert_eq!(ready(&expired), ("False", "Expired"));
    assert_eq!(expired.expires_at.unwrap().0, "2026-11-23T10:05:00Z".parse().unwrap());
    assert_eq!(expired.token_fingerprint, Some(first.fingerprint));
}

#[test]
fn a_token_without_expiry_is_described_by_its_interval() {
    let token = record(None);
    let mut seen = observed("2026-11-23T10:00:01Z", Some(&token), None);
    seen.schedule =
        Schedule::from_policy(&crate::api::crd::RefreshPolicy { renew_before: None, interval: Some("30m".into()) })
            .unwrap();
    let status = desired(None, &seen);
    assert_eq!(status.token_lifetime, None);
    assert!(status.conditions[0].message.contains("without expiry, fetched again every 30m"));
}

#[test]
fn a_refresh_request_held_back_says_when_it_is_served() {
    let token = record(Some("2026-11-23T10:05:00Z"));
    let mut seen = observed("2026-11-23T10:00:05Z", Some(&token), None);
    seen.request_held = true;
    seen.next_refresh = "2026-11-23T10:00:30Z".parse().unwrap();
    let status = desired(None, &seen);
    assert_eq!(ready(&status), ("True", "TokenValid"));
    assert_eq!(status.next_refresh_time.unwrap().0, "2026-11-23T10:00:30Z".parse().unwrap());
}

fn synced(status: &ConsentTokenStatus) -> (&str, &str) {
    let c = status.conditions.iter().find(|c| c.type_ == SYNCED).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn synced_is_false_while_refreshes_fail_though_ready_stays_true() {
    let token = record(Some("2026-11-23T10:05:00Z"));
    assert_eq!(synced(&desired(None, &observed("2026-11-23T10:00:01Z", None, None))), ("False", "Pending"));
    let healthy = desired(None, &observed("2026-11-23T10:00:01Z", Some(&token), None));
    assert_eq!(synced(&healthy), ("True", "Refreshed"));
    let failure = failure_at(Error::UpstreamStatus { status: 503, retry_after: None }, "2026-11-23T10:03:00Z");
    let failing = desired(Some(&healthy), &observed("2026-11-23T10:03:00Z", Some(&token), Some(&failure)));
    assert_eq!((ready(&failing), synced(&failing)), (("True", "UpstreamError"), ("False", "UpstreamError")));
    let condition = failing.conditions.iter().find(|c| c.type_ == SYNCED).unwrap();
    assert!(condition.message.starts_with("the last refresh failed: ") && condition.message.contains("503"));
    assert_eq!(condition.last_transition_time.0, "2026-11-23T10:03:00Z".parse().unwrap());
    // A success turns it True again, from that moment.
    let mut ok = observed("2026-11-23T10:03:20Z", Some(&token), None);
    ok.consecutive_failures = 0;
    let recovered = desired(Some(&failing), &ok);
    assert_eq!(synced(&recovered), ("True", "Refreshed"));
    let condition = recovered.conditions.iter().find(|c| c.type_ == SYNCED).unwrap();
    assert_eq!(condition.last_transition_time.0, "2026-11-23T10:03:20Z".parse().unwrap());
    // A token that expires with no failed refresh (the operator was down): Ready says so.
    let expired = desired(Some(&healthy), &observed("2026-11-23T10:05:00Z", Some(&token), None));
    assert_eq!((ready(&expired), synced(&expired)), (("False", "Expired"), ("True", "Refreshed")));
}
