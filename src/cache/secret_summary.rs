//! What the operator keeps of each Secret it manages: a [`SecretSummary`], never a token.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::annotations::*;
use crate::api::crd::ConsentToken;
use crate::basics::packed_strings::PackedStrings;
use crate::provider::token;

/// Strings the operator writes into every Secret: a summary refers to these instead of keeping
/// a copy each.
const WELL_KNOWN: [&str; 13] = [
    MANAGED_BY_LABEL,
    MANAGED_BY,
    FINGERPRINT,
    REFRESHED_AT,
    EXPIRES_AT,
    NEXT_REFRESH_AT,
    GENERATION,
    CREDENTIALS_VERSION,
    COLLECTION_POINT_VERSION,
    REQUEST,
    WRITTEN,
    "Opaque",
    "token",
];

/// What the operator keeps of one of its Secrets: what a reconcile reads (names, uid, controller,
/// type, labels, annotations) and each data value's fingerprint, never a value, all in one
/// allocation ([`PackedStrings`]). A cached `Secret` cost about 2.8 KB (three B-tree maps of at
/// least one 544-byte node each, and a 456-byte struct), the largest item in the operator's
/// memory; a summary with a string of its own for each of these about 1.2 KB; packed about
/// 0.35 KB. Everything that reads a Secret of ours goes through this.
#[derive(Clone, PartialEq)]
pub struct SecretSummary {
    /// Name, namespace, uid, the uid of the owner reference marked as controller, type; then
    /// each label, each annotation, and each data key with the fingerprint of its value, as key
    /// and value, in key order.
    strings: PackedStrings,
    labels: usize,
    annotations: usize,
    data: usize,
}

/// Where the single strings are in [`SecretSummary::strings`], before the pairs.
const NAME: usize = 0;
const NAMESPACE: usize = 1;
const UID: usize = 2;
const CONTROLLER: usize = 3;
const TYPE: usize = 4;
const PAIRS: usize = 5;

impl SecretSummary {
    pub fn of(secret: &Secret) -> Self {
        fn pairs(map: Option<&BTreeMap<String, String>>) -> impl Iterator<Item = Option<&str>> {
            map.into_iter().flatten().flat_map(|(k, v)| [Some(k.as_str()), Some(v.as_str())])
        }
        let fingerprints: Vec<(&str, String)> =
            secret.data.iter().flatten().map(|(key, value)| (key.as_str(), token::fingerprint(&value.0))).collect();
        let controller = secret.owner_references().iter().find(|owner| owner.controller == Some(true));
        let singles = [
            secret.metadata.name.as_deref(),
            secret.metadata.namespace.as_deref(),
            secret.metadata.uid.as_deref(),
            controller.map(|owner| owner.uid.as_str()),
            secret.type_.as_deref(),
        ];
        let strings = singles
            .into_iter()
            .chain(pairs(secret.metadata.labels.as_ref()))
            .chain(pairs(secret.metadata.annotations.as_ref()))
            .chain(fingerprints.iter().flat_map(|(k, v)| [Some(*k), Some(v.as_str())]));
        Self {
            strings: PackedStrings::new(&WELL_KNOWN, strings),
            labels: secret.metadata.labels.as_ref().map_or(0, BTreeMap::len),
            annotations: secret.metadata.annotations.as_ref().map_or(0, BTreeMap::len),
            data: fingerprints.len(),
        }
    }

    fn single(&self, at: usize) -> Option<&str> {
        self.strings.iter(&WELL_KNOWN).nth(at).flatten()
    }

    pub fn name(&self) -> &str {
        self.single(NAME).unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.single(NAMESPACE).unwrap_or_default()
    }

    pub fn uid(&self) -> Option<&str> {
        self.single(UID)
    }

    pub fn controller(&self) -> Option<&str> {
        self.single(CONTROLLER)
    }

    pub fn type_(&self) -> Option<&str> {
        self.single(TYPE)
    }

    /// The key-value pairs of one section: `skip` pairs after the single strings, `count` long.
    fn pairs(&self, skip: usize, count: usize) -> impl Iterator<Item = (&str, &str)> {
        let mut strings = self.strings.iter(&WELL_KNOWN).skip(PAIRS + 2 * skip).take(2 * count);
        std::iter::from_fn(move || Some((strings.next()?.unwrap_or_default(), strings.next()?.unwrap_or_default())))
    }

    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs(0, self.labels)
    }

    pub fn annotations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs(self.labels, self.annotations)
    }

    /// Each data key with the fingerprint of its value.
    pub fn data(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs(self.labels + self.annotations, self.data)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The fingerprint of the value under `key`.
    pub fn fingerprint(&self, key: &str) -> Option<&str> {
        self.data().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// What is known of this Secret once it is gone: its name, namespace and uid, and its
    /// controller as a ConsentToken (the summary keeps the controller's uid only; a Secret
    /// labelled as ours is controlled by one, and waking a uid that is no ConsentToken does
    /// nothing).
    pub fn tombstone(&self) -> Secret {
        let controller = self.controller().map(|uid| OwnerReference {
            api_version: ConsentToken::api_version(&()).into_owned(),
            kind: ConsentToken::kind(&()).into_owned(),
            name: String::new(),
            uid: uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: None,
        });
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name().to_owned()),
                namespace: Some(self.namespace().to_owned()),
                uid: self.uid().map(str::to_owned),
                owner_references: controller.map(|owner| vec![owner]),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        }
    }

    /// Whether this ConsentToken created the Secret (its controller owner reference).
    pub fn is_controlled_by(&self, ct: &ConsentToken) -> bool {
        ct.metadata.uid.as_deref().is_some_and(|uid| self.controller() == Some(uid))
    }
}

/// Names, labels, annotations and data keys (no fingerprint: they say nothing to a reader).
impl std::fmt::Debug for SecretSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSummary")
            .field("name", &self.name())
            .field("namespace", &self.namespace())
            .field("uid", &self.uid())
            .field("controller", &self.controller())
            .field("type", &self.type_())
            .field("labels", &self.labels().collect::<Vec<_>>())
            .field("annotations", &self.annotations().collect::<Vec<_>>())
            .field("data", &self.data().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}
