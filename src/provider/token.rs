//! Token values and what can be read from them without verifying them.
//!
//! Neither provider publishes a key to verify its tokens with, and the operator only passes
//! them on, so claims are decoded without verification: to schedule renewal (`exp`, `iat`) and
//! to report the collection point version (`processVersion`). Decoding is tolerant of odd claims
//! such as OneTrust's ISO-8601 string `iat`, but a value that is not a JWT at all, or that has
//! already expired, is refused: it is never written to a Secret.
//!
//! A token is judged by its own clock: its lifetime is `exp - iat`, counted from the moment
//! this node fetched it. `exp` read against this node's clock would make every five-minute MX
//! token look too short-lived on a node a few minutes fast (refused for ever), and on a node a
//! few minutes slow leave a renewal at half the lifetime less real time than the kubelet needs.
//! The provider's clock stays what judges the token in the end, and the provider started that
//! clock when it answered, so the lifetime anchored at the fetch is the true one (give or take
//! the answer's time on the wire, under a second).
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use jiff::{SignedDuration, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::basics::time_math::{between, later};
use crate::error::Error;

/// A token value. Its `Debug` prints `[REDACTED]`; the value is only reachable through
/// [`Token::expose`], which is called where it is written into the target Secret.
#[derive(Clone, Debug)]
pub struct Token(SecretString);

impl Token {
    pub fn new(value: String) -> Self {
        Self(SecretString::from(value))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `sha256:` and 16 hex digits: tells tokens apart without revealing them.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.expose().as_bytes())
    }
}

/// The fingerprint of raw token bytes as stored in a Secret.
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What the operator reads from a token's claims, on this node's clock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenClaims {
    /// When the token stops being valid, on this node's clock: its lifetime (`exp - iat`) from
    /// the moment it was fetched, or `exp` itself when `iat` is missing or not believable. `None`:
    /// the token has no `exp`.
    pub expires_at: Option<Timestamp>,
    /// How far the provider's clock is ahead of this node's (negative: behind), told by a
    /// believable numeric `iat` against the moment of the fetch.
    pub provider_clock_ahead: Option<SignedDuration>,
    /// OneTrust `processVersion`: the collection point version the token belongs to.
    pub process_version: Option<i64>,
}

/// Decodes a JWT's claims without verifying its signature and checks it can be used; `now` is
/// when it was fetched.
pub fn read_claims(token: &str, now: Timestamp) -> Result<TokenClaims, Error> {
    if token.is_empty() {
        return Err(Error::InvalidResponse("the token is empty"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::InvalidResponse("the token is larger than 16 KiB"));
    }
    check_shape(token)?;
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|_| Error::InvalidResponse("the token is not a decodable JWT"))?;
    let claims = claims.as_object().ok_or(Error::InvalidResponse("the token's claims are not a JSON object"))?;
    let exp = match claims.get("exp") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(numeric_date(value).ok_or(Error::InvalidResponse("the token's exp claim is not a date"))?),
    };
    // OneTrust's string `iat` names no time zone: it tells nothing about the provider's clock.
    let issued_at = claims
        .get("iat")
        .filter(|value| value.is_number())
        .and_then(numeric_date)
        .filter(|iat| believable_issue_time(*iat, exp, now));
    let expires_at = match (exp, issued_at) {
        // In whole seconds, as `exp` is, rounded down: never later than the token's real end.
        (Some(exp), Some(iat)) => Some(whole_second(later(now, between(iat, exp)))),
        (Some(exp), None) if exp <= now => return Err(Error::InvalidResponse("the token has already expired")),
        (exp, _) => exp,
    };
    let provider_clock_ahead = issued_at.map(|iat| iat.duration_since(now));
    let process_version = claims.get("processVersion").and_then(integer);
    Ok(TokenClaims { expires_at, provider_clock_ahead, process_version })
}

/// A compact JWT as both providers document it: three non-empty base64url segments (header,
/// claims, signature) and a header that decodes. Nothing else is written: a CR, LF or space
/// would reach a workload that builds `Authorization: Bearer $(cat token)` as a header
/// injection, and a segment the claims decoder never reads would pass unchecked.
fn check_shape(token: &str) -> Result<(), Error> {
    let base64url = |segment: &str| {
        !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() != 3 || !segments.iter().all(|segment| base64url(segment)) {
        return Err(Error::InvalidResponse("the token is not a compact JWT (three base64url segments, nothing else)"));
    }
    jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidResponse("the token's header does not decode"))?;
    Ok(())
}

/// Further apart than this, an `iat` and this node's clock are not two clocks that drifted but a
/// time zone mistake, a token that was not just issued, or an `iat` that means something else:
/// `exp` is then read against this node's clock, as it is.
pub const MOST_BELIEVABLE_SKEW: std::time::Duration = std::time::Duration::from_secs(3600);

fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// An `iat` before `exp` (a lifetime of more than nothing) and within an hour of the fetch.
fn believable_issue_time(iat: Timestamp, exp: Option<Timestamp>, fetched_at: Timestamp) -> bool {
    exp.is_none_or(|exp| iat < exp) && iat.duration_since(fetched_at).unsigned_abs() <= MOST_BELIEVABLE_SKEW
}

/// Tokens are small; anything larger is not what the providers send.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A JWT NumericDate: seconds since the epoch, as an integer, a float or a numeric string.
fn numeric_date(value: &serde_json::Value) -> Option<Timestamp> {
    let seconds = match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    Timestamp::from_second(seconds).ok()
}

fn integer(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // small test numbers
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    fn hs256(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"k")).unwrap()
    }

    // The sample token from the MX document: exp 1746143513, iat 1746143213.
    const MX_SAMPLE: &str = "eyJhbGciOiJIUzI1NiJ9.eyJuYW1lIjoiY29uc2VudF9tYW5hZ2VtZW50Iiwic2NvcGVzIjp7ImN1c3RvbWVyLm1vZGlmeV9jb25zZW50IjoiZk43U3NJTWZKdkpKY05qS0JtQjZLZyJ9LCJleHAiOjE3NDYxNDM1MTMsImlhdCI6MTc0NjE0MzIxMywianRpIjoiYmQ0MWY3N2UtNjg4NC00MThjLTg2ZTAtM2JiMGRiYzEyYTc3IiwiX3R5cGUiOiJJbnN0aXR1dGlvbiIsIl9pZCI6ImJrdSJ9.q9dvdMTW9kiKOSAeSNICoSWWKsmsCW4MEk85JQA9OWY";
    const MX_SAMPLE_IAT: i64 = 1_746_143_213;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn reads_the_documented_mx_sample_on_the_clock_it_was_fetched_by() {
        let claims = read_claims(MX_SAMPLE, at(MX_SAMPLE_IAT)).unwrap();
        assert_eq!(claims.expires_at, Some(at(MX_SAMPLE_IAT + 300)));
        assert_eq!(claims.provider_clock_ahead, Some(SignedDuration::ZERO));
    }

    #[test]
    fn a_node_fast_or_slow_still_gets_the_whole_lifetime() {
        // This node 4 minutes ahead of the provider: `exp` is a minute away on this clock, but
        // the token lives its five minutes from the fetch.
        let fast = read_claims(MX_SAMPLE, at(MX_SAMPLE_IAT + 240)).unwrap();
        assert_eq!(fast.expires_at, Some(at(MX_SAMPLE_IAT + 240 + 300)));
        assert_eq!(fast.provider_clock_ahead, Some(SignedDuration::from_secs(-240)));
        // This node 6 minutes behind: `exp` past on the provider's clock... ahead of it here.
        let slow = read_claims(MX_SAMPLE, at(MX_SAMPLE_IAT - 360)).unwrap();
        assert_eq!(slow.expires_at, Some(at(MX_SAMPLE_IAT - 360 + 300)));
        assert_eq!(slow.provider_clock_ahead, Some(SignedDuration::from_secs(360)));
    }

    #[test]
    fn an_unbelievable_iat_falls_back_to_exp_on_this_clock() {
        // Two hours after its issue: not a clock that drifted. Its exp has passed: refused.
        assert!(matches!(read_claims(MX_SAMPLE, at(MX_SAMPLE_IAT + 7200)), Err(Error::InvalidResponse(_))));
        // An iat after exp says nothing about the lifetime either.
        let now = Timestamp::now().as_second();
        let backwards = hs256(serde_json::json!({"exp": now + 100, "iat": now + 200}));
        let claims = read_claims(&backwards, at(now)).unwrap();
        assert_eq!((claims.expires_at, claims.provider_clock_ahead), (Some(at(now + 100)), None));
    }

    #[test]
    fn tolerates_onetrust_string_iat_and_no_exp() {
        let token = hs256(serde_json::json!({"iat": "2025-05-01T14:23:32.72", "processVersion": 3, "sub": "Email"}));
        let claims = read_claims(&token, Timestamp::now()).unwrap();
        assert_eq!(claims, TokenClaims { expires_at: None, provider_clock_ahead: None, process_version: Some(3) });
    }

    #[test]
    fn refuses_what_is_not_a_usable_jwt() {
        let now = Timestamp::now();
        for bad in ["", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...", "not a token", "a.b.c"] {
            assert!(matches!(read_claims(bad, now), Err(Error::InvalidResponse(_))), "{bad:?} accepted");
        }
        let bad_exp = hs256(serde_json::json!({"exp": "soon"}));
        assert!(matches!(read_claims(&bad_exp, now), Err(Error::InvalidResponse(_))));
    }

    #[test]
    fn refuses_a_token_of_another_shape_than_a_compact_jwt() {
        let fetched = at(MX_SAMPLE_IAT);
        let (header, rest) = MX_SAMPLE.split_once('.').unwrap();
        let (claims, signature) = rest.split_once('.').unwrap();
        for bad in [
            format!("{MX_SAMPLE}\r\n"),
            format!("{MX_SAMPLE}\nX-Injected: 1"),
            format!(" {MX_SAMPLE}"),
            format!("{header}.{claims}.{signature}.{signature}"),
            format!("{header}.{claims}."),
            format!("bm90IGpzb24.{claims}.{signature}"), // the header is "not json"
            format!("{header}.{claims}.{signature}="),
            format!("{header}.{claims}.sig\u{1b}[31m"),
        ] {
            let refused = read_claims(&bad, fetched);
            assert!(matches!(refused, Err(Error::InvalidResponse(_))), "{bad:?} accepted");
        }
        assert!(read_claims(MX_SAMPLE, fetched).is_ok());
    }

    proptest::proptest! {
        /// No string, JWT-shaped or not, panics the claims reader, and what it accepts has
        /// nothing but base64url segments and their dots.
        #[test]
        fn no_token_text_panics(text in ".{0,300}") {
            if read_claims(&text, Timestamp::now()).is_ok() {
                proptest::prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            }
        }

        /// A good token with any byte that is not base64url put anywhere in it is refused.
        #[test]
        fn a_good_token_with_a_foreign_byte_anywhere_is_refused(at_index in 0usize..=MX_SAMPLE.len(), byte in 0u8..128) {
            proptest::prop_assume!(!(byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'));
            let mut bad = MX_SAMPLE.to_owned();
            bad.insert(at_index, char::from(byte));
            proptest::prop_assert!(read_claims(&bad, at(MX_SAMPLE_IAT)).is_err(), "{:?} accepted", bad);
        }

        /// No claim value (numbers of any size, floats, strings, objects) panics it, and an
        /// accepted `exp` is always in the future.
        #[test]
        fn no_claims_panic(exp in proptest::prelude::any::<f64>(), exp_int in proptest::prelude::any::<i64>(), text in ".{0,20}", pick in 0u8..5) {
            let value = match pick {
                0 => serde_json::json!(exp),
                1 => serde_json::json!(exp_int),
                2 => serde_json::json!(text),
                3 => serde_json::json!({"nested": exp_int}),
                _ => serde_json::json!(exp_int.to_string()),
            };
            let token = hs256(serde_json::json!({"exp": value, "processVersion": value, "iat": value}));
            let now = Timestamp::now();
            if let Ok(claims) = read_claims(&token, now) {
                proptest::prop_assert!(claims.expires_at.is_none_or(|expires| expires > now));
                proptest::prop_assert!(claims.provider_clock_ahead.is_none_or(|ahead| ahead.unsigned_abs() <= MOST_BELIEVABLE_SKEW));
            }
        }
    }

    proptest::proptest! {
        /// Whatever `iat` and `exp` say, an accepted token expires after its fetch, and a
        /// believable `iat` gives it exactly its lifetime from the fetch.
        #[test]
        fn a_token_lives_its_own_lifetime_from_the_fetch(iat in -20_000i64..20_000, lifetime in -400i64..400) {
            let now = Timestamp::now().as_second();
            let token = hs256(serde_json::json!({"iat": now + iat, "exp": now + iat + lifetime}));
            if let Ok(claims) = read_claims(&token, at(now)) {
                let expires = claims.expires_at.unwrap();
                proptest::prop_assert!(expires > at(now));
                if iat.unsigned_abs() <= MOST_BELIEVABLE_SKEW.as_secs() && lifetime > 0 {
                    proptest::prop_assert_eq!(expires, at(now + lifetime));
                    proptest::prop_assert_eq!(claims.provider_clock_ahead, Some(SignedDuration::from_secs(iat)));
                }
            }
        }
    }

    #[test]
    fn debug_output_hides_the_value() {
        let token = Token::new("super-secret-token".into());
        assert!(!format!("{token:?}").contains("super-secret"));
        assert_eq!(token.fingerprint(), fingerprint(b"super-secret-token"));
        assert!(token.fingerprint().starts_with("sha256:") && token.fingerprint().len() == 23);
    }
}
