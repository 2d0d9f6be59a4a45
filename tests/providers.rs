//! Both providers end to end: a ConsentToken becomes a Secret holding a valid token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use fake_provider::{CollectionPointBody, Endpoint};
use jiff::Timestamp;
use kube::ResourceExt;
use support::operator::{TestEnv, claims};

#[tokio::test]
async fn fdx_token_lands_in_an_owned_secret_and_is_scheduled_with_room_for_the_kubelet() {
    let env = TestEnv::start("fdx").await;
    let ct = env.fdx_token("mx-web", "fN7SsIMfJvJJcNjKBmB6Kg").await;
    let ready = env.wait_for_ready("mx-web", "True", "TokenValid").await;

    let token = env.token_in_secret("mx-web", "token").await.expect("token in the Secret");
    let claims = claims(&token);
    assert_eq!(claims["scopes"]["customer.modify_consent"], "fN7SsIMfJvJJcNjKBmB6Kg");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);

    let status = ready.status.unwrap();
    assert_eq!(status.provider.as_deref(), Some("FDX"));
    assert_eq!(status.observed_generation, ct.metadata.generation);
    // The token's 300 s from the moment it was fetched, on the operator's clock: `exp` or the
    // second after it (`iat` counts whole seconds; the fetch ends a moment after it).
    // Renewed on time, the status says what stays true from one token to the next; the
    // token's own times are on the Secret.
    assert_eq!(status.token_lifetime.as_deref(), Some("5m"));
    let message = &status.conditions[0].message;
    assert!(message.contains("renewed with 50% of their lifetime left"), "{message}");
    assert_eq!((&status.expires_at, &status.next_refresh_time, &status.token_fingerprint), (&None, &None, &None));
    let on_secret = env.on_secret("mx-web").await.expect("the token's facts on the Secret");
    let expires = on_secret.expires_at.unwrap();
    let after_exp = expires.as_second() - claims["exp"].as_i64().unwrap();
    assert!((0..=1).contains(&after_exp), "expires-at {expires} is {after_exp}s after exp");
    // The annotation keeps the planned instant to the nanosecond, the expiry to the second.
    let left_at_renewal = expires.duration_since(on_secret.next_refresh_at).as_secs_f64().round() as i64;
    // Half of 300 s, plus at most 15 s of jitter that only ever moves renewal earlier.
    assert!((150..=165).contains(&left_at_renewal), "renewal leaves {left_at_renewal}s of a 300s token");
    assert_eq!(on_secret.fingerprint, consent_token_operator::provider::token::fingerprint(token.as_bytes()));

    let secret = env.secrets().get("mx-web").await.unwrap();
    assert_eq!(secret.owner_references()[0].uid, ct.uid().unwrap());
    assert_eq!(secret.labels()["app.kubernetes.io/managed-by"], "consent-token-operator");
    assert_eq!(secret.annotations()["consent.dev/expires-at"], expires.to_string());
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 1);
}

#[tokio::test]
async fn onetrust_collection_points_share_one_oauth_token() {
    let env = TestEnv::start("onetrust").await;
    env.fake.add_onetrust_client("ot-client", "ot-secret-value");
    env.fake.set_collection_point_version("123e4567-e89b-12d3-a456-426614174000", 3);
    env.put_secret("onetrust-client", &[("client_id", "ot-client"), ("client_secret", "ot-secret-value")]).await;

    let count = 20;
    for i in 0..count {
        let guid = format!("00000000-0000-4000-8000-{i:012}");
        env.create_token(
            &format!("cp-{i}"),
            serde_json::json!({"oneTrust": {"hostname": env.fake.host(),
                "collectionPoint": {"guid": guid, "state": "ACTIVE"},
                "credentialsSecretRef": {"name": "onetrust-client"}},
                "target": {"secretName": format!("cp-token-{i}"), "key": "requestInformation"}}),
        )
        .await;
    }
    // A pinned, older version is passed through and reported.
    env.create_token(
        "pinned",
        serde_json::json!({"oneTrust": {"hostname": env.fake.host(),
            "collectionPoint": {"guid": "123e4567-e89b-12d3-a456-426614174000", "version": 2},
            "credentialsSecretRef": {"name": "onetrust-client"}}}),
    )
    .await;

    for i in 0..count {
        let ready = env.wait_for_ready(&format!("cp-{i}"), "True", "TokenValid").await;
        let status = ready.status.unwrap();
        assert_eq!(status.token_lifetime, None, "collection point tokens carry no exp");
        assert_eq!(status.collection_point_version, Some(1));
        let on_secret = env.on_secret(&format!("cp-{i}")).await.expect("the token's facts on the Secret");
        assert_eq!(on_secret.expires_at, None);
        let next = on_secret.next_refresh_at;
        let interval = next.duration_since(Timestamp::now()).as_secs();
        assert!((3000..=3600).contains(&interval), "refetched on the one-hour interval, not {interval}s");
        let token = env.token_in_secret(&format!("cp-token-{i}"), "requestInformation").await.unwrap();
        let claims = claims(&token);
        assert_eq!(claims["processId"], format!("00000000-0000-4000-8000-{i:012}"));
        assert!(claims["iat"].is_string() && claims.get("exp").is_none());
    }
    let pinned = env.wait_for_ready("pinned", "True", "TokenValid").await;
    assert_eq!(pinned.status.unwrap().collection_point_version, Some(2));

    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 1, "one access token for 21 ConsentTokens");
    assert_eq!(env.fake.requests(Endpoint::CollectionPointToken), count + 1);
}

#[tokio::test]
async fn onetrust_token_bodies_as_string_or_text_are_accepted() {
    let env = TestEnv::start("otbody").await;
    for (name, body) in [("as-string", CollectionPointBody::JsonString), ("as-text", CollectionPointBody::RawText)] {
        env.fake.set_collection_point_body(body);
        env.onetrust_token(name, "ot-secret-value").await;
        env.wait_for_ready(name, "True", "TokenValid").await;
        let token = env.token_in_secret(name, "token").await.unwrap();
        assert!(claims(&token)["processVersion"].is_number());
    }
}

#[tokio::test]
async fn short_lived_tokens_are_replaced_before_they_expire() {
    let env = TestEnv::start("renew").await;
    env.fake.set_fdx_lifetime(12);
    env.fdx_token("short", "customer-1").await;
    env.wait_for_ready("short", "True", "TokenValid").await;

    // Watch three replacements; each must arrive while the previous token still has at least a
    // third of its 12 s life left (the default renews at half life, jitter up to 10 % earlier).
    let mut previous = env.token_in_secret("short", "token").await.unwrap();
    for _ in 0..3 {
        let replaced = support::eventually("a replacement token", Duration::from_secs(30), || async {
            let now = Timestamp::now();
            env.token_in_secret("short", "token").await.filter(|t| *t != previous).map(|t| (t, now))
        })
        .await;
        let previous_exp = claims(&previous)["exp"].as_i64().unwrap();
        let left = previous_exp - replaced.1.as_second();
        assert!(left >= 4, "replaced with only {left}s of 12s left");
        previous = replaced.0;
    }
    let ready = env.wait_for_ready("short", "True", "TokenValid").await;
    assert_eq!(ready.status.unwrap().consecutive_failures, 0);
}

/// A provider whose clock is 4 minutes ahead of the node's, then one 3 minutes behind: each
/// token lives its own lifetime (`exp - iat`) from the moment it was fetched, is renewed before
/// that ends, and the gap shows in the skew metric. Read against the node's clock, the first
/// token would have looked 4 minutes longer-lived (renewed minutes late) and the second already
/// expired (refused for ever).
#[tokio::test]
async fn tokens_are_timed_by_their_own_clock_when_the_providers_clock_is_off() {
    let env = TestEnv::start("skew").await;
    env.fake.set_fdx_lifetime(20);
    for (name, offset) in [("ahead", 240), ("behind", -180)] {
        env.fake.set_clock_offset(offset);
        env.fdx_token(name, &format!("skew-customer-{name}")).await;
        let status = env.wait_for_ready(name, "True", "TokenValid").await.status.unwrap();
        assert_eq!(status.token_lifetime.as_deref(), Some("20s"));
        let on_secret = env.on_secret(name).await.unwrap();
        let token = env.token_in_secret(name, "token").await.unwrap();
        let exp = claims(&token)["exp"].as_i64().unwrap();
        assert!((exp - Timestamp::now().as_second() - offset).abs() <= 21, "the fake's clock is {offset}s off");
        let (refreshed, expires) = (on_secret.refreshed_at, on_secret.expires_at.unwrap());
        let lifetime = expires.duration_since(refreshed).as_secs();
        assert!((19..=20).contains(&lifetime), "{name}: expires-at {lifetime}s after the fetch, not 20s");

        let metric = "consent_token_provider_clock_ahead_seconds{provider=\"FDX\"} ";
        let metrics = env.operator.metrics().await;
        let ahead: f64 = metrics.lines().find_map(|l| l.strip_prefix(metric)).unwrap().parse().unwrap();
        assert!(
            (ahead - offset as f64).abs() <= 2.0,
            "{name}: the skew metric says {ahead}s, the clock is {offset}s off"
        );

        let renewed_at = support::eventually(&format!("{name} renewed"), Duration::from_secs(30), || async {
            let now = Timestamp::now();
            env.token_in_secret(name, "token").await.filter(|t| *t != token).map(|_| now)
        })
        .await;
        assert!(renewed_at < expires, "{name}: renewed at {renewed_at}, after its end at {expires}");
    }
    assert!(env.operator.logs().contains("the provider's clock and this node's are far apart"));
}
