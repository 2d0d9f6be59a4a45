//! Upstream failures never overwrite or delete a good token, and each shows in status with
//! its own reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use fake_provider::{Endpoint, Fault};
use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use support::operator::TestEnv;

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
    // recorder would fold repeats into `series`), and the way back to TokenValid.
    let events =
        Api::<Event>::namespaced(env.client.clone(), &env.namespace).list(&ListParams::default()).await.unwrap();
    let upstream: Vec<_> = events.items.iter().filter(|e| e.reason.as_deref() == Some("UpstreamError")).collect();
    assert_eq!(upstream.len(), 1, "one UpstreamError event");
    assert!(upstream[0].series.is_none(), "no repeated UpstreamError event");
    // First token and recovery: two occurrences, which the recorder may fold into one series.
    let token_valid: i32 = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("TokenValid"))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    assert_eq!(token_valid, 2, "TokenValid announced when first fetched and when recovered");
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
    assert!(ct.status.unwrap().conditions[0].message.contains("not a decodable JWT"));
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
async fn plain_http_is_refused_without_the_development_flag() {
    let env = TestEnv::start("http").await;
    env.put_secret("mx-credentials", &[("client_id", "a"), ("client_secret", "b")]).await;
    env.create_token(
        "mx",
        serde_json::json!({"fdx": {"baseUrl": "http://127.0.0.1:9", "customerId": "c",
            "credentialsSecretRef": {"name": "mx-credentials"}}}),
    )
    .await;
    let ct = env.wait_for_ready("mx", "False", "InvalidSpec").await;
    assert!(ct.status.unwrap().conditions[0].message.contains("--allow-insecure-http"));
}
