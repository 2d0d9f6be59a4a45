//! `kubectl consent check`: whether this cluster serves ConsentTokens to the caller, as
//! `cmctl check api` does for cert-manager. It checks, in order, that the three APIs are served,
//! that a replica of the operator leads (its Lease has a holder that renewed it lately), and that
//! the caller may create ConsentTokens in the namespace (a SelfSubjectAccessReview). A line per
//! check; the first that fails ends the command with its reason and a non-zero exit. A caller who
//! may not read the operator's Lease (most application teams) is told that this one cannot be
//! checked, and the others still are.

use std::io::Write;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

use super::PluginError;
use crate::api::annotations::LEADER_BUILD;
use crate::api::crd::{ClusterConsentProvider, ConsentProvider, ConsentToken};

/// Where the operator's Lease is: the chart's defaults unless the installation says otherwise.
pub struct Installation<'a> {
    pub namespace: &'a str,
    pub lease: &'a str,
}

pub async fn check(
    client: &Client,
    namespace: &str,
    installation: &Installation<'_>,
    out: &mut impl Write,
) -> Result<(), PluginError> {
    let mut say = |line: String| {
        out.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| PluginError::Failed(format!("cannot write the output: {e}")))
    };
    served(Api::<ConsentToken>::namespaced(client.clone(), namespace), "ConsentToken").await?;
    served(Api::<ConsentProvider>::namespaced(client.clone(), namespace), "ConsentProvider").await?;
    served(Api::<ClusterConsentProvider>::all(client.clone()), "ClusterConsentProvider").await?;
    say("ok: the consent.dev/v1alpha1 APIs are served (ConsentToken, ConsentProvider, ClusterConsentProvider)".into())?;
    let lease = format!("Lease {}/{}", installation.namespace, installation.lease);
    match leader(client, installation).await? {
        Some(leader) => say(format!("ok: {} leads ({lease})", leader.holder))?,
        None => say(format!("?: cannot tell whether a replica leads: you may not read the {lease}"))?,
    }
    may_create(client, namespace).await?;
    say(format!("ok: you may create ConsentTokens in namespace {namespace}"))
}

/// Served: a list answers, or is refused (403 means the API is there).
async fn served<K>(api: Api<K>, kind: &str) -> Result<(), PluginError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(PluginError::Failed(format!(
            "the {kind} API (consent.dev/v1alpha1) is not served: install the CRDs (the chart does; or kubectl apply --server-side -f crds/)"
        ))),
        Err(err) => Err(err.into()),
    }
}

/// The replica that leads, as its Lease says.
pub struct Leader {
    /// The pod's name (the Lease's holder).
    pub holder: String,
    /// Its version and revision, as it wrote them on the Lease (none from a build before 0.2.0).
    pub build: Option<String>,
}

/// The Lease's holder, if it renewed within twice the Lease's duration (a standby takes over
/// within one); `None` when the caller may not read the Lease.
pub async fn leader(client: &Client, installation: &Installation<'_>) -> Result<Option<Leader>, PluginError> {
    let where_ = format!("Lease {}/{}", installation.namespace, installation.lease);
    let flags = "--operator-namespace and --lease-name name another installation";
    let lease = match Api::<Lease>::namespaced(client.clone(), installation.namespace).get_opt(installation.lease).await
    {
        Ok(Some(lease)) => lease,
        Ok(None) => return Err(PluginError::Failed(format!("no replica leads: there is no {where_} ({flags})"))),
        Err(kube::Error::Api(status)) if status.code == 403 => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let build = lease.annotations().get(LEADER_BUILD).cloned();
    let spec = lease.spec.unwrap_or_default();
    let holder = spec.holder_identity.filter(|h| !h.is_empty());
    let Some(holder) = holder else {
        return Err(PluginError::Failed(format!(
            "no replica leads: the {where_} has no holder (are the operator's pods running?)"
        )));
    };
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    let renewed = spec.renew_time.map(|t| t.0);
    let age = renewed.map(|at| jiff::Timestamp::now().duration_since(at));
    let stale =
        age.is_none_or(|age| age > jiff::SignedDuration::try_from(duration.saturating_mul(2)).unwrap_or_default());
    if stale {
        let when = age.map_or_else(|| "never".to_owned(), |age| format!("{} s ago", age.as_secs()));
        return Err(PluginError::Failed(format!(
            "no replica leads: {holder} holds the {where_} but last renewed it {when} (its Lease lasts {} s): is it running?",
            duration.as_secs()
        )));
    }
    Ok(Some(Leader { holder, build }))
}

async fn may_create(client: &Client, namespace: &str) -> Result<(), PluginError> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some("consent.dev".into()),
                resource: Some("consenttokens".into()),
                verb: Some("create".into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await?;
    let status = answer.status.unwrap_or_default();
    if status.allowed {
        return Ok(());
    }
    let why = status.reason.filter(|r| !r.is_empty()).map(|r| format!(" ({r})")).unwrap_or_default();
    Err(PluginError::Failed(format!(
        "you may not create ConsentTokens in namespace {namespace}{why}: ask for the edit role there (the chart adds ConsentTokens to it)"
    )))
}
