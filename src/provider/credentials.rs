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
use crate::api::hosts::{ALLOWED_HOSTS_ANNOTATION, HostPatterns, host_port};
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
/// Where credentials would be sent, and who asks: a refusal names both.
#[derive(Clone, Copy)]
pub struct Destination<'a> {
    pub host: &'a str,
    pub port: u16,
    /// "ConsentToken team/app", "ClusterConsentProvider mx".
    pub asked_by: &'a str,
}

impl Destination<'_> {
    /// The refusal to send `secret` here; `listed`: what its marking allows, if it has one.
    fn refused(self, secret: &str, listed: Option<String>) -> Error {
        Error::CredentialsNotAllowed {
            asked_by: self.asked_by.to_owned(),
            secret: secret.to_owned(),
            host: host_port(self.host, self.port),
            listed,
        }
    }
}

#[derive(Default)]
pub struct CredentialsCache {
    entries: Mutex<HashMap<SecretKey, Cached>>,
    /// Secrets being read now: a read that returns another version than the last one seen
    /// meanwhile is used once but not cached (no newer version is ever replaced by an older one).
    reading: Mutex<HashMap<SecretKey, Reading>>,
}

/// The reads of one Secret under way, and the last version seen while they were: reported by
/// the watch, or returned by one of them that ended. Shared by concurrent reads, so that a
/// second read starting does not wipe what the first one must compare with.
#[derive(Default)]
struct Reading {
    readers: u32,
    /// `Some("")`: deleted.
    last_seen: Option<String>,
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
    /// Refused unless the Secret allows `host`; `asked_by` ("ConsentToken team/app") is named
    /// in that refusal.
    pub async fn get(
        &self,
        client: &Client,
        namespace: &str,
        reference: &CredentialsSecretRef,
        version: Option<&str>,
        to: Destination<'_>,
    ) -> Result<Credentials, Error> {
        if let Some(credentials) = self.lookup(namespace, reference, version) {
            allowed_for(&credentials.allowed_hosts, &reference.name, to)?;
            return Ok(credentials);
        }
        self.begin_read(namespace, reference);
        let read = read(client, namespace, reference, to).await;
        self.end_read(namespace, reference, read.as_ref().ok());
        read
    }

    /// A read of the Secret starts: from now on the watch notes the versions it sees of it.
    fn begin_read(&self, namespace: &str, reference: &CredentialsSecretRef) {
        let key = SecretKey { namespace: namespace.to_owned(), name: reference.name.clone() };
        let mut reading = self.reading();
        let entry = reading.entry(key).or_default();
        entry.readers = entry.readers.saturating_add(1);
    }

    /// The read ended (with `credentials`, if it succeeded): they are cached unless another
    /// version was seen meanwhile, by the watch or by a concurrent read that ended first.
    fn end_read(&self, namespace: &str, reference: &CredentialsSecretRef, credentials: Option<&Credentials>) {
        let key = SecretKey { namespace: namespace.to_owned(), name: reference.name.clone() };
        let last_seen = {
            let mut reading = self.reading();
            let Some(entry) = reading.get_mut(&key) else { return };
            let last_seen = entry.last_seen.clone();
            entry.readers = entry.readers.saturating_sub(1);
            if entry.readers == 0 {
                reading.remove(&key);
            } else if let Some(credentials) = credentials
                && last_seen.is_none()
            {
                entry.last_seen = Some(credentials.version.clone());
            }
            last_seen
        };
        if let Some(credentials) = credentials
            && last_seen.is_none_or(|seen| seen == credentials.version)
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
        if let Some(reading) = self.reading().get_mut(&key) {
            // Deleted: no version a read could return matches.
            reading.last_seen = Some(version.unwrap_or_default().to_owned());
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

    fn reading(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, Reading>> {
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
    to: Destination<'_>,
) -> Result<Credentials, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(&reference.name).await?.ok_or_else(|| Error::CredentialsNotFound {
        secret: reference.name.clone(),
        namespace: namespace.to_owned(),
    })?;
    from_secret(&secret, reference, to)
}

/// Takes the two keys out of a Secret whose owner allowed `host`. Surrounding whitespace is
/// dropped: a trailing newline from `echo ... | base64` is the most common way to break a
/// credential.
pub fn from_secret(
    secret: &Secret,
    reference: &CredentialsSecretRef,
    to: Destination<'_>,
) -> Result<Credentials, Error> {
    let marking = secret.metadata.annotations.as_ref().and_then(|a| a.get(ALLOWED_HOSTS_ANNOTATION));
    let Some(marking) = marking else { return Err(to.refused(&reference.name, None)) };
    // A marking that does not parse allows nothing; the message quotes it so its owner sees why.
    let allowed_hosts = HostPatterns::parse(marking).unwrap_or_default();
    if !allowed_hosts.allows_at(to.host, to.port) {
        return Err(to.refused(&reference.name, Some(marking.chars().take(200).collect())));
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

fn allowed_for(allowed: &HostPatterns, secret: &str, to: Destination<'_>) -> Result<(), Error> {
    if allowed.allows_at(to.host, to.port) {
        return Ok(());
    }
    Err(to.refused(secret, Some(allowed.to_string())))
}

#[cfg(test)]
mod tests;
