//! A ConsentToken as the work queue keeps it between reconciles: its JSON text, compressed,
//! decoded again for each reconcile.
//!
//! Why text: a decoded ConsentToken costs about 1.9 KB of heap (an 880-byte struct whose
//! metadata and optional parts are nearly all empty, and some twenty small strings), its text
//! about 0.9 KB in one allocation. Why compressed: most of that text is the same in every object
//! (field names, `apiVersion`, the status' fixed words). LZ4 with a preset [`DICTIONARY`] of such
//! text keeps what is particular to each object (names, uid, customer id, times, fingerprint):
//! about 0.3 KB. Decompressing and decoding take a few microseconds per reconcile; at 10,000
//! objects the cache is about 3 MB, against 9 MB as plain text and 19 MB decoded
//! (docs/performance).

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::annotations::REFRESH_REQUESTED_AT;
use crate::api::crd::ConsentToken;

/// Not `Debug`: the text holds the spec's customer id, which is personal data.
pub struct CachedToken(Form);

enum Form {
    /// The JSON text compressed with [`DICTIONARY`], its length in front (LZ4 block format).
    Compressed(Box<[u8]>),
    /// Kept whole when its text would not decode to the same object (none is known: kept so a
    /// type that serialises lossily could never lose a field of a cached object).
    Whole(Arc<ConsentToken>),
}

/// ConsentTokens as the serializer writes them (same key order, so whole runs of an object's
/// text are found here): one with every optional part, a OneTrust and an FDX one as most are.
/// Made-up values only. It must never change within a process: the texts it compressed need it
/// to be read.
const DICTIONARY: &str = concat!(
    "[",
    r#"{"apiVersion":"consent.dev/v1alpha1","kind":"ConsentToken","metadata":{"annotations":{"consent.dev/refresh-requested-at":"2026-01-01T00:00:00Z"},"creationTimestamp":"2026-01-01T00:00:00Z","deletionTimestamp":"2026-01-01T00:00:00Z","finalizers":["example.com/finalizer"],"generation":1,"name":"consent-collection-point","namespace":"default","uid":"00000000-0000-4000-8000-000000000000"},"#,
    r#""spec":{"providerRef":{"kind":"ClusterConsentProvider","name":"onetrust"},"collectionPoint":{"guid":"00000000-0000-4000-8000-000000000000","version":1,"state":"ACTIVE"},"customerId":"customer","target":{"secretName":"consent-token","key":"token","labels":{"app.kubernetes.io/name":"web"},"annotations":{"example.com/note":"note"},"extraKeys":{"expiresAt":"expires-at","refreshedAt":"refreshed-at","document":"token.json"}},"refresh":{"renewBefore":"1m","interval":"1h"}},"#,
    r#""status":{"observedGeneration":1,"provider":"OneTrust","conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"the token is valid until 2026-01-01T00:00:00Z; the last refresh failed","observedGeneration":1,"reason":"RefreshFailing","status":"False","type":"Ready"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"the last refresh failed: the provider is rate limiting","observedGeneration":1,"reason":"RateLimited","status":"False","type":"Synced"}],"tokenLifetime":"5m","expiresAt":"2026-01-01T00:00:00Z","lastRefreshTime":"2026-01-01T00:00:00Z","nextRefreshTime":"2026-01-01T00:00:00Z","consecutiveFailures":1,"tokenFingerprint":"sha256:","collectionPointVersion":1,"credentialsVersion":"1","refreshRequestedAt":"2026-01-01T00:00:00Z","rateLimit":{"retryAfter":"2026-01-01T00:00:00Z","period":"1h","requestsAllowed":1,"requestsMade":1,"eventId":"event"},"lastFailure":{"reason":"RateLimited","message":"the provider is rate limiting","time":"2026-01-01T00:00:00Z"}}}"#,
    ",",
    r#"{"apiVersion":"consent.dev/v1alpha1","kind":"ConsentToken","metadata":{"creationTimestamp":"2026-01-01T00:00:00Z","generation":1,"name":"consent-collection-point","namespace":"default","uid":"00000000-0000-4000-8000-000000000000"},"#,
    r#""spec":{"oneTrust":{"hostname":"app.onetrust.com","collectionPoint":{"guid":"00000000-0000-4000-8000-000000000000"},"credentialsSecretRef":{"name":"onetrust-credentials","clientIdKey":"client_id","clientSecretKey":"client_secret"}},"target":{},"refresh":{}},"#,
    r#""status":{"observedGeneration":1,"provider":"OneTrust","conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"the Secret holds a token without expiry, fetched again every 1h; `kubectl consent status` shows when it expires and is renewed","observedGeneration":1,"reason":"TokenValid","status":"True","type":"Ready"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"the last refresh succeeded","observedGeneration":1,"reason":"Refreshed","status":"True","type":"Synced"}],"consecutiveFailures":0,"collectionPointVersion":1,"credentialsVersion":"1"}}"#,
    ",",
    r#"{"apiVersion":"consent.dev/v1alpha1","kind":"ConsentToken","metadata":{"creationTimestamp":"2026-01-01T00:00:00Z","generation":1,"name":"consent-token","namespace":"default","uid":"00000000-0000-4000-8000-000000000000"},"#,
    r#""spec":{"fdx":{"baseUrl":"https://","apiVersion":"v4","customerId":"customer","credentialsSecretRef":{"name":"fdx-credentials","clientIdKey":"client_id","clientSecretKey":"client_secret"}},"target":{},"refresh":{}},"#,
    r#""status":{"observedGeneration":1,"provider":"FDX","conditions":[{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"the Secret holds a valid token, renewed with 50% of their lifetime left; `kubectl consent status` shows when it expires and is renewed","observedGeneration":1,"reason":"TokenValid","status":"True","type":"Ready"},{"lastTransitionTime":"2026-01-01T00:00:00Z","message":"the last refresh succeeded","observedGeneration":1,"reason":"Refreshed","status":"True","type":"Synced"}],"tokenLifetime":"5m","consecutiveFailures":0,"credentialsVersion":"1"}}"#,
    "]",
);

impl CachedToken {
    /// Keeps `ct` as compressed text when that decodes to `ct` exactly (checked here once, so
    /// every later [`CachedToken::decode`] gives the object the watch delivered).
    pub fn new(ct: ConsentToken) -> Self {
        match serde_json::to_vec(&ct) {
            Ok(text) => {
                let compressed = lz4_flex::block::compress_prepend_size_with_dict(&text, DICTIONARY.as_bytes());
                match decode(&compressed) {
                    Ok(decoded) if decoded == ct => Self(Form::Compressed(compressed.into_boxed_slice())),
                    _ => Self(Form::Whole(Arc::new(ct))),
                }
            }
            Err(_) => Self(Form::Whole(Arc::new(ct))),
        }
    }

    /// The object as the watch delivered it. `None` cannot happen (the text was checked when
    /// cached); the caller treats it as an object no longer cached.
    pub fn decode(&self) -> Option<ConsentToken> {
        match &self.0 {
            Form::Compressed(compressed) => match decode(compressed) {
                Ok(ct) => Some(ct),
                Err(err) => {
                    // Not the error's text: serde's messages can quote a value (a customer id).
                    tracing::error!(
                        error = err.label(),
                        "a cached ConsentToken did not decode; it waits for its next watch event"
                    );
                    None
                }
            },
            Form::Whole(ct) => Some(ConsentToken::clone(ct)),
        }
    }

    #[cfg(test)]
    fn compressed_len(&self) -> Option<usize> {
        match &self.0 {
            Form::Compressed(compressed) => Some(compressed.len()),
            Form::Whole(_) => None,
        }
    }
}

/// Why a cached text did not decode (it cannot happen: see [`CachedToken::new`]).
enum DecodeError {
    Decompress,
    Json(serde_json::error::Category),
}

impl DecodeError {
    fn label(&self) -> &'static str {
        match self {
            Self::Decompress => "decompress",
            Self::Json(serde_json::error::Category::Io) => "json_io",
            Self::Json(serde_json::error::Category::Syntax) => "json_syntax",
            Self::Json(serde_json::error::Category::Data) => "json_data",
            Self::Json(serde_json::error::Category::Eof) => "json_eof",
        }
    }
}

fn decode(compressed: &[u8]) -> Result<ConsentToken, DecodeError> {
    let text = lz4_flex::block::decompress_size_prepended_with_dict(compressed, DICTIONARY.as_bytes())
        .map_err(|_| DecodeError::Decompress)?;
    serde_json::from_slice(&text).map_err(|err| DecodeError::Json(err.classify()))
}

/// Drops from a ConsentToken, before it is cached (as text: `cached_token`), what no reconcile
/// reads: the field managers, its labels, finalizers, owner references, resource version and
/// every annotation but `consent.dev/refresh-requested-at`. These are the tenant's to fill (up
/// to the API server's limits: 256 KiB of annotations, random bytes that do not compress);
/// kept, a few hundred such objects would take the operator past its memory limit. The other
/// annotations leave a hash in their place ([`OTHER_ANNOTATIONS`]): a change to any of them
/// still makes the operator look again, as users expect of `kubectl annotate`.
/// `lifecycle::a_cached_object_has_every_field_the_reconcile_reads` shows that what remains is
/// all a reconcile needs.
pub fn slim_consent_token(ct: &mut ConsentToken) {
    ct.metadata.managed_fields = None;
    ct.metadata.labels = None;
    ct.metadata.finalizers = None;
    ct.metadata.owner_references = None;
    ct.metadata.resource_version = None;
    keep_only_read_annotations(&mut ct.metadata);
}

/// Drops from a provider object, before it is cached, the metadata no reconcile reads: its
/// field managers and annotations (the tenant's to fill, as a ConsentToken's).
pub fn slim_provider(metadata: &mut ObjectMeta) {
    metadata.managed_fields = None;
    metadata.annotations = None;
}

/// Where the hash of the annotations no reconcile reads is kept, in place of them.
pub const OTHER_ANNOTATIONS: &str = "consent.dev/other-annotations-hash";

fn keep_only_read_annotations(metadata: &mut ObjectMeta) {
    let Some(annotations) = metadata.annotations.as_mut() else { return };
    // Fixed keys: the same annotations give the same hash for the life of the process.
    let mut hasher =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    let mut dropped = false;
    annotations.retain(|key, value| {
        if key == REFRESH_REQUESTED_AT {
            return true;
        }
        // A client-side `kubectl apply`'s copy of the object changes with its spec anyway.
        if key != LAST_APPLIED {
            (key, value).hash(&mut hasher);
            dropped = true;
        }
        false
    });
    if dropped {
        annotations.insert(OTHER_ANNOTATIONS.to_owned(), format!("{:016x}", hasher.finish()));
    }
    if annotations.is_empty() {
        metadata.annotations = None;
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::{
        ConsentTokenStatus, ExtraKeys, FailureStatus, ProviderRef, ProviderRefKind, RateLimitStatus,
    };
    use crate::fixtures;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    /// An object with every part a reconcile reads filled in, as after a failed refresh under a
    /// rate limit.
    fn full() -> ConsentToken {
        let mut ct = fixtures::fdx_consent_token("https://bank.example");
        ct.metadata.name = Some("web".into());
        ct.metadata.namespace = Some("team".into());
        ct.metadata.uid = Some("0b5c7a3e-6f1d-4c1a-9d36-2b8d1c0e7f55".into());
        ct.metadata.generation = Some(3);
        ct.metadata.creation_timestamp = Some(Time(fixtures::t(0)));
        ct.metadata.deletion_timestamp = Some(Time(fixtures::t(99)));
        ct.metadata.annotations = Some([("consent.dev/refresh-requested-at".to_owned(), "now".to_owned())].into());
        ct.metadata.finalizers = Some(vec!["example.com/keep".into()]);
        ct.spec.target.secret_name = Some("web-token".into());
        ct.spec.target.key = Some("jwt".into());
        ct.spec.target.labels = [("app".to_owned(), "web".to_owned())].into();
        ct.spec.target.annotations = [("note".to_owned(), "mounted by web".to_owned())].into();
        ct.spec.refresh.renew_before = Some("1m".into());
        ct.spec.target.extra_keys = Some(Box::new(ExtraKeys {
            expires_at: Some("expires".into()),
            document: Some("doc".into()),
            refreshed_at: None,
        }));
        ct.status = Some(ConsentTokenStatus {
            observed_generation: Some(2),
            provider: Some("fdx".into()),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "RefreshFailing".into(),
                message: "the token is valid until ...; the last refresh failed".into(),
                last_transition_time: Time(fixtures::t(10)),
                observed_generation: Some(2),
            }],
            token_lifetime: Some("5m".into()),
            expires_at: Some(Time(fixtures::t(300))),
            last_refresh_time: Some(Time(fixtures::t(0))),
            next_refresh_time: Some(Time(fixtures::t(150))),
            consecutive_failures: 2,
            token_fingerprint: Some("sha256:abc".into()),
            collection_point_version: Some(4),
            credentials_version: Some("812".into()),
            refresh_requested_at: Some("earlier".into()),
            rate_limit: Some(Box::new(RateLimitStatus {
                retry_after: Some(Time(fixtures::t(200))),
                ..Default::default()
            })),
            last_failure: Some(Box::new(FailureStatus {
                reason: "RateLimited".into(),
                message: "429".into(),
                time: Time(fixtures::t(140)),
            })),
        });
        ct
    }

    /// A OneTrust token through a provider object, with its own collection point.
    fn through_a_provider() -> ConsentToken {
        let mut ct = fixtures::fdx_consent_token("https://bank.example");
        ct.spec.fdx = None;
        ct.spec.provider_ref = Some(ProviderRef { kind: ProviderRefKind::ClusterConsentProvider, name: "ot".into() });
        ct.spec.collection_point = Some(fixtures::onetrust_source("x.onetrust.com").collection_point);
        ct.spec.customer_id = Some("customer".into());
        ct
    }

    #[test]
    fn a_cached_object_decodes_to_the_object_the_watch_delivered() {
        let mut inline_onetrust = fixtures::fdx_consent_token("https://bank.example");
        inline_onetrust.spec.fdx = None;
        inline_onetrust.spec.one_trust = Some(Box::new(fixtures::onetrust_source("x.onetrust.com")));
        for ct in [full(), fixtures::fdx_consent_token("https://bank.example"), inline_onetrust, through_a_provider()] {
            let cached = CachedToken::new(ct.clone());
            assert!(cached.compressed_len().is_some(), "kept as text (else this shows nothing about text)");
            assert_eq!(cached.decode(), Some(ct));
        }
    }

    /// An FDX ConsentToken as the benchmark's are (nine in ten), with its status while renewed on time.
    fn typical() -> ConsentToken {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
            "metadata": {"name": "ct-4711", "namespace": "bench", "uid": "5f0c2a9e-13d4-4e6b-8a71-c2d9e0b4f3a8",
                "generation": 1, "creationTimestamp": "2026-11-27T09:13:07Z"},
            "spec": {"fdx": {"baseUrl": "https://127.0.0.1:39517/fdx", "customerId": "customer-4711",
                "credentialsSecretRef": {"name": "mx"}}},
            "status": {"observedGeneration": 1, "provider": "FDX", "consecutiveFailures": 0,
                "conditions": [{"type": "Ready", "status": "True", "reason": "TokenValid",
                    "message": "the Secret holds a valid token, renewed with 50% of their lifetime left; `kubectl consent status` shows when it expires and is renewed",
                    "lastTransitionTime": "2026-11-27T09:15:12Z", "observedGeneration": 1},
                    {"type": "Synced", "status": "True", "reason": "Refreshed", "message": "the last refresh succeeded",
                    "lastTransitionTime": "2026-11-27T09:15:12Z", "observedGeneration": 1}],
                "tokenLifetime": "5m", "credentialsVersion": "812"}
        }))
        .unwrap()
    }

    #[test]
    fn a_typical_object_is_kept_in_under_half_its_text() {
        let ct = typical();
        let text = serde_json::to_vec(&ct).unwrap().len();
        let kept = CachedToken::new(ct).compressed_len().unwrap();
        assert!(kept * 2 < text, "{kept} bytes kept for {text} bytes of text");
    }

    #[test]
    fn the_dictionary_is_written_as_the_serializer_writes_consent_tokens() {
        // Whole runs of an object's text match the dictionary only in the serializer's order.
        let objects: Vec<ConsentToken> = serde_json::from_str(DICTIONARY).unwrap();
        assert_eq!(serde_json::to_string(&objects).unwrap(), DICTIONARY);
    }

    /// Random text of `len` characters, from a fixed seed: what compresses least.
    fn noise(len: usize, seed: u64) -> String {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                char::from(b'a' + ((x >> 33) % 26) as u8)
            })
            .collect()
    }

    /// The largest ConsentToken the CRD admits, filled with what does not compress, costs at
    /// most this much in the cache (docs/performance: the worst case per object).
    #[test]
    fn the_largest_object_the_crd_admits_is_cached_in_under_24_kib() {
        let mut ct = full();
        // The CRD's caps: 4096 characters of labels, 16384 of annotations (keys and values).
        ct.spec.target.labels = (0..32).map(|i| (format!("l{i:02}.{}", noise(60, i)), noise(63, 100 + i))).collect();
        ct.spec.target.annotations =
            (0..64).map(|i| (format!("a{i:02}.{}", noise(60, 200 + i)), noise(190, 300 + i))).collect();
        let labels: usize = ct.spec.target.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
        let annotations: usize = ct.spec.target.annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(labels <= 4096 && labels > 4000 && annotations <= 16384 && annotations > 16000);
        ct.metadata.name = Some(noise(253, 1));
        ct.metadata.annotations = Some([("tenant.example/fat".to_owned(), noise(200_000, 2))].into());
        ct.metadata.finalizers = Some((0..1000).map(|i| format!("example.com/{}", noise(40, 400 + i))).collect());
        slim_consent_token(&mut ct);
        let Form::Compressed(text) = CachedToken::new(ct).0 else { panic!("not compressed") };
        assert!(text.len() < 24 * 1024, "{} bytes", text.len());
    }

    #[test]
    fn only_the_annotation_the_reconcile_reads_is_cached() {
        let mut ct = full();
        let fat: String = (0..200_000).map(|i| char::from(b'a' + (i * 7919 % 26) as u8)).collect();
        ct.metadata.annotations = Some(
            [
                ("consent.dev/refresh-requested-at".to_owned(), "now".to_owned()),
                ("tenant.example/fat".to_owned(), fat),
                ("kubectl.kubernetes.io/last-applied-configuration".to_owned(), "{}".to_owned()),
            ]
            .into(),
        );
        slim_consent_token(&mut ct);
        let kept = ct.metadata.annotations.clone().unwrap();
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            ["consent.dev/other-annotations-hash", "consent.dev/refresh-requested-at"]
        );
        assert_eq!(kept["consent.dev/other-annotations-hash"].len(), 16, "a hash, not the 200,000 bytes");
        // Another value of a dropped annotation changes the hash (the object is looked at again);
        // the same ones give the same hash; `kubectl apply`'s copy alone gives none.
        let slimmed = |annotations: &[(&str, &str)]| {
            let mut ct = full();
            ct.metadata.annotations =
                Some(annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
            slim_consent_token(&mut ct);
            ct.metadata.annotations
        };
        assert_eq!(slimmed(&[("tenant.example/x", "1")]), slimmed(&[("tenant.example/x", "1")]));
        assert_ne!(slimmed(&[("tenant.example/x", "1")]), slimmed(&[("tenant.example/x", "2")]));
        assert_eq!(slimmed(&[("kubectl.kubernetes.io/last-applied-configuration", "{}")]), None);

        let mut provider = ObjectMeta {
            annotations: Some([("tenant.example/fat".to_owned(), "x".repeat(100_000))].into()),
            ..Default::default()
        };
        slim_provider(&mut provider);
        assert_eq!(provider.annotations, None);
    }

    proptest::proptest! {
        #[test]
        fn any_names_and_values_come_back_as_they_went_in(
            name in ".*", namespace in ".*", customer in ".*", key in ".*", value in ".*", message in ".*",
        ) {
            let mut ct = typical();
            ct.metadata.name = Some(name);
            ct.metadata.namespace = Some(namespace);
            ct.metadata.annotations = Some([(key.clone(), value.clone())].into());
            ct.spec.target.labels = [(key, value)].into();
            if let Some(fdx) = ct.spec.fdx.as_mut() {
                fdx.customer_id = customer;
            }
            if let Some(status) = ct.status.as_mut() {
                status.conditions[0].message = message;
            }
            proptest::prop_assert_eq!(CachedToken::new(ct.clone()).decode(), Some(ct));
        }
    }
}
