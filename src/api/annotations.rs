//! The labels and annotations the operator writes on its Secrets (workloads, `kubectl consent`
//! and a restarted operator read them), and the one annotation users write on a ConsentToken.

/// Annotation users set on a ConsentToken (to any new value, e.g. a timestamp) to refresh now.
pub const REFRESH_REQUESTED_AT: &str = "consent.dev/refresh-requested-at";

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "consent-token-operator";
/// Label selector of every Secret this operator writes: the only Secrets it caches.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=consent-token-operator";
/// Label selector of every other Secret (credentials, and names a new target must not take).
pub const NOT_MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by!=consent-token-operator";

pub const FINGERPRINT: &str = "consent.dev/token-fingerprint";
pub const REFRESHED_AT: &str = "consent.dev/refreshed-at";
pub const EXPIRES_AT: &str = "consent.dev/expires-at";
pub const NEXT_REFRESH_AT: &str = "consent.dev/next-refresh-at";
pub const GENERATION: &str = "consent.dev/generation";
pub const CREDENTIALS_VERSION: &str = "consent.dev/credentials-version";
pub const COLLECTION_POINT_VERSION: &str = "consent.dev/collection-point-version";
pub const REQUEST: &str = "consent.dev/request-fingerprint";
/// The user's labels and annotations and the data keys this Secret was last written with
/// (`labels=a,b;annotations=c;data=token,expires-at`), so those the spec no longer asks for can
/// be removed: fields written at creation (a POST) are not removed by a later server-side apply
/// that leaves them out.
pub const WRITTEN: &str = "consent.dev/written-keys";
/// Set by the owner of an existing Secret (never by a ConsentToken's author alone) to the name
/// of the ConsentToken in its namespace that may take it over: the operator then writes a fresh
/// token into it and makes it its own in one write, so the pods that mount it never miss the key.
pub const ADOPT_BY: &str = "consent.dev/adopt-by";
/// Beside [`ADOPT_BY`]: what happens to the data keys the ConsentToken does not write: `keep`
/// (the default) or `drop`.
pub const ADOPT_OTHER_KEYS: &str = "consent.dev/adopt-other-keys";
/// Written at a takeover: the data keys kept from before (`a,b`), which the operator leaves as
/// they are rather than treating them as a change to put back.
pub const KEPT_KEYS: &str = "consent.dev/kept-keys";

/// On the operator's Lease, written by each leader as it claims and renews it: the leading
/// replica's version and source revision, which `kubectl consent version` shows.
pub const LEADER_BUILD: &str = "consent.dev/leader-build";

/// This build, as [`LEADER_BUILD`] and `kubectl consent version` show it:
/// `0.2.0 (revision 0123456789ab)`.
pub fn build() -> String {
    format!("{} (revision {})", env!("CARGO_PKG_VERSION"), env!("CONSENT_TOKEN_REVISION"))
}

/// The operator's own annotations that are not always there.
pub const OPTIONAL_OWN: [&str; 3] = [EXPIRES_AT, COLLECTION_POINT_VERSION, REQUEST];
