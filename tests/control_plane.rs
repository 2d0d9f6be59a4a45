//! The local control plane is real: CRDs with validation, garbage collection, RBAC.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Resource};

use consent_token_operator::api::crd::ConsentToken;

#[tokio::test]
async fn crd_applied_server_side_is_served_and_rejects_invalid_objects() {
    support::install_crds();
    let client = support::admin_client().await;
    let ns = support::namespace(&client, "crd").await;
    let tokens: Api<ConsentToken> = Api::namespaced(client.clone(), &ns);

    let valid: ConsentToken = serde_json::from_value(serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
        "metadata": {"name": "valid"},
        "spec": {"fdx": {"baseUrl": "https://consent.bank.example", "customerId": "abc",
                          "credentialsSecretRef": {"name": "mx"}}}
    }))
    .unwrap();
    let created = tokens.create(&PostParams::default(), &valid).await.expect("valid object accepted");
    let fdx = created.spec.fdx.expect("fdx kept");
    assert_eq!(fdx.api_version, "v4", "the schema's default is applied by the API server");
    assert_eq!(fdx.credentials_secret_ref.client_id_key, "client_id");

    let both_providers: ConsentToken = serde_json::from_value(serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
        "metadata": {"name": "both"},
        "spec": {
            "fdx": {"baseUrl": "https://consent.bank.example", "customerId": "abc",
                    "credentialsSecretRef": {"name": "mx"}},
            "oneTrust": {"hostname": "app.onetrust.com",
                         "collectionPoint": {"guid": "123e4567-e89b-12d3-a456-426614174000"},
                         "credentialsSecretRef": {"name": "ot"}}
        }
    }))
    .unwrap();
    let err = tokens.create(&PostParams::default(), &both_providers).await.expect_err("rejected");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err}") };
    assert_eq!(status.code, 422);
    let message = status.message;
    assert!(message.contains("set exactly one provider"), "message says what to fix: {message}");

    support::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_secret() {
    let client = support::admin_client().await;
    let ns = support::namespace(&client, "gc").await;
    let owners: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    let owner = owners
        .create(&PostParams::default(), &ConfigMap { metadata: meta("owner"), ..Default::default() })
        .await
        .unwrap();
    let owned = Secret {
        metadata: ObjectMeta {
            owner_references: Some(vec![owner.controller_owner_ref(&()).unwrap()]),
            ..meta("owned")
        },
        string_data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &owned).await.unwrap();

    owners.delete("owner", &DeleteParams::background()).await.unwrap();
    support::eventually("the garbage collector to delete the owned Secret", Duration::from_secs(60), || async {
        secrets.get_opt("owned").await.unwrap().is_none().then_some(())
    })
    .await;

    support::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn service_account_needs_a_role_to_read_secrets() {
    let admin = support::admin_client().await;
    let ns = support::namespace(&admin, "rbac").await;
    let as_reader = support::client_as(&ns, "reader").await;
    let secrets: Api<Secret> = Api::namespaced(as_reader.clone(), &ns);

    let err = secrets.list(&ListParams::default()).await.expect_err("no RoleBinding yet");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err}") };
    assert_eq!(status.code, 403);

    let role = Role {
        metadata: meta("secret-reader"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns).create(&PostParams::default(), &role).await.unwrap();
    let binding = RoleBinding {
        metadata: meta("secret-reader"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "secret-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), &ns).create(&PostParams::default(), &binding).await.unwrap();

    // RBAC changes reach the authorizer's informer cache within moments.
    support::eventually("the Role to take effect", Duration::from_secs(30), || async {
        secrets.list(&ListParams::default()).await.ok()
    })
    .await;
    // Still refused outside the namespace it was granted.
    let elsewhere: Api<Secret> = Api::namespaced(as_reader, "default");
    assert!(elsewhere.list(&ListParams::default()).await.is_err());

    support::delete_namespace(&admin, &ns).await;
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), ..Default::default() }
}
