//! A good token is never lost: whatever an upstream answers (a rate limit, server errors,
//! silence, garbage, a refusal, a token too short-lived), the token in the Secret stays where
//! pods read it, each failure shows in status with its own reason, retries keep to the
//! provider's terms, and the operator recovers on its own once the upstream does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::{Duration, Instant};

use fake_provider::{Endpoint, Fault};
use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use support::operator::{Launch, Operator, TestEnv, ready_message};

/// A Ready MX token, then `fault` on the next answers and a forced refresh; returns the token
/// that was in the Secret before.
async fn ready_then_fault(env: &TestEnv, fault: Fault, times: Option<u32>) -> String {
    env.fdx_token("mx", "customer-1").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    let good = env.token_in_secret("mx", "token").await.unwrap();
    env.fake.inject(Endpoint::FdxToken, fault, times);
    env.request_refresh("mx").await;
    good
}

#[tokio::test]
async fn rate_limited_waits_the_full_retry_after_and_reports_the_provider_facts() {
    let env = TestEnv::start("ratelimit").await;
    let good = ready_then_fault(&env, Fault::RateLimited { retry_after: "3600".into() }, None).await;
    let ct = env.wait_for_ready("mx", "True", "RateLimited").await;
    assert_eq!(env.token_in_secret("mx", "token").await.as_deref(), Some(good.as_str()));

    let status = ct.status.unwrap();
    let limit = status.rate_limit.expect("rate limit facts in status");
    assert_eq!(limit.period.as_deref(), Some("MINUTE"));
    assert_eq!((limit.requests_allowed, limit.requests_made), (Some(1000), Some(1001)));
    assert!(limit.event_id.is_some());
    let wait = status.next_refresh_time.unwrap().0.duration_since(Timestamp::now()).as_secs();
    assert!(wait >= 3590, "next attempt in {wait}s, not before Retry-After");

    // Another forced refresh during the wait is handled (reported in status) and held back
    // without reaching the provider.
    let requests = env.fake.requests(Endpoint::FdxToken);
    env.refresh_and_wait_handled("mx").await;
    assert_eq!(env.fake.requests(Endpoint::FdxToken), requests);
    assert!(env.operator.metrics().await.contains("consent_token_rate_limit_waits_total{provider=\"FDX\"} 1"));
}

#[tokio::test]
async fn server_errors_back_off_then_recover_with_a_new_token() {
    let env = TestEnv::start("fivexx").await;
    let good = ready_then_fault(&env, Fault::Status(503), Some(2)).await;
    let failing = env.wait_for_ready("mx", "True", "UpstreamError").await;
    assert!(failing.status.as_ref().unwrap().conditions[0].message.contains("HTTP 503"));
    assert_eq!(env.token_in_secret("mx", "token").await.as_deref(), Some(good.as_str()));
    // Retries on its own (about 2 s, then 4 s) and recovers once the provider does.
    let recovered = env.wait_for_ready("mx", "True", "TokenValid").await.status.unwrap();
    assert_eq!(recovered.consecutive_failures, 0);
    assert_ne!(env.token_in_secret("mx", "token").await.as_deref(), Some(good.as_str()));
    assert_eq!(env.fake.answers(Endpoint::FdxToken, 503), 2);

    // Events mark transitions only: one for the failure (not one per failed attempt; the
    // recorder would fold repeats into `series`), and the way back to TokenValid. The Event of
    // a transition is published after its status is written: wait until the recovery's is seen.
    let token_valid = |events: &[Event]| -> i32 {
        // First token and recovery: two occurrences, which the recorder may fold into one series.
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("TokenValid"))
            .map(|e| e.series.as_ref().map_or(1, |s| s.count))
            .sum()
    };
    let events = support::eventually("the recovery's TokenValid event", Duration::from_secs(10), || async {
        let list = Api::<Event>::namespaced(env.client.clone(), &env.namespace).list(&ListParams::default()).await;
        list.ok().map(|l| l.items).filter(|items| token_valid(items) >= 2)
    })
    .await;
    let upstream: Vec<_> = events.iter().filter(|e| e.reason.as_deref() == Some("UpstreamError")).collect();
    assert_eq!(upstream.len(), 1, "one UpstreamError event");
    assert!(upstream[0].series.is_none(), "no repeated UpstreamError event");
    assert_eq!(token_valid(&events), 2, "TokenValid announced when first fetched and when recovered");
}

#[tokio::test]
async fn slow_answers_time_out() {
    let env = TestEnv::start_with("slow", &["--upstream-timeout", "1s"]).await;
    let good = ready_then_fault(&env, Fault::Slow(Duration::from_secs(5)), None).await;
    let ct = env.wait_for_ready("mx", "True", "UpstreamError").await;
    assert!(ct.status.unwrap().conditions[0].message.contains("timed out"));
    assert_eq!(env.token_in_secret("mx", "token").await.as_deref(), Some(good.as_str()));
}

#[tokio::test]
async fn garbage_is_never_written() {
    let env = TestEnv::start("garbage").await;
    // The truncated example token from the OneTrust document, in the MX answer shape.
    let truncated = r#"{"access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."}"#;
    let good = ready_then_fault(&env, Fault::Garbage(truncated.into()), None).await;
    let ct = env.wait_for_ready("mx", "True", "InvalidResponse").await;
    assert!(ct.status.unwrap().conditions[0].message.contains("not a compact JWT"));
    assert_eq!(env.token_in_secret("mx", "token").await.as_deref(), Some(good.as_str()));

    for body in ["<html>maintenance</html>", r#"{"access_token": ""}"#, "{}"] {
        env.fake.inject(Endpoint::FdxToken, Fault::Garbage(body.into()), None);
        let before = env.fake.requests(Endpoint::FdxToken);
        // The status of the reconcile that fetched this answer, not the previous one's.
        let ct = env.refresh_and_wait_handled("mx").await;
        assert_eq!(env.fake.requests(Endpoint::FdxToken), before + 1, "{body} fetched");
        let ready = ct.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "InvalidResponse"), "after {body}");
        assert_eq!(env.token_in_secret("mx", "token").await.as_deref(), Some(good.as_str()), "after {body}");
    }
}

#[tokio::test]
async fn not_found_and_oversized_answers_are_reported_and_never_written() {
    let env = TestEnv::start("notfound").await;
    env.fdx_token("mx", "not-found-customer").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    let good = env.token_in_secret("mx", "token").await.unwrap();
    env.fake.inject(Endpoint::FdxToken, Fault::Status(404), Some(1));
    env.request_refresh("mx").await;
    env.wait_for_ready("mx", "True", "UpstreamRejected").await;
    // 100 KiB of JSON: read no further than 64 KiB.
    let huge = format!(r#"{{"access_token": "{}"}}"#, "a".repeat(100 * 1024));
    env.fake.inject(Endpoint::FdxToken, Fault::Garbage(huge), Some(1));
    env.request_refresh("mx").await;
    let ct = env.wait_for_ready("mx", "True", "InvalidResponse").await;
    assert!(ready_message(&ct).contains("larger than 64 KiB"), "{}", ready_message(&ct));
    assert_eq!(env.token_in_secret("mx", "token").await, Some(good));
}

#[tokio::test]
async fn a_token_too_short_lived_or_shorter_than_the_current_one_is_not_written() {
    let setup = TestEnv::setup("shortlived", &[]).await;
    // The operator's default minimum (90 s: the kubelet's propagation time).
    let launch = Launch { min_token_lifetime: "90s".into(), ..setup.launch_defaults() };
    let env = setup.launch(launch).await;

    env.fake.set_fdx_lifetime(30);
    env.fdx_token("short", "short-lived-customer").await;
    let ct = env.wait_for_ready("short", "False", "InvalidResponse").await;
    assert!(ready_message(&ct).contains("--min-token-lifetime"), "{}", ready_message(&ct));
    assert!(env.token_in_secret("short", "token").await.is_none());

    // A 600-second token in place; the provider then hands out 120-second ones.
    env.fake.set_fdx_lifetime(600);
    env.create_token(
        "long",
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": "long-lived-customer",
            "credentialsSecretRef": {"name": "mx-credentials"}}}),
    )
    .await;
    env.wait_for_ready("long", "True", "TokenValid").await;
    let good = env.token_in_secret("long", "token").await.unwrap();
    env.fake.set_fdx_lifetime(120);
    let before = env.fake.requests(Endpoint::FdxToken);
    env.request_refresh("long").await;
    env.wait_for_requests(Endpoint::FdxToken, before + 1).await;
    let ct = env.wait_for_ready("long", "True", "InvalidResponse").await;
    assert!(ready_message(&ct).contains("expires before the one in the Secret"), "{}", ready_message(&ct));
    assert_eq!(env.token_in_secret("long", "token").await, Some(good));
}

#[tokio::test]
async fn refused_credentials_do_not_hot_loop() {
    let env = TestEnv::start("unauth").await;
    let good = ready_then_fault(&env, Fault::Status(401), None).await;
    let ct = env.wait_for_ready("mx", "True", "Unauthorized").await;
    assert!(ct.status.unwrap().conditions[0].message.contains("check the credentials Secret"));
    // The retry is scheduled on the slow configuration backoff, and a reconcile meanwhile (the
    // operator's reconcile count moves) does not retry early.
    let requests = env.fake.requests(Endpoint::FdxToken);
    let status = env.tokens().get("mx").await.unwrap().status.unwrap();
    let wait = status.next_refresh_time.unwrap().0.duration_since(Timestamp::now()).as_secs();
    assert!(wait >= 5, "next attempt in {wait}s after a 401");
    let reconciles = env.operator.reconciles().await;
    env.tokens()
        .patch(
            "mx",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"annotations": {"unrelated": "1"}}})),
        )
        .await
        .unwrap();
    env.operator.wait_for_reconciles(reconciles).await;
    assert_eq!(env.fake.requests(Endpoint::FdxToken), requests, "no retry within seconds of a 401");
    assert_eq!(env.token_in_secret("mx", "token").await.as_deref(), Some(good.as_str()));
}

#[tokio::test]
async fn an_oauth_refusal_points_at_the_credentials_not_the_spec() {
    let env = TestEnv::start("oauth400").await;
    env.fake.inject(Endpoint::OneTrustOAuth, Fault::Status(400), None);
    env.onetrust_token("cp", "ot-secret-oauth-400").await;
    let ct = env.wait_for_ready("cp", "False", "UpstreamRejected").await;
    let message = ready_message(&ct);
    assert!(message.contains("OAuth token endpoint") && message.contains("credentials Secret"), "{message}");
    assert!(!message.contains("spec"), "{message}");
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 2, "multipart, then form-urlencoded once");
    assert_eq!(env.fake.requests(Endpoint::CollectionPointToken), 0);
}

#[tokio::test]
async fn forbidden_is_about_scope_and_keeps_the_access_token() {
    let env = TestEnv::start("forbidden").await;
    env.onetrust_token("cp", "ot-secret-forbidden").await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    env.fake.inject(Endpoint::CollectionPointToken, Fault::Status(403), None);
    for attempt in 0..2 {
        let before = env.fake.requests(Endpoint::CollectionPointToken);
        env.request_refresh("cp").await;
        env.wait_for_requests(Endpoint::CollectionPointToken, before + 1).await;
        let ct = env.wait_for_ready("cp", "True", "Forbidden").await;
        assert!(ready_message(&ct).contains("scope"), "attempt {attempt}: {}", ready_message(&ct));
    }
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 1, "no access-token churn on 403");
}

#[tokio::test]
async fn missing_credentials_are_reported_and_picked_up_when_created() {
    let env = TestEnv::start("nocreds").await;
    env.fake.add_fdx_client("mx-client", "mx-secret-value");
    env.create_token(
        "mx",
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": "c",
            "credentialsSecretRef": {"name": "not-yet"}}}),
    )
    .await;
    let ct = env.wait_for_ready("mx", "False", "CredentialsNotFound").await;
    assert!(ct.status.unwrap().conditions[0].message.contains("\"not-yet\""));
    assert!(env.secrets().get_opt("mx").await.unwrap().is_none());
    // Created later: picked up at once, not after the configuration backoff.
    env.put_secret("not-yet", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
}

#[tokio::test]
async fn deleted_credentials_are_not_used_from_memory() {
    let env = TestEnv::start("credsgone").await;
    env.fdx_token("mx", "customer-1").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    let good = env.token_in_secret("mx", "token").await.unwrap();
    // The operator has read these credentials once; after the Secret is deleted, a refresh
    // must not go ahead with what it remembers.
    // The deletion reaches the operator through its watch, which then reconciles the users of
    // the Secret: its reconcile count moving proves it has seen the deletion.
    let reconciles = env.operator.reconciles().await;
    env.secrets().delete("mx-credentials", &Default::default()).await.unwrap();
    env.operator.wait_for_reconciles(reconciles).await;
    let ct = env.refresh_and_wait_handled("mx").await;
    let ready = ct.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().clone();
    assert_eq!(ready.reason, "CredentialsNotFound");
    assert!(ct.status.unwrap().conditions[0].message.contains("mx-credentials"));
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 1, "no fetch without credentials");
    assert_eq!(env.token_in_secret("mx", "token").await.as_deref(), Some(good.as_str()), "token kept");
}

#[tokio::test]
async fn a_503_retry_after_is_honoured() {
    let env = TestEnv::start("retry503").await;
    env.fdx_token("mx", "retry-after-503-customer").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    env.fake.inject(Endpoint::FdxToken, Fault::Unavailable { retry_after: "120".into() }, Some(1));
    env.request_refresh("mx").await;
    let ct = env.wait_for_ready("mx", "True", "UpstreamError").await;
    assert!(ready_message(&ct).contains("asked to wait 120s"), "{}", ready_message(&ct));
    let wait = ct.status.unwrap().next_refresh_time.unwrap().0.duration_since(Timestamp::now()).as_secs();
    assert!(wait >= 110, "next attempt in {wait}s, not before the Retry-After");
}

#[tokio::test]
async fn an_hourly_limit_holds_back_one_account_on_every_endpoint_and_no_other() {
    let env = TestEnv::start("peraccount").await;
    for (client, secret) in [("ot-a", "ot-secret-account-a"), ("ot-b", "ot-secret-account-b")] {
        env.fake.add_onetrust_client(client, secret);
        env.put_secret(client, &[("client_id", client), ("client_secret", secret)]).await;
    }
    let onetrust = |secret: &str| {
        serde_json::json!({"oneTrust": {"hostname": env.fake.host(),
            "collectionPoint": {"guid": "123e4567-e89b-12d3-a456-426614174000"}, "credentialsSecretRef": {"name": secret}}})
    };
    env.create_token("cp-a", onetrust("ot-a")).await;
    env.create_token("cp-b", onetrust("ot-b")).await;
    env.wait_for_ready("cp-a", "True", "TokenValid").await;
    env.wait_for_ready("cp-b", "True", "TokenValid").await;

    let hourly = Fault::RateLimitedFor { retry_after: "3600".into(), period: "HOUR".into() };
    env.fake.inject(Endpoint::CollectionPointToken, hourly, Some(1));
    env.request_refresh("cp-a").await;
    env.wait_for_ready("cp-a", "True", "RateLimited").await;
    let oauth = env.fake.requests(Endpoint::OneTrustOAuth);

    // Account A is held back on the OAuth endpoint too: a Secret with A's client id but another
    // secret needs a new access token, and does not get to ask for one.
    env.put_secret("ot-a-copy", &[("client_id", "ot-a"), ("client_secret", "ot-secret-account-a-copy")]).await;
    env.create_token("cp-a-copy", onetrust("ot-a-copy")).await;
    let held = env.wait_for_ready("cp-a-copy", "False", "RateLimited").await;
    assert_eq!(held.status.unwrap().rate_limit.unwrap().period.as_deref(), Some("HOUR"));
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), oauth, "no OAuth request for the limited account");

    // Account B on the same host is not held back.
    let before = env.fake.requests(Endpoint::CollectionPointToken);
    env.request_refresh("cp-b").await;
    env.wait_for_requests(Endpoint::CollectionPointToken, before + 1).await;
    env.wait_for_ready("cp-b", "True", "TokenValid").await;
}

#[tokio::test]
async fn a_failure_stays_in_status_through_waits_and_a_restart() {
    let mut env = TestEnv::start("staytrue").await;
    env.fdx_token("mx", "stay-true-customer").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    env.fake.inject(Endpoint::FdxToken, Fault::Status(401), None);
    env.request_refresh("mx").await;
    let failed = env.wait_for_ready("mx", "True", "Unauthorized").await.status.unwrap();
    assert_eq!(failed.consecutive_failures, 1);
    assert_eq!(failed.last_failure.as_ref().unwrap().reason, "Unauthorized");

    // A reconcile that only waits (any annotation change causes one) keeps the failure.
    let before = env.operator.reconciles().await;
    let touch = serde_json::json!({"metadata": {"annotations": {"example.com/touched": "1"}}});
    env.tokens().patch("mx", &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
    support::eventually("a reconcile after the annotation", Duration::from_secs(20), || async {
        (env.operator.reconciles().await > before).then_some(())
    })
    .await;
    let status = env.tokens().get("mx").await.unwrap().status.unwrap();
    assert_eq!(status.conditions[0].reason, "Unauthorized");
    assert_eq!(status.last_failure, failed.last_failure);

    // So does a restarted operator, once it has reconciled the object.
    env.operator.kill();
    env.operator = Operator::start(&env.namespace, env.fake.ca_pem(), &[]).await;
    env.operator.wait_until_leader(&env.namespace).await;
    support::eventually("the new operator to reconcile mx", Duration::from_secs(30), || async {
        env.operator.metrics().await.contains("name=\"mx\"").then_some(())
    })
    .await;
    let status = env.tokens().get("mx").await.unwrap().status.unwrap();
    assert_eq!(status.conditions[0].reason, "Unauthorized");
    assert_eq!(status.consecutive_failures, 1);
    assert_eq!(status.last_failure, failed.last_failure);
}

#[tokio::test]
async fn ready_turns_false_when_the_token_expires_and_the_token_stays() {
    let env = TestEnv::start("expire").await;
    env.fake.set_fdx_lifetime(6);
    let good = ready_then_fault(&env, Fault::Status(500), None).await;
    let expired = env.wait_for_ready("mx", "False", "Expired").await;
    assert!(expired.status.as_ref().unwrap().consecutive_failures >= 1);
    assert_eq!(env.token_in_secret("mx", "token").await.as_deref(), Some(good.as_str()), "not deleted");
    // Once the provider answers again, the token comes back.
    env.fake.clear_faults(Endpoint::FdxToken);
    env.wait_for_ready("mx", "True", "TokenValid").await;
}

#[tokio::test]
async fn an_expired_token_is_replaced_within_half_a_minute_of_the_provider_recovering() {
    let env = TestEnv::start("recover").await;
    env.fake.set_fdx_lifetime(20);
    env.fdx_token("mx", "quick-recovery-customer").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    env.fake.inject(Endpoint::FdxToken, Fault::Status(500), None);
    env.wait_for_ready("mx", "False", "Expired").await;
    let failures = env.fake.answers(Endpoint::FdxToken, 500);
    assert!(failures >= 1, "it kept trying through the outage");
    env.fake.clear_faults(Endpoint::FdxToken);
    let recovered = Instant::now();
    let tokens = env.tokens();
    support::eventually("Ready within 30 s (plus jitter) of the recovery", Duration::from_secs(35), || async {
        let ct = tokens.get("mx").await.ok()?;
        let ready = ct.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "True").then_some(())
    })
    .await;
    eprintln!("Ready again {:?} after the provider recovered", recovered.elapsed());
}
