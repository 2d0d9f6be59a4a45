//! The credentials cache and the Secret marking, as unit tests.

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
            pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect::<BTreeMap<_, _>>(),
        ),
        metadata: kube::api::ObjectMeta {
            annotations: Some(BTreeMap::from([(ALLOWED_HOSTS_ANNOTATION.into(), "*.bank.example".into())])),
            ..Default::default()
        },
        ..Default::default()
    }
}

const HOST: Destination<'static> =
    Destination { host: "api.bank.example", port: 443, asked_by: "ConsentToken team/app" };

#[test]
fn only_a_secret_marked_for_the_host_gives_credentials() {
    let mut unmarked = secret(&[("client_id", "id"), ("client_secret", "s")]);
    unmarked.metadata.annotations = None;
    let err = from_secret(&unmarked, &reference(), HOST).unwrap_err();
    assert_eq!(err.reason(), "CredentialsNotAllowed");
    let message = err.to_string();
    assert!(message.contains("kubectl annotate secret creds consent.dev/allowed-hosts=api.bank.example"), "{message}");
    assert!(
        message.starts_with("ConsentToken team/app asks") && message.contains("Only if its owner intends this use"),
        "names who asks, and says to allow it only if intended: {message}"
    );

    let marked = secret(&[("client_id", "id"), ("client_secret", "s")]);
    let attacker = Destination { host: "attacker.example", ..HOST };
    let err = from_secret(&marked, &reference(), attacker).unwrap_err();
    assert_eq!(err.reason(), "CredentialsNotAllowed");
    assert!(
        err.to_string().contains("\"*.bank.example\"")
            && err.to_string().contains("attacker.example")
            && err.to_string().contains("ConsentToken team/app")
            && err.to_string().contains("Only if its owner intends this use"),
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
fn a_marking_with_a_port_allows_that_port_only() {
    let mut marked = secret(&[("client_id", "id"), ("client_secret", "s")]);
    marked.metadata.annotations =
        Some(BTreeMap::from([(ALLOWED_HOSTS_ANNOTATION.into(), "api.bank.example:8443".into())]));
    let at = |port| Destination { port, ..HOST };
    assert!(from_secret(&marked, &reference(), at(8443)).is_ok());
    let err = from_secret(&marked, &reference(), at(443)).unwrap_err();
    assert_eq!(err.reason(), "CredentialsNotAllowed");
    let message = from_secret(&marked, &reference(), at(9443)).unwrap_err().to_string();
    assert!(message.contains("add api.bank.example:9443"), "names the port asked for: {message}");
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
fn concurrent_reads_never_cache_a_version_older_than_one_seen() {
    let cache = CredentialsCache::default();
    let version = |rv: &str, secret_value: &str| {
        let mut s = secret(&[("client_id", "id"), ("client_secret", secret_value)]);
        s.metadata.resource_version = Some(rv.into());
        from_secret(&s, &reference(), HOST).unwrap()
    };
    let (v1, v2) = (version("1", "one"), version("2", "two"));
    // A reads; the watch reports version 2; B starts reading (this once wiped what A saw).
    cache.begin_read("ns", &reference());
    cache.observe("ns", "creds", Some("2"));
    cache.begin_read("ns", &reference());
    cache.end_read("ns", &reference(), Some(&v1));
    assert!(cache.lookup("ns", &reference(), None).is_none(), "A's version 1 is older than what the watch saw");
    cache.end_read("ns", &reference(), Some(&v2));
    assert_eq!(cache.lookup("ns", &reference(), None).unwrap().client_secret.expose_secret(), "two");

    // Before the watch says anything: B returns version 2 first, then A returns version 1.
    let cache = CredentialsCache::default();
    cache.begin_read("ns", &reference());
    cache.begin_read("ns", &reference());
    cache.end_read("ns", &reference(), Some(&v2));
    cache.end_read("ns", &reference(), Some(&v1));
    assert_eq!(
        cache.lookup("ns", &reference(), None).unwrap().client_secret.expose_secret(),
        "two",
        "a read that ends later with an older version does not replace a newer one"
    );
    assert!(cache.reading().is_empty(), "nothing kept once no read is under way");
}

#[test]
fn trims_whitespace_and_requires_both_keys() {
    let creds =
        from_secret(&secret(&[("client_id", "id\n"), ("client_secret", " s3cret ")]), &reference(), HOST).unwrap();
    assert_eq!(creds.client_id.expose_secret(), "id");
    assert_eq!(creds.client_secret.expose_secret(), "s3cret");
    let err = from_secret(&secret(&[("client_id", "id"), ("client_secret", "  ")]), &reference(), HOST).unwrap_err();
    assert_eq!(err.reason(), "CredentialsNotFound");
    assert!(err.to_string().contains("client_secret") && !err.to_string().contains("id\""));
}
