//! OneTrust: the OAuth 2.0 client-credentials endpoint and the collection point token.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;

use crate::state::{CollectionPointBody, Endpoint, Issued, Shared};
use crate::{apply_fault, finish};

/// The fake's own RSA key for RS512 collection point tokens (test material, signs nothing real).
const SIGNING_KEY: &[u8] = include_bytes!("collection-point-signing-key.pem");

/// `POST /api/access/v1/oauth/token`: multipart/form-data only, as OneTrust's OpenAPI document
/// declares (a server that follows it answers 400 to anything else); form-urlencoded only, and
/// multipart refused with 415, in "sample-code" mode (a host that follows OneTrust's sample code).
pub async fn oauth_token(State(state): State<Shared>, request: Request) -> Response {
    let endpoint = Endpoint::OneTrustOAuth;
    if let Some(response) = apply_fault(&state, endpoint).await {
        return response;
    }
    let sample_code = state.lock().unwrap().oauth_sample_code;
    let fields = match read_form(request, sample_code).await {
        Ok(fields) => fields,
        Err(response) => return finish(&state, endpoint, response),
    };
    let response = {
        let mut st = state.lock().unwrap();
        if fields.get("grant_type").map(String::as_str) != Some("client_credentials") {
            (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "Invalid grant_type"}))).into_response()
        } else {
            let id = fields.get("client_id").cloned().unwrap_or_default();
            let secret = fields.get("client_secret").cloned().unwrap_or_default();
            if st.onetrust_clients.get(&id) != Some(&secret) {
                (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error": "invalid_client"}))).into_response()
            } else if let Some(limited) = crate::over_minute_limit(&mut st, endpoint, &id) {
                limited
            } else {
                let expires_in = st.oauth_expires_in;
                let now = jiff::Timestamp::now();
                let claims = serde_json::json!({
                    "user_name": "integration@example.com", "scope": ["CONSENT"],
                    "exp": st.clock().as_second().saturating_add(expires_in), "jti": uuid::Uuid::new_v4().to_string(),
                    "client_id": id,
                });
                let access_token = sign(Algorithm::RS256, &claims);
                crate::issued::remember(&access_token);
                st.access_tokens.insert(
                    access_token.clone(),
                    // A lying `expires_in` (zero, negative) is only reported: the token works
                    // for an hour. Absurdly large ones saturate.
                    Issued {
                        client_id: id,
                        expires_at: now
                            .checked_add(jiff::SignedDuration::from_secs(if expires_in > 0 {
                                expires_in
                            } else {
                                3600
                            }))
                            .unwrap_or(jiff::Timestamp::MAX),
                    },
                );
                axum::Json(serde_json::json!({
                    "access_token": access_token, "token_type": "bearer", "expires_in": expires_in,
                    "scope": "CONSENT", "ot-scopes": "CONSENT", "jti": uuid::Uuid::new_v4().to_string(),
                    "tenantId": "b2f4a3e6-9a0f-4c0e-8d6f-3f1c2d4e5a6b", "languageId": 1,
                }))
                .into_response()
            }
        }
    };
    finish(&state, endpoint, response)
}

async fn read_form(request: Request, sample_code: bool) -> Result<HashMap<String, String>, Response> {
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let multipart = content_type.starts_with("multipart/form-data");
    let urlencoded = content_type.starts_with("application/x-www-form-urlencoded");
    if sample_code && !urlencoded {
        return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response());
    }
    if !sample_code && !multipart {
        let body = serde_json::json!({"error": "invalid_request", "error_description": "multipart/form-data expected"});
        return Err((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
    }
    if multipart {
        let mut multipart = Multipart::from_request(request, &()).await.map_err(IntoResponse::into_response)?;
        let mut fields = HashMap::new();
        while let Ok(Some(field)) = multipart.next_field().await {
            let name = field.name().unwrap_or_default().to_owned();
            let value = field.text().await.map_err(IntoResponse::into_response)?;
            fields.insert(name, value);
        }
        Ok(fields)
    } else {
        let body = Bytes::from_request(request, &()).await.map_err(IntoResponse::into_response)?;
        serde_urlencoded_pairs(&body).ok_or_else(|| StatusCode::BAD_REQUEST.into_response())
    }
}

fn serde_urlencoded_pairs(body: &[u8]) -> Option<HashMap<String, String>> {
    serde_urlencoded::from_bytes(body).ok()
}

#[derive(Deserialize)]
pub struct CollectionPointQuery {
    version: Option<i64>,
    state: Option<String>,
}

/// `GET /api/consentmanager/v1/collectionpoints/{guid}/token?version=&state=`.
pub async fn collection_point_token(
    State(state): State<Shared>,
    Path(guid): Path<String>,
    Query(query): Query<CollectionPointQuery>,
    headers: HeaderMap,
) -> Response {
    let endpoint = Endpoint::CollectionPointToken;
    if let Some(response) = apply_fault(&state, endpoint).await {
        return response;
    }
    let response = {
        let mut st = state.lock().unwrap();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let client = st
            .access_tokens
            .get(bearer)
            .filter(|issued| {
                issued.expires_at > jiff::Timestamp::now() && st.onetrust_clients.contains_key(&issued.client_id)
            })
            .map(|issued| issued.client_id.clone());
        let limited = client.as_deref().and_then(|id| crate::over_minute_limit(&mut st, endpoint, id));
        if client.is_none() {
            StatusCode::UNAUTHORIZED.into_response()
        } else if let Some(limited) = limited {
            limited
        } else if uuid::Uuid::parse_str(&guid).is_err()
            || query.version.is_some_and(|v| v < 1)
            || query.state.as_deref().is_some_and(|s| !["ACTIVE", "DRAFT", "RETIRED", "INACTIVE"].contains(&s))
        {
            StatusCode::BAD_REQUEST.into_response()
        } else {
            let latest = *st.collection_point_versions.entry(guid.clone()).or_insert(1);
            match query.version {
                Some(v) if v > latest => StatusCode::NOT_FOUND.into_response(),
                requested => {
                    let version = requested.unwrap_or(latest);
                    let token = collection_point_jwt(&guid, version, query.state.as_deref(), st.clock());
                    match st.collection_point_body {
                        CollectionPointBody::Object => axum::Json(serde_json::json!({"token": token})).into_response(),
                        CollectionPointBody::JsonString => axum::Json(serde_json::Value::String(token)).into_response(),
                        CollectionPointBody::RawText => ([(header::CONTENT_TYPE, "text/plain")], token).into_response(),
                    }
                }
            }
        }
    };
    finish(&state, endpoint, response)
}

/// Shaped like real collection point tokens: RS512, no `exp`, `iat` as an ISO-8601 string.
fn collection_point_jwt(guid: &str, version: i64, state: Option<&str>, now: jiff::Timestamp) -> String {
    let iat = now.strftime("%Y-%m-%dT%H:%M:%S%.2f").to_string();
    let claims = serde_json::json!({
        "iss": "https://privacyportal.onetrust.example", "processId": guid, "processVersion": version,
        "iat": iat, "moc": "API", "sub": "Email", "policy_uri": "", "tenantId": "b2f4a3e6-9a0f-4c0e-8d6f-3f1c2d4e5a6b",
        "consentType": "CONDITIONALTRIGGER", "doubleOptIn": false, "purposes": [{"id": uuid::Uuid::new_v4().to_string()}],
        "dsDataElements": ["Email"], "state": state.unwrap_or("ACTIVE"), "jti": uuid::Uuid::new_v4().to_string(),
    });
    let token = sign(Algorithm::RS512, &claims);
    crate::issued::remember(&token);
    token
}

fn sign(algorithm: Algorithm, claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_rsa_pem(SIGNING_KEY).expect("the bundled test key is valid PEM");
    jsonwebtoken::encode(&Header::new(algorithm), claims, &key).expect("signing with the bundled test key")
}
