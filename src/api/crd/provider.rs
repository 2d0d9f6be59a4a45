//! `ConsentProvider` (namespaced) and `ClusterConsentProvider` (cluster-scoped): a OneTrust
//! tenant or an MX / FDX endpoint with its credentials, written once and named by many
//! ConsentTokens through `spec.providerRef`, as cert-manager's Issuer / ClusterIssuer.
//!
//! Doc comments here become `kubectl explain consentprovider` and are written for users.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{
    API_VERSION_MESSAGE, API_VERSION_RULE, BASE_URL_MESSAGE, BASE_URL_RULE, CredentialsSecretRef, HOSTNAME_MESSAGE,
    HOSTNAME_RULE, ProviderKind, default_fdx_api_version,
};

/// What the API server says when a provider names no endpoint or both.
pub const EXACTLY_ONE_ENDPOINT: &str = "set exactly one of spec.oneTrust or spec.fdx";

/// A OneTrust tenant or an MX / FDX endpoint, with its credentials, for the ConsentTokens of
/// this namespace (they name it in `spec.providerRef`).
// clippy reads the repeated `type_ = ...` of the printcolumn list as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "consent.dev",
    version = "v1alpha1",
    kind = "ConsentProvider",
    doc = "A OneTrust tenant or an MX / FDX endpoint with its credentials, shared by the ConsentTokens of this namespace that name it in spec.providerRef.",
    plural = "consentproviders",
    shortname = "cprov",
    category = "consent",
    namespaced,
    status = "ConsentProviderStatus",
    printcolumn(name = "Provider", type_ = "string", json_path = ".status.provider"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Tokens", type_ = "integer", json_path = ".status.consentTokens"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.oneTrust) != has(self.fdx)").message(EXACTLY_ONE_ENDPOINT))]
#[serde(rename_all = "camelCase")]
pub struct ConsentProviderSpec {
    #[serde(flatten)]
    pub endpoints: EndpointSpec,
}

/// A OneTrust tenant or an MX / FDX endpoint, with its credentials, for ConsentTokens in the
/// namespaces it allows (`spec.allowedNamespaces`). Its credentials Secret lives in one
/// namespace (`spec.credentialsNamespace`, the operator's own by default), so it is not copied
/// into every team's namespace; one OAuth access token serves all its ConsentTokens.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "consent.dev",
    version = "v1alpha1",
    kind = "ClusterConsentProvider",
    doc = "A OneTrust tenant or an MX / FDX endpoint with its credentials Secret in one namespace, shared by the ConsentTokens of the namespaces it allows (spec.allowedNamespaces) that name it in spec.providerRef.",
    plural = "clusterconsentproviders",
    shortname = "ccprov",
    category = "consent",
    status = "ConsentProviderStatus",
    printcolumn(name = "Provider", type_ = "string", json_path = ".status.provider"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Tokens", type_ = "integer", json_path = ".status.consentTokens"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.oneTrust) != has(self.fdx)").message(EXACTLY_ONE_ENDPOINT))]
#[serde(rename_all = "camelCase")]
pub struct ClusterConsentProviderSpec {
    #[serde(flatten)]
    pub endpoints: EndpointSpec,

    /// The namespace of the credentials Secret. Defaults to the operator's own namespace. When
    /// the operator watches a list of namespaces, this must be its own namespace or one of them
    /// (it watches the Secret there to notice rotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("credentialsNamespace must be a namespace name: lower-case letters, digits and '-'"))]
    #[schemars(length(min = 1, max = 63))]
    pub credentials_namespace: Option<String>,

    /// The namespaces whose ConsentTokens may use this provider. A ConsentToken in any other
    /// namespace is refused with the reason `NamespaceNotAllowed`, and nothing is sent.
    pub allowed_namespaces: AllowedNamespaces,
}

/// The endpoint a provider object names: exactly one of the two (a rule on the spec).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    /// A OneTrust tenant. ConsentTokens using it set `spec.collectionPoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_trust: Option<OneTrustTenant>,

    /// An MX / FDX Consent Management Dashboard endpoint. ConsentTokens using it set
    /// `spec.customerId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fdx: Option<FdxEndpoint>,
}

/// Namespaces, by name and by label. A namespace is allowed when it matches either.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("size(self.names) > 0 || has(self.selector)").message("allowedNamespaces must list names or set a selector (names: ['*'] allows every namespace)"))]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// Namespace names. An entry ending in `*` allows every namespace whose name starts with
    /// what comes before it: `team-*`, or `*` for all.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(n, n.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?|[a-z0-9-]*[*])$'))").message("names must be namespace names, or a prefix followed by '*' such as team-*"))]
    #[schemars(length(max = 256), inner(length(min = 1, max = 64)))]
    pub names: Vec<String>,

    /// Namespaces whose labels match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A OneTrust tenant: OAuth 2.0 client credentials at `https://{hostname}`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OneTrustTenant {
    /// The OneTrust hostname, for example `app.onetrust.com` or `app-eu.onetrust.com`, optionally
    /// with a port (`host:8443`). The operator calls `https://{hostname}`.
    #[x_kube(validation = Rule::new(HOSTNAME_RULE).message(HOSTNAME_MESSAGE))]
    #[schemars(length(min = 1, max = 260))]
    pub hostname: String,

    /// The Secret holding the OneTrust OAuth client credentials: in the provider's namespace
    /// (ConsentProvider) or in `spec.credentialsNamespace` (ClusterConsentProvider). Its owner
    /// must mark it with the hosts it may be sent to (annotation `consent.dev/allowed-hosts`).
    pub credentials_secret_ref: CredentialsSecretRef,

    /// The collection points (by GUID) that ConsentTokens using this provider may ask for. A
    /// ConsentToken naming another is refused with the reason `RequestNotAllowed` before
    /// anything is read or sent. Empty (the default): any collection point the credentials
    /// reach, for every namespace the provider allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(g, g.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'))").message("allowedCollectionPoints must list collection point GUIDs such as 123e4567-e89b-12d3-a456-426614174000"))]
    #[schemars(length(max = 1024), inner(length(max = 36)))]
    pub allowed_collection_points: Vec<String>,
}

/// An MX / FDX endpoint: `POST {baseUrl}/api/{apiVersion}/token` with HTTP Basic client
/// credentials.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FdxEndpoint {
    /// Base URL of the data provider's API, for example `https://consent.bank.example`.
    #[x_kube(validation = Rule::new(BASE_URL_RULE).message(BASE_URL_MESSAGE))]
    #[schemars(length(max = 2048))]
    pub base_url: String,

    /// The FDX API version in the path, `/api/{apiVersion}/token`.
    #[serde(default = "default_fdx_api_version")]
    #[x_kube(validation = Rule::new(API_VERSION_RULE).message(API_VERSION_MESSAGE))]
    #[schemars(length(max = 8))]
    pub api_version: String,

    /// The Secret holding the API client credentials: in the provider's namespace
    /// (ConsentProvider) or in `spec.credentialsNamespace` (ClusterConsentProvider). Its owner
    /// must mark it with the hosts it may be sent to (annotation `consent.dev/allowed-hosts`).
    pub credentials_secret_ref: CredentialsSecretRef,

    /// The customer ids that ConsentTokens using this provider may ask for: exact ids, or a
    /// prefix followed by `*` (`team-a-*`). A ConsentToken naming another is refused with the
    /// reason `RequestNotAllowed` before anything is read or sent. Empty (the default): any
    /// customer the credentials reach, for every namespace the provider allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(p, p.matches('^[A-Za-z0-9._~-]*[*]?$') && p != '')").message("allowedCustomerIds must list customer ids (letters, digits, '.', '_', '~' or '-'), each optionally ending in '*' to match a prefix"))]
    #[schemars(length(max = 1024), inner(length(max = 257)))]
    pub allowed_customer_ids: Vec<String>,
}

/// What the operator observed about a provider. Never holds a credential.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsentProviderStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `OneTrust` or `FDX`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,

    /// `Ready` is True when the credentials Secret is present and allowed for the provider
    /// host, and, for OneTrust, an OAuth access token was obtained with it. Reasons:
    /// `AccessTokenObtained`, `CredentialsValid` (FDX: checked when a token is fetched),
    /// `CredentialsNotFound`, `CredentialsNotAllowed`, `ProviderNotAllowed`,
    /// `ProviderAddressNotAllowed`, `Unauthorized`, `Forbidden`, `UpstreamRejected`,
    /// `RateLimited`, `UpstreamError`, `InvalidResponse`, `InvalidSpec`, `KubernetesError` or
    /// `InternalError`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// How many ConsentTokens name this provider.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub consent_tokens: i32,
}

/// The endpoint a provider object describes (`oneTrust` or `fdx`). Where OneTrust and FDX
/// differ: `provider`'s module doc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Endpoint<'a> {
    OneTrust(&'a OneTrustTenant),
    Fdx(&'a FdxEndpoint),
}

impl EndpointSpec {
    /// `None` when the spec names no endpoint or both (which the CRD refuses).
    pub fn endpoint(&self) -> Option<Endpoint<'_>> {
        match (&self.one_trust, &self.fdx) {
            (Some(tenant), None) => Some(Endpoint::OneTrust(tenant)),
            (None, Some(endpoint)) => Some(Endpoint::Fdx(endpoint)),
            _ => None,
        }
    }
}

impl<'a> Endpoint<'a> {
    pub fn kind(self) -> ProviderKind {
        match self {
            Self::OneTrust(_) => ProviderKind::OneTrust,
            Self::Fdx(_) => ProviderKind::Fdx,
        }
    }

    pub fn credentials_secret_ref(self) -> &'a CredentialsSecretRef {
        match self {
            Self::OneTrust(tenant) => &tenant.credentials_secret_ref,
            Self::Fdx(endpoint) => &endpoint.credentials_secret_ref,
        }
    }
}

impl AllowedNamespaces {
    /// Whether a namespace with this name and these labels is allowed.
    pub fn allows(&self, namespace: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
        let by_name = self.names.iter().any(|pattern| name_matches(pattern, namespace));
        by_name || self.selector.as_ref().is_some_and(|selector| selector_matches(selector, labels))
    }
}

impl OneTrustTenant {
    /// Whether ConsentTokens may ask for this collection point (`allowedCollectionPoints`;
    /// empty allows any). GUIDs compare without case.
    pub fn allows_collection_point(&self, guid: &str) -> bool {
        let allowed = &self.allowed_collection_points;
        allowed.is_empty() || allowed.iter().any(|listed| listed.eq_ignore_ascii_case(guid))
    }
}

impl FdxEndpoint {
    /// Whether ConsentTokens may ask for this customer (`allowedCustomerIds`; empty allows any).
    pub fn allows_customer(&self, customer_id: &str) -> bool {
        let allowed = &self.allowed_customer_ids;
        allowed.is_empty() || allowed.iter().any(|pattern| name_matches(pattern, customer_id))
    }
}

/// A name against a list entry: the same name, or, for an entry ending in `*`, any name that
/// starts with what comes before it.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A label selector's meaning (`matchLabels` and `matchExpressions`, all of them must hold).
/// An operator the API does not define matches nothing.
fn selector_matches(selector: &LabelSelector, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let labels_match =
        selector.match_labels.as_ref().is_none_or(|want| want.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let expressions_match = selector.match_expressions.as_deref().unwrap_or_default().iter().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn namespaces_are_allowed_by_name_prefix_or_labels() {
        let by_name = AllowedNamespaces { names: vec!["team-*".into(), "payments".into()], selector: None };
        assert!(by_name.allows("team-a", &labels(&[])));
        assert!(by_name.allows("payments", &labels(&[])));
        assert!(!by_name.allows("payments-old", &labels(&[])));
        assert!(!by_name.allows("teams", &labels(&[])));
        let everyone = AllowedNamespaces { names: vec!["*".into()], selector: None };
        assert!(everyone.allows("anything", &labels(&[])));

        let by_label = AllowedNamespaces {
            names: vec![],
            selector: Some(LabelSelector {
                match_labels: Some(labels(&[("consent.dev/tenant", "eu")])),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["sandbox".into()]),
                }]),
            }),
        };
        assert!(by_label.allows("x", &labels(&[("consent.dev/tenant", "eu")])));
        assert!(!by_label.allows("x", &labels(&[("consent.dev/tenant", "eu"), ("tier", "sandbox")])));
        assert!(!by_label.allows("x", &labels(&[("consent.dev/tenant", "us")])));
        assert!(!AllowedNamespaces::default().allows("x", &labels(&[])), "nothing listed allows nothing");
    }
}
