//! Tokens fetched whose Secret write failed (the API server was down or unreachable), kept in
//! memory for the next attempt: the provider answered once, and a token that is still good
//! enough is written then instead of asking the provider again. During a 12-second API server
//! outage this took the upstream requests from 19-20 down to one per due token
//! (`tests/apiserver_outage.rs`). Held only until written, replaced, or its ConsentToken gone;
//! the token is in a type that cannot be printed.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::basics::object_id::ObjectId;
use crate::provider::FetchedToken;

/// One fetched token and what it was fetched for.
#[derive(Clone, Debug)]
pub struct Unwritten {
    pub fetched: FetchedToken,
    /// The request it answers (see `spec::ValidSpec::request`).
    pub request: String,
    /// The credentials Secret version it was fetched with.
    pub credentials_version: String,
}

/// By ConsentToken uid.
#[derive(Default)]
pub struct UnwrittenTokens(Mutex<HashMap<ObjectId, Unwritten>>);

impl UnwrittenTokens {
    pub fn keep(&self, uid: &str, unwritten: Unwritten) {
        self.lock().insert(ObjectId::of(uid), unwritten);
    }

    /// The token kept for `uid`, if it answers `request` with these credentials (`None`: any
    /// version). Taken out either way: it is used now or never.
    pub fn take(&self, uid: &str, request: &str, credentials_version: Option<&str>) -> Option<Unwritten> {
        let kept = self.lock().remove(&ObjectId::of(uid))?;
        let same_credentials = credentials_version.is_none_or(|v| v == kept.credentials_version);
        (kept.request == request && same_credentials).then_some(kept)
    }

    pub fn forget(&self, uid: &str) {
        self.lock().remove(&ObjectId::of(uid));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Unwritten>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::t;
    use crate::provider::token::Token;

    fn unwritten() -> Unwritten {
        Unwritten {
            fetched: FetchedToken {
                token: Token::new("a.b.c".into()),
                fetched_at: t(0),
                expires_at: Some(t(300)),
                provider_clock_ahead: None,
                collection_point_version: None,
            },
            request: "sha256:aaaa".into(),
            credentials_version: "7".into(),
        }
    }

    #[test]
    fn a_kept_token_is_used_once_and_only_for_the_same_request_and_credentials() {
        let kept = UnwrittenTokens::default();
        kept.keep("u", unwritten());
        assert!(kept.take("u", "sha256:aaaa", Some("7")).is_some());
        assert!(kept.take("u", "sha256:aaaa", Some("7")).is_none(), "used once");
        kept.keep("u", unwritten());
        assert!(kept.take("u", "sha256:bbbb", None).is_none(), "another request");
        assert!(kept.take("u", "sha256:aaaa", None).is_none(), "dropped by the mismatch");
        kept.keep("u", unwritten());
        assert!(kept.take("u", "sha256:aaaa", Some("8")).is_none(), "rotated credentials");
        kept.keep("u", unwritten());
        kept.forget("u");
        assert!(kept.take("u", "sha256:aaaa", None).is_none());
    }
}
