//! Taking over a Secret another tool wrote (a CronJob, External Secrets Operator), on the real
//! API server: refused until the Secret's owner offers it (`consent.dev/adopt-by`), then one
//! write that puts the new token in and makes the Secret the ConsentToken's. Every version of
//! the Secret is watched: the key never goes missing or empty. The same with pods on a real
//! node: `tests/node.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use support::operator::TestEnv;

const OLD_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJvbGQiOiJ0b29sIn0.b2xkLXRvb2wtc2lnbmF0dXJl";

/// What the old tool left: its token and a key of its own, with a label of its own.
async fn old_tools_secret(env: &TestEnv, name: &str) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".into(), "cronjob".into())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("token".into(), ByteString(OLD_TOKEN.as_bytes().to_vec())),
            ("endpoint".into(), ByteString(b"https://consent.bank.example/receipts".to_vec())),
        ])),
        ..Default::default()
    };
    env.secrets().create(&PostParams::default(), &secret).await.unwrap();
}

/// Every version of Secret `name` the API server holds from now on: (resourceVersion, its data).
fn watch_versions(env: &TestEnv, name: &str) -> (Arc<Mutex<Vec<Secret>>>, tokio::task::JoinHandle<()>) {
    let versions = Arc::new(Mutex::new(Vec::new()));
    let seen = versions.clone();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(env.secrets(), config).applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = stream.boxed();
        while let Some(Ok(secret)) = stream.next().await {
            let mut seen = seen.lock().unwrap();
            if seen.last().map(|s: &Secret| s.resource_version()) != Some(secret.resource_version()) {
                seen.push(secret);
            }
        }
    });
    (versions, task)
}

fn token_of(secret: &Secret) -> Option<String> {
    secret.data.as_ref()?.get("token").map(|t| String::from_utf8_lossy(&t.0).into_owned())
}

#[tokio::test]
async fn a_secret_is_taken_over_only_when_its_owner_offers_it_and_in_one_write() {
    let env = TestEnv::start("adopt").await;
    old_tools_secret(&env, "payments-consent").await;
    let (versions, watch) = watch_versions(&env, "payments-consent");
    env.fake.add_fdx_client("mx-client", "mx-secret-value");
    env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    let spec = |secret: &str| {
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": "adopt-customer-1",
            "credentialsSecretRef": {"name": "mx-credentials"}}, "target": {"secretName": secret}})
    };

    // The ConsentToken's author alone cannot take it: refused, saying what the owner can do.
    env.create_token("payments", spec("payments-consent")).await;
    let refused = env.wait_for_ready("payments", "False", "TargetConflict").await;
    let message = support::operator::ready_message(&refused);
    assert!(message.contains("kubectl annotate secret payments-consent consent.dev/adopt-by=payments"), "{message}");
    let untouched = env.secrets().get("payments-consent").await.unwrap();
    assert_eq!(token_of(&untouched).as_deref(), Some(OLD_TOKEN));
    assert!(untouched.owner_references().is_empty());

    // The owner offers it: the operator, woken by the change, takes it over.
    let offer = serde_json::json!({"metadata": {"annotations": {"consent.dev/adopt-by": "payments"}}});
    env.secrets().patch("payments-consent", &PatchParams::default(), &Patch::Merge(&offer)).await.unwrap();
    env.wait_for_ready("payments", "True", "TokenValid").await;
    let ct = env.tokens().get("payments").await.unwrap();
    let taken = env.secrets().get("payments-consent").await.unwrap();
    let new_token = token_of(&taken).unwrap();
    assert_ne!(new_token, OLD_TOKEN);
    let controller = taken.owner_references().iter().find(|o| o.controller == Some(true)).unwrap();
    assert_eq!(controller.uid, ct.uid().unwrap());
    assert_eq!(taken.labels()["app.kubernetes.io/managed-by"], "consent-token-operator");
    assert_eq!(taken.data.as_ref().unwrap()["endpoint"].0, b"https://consent.bank.example/receipts", "kept");
    assert_eq!(taken.annotations().get("consent.dev/kept-keys").map(String::as_str), Some("endpoint"));
    assert!(!taken.annotations().contains_key("consent.dev/adopt-by"), "the offer is consumed");

    // Every version: the old token, then (the offer), then the new one with its owner, in the
    // same write; never a version without a token.
    support::eventually("the watch to see the takeover", std::time::Duration::from_secs(10), || async {
        versions.lock().unwrap().iter().any(|s| token_of(s).as_deref() == Some(new_token.as_str())).then_some(())
    })
    .await;
    let seen = versions.lock().unwrap().clone();
    assert!(seen.iter().all(|s| token_of(s).is_some_and(|t| !t.is_empty())), "a version without a token");
    let first_new = seen.iter().position(|s| token_of(s).as_deref() != Some(OLD_TOKEN)).unwrap();
    assert!(
        seen[first_new].owner_references().iter().any(|o| o.uid == ct.uid().unwrap()),
        "the new token and the owner reference came in one write"
    );
    assert!(seen[..first_new].iter().all(|s| s.owner_references().is_empty()), "not owned before");

    // Renewed like any other: the kept key stays, and is not "put back" away.
    env.refresh_and_wait_handled("payments").await;
    let renewed = env.secrets().get("payments-consent").await.unwrap();
    assert_ne!(token_of(&renewed), Some(new_token));
    assert!(renewed.data.as_ref().unwrap().contains_key("endpoint"));
    watch.abort();

    // `consent.dev/adopt-other-keys: drop`: the other keys go in the same write.
    old_tools_secret(&env, "ledger-consent").await;
    let offer = serde_json::json!({"metadata": {"annotations": {
        "consent.dev/adopt-by": "ledger", "consent.dev/adopt-other-keys": "drop"}}});
    env.secrets().patch("ledger-consent", &PatchParams::default(), &Patch::Merge(&offer)).await.unwrap();
    env.create_token("ledger", spec("ledger-consent")).await;
    env.wait_for_ready("ledger", "True", "TokenValid").await;
    let dropped = env.secrets().get("ledger-consent").await.unwrap();
    let keys: Vec<&String> = dropped.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["token"]);

    // An offer to another ConsentToken is no offer to this one.
    old_tools_secret(&env, "other-consent").await;
    let offer = serde_json::json!({"metadata": {"annotations": {"consent.dev/adopt-by": "someone-else"}}});
    env.secrets().patch("other-consent", &PatchParams::default(), &Patch::Merge(&offer)).await.unwrap();
    env.create_token("other", spec("other-consent")).await;
    env.wait_for_ready("other", "False", "TargetConflict").await;
    assert_eq!(token_of(&env.secrets().get("other-consent").await.unwrap()).as_deref(), Some(OLD_TOKEN));
}
