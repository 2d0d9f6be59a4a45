//! One object that does not decode never blinds a watch.
//!
//! The API server hands out a list or watch event as one document; decoded as the operator's
//! types, one object that does not fit them (stored before a schema change, written by a newer
//! version before a rollback, or through a hand-edited CRD) would fail the whole list, and the
//! watch would retry the same failure for ever while every other object went unserved. So the
//! watches decode each object on its own ([`Guarded`]): one that does not decode is reported
//! (a warning naming it and the field that did not decode, never the field's value, which may
//! be a customer id; and the `consent_token_undecodable_objects` gauge) and skipped. If an
//! earlier version of it decoded, that version goes on being served, so a good token is not
//! dropped for an edit the operator cannot read; its deletion is still seen. Namespaced objects
//! are also handed on as [`UndecodableReport`]s, for a Warning Event on each (see
//! `runtime::undecodable_events`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Mutex;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher::{self, Event};
use prometheus_client::metrics::gauge::Gauge;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::basics::object_id::ObjectId;

/// An object as a watch delivers it: decoded, or not.
#[derive(Clone, Debug)]
pub enum Guarded<K> {
    Decoded(K),
    // Boxed: rare, and a list holds one per object while it is decoded.
    Undecodable(Box<Undecodable>),
}

/// What is known of an object that did not decode.
#[derive(Clone, Debug, Default)]
pub struct Undecodable {
    pub metadata: ObjectMeta,
    /// Where it did not decode (`spec.target.secretName`): the path, never the value.
    pub path: String,
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Guarded<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        match serde_path_to_error::deserialize::<_, K>(&value) {
            Ok(object) => Ok(Self::Decoded(object)),
            Err(err) => {
                let metadata = value.get("metadata").and_then(|m| ObjectMeta::deserialize(m).ok()).unwrap_or_default();
                Ok(Self::Undecodable(Box::new(Undecodable { metadata, path: err.path().to_string() })))
            }
        }
    }
}

impl<K: Resource> Resource for Guarded<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Decoded(object) => object.meta(),
            Self::Undecodable(undecodable) => &undecodable.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Decoded(object) => object.meta_mut(),
            Self::Undecodable(undecodable) => &mut undecodable.metadata,
        }
    }
}

/// An object that did not decode, as an Event names it, and where it did not decode.
#[derive(Clone, Debug)]
pub struct UndecodableReport {
    pub object: ObjectReference,
    pub path: String,
}

/// The objects of one kind that did not decode, for one watch: reported once each, counted in
/// the gauge while they stay so.
pub struct UndecodableObjects {
    kind: &'static str,
    seen: Mutex<HashSet<ObjectId>>,
    gauge: Gauge,
    /// Where reports go for an Event; full, a report is dropped (the log and gauge have it).
    reports: Option<tokio::sync::mpsc::Sender<UndecodableReport>>,
}

impl UndecodableObjects {
    pub fn new(kind: &'static str, gauge: Gauge) -> Self {
        Self { kind, seen: Mutex::default(), gauge, reports: None }
    }

    /// Also hands each object on to `reports`, the first time it is seen undecodable.
    pub fn reporting_to(self, reports: tokio::sync::mpsc::Sender<UndecodableReport>) -> Self {
        Self { reports: Some(reports), ..self }
    }

    /// The event the caches get for `event` (`None`: nothing), given the last version of an
    /// object that decoded, if the caches hold one.
    pub fn guard<K: Resource<DynamicType = ()>>(
        &self,
        event: Event<Guarded<K>>,
        last_good: impl Fn(&ObjectMeta) -> Option<K>,
    ) -> Option<Event<K>> {
        match event {
            Event::Init => Some(Event::Init),
            Event::InitDone => Some(Event::InitDone),
            Event::Apply(Guarded::Decoded(object)) => Some(Event::Apply(self.decoded(object))),
            Event::InitApply(Guarded::Decoded(object)) => Some(Event::InitApply(self.decoded(object))),
            Event::Delete(Guarded::Decoded(object)) => Some(Event::Delete(self.decoded(object))),
            Event::Apply(Guarded::Undecodable(bad)) => {
                self.report(&bad, &K::api_version(&()));
                last_good(&bad.metadata).map(Event::Apply)
            }
            Event::InitApply(Guarded::Undecodable(bad)) => {
                self.report(&bad, &K::api_version(&()));
                last_good(&bad.metadata).map(Event::InitApply)
            }
            Event::Delete(Guarded::Undecodable(bad)) => {
                self.forget(&bad.metadata);
                last_good(&bad.metadata).map(Event::Delete)
            }
        }
    }

    /// A watch's events with each undecodable object handled by [`Self::guard`].
    pub fn skip<K: Resource<DynamicType = ()>>(
        self,
        events: impl Stream<Item = Result<Event<Guarded<K>>, watcher::Error>>,
        last_good: impl Fn(&ObjectMeta) -> Option<K>,
    ) -> impl Stream<Item = Result<Event<K>, watcher::Error>> {
        events.filter_map(move |event| {
            let event = event.map(|e| self.guard(e, &last_good)).transpose();
            std::future::ready(event)
        })
    }

    /// The object decoded (again): no longer counted.
    fn decoded<K: Resource>(&self, object: K) -> K {
        self.forget(object.meta());
        object
    }

    fn forget(&self, metadata: &ObjectMeta) {
        let id = ObjectId::of(metadata.uid.as_deref().unwrap_or_default());
        let mut seen = self.lock();
        if seen.remove(&id) {
            self.gauge.dec();
        }
    }

    /// Warns the first time an object is seen undecodable (again after it decoded).
    fn report(&self, bad: &Undecodable, api_version: &str) {
        let id = ObjectId::of(bad.metadata.uid.as_deref().unwrap_or_default());
        let mut seen = self.lock();
        if seen.insert(id) {
            // Shared by the watches of every namespace: each counts its own in and out.
            self.gauge.inc();
            tracing::warn!(
                kind = self.kind,
                namespace = bad.metadata.namespace.as_deref().unwrap_or_default(),
                name = bad.metadata.name.as_deref().unwrap_or_default(),
                field = %bad.path,
                "an object does not decode; skipped (its last version that decoded, if any, is still served)"
            );
            if let Some(reports) = &self.reports {
                let object = ObjectReference {
                    api_version: Some(api_version.to_owned()),
                    kind: Some(self.kind.to_owned()),
                    namespace: bad.metadata.namespace.clone(),
                    name: bad.metadata.name.clone(),
                    uid: bad.metadata.uid.clone(),
                    resource_version: bad.metadata.resource_version.clone(),
                    field_path: None,
                };
                let _ = reports.try_send(UndecodableReport { object, path: bad.path.clone() });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ObjectId>> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::ConsentToken;

    fn decode(json: serde_json::Value) -> Guarded<ConsentToken> {
        serde_json::from_value(json).unwrap()
    }

    fn good(name: &str, uid: &str) -> serde_json::Value {
        serde_json::to_value({
            let mut ct = crate::fixtures::fdx_consent_token("https://bank.example");
            ct.metadata.name = Some(name.into());
            ct.metadata.uid = Some(uid.into());
            ct
        })
        .unwrap()
    }

    fn bad(name: &str, uid: &str) -> serde_json::Value {
        let mut json = good(name, uid);
        json["spec"]["target"]["secretName"] = serde_json::json!({"customer": "cust-secret-0042"});
        json
    }

    #[test]
    fn a_list_with_one_bad_object_decodes_the_others_and_names_the_bad_ones_field_not_its_value() {
        let list: Vec<Guarded<ConsentToken>> =
            serde_json::from_value(serde_json::json!([good("a", "1"), bad("b", "2"), good("c", "3")])).unwrap();
        assert!(matches!(&list[0], Guarded::Decoded(ct) if ct.metadata.name.as_deref() == Some("a")));
        let Guarded::Undecodable(b) = &list[1] else { panic!("b decoded") };
        assert_eq!(b.metadata.name.as_deref(), Some("b"));
        assert_eq!(b.path, "spec.target.secretName");
        assert!(!format!("{b:?}").contains("cust-secret-0042"), "the value is not kept");
        assert!(matches!(&list[2], Guarded::Decoded(_)));
    }

    #[test]
    fn a_bad_object_is_skipped_or_served_in_its_last_good_version_and_counted_while_bad() {
        let gauge = Gauge::default();
        let objects = UndecodableObjects::new("ConsentToken", gauge.clone());
        let last_good = |ct: ConsentToken| move |_: &ObjectMeta| Some(ct.clone());
        let none = |_: &ObjectMeta| None::<ConsentToken>;
        assert!(objects.guard(Event::Apply(decode(bad("b", "2"))), none).is_none(), "never decoded: skipped");
        assert_eq!(gauge.get(), 1);
        let Guarded::Decoded(earlier) = decode(good("b", "2")) else { panic!() };
        let served = objects.guard(Event::InitApply(decode(bad("b", "2"))), last_good(earlier.clone()));
        assert!(matches!(served, Some(Event::InitApply(ct)) if ct == earlier), "its last good version");
        assert_eq!(gauge.get(), 1, "counted once");
        assert!(matches!(objects.guard(Event::Apply(decode(good("b", "2"))), none), Some(Event::Apply(_))));
        assert_eq!(gauge.get(), 0, "decodes again");
        objects.guard(Event::Apply(decode(bad("b", "2"))), none);
        let deleted = objects.guard(Event::Delete(decode(bad("b", "2"))), last_good(earlier.clone()));
        assert!(matches!(deleted, Some(Event::Delete(ct)) if ct == earlier), "the caches forget it");
        assert_eq!(gauge.get(), 0);
    }
}
