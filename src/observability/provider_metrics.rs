//! `consent_token_provider_ready`: one series per ConsentProvider and ClusterConsentProvider, 1
//! while it is Ready, with its Ready reason, so that one broken shared provider is one alert that
//! names it (`ConsentTokenProviderNotReady`), not only one per ConsentToken that uses it.
//!
//! The leading replica's provider status pass sets them. A provider's series goes with the
//! provider, and every series goes when this replica stops leading: the new leader's are the
//! current ones then.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderReadyLabels {
    /// `ConsentProvider` or `ClusterConsentProvider`.
    pub kind: &'static str,
    /// The ConsentProvider's namespace; empty for a ClusterConsentProvider.
    pub namespace: String,
    pub name: String,
    /// `OneTrust` or `FDX`; empty while the spec names neither.
    pub provider: &'static str,
    /// The Ready condition's reason.
    pub reason: &'static str,
}

/// Which provider object a series is for: (kind, namespace, name).
type ObjectKey = (&'static str, String, String);

#[derive(Default)]
pub struct ProviderReadiness {
    pub family: Family<ProviderReadyLabels, Gauge>,
    /// Each provider's current label set, to drop it when the reason changes.
    current: Mutex<HashMap<ObjectKey, ProviderReadyLabels>>,
}

impl ProviderReadiness {
    pub fn set(&self, labels: ProviderReadyLabels, ready: bool) {
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (labels.kind, labels.namespace.clone(), labels.name.clone());
        if let Some(old) = current.get(&key).filter(|old| **old != labels) {
            self.family.remove(old);
        }
        self.family.get_or_create(&labels).set(i64::from(ready));
        current.insert(key, labels);
    }

    /// Keeps the series of the providers for which `keep(kind, namespace, name)` holds.
    pub fn retain(&self, keep: impl Fn(&'static str, &str, &str) -> bool) {
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        current.retain(|(kind, namespace, name), labels| {
            let kept = keep(kind, namespace, name);
            if !kept {
                self.family.remove(labels);
            }
            kept
        });
    }

    pub fn clear(&self) {
        self.retain(|_, _, _| false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str, reason: &'static str) -> ProviderReadyLabels {
        ProviderReadyLabels {
            kind: "ClusterConsentProvider",
            namespace: String::new(),
            name: name.into(),
            provider: "FDX",
            reason,
        }
    }

    fn encoded(readiness: &ProviderReadiness) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("provider_ready", "", readiness.family.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn a_provider_has_one_series_whose_reason_follows_it_and_which_goes_with_it() {
        let readiness = ProviderReadiness::default();
        readiness.set(labels("mx", "CredentialsValid"), true);
        readiness.set(labels("other", "CredentialsValid"), true);
        readiness.set(labels("mx", "Unauthorized"), false);
        let text = encoded(&readiness);
        assert!(text.contains(r#"name="mx",provider="FDX",reason="Unauthorized"} 0"#), "{text}");
        assert!(
            !text.contains(r#"name="mx",provider="FDX",reason="CredentialsValid""#),
            "the old reason's series is gone: {text}"
        );
        readiness.retain(|_, _, name| name != "mx");
        let text = encoded(&readiness);
        assert!(!text.contains(r#"name="mx""#) && text.contains(r#"name="other""#), "{text}");
        readiness.clear();
        assert!(!encoded(&readiness).contains("name="), "no series once this replica stops leading");
    }
}
