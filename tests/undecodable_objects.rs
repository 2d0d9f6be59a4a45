//! A ConsentToken the operator's types cannot decode (stored through a hand-edited CRD, as an
//! older or newer schema would leave it): reported by name (log, metric, a Warning Event on it)
//! and skipped, and every other object goes on being served, also by a process that starts with
//! it in its first list. A test binary of its own because it edits the CRD.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::ApiResource;
use support::operator::Operator;

const CRD: &str = "consenttokens.consent.dev";
const BAD_VALUE: u64 = 4_815_162_342_999;

fn undecodable_gauge(metrics: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("consent_token_undecodable_objects{kind=\"ConsentToken\"} "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn an_object_that_does_not_decode_is_reported_by_name_and_blinds_nothing() {
    let mut env = support::operator::TestEnv::start("undecodable").await;
    env.fake.set_fdx_lifetime(20);
    for name in ["a", "b"] {
        env.fdx_token(name, &format!("undecodable-customer-{name}")).await;
        env.wait_for_ready(name, "True", "TokenValid").await;
    }

    // The CRD loosened so that the API server stores what the operator cannot decode (a
    // number where it expects the Secret's name), then put back as it was. The number is one no
    // log line's timestamp can hold (13 digits), so finding it means the value was printed.
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let original = crds.get(CRD).await.unwrap();
    let mut loose = serde_json::to_value(&original).unwrap();
    loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
        serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    crds.replace(CRD, &PostParams::default(), &serde_json::from_value(loose).unwrap()).await.unwrap();
    let resource = ApiResource::erase::<consent_token_operator::api::crd::ConsentToken>(&());
    let dynamic: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.namespace, &resource);
    let bad: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken", "metadata": {"name": "bad"},
        "spec": {"fdx": {"baseUrl": env.fake.base_url(), "customerId": "undecodable-customer-bad",
                         "credentialsSecretRef": {"name": "mx-credentials"}},
                 "target": {"secretName": BAD_VALUE}},
    }))
    .unwrap();
    support::eventually("the loosened CRD to accept the object", Duration::from_secs(30), || async {
        dynamic.create(&PostParams::default(), &bad).await.ok()
    })
    .await;
    let mut restored = crds.get(CRD).await.unwrap();
    restored.spec = original.spec.clone();
    crds.replace(CRD, &PostParams::default(), &restored).await.unwrap();

    let reported =
        |operator: &Operator| operator.logs().lines().any(|l| l.contains("does not decode") && l.contains("bad"));
    support::eventually("the bad object reported", Duration::from_secs(30), || async {
        (reported(&env.operator) && undecodable_gauge(&env.operator.metrics().await) == Some(1.0)).then_some(())
    })
    .await;
    let line = env.operator.logs().lines().find(|l| l.contains("does not decode")).unwrap().to_owned();
    assert!(line.contains("spec.target.secretName"), "names the field: {line}");
    assert!(!line.contains(&BAD_VALUE.to_string()), "never the value: {line}");
    // And on the object itself, for `kubectl describe`: a Warning Event from the leader.
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let note = support::eventually("an Undecodable Event on the bad object", Duration::from_secs(30), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            let on_bad = e.regarding.as_ref()?.name.as_deref() == Some("bad");
            (on_bad && e.reason.as_deref() == Some("Undecodable") && e.type_.as_deref() == Some("Warning"))
                .then(|| e.note.unwrap_or_default())
        })
    })
    .await;
    assert!(note.contains("spec.target.secretName") && !note.contains(&BAD_VALUE.to_string()), "{note}");

    // The watch goes on: the others are renewed, a new one is served.
    let before = env.on_secret("a").await.unwrap().fingerprint;
    support::eventually("a renewed after the bad object", Duration::from_secs(40), || async {
        let now = env.on_secret("a").await?.fingerprint;
        (now != before).then_some(())
    })
    .await;
    env.fdx_token("c", "undecodable-customer-c").await;
    env.wait_for_ready("c", "True", "TokenValid").await;

    // A process that starts with the bad object in its first list serves every other one.
    env.operator.kill();
    for name in ["a", "b", "c"] {
        env.secrets().delete(name, &Default::default()).await.unwrap();
    }
    env.operator = Operator::start(&env.namespace, env.fake.ca_pem(), &[]).await;
    for name in ["a", "b", "c"] {
        support::eventually(
            &format!("{name}'s Secret put back by the new process"),
            Duration::from_secs(30),
            || async { env.token_in_secret(name, "token").await },
        )
        .await;
    }
    assert!(reported(&env.operator), "the new process reports it too");

    // Deleted: no longer counted.
    dynamic.delete("bad", &Default::default()).await.unwrap();
    support::eventually("the bad object no longer counted", Duration::from_secs(30), || async {
        (undecodable_gauge(&env.operator.metrics().await) == Some(0.0)).then_some(())
    })
    .await;
}
