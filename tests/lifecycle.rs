//! The target Secret's life: credential rotation, drift repair, foreign Secrets, deletion,
//! forced refresh, and a restart that resumes the schedule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use fake_provider::Endpoint;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use support::operator::{Operator, TestEnv};

#[tokio::test]
async fn rotated_credentials_are_used_within_seconds() {
    let env = TestEnv::start("rotate").await;
    env.fdx_token("mx", "customer-1").await;
    let before = env.wait_for_ready("mx", "True", "TokenValid").await.status.unwrap();

    // The provider now only accepts the new secret; the scheduled refresh is minutes away.
    env.fake.add_fdx_client("mx-client", "rotated-secret");
    let rotated =
        env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "rotated-secret")]).await;
    let new_version = rotated.resource_version().unwrap();

    let after = support::eventually("a token fetched with the new credentials", Duration::from_secs(20), || async {
        let status = env.tokens().get("mx").await.ok()?.status?;
        (status.credentials_version.as_deref() == Some(new_version.as_str())).then_some(status)
    })
    .await;
    assert_ne!(after.token_fingerprint, before.token_fingerprint);
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 2);
}

#[tokio::test]
async fn onetrust_access_token_is_fetched_again_after_a_401() {
    let env = TestEnv::start("ot401").await;
    env.onetrust_token("cp", "ot-secret-before-401").await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    // The provider revokes every access token issued so far (same credentials still valid).
    env.fake.rotate_onetrust_secret("ot-client", "ot-secret-before-401");
    env.request_refresh("cp").await;
    support::eventually("a refresh after the revocation", Duration::from_secs(20), || async {
        (env.fake.requests(Endpoint::CollectionPointToken) == 3).then_some(())
    })
    .await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 2, "one new access token after the 401");
    assert_eq!(env.fake.answers(Endpoint::CollectionPointToken, 401), 1, "and exactly one retry");
}

#[tokio::test]
async fn an_edited_or_deleted_target_secret_is_put_back() {
    let env = TestEnv::start("drift").await;
    env.fdx_token("mx", "customer-1").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    let secrets = env.secrets();

    // Someone overwrites the token.
    let patch = serde_json::json!({"data": {"token": "dGFtcGVyZWQ="}});
    secrets.patch("mx", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let repaired = support::eventually("the token to be put back", Duration::from_secs(20), || async {
        env.token_in_secret("mx", "token").await.filter(|t| t != "tampered")
    })
    .await;
    assert_eq!(support::operator::claims(&repaired)["scopes"]["customer.modify_consent"], "customer-1");

    // Someone strips the managed-by label (the Secret drops out of the operator's cache).
    let patch = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}});
    secrets.patch("mx", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    support::eventually("the label to be put back", Duration::from_secs(20), || async {
        let secret = secrets.get("mx").await.ok()?;
        secret.labels().contains_key("app.kubernetes.io/managed-by").then_some(())
    })
    .await;
    assert_eq!(env.token_in_secret("mx", "token").await.as_deref(), Some(repaired.as_str()), "same token kept");

    // Someone deletes it.
    secrets.delete("mx", &DeleteParams::default()).await.unwrap();
    support::eventually("the Secret to be recreated", Duration::from_secs(20), || async {
        env.token_in_secret("mx", "token").await
    })
    .await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
}

#[tokio::test]
async fn a_secret_the_operator_does_not_own_is_never_overwritten() {
    let env = TestEnv::start("foreign").await;
    let foreign = Secret {
        metadata: ObjectMeta { name: Some("taken".into()), ..Default::default() },
        data: Some([("token".to_owned(), ByteString(b"someone else's".to_vec()))].into()),
        ..Default::default()
    };
    env.secrets().create(&PostParams::default(), &foreign).await.unwrap();
    env.fake.add_fdx_client("mx-client", "mx-secret-value");
    env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    env.create_token(
        "mx",
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": "c",
            "credentialsSecretRef": {"name": "mx-credentials"}}, "target": {"secretName": "taken"}}),
    )
    .await;
    let ct = env.wait_for_ready("mx", "False", "TargetConflict").await;
    let message = &ct.status.unwrap().conditions[0].message;
    assert!(message.contains("\"taken\"") && message.contains("secretName"), "{message}");
    assert_eq!(env.token_in_secret("taken", "token").await.as_deref(), Some("someone else's"));
    assert!(env.secrets().get("taken").await.unwrap().owner_references().is_empty());
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 0, "no token fetched for nowhere to put it");
}

#[tokio::test]
async fn deleting_the_consent_token_deletes_its_secret_and_metrics() {
    let env = TestEnv::start("delete").await;
    env.fdx_token("mx", "customer-1").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    let series = format!("consent_token_expiry_timestamp_seconds{{namespace=\"{}\",name=\"mx\"}}", env.namespace);
    assert!(env.operator.metrics().await.contains(&series), "expiry series present");

    env.tokens().delete("mx", &DeleteParams::background()).await.unwrap();
    support::eventually("the garbage collector to delete the Secret", Duration::from_secs(60), || async {
        env.secrets().get_opt("mx").await.unwrap().is_none().then_some(())
    })
    .await;
    support::eventually("the expiry series to go", Duration::from_secs(10), || async {
        (!env.operator.metrics().await.contains(&series)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_refresh_annotation_refreshes_once_per_value() {
    let env = TestEnv::start("force").await;
    env.fdx_token("mx", "customer-1").await;
    let first = env.wait_for_ready("mx", "True", "TokenValid").await.status.unwrap().token_fingerprint;
    env.request_refresh("mx").await;
    let second = support::eventually("a forced refresh", Duration::from_secs(20), || async {
        let fp = env.tokens().get("mx").await.ok()?.status?.token_fingerprint;
        (fp != first).then_some(fp)
    })
    .await;
    // Nothing more happens for the same annotation value.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.tokens().get("mx").await.unwrap().status.unwrap().token_fingerprint, second);
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 2);
}

#[tokio::test]
async fn a_restarted_operator_resumes_the_schedule_instead_of_refetching() {
    let mut env = TestEnv::start("restart").await;
    for i in 0..5 {
        if i == 0 {
            env.fdx_token("mx-0", "customer-0").await;
        } else {
            env.create_token(
                &format!("mx-{i}"),
                serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": format!("customer-{i}"),
                    "credentialsSecretRef": {"name": "mx-credentials"}}}),
            )
            .await;
        }
    }
    for i in 0..5 {
        env.wait_for_ready(&format!("mx-{i}"), "True", "TokenValid").await;
    }
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 5);

    env.operator.kill();
    env.operator = Operator::start(&env.namespace, env.fake.ca_pem(), &[]).await;
    env.operator.wait_until_leader(&env.namespace).await;
    // Give the new leader time to reconcile everything it found.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 5, "tokens still valid and not due: nothing refetched");
    for i in 0..5 {
        env.wait_for_ready(&format!("mx-{i}"), "True", "TokenValid").await;
    }
}
