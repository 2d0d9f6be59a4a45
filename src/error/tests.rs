use super::*;
use kube::CustomResourceExt;

/// One of each variant. The match below has no wildcard: a new variant does not compile
/// until it is added here, and so until its reason is checked against the CRD's docs.
fn one_of_each() -> Vec<Error> {
    let all = vec![
        Error::CredentialsNotFound { secret: "s".into(), namespace: "n".into() },
        Error::ProviderNotFound { kind: "ConsentProvider", name: "p".into() },
        Error::NamespaceNotAllowed { provider: "p".into() },
        Error::RequestNotAllowed { provider: "p".into(), what: "w", list: "l" },
        Error::CredentialsNamespaceNotWatched { namespace: "n".into() },
        Error::CredentialsKeyMissing { secret: "s".into(), key: "k".into() },
        Error::CredentialsNotAllowed { asked_by: "a".into(), secret: "s".into(), host: "h".into(), listed: None },
        Error::ProviderNotAllowed { host: "h".into(), allowed: "*".into() },
        Error::PortNotAllowed { host: "h".into(), port: 8443, allowed: "443".into() },
        Error::AddressNotAllowed(AddressClass::Private),
        Error::Unauthorized { status: 401 },
        Error::Forbidden { status: 403 },
        Error::Rejected { status: 400 },
        Error::OAuthRejected { status: 400 },
        Error::RateLimited(Box::new(RateLimit {
            retry_after: Duration::from_secs(1),
            capped: false,
            period: None,
            requests_allowed: None,
            requests_made: None,
            event_id: None,
        })),
        Error::QuotaShareUsed {
            retry_in: Duration::from_secs(1),
            share: 1,
            period: Duration::from_secs(60),
            sharing: 2,
        },
        Error::UpstreamStatus { status: 500, retry_after: None },
        Error::HostBusy,
        Error::NamespaceBusy,
        Error::HostFailing { retry_in: Duration::from_secs(1) },
        Error::Transport("t"),
        Error::InvalidResponse("r"),
        Error::TargetConflict { secret: "s".into(), consent_token: "c".into() },
        Error::InvalidSpec("s".into()),
        Error::Internal("i"),
        Error::Kube(Box::new(kube::Error::TlsRequired)),
    ];
    for err in &all {
        match err {
            Error::CredentialsNotFound { .. }
            | Error::ProviderNotFound { .. }
            | Error::NamespaceNotAllowed { .. }
            | Error::RequestNotAllowed { .. }
            | Error::CredentialsNamespaceNotWatched { .. }
            | Error::CredentialsKeyMissing { .. }
            | Error::CredentialsNotAllowed { .. }
            | Error::ProviderNotAllowed { .. }
            | Error::PortNotAllowed { .. }
            | Error::AddressNotAllowed(_)
            | Error::Unauthorized { .. }
            | Error::Forbidden { .. }
            | Error::Rejected { .. }
            | Error::OAuthRejected { .. }
            | Error::RateLimited(_)
            | Error::QuotaShareUsed { .. }
            | Error::UpstreamStatus { .. }
            | Error::HostBusy
            | Error::NamespaceBusy
            | Error::HostFailing { .. }
            | Error::Transport(_)
            | Error::InvalidResponse(_)
            | Error::TargetConflict { .. }
            | Error::InvalidSpec(_)
            | Error::Internal(_)
            | Error::Kube(_) => {}
        }
    }
    all
}

fn conditions_doc(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    let schema = serde_json::to_value(crd).unwrap();
    let pointer = "/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/conditions/description";
    schema.pointer(pointer).and_then(|d| d.as_str()).unwrap_or_default().to_owned()
}

#[test]
fn every_reason_the_operator_gives_is_kept_without_a_copy() {
    for reason in one_of_each().iter().map(Error::reason).chain(["TokenValid", "Pending", "Expired"]) {
        assert!(
            matches!(crate::reconcile::status::kept_reason(reason), std::borrow::Cow::Borrowed(_)),
            "{reason} is missing from status::OWN_REASONS"
        );
    }
    assert!(matches!(crate::reconcile::status::kept_reason("SomeoneElses"), std::borrow::Cow::Owned(_)));
}

#[test]
fn every_reason_the_operator_gives_is_listed_in_kubectl_explain() {
    let documented = conditions_doc(&crate::api::crd::ConsentToken::crd());
    let reasons =
        one_of_each().iter().map(Error::reason).chain(["TokenValid", "Pending", "Expired"]).collect::<Vec<_>>();
    for reason in reasons {
        assert!(documented.contains(&format!("`{reason}`")), "ConsentToken: {reason} missing from {documented}");
    }
    // Providers report one of their two ready reasons or a failure's, except the failures
    // that belong to a ConsentToken alone.
    let documented = conditions_doc(&crate::api::crd::ConsentProvider::crd());
    let token_only = ["ProviderNotFound", "NamespaceNotAllowed", "RequestNotAllowed", "TargetConflict"];
    let reasons = one_of_each().iter().map(Error::reason).filter(|r| !token_only.contains(r)).collect::<Vec<_>>();
    for reason in reasons.into_iter().chain(["AccessTokenObtained", "CredentialsValid"]) {
        assert!(documented.contains(&format!("`{reason}`")), "ConsentProvider: {reason} missing from {documented}");
    }
}
