//! The Secret a ConsentToken writes its token into: how it should look (a pure function of
//! the resource, the token and its [`TokenRecord`]), and what to send to make it so
//! ([`plan_write`]).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::annotations::*;
use crate::api::crd::ConsentToken;
use crate::cache::secret_summary::SecretSummary;
use crate::provider::token::{self, Token};
use crate::reconcile::token_record::TokenRecord;

/// The Secret as it should be with `token` in it: the token under its key, the extra keys the
/// spec asks for, the user's labels and annotations and the operator's own.
pub fn desired(ct: &ConsentToken, token: &Token, record: &TokenRecord) -> Secret {
    let mut data: BTreeMap<String, ByteString> =
        extra_values(ct, record).into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect();
    if let Some(key) = ct.spec.target.extra_keys.as_ref().and_then(|e| e.document.as_ref()) {
        data.insert(key.clone(), ByteString(document(token, record).into_bytes()));
    }
    data.insert(ct.target_key().to_owned(), ByteString(token.expose().as_bytes().to_vec()));
    Secret { data: Some(data), ..desired_without_token(ct, record) }
}

/// The non-secret extra keys (expiry, time of refresh) and their values.
fn extra_values(ct: &ConsentToken, record: &TokenRecord) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let Some(extra) = &ct.spec.target.extra_keys else { return values };
    if let (Some(key), Some(expires_at)) = (&extra.expires_at, record.expires_at) {
        values.insert(key.clone(), expires_at.to_string());
    }
    if let Some(key) = &extra.refreshed_at {
        values.insert(key.clone(), whole_seconds(record.refreshed_at));
    }
    values
}

/// RFC 3339 in whole seconds, as the ConsentToken's status shows times.
fn whole_seconds(at: Timestamp) -> String {
    Timestamp::from_second(at.as_second()).unwrap_or(at).to_string()
}

/// The JSON document of `extraKeys.document`: the token and its non-secret facts.
fn document(token: &Token, record: &TokenRecord) -> String {
    let mut doc = serde_json::json!({
        "token": token.expose(),
        "fingerprint": record.fingerprint,
        "refreshedAt": whole_seconds(record.refreshed_at),
    });
    if let Some(expires_at) = record.expires_at {
        doc["expiresAt"] = serde_json::Value::String(expires_at.to_string());
    }
    if let Some(version) = record.collection_point_version {
        doc["collectionPointVersion"] = serde_json::Value::from(version);
    }
    doc.to_string()
}

/// The keys the Secret's data should have.
fn expected_keys(ct: &ConsentToken, record: &TokenRecord) -> std::collections::BTreeSet<String> {
    let mut keys: std::collections::BTreeSet<String> = extra_values(ct, record).into_keys().collect();
    keys.insert(ct.target_key().to_owned());
    if let Some(key) = ct.spec.target.extra_keys.as_ref().and_then(|e| e.document.as_ref()) {
        keys.insert(key.clone());
    }
    keys
}

/// The Secret's metadata as it should be (no data): what [`matches`] compares against.
pub fn desired_without_token(ct: &ConsentToken, record: &TokenRecord) -> Secret {
    let mut annotations = ct.spec.target.annotations.clone();
    annotations.extend([
        (FINGERPRINT.to_owned(), record.fingerprint.clone()),
        (REFRESHED_AT.to_owned(), record.refreshed_at.to_string()),
        (NEXT_REFRESH_AT.to_owned(), record.next_refresh_at.to_string()),
        (GENERATION.to_owned(), record.generation.to_string()),
        (CREDENTIALS_VERSION.to_owned(), record.credentials_version.clone()),
    ]);
    if let Some(expires_at) = record.expires_at {
        annotations.insert(EXPIRES_AT.to_owned(), expires_at.to_string());
    }
    if let Some(version) = record.collection_point_version {
        annotations.insert(COLLECTION_POINT_VERSION.to_owned(), version.to_string());
    }
    if let Some(request) = &record.request {
        annotations.insert(REQUEST.to_owned(), request.clone());
    }
    let join = |keys: &mut dyn Iterator<Item = &String>| keys.map(String::as_str).collect::<Vec<_>>().join(",");
    let written = format!(
        "labels={};annotations={};data={}",
        join(&mut ct.spec.target.labels.keys()),
        join(&mut ct.spec.target.annotations.keys()),
        join(&mut expected_keys(ct, record).iter())
    );
    annotations.insert(WRITTEN.to_owned(), written);
    let mut labels = ct.spec.target.labels.clone();
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    Secret {
        metadata: ObjectMeta {
            name: Some(ct.target_secret_name()),
            namespace: ct.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: ct.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    }
}

/// Whether this ConsentToken created the Secret (its controller owner reference).
pub fn is_controlled_by(secret: &impl kube::Resource, ct: &ConsentToken) -> bool {
    let Some(uid) = ct.uid() else { return false };
    secret.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid)
}

/// A JSON merge patch removing from `actual` what an earlier spec had written and `desired` no
/// longer has (labels, annotations, data keys), or `None` when there is nothing to remove. It
/// also replaces the owner when a ConsentToken takes over the Secret a deleted one left: an
/// apply would add a second controller reference beside the one the create wrote (refused).
fn leftovers(actual: &SecretSummary, desired: &Secret) -> Option<serde_json::Value> {
    let written = actual.annotation(WRITTEN).unwrap_or_default();
    let recorded = |section: &str| -> Vec<String> {
        written
            .split(';')
            .find_map(|part| part.strip_prefix(section).and_then(|rest| rest.strip_prefix('=')))
            .map(|keys| keys.split(',').filter(|k| !k.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let stale = |keys: Vec<String>, have: &dyn Fn(&str) -> bool, want: &dyn Fn(&str) -> bool| {
        keys.into_iter()
            .filter(|k| have(k) && !want(k))
            .map(|k| (k, serde_json::Value::Null))
            .collect::<serde_json::Map<_, _>>()
    };
    let labels = stale(recorded("labels"), &|k| actual.label(k).is_some(), &|k| desired.labels().contains_key(k));
    let mut own: Vec<String> = recorded("annotations");
    own.extend(OPTIONAL_OWN.iter().map(|k| k.to_string()));
    let annotations = stale(own, &|k| actual.annotation(k).is_some(), &|k| desired.annotations().contains_key(k));
    let wanted_data = |k: &str| desired.data.as_ref().is_some_and(|data| data.contains_key(k));
    let data = stale(recorded("data"), &|k| actual.fingerprint(k).is_some(), &wanted_data);
    let controller = desired.owner_references().iter().find(|o| o.controller == Some(true)).map(|o| o.uid.as_str());
    let new_owner = controller.is_some() && actual.controller() != controller;
    if labels.is_empty() && annotations.is_empty() && data.is_empty() && !new_owner {
        return None;
    }
    let mut patch = serde_json::json!({"metadata": {"labels": labels, "annotations": annotations}, "data": data});
    if new_owner {
        patch["metadata"]["ownerReferences"] = serde_json::json!(desired.metadata.owner_references);
    }
    Some(patch)
}

/// Whether a Secret still looks as `ct` wants it with the token of `record`: labels,
/// annotations, owner, type, and the set of data keys with the values of the non-secret extra
/// keys (the token itself is checked by [`read`]). If not, it is put back.
pub fn matches(actual: &SecretSummary, ct: &ConsentToken, record: &TokenRecord) -> bool {
    let desired = desired_without_token(ct, record);
    fn contains<'a>(have: impl Fn(&str) -> Option<&'a str>, want: &BTreeMap<String, String>) -> bool {
        want.iter().all(|(k, v)| have(k) == Some(v.as_str()))
    }
    let owners_ok = desired
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .all(|want| want.controller == Some(true) && actual.controller() == Some(want.uid.as_str()));
    // Keys kept from before a takeover are the Secret owner's, not a change to put back.
    let kept: std::collections::BTreeSet<&str> = actual.annotation(KEPT_KEYS).unwrap_or_default().split(',').collect();
    let expected = expected_keys(ct, record);
    let keys: std::collections::BTreeSet<String> = actual
        .data()
        .map(|(k, _)| k.to_owned())
        .filter(|k| expected.contains(k) || !kept.contains(k.as_str()))
        .collect();
    let keys_ok = keys == expected;
    let extras_ok = extra_values(ct, record)
        .iter()
        .all(|(key, value)| actual.fingerprint(key) == Some(token::fingerprint(value.as_bytes()).as_str()));
    contains(|k| actual.label(k), desired.labels())
        && contains(|k| actual.annotation(k), desired.annotations())
        && owners_ok
        && actual.type_() == desired.type_.as_deref()
        && keys_ok
        && extras_ok
}

/// How to write a Secret holding a token, given the one there.
// No Debug: the Secret holds the token.
#[derive(PartialEq)]
pub enum WritePlan {
    /// No Secret of ours under that name: create it. A create, not an apply, so a Secret someone
    /// else created meanwhile is refused, never taken over.
    Create(Secret),
    /// Ours: a server-side apply carrying the Secret's uid as a precondition (a Secret of that
    /// name deleted and recreated by someone else is refused). First, when an earlier spec wrote
    /// labels, annotations or keys this one does not, a merge patch (with the same uid) removes
    /// them: fields written by a create are not removed by a later apply that leaves them out.
    Apply { removal: Option<serde_json::Value>, secret: Secret },
}

/// The one question the Secret's I/O asks before a write: what to send to make the Secret
/// `wanted`, when `current` is the Secret of ours there (`None`: none).
pub fn plan_write(current: Option<&SecretSummary>, mut wanted: Secret) -> WritePlan {
    let Some(current) = current else { return WritePlan::Create(wanted) };
    let uid = current.uid().map(str::to_owned);
    let removal = leftovers(current, &wanted).map(|mut removal| {
        removal["metadata"]["uid"] = serde_json::json!(uid);
        removal
    });
    wanted.metadata.uid = uid;
    WritePlan::Apply { removal, secret: wanted }
}

/// An existing Secret's owner's offer of it to a ConsentToken ([`ADOPT_BY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Keep the data keys the ConsentToken does not write ([`ADOPT_OTHER_KEYS`]).
    pub keep_other_keys: bool,
}

impl Offer {
    /// The offer `annotation` (a Secret's annotations) makes to `ct`, if it names it.
    pub fn of<'a>(annotation: impl Fn(&str) -> Option<&'a str>, ct: &ConsentToken) -> Option<Self> {
        let offered_to = annotation(ADOPT_BY)?.trim();
        (offered_to == ct.name_any()).then(|| Self { keep_other_keys: annotation(ADOPT_OTHER_KEYS) != Some("drop") })
    }
}

/// The JSON merge patch that takes `existing` over for the ConsentToken whose Secret would be
/// `desired`, in one write (carrying `existing`'s resourceVersion, so it is refused if the
/// Secret changed since it was read): the token and the operator's keys, labels, annotations
/// and controller reference are `desired`'s; the rest of `existing` stays, apart from the
/// offer's annotations and, if the offer says so, the data keys the ConsentToken does not write.
/// Kept keys are recorded ([`KEPT_KEYS`]). Holds the token: never logged.
pub fn takeover(existing: &Secret, desired: Secret, offer: Offer) -> Result<serde_json::Value, crate::error::Error> {
    let name = existing.name_any();
    if let Some(kind) = existing.type_.as_deref().filter(|t| *t != "Opaque") {
        return Err(crate::error::Error::InvalidSpec(format!(
            "Secret {name:?} is of type {kind}; only Opaque Secrets can be taken over"
        )));
    }
    if existing.immutable == Some(true) {
        return Err(crate::error::Error::InvalidSpec(format!(
            "Secret {name:?} is immutable and cannot be taken over; delete it, or choose another spec.target.secretName"
        )));
    }
    let wanted = desired.data.unwrap_or_default();
    let others: Vec<&String> =
        existing.data.as_ref().map(|d| d.keys().filter(|k| !wanted.contains_key(*k)).collect()).unwrap_or_default();
    let mut data = serde_json::Map::new();
    for (key, value) in &wanted {
        data.insert(key.clone(), serde_json::to_value(value).unwrap_or_default());
    }
    let mut annotations: serde_json::Map<String, serde_json::Value> = desired
        .metadata
        .annotations
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    annotations.insert(ADOPT_BY.to_owned(), serde_json::Value::Null);
    annotations.insert(ADOPT_OTHER_KEYS.to_owned(), serde_json::Value::Null);
    if offer.keep_other_keys && !others.is_empty() {
        let kept: Vec<&str> = others.iter().map(|k| k.as_str()).collect();
        annotations.insert(KEPT_KEYS.to_owned(), serde_json::Value::String(kept.join(",")));
    } else {
        for key in others {
            data.insert(key.clone(), serde_json::Value::Null);
        }
    }
    let mut owners: Vec<_> =
        existing.owner_references().iter().filter(|o| o.controller != Some(true)).cloned().collect();
    owners.extend(desired.metadata.owner_references.unwrap_or_default());
    Ok(serde_json::json!({
        "metadata": {
            "resourceVersion": existing.metadata.resource_version,
            "labels": desired.metadata.labels,
            "annotations": annotations,
            "ownerReferences": owners,
        },
        "data": data,
    }))
}

#[cfg(test)]
mod tests;
