//! A ConsentToken's spec, checked once before anything is decided: the provider request (URLs
//! built, scheme and host allowed), the refresh schedule and the target, or one clear error.
//!
//! The CRD's schema refuses the same mistakes when an object is created; this catches objects
//! that bypassed it (an older CRD) and what only the operator's configuration can decide
//! (plain http, the admin's host rules).

use crate::crd::{ConsentToken, CredentialsSecretRef, EXACTLY_ONE_PROVIDER, ProviderKind};
use crate::error::Error;
use crate::provider::{Source, UpstreamPolicy};
use crate::schedule::Schedule;

/// A spec that passed [`validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec<'a> {
    pub provider: ProviderKind,
    pub source: Source,
    pub credentials: &'a CredentialsSecretRef,
    pub schedule: Schedule,
    pub target: TargetRef,
}

/// Where the token goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    pub secret_name: String,
    pub key: String,
}

pub fn validate<'a>(ct: &'a ConsentToken, policy: &UpstreamPolicy) -> Result<ValidSpec<'a>, Error> {
    let provider = ct.spec.provider().ok_or_else(|| Error::InvalidSpec(EXACTLY_ONE_PROVIDER.into()))?;
    let schedule = Schedule::from_policy(&ct.spec.refresh).map_err(Error::InvalidSpec)?;
    Ok(ValidSpec {
        provider: provider.kind(),
        source: Source::new(provider, policy)?,
        credentials: provider.credentials_secret_ref(),
        schedule,
        target: TargetRef { secret_name: ct.target_secret_name(), key: ct.target_key().to_owned() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn a_valid_spec_gives_source_schedule_and_target() {
        let ct = fixtures::fdx_consent_token("https://bank.example");
        let valid = validate(&ct, &UpstreamPolicy::default()).unwrap();
        assert_eq!(valid.provider, ProviderKind::Fdx);
        assert_eq!(valid.credentials.name, "mx");
        assert_eq!(valid.schedule, Schedule::default());
        assert_eq!(valid.target, TargetRef { secret_name: "web".into(), key: "token".into() });
    }

    #[test]
    fn each_kind_of_mistake_gets_one_clear_error() {
        let mut none = fixtures::fdx_consent_token("https://bank.example");
        none.spec.fdx = None;
        let err = validate(&none, &UpstreamPolicy::default()).unwrap_err();
        assert_eq!(err.to_string(), EXACTLY_ONE_PROVIDER);

        let mut both = fixtures::fdx_consent_token("https://bank.example");
        both.spec.one_trust = Some(fixtures::onetrust_source("app.onetrust.com"));
        assert!(matches!(validate(&both, &UpstreamPolicy::default()), Err(Error::InvalidSpec(_))));

        let mut bad_schedule = fixtures::fdx_consent_token("https://bank.example");
        bad_schedule.spec.refresh.renew_before = Some("100%".into());
        let err = validate(&bad_schedule, &UpstreamPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("renewBefore"), "{err}");

        let http = fixtures::fdx_consent_token("http://bank.example");
        let err = validate(&http, &UpstreamPolicy::default()).unwrap_err();
        assert_eq!(err.reason(), "InvalidSpec");
        assert!(err.to_string().contains("--allow-insecure-http"), "{err}");
    }
}
