//! Reading client credentials from the Secret a ConsentToken names, in its own namespace only.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use secrecy::SecretString;

use crate::crd::CredentialsSecretRef;
use crate::error::Error;
use crate::provider::Credentials;

/// Reads the credentials with one GET. The operator does not cache credential Secrets: it
/// reads one when it is about to fetch a token, so no Secret data sits in its memory.
pub async fn read(client: &Client, namespace: &str, reference: &CredentialsSecretRef) -> Result<Credentials, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(&reference.name)
        .await?
        .ok_or_else(|| Error::CredentialsNotFound(reference.name.clone()))?;
    from_secret(&secret, reference)
}

/// Takes the two keys out of a Secret. Surrounding whitespace is dropped: a trailing newline
/// from `echo ... | base64` is the most common way to break a credential.
pub fn from_secret(secret: &Secret, reference: &CredentialsSecretRef) -> Result<Credentials, Error> {
    let value = |key: &str| -> Result<SecretString, Error> {
        let missing = || Error::CredentialsKeyMissing { secret: reference.name.clone(), key: key.to_owned() };
        let bytes = secret.data.as_ref().and_then(|d| d.get(key)).ok_or_else(missing)?;
        let text = std::str::from_utf8(&bytes.0).map_err(|_| missing())?.trim();
        if text.is_empty() {
            return Err(missing());
        }
        Ok(SecretString::from(text.to_owned()))
    };
    Ok(Credentials {
        client_id: value(&reference.client_id_key)?,
        client_secret: value(&reference.client_secret_key)?,
        version: secret.metadata.resource_version.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use secrecy::ExposeSecret;
    use std::collections::BTreeMap;

    fn reference() -> CredentialsSecretRef {
        CredentialsSecretRef { name: "creds".into(), client_id_key: "client_id".into(), client_secret_key: "client_secret".into() }
    }

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect::<BTreeMap<_, _>>()),
            ..Default::default()
        }
    }

    #[test]
    fn trims_whitespace_and_requires_both_keys() {
        let creds = from_secret(&secret(&[("client_id", "id\n"), ("client_secret", " s3cret ")]), &reference()).unwrap();
        assert_eq!(creds.client_id.expose_secret(), "id");
        assert_eq!(creds.client_secret.expose_secret(), "s3cret");
        let err = from_secret(&secret(&[("client_id", "id"), ("client_secret", "  ")]), &reference()).unwrap_err();
        assert_eq!(err.reason(), "CredentialsNotFound");
        assert!(err.to_string().contains("client_secret") && !err.to_string().contains("id\""));
    }
}
