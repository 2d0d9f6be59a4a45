//! `kubectl consent inspect`: what a token says about itself, without the token.
//!
//! Only claims known to be harmless are shown with their values (times, issuer, audience, the
//! OneTrust collection point version). Every other claim is named without its value: an MX
//! token's `scopes` carry the customer's id, which is personal data.

use std::fmt::Write as _;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::{PluginError, relative};
use crate::api::crd::ConsentToken;

/// Claims whose values are shown; dates are shown as times.
const SHOWN: [&str; 6] = ["exp", "iat", "nbf", "iss", "aud", "processVersion"];
const DATES: [&str; 3] = ["exp", "iat", "nbf"];

pub async fn inspect(client: &Client, namespace: &str, name: &str) -> Result<String, PluginError> {
    let ct = Api::<ConsentToken>::namespaced(client.clone(), namespace).get(name).await?;
    let secret_name = ct.target_secret_name();
    let secret = Api::<Secret>::namespaced(client.clone(), namespace).get(&secret_name).await?;
    let token = secret
        .data
        .as_ref()
        .and_then(|d| d.get(ct.target_key()))
        .ok_or_else(|| PluginError::Failed(format!("Secret {secret_name} has no key {:?} yet", ct.target_key())))?;
    let mut out = format!("ConsentToken {namespace}/{name}, Secret {secret_name} key {:?}\n", ct.target_key());
    out.push_str(&describe(&token.0, Timestamp::now()));
    Ok(out)
}

/// The description of raw token bytes at `now`.
pub fn describe(token: &[u8], now: Timestamp) -> String {
    let mut out = format!("fingerprint:    {}\n", crate::provider::token::fingerprint(token));
    let claims = std::str::from_utf8(token)
        .ok()
        .and_then(|t| jsonwebtoken::dangerous::insecure_decode_claims::<serde_json::Value>(t).ok());
    let Some(serde_json::Value::Object(claims)) = claims else {
        out.push_str("the value is not a JWT with a JSON object of claims\n");
        return out;
    };
    for name in SHOWN {
        let Some(value) = claims.get(name) else { continue };
        let shown = match value.as_i64() {
            Some(seconds) if DATES.contains(&name) => date(seconds, now),
            _ => value.to_string(),
        };
        let _ = writeln!(out, "{:<16}{shown}", format!("{name}:"));
    }
    let hidden: Vec<String> = claims.keys().map(String::as_str).filter(|k| !SHOWN.contains(k)).map(printable).collect();
    if !hidden.is_empty() {
        let _ = writeln!(out, "other claims:   {} (values not shown)", hidden.join(", "));
    }
    out
}

/// A claim name as it is safe to print on a terminal: the token comes from an upstream, and a
/// name with escape sequences would otherwise drive the terminal of whoever runs the plugin.
/// Anything but printable ASCII is shown as `\u{..}`.
fn printable(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c.to_string() } else { c.escape_unicode().to_string() })
        .collect()
}

fn date(seconds: i64, now: Timestamp) -> String {
    match Timestamp::from_second(seconds) {
        Ok(at) => format!("{at} ({})", relative(seconds, now)),
        Err(_) => seconds.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_reach_the_terminal_escaped() {
        let claims = serde_json::json!({"\u{1b}]52;c;aGk=\u{7}\u{1b}[2J": 1, "iss": "\u{1b}[31mred", "ok_name": 2, "\u{202e}evil": 3});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        let text = describe(token.as_bytes(), Timestamp::now());
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "a control character printed: {text:?}");
        assert!(!text.contains('\u{202e}'), "{text:?}");
        assert!(text.contains("\\u{1b}]52;c;aGk=\\u{7}\\u{1b}[2J") && text.contains("ok_name"), "{text}");
        assert!(text.contains("\\u{202e}evil"), "{text}");
    }

    #[test]
    fn the_mx_sample_shows_its_times_and_hides_the_customer() {
        // The MX document's sample: its scopes carry the customer id fN7SsIMfJvJJcNjKBmB6Kg.
        let sample = "eyJhbGciOiJIUzI1NiJ9.eyJuYW1lIjoiY29uc2VudF9tYW5hZ2VtZW50Iiwic2NvcGVzIjp7ImN1c3RvbWVyLm1vZGlmeV9jb25zZW50IjoiZk43U3NJTWZKdkpKY05qS0JtQjZLZyJ9LCJleHAiOjE3NDYxNDM1MTMsImlhdCI6MTc0NjE0MzIxMywianRpIjoiYmQ0MWY3N2UtNjg4NC00MThjLTg2ZTAtM2JiMGRiYzEyYTc3IiwiX3R5cGUiOiJJbnN0aXR1dGlvbiIsIl9pZCI6ImJrdSJ9.q9dvdMTW9kiKOSAeSNICoSWWKsmsCW4MEk85JQA9OWY";
        let now = Timestamp::from_second(1_746_143_313).unwrap();
        let text = describe(sample.as_bytes(), now);
        assert!(text.contains("exp:            2025-05-01T23:51:53Z (in 3m20s)"), "{text}");
        assert!(text.contains("iat:            2025-05-01T23:46:53Z (1m40s ago)"), "{text}");
        assert!(text.contains("other claims:   _id, _type, jti, name, scopes (values not shown)"), "{text}");
        assert!(!text.contains("fN7SsIMfJvJJcNjKBmB6Kg") && !text.contains("q9dvdMTW"), "{text}");
    }

    fn hs256(claims: serde_json::Value) -> String {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(b"k")).unwrap()
    }

    proptest::proptest! {
        /// No bytes in a Secret panic `inspect`.
        #[test]
        fn no_bytes_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = describe(&bytes, Timestamp::now());
        }

        /// No claim value panics it (numbers of any size as dates included), and a claim it does
        /// not know is never shown, whatever it holds.
        #[test]
        fn no_claim_panics_and_unknown_ones_stay_hidden(
            number in proptest::prelude::any::<i64>(),
            float in proptest::prelude::any::<f64>(),
            text in "[a-z]{12,20}",
            pick in 0u8..4,
        ) {
            let value = match pick {
                0 => serde_json::json!(number),
                1 => serde_json::json!(float),
                2 => serde_json::json!(text),
                _ => serde_json::json!({"nested": number}),
            };
            let token = hs256(serde_json::json!({"exp": value, "iat": value, "nbf": value, "secretive": text}));
            let shown = describe(token.as_bytes(), Timestamp::now());
            proptest::prop_assert!(shown.contains("secretive"));
            proptest::prop_assert!(pick == 2 || !shown.contains(&text), "{shown}");
        }
    }

    #[test]
    fn no_value_panics_or_is_printed() {
        for value in [&b""[..], b"not a jwt", b"a.b.c", &[0xff, 0xfe, 0x00], b"eyJhbGciOiJub25lIn0.WzEsMl0."] {
            let text = describe(value, Timestamp::UNIX_EPOCH);
            assert!(text.contains("not a JWT"), "{text}");
        }
    }
}
