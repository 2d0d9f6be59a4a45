//! The per-ConsentToken series: one record per object, turned into series when Prometheus
//! scrapes. One record instead of a family entry per series keeps memory flat (the labels are
//! stored once), and forgetting an object is one removal whatever its labels were, so a
//! changed `reason` or `provider` never leaves a stale series behind.
//!
//! Labels are the object's namespace and name, its provider kind and (on `ready`) the Ready
//! reason: never a token, a credential or a customer id.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// What the series of one ConsentToken say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectFacts {
    pub provider: &'static str,
    pub ready: bool,
    /// The Ready condition's reason (`TokenValid`, `RateLimited`, ...).
    pub reason: Cow<'static, str>,
    /// Unix seconds; `None` for tokens without an expiry (OneTrust's).
    pub expires_at: Option<i64>,
    pub next_refresh: i64,
    /// Unix seconds of the last successful refresh; `None` before the first.
    pub last_refresh: Option<i64>,
    pub consecutive_failures: i32,
    /// The reason of the last failure while failures go on (`status.lastFailure`), else empty.
    pub failure_reason: Cow<'static, str>,
}

#[derive(Debug, Default)]
pub struct ObjectMetrics {
    /// By namespace and name. The facts are boxed: a table keeps room for up to twice as many
    /// entries as it holds, and a slot of a few words wastes less than one of the whole facts
    /// (about 1 MB at 10,000 objects).
    objects: Mutex<HashMap<NamespaceAndName, Box<ObjectFacts>>>,
}

type NamespaceAndName = (Box<str>, Box<str>);

/// A gauge per object: its name, help, value (`None` leaves the object out) and, for the series
/// that carry one, the `reason` label.
struct Series {
    name: &'static str,
    help: &'static str,
    value: fn(&ObjectFacts) -> Option<i64>,
    reason: Option<fn(&ObjectFacts) -> &str>,
}

const SERIES: [Series; 5] = [
    Series {
        name: "consent_token_ready",
        help: "1 while the target Secret holds a token that has not expired; reason is the Ready condition's",
        value: |f| Some(i64::from(f.ready)),
        reason: Some(ready_reason),
    },
    Series {
        name: "consent_token_consecutive_failures",
        help: "Failed attempts since the last successful refresh; reason is the last failure's",
        value: |f| Some(i64::from(f.consecutive_failures)),
        reason: Some(failure_reason),
    },
    Series {
        name: "consent_token_expiry_timestamp_seconds",
        help: "When the token in the target Secret expires (Unix seconds); absent for tokens without expiry",
        value: |f| f.expires_at,
        reason: None,
    },
    Series {
        name: "consent_token_next_refresh_timestamp_seconds",
        help: "When the operator will next fetch the token, or retry (Unix seconds)",
        value: |f| Some(f.next_refresh),
        reason: None,
    },
    Series {
        name: "consent_token_last_refresh_timestamp_seconds",
        help: "When the token in the target Secret was fetched (Unix seconds); absent before the first",
        value: |f| f.last_refresh,
        reason: None,
    },
];

fn ready_reason(facts: &ObjectFacts) -> &str {
    &facts.reason
}

fn failure_reason(facts: &ObjectFacts) -> &str {
    &facts.failure_reason
}

impl ObjectMetrics {
    pub fn set(&self, namespace: &str, name: &str, facts: ObjectFacts) {
        let mut objects = self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match objects.entry((namespace.into(), name.into())) {
            Entry::Occupied(mut kept) => **kept.get_mut() = facts,
            Entry::Vacant(slot) => {
                slot.insert(Box::new(facts));
            }
        }
    }

    pub fn forget(&self, namespace: &str, name: &str) {
        let mut objects = self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        objects.remove(&(namespace.into(), name.into()));
    }

    /// Drops every object's series (this replica stopped leading: they would go stale, and a
    /// stale expiry raises a false alert).
    pub fn clear(&self) {
        let mut objects = self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *objects = HashMap::new();
    }
}

impl Collector for ObjectMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let objects = self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for series in &SERIES {
            let mut family = encoder.encode_descriptor(
                series.name,
                series.help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for ((namespace, name), facts) in objects.iter() {
                let Some(value) = (series.value)(facts) else { continue };
                let reason = series.reason.map(|reason| reason(facts));
                let labels = [
                    ("namespace", &**namespace),
                    ("name", &**name),
                    ("provider", facts.provider),
                    ("reason", reason.unwrap_or_default()),
                ];
                // The reason label only on the series that carry one.
                let labels = &labels[..if reason.is_some() { 4 } else { 3 }];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn encode(metrics: ObjectMetrics) -> (String, std::sync::Arc<ObjectMetrics>) {
        let metrics = std::sync::Arc::new(metrics);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        (out, metrics)
    }

    fn facts(reason: &str) -> ObjectFacts {
        ObjectFacts {
            provider: "FDX",
            ready: reason == "TokenValid",
            reason: Cow::Owned(reason.to_owned()),
            expires_at: Some(1_700_000_300),
            next_refresh: 1_700_000_150,
            last_refresh: Some(1_700_000_000),
            consecutive_failures: 0,
            failure_reason: Cow::Borrowed(""),
        }
    }

    #[test]
    fn one_series_of_each_per_object_and_a_new_reason_replaces_the_old() {
        let metrics = ObjectMetrics::default();
        metrics.set("team", "alice", facts("TokenValid"));
        metrics.set(
            "team",
            "alice",
            ObjectFacts { consecutive_failures: 2, failure_reason: "RateLimited".into(), ..facts("RateLimited") },
        );
        metrics.set("team", "bob", ObjectFacts { expires_at: None, last_refresh: None, ..facts("Pending") });
        let (text, metrics) = encode(metrics);
        assert!(
            text.contains(
                r#"consent_token_ready{namespace="team",name="alice",provider="FDX",reason="RateLimited"} 0"#
            )
        );
        assert!(!text.contains(r#"reason="TokenValid""#), "{text}");
        assert!(text.contains(
            r#"consent_token_expiry_timestamp_seconds{namespace="team",name="alice",provider="FDX"} 1700000300"#
        ));
        assert!(!text.contains(r#"consent_token_expiry_timestamp_seconds{namespace="team",name="bob""#));
        assert!(!text.contains(r#"consent_token_last_refresh_timestamp_seconds{namespace="team",name="bob""#));
        assert!(text.contains(
            r#"consent_token_consecutive_failures{namespace="team",name="alice",provider="FDX",reason="RateLimited"} 2"#
        ));
        assert!(
            text.contains(
                r#"consent_token_consecutive_failures{namespace="team",name="bob",provider="FDX",reason=""} 0"#
            )
        );

        metrics.forget("team", "alice");
        let mut out = String::new();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics.clone()));
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(!out.contains("alice") && out.contains("bob"), "{out}");
    }
}
