//! A ConsentToken as the work queue keeps it between reconciles: its JSON text, decoded again for
//! each reconcile.
//!
//! Why text: a decoded ConsentToken costs about 1.9 KB of heap (an 880-byte struct whose
//! metadata and optional parts are nearly all empty, and some twenty small strings), its text
//! about 0.9 KB in one allocation. At 10,000 objects that is about 10 MiB of the operator's
//! memory, for a decode of a few microseconds per reconcile (docs/performance).

use std::sync::Arc;

use crate::crd::ConsentToken;

/// Not `Debug`: the text holds the spec's customer id, which is personal data.
pub struct CachedToken(Form);

enum Form {
    Text(Box<[u8]>),
    /// Kept whole when its text would not decode to the same object (none is known: kept so a
    /// type that serialises lossily could never lose a field of a cached object).
    Whole(Arc<ConsentToken>),
}

impl CachedToken {
    /// Keeps `ct` as text when the text decodes to `ct` exactly (checked here once, so every
    /// later [`CachedToken::decode`] gives the object the watch delivered).
    pub fn new(ct: ConsentToken) -> Self {
        match serde_json::to_vec(&ct) {
            Ok(text) if serde_json::from_slice::<ConsentToken>(&text).is_ok_and(|decoded| decoded == ct) => {
                Self(Form::Text(text.into_boxed_slice()))
            }
            _ => Self(Form::Whole(Arc::new(ct))),
        }
    }

    /// The object as the watch delivered it. `None` cannot happen (the text was checked when
    /// cached); the caller treats it as an object no longer cached.
    pub fn decode(&self) -> Option<ConsentToken> {
        match &self.0 {
            Form::Text(text) => match serde_json::from_slice(text) {
                Ok(ct) => Some(ct),
                Err(err) => {
                    // Not the error's text: serde's messages can quote a value (a customer id).
                    tracing::error!(
                        category = ?err.classify(),
                        column = err.column(),
                        "a cached ConsentToken did not decode; it waits for its next watch event"
                    );
                    None
                }
            },
            Form::Whole(ct) => Some(ConsentToken::clone(ct)),
        }
    }

    #[cfg(test)]
    fn is_text(&self) -> bool {
        matches!(self.0, Form::Text(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ConsentTokenStatus, ExtraKeys, FailureStatus, ProviderRef, ProviderRefKind, RateLimitStatus};
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
            assert!(cached.is_text(), "kept as text (else this shows nothing about text)");
            assert_eq!(cached.decode(), Some(ct));
        }
    }
}
