//! The provider lookup: which provider a ConsentToken uses, and whether it may.

use super::*;
use crate::api::crd::{ClusterConsentProviderSpec, ConsentProviderSpec};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

fn catalog(
    providers: Vec<ConsentProvider>,
    cluster: Vec<ClusterConsentProvider>,
    namespaces: Vec<(&str, &[(&str, &str)])>,
) -> Catalog {
    let mut p = Writer::<ConsentProvider>::default();
    for provider in providers {
        p.apply_watcher_event(&Event::Apply(provider));
    }
    let mut c = Writer::<ClusterConsentProvider>::default();
    for provider in cluster {
        c.apply_watcher_event(&Event::Apply(provider));
    }
    let mut n = Writer::<PartialObjectMeta<Namespace>>::default();
    for (name, labels) in namespaces {
        let mut meta = PartialObjectMeta::<Namespace>::default();
        meta.metadata.name = Some(name.into());
        meta.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        n.apply_watcher_event(&Event::Apply(meta));
    }
    Catalog {
        providers: p.as_reader(),
        cluster_providers: c.as_reader(),
        namespaces: n.as_reader(),
        operator_namespace: "ops".into(),
    }
}

fn token(namespace: &str, spec: serde_json::Value) -> ConsentToken {
    let mut ct = ConsentToken::new("t", serde_json::from_value(spec).unwrap());
    ct.metadata.namespace = Some(namespace.into());
    ct
}

fn mx_provider(namespace: &str) -> ConsentProvider {
    let mut p = ConsentProvider::new(
        "mx",
        serde_json::from_value::<ConsentProviderSpec>(serde_json::json!({
            "fdx": {"baseUrl": "https://bank.example", "credentialsSecretRef": {"name": "mx-creds"}}
        }))
        .unwrap(),
    );
    p.metadata.namespace = Some(namespace.into());
    p
}

fn onetrust_cluster_provider() -> ClusterConsentProvider {
    ClusterConsentProvider::new(
        "onetrust",
        serde_json::from_value::<ClusterConsentProviderSpec>(serde_json::json!({
            "oneTrust": {"hostname": "app-eu.onetrust.com", "credentialsSecretRef": {"name": "ot"}},
            "allowedNamespaces": {"names": ["team-*"], "selector": {"matchLabels": {"consent": "yes"}}}
        }))
        .unwrap(),
    )
}

const GUID: &str = "123e4567-e89b-12d3-a456-426614174000";

#[test]
fn a_namespaced_provider_is_combined_with_the_tokens_own_part() {
    let catalog = catalog(vec![mx_provider("team-a")], vec![], vec![]);
    let ct = token("team-a", serde_json::json!({"providerRef": {"name": "mx"}, "customerId": "c-1"}));
    let resolution = resolve(&ct, &catalog).unwrap();
    let ProviderSource::Fdx(source) = &resolution.provider else { panic!("FDX expected") };
    assert_eq!((source.base_url.as_str(), source.api_version.as_str()), ("https://bank.example", "v4"));
    assert_eq!(source.customer_id, "c-1");
    assert_eq!(resolution.credentials().namespace, "team-a");
    assert_eq!(resolution.credentials().reference.name, "mx-creds");
    assert_eq!(credentials_secret_of(&ct, &catalog), Some(("team-a".into(), "mx-creds".into())));

    // Another namespace's provider of that name is not this one's.
    let elsewhere = token("team-b", serde_json::json!({"providerRef": {"name": "mx"}, "customerId": "c-1"}));
    assert_eq!(resolve(&elsewhere, &catalog).unwrap_err().reason(), "ProviderNotFound");
    // The wrong half for the provider's kind.
    let wrong = token("team-a", serde_json::json!({"providerRef": {"name": "mx"}, "collectionPoint": {"guid": GUID}}));
    let err = resolve(&wrong, &catalog).unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(err.to_string().contains("spec.customerId"), "{err}");
}

#[test]
fn a_cluster_provider_serves_only_the_namespaces_it_allows() {
    let catalog = catalog(
        vec![],
        vec![onetrust_cluster_provider()],
        vec![("team-a", &[]), ("labelled", &[("consent", "yes")]), ("other", &[])],
    );
    let spec = serde_json::json!({
        "providerRef": {"kind": "ClusterConsentProvider", "name": "onetrust"},
        "collectionPoint": {"guid": GUID}
    });
    for allowed in ["team-a", "labelled"] {
        let resolution = resolve(&token(allowed, spec.clone()), &catalog).unwrap();
        assert_eq!(resolution.credentials_namespace, "ops", "the operator's namespace by default");
        assert_eq!(resolution.via, Some(ProviderKey::Cluster { name: "onetrust".into() }));
        let ProviderSource::OneTrust(source) = resolution.provider else { panic!("OneTrust expected") };
        assert_eq!(source.collection_point.guid, GUID);
    }
    let err = resolve(&token("other", spec.clone()), &catalog).unwrap_err();
    assert_eq!(err.reason(), "NamespaceNotAllowed");
    assert!(err.to_string().contains("onetrust"), "{err}");
    assert_eq!(credentials_secret_of(&token("team-a", spec), &catalog), Some(("ops".into(), "ot".into())));
}

#[test]
fn a_provider_may_limit_the_collection_points_and_customers_asked_for() {
    let mut onetrust = onetrust_cluster_provider();
    if let Some(tenant) = onetrust.spec.endpoints.one_trust.as_mut() {
        tenant.allowed_collection_points = vec![GUID.to_uppercase()];
    }
    let mut mx = mx_provider("team-a");
    if let Some(fdx) = mx.spec.endpoints.fdx.as_mut() {
        fdx.allowed_customer_ids = vec!["team-a-*".into(), "exact-1".into()];
    }
    let catalog = catalog(vec![mx], vec![onetrust], vec![("team-a", &[])]);
    let onetrust_ref = serde_json::json!({"kind": "ClusterConsentProvider", "name": "onetrust"});
    let asking = |guid: &str| {
        token("team-a", serde_json::json!({"providerRef": onetrust_ref, "collectionPoint": {"guid": guid}}))
    };
    assert!(resolve(&asking(GUID), &catalog).is_ok(), "listed (GUIDs compare without case)");
    let err = resolve(&asking("00000000-0000-4000-8000-000000000000"), &catalog).unwrap_err();
    assert_eq!(err.reason(), "RequestNotAllowed");
    assert!(
        err.to_string().contains("ClusterConsentProvider onetrust")
            && err.to_string().contains("spec.oneTrust.allowedCollectionPoints"),
        "says which rule refused: {err}"
    );

    let customer = |id: &str| token("team-a", serde_json::json!({"providerRef": {"name": "mx"}, "customerId": id}));
    for allowed in ["team-a-1", "team-a-", "exact-1"] {
        assert!(resolve(&customer(allowed), &catalog).is_ok(), "{allowed}");
    }
    for refused in ["team-b-1", "exact-10", "exact"] {
        let err = resolve(&customer(refused), &catalog).unwrap_err();
        assert_eq!(err.reason(), "RequestNotAllowed", "{refused}");
        assert!(err.to_string().contains("spec.fdx.allowedCustomerIds"), "{err}");
        assert!(!err.to_string().contains(refused), "the customer id is personal data: {err}");
    }
}

#[test]
fn an_inline_provider_uses_credentials_of_its_own_namespace() {
    let catalog = catalog(vec![], vec![], vec![]);
    let ct = crate::fixtures::fdx_consent_token("https://bank.example");
    let resolution = resolve(&ct, &catalog).unwrap();
    assert_eq!(resolution.via, None);
    assert_eq!(resolution.credentials().namespace, ct.namespace().unwrap());
}
