use super::*;
use crate::api::crd::{CollectionPoint, CollectionPointState};

use crate::fixtures;

fn request(version: Option<i64>, state: Option<CollectionPointState>) -> OneTrustRequest {
    let mut source = fixtures::onetrust_source("app-eu.onetrust.com");
    source.collection_point = CollectionPoint { guid: fixtures::GUID.into(), version, state };
    OneTrustRequest::new(&source, &UpstreamPolicy::default()).unwrap()
}

#[test]
fn collection_point_url_passes_version_and_state_through() {
    let plain = request(None, None);
    assert_eq!(
        plain.collection_point_url.as_str(),
        "https://app-eu.onetrust.com/api/consentmanager/v1/collectionpoints/123e4567-e89b-12d3-a456-426614174000/token"
    );
    assert_eq!(plain.oauth_url.as_str(), "https://app-eu.onetrust.com/api/access/v1/oauth/token");
    assert_eq!(
        request(Some(3), Some(CollectionPointState::Active)).collection_point_url.query(),
        Some("version=3&state=ACTIVE")
    );
}

#[test]
fn expires_in_is_clamped_and_read_in_every_shape() {
    let lifetime = |body: &str| parse_oauth_answer(body.as_bytes()).map(|(_, d)| d);
    let with = |v: &str| format!(r#"{{"access_token":"a.b.c","token_type":"Bearer","expires_in":{v}}}"#);
    assert_eq!(lifetime(&with("31535999")).unwrap(), Duration::from_secs(31_535_999), "the documented example");
    assert_eq!(lifetime(&with("\"3600\"")).unwrap(), Duration::from_secs(3600));
    assert_eq!(lifetime(r#"{"access_token":"a.b.c"}"#).unwrap(), DEFAULT_ACCESS_TOKEN_LIFETIME);
    for floor in ["0", "-5", "\"soon\"", "[]", "1e-9"] {
        assert_eq!(lifetime(&with(floor)).unwrap(), MIN_ACCESS_TOKEN_LIFETIME, "{floor}");
    }
    for ceiling in ["300000000000", "1e300", "18446744073709551615"] {
        assert_eq!(lifetime(&with(ceiling)).unwrap(), MAX_ACCESS_TOKEN_LIFETIME, "{ceiling}");
    }
    assert!(lifetime(r#"{"access_token":""}"#).is_err());
    assert!(lifetime(r#"{"access_token":"x","token_type":"mac"}"#).is_err());
}

proptest::proptest! {
    #[test]
    fn no_oauth_answer_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse_oauth_answer(&body);
    }

    #[test]
    fn no_expires_in_escapes_the_clamp(value in proptest::prelude::any::<f64>(), as_text in proptest::prelude::any::<bool>()) {
        let expires_in = if as_text { serde_json::Value::String(value.to_string()) } else { serde_json::json!(value) };
        let body = serde_json::json!({"access_token": "a.b.c", "expires_in": expires_in}).to_string();
        let (_, lifetime) = parse_oauth_answer(body.as_bytes()).unwrap();
        proptest::prop_assert!(lifetime >= MIN_ACCESS_TOKEN_LIFETIME && lifetime <= MAX_ACCESS_TOKEN_LIFETIME);
    }

    #[test]
    fn no_collection_point_body_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = token_from_body(&body);
    }
}

#[test]
fn all_three_documented_body_shapes_are_read() {
    assert_eq!(token_from_body(br#"{"token": "a.b.c"}"#).unwrap(), "a.b.c");
    assert_eq!(token_from_body(br#""a.b.c""#).unwrap(), "a.b.c");
    assert_eq!(token_from_body(b"a.b.c\n").unwrap(), "a.b.c");
    assert!(token_from_body(br#"{"nope": 1}"#).is_err());
    assert!(token_from_body(b"{not json").is_err());
}
