//! The status of ConsentProviders and ClusterConsentProviders: Ready when their credentials are
//! present and allowed for their host and, for OneTrust, an access token was obtained with them
//! (the one all their ConsentTokens then share); and how many ConsentTokens name them.
//!
//! One loop for all of them, every few seconds: providers are few, counting is a look into the
//! credentials index, and a check that reached the provider is repeated only after a minute (or
//! at once when the provider's spec or its credentials Secret changed), so a broken credential
//! does not hammer anyone's OAuth endpoint.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::{broadcast, watch};

use crate::api::crd::{ClusterConsentProvider, ConsentProvider, ConsentProviderStatus, Endpoint};
use crate::cache::credentials_index::CredentialsIndex;
use crate::error::Error;
use crate::observability::provider_metrics::{ProviderReadiness, ProviderReadyLabels};
use crate::provider::credentials::{CredentialsCache, CredentialsChange, Destination};
use crate::provider::lookup::{Catalog, ProviderKey, ProviderObject};
use crate::provider::{Providers, UpstreamPolicy, ValidEndpoint};
use crate::reconcile::api_writes::FIELD_MANAGER;
use crate::runtime::leader::Role;

/// How often statuses are brought up to date.
const PASS_EVERY: Duration = Duration::from_secs(3);
/// How long a check's result stands while nothing changed.
const CHECK_STANDS: Duration = Duration::from_secs(60);

pub struct Writer {
    pub client: Client,
    pub providers: Arc<Providers>,
    pub policy: Arc<UpstreamPolicy>,
    pub credentials: Arc<CredentialsCache>,
    /// Each controller's catalog and the index of its ConsentTokens by provider.
    pub views: Vec<(Catalog, Arc<CredentialsIndex>)>,
    /// Changes to credentials Secrets: a provider whose Secret changed is checked again at once.
    pub changes: broadcast::Receiver<CredentialsChange>,
    /// Statuses are written only while this replica leads.
    pub role: watch::Receiver<Role>,
    /// `consent_token_provider_ready`, set from each pass's statuses while this replica leads.
    pub readiness: Arc<ProviderReadiness>,
}

/// A provider object, whichever its kind.
struct Subject<'a> {
    key: ProviderKey,
    generation: Option<i64>,
    endpoint: Option<Endpoint<'a>>,
    credentials_namespace: String,
    status: Option<&'a ConsentProviderStatus>,
}

struct Check {
    generation: Option<i64>,
    at: Instant,
    result: Result<&'static str, Error>,
    credentials: (String, String),
}

impl Writer {
    /// Runs until dropped, once every cache has listed.
    pub async fn run(mut self, mut listed: watch::Receiver<bool>) {
        let _ = listed.wait_for(|listed| *listed).await.map(drop);
        let mut checks: HashMap<ProviderKey, Check> = HashMap::new();
        let mut every = tokio::time::interval(PASS_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if *self.role.borrow() != Role::Leader {
                        self.readiness.clear();
                        continue;
                    }
                    // Leading may end during a pass: the pass is dropped then (another replica
                    // is about to write).
                    let mut role = self.role.clone();
                    tokio::select! {
                        () = self.pass(&mut checks) => {}
                        _ = role.wait_for(|role| *role == Role::Standby) => {}
                    }
                }
                change = self.changes.recv() => match change {
                    // A provider's credentials changed: check it again on the next pass.
                    Ok(change) => checks.retain(|_, c| c.credentials != (change.namespace.clone(), change.name.clone())),
                    Err(broadcast::error::RecvError::Lagged(_)) => checks.clear(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    async fn pass(&self, checks: &mut HashMap<ProviderKey, Check>) {
        let mut seen = HashSet::new();
        // Each controller's catalog holds every ClusterConsentProvider: each is looked at once.
        let objects: Vec<(ProviderObject, String)> = self
            .views
            .iter()
            .flat_map(|(catalog, _)| {
                catalog.all().into_iter().map(|p| {
                    let namespace = catalog.credentials_namespace(&p);
                    (p, namespace)
                })
            })
            .collect();
        let subjects = objects.iter().map(|(p, credentials_namespace)| Subject {
            key: p.key(),
            generation: p.generation(),
            endpoint: p.endpoint(),
            credentials_namespace: credentials_namespace.clone(),
            status: p.status(),
        });
        for subject in subjects {
            if !seen.insert(subject.key.clone()) {
                continue;
            }
            let fresh = checks
                .get(&subject.key)
                .is_some_and(|c| c.generation == subject.generation && c.at.elapsed() < CHECK_STANDS);
            if !fresh {
                let check = self.check(&subject).await;
                checks.insert(subject.key.clone(), check);
            }
            let Some(check) = checks.get(&subject.key) else { continue };
            let count = self.views.iter().map(|(_, index)| index.count_users_of_provider(&subject.key)).sum::<usize>();
            let count = i32::try_from(count).unwrap_or(i32::MAX);
            let desired = desired_status(subject.status, &subject, &check.result, count, Timestamp::now());
            self.readiness.set(readiness_labels(&subject.key, &check.result, subject.endpoint), check.result.is_ok());
            if subject.status.is_some_and(|s| same(s, &desired)) {
                continue;
            }
            if let Err(err) = self.write(&subject.key, &desired).await {
                tracing::warn!(provider = ?subject.key, error = %err, "provider status write failed; retrying");
            }
        }
        checks.retain(|key, _| seen.contains(key));
        self.readiness.retain(|kind, namespace, name| seen.contains(&provider_key(kind, namespace, name)));
    }

    async fn check(&self, subject: &Subject<'_>) -> Check {
        let credentials = subject
            .endpoint
            .map(|e| (subject.credentials_namespace.clone(), e.credentials_secret_ref().name.clone()))
            .unwrap_or_default();
        let result = async {
            let endpoint = subject
                .endpoint
                .ok_or_else(|| Error::InvalidSpec(crate::api::crd::provider::EXACTLY_ONE_ENDPOINT.into()))?;
            let checked = ValidEndpoint::new(endpoint, &self.policy)?;
            let asked_by = subject.key.to_string();
            let to = Destination { host: checked.host(), port: checked.port(), asked_by: &asked_by };
            let values = self
                .credentials
                .get(&self.client, &subject.credentials_namespace, endpoint.credentials_secret_ref(), None, to)
                .await?;
            // Its share of the account's quota is the provider object's namespace's.
            let namespace = match &subject.key {
                ProviderKey::Namespaced { namespace, .. } => namespace.as_str(),
                ProviderKey::Cluster { .. } => "",
            };
            self.providers.check(&checked, &values, namespace).await
        }
        .await;
        Check { generation: subject.generation, at: Instant::now(), result, credentials }
    }

    async fn write(&self, key: &ProviderKey, status: &ConsentProviderStatus) -> Result<(), kube::Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match key {
            ProviderKey::Namespaced { namespace, name } => {
                let patch = serde_json::json!({
                    "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentProvider", "status": status,
                });
                let api: Api<ConsentProvider> = Api::namespaced(self.client.clone(), namespace);
                api.patch_status(name, &params, &Patch::Apply(patch)).await.map(drop)
            }
            ProviderKey::Cluster { name } => {
                let patch = serde_json::json!({
                    "apiVersion": "consent.dev/v1alpha1", "kind": "ClusterConsentProvider", "status": status,
                });
                let api: Api<ClusterConsentProvider> = Api::all(self.client.clone());
                api.patch_status(name, &params, &Patch::Apply(patch)).await.map(drop)
            }
        }
    }
}

fn readiness_labels(
    key: &ProviderKey,
    result: &Result<&'static str, Error>,
    endpoint: Option<Endpoint<'_>>,
) -> ProviderReadyLabels {
    let (kind, namespace, name) = match key {
        ProviderKey::Namespaced { namespace, name } => ("ConsentProvider", namespace.clone(), name.clone()),
        ProviderKey::Cluster { name } => ("ClusterConsentProvider", String::new(), name.clone()),
    };
    let reason = match result {
        Ok(reason) => reason,
        Err(err) => err.reason(),
    };
    ProviderReadyLabels { kind, namespace, name, provider: endpoint.map_or("", |e| e.kind().as_str()), reason }
}

/// The key of the provider a `consent_token_provider_ready` series is for.
fn provider_key(kind: &str, namespace: &str, name: &str) -> ProviderKey {
    match kind {
        "ConsentProvider" => ProviderKey::Namespaced { namespace: namespace.into(), name: name.into() },
        _ => ProviderKey::Cluster { name: name.into() },
    }
}

/// The status a provider should show. Pure.
fn desired_status(
    previous: Option<&ConsentProviderStatus>,
    subject: &Subject<'_>,
    result: &Result<&'static str, Error>,
    consent_tokens: i32,
    now: Timestamp,
) -> ConsentProviderStatus {
    let (status, reason, message) = match result {
        Ok(reason) => ("True", *reason, ready_message(reason)),
        Err(err) => ("False", err.reason(), err.to_string()),
    };
    let previous_ready =
        previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == "Ready")).filter(|c| c.status == status);
    ConsentProviderStatus {
        observed_generation: subject.generation,
        provider: subject.endpoint.map(|e| e.kind().as_str().to_owned()),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: subject.generation,
            last_transition_time: previous_ready.map(|c| c.last_transition_time.clone()).unwrap_or(Time(now)),
        }],
        consent_tokens,
    }
}

fn ready_message(reason: &str) -> String {
    match reason {
        "AccessTokenObtained" => {
            "an OAuth access token was obtained with the credentials; ConsentTokens share it".into()
        }
        _ => "the credentials Secret is present and allows the provider host".into(),
    }
}

/// Equal apart from the transition time.
fn same(a: &ConsentProviderStatus, b: &ConsentProviderStatus) -> bool {
    let strip = |s: &ConsentProviderStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::{CredentialsSecretRef, FdxEndpoint};

    #[test]
    fn status_says_ready_with_a_reason_and_keeps_the_transition_time() {
        let endpoint = FdxEndpoint {
            base_url: "https://bank.example".into(),
            api_version: "v4".into(),
            credentials_secret_ref: CredentialsSecretRef {
                name: "mx".into(),
                client_id_key: "client_id".into(),
                client_secret_key: "client_secret".into(),
            },
            allowed_customer_ids: Vec::new(),
        };
        let subject = Subject {
            key: ProviderKey::Cluster { name: "mx".into() },
            generation: Some(2),
            endpoint: Some(Endpoint::Fdx(&endpoint)),
            credentials_namespace: "ops".into(),
            status: None,
        };
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let ready = desired_status(None, &subject, &Ok("CredentialsValid"), 7, t0);
        assert_eq!(ready.provider.as_deref(), Some("FDX"));
        assert_eq!((ready.conditions[0].status.as_str(), ready.consent_tokens), ("True", 7));
        let later = desired_status(Some(&ready), &subject, &Ok("CredentialsValid"), 7, t0 + Duration::from_secs(60));
        assert!(same(&ready, &later));
        assert_eq!(later.conditions[0].last_transition_time, Time(t0), "no transition, same time");
        let failed = desired_status(
            Some(&ready),
            &subject,
            &Err(Error::CredentialsNotFound { secret: "mx".into(), namespace: "ops".into() }),
            7,
            t0 + Duration::from_secs(60),
        );
        assert_eq!(failed.conditions[0].reason, "CredentialsNotFound");
        assert!(failed.conditions[0].message.contains("\"ops\""));
        assert_ne!(failed.conditions[0].last_transition_time, Time(t0));
    }
}
