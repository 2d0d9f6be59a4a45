//! Builders shared by the unit tests: fixed times, token records, specs and ConsentTokens.

use jiff::Timestamp;

use crate::api::crd::{
    CollectionPoint, ConsentToken, ConsentTokenSpec, CredentialsSecretRef, FdxSource, OneTrustSource,
};
use crate::reconcile::token_record::TokenRecord;

/// A collection point GUID in the documented shape.
pub const GUID: &str = "123e4567-e89b-12d3-a456-426614174000";
/// The customer id of the MX document's sample token.
pub const CUSTOMER_ID: &str = "fN7SsIMfJvJJcNjKBmB6Kg";

/// `s` seconds after a fixed instant (2027-01-15T08:00:00Z).
pub fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

/// A 300-second token fetched at `t(0)`, due at `t(150)`, from generation 1 and credentials
/// version 5. Override fields with struct update syntax.
pub fn record() -> TokenRecord {
    TokenRecord {
        fingerprint: "sha256:0011223344556677".into(),
        refreshed_at: t(0),
        expires_at: Some(t(300)),
        next_refresh_at: t(150),
        generation: 1,
        credentials_version: "5".into(),
        collection_point_version: None,
        request: Some("sha256:aaaaaaaaaaaaaaaa".into()),
    }
}

pub fn credentials_ref(name: &str) -> CredentialsSecretRef {
    CredentialsSecretRef {
        name: name.into(),
        client_id_key: "client_id".into(),
        client_secret_key: "client_secret".into(),
    }
}

pub fn onetrust_source(hostname: &str) -> OneTrustSource {
    OneTrustSource {
        hostname: hostname.into(),
        collection_point: CollectionPoint { guid: GUID.into(), version: None, state: None },
        credentials_secret_ref: credentials_ref("ot"),
    }
}

pub fn fdx_source(base_url: &str) -> FdxSource {
    FdxSource {
        base_url: base_url.into(),
        api_version: "v4".into(),
        customer_id: CUSTOMER_ID.into(),
        credentials_secret_ref: credentials_ref("mx"),
    }
}

/// ConsentToken `team/web` (uid `uid-1`, generation 1) for an MX / FDX customer.
pub fn fdx_consent_token(base_url: &str) -> ConsentToken {
    let spec = ConsentTokenSpec {
        provider_ref: None,
        collection_point: None,
        customer_id: None,
        one_trust: None,
        fdx: Some(Box::new(fdx_source(base_url))),
        target: Default::default(),
        refresh: Default::default(),
    };
    let mut ct = ConsentToken::new("web", spec);
    ct.metadata.namespace = Some("team".into());
    ct.metadata.uid = Some("uid-1".into());
    ct.metadata.generation = Some(1);
    ct
}
