//! The secrecy scan every integration test runs: no secret the test binary knows may appear in
//! an operator's log (captured at trace level), in the Events or statuses of a test's namespace,
//! or in the operator's metrics, in any of the forms it could take on the way: raw, base64
//! (standard, unpadded, URL-safe), URL-encoded, JSON-escaped, or as a JWT's signature alone.
//!
//! What is known: every secret a fake provider of this process issued or was given (client
//! secrets, `id:secret` pairs as their Basic header encodes them, OneTrust access tokens,
//! tokens), and what tests wrote into credentials Secrets or as customer ids.

use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

static KNOWN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Starts recording what the fake providers of this process issue.
pub fn start_recording() {
    fake_provider::issued::record_secrets();
}

/// A value that must never be seen outside the Secret it is in (or the spec, for customer ids).
/// Values under 8 characters are too common to scan for and are not recorded.
pub fn remember(value: &str) {
    if value.len() >= 8 {
        KNOWN.lock().unwrap_or_else(|p| p.into_inner()).push(value.to_owned());
    }
}

/// Everything known now, in every form it is scanned for: (what, needle).
pub fn needles() -> Vec<(String, String)> {
    let mut values = fake_provider::issued::secrets();
    values.extend(KNOWN.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned());
    // Tests use secrets of at least 8 characters; shorter ones would be found by chance.
    values.retain(|v| v.len() >= 8);
    values.sort();
    values.dedup();
    let mut needles = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let mut forms = vec![
            ("raw", value.clone()),
            ("base64", STANDARD.encode(value)),
            ("base64 unpadded", STANDARD_NO_PAD.encode(value)),
            ("base64url", URL_SAFE_NO_PAD.encode(value)),
            ("URL-encoded", url::form_urlencoded::byte_serialize(value.as_bytes()).collect()),
            ("JSON-escaped", serde_json::to_string(value).unwrap().trim_matches('"').to_owned()),
        ];
        if let [_, _, signature] = value.split('.').collect::<Vec<_>>()[..]
            && signature.len() >= 16
        {
            forms.push(("JWT signature", signature.to_owned()));
        }
        for (form, needle) in forms {
            needles.push((format!("known secret #{i} ({} chars), {form}", value.len()), needle));
        }
    }
    needles.sort_by(|a, b| a.1.cmp(&b.1));
    needles.dedup_by(|a, b| a.1 == b.1);
    needles
}

/// What of `needles` appears in `text` (named `place`), as readable findings.
pub fn findings(place: &str, text: &str, needles: &[(String, String)]) -> Vec<String> {
    needles
        .iter()
        .filter(|(_, needle)| text.contains(needle.as_str()))
        .map(|(what, _)| format!("{what} found in {place}"))
        .collect()
}

/// Fails the test (unless it is failing already) when anything was found.
pub fn assert_none(findings: &[String]) {
    if !findings.is_empty() && !std::thread::panicking() {
        panic!("secrecy scan: {}", findings.join("; "));
    }
}
