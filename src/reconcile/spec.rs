//! A ConsentToken's spec, checked once before anything is decided: the provider request (URLs
//! built, scheme and host allowed), the refresh schedule and the target, or one clear error.
//!
//! The CRD's schema refuses the same mistakes when an object is created; this catches objects
//! that bypassed it (an older CRD) and what only the operator's configuration can decide
//! (plain http, the admin's host rules).

use crate::api::crd::{ConsentToken, EXTRA_KEYS_DIFFER, ProviderKind};
use crate::error::Error;
use crate::provider::lookup::{CredentialsLocation, Resolution};
use crate::provider::{Source, UpstreamPolicy};
use crate::scheduling::schedule::Schedule;

/// A spec that passed [`validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec {
    pub provider: ProviderKind,
    pub source: Source,
    pub credentials: CredentialsLocation,
    /// Tells requests apart without revealing them: a token fetched for another request (say,
    /// the provider object's host changed) is replaced, one fetched for this one is kept when
    /// only the target or the schedule changed.
    pub request: String,
    pub schedule: Schedule,
    pub target: TargetRef,
}

/// Where the token goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    pub secret_name: String,
    pub key: String,
}

pub fn validate(ct: &ConsentToken, resolution: &Resolution, policy: &UpstreamPolicy) -> Result<ValidSpec, Error> {
    let provider = &resolution.provider;
    let schedule = Schedule::from_policy(&ct.spec.refresh).map_err(Error::InvalidSpec)?;
    let key = ct.target_key().to_owned();
    if let Some(extra) = &ct.spec.target.extra_keys {
        let names: Vec<&str> = [&extra.expires_at, &extra.refreshed_at, &extra.document]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let distinct: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        if distinct.len() != names.len() || distinct.contains(key.as_str()) {
            return Err(Error::InvalidSpec(EXTRA_KEYS_DIFFER.into()));
        }
    }
    let source = Source::new(provider, policy)?;
    let credentials = resolution.credentials();
    let request = crate::provider::token::fingerprint(
        format!(
            "{}\0{}\0{}\0{}\0{}",
            source.identity(),
            credentials.namespace,
            credentials.reference.name,
            credentials.reference.client_id_key,
            credentials.reference.client_secret_key
        )
        .as_bytes(),
    );
    Ok(ValidSpec {
        provider: provider.kind(),
        source,
        credentials,
        request,
        schedule,
        target: TargetRef { secret_name: ct.target_secret_name(), key },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::ExtraKeys;
    use crate::api::crd::ProviderSource;
    use crate::fixtures;

    fn inline(ct: &ConsentToken) -> Resolution {
        let provider = match (&ct.spec.one_trust, &ct.spec.fdx) {
            (Some(source), None) => ProviderSource::OneTrust((**source).clone()),
            (None, Some(source)) => ProviderSource::Fdx((**source).clone()),
            _ => panic!("one inline provider expected"),
        };
        Resolution { provider, credentials_namespace: "team".into(), via: None }
    }

    #[test]
    fn a_valid_spec_gives_source_schedule_and_target() {
        let ct = fixtures::fdx_consent_token("https://bank.example");
        let valid = validate(&ct, &inline(&ct), &UpstreamPolicy::default()).unwrap();
        assert_eq!(valid.provider, ProviderKind::Fdx);
        assert_eq!(valid.credentials.reference.name, "mx");
        assert_eq!(valid.credentials.namespace, "team");
        assert_eq!(valid.schedule, Schedule::default());
        assert_eq!(valid.target, TargetRef { secret_name: "web".into(), key: "token".into() });
        assert!(valid.request.starts_with("sha256:"));
    }

    #[test]
    fn the_request_fingerprint_follows_the_request_and_not_the_target() {
        let ct = fixtures::fdx_consent_token("https://bank.example");
        let base = validate(&ct, &inline(&ct), &UpstreamPolicy::default()).unwrap().request;
        let mut relabelled = ct.clone();
        relabelled.spec.target.labels.insert("tier".into(), "gold".into());
        relabelled.spec.refresh.renew_before = Some("2m".into());
        assert_eq!(validate(&relabelled, &inline(&relabelled), &UpstreamPolicy::default()).unwrap().request, base);
        let mut other_customer = ct.clone();
        other_customer.spec.fdx.as_mut().unwrap().customer_id = "someone-else".into();
        let other = validate(&other_customer, &inline(&other_customer), &UpstreamPolicy::default()).unwrap();
        assert_ne!(other.request, base);
        assert!(!other.request.contains("someone-else"), "a fingerprint, not the customer id");
        let mut other_host = ct.clone();
        other_host.spec.fdx.as_mut().unwrap().base_url = "https://other.example".into();
        assert_ne!(validate(&other_host, &inline(&other_host), &UpstreamPolicy::default()).unwrap().request, base);
    }

    #[test]
    fn each_kind_of_mistake_gets_one_clear_error() {
        let mut bad_schedule = fixtures::fdx_consent_token("https://bank.example");
        bad_schedule.spec.refresh.renew_before = Some("100%".into());
        let err = validate(&bad_schedule, &inline(&bad_schedule), &UpstreamPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("renewBefore"), "{err}");

        let http = fixtures::fdx_consent_token("http://bank.example");
        let err = validate(&http, &inline(&http), &UpstreamPolicy::default()).unwrap_err();
        assert_eq!(err.reason(), "InvalidSpec");
        assert!(err.to_string().contains("--allow-insecure-http"), "{err}");

        let mut clash = fixtures::fdx_consent_token("https://bank.example");
        clash.spec.target.extra_keys =
            Some(Box::new(ExtraKeys { document: Some("token".into()), ..Default::default() }));
        let err = validate(&clash, &inline(&clash), &UpstreamPolicy::default()).unwrap_err();
        assert_eq!(err.to_string(), EXTRA_KEYS_DIFFER);
    }
}
