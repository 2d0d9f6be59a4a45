//! The Secret a ConsentToken writes its token into: how it should look (a pure function of
//! the resource and the token), and what it records about the token it holds.
//!
//! The Secret carries, next to the token, the non-secret facts about it as annotations:
//! when it was fetched, when it expires, when it is due for renewal, which spec generation and
//! which credentials produced it. Written together with the token in one request, they cannot
//! disagree with it, and a restarted operator resumes the schedule from them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::ConsentToken;
use crate::token::{self, Token};

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "consent-token-operator";
/// Label selector of every Secret this operator writes: the only Secrets it caches.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=consent-token-operator";

const FINGERPRINT: &str = "consent.dev/token-fingerprint";
const REFRESHED_AT: &str = "consent.dev/refreshed-at";
const EXPIRES_AT: &str = "consent.dev/expires-at";
const NEXT_REFRESH_AT: &str = "consent.dev/next-refresh-at";
const GENERATION: &str = "consent.dev/generation";
const CREDENTIALS_VERSION: &str = "consent.dev/credentials-version";
const COLLECTION_POINT_VERSION: &str = "consent.dev/collection-point-version";

/// The facts about a token, as written next to it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub fingerprint: String,
    pub refreshed_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub next_refresh_at: Timestamp,
    /// The ConsentToken generation whose spec fetched it.
    pub generation: i64,
    pub credentials_version: String,
    pub collection_point_version: Option<i64>,
}

/// The Secret as it should be: owned by the ConsentToken (so garbage collection deletes it
/// with it), labelled as managed, holding the token under the target key.
pub fn desired(ct: &ConsentToken, token: &Token, record: &TokenRecord) -> Secret {
    Secret {
        data: Some(BTreeMap::from([(ct.target_key().to_owned(), ByteString(token.expose().as_bytes().to_vec()))])),
        ..desired_without_token(ct, record)
    }
}

/// [`desired`] without `data`: what [`matches`] compares.
pub fn desired_without_token(ct: &ConsentToken, record: &TokenRecord) -> Secret {
    let mut annotations = BTreeMap::from([
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
    Secret {
        metadata: ObjectMeta {
            name: Some(ct.target_secret_name()),
            namespace: ct.namespace(),
            labels: Some(BTreeMap::from([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())])),
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

/// Replaces each value in the Secret's `data` with its fingerprint, so the operator remembers
/// whether a Secret holds the token it wrote without holding the token: the cache of managed
/// Secrets then has no token in memory, and costs a few bytes per value instead of a JWT.
/// Everything that reads a Secret of ours goes through this first.
pub fn summarize(secret: &mut Secret) {
    secret.metadata.managed_fields = None;
    if let Some(data) = secret.data.as_mut() {
        for value in data.values_mut() {
            *value = ByteString(token::fingerprint(&value.0).into_bytes());
        }
    }
}

/// The facts of the token in a [`summarize`]d Secret under `key`, if it is intact: present,
/// and the same token the facts were written for (not edited by someone else).
pub fn read(summary: &Secret, key: &str) -> Option<TokenRecord> {
    let fingerprint = summary.data.as_ref()?.get(key)?;
    let annotations = summary.annotations();
    let recorded = annotations.get(FINGERPRINT)?;
    if fingerprint.0 != recorded.as_bytes() {
        return None;
    }
    let time = |name: &str| annotations.get(name).and_then(|v| v.parse::<Timestamp>().ok());
    Some(TokenRecord {
        fingerprint: recorded.clone(),
        refreshed_at: time(REFRESHED_AT)?,
        expires_at: time(EXPIRES_AT),
        next_refresh_at: time(NEXT_REFRESH_AT)?,
        generation: annotations.get(GENERATION)?.parse().ok()?,
        credentials_version: annotations.get(CREDENTIALS_VERSION).cloned().unwrap_or_default(),
        collection_point_version: annotations.get(COLLECTION_POINT_VERSION).and_then(|v| v.parse().ok()),
    })
}

/// The token in a full (not summarized) Secret under `key`, if it is the one `record` was
/// written for.
pub fn intact_token(secret: &Secret, key: &str, record: &TokenRecord) -> Option<Token> {
    let bytes = secret.data.as_ref()?.get(key)?;
    if token::fingerprint(&bytes.0) != record.fingerprint {
        return None;
    }
    String::from_utf8(bytes.0.clone()).ok().map(Token::new)
}

/// Whether what users could have edited (labels, annotations, owner, type) in a summarized
/// Secret still matches `desired` (the token itself is checked by [`read`]): if not, the
/// Secret is put back.
pub fn matches(actual: &Secret, desired: &Secret) -> bool {
    let contains = |have: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    let owners_ok = desired.metadata.owner_references.as_deref().unwrap_or_default().iter().all(|want| {
        actual.owner_references().iter().any(|have| have.uid == want.uid && have.controller == want.controller)
    });
    contains(actual.labels(), desired.labels())
        && contains(actual.annotations(), desired.annotations())
        && owners_ok
        && actual.type_ == desired.type_
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ConsentTokenSpec;

    fn consent_token() -> ConsentToken {
        let mut ct = ConsentToken::new(
            "web",
            serde_json::from_value::<ConsentTokenSpec>(serde_json::json!({
                "fdx": {"baseUrl": "https://x", "customerId": "c", "credentialsSecretRef": {"name": "m"}},
                "target": {"key": "jwt"}
            }))
            .unwrap(),
        );
        ct.metadata.namespace = Some("team".into());
        ct.metadata.uid = Some("uid-1".into());
        ct
    }

    fn record(token: &Token) -> TokenRecord {
        TokenRecord {
            fingerprint: token.fingerprint(),
            generation: 2,
            credentials_version: "41".into(),
            ..crate::fixtures::record()
        }
    }

    #[test]
    fn desired_secret_is_owned_labelled_and_round_trips_its_record() {
        let ct = consent_token();
        let token = Token::new("a.b.c".into());
        let secret = desired(&ct, &token, &record(&token));
        assert_eq!(secret.metadata.name.as_deref(), Some("web"), "defaults to the resource's name");
        assert!(is_controlled_by(&secret, &ct));
        assert_eq!(secret.labels().get(MANAGED_BY_LABEL).map(String::as_str), Some(MANAGED_BY));
        let mut summary = secret.clone();
        summarize(&mut summary);
        assert_eq!(read(&summary, "jwt").unwrap(), record(&token));
        assert_eq!(intact_token(&secret, "jwt", &record(&token)).unwrap().expose(), "a.b.c");
        assert!(matches(&summary, &desired_without_token(&ct, &record(&token))));
        // The summary keeps no token, only its fingerprint.
        let kept = &summary.data.as_ref().unwrap()["jwt"].0;
        assert_eq!(kept, token.fingerprint().as_bytes());
        // No annotation holds the token.
        assert!(secret.annotations().values().all(|v| !v.contains("a.b.c")));
    }

    fn token_value() -> Token {
        Token::new("a.b.c".into())
    }

    #[test]
    fn edited_token_or_metadata_is_noticed() {
        let ct = consent_token();
        let want = desired(&ct, &token_value(), &record(&token_value()));

        let mut edited = want.clone();
        edited.data.as_mut().unwrap().insert("jwt".into(), ByteString(b"tampered".to_vec()));
        assert!(intact_token(&edited, "jwt", &record(&token_value())).is_none());
        summarize(&mut edited);
        assert!(read(&edited, "jwt").is_none(), "an edited token is not trusted");

        let mut relabelled = want.clone();
        relabelled.metadata.labels = None;
        summarize(&mut relabelled);
        assert!(!matches(&relabelled, &desired_without_token(&ct, &record(&token_value()))));

        let mut foreign = want.clone();
        foreign.metadata.owner_references = None;
        assert!(!is_controlled_by(&foreign, &ct));
    }
}
