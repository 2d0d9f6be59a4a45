//! Reading client credentials from the Secret a ConsentToken names (in its own namespace, or
//! where its shared provider object keeps them), and only when that Secret says so.
//!
//! Whoever may create a ConsentToken in a namespace must not thereby be able to send any Secret
//! of that namespace to a host of their choosing. So a Secret is used as credentials only when
//! its owner marked it with the provider hosts its values may go to, in the annotation
//! [`ALLOWED_HOSTS_ANNOTATION`] (host patterns: `app-eu.onetrust.com`, `*.mx.com`). The
//! annotation is checked before the values are taken out, and again on every use from the cache.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::{Api, Client, ResourceExt};
use secrecy::SecretString;

use crate::api::crd::CredentialsSecretRef;
use crate::api::hosts::{ALLOWED_HOSTS_ANNOTATION, HostPatterns};
use crate::basics::object_id::ObjectId;
use crate::basics::watch_cache::WatchCache;
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
pub struct CredentialsCache {
    entries: Mutex<HashMap<SecretKey, Cached>>,
    /// Secrets being read now, with the newest version the watch reported meanwhile: a read
    /// that returns an older one is used once but not cached (no newer version is ever replaced
    /// by an older one).
    reading: Mutex<HashMap<SecretKey, Option<String>>>,
}

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
    /// The credentials `reference` names, to be sent to `host`: from the cache when it holds
    /// them for `version` (or for any version when `version` is `None`), else with one GET.
    /// Refused unless the Secret allows `host`.
    pub async fn get(
        &self,
        client: &Client,
        namespace: &str,
        reference: &CredentialsSecretRef,
        version: Option<&str>,
        host: &str,
    ) -> Result<Credentials, Error> {
        if let Some(credentials) = self.lookup(namespace, reference, version) {
            allowed_for(&credentials.allowed_hosts, &reference.name, host)?;
            return Ok(credentials);
        }
        self.begin_read(namespace, reference);
        let read = read(client, namespace, reference, host).await;
        self.end_read(namespace, reference, read.as_ref().ok());
        read
    }

    /// A read of the Secret starts: from now on the watch notes the versions it sees of it.
    fn begin_read(&self, namespace: &str, reference: &CredentialsSecretRef) {
        let key = SecretKey { namespace: namespace.to_owned(), name: reference.name.clone() };
        self.reading().insert(key, None);
    }

    /// The read ended (with `credentials`, if it succeeded): they are cached unless the watch
    /// reported another version meanwhile (a newer one is never replaced by an older one).
    fn end_read(&self, namespace: &str, reference: &CredentialsSecretRef, credentials: Option<&Credentials>) {
        let key = SecretKey { namespace: namespace.to_owned(), name: reference.name.clone() };
        let newer = self.reading().remove(&key).flatten();
        if let Some(credentials) = credentials
            && newer.is_none_or(|seen| seen == credentials.version)
        {
            self.store(namespace, reference, credentials);
        }
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
        if let Some(seen) = self.reading().get_mut(&key) {
            // Deleted: no version a read could return matches.
            *seen = Some(version.unwrap_or_default().to_owned());
        }
        let mut entries = self.lock();
        if entries.get(&key).is_some_and(|cached| version != Some(cached.version.as_str())) {
            entries.remove(&key);
        }
    }

    /// Forgets one Secret's values: the provider refused them (401), so the next attempt reads
    /// the Secret again instead of trusting what was read before.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock().remove(&SecretKey { namespace: namespace.to_owned(), name: name.to_owned() });
    }

    /// Forgets what was read in `namespace` (`None`: everywhere): its watch is listing again,
    /// and a Secret deleted while it was disconnected would show no deletion.
    pub fn clear(&self, namespace: Option<&str>) {
        self.lock().retain(|key, _| namespace.is_some_and(|ns| ns != key.namespace));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, Cached>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reading(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, Option<String>>> {
        self.reading.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A credentials Secret seen to change (`version` `None`: deleted), as the watches of Secrets
/// publish it to every controller and to the provider status writer.
#[derive(Debug, Clone)]
pub struct CredentialsChange {
    pub namespace: String,
    pub name: String,
    pub version: Option<String>,
}

/// Publishes each change of a Secret that is not the operator's to every controller and to the
/// provider status writer: a ClusterConsentProvider's Secret in one namespace serves
/// ConsentTokens in others. Fed by the metadata watches of Secrets.
#[derive(Clone)]
pub struct CredentialsChangeFeed(pub tokio::sync::broadcast::Sender<CredentialsChange>);

impl CredentialsChangeFeed {
    fn publish(&self, secret: &PartialObjectMeta<Secret>, version: Option<String>) {
        let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        // Nobody listening (no controller yet, or shutting down) is not an error.
        let _ = self.0.send(CredentialsChange { namespace, name, version });
    }
}

impl WatchCache<PartialObjectMeta<Secret>> for CredentialsChangeFeed {
    fn apply(&self, secret: &PartialObjectMeta<Secret>) {
        self.publish(secret, secret.resource_version());
    }
    fn delete(&self, secret: &PartialObjectMeta<Secret>) {
        self.publish(secret, None);
    }
}

impl WatchCache<PartialObjectMeta<Secret>> for CredentialsCache {
    fn apply(&self, secret: &PartialObjectMeta<Secret>) {
        self.observe(&secret.namespace().unwrap_or_default(), &secret.name_any(), secret.resource_version().as_deref());
    }
    fn delete(&self, secret: &PartialObjectMeta<Secret>) {
        self.observe(&secret.namespace().unwrap_or_default(), &secret.name_any(), None);
    }
    fn relist_started(&self, scope: Option<&str>) {
        self.clear(scope);
    }
}

/// Credentials Secrets seen to change, per ConsentToken that uses them, until its next reconcile:
/// the watch of credentials Secrets records, the reconcile takes (and then asks the cache for
/// exactly that version).
#[derive(Default)]
pub struct PendingRotations(Mutex<HashMap<ObjectId, String>>);

impl PendingRotations {
    pub fn record(&self, object: ObjectId, version: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(object, version);
    }

    pub fn take(&self, object: ObjectId) -> Option<String> {
        let mut changes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let taken = changes.remove(&object);
        // The first sight of a credentials Secret after a start records a change for each of
        // its users: do not keep room for thousands once they are handled.
        if taken.is_some() && changes.is_empty() {
            changes.shrink_to_fit();
        }
        taken
    }
}

/// Reads the credentials with one GET.
async fn read(
    client: &Client,
    namespace: &str,
    reference: &CredentialsSecretRef,
    host: &str,
) -> Result<Credentials, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(&reference.name).await?.ok_or_else(|| Error::CredentialsNotFound {
        secret: reference.name.clone(),
        namespace: namespace.to_owned(),
    })?;
    from_secret(&secret, reference, host)
}

/// Takes the two keys out of a Secret whose owner allowed `host`. Surrounding whitespace is
/// dropped: a trailing newline from `echo ... | base64` is the most common way to break a
/// credential.
pub fn from_secret(secret: &Secret, reference: &CredentialsSecretRef, host: &str) -> Result<Credentials, Error> {
    let marking = secret.metadata.annotations.as_ref().and_then(|a| a.get(ALLOWED_HOSTS_ANNOTATION));
    let Some(marking) = marking else {
        return Err(Error::CredentialsNotAllowed {
            secret: reference.name.clone(),
            host: host.to_owned(),
            listed: None,
        });
    };
    // A marking that does not parse allows nothing; the message quotes it so its owner sees why.
    let allowed_hosts = HostPatterns::parse(marking).unwrap_or_default();
    if !allowed_hosts.allows(host) {
        let listed = Some(marking.chars().take(200).collect());
        return Err(Error::CredentialsNotAllowed { secret: reference.name.clone(), host: host.to_owned(), listed });
    }
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
        allowed_hosts,
    })
}

fn allowed_for(allowed: &HostPatterns, secret: &str, host: &str) -> Result<(), Error> {
    if allowed.allows(host) {
        return Ok(());
    }
    Err(Error::CredentialsNotAllowed {
        secret: secret.to_owned(),
        host: host.to_owned(),
        listed: Some(allowed.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use secrecy::ExposeSecret;
    use std::collections::BTreeMap;

    fn reference() -> CredentialsSecretRef {
        crate::fixtures::credentials_ref("creds")
    }

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            metadata: kube::api::ObjectMeta {
                annotations: Some(BTreeMap::from([(ALLOWED_HOSTS_ANNOTATION.into(), "*.bank.example".into())])),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const HOST: &str = "api.bank.example";

    #[test]
    fn only_a_secret_marked_for_the_host_gives_credentials() {
        let mut unmarked = secret(&[("client_id", "id"), ("client_secret", "s")]);
        unmarked.metadata.annotations = None;
        let err = from_secret(&unmarked, &reference(), HOST).unwrap_err();
        assert_eq!(err.reason(), "CredentialsNotAllowed");
        let message = err.to_string();
        assert!(
            message.contains("kubectl annotate secret creds consent.dev/allowed-hosts=api.bank.example"),
            "{message}"
        );

        let marked = secret(&[("client_id", "id"), ("client_secret", "s")]);
        let err = from_secret(&marked, &reference(), "attacker.example").unwrap_err();
        assert_eq!(err.reason(), "CredentialsNotAllowed");
        assert!(
            err.to_string().contains("\"*.bank.example\"") && err.to_string().contains("attacker.example"),
            "{err}"
        );
        assert!(!err.to_string().contains("\"s\""), "no value in the message");

        // A marking that does not parse allows nothing and is quoted.
        let mut garbled = marked.clone();
        garbled.metadata.annotations = Some(BTreeMap::from([(ALLOWED_HOSTS_ANNOTATION.into(), "https://x/".into())]));
        assert!(from_secret(&garbled, &reference(), HOST).unwrap_err().to_string().contains("https://x/"));
        assert!(from_secret(&marked, &reference(), HOST).is_ok());
    }

    #[test]
    fn cached_credentials_are_dropped_when_the_secret_changes_or_goes() {
        let cache = CredentialsCache::default();
        let mut v1 = secret(&[("client_id", "id"), ("client_secret", "one")]);
        v1.metadata.resource_version = Some("1".into());
        cache.store("ns", &reference(), &from_secret(&v1, &reference(), HOST).unwrap());
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
        cache.store("ns", &reference(), &from_secret(&v1, &reference(), HOST).unwrap());
        cache.observe("ns", "creds", None);
        assert!(cache.lookup("ns", &reference(), None).is_none());
        // A new list of the watch starts from nothing.
        cache.store("ns", &reference(), &from_secret(&v1, &reference(), HOST).unwrap());
        cache.store("other", &reference(), &from_secret(&v1, &reference(), HOST).unwrap());
        cache.clear(Some("ns"));
        assert!(cache.lookup("ns", &reference(), None).is_none());
        assert!(cache.lookup("other", &reference(), None).is_some(), "another namespace's watch did not relist");
        cache.clear(None);
        assert!(cache.lookup("other", &reference(), None).is_none());
    }

    #[test]
    fn a_read_older_than_what_the_watch_saw_is_not_cached_and_a_401_forgets() {
        let cache = CredentialsCache::default();
        let mut v1 = secret(&[("client_id", "id"), ("client_secret", "one")]);
        v1.metadata.resource_version = Some("1".into());
        let old = from_secret(&v1, &reference(), HOST).unwrap();
        // A read is under way when the watch reports version 2; the read returns version 1.
        cache.begin_read("ns", &reference());
        cache.observe("ns", "creds", Some("2"));
        cache.end_read("ns", &reference(), Some(&old));
        assert!(cache.lookup("ns", &reference(), None).is_none(), "version 1 is not cached over what the watch saw");
        // Deleted while being read: nothing is cached either.
        cache.begin_read("ns", &reference());
        cache.observe("ns", "creds", None);
        cache.end_read("ns", &reference(), Some(&old));
        assert!(cache.lookup("ns", &reference(), None).is_none());
        // Nothing seen meanwhile: cached.
        cache.begin_read("ns", &reference());
        cache.end_read("ns", &reference(), Some(&old));
        assert!(cache.lookup("ns", &reference(), None).is_some());
        // A 401 forgets what was cached.
        cache.forget("ns", "creds");
        assert!(cache.lookup("ns", &reference(), None).is_none());
    }

    #[test]
    fn trims_whitespace_and_requires_both_keys() {
        let creds =
            from_secret(&secret(&[("client_id", "id\n"), ("client_secret", " s3cret ")]), &reference(), HOST).unwrap();
        assert_eq!(creds.client_id.expose_secret(), "id");
        assert_eq!(creds.client_secret.expose_secret(), "s3cret");
        let err =
            from_secret(&secret(&[("client_id", "id"), ("client_secret", "  ")]), &reference(), HOST).unwrap_err();
        assert_eq!(err.reason(), "CredentialsNotFound");
        assert!(err.to_string().contains("client_secret") && !err.to_string().contains("id\""));
    }
}
