//! What the target Secret records about the token it holds, and reading it back.
//!
//! The Secret carries, next to the token, the non-secret facts about it as annotations:
//! when it was fetched, when it expires, when it is due for renewal, which spec generation and
//! which credentials produced it. Written together with the token in one request, they cannot
//! disagree with it, and a restarted operator resumes the schedule from them.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;

use crate::api::annotations::*;
use crate::cache::secret_summary::SecretSummary;
use crate::provider::token::{self, Token};

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
    /// Fingerprint of the request the token answers (see `spec::ValidSpec::request`). Absent in
    /// Secrets written before it was recorded: then the generation decides.
    pub request: Option<String>,
}

/// The facts of the token in a Secret under `key`, if it is intact: present, and the same token
/// the facts were written for (not edited by someone else).
pub fn read(summary: &SecretSummary, key: &str) -> Option<TokenRecord> {
    let recorded = summary.annotation(FINGERPRINT)?;
    if summary.fingerprint(key)? != recorded {
        return None;
    }
    let time = |name: &str| summary.annotation(name).and_then(|v| v.parse::<Timestamp>().ok());
    Some(TokenRecord {
        fingerprint: recorded.to_owned(),
        refreshed_at: time(REFRESHED_AT)?,
        expires_at: time(EXPIRES_AT),
        next_refresh_at: time(NEXT_REFRESH_AT)?,
        generation: summary.annotation(GENERATION)?.parse().ok()?,
        credentials_version: summary.annotation(CREDENTIALS_VERSION).unwrap_or_default().to_owned(),
        collection_point_version: summary.annotation(COLLECTION_POINT_VERSION).and_then(|v| v.parse().ok()),
        request: summary.annotation(REQUEST).map(str::to_owned),
    })
}

/// The token in a Secret under `key`, if it is the one `record` was
/// written for.
pub fn intact_token(secret: &Secret, key: &str, record: &TokenRecord) -> Option<Token> {
    let bytes = secret.data.as_ref()?.get(key)?;
    if token::fingerprint(&bytes.0) != record.fingerprint {
        return None;
    }
    String::from_utf8(bytes.0.clone()).ok().map(Token::new)
}
