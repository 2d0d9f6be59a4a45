//! Token values and what can be read from them without verifying them.
//!
//! Neither provider publishes a key to verify its tokens with, and the operator only passes
//! them on, so claims are decoded without verification: to schedule renewal (`exp`) and to
//! report the collection point version (`processVersion`). Decoding is tolerant of odd claims
//! such as OneTrust's ISO-8601 string `iat`, but a value that is not a JWT at all, or that has
//! already expired, is refused: it is never written to a Secret.
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

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

/// What the operator reads from a token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenClaims {
    /// `exp`, when the token has one.
    pub expires_at: Option<Timestamp>,
    /// OneTrust `processVersion`: the collection point version the token belongs to.
    pub process_version: Option<i64>,
}

/// Decodes a JWT's claims without verifying its signature and checks it can be used at `now`.
pub fn read_claims(token: &str, now: Timestamp) -> Result<TokenClaims, Error> {
    if token.is_empty() {
        return Err(Error::InvalidResponse("the token is empty"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::InvalidResponse("the token is larger than 16 KiB"));
    }
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|_| Error::InvalidResponse("the token is not a decodable JWT"))?;
    let claims = claims.as_object().ok_or(Error::InvalidResponse("the token's claims are not a JSON object"))?;
    let expires_at = match claims.get("exp") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(numeric_date(value).ok_or(Error::InvalidResponse("the token's exp claim is not a date"))?),
    };
    if let Some(exp) = expires_at
        && exp <= now
    {
        return Err(Error::InvalidResponse("the token has already expired"));
    }
    let process_version = claims.get("processVersion").and_then(integer);
    Ok(TokenClaims { expires_at, process_version })
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
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    fn hs256(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"k")).unwrap()
    }

    #[test]
    fn reads_exp_of_the_documented_mx_sample() {
        // The sample token from the MX document: exp 1746143513, iat 1746143213.
        let sample = "eyJhbGciOiJIUzI1NiJ9.eyJuYW1lIjoiY29uc2VudF9tYW5hZ2VtZW50Iiwic2NvcGVzIjp7ImN1c3RvbWVyLm1vZGlmeV9jb25zZW50IjoiZk43U3NJTWZKdkpKY05qS0JtQjZLZyJ9LCJleHAiOjE3NDYxNDM1MTMsImlhdCI6MTc0NjE0MzIxMywianRpIjoiYmQ0MWY3N2UtNjg4NC00MThjLTg2ZTAtM2JiMGRiYzEyYTc3IiwiX3R5cGUiOiJJbnN0aXR1dGlvbiIsIl9pZCI6ImJrdSJ9.q9dvdMTW9kiKOSAeSNICoSWWKsmsCW4MEk85JQA9OWY";
        let before = Timestamp::from_second(1_746_143_213).unwrap();
        let claims = read_claims(sample, before).unwrap();
        assert_eq!(claims.expires_at, Some(Timestamp::from_second(1_746_143_513).unwrap()));
        // The same token read after its exp is refused rather than written.
        let after = Timestamp::from_second(1_746_143_514).unwrap();
        assert!(matches!(read_claims(sample, after), Err(Error::InvalidResponse(_))));
    }

    #[test]
    fn tolerates_onetrust_string_iat_and_no_exp() {
        let token = hs256(serde_json::json!({"iat": "2025-05-01T14:23:32.72", "processVersion": 3, "sub": "Email"}));
        let claims = read_claims(&token, Timestamp::now()).unwrap();
        assert_eq!(claims, TokenClaims { expires_at: None, process_version: Some(3) });
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

    proptest::proptest! {
        /// No string, JWT-shaped or not, panics the claims reader.
        #[test]
        fn no_token_text_panics(text in ".{0,300}") {
            let _ = read_claims(&text, Timestamp::now());
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
                proptest::prop_assert!(claims.expires_at.is_none_or(|exp| exp > now));
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
