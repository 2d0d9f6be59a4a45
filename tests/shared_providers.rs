//! Shared providers (ConsentProvider, ClusterConsentProvider) and a target Secret shaped by its
//! user, against the real control plane and the fake provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use consent_token_operator::api::crd::{ClusterConsentProvider, ConsentProvider};
use fake_provider::Endpoint;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use support::operator::{Launch, TestEnv};

const GUIDS: [&str; 3] = [
    "00000000-0000-4000-8000-000000000001",
    "00000000-0000-4000-8000-000000000002",
    "00000000-0000-4000-8000-000000000003",
];

fn provider_ready(
    status: Option<&consent_token_operator::api::crd::ConsentProviderStatus>,
) -> Option<(String, String, i32)> {
    let status = status?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((ready.status.clone(), ready.reason.clone(), status.consent_tokens))
}

#[tokio::test]
async fn a_cluster_provider_serves_the_namespaces_it_allows_with_one_oauth_token() {
    let setup = TestEnv::setup("ops", &["team-a", "payments", "outsider"]).await;
    let (admin, ops) = (setup.client.clone(), setup.namespace.clone());
    let [team, labelled, outsider] = [0, 1, 2].map(|i| setup.other_namespaces[i].clone());
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .patch(
            &labelled,
            &PatchParams::apply("consent-tests"),
            &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": labelled, "labels": {"consent.dev/tenant": "eu"}}})),
        )
        .await
        .unwrap();

    // The operator watches the three namespaces; its own (ops) holds the provider's credentials.
    let watched = format!("{team},{labelled},{outsider}");
    let launch = Launch { namespace: Some(watched), ..setup.launch_defaults() };
    let mut env = setup.launch(launch).await;

    env.fake.add_onetrust_client("tenant-client", "tenant-secret-one");
    env.put_secret("onetrust-tenant", &[("client_id", "tenant-client"), ("client_secret", "tenant-secret-one")]).await;
    let name = format!("onetrust-{}", &ops[4..]);
    let provider: ClusterConsentProvider = serde_json::from_value(serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ClusterConsentProvider", "metadata": {"name": name},
        "spec": {
            "oneTrust": {"hostname": env.fake.host(), "credentialsSecretRef": {"name": "onetrust-tenant"}},
            "allowedNamespaces": {"names": ["team-*"], "selector": {"matchLabels": {"consent.dev/tenant": "eu"}}}
        }
    }))
    .unwrap();
    let providers: Api<ClusterConsentProvider> = Api::all(admin.clone());
    providers.create(&PostParams::default(), &provider).await.unwrap();

    let spec = |guid: &str| {
        serde_json::json!({"providerRef": {"kind": "ClusterConsentProvider", "name": name},
                           "collectionPoint": {"guid": guid}})
    };
    let allowed = [(&team, GUIDS[0]), (&team, GUIDS[1]), (&labelled, GUIDS[2])];
    for (i, (namespace, guid)) in allowed.iter().enumerate() {
        env.namespace = (*namespace).clone();
        env.create_token(&format!("cp-{i}"), spec(guid)).await;
    }
    env.namespace = outsider.clone();
    env.create_token("refused", spec(GUIDS[0])).await;

    for (i, (namespace, _)) in allowed.iter().enumerate() {
        env.namespace = (*namespace).clone();
        let ready = env.wait_for_ready(&format!("cp-{i}"), "True", "TokenValid").await;
        assert_eq!(ready.status.unwrap().provider.as_deref(), Some("OneTrust"));
        assert!(env.token_in_secret(&format!("cp-{i}"), "token").await.is_some());
    }
    env.namespace = outsider.clone();
    let refused = env.wait_for_ready("refused", "False", "NamespaceNotAllowed").await;
    let message = support::operator::ready_message(&refused);
    assert!(message.contains(&name) && message.contains("nothing was sent"), "{message}");
    // Observed refused (above) after the three allowed ones were served: exactly their requests.
    assert_eq!(env.fake.requests(Endpoint::CollectionPointToken), 3, "nothing sent for the outsider");
    assert!(env.secrets().get_opt("refused").await.unwrap().is_none());
    // One OAuth token for the provider, whatever the number of namespaces and tokens.
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 1);

    let ready = support::eventually("the provider's status", Duration::from_secs(30), || async {
        let p = providers.get(&name).await.ok()?;
        let found = provider_ready(p.status.as_ref())?;
        (found == ("True".into(), "AccessTokenObtained".into(), 4)).then_some(p)
    })
    .await;
    assert_eq!(ready.status.unwrap().provider.as_deref(), Some("OneTrust"));

    // Rotating the provider's credentials refreshes its tokens in every namespace.
    env.fake.rotate_onetrust_secret("tenant-client", "tenant-secret-two");
    env.namespace = ops.clone();
    let rotated = env
        .put_secret("onetrust-tenant", &[("client_id", "tenant-client"), ("client_secret", "tenant-secret-two")])
        .await;
    let version = rotated.resource_version().unwrap();
    for (i, (namespace, _)) in allowed.iter().enumerate() {
        env.namespace = (*namespace).clone();
        support::eventually("the token fetched with the rotated credentials", Duration::from_secs(30), || async {
            let ct = env.tokens().get(&format!("cp-{i}")).await.ok()?;
            (ct.status?.credentials_version.as_deref() == Some(version.as_str())).then_some(())
        })
        .await;
    }
    assert_eq!(env.fake.requests(Endpoint::CollectionPointToken), 6);
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 2, "one more OAuth token, for the new credentials");

    providers.delete(&name, &Default::default()).await.unwrap();
}

/// ConsentProvider `bank`: the fake's FDX endpoint with its credentials Secret, and `more` fields
/// of `spec.fdx`.
async fn bank_provider(env: &TestEnv, more: serde_json::Value) -> Api<ConsentProvider> {
    env.fake.add_fdx_client("mx-client", "mx-secret-value");
    env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    let mut fdx =
        serde_json::json!({"baseUrl": env.fake.base_url(), "credentialsSecretRef": {"name": "mx-credentials"}});
    fdx.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    let provider: ConsentProvider = serde_json::from_value(serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentProvider", "metadata": {"name": "bank"},
        "spec": {"fdx": fdx}
    }))
    .unwrap();
    let providers: Api<ConsentProvider> = Api::namespaced(env.client.clone(), &env.namespace);
    providers.create(&PostParams::default(), &provider).await.unwrap();
    providers
}

/// A provider object may list the customers (or collection points) its ConsentTokens may ask
/// for: the platform's credentials then mint tokens for those only, whatever a namespace asks.
#[tokio::test]
async fn a_provider_refuses_customers_it_does_not_list_before_anything_is_sent() {
    let env = TestEnv::start("scoped").await;
    let providers =
        bank_provider(&env, serde_json::json!({"allowedCustomerIds": ["team-a-*", "exact-customer"]})).await;
    let asking = |customer: &str| serde_json::json!({"providerRef": {"name": "bank"}, "customerId": customer});
    env.create_token("listed", asking("team-a-42")).await;
    env.create_token("unlisted", asking("team-b-42")).await;

    env.wait_for_ready("listed", "True", "TokenValid").await;
    let refused = env.wait_for_ready("unlisted", "False", "RequestNotAllowed").await;
    let message = support::operator::ready_message(&refused);
    let provider_name = format!("ConsentProvider {}/bank", env.namespace);
    assert!(
        message.contains(&provider_name)
            && message.contains("spec.fdx.allowedCustomerIds")
            && message.contains("nothing was sent"),
        "says which rule refused: {message}"
    );
    assert!(!message.contains("team-b-42"), "the customer id is personal data: {message}");
    // Observed refused (above) after the listed one was served: exactly its request.
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 1, "nothing sent for the unlisted customer");
    assert!(env.secrets().get_opt("unlisted").await.unwrap().is_none());

    // Listed by its owner: served within seconds, the ConsentToken untouched.
    providers
        .patch(
            "bank",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"fdx": {"allowedCustomerIds": ["team-a-*", "team-b-42"]}}})),
        )
        .await
        .unwrap();
    env.wait_for_ready("unlisted", "True", "TokenValid").await;
}

#[tokio::test]
async fn a_namespaced_provider_and_a_target_shaped_by_its_user() {
    let env = TestEnv::start("shaped").await;
    let providers = bank_provider(&env, serde_json::json!({})).await;

    env.create_token(
        "shaped",
        serde_json::json!({
            "providerRef": {"name": "bank"}, "customerId": "shaped-target-customer",
            "target": {
                "labels": {"backup.example.com/tier": "gold"},
                "annotations": {"reloader.stakater.com/match": "true"},
                "extraKeys": {"expiresAt": "expires-at", "refreshedAt": "refreshed-at", "document": "token.json"}
            }
        }),
    )
    .await;
    env.wait_for_ready("shaped", "True", "TokenValid").await;
    let on_secret = env.on_secret("shaped").await.unwrap();
    let secret = env.secrets().get("shaped").await.unwrap();
    assert_eq!(secret.labels()["backup.example.com/tier"], "gold");
    assert_eq!(secret.labels()["app.kubernetes.io/managed-by"], "consent-token-operator");
    assert_eq!(secret.annotations()["reloader.stakater.com/match"], "true");
    let data = secret.data.clone().unwrap();
    let text = |key: &str| String::from_utf8(data[key].0.clone()).unwrap();
    assert_eq!(text("expires-at"), on_secret.expires_at.unwrap().to_string());
    // The key has whole seconds, the annotation the instant.
    let refreshed_at = jiff::Timestamp::from_second(on_secret.refreshed_at.as_second()).unwrap();
    assert_eq!(text("refreshed-at"), refreshed_at.to_string());
    let document: serde_json::Value = serde_json::from_str(&text("token.json")).unwrap();
    assert_eq!(document["token"].as_str().unwrap(), text("token"));
    assert_eq!(document["expiresAt"].as_str().unwrap(), text("expires-at"));
    // The token and non-secret facts only: no credential, no customer id.
    let mut keys: Vec<&String> = data.keys().collect();
    keys.sort();
    assert_eq!(keys, ["expires-at", "refreshed-at", "token", "token.json"]);
    for value in data.values() {
        let value = String::from_utf8_lossy(&value.0);
        assert!(
            !value.contains("mx-secret-value")
                && !value.contains("mx-client")
                && !value.contains("shaped-target-customer")
        );
    }
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 1);

    let found = support::eventually("the provider's status", Duration::from_secs(30), || async {
        let p = providers.get("bank").await.ok()?;
        let found = provider_ready(p.status.as_ref())?;
        (found == ("True".into(), "CredentialsValid".into(), 1)).then_some(found)
    })
    .await;
    assert_eq!(found.1, "CredentialsValid");

    // A new shape (another label, one annotation and one key fewer) is written without a fetch.
    env.tokens()
        .patch(
            "shaped",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"target": {
                "labels": {"backup.example.com/tier": "silver"},
                "annotations": null,
                "extraKeys": {"refreshedAt": null}
            }}})),
        )
        .await
        .unwrap();
    let reshaped = support::eventually("the Secret reshaped", Duration::from_secs(30), || async {
        let secret = env.secrets().get("shaped").await.ok()?;
        (secret.labels().get("backup.example.com/tier").map(String::as_str) == Some("silver")).then_some(secret)
    })
    .await;
    assert!(!reshaped.annotations().contains_key("reloader.stakater.com/match"));
    let data: BTreeMap<_, _> = reshaped.data.clone().unwrap();
    assert!(!data.contains_key("refreshed-at") && data.contains_key("expires-at"), "{:?}", data.keys());
    assert_eq!(String::from_utf8(data["token"].0.clone()).unwrap(), text("token"), "the same token");
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 1, "no upstream request for a new shape");
    let after = env.tokens().get("shaped").await.unwrap();
    assert_eq!(after.status.unwrap().observed_generation, after.metadata.generation);

    // A ConsentToken naming a provider that does not exist says so.
    env.create_token(
        "orphan",
        serde_json::json!({"providerRef": {"name": "missing"}, "customerId": "orphan-customer"}),
    )
    .await;
    env.wait_for_ready("orphan", "False", "ProviderNotFound").await;
}
