//! Reading client credentials from the Secret a ConsentToken names, in its own namespace only.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use secrecy::SecretString;

use crate::crd::CredentialsSecretRef;
use crate::error::Error;
use crate::provider::Credentials;

/// Credentials already read, by Secret, for as long as that Secret is unchanged.
///
/// Thousands of ConsentTokens share a handful of credentials Secrets; without this every
/// refresh would GET one. Entries hold only the two keys asked for (in types that cannot be
/// printed and are zeroed when dropped), never whole Secrets. They are dropped when the
/// Secret's metadata watch reports a new `resourceVersion` or a deletion, and a reconcile that
/// was triggered by a change asks for that version, so a stale entry is never used after a
/// rotation is seen.
#[derive(Default)]
pub struct CredentialsCache(Mutex<HashMap<SecretKey, Cached>>);

#[derive(Clone, PartialEq, Eq, Hash)]
struct SecretKey {
    namespace: String,
    name: String,
}

struct Cached {
    version: String,
    /// By (client id key, client secret key): objects may read different keys of one Secret.
    by_keys: HashMap<(String, String), Credentials>,
}

impl CredentialsCache {
    /// The credentials `reference` names, from the cache when it holds them for `version` (or
    /// for any version when `version` is `None`), else with one GET.
    pub async fn get(
        &self,
        client: &Client,
        namespace: &str,
        reference: &CredentialsSecretRef,
        version: Option<&str>,
    ) -> Result<Credentials, Error> {
        if let Some(credentials) = self.lookup(namespace, reference, version) {
            return Ok(credentials);
        }
        let credentials = read(client, namespace, reference).await?;
        self.store(namespace, reference, &credentials);
        Ok(credentials)
    }

    fn lookup(&self, namespace: &str, reference: &CredentialsSecretRef, version: Option<&str>) -> Option<Credentials> {
        let key = SecretKey { namespace: namespace.to_owned(), name: reference.name.clone() };
        let entries = self.lock();
        let cached = entries.get(&key).filter(|cached| version.is_none_or(|v| v == cached.version))?;
        cached.by_keys.get(&(reference.client_id_key.clone(), reference.client_secret_key.clone())).cloned()
    }

    fn store(&self, namespace: &str, reference: &CredentialsSecretRef, credentials: &Credentials) {
        let key = SecretKey { namespace: namespace.to_owned(), name: reference.name.clone() };
        let mut entries = self.lock();
        let entry = entries
            .entry(key)
            .or_insert_with(|| Cached { version: credentials.version.clone(), by_keys: HashMap::new() });
        if entry.version != credentials.version {
            *entry = Cached { version: credentials.version.clone(), by_keys: HashMap::new() };
        }
        let keys = (reference.client_id_key.clone(), reference.client_secret_key.clone());
        entry.by_keys.insert(keys, credentials.clone());
    }

    /// The Secret is now at `version` (`None`: deleted); drops what was read from another version.
    pub fn observe(&self, namespace: &str, name: &str, version: Option<&str>) {
        let key = SecretKey { namespace: namespace.to_owned(), name: name.to_owned() };
        let mut entries = self.lock();
        if entries.get(&key).is_some_and(|cached| version != Some(cached.version.as_str())) {
            entries.remove(&key);
        }
    }

    /// Forgets everything: the watch is listing again, and a Secret deleted while it was
    /// disconnected would show no deletion.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, Cached>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads the credentials with one GET.
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
    fn cached_credentials_are_dropped_when_the_secret_changes_or_goes() {
        let cache = CredentialsCache::default();
        let mut v1 = secret(&[("client_id", "id"), ("client_secret", "one")]);
        v1.metadata.resource_version = Some("1".into());
        cache.store("ns", &reference(), &from_secret(&v1, &reference()).unwrap());
        let hit = cache.lookup("ns", &reference(), None).unwrap();
        assert_eq!(hit.client_secret.expose_secret(), "one");
        assert!(cache.lookup("other", &reference(), None).is_none(), "per namespace");
        // A reconcile triggered by a change to version 2 does not take version 1.
        assert!(cache.lookup("ns", &reference(), Some("2")).is_none());
        assert!(cache.lookup("ns", &reference(), Some("1")).is_some());
        // The watch reporting the same version keeps it; another version or a deletion drops it.
        cache.observe("ns", "creds", Some("1"));
        assert!(cache.lookup("ns", &reference(), None).is_some());
        cache.observe("ns", "creds", Some("2"));
        assert!(cache.lookup("ns", &reference(), None).is_none());
        cache.store("ns", &reference(), &from_secret(&v1, &reference()).unwrap());
        cache.observe("ns", "creds", None);
        assert!(cache.lookup("ns", &reference(), None).is_none());
        // A new list of the watch starts from nothing.
        cache.store("ns", &reference(), &from_secret(&v1, &reference()).unwrap());
        cache.clear();
        assert!(cache.lookup("ns", &reference(), None).is_none());
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
