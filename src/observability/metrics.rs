//! Prometheus metrics. Labels carry only resource names, provider names, endpoint names,
//! status classes and failure reasons: never a token, a credential or a customer id.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::observability::clock_skew::ClockSkew;
use crate::observability::object_metrics::ObjectMetrics;
use crate::observability::process_metrics::ProcessMetrics;
use crate::observability::provider_metrics::ProviderReadiness;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub provider: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub provider: &'static str,
    pub endpoint: &'static str,
    /// `2xx`, `4xx`, `429`, `5xx` or `error` (no HTTP answer).
    pub status_class: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    /// The per-ConsentToken series (ready, expiry, next and last refresh, failures).
    pub objects: Arc<ObjectMetrics>,
    /// One series per ConsentProvider and ClusterConsentProvider: Ready, with its reason.
    pub providers: Arc<ProviderReadiness>,
    /// 1 while this replica leads (or runs without leader election).
    pub leader: Gauge,
    pub undecodable: Family<KindLabels, Gauge>,
    pub refreshes: Family<ProviderLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub upstream_duration: Family<UpstreamLabels, Histogram>,
    pub rate_limit_waits: Family<ProviderLabels, Counter>,
    /// Requests not sent because their namespace had used its share of the account's budget.
    pub quota_share_holds: Family<ProviderLabels, Counter>,
    /// How far each provider's clock is from this node's.
    pub clock_skew: ClockSkew,
    pub reconcile_duration: Histogram,
    /// ConsentTokens due now and waiting for one of the `--concurrency` workers.
    pub reconciles_queued: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        // Collectors name their series in full: the per-object ones, and process_* as every
        // Prometheus client library calls them.
        let objects = Arc::new(ObjectMetrics::default());
        root.register_collector(Box::new(objects.clone()));
        root.register_collector(Box::new(ProcessMetrics));
        let registry = root.sub_registry_with_prefix("consent_token");
        registry.register(
            "build",
            "The operator's version and the source revision it was built from (value always 1)",
            prometheus_client::metrics::info::Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", env!("CONSENT_TOKEN_REVISION")),
            ]),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica is the one that writes (holds the Lease)", leader.clone());
        let undecodable = Family::<KindLabels, Gauge>::default();
        registry.register(
            "undecodable_objects",
            "Watched objects skipped because they do not decode as this version's types (the log names each)",
            undecodable.clone(),
        );
        let refreshes = Family::<ProviderLabels, Counter>::default();
        registry.register("refreshes", "Tokens fetched and written", refreshes.clone());
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register("refresh_failures", "Failed refresh attempts by reason", failures.clone());
        let upstream_duration = Family::<UpstreamLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        registry.register(
            "upstream_request_duration_seconds",
            "Latency of requests to the token providers",
            upstream_duration.clone(),
        );
        let rate_limit_waits = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "rate_limit_waits",
            "Requests not sent because the provider asked to wait (HTTP 429 Retry-After)",
            rate_limit_waits.clone(),
        );
        let quota_share_holds = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "quota_share_holds",
            "Requests not sent because their namespace had used its share of the provider account's rate limit, which other namespaces use too",
            quota_share_holds.clone(),
        );
        let clock_skew = ClockSkew::default();
        registry.register(
            "provider_clock_ahead_seconds",
            "How far the provider's clock was ahead of this node's (negative: behind) at the last token fetched from it, from the token's iat",
            clock_skew.gauge.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register("reconcile_duration_seconds", "Duration of one reconcile", reconcile_duration.clone());
        let providers = Arc::new(ProviderReadiness::default());
        registry.register(
            "provider_ready",
            "1 while a ConsentProvider or ClusterConsentProvider is Ready; reason is its Ready condition's (set by the leading replica)",
            providers.family.clone(),
        );
        let reconciles_queued = Gauge::default();
        registry.register(
            "reconciles_queued",
            "ConsentTokens due now and waiting for a worker (--concurrency); a lasting high value means more work than workers",
            reconciles_queued.clone(),
        );
        Self {
            registry: root,
            objects,
            providers,
            leader,
            undecodable,
            refreshes,
            failures,
            upstream_duration,
            rate_limit_waits,
            quota_share_holds,
            clock_skew,
            reconcile_duration,
            reconciles_queued,
        }
    }
}

impl Metrics {
    pub fn observe_upstream(
        &self,
        provider: &'static str,
        endpoint: &'static str,
        status: Option<u16>,
        took: Duration,
    ) {
        let status_class = match status {
            None => "error",
            Some(429) => "429",
            Some(200..=299) => "2xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            Some(_) => "other",
        };
        self.upstream_duration
            .get_or_create(&UpstreamLabels { provider, endpoint, status_class })
            .observe(took.as_secs_f64());
    }

    /// Removes every per-object series of a deleted ConsentToken.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.objects.forget(namespace, name);
    }

    /// Drops every object's series.
    pub fn forget_all(&self) {
        self.objects.clear();
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_info_is_exported() {
        let text = Metrics::default().encode().unwrap();
        assert!(
            text.contains(&format!(
                "consent_token_build_info{{version=\"{}\",revision=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                env!("CONSENT_TOKEN_REVISION")
            )),
            "{text}"
        );
    }
}
