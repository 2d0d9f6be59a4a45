//! MX / FDX Customer Consent Management Dashboard: `POST /api/{version}/token`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde::Deserialize;

use crate::state::{Endpoint, Shared};
use crate::{apply_fault, finish};

/// The fake's HS256 key; the real one is the data provider's.
const HMAC_KEY: &[u8] = b"fake-provider-fdx-hmac-key";

#[derive(Deserialize)]
pub struct TokenRequest {
    #[serde(rename = "type")]
    kind: String,
    scopes: String,
}

pub async fn token(
    State(state): State<Shared>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let endpoint = Endpoint::FdxToken;
    if let Some(response) = apply_fault(&state, endpoint).await {
        return response;
    }
    let response = {
        let mut st = state.lock().unwrap();
        let credentials = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .and_then(|raw| String::from_utf8(raw).ok());
        let client = credentials
            .as_deref()
            .and_then(|c| c.split_once(':'))
            .filter(|(id, secret)| st.fdx_clients.get(*id).is_some_and(|s| s == secret))
            .map(|(id, _)| id.to_owned());
        let authorized = client.is_some();
        // MX publishes no limit; a test may set one (`set_rate_limit`), answered like OneTrust's.
        let limited = client.as_deref().and_then(|id| crate::over_minute_limit(&mut st, endpoint, id));
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        // Exactly the documented body: {"type": ..., "scopes": ...} and nothing else.
        let request: Option<TokenRequest> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .filter(|v| {
                v.as_object().is_some_and(|o| o.len() == 2 && o.contains_key("type") && o.contains_key("scopes"))
            })
            .and_then(|v| serde_json::from_value(v).ok());
        if !json {
            StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response()
        } else if !authorized {
            StatusCode::UNAUTHORIZED.into_response()
        } else if let Some(limited) = limited {
            limited
        } else if !version.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            StatusCode::NOT_FOUND.into_response()
        } else {
            match request {
                Some(req) if req.kind == "consent_management" => {
                    match req.scopes.strip_prefix("customer.modify_consent:") {
                        Some(customer) if !customer.is_empty() => {
                            let now = st.clock().as_second();
                            let claims = serde_json::json!({
                                "name": "consent_management",
                                "scopes": {"customer.modify_consent": customer},
                                "exp": now.saturating_add(i64::try_from(st.fdx_lifetime).unwrap_or(i64::MAX)), "iat": now,
                                "jti": uuid::Uuid::new_v4().to_string(), "_type": "Institution", "_id": "bku",
                            });
                            let token =
                                jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(HMAC_KEY))
                                    .expect("HS256 signing cannot fail");
                            crate::issued::remember(&token);
                            axum::Json(serde_json::json!({"access_token": token})).into_response()
                        }
                        _ => StatusCode::BAD_REQUEST.into_response(),
                    }
                }
                _ => StatusCode::BAD_REQUEST.into_response(),
            }
        }
    };
    finish(&state, endpoint, response)
}
