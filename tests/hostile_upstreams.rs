//! A hostile upstream cannot hurt the operator: it follows the providers' published wire
//! contracts (and falls back only where a host proves it needs to), survives absurd numbers
//! without a crash or a stall, and sends nothing to a server it does not trust or over plain
//! http.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use fake_provider::{Endpoint, Fault};
use jiff::Timestamp;
use support::operator::{Launch, TestEnv, ready_message};

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
    env.wait_for_requests(Endpoint::OneTrustOAuth, 3).await;
    env.wait_for_ready("cp-1", "True", "TokenValid").await;
    assert_eq!(env.fake.answers(Endpoint::OneTrustOAuth, 415), 1, "remembered for the host");
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
    env.wait_for_requests(Endpoint::OneTrustOAuth, 2).await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    // Zero is taken as the floor (a minute), not as "ask again for every refresh".
    for _ in 0..2 {
        let before = env.fake.requests(Endpoint::CollectionPointToken);
        env.request_refresh("cp").await;
        env.wait_for_requests(Endpoint::CollectionPointToken, before + 1).await;
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
async fn a_certificate_the_operator_does_not_trust_is_refused_before_anything_is_sent() {
    let setup = TestEnv::setup("untrusted", &[]).await;
    let stranger = fake_provider::FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // The operator trusts another CA than the one that signed the provider's certificate.
    let launch = Launch { ca_pem: stranger.ca_pem().to_owned(), ..setup.launch_defaults() };
    let env = setup.launch(launch).await;
    env.fdx_token("mx", "untrusted-certificate-customer").await;
    let ct = env.wait_for_ready("mx", "False", "UpstreamError").await;
    assert!(ready_message(&ct).contains("could not be reached"), "{}", ready_message(&ct));
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 0, "no request got past the handshake");
    drop(stranger);
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
