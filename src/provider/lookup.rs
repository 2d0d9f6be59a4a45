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
    let endpoint = provider.endpoint();
    let source = combine(ct, endpoint)?;
    if let Some(endpoint) = endpoint {
        within_scope(&source, endpoint, &provider.key())?;
    }
    Ok(Resolution {
        provider: source,
        credentials_namespace: catalog.credentials_namespace(&provider),
        via: Some(provider.key()),
    })
}

/// Whether the provider object lets ConsentTokens ask for this collection point or customer
/// (its optional `allowedCollectionPoints` / `allowedCustomerIds`; empty allows any).
fn within_scope(source: &ProviderSource, endpoint: Endpoint<'_>, provider: &ProviderKey) -> Result<(), Error> {
    let refused = |what, list| Err(Error::RequestNotAllowed { provider: provider.to_string(), what, list });
    match (source, endpoint) {
        (ProviderSource::OneTrust(asked), Endpoint::OneTrust(tenant))
            if !tenant.allows_collection_point(&asked.collection_point.guid) =>
        {
            refused("collection points", "spec.oneTrust.allowedCollectionPoints")
        }
        (ProviderSource::Fdx(asked), Endpoint::Fdx(fdx)) if !fdx.allows_customer(&asked.customer_id) => {
            refused("customer ids", "spec.fdx.allowedCustomerIds")
        }
        _ => Ok(()),
    }
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
mod tests;
