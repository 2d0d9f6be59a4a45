//! From a ConsentToken to the provider it uses: written out in its spec, or a shared
//! ConsentProvider / ClusterConsentProvider named by `spec.providerRef`, combined with what is
//! the token's own (the collection point, the customer id). Pure over the caches it is given,
//! so each rule is a unit test.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::crd::{
    ClusterConsentProvider, ConsentProvider, ConsentProviderStatus, ConsentToken, CredentialsSecretRef,
    EXACTLY_ONE_PROVIDER, Endpoint, FdxSource, OneTrustSource, ProviderKind, ProviderRef, ProviderRefKind,
    ProviderSource,
};
use crate::error::Error;

/// The provider objects a reconcile may look up, as cached by the controller's watches.
#[derive(Clone)]
pub struct Catalog {
    pub providers: Store<ConsentProvider>,
    pub cluster_providers: Store<ClusterConsentProvider>,
    /// Namespace labels, for `allowedNamespaces.selector`.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Where a ClusterConsentProvider's credentials are when it does not say.
    pub operator_namespace: String,
}

impl Catalog {
    /// The one provider lookup: the provider object `reference` names for a ConsentToken in
    /// `namespace` (a ConsentProvider is looked for in that namespace).
    pub fn lookup(&self, namespace: &str, reference: &ProviderRef) -> Result<ProviderObject, Error> {
        let (found, kind) = match reference.kind {
            ProviderRefKind::ConsentProvider => (
                self.providers.get(&ObjectRef::new(&reference.name).within(namespace)).map(ProviderObject::Namespaced),
                "ConsentProvider",
            ),
            ProviderRefKind::ClusterConsentProvider => (
                self.cluster_providers.get(&ObjectRef::new(&reference.name)).map(ProviderObject::Cluster),
                "ClusterConsentProvider",
            ),
        };
        found.ok_or_else(|| Error::ProviderNotFound { kind, name: reference.name.clone() })
    }

    /// Every provider object cached, of both kinds.
    pub fn all(&self) -> Vec<ProviderObject> {
        let namespaced = self.providers.state().into_iter().map(ProviderObject::Namespaced);
        namespaced.chain(self.cluster_providers.state().into_iter().map(ProviderObject::Cluster)).collect()
    }

    /// Where a provider object's credentials Secret is: a ConsentProvider's in its own
    /// namespace, a ClusterConsentProvider's in its `credentialsNamespace` or the operator's.
    pub fn credentials_namespace(&self, provider: &ProviderObject) -> String {
        match provider {
            ProviderObject::Namespaced(p) => p.namespace().unwrap_or_default(),
            ProviderObject::Cluster(p) => {
                p.spec.credentials_namespace.clone().unwrap_or_else(|| self.operator_namespace.clone())
            }
        }
    }

    /// The credentials Secret (namespace, name) of a provider object with an endpoint.
    pub fn credentials_secret(&self, provider: &ProviderObject) -> Option<(String, String)> {
        let name = provider.endpoint()?.credentials_secret_ref().name.clone();
        Some((self.credentials_namespace(provider), name))
    }
}

/// A shared provider object, of either kind.
#[derive(Debug, Clone)]
pub enum ProviderObject {
    Namespaced(Arc<ConsentProvider>),
    Cluster(Arc<ClusterConsentProvider>),
}

impl ProviderObject {
    pub fn key(&self) -> ProviderKey {
        match self {
            Self::Namespaced(p) => {
                ProviderKey::Namespaced { namespace: p.namespace().unwrap_or_default(), name: p.name_any() }
            }
            Self::Cluster(p) => ProviderKey::Cluster { name: p.name_any() },
        }
    }

    /// `None` when the spec names no endpoint or both (which the CRD refuses).
    pub fn endpoint(&self) -> Option<Endpoint<'_>> {
        match self {
            Self::Namespaced(p) => p.spec.endpoints.endpoint(),
            Self::Cluster(p) => p.spec.endpoints.endpoint(),
        }
    }

    pub fn generation(&self) -> Option<i64> {
        match self {
            Self::Namespaced(p) => p.metadata.generation,
            Self::Cluster(p) => p.metadata.generation,
        }
    }

    pub fn status(&self) -> Option<&ConsentProviderStatus> {
        match self {
            Self::Namespaced(p) => p.status.as_ref(),
            Self::Cluster(p) => p.status.as_ref(),
        }
    }
}

/// Which provider object a ConsentToken uses; also its metric and status name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProviderKey {
    Namespaced { namespace: String, name: String },
    Cluster { name: String },
}

/// As messages name it: "ConsentProvider team/mx", "ClusterConsentProvider mx".
impl std::fmt::Display for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Namespaced { namespace, name } => write!(f, "ConsentProvider {namespace}/{name}"),
            Self::Cluster { name } => write!(f, "ClusterConsentProvider {name}"),
        }
    }
}

/// Where a credentials Secret is.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialsLocation {
    pub namespace: String,
    pub reference: CredentialsSecretRef,
}

/// What [`resolve`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub provider: ProviderSource,
    pub credentials_namespace: String,
    /// The shared provider object, when the spec names one.
    pub via: Option<ProviderKey>,
}

impl Resolution {
    pub fn credentials(&self) -> CredentialsLocation {
        CredentialsLocation {
            namespace: self.credentials_namespace.clone(),
            reference: self.provider.credentials_secret_ref().clone(),
        }
    }
}

/// The provider `ct` uses, or why it may not use one.
pub fn resolve(ct: &ConsentToken, catalog: &Catalog) -> Result<Resolution, Error> {
    let namespace = ct.namespace().unwrap_or_default();
    if let Some(provider) = ct.spec.inline_provider() {
        return Ok(Resolution { provider, credentials_namespace: namespace, via: None });
    }
    let Some(reference) = &ct.spec.provider_ref else {
        return Err(Error::InvalidSpec(EXACTLY_ONE_PROVIDER.into()));
    };
    let provider = catalog.lookup(&namespace, reference)?;
    if let ProviderObject::Cluster(cluster) = &provider
        && !cluster.spec.allowed_namespaces.allows(&namespace, &namespace_labels(catalog, &namespace))
    {
        return Err(Error::NamespaceNotAllowed { provider: reference.name.clone() });
    }
    Ok(Resolution {
        provider: combine(ct, provider.endpoint())?,
        credentials_namespace: catalog.credentials_namespace(&provider),
        via: Some(provider.key()),
    })
}

/// The shared endpoint with the token's own part, or what is missing.
fn combine(ct: &ConsentToken, endpoint: Option<Endpoint<'_>>) -> Result<ProviderSource, Error> {
    let Some(endpoint) = endpoint else {
        return Err(Error::InvalidSpec(format!(
            "the provider named in spec.providerRef sets neither or both of spec.oneTrust and spec.fdx: {}",
            crate::api::crd::provider::EXACTLY_ONE_ENDPOINT
        )));
    };
    match (endpoint, &ct.spec.collection_point, &ct.spec.customer_id) {
        (Endpoint::OneTrust(tenant), Some(collection_point), None) => Ok(ProviderSource::OneTrust(OneTrustSource {
            hostname: tenant.hostname.clone(),
            collection_point: collection_point.clone(),
            credentials_secret_ref: tenant.credentials_secret_ref.clone(),
        })),
        (Endpoint::Fdx(endpoint), None, Some(customer_id)) => Ok(ProviderSource::Fdx(FdxSource {
            base_url: endpoint.base_url.clone(),
            api_version: endpoint.api_version.clone(),
            customer_id: customer_id.clone(),
            credentials_secret_ref: endpoint.credentials_secret_ref.clone(),
        })),
        (Endpoint::OneTrust(_), ..) => Err(Error::InvalidSpec(
            "spec.providerRef names a OneTrust provider: set spec.collectionPoint (and not spec.customerId)".into(),
        )),
        (Endpoint::Fdx(_), ..) => Err(Error::InvalidSpec(
            "spec.providerRef names an FDX provider: set spec.customerId (and not spec.collectionPoint)".into(),
        )),
    }
}

fn namespace_labels(catalog: &Catalog, namespace: &str) -> BTreeMap<String, String> {
    catalog.namespaces.get(&ObjectRef::new(namespace)).map(|ns| ns.labels().clone()).unwrap_or_default()
}

/// The credentials Secret `ct` uses (namespace, name), without checking anything else: what the
/// watch of credentials Secrets matches a change against.
pub fn credentials_secret_of(ct: &ConsentToken, catalog: &Catalog) -> Option<(String, String)> {
    let namespace = ct.namespace()?;
    if let Some(inline) = ct.spec.inline_provider() {
        return Some((namespace, inline.credentials_secret_ref().name.clone()));
    }
    let provider = catalog.lookup(&namespace, ct.spec.provider_ref.as_ref()?).ok()?;
    catalog.credentials_secret(&provider)
}

/// The provider object `ct` names, if any.
pub fn provider_key(ct: &ConsentToken) -> Option<ProviderKey> {
    let reference = ct.spec.provider_ref.as_ref()?;
    Some(match reference.kind {
        ProviderRefKind::ConsentProvider => {
            ProviderKey::Namespaced { namespace: ct.namespace()?, name: reference.name.clone() }
        }
        ProviderRefKind::ClusterConsentProvider => ProviderKey::Cluster { name: reference.name.clone() },
    })
}

/// The kind a spec's provider is, when it can be told without the provider object.
pub fn inline_kind(ct: &ConsentToken) -> Option<ProviderKind> {
    ct.spec.inline_provider().map(|p| p.kind())
}

#[cfg(test)]
mod tests {
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
        let wrong =
            token("team-a", serde_json::json!({"providerRef": {"name": "mx"}, "collectionPoint": {"guid": GUID}}));
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
    fn an_inline_provider_uses_credentials_of_its_own_namespace() {
        let catalog = catalog(vec![], vec![], vec![]);
        let ct = crate::fixtures::fdx_consent_token("https://bank.example");
        let resolution = resolve(&ct, &catalog).unwrap();
        assert_eq!(resolution.via, None);
        assert_eq!(resolution.credentials().namespace, ct.namespace().unwrap());
    }
}
