//! Upstreams that fail, lie or attack: OneTrust's published OAuth contract, absurd numbers that
//! must not crash anything, a status that stays true, 403 versus 401, rate limits per account,
//! and quick recovery once a workload has lost its token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::{Duration, Instant};

use fake_provider::{Endpoint, Fault};
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use support::operator::{Operator, TestEnv};

fn ready_message(ct: &consent_token_operator::api::crd::ConsentToken) -> String {
    ct.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().message.clone()
}

/// The sum of a metric family's samples in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn reconciles(operator: &Operator) -> f64 {
    metric(&operator.metrics().await, "consent_token_reconcile_duration_seconds_count")
}

async fn wait_for_requests(env: &TestEnv, endpoint: Endpoint, count: u64) {
    support::eventually(&format!("{count} requests to {endpoint:?}"), Duration::from_secs(30), || async {
        (env.fake.requests(endpoint) >= count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn onetrust_oauth_is_sent_as_multipart_as_its_openapi_document_declares() {
    // The fake follows the document: multipart only, anything else answered 400.
    let env = TestEnv::start("multipart").await;
    env.onetrust_token("cp", "ot-secret-multipart").await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 1);
    assert_eq!(env.fake.answers(Endpoint::OneTrustOAuth, 200), 1, "accepted the first time");
}

#[tokio::test]
async fn a_host_that_refuses_multipart_is_asked_form_urlencoded_once_and_then_always() {
    let env = TestEnv::start("samplecode").await;
    env.fake.set_oauth_sample_code_mode(true);
    for name in ["cp-1", "cp-2", "cp-3", "cp-4"] {
        env.onetrust_token(name, "ot-secret-sample-code").await;
    }
    for name in ["cp-1", "cp-2", "cp-3", "cp-4"] {
        env.wait_for_ready(name, "True", "TokenValid").await;
    }
    assert_eq!(env.fake.answers(Endpoint::OneTrustOAuth, 415), 1, "multipart refused once");
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 2, "one fallback shared by four collection points");

    // Access tokens revoked: the next one is asked form-urlencoded straight away.
    env.fake.rotate_onetrust_secret("ot-client", "ot-secret-sample-code");
    env.request_refresh("cp-1").await;
    wait_for_requests(&env, Endpoint::OneTrustOAuth, 3).await;
    env.wait_for_ready("cp-1", "True", "TokenValid").await;
    assert_eq!(env.fake.answers(Endpoint::OneTrustOAuth, 415), 1, "remembered for the host");
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
async fn absurd_numbers_from_an_upstream_neither_crash_nor_stall_the_operator() {
    let env = TestEnv::start("absurd").await;
    // A Retry-After of 9,500 years: honoured up to a day, and the status says so.
    env.fdx_token("mx", "absurd-numbers-customer").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    env.fake.inject(Endpoint::FdxToken, Fault::RateLimited { retry_after: "300000000000".into() }, Some(1));
    env.request_refresh("mx").await;
    let ct = env.wait_for_ready("mx", "True", "RateLimited").await;
    assert!(ready_message(&ct).contains("at most a day"), "{}", ready_message(&ct));
    let wait = ct.status.unwrap().next_refresh_time.unwrap().0.duration_since(Timestamp::now()).as_secs();
    assert!((23 * 3600..=24 * 3600 + 11 * 60).contains(&wait), "next attempt in {wait}s");

    // OneTrust access tokens that claim to live 9,500 years, then zero seconds.
    env.fake.set_oauth_expires_in(300_000_000_000);
    env.onetrust_token("cp", "ot-secret-absurd").await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    env.fake.set_oauth_expires_in(0);
    env.fake.rotate_onetrust_secret("ot-client", "ot-secret-absurd"); // revokes the long one
    env.request_refresh("cp").await;
    wait_for_requests(&env, Endpoint::OneTrustOAuth, 2).await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    // Zero is taken as the floor (a minute), not as "ask again for every refresh".
    for _ in 0..2 {
        let before = env.fake.requests(Endpoint::CollectionPointToken);
        env.request_refresh("cp").await;
        wait_for_requests(&env, Endpoint::CollectionPointToken, before + 1).await;
    }
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 2);

    // An MX token whose exp no date can hold: refused, nothing written.
    env.fake.add_fdx_client("mx-far", "mx-secret-far-future");
    env.put_secret("mx-far", &[("client_id", "mx-far"), ("client_secret", "mx-secret-far-future")]).await;
    env.fake.set_fdx_lifetime(u64::MAX);
    env.create_token(
        "far",
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": "far-future-customer",
            "credentialsSecretRef": {"name": "mx-far"}}}),
    )
    .await;
    env.wait_for_ready("far", "False", "InvalidResponse").await;
    assert!(env.token_in_secret("far", "token").await.is_none());

    // Still alive, still serving.
    assert_eq!(env.operator.readyz().await, Some(200));
    assert!(!env.operator.logs().contains("panicked"), "a reconcile panicked");
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
    let before = reconciles(&env.operator).await;
    let touch = serde_json::json!({"metadata": {"annotations": {"example.com/touched": "1"}}});
    env.tokens().patch("mx", &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
    support::eventually("a reconcile after the annotation", Duration::from_secs(20), || async {
        (reconciles(&env.operator).await > before).then_some(())
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
async fn forbidden_is_about_scope_and_keeps_the_access_token() {
    let env = TestEnv::start("forbidden").await;
    env.onetrust_token("cp", "ot-secret-forbidden").await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    env.fake.inject(Endpoint::CollectionPointToken, Fault::Status(403), None);
    for attempt in 0..2 {
        let before = env.fake.requests(Endpoint::CollectionPointToken);
        env.request_refresh("cp").await;
        wait_for_requests(&env, Endpoint::CollectionPointToken, before + 1).await;
        let ct = env.wait_for_ready("cp", "True", "Forbidden").await;
        assert!(ready_message(&ct).contains("scope"), "attempt {attempt}: {}", ready_message(&ct));
    }
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 1, "no access-token churn on 403");
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
    wait_for_requests(&env, Endpoint::CollectionPointToken, before + 1).await;
    env.wait_for_ready("cp-b", "True", "TokenValid").await;
}

#[tokio::test]
async fn a_certificate_the_operator_does_not_trust_is_refused_before_anything_is_sent() {
    support::install_crds();
    let client = support::admin_client().await;
    let namespace = support::namespace(&client, "untrusted").await;
    let provider = fake_provider::FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let stranger = fake_provider::FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // The operator trusts another CA than the one that signed the provider's certificate.
    let operator = Operator::start(&namespace, stranger.ca_pem(), &[]).await;
    operator.wait_until_leader(&namespace).await;
    let env = TestEnv::from_parts(client, namespace, provider, operator);
    env.fdx_token("mx", "untrusted-certificate-customer").await;
    let ct = env.wait_for_ready("mx", "False", "UpstreamError").await;
    assert!(ready_message(&ct).contains("could not be reached"), "{}", ready_message(&ct));
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 0, "no request got past the handshake");
    drop(stranger);
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
    support::install_crds();
    let client = support::admin_client().await;
    let namespace = support::namespace(&client, "shortlived").await;
    let fake = fake_provider::FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // The operator's default minimum (90 s: the kubelet's propagation time).
    let launch = support::operator::Launch {
        min_token_lifetime: "90s",
        ..support::operator::Launch::new(&namespace, fake.ca_pem())
    };
    let operator = Operator::launch(launch).await;
    operator.wait_until_leader(&namespace).await;
    let env = TestEnv::from_parts(client, namespace, fake, operator);

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
    wait_for_requests(&env, Endpoint::FdxToken, before + 1).await;
    let ct = env.wait_for_ready("long", "True", "InvalidResponse").await;
    assert!(ready_message(&ct).contains("expires before the one in the Secret"), "{}", ready_message(&ct));
    assert_eq!(env.token_in_secret("long", "token").await, Some(good));
}
