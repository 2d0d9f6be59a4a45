//! The `ConsentToken` custom resource (`consent.dev/v1alpha1`).
//!
//! Doc comments on these types become the CRD's OpenAPI descriptions, which is what
//! `kubectl explain consenttoken.spec` prints: they are written for users.
//! Validation that the API server can do lives here too (types, enums, patterns, CEL rules),
//! so a wrong object is refused by `kubectl apply` with a message that says what to fix.
//! (Over 400 lines because every field carries its user documentation; it holds nothing else.)

pub mod provider;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use provider::{
    AllowedNamespaces, ClusterConsentProvider, ClusterConsentProviderSpec, ConsentProvider, ConsentProviderSpec,
    ConsentProviderStatus, Endpoint, EndpointSpec, FdxEndpoint, OneTrustTenant,
};

/// What the API server says when a spec names no provider or more than one; the operator says
/// the same should such an object reach it anyway (a CRD older than the operator).
pub const EXACTLY_ONE_PROVIDER: &str = "set exactly one provider: spec.providerRef, spec.oneTrust or spec.fdx";
/// What goes with `spec.providerRef`.
pub const PROVIDER_REF_NEEDS: &str = "with spec.providerRef, set spec.collectionPoint (a OneTrust provider) or spec.customerId (an FDX provider), one of them";
/// What does not go without it.
pub const ONLY_WITH_PROVIDER_REF: &str = "spec.collectionPoint and spec.customerId go with spec.providerRef; with spec.oneTrust or spec.fdx they are set inside those";

pub(crate) const HOSTNAME_RULE: &str = "self.matches('^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$')";
pub(crate) const HOSTNAME_MESSAGE: &str = "hostname must be a bare host name with an optional port, such as app-eu.onetrust.com or localhost:8443 (no scheme, no path)";
pub(crate) const BASE_URL_RULE: &str = "self.matches('^https?://[^/?#\\\\s]+(/[^?#\\\\s]*)?$')";
pub(crate) const BASE_URL_MESSAGE: &str =
    "baseUrl must be an absolute URL such as https://consent.bank.example, without query or fragment";
pub(crate) const API_VERSION_RULE: &str = "self.matches('^v[0-9]+$')";
pub(crate) const API_VERSION_MESSAGE: &str = "apiVersion must look like v4";
const CUSTOMER_ID_RULE: &str = "self.matches('^[A-Za-z0-9._~-]+$')";
const CUSTOMER_ID_MESSAGE: &str =
    "customerId must be the customer's openid_connect_user_id: letters, digits, '.', '_', '~' or '-'";

/// A token from a consent platform, kept fresh in a Secret that workloads mount.
///
/// Exactly one provider must be set: `providerRef` (a shared ConsentProvider or
/// ClusterConsentProvider), or `oneTrust` or `fdx` written out here.
// clippy reads the repeated `type_ = ...` of the printcolumn list as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "consent.dev",
    version = "v1alpha1",
    kind = "ConsentToken",
    doc = "A token from a consent platform (OneTrust collection point, MX / FDX consent management), fetched with credentials from a Secret, written into a target Secret that pods mount, and renewed from the token's own expiry. `kubectl explain consenttoken.spec` for the fields; status.conditions[Ready] says whether the Secret holds a valid token, and its reason what is going on; status.conditions[Synced] whether the last refresh succeeded.",
    plural = "consenttokens",
    shortname = "ctok",
    category = "consent",
    namespaced,
    status = "ConsentTokenStatus",
    derive = "PartialEq",
    printcolumn(name = "Provider", type_ = "string", json_path = ".status.provider"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Synced", type_ = "string", json_path = ".status.conditions[?(@.type==\"Synced\")].status"),
    printcolumn(name = "Lifetime", type_ = "string", json_path = ".status.tokenLifetime"),
    printcolumn(
        name = "Since",
        type_ = "date",
        json_path = ".status.conditions[?(@.type==\"Ready\")].lastTransitionTime"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Message",
        type_ = "string",
        priority = "1",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    )
)]
#[x_kube(
    validation = Rule::new("[has(self.providerRef), has(self.oneTrust), has(self.fdx)].filter(x, x).size() == 1").message(EXACTLY_ONE_PROVIDER),
    validation = Rule::new("!has(self.providerRef) || has(self.collectionPoint) != has(self.customerId)").message(PROVIDER_REF_NEEDS),
    validation = Rule::new("has(self.providerRef) || (!has(self.collectionPoint) && !has(self.customerId))").message(ONLY_WITH_PROVIDER_REF),
)]
#[serde(rename_all = "camelCase")]
pub struct ConsentTokenSpec {
    /// A shared provider: a ConsentProvider in this namespace or a ClusterConsentProvider that
    /// allows this namespace. With a OneTrust provider set `collectionPoint`, with an FDX
    /// provider `customerId`. Mutually exclusive with `oneTrust` and `fdx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<ProviderRef>,

    /// With `providerRef` naming a OneTrust provider: the collection point whose token is fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_point: Option<CollectionPoint>,

    /// With `providerRef` naming an FDX provider: the customer's `openid_connect_user_id`; the
    /// token is scoped to `customer.modify_consent:{customerId}`. Personal data: the operator
    /// never logs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(CUSTOMER_ID_RULE).message(CUSTOMER_ID_MESSAGE))]
    #[schemars(length(min = 1, max = 256))]
    pub customer_id: Option<String>,

    /// Fetch a OneTrust collection point token (a JWT used as `requestInformation` when
    /// posting consent receipts). Mutually exclusive with `fdx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_trust: Option<Box<OneTrustSource>>,

    /// Fetch an MX / FDX Consent Management Dashboard token for one customer (a JWT that
    /// lives five minutes). Mutually exclusive with `oneTrust`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fdx: Option<Box<FdxSource>>,

    /// Where the token is written. Defaults to a Secret named after this resource, key `token`.
    #[serde(default)]
    pub target: TargetSecret,

    /// When the token is renewed. The defaults suit both providers.
    #[serde(default)]
    pub refresh: RefreshPolicy,
}

/// OneTrust Universal Consent & Preference Management: OAuth 2.0 client credentials, then
/// `GET /api/consentmanager/v1/collectionpoints/{guid}/token`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OneTrustSource {
    /// The OneTrust hostname, for example `app.onetrust.com` or `app-eu.onetrust.com`, optionally
    /// with a port (`host:8443`). The operator calls `https://{hostname}`.
    #[x_kube(validation = Rule::new(HOSTNAME_RULE).message(HOSTNAME_MESSAGE))]
    #[schemars(length(min = 1, max = 260))]
    pub hostname: String,

    /// The collection point whose token is fetched.
    pub collection_point: CollectionPoint,

    /// The Secret in this namespace holding the OneTrust OAuth client credentials.
    pub credentials_secret_ref: CredentialsSecretRef,
}

/// A OneTrust collection point.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CollectionPoint {
    /// The collection point's GUID, for example `123e4567-e89b-12d3-a456-426614174000`.
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("guid must be a UUID such as 123e4567-e89b-12d3-a456-426614174000"))]
    #[schemars(length(max = 36))]
    pub guid: String,

    /// The collection point version to fetch the token for. Absent: the most recent version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub version: Option<i64>,

    /// Only fetch the token if the collection point is in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "collection_point_state_schema")]
    pub state: Option<CollectionPointState>,
}

// Written out so the CRD lists only the four states: the derived schema of an
// `Option<enum>` also lists `null`, which `kubectl` would then offer as a value.
fn collection_point_state_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["ACTIVE", "DRAFT", "RETIRED", "INACTIVE"]})
}

/// The state filter of a collection point token request.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CollectionPointState {
    Active,
    Draft,
    Retired,
    Inactive,
}

impl CollectionPointState {
    /// The value OneTrust expects in the `state` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draft => "DRAFT",
            Self::Retired => "RETIRED",
            Self::Inactive => "INACTIVE",
        }
    }
}

/// MX Data Access Customer Consent Management Dashboard API (FDX-aligned):
/// `POST {baseUrl}/api/{apiVersion}/token` with HTTP Basic client credentials.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FdxSource {
    /// Base URL of the data provider's API, for example `https://consent.bank.example`.
    /// Must be https (plain http only works when the operator runs with `--allow-insecure-http`,
    /// which is meant for local development).
    #[x_kube(validation = Rule::new(BASE_URL_RULE).message(BASE_URL_MESSAGE))]
    #[schemars(length(max = 2048))]
    pub base_url: String,

    /// The FDX API version in the path, `/api/{apiVersion}/token`.
    #[serde(default = "default_fdx_api_version")]
    #[x_kube(validation = Rule::new(API_VERSION_RULE).message(API_VERSION_MESSAGE))]
    #[schemars(length(max = 8))]
    pub api_version: String,

    /// The customer's `openid_connect_user_id`; the token is scoped to
    /// `customer.modify_consent:{customerId}`. Personal data: the operator never logs it.
    #[x_kube(validation = Rule::new(CUSTOMER_ID_RULE).message(CUSTOMER_ID_MESSAGE))]
    #[schemars(length(min = 1, max = 256))]
    pub customer_id: String,

    /// The Secret in this namespace holding the API client credentials generated in the
    /// Data Provider Portal (Configuration > Consent Dashboard Management).
    pub credentials_secret_ref: CredentialsSecretRef,
}

/// A shared provider object.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRef {
    /// `ConsentProvider` (in this namespace, the default) or `ClusterConsentProvider`.
    #[serde(default)]
    pub kind: ProviderRefKind,
    /// The provider's name.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("name must be an object name: lower-case letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The kind of a shared provider.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ProviderRefKind {
    #[default]
    ConsentProvider,
    ClusterConsentProvider,
}

pub(crate) fn default_fdx_api_version() -> String {
    "v4".to_owned()
}

/// A Secret in the same namespace as the ConsentToken holding a client id and secret. The
/// Secret is used only if its owner marked it with the provider hosts its values may be sent
/// to, in the annotation `consent.dev/allowed-hosts` (comma-separated: `app-eu.onetrust.com`,
/// `*.onetrust.com`); otherwise the ConsentToken reports `CredentialsNotAllowed` and nothing is
/// sent.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret. It must be in the ConsentToken's namespace.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("name must be a Secret name: lower-case letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key holding the client id.
    #[serde(default = "default_client_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub client_id_key: String,

    /// Key holding the client secret.
    #[serde(default = "default_client_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub client_secret_key: String,
}

fn default_client_id_key() -> String {
    "client_id".to_owned()
}
fn default_client_secret_key() -> String {
    "client_secret".to_owned()
}

/// The Secret the operator creates, owns and keeps up to date. Changing `labels`,
/// `annotations` or `extraKeys` updates the Secret without fetching a new token.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.extraKeys) || !((has(self.extraKeys.expiresAt) && self.extraKeys.expiresAt == (has(self.key) ? self.key : 'token')) || (has(self.extraKeys.refreshedAt) && self.extraKeys.refreshedAt == (has(self.key) ? self.key : 'token')) || (has(self.extraKeys.document) && self.extraKeys.document == (has(self.key) ? self.key : 'token')))").message(EXTRA_KEYS_DIFFER))]
#[serde(rename_all = "camelCase")]
pub struct TargetSecret {
    /// Name of the Secret to write. Defaults to the ConsentToken's name. A Secret of that name
    /// that this operator did not create is never overwritten: the ConsentToken reports
    /// `TargetConflict` instead, until the Secret's owner offers it to this ConsentToken with
    /// the annotation `consent.dev/adopt-by: <this ConsentToken's name>` (and
    /// `consent.dev/adopt-other-keys: keep|drop` for the keys it does not write). It is then
    /// taken over in the write of its first token, with no gap for the pods that mount it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("secretName must be a Secret name: lower-case letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,

    /// Key in the Secret's data that holds the token. Defaults to `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("key must consist of letters, digits, '-', '_' or '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,

    /// Labels to put on the Secret, for example for a backup tool or a policy engine. The
    /// operator's own label (`app.kubernetes.io/managed-by`) cannot be set here. At most 64
    /// labels and 4096 characters in all (keys and values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "labels_schema")]
    pub labels: BTreeMap<String, String>,

    /// Annotations to put on the Secret, for example Stakater Reloader's
    /// `reloader.stakater.com/match: "true"`. Keys under `consent.dev/` are the operator's own
    /// and cannot be set here. At most 64 annotations and 16384 characters in all (keys and
    /// values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "annotations_schema")]
    pub annotations: BTreeMap<String, String>,

    /// More keys to write next to the token, each under the key name given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_keys: Option<Box<ExtraKeys>>,
}

/// What the API server says when an extra key would overwrite the token or another extra key.
pub const EXTRA_KEYS_DIFFER: &str =
    "spec.target.extraKeys must name keys that differ from each other and from spec.target.key (default token)";

/// Keys of the target Secret that hold facts about the token, so a consumer need not parse it.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!(has(self.expiresAt) && has(self.refreshedAt) && self.expiresAt == self.refreshedAt) && !(has(self.expiresAt) && has(self.document) && self.expiresAt == self.document) && !(has(self.refreshedAt) && has(self.document) && self.refreshedAt == self.document)").message(EXTRA_KEYS_DIFFER))]
#[serde(rename_all = "camelCase")]
pub struct ExtraKeys {
    /// Key for the token's expiry, RFC 3339 (`2026-11-24T10:15:00Z`). Not written for tokens
    /// without an expiry (OneTrust collection point tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(SECRET_KEY_RULE).message(SECRET_KEY_MESSAGE))]
    #[schemars(length(min = 1, max = 253))]
    pub expires_at: Option<String>,

    /// Key for the time the token was fetched, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(SECRET_KEY_RULE).message(SECRET_KEY_MESSAGE))]
    #[schemars(length(min = 1, max = 253))]
    pub refreshed_at: Option<String>,

    /// Key for a JSON document holding the token and its non-secret facts:
    /// `{"token", "fingerprint", "refreshedAt", "expiresAt", "collectionPointVersion"}` (the
    /// last two when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(SECRET_KEY_RULE).message(SECRET_KEY_MESSAGE))]
    #[schemars(length(min = 1, max = 253))]
    pub document: Option<String>,
}

const SECRET_KEY_RULE: &str = "self.matches('^[-._a-zA-Z0-9]+$')";
const SECRET_KEY_MESSAGE: &str = "a Secret key must consist of letters, digits, '-', '_' or '.'";

// Written out: CEL over a map needs bounds on its size and its values to be admitted, and the
// rules say what to fix in the user's words.
fn labels_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": {"type": "string", "maxLength": 63},
        "x-kubernetes-validations": [
            {"rule": "self.all(k, size(k) <= 253 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",
             "message": "label keys must be valid Kubernetes label keys, such as backup.example.com/tier"},
            {"rule": "self.all(k, self[k].matches('^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$'))",
             "message": "label values must be at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"},
            {"rule": "!('app.kubernetes.io/managed-by' in self)",
             "message": "labels may not set app.kubernetes.io/managed-by: the operator sets it"},
            {"rule": "self.map(k, size(k) + size(self[k])).sum() <= 4096",
             "message": "labels may hold at most 4096 characters in all, keys and values counted"}
        ]
    })
}

fn annotations_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": {"type": "string", "maxLength": 4096},
        "x-kubernetes-validations": [
            {"rule": "self.all(k, size(k) <= 253 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",
             "message": "annotation keys must be valid Kubernetes annotation keys, such as reloader.stakater.com/match"},
            {"rule": "self.all(k, !k.startsWith('consent.dev/'))",
             "message": "annotations under consent.dev/ are the operator's own and may not be set here"},
            {"rule": "self.map(k, size(k) + size(self[k])).sum() <= 16384",
             "message": "annotations may hold at most 16384 characters in all, keys and values counted"}
        ]
    })
}

/// Refresh timing. Tokens are mounted into pods through a Secret volume, which the kubelet
/// updates 60 to 90 seconds after the Secret changes, so renewal must leave that much time.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RefreshPolicy {
    /// For tokens with an expiry (`exp` claim): how long before expiry to renew, as a
    /// percentage of the token's lifetime from 1% to 90% (`50%`, the default: a 300-second
    /// token is renewed with 150 seconds left) or as a duration of at least 30s (`2m`, `90s`,
    /// `1h30m`; at most 90% of the lifetime is used). The bounds keep one ConsentToken from
    /// spending a shared provider account's quota on continuous renewals. So that thousands of
    /// tokens do not renew at once, a renewal may come up to a fifth of this earlier (at most
    /// 5 minutes; a new token's first renewal, earlier still when many are due together),
    /// never later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([1-9]|[1-8][0-9]|90)%$') || (self.matches('^([0-9]+(s|m|h))+$') && duration(self) >= duration('30s'))").message("renewBefore must be a percentage of the token lifetime from 1% to 90% (such as 50%) or a duration of at least 30s (such as 90s, 2m or 1h30m)"))]
    #[schemars(length(max = 32))]
    pub renew_before: Option<String>,

    /// For tokens without an expiry (OneTrust collection point tokens): how often to fetch
    /// the token again, as a duration (default `1h`, at least `1m`). A spec change always
    /// fetches at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(s|m|h))+$') && duration(self) >= duration('1m')").message("interval must be a duration of at least 1m, such as 30m or 1h"))]
    #[schemars(length(max = 32))]
    pub interval: Option<String>,
}

/// What the operator observed. Never holds the token itself.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsentTokenStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `OneTrust` or `FDX`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,

    /// `Ready` is True while the target Secret holds a token that has not expired. Its reason
    /// says what is going on: `TokenValid`, `Pending`, `CredentialsNotFound`,
    /// `CredentialsNotAllowed` (the credentials Secret is not marked for the provider host),
    /// `ProviderNotAllowed` (the operator's admin does not allow the host),
    /// `ProviderAddressNotAllowed` (the host is at a link-local, metadata or private address),
    /// `ProviderNotFound` (`spec.providerRef` names no provider), `NamespaceNotAllowed` (the
    /// ClusterConsentProvider does not allow this namespace; nothing is sent),
    /// `RequestNotAllowed` (the provider object does not list this collection point or customer
    /// id; nothing is sent),
    /// `Unauthorized`, `Forbidden`, `UpstreamRejected`, `RateLimited`, `UpstreamError`, `InvalidResponse`,
    /// `TargetConflict`, `InvalidSpec`, `KubernetesError`, `InternalError` or `Expired`. A
    /// refresh failure while the current token is still valid keeps Ready True and shows the
    /// failure as the reason.
    ///
    /// `Synced` is False while the last refresh failed (its reason is the failure's, even while
    /// Ready stays True on a token still valid) or before the first token (`Pending`), and True
    /// (`Refreshed`) once a refresh succeeds. GitOps health checks and `kubectl wait
    /// --for=condition=Synced` read it to see a failing refresh before the token expires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// How long the provider's tokens live, rounded (`5m`, `1h`), as the last tokens measured;
    /// absent for tokens that carry no expiry. Changes only when the provider's lifetime does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime: Option<String>,

    /// When the token in the Secret expires (its `exp` claim). Set only while a refresh fails
    /// or after the token expired, when the token stays the one described here. While tokens are
    /// renewed on time the status is not rewritten for each one (one API write per renewal, not
    /// two): the live times are on the target Secret's `consent.dev/expires-at`,
    /// `consent.dev/refreshed-at` and `consent.dev/next-refresh-at` annotations, in the
    /// per-object metrics, and in `kubectl consent status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// When the token in the Secret was fetched. Set, like `expiresAt`, only while a refresh
    /// fails or after the token expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<Time>,

    /// When the operator will retry after a failure (or serve a refresh request that came
    /// within `--min-refresh-request-interval` of the last fetch). Kept here so a restarted
    /// operator resumes the back-off. While a failure goes on, the status is written when what
    /// it says changes (and at the 1st, 2nd, 4th, 8th... failure), so this may be behind the
    /// retries in between. Absent while tokens are renewed on time: the next renewal is on the
    /// target Secret's `consent.dev/next-refresh-at` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<Time>,

    /// Failed refresh attempts since the last success.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub consecutive_failures: i32,

    /// `sha256:` and the first 16 hex digits of the SHA-256 of the token the status describes
    /// (set with `expiresAt`): tells tokens apart without revealing them. The current token's is
    /// on the target Secret's `consent.dev/token-fingerprint` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_fingerprint: Option<String>,

    /// OneTrust only: the collection point version the served token belongs to
    /// (its `processVersion` claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_point_version: Option<i64>,

    /// `resourceVersion` of the credentials Secret the current token was fetched with; when the
    /// Secret changes, the token is fetched again with the new credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_version: Option<String>,

    /// The value of the `consent.dev/refresh-requested-at` annotation last acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_requested_at: Option<String>,

    /// Set while the provider is rate limiting requests: what it said in its 429 answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Box<RateLimitStatus>>,

    /// The last failed refresh, kept while `consecutiveFailures` is above zero: also while the
    /// operator waits for the next attempt, after a restart, and once the token has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Box<FailureStatus>>,
}

/// A failed refresh attempt.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailureStatus {
    /// The reason, as in the Ready condition (for example `UpstreamError`, `Unauthorized`).
    pub reason: String,
    /// What failed and what to do about it. Never holds a secret or a response body.
    pub message: String,
    /// When it failed.
    pub time: Time,
}

/// The rate-limit facts from the provider's last 429 answer (none of them is secret).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitStatus {
    /// No request is sent to this provider endpoint before this time (from `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Time>,
    /// `ot-period`: the window the limit applies to (`MINUTE` or `HOUR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// `ot-requests-allowed`: requests allowed in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_allowed: Option<i64>,
    /// `ot-request-made`: requests made in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_made: Option<i64>,
    /// `ot-ratelimit-event-id`: quote it to the provider's support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// A provider request written out in full: a ConsentToken's own `oneTrust` or `fdx`, or a
/// shared provider's endpoint combined with the ConsentToken's collection point or customer id
/// (see `provider::lookup`). Where OneTrust and FDX differ: `provider`'s module doc.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderSource {
    OneTrust(OneTrustSource),
    Fdx(FdxSource),
}

/// The provider's name as shown in status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OneTrust,
    Fdx,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OneTrust => "OneTrust",
            Self::Fdx => "FDX",
        }
    }
}

impl ProviderSource {
    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::OneTrust(_) => ProviderKind::OneTrust,
            Self::Fdx(_) => ProviderKind::Fdx,
        }
    }

    pub fn credentials_secret_ref(&self) -> &CredentialsSecretRef {
        match self {
            Self::OneTrust(source) => &source.credentials_secret_ref,
            Self::Fdx(source) => &source.credentials_secret_ref,
        }
    }
}

impl ConsentTokenSpec {
    /// The provider written out in this spec, or `None` when it uses `providerRef`, names none
    /// or names more than one (which the CRD's validation refuses, see [`EXACTLY_ONE_PROVIDER`]).
    pub fn inline_provider(&self) -> Option<ProviderSource> {
        match (&self.one_trust, &self.fdx, &self.provider_ref) {
            (Some(source), None, None) => Some(ProviderSource::OneTrust((**source).clone())),
            (None, Some(source), None) => Some(ProviderSource::Fdx((**source).clone())),
            _ => None,
        }
    }
}

impl ConsentToken {
    /// Name of the Secret the token is written to.
    pub fn target_secret_name(&self) -> String {
        self.spec.target.secret_name.clone().unwrap_or_else(|| kube::ResourceExt::name_any(self))
    }

    /// Key of the token in the target Secret.
    pub fn target_key(&self) -> &str {
        self.spec.target.key.as_deref().unwrap_or("token")
    }
}

#[cfg(test)]
mod tests {
    use super::EXACTLY_ONE_PROVIDER;

    #[test]
    fn the_invalid_example_quotes_the_message_the_api_server_gives() {
        // tests/node.rs applies the example and compares the refusal with this quote.
        let example = include_str!("../../deploy/examples/invalid-consenttoken.yaml");
        let comment: String = example
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(comment.contains(&format!("\"{EXACTLY_ONE_PROVIDER}\"")), "{comment}");
    }
}
