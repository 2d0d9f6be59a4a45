//! `kubectl consent status --providers`: one line per ConsentProvider (of the namespace, or of
//! every namespace with `-A`) and per ClusterConsentProvider, from their status: whether each is
//! Ready, why, and how many ConsentTokens use it.

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::PluginError;
use crate::api::crd::{ClusterConsentProvider, ConsentProvider, ConsentProviderStatus};

/// One provider object as the table shows it.
struct Line {
    kind: &'static str,
    namespace: String,
    name: String,
    status: Option<ConsentProviderStatus>,
}

/// The providers the caller may list: ConsentProviders of `namespace` (all with `None`), and
/// ClusterConsentProviders (left out, with a note, when the caller may not list them).
pub async fn providers(client: &Client, namespace: Option<&str>) -> Result<String, PluginError> {
    let namespaced: Api<ConsentProvider> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let mut lines: Vec<Line> = namespaced
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|p| Line {
            kind: "ConsentProvider",
            namespace: p.namespace().unwrap_or_default(),
            name: p.name_any(),
            status: p.status,
        })
        .collect();
    let cluster: Api<ClusterConsentProvider> = Api::all(client.clone());
    let mut note = String::new();
    match cluster.list(&ListParams::default()).await {
        Ok(list) => lines.extend(list.items.into_iter().map(|p| Line {
            kind: "ClusterConsentProvider",
            namespace: "-".into(),
            name: p.name_any(),
            status: p.status,
        })),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            note = "(you may not list ClusterConsentProviders: they are not shown)\n".into();
        }
        Err(err) => return Err(err.into()),
    }
    Ok(format!("{}{note}", table(&lines)))
}

fn table(lines: &[Line]) -> String {
    if lines.is_empty() {
        return "No ConsentProviders or ClusterConsentProviders found.\n".into();
    }
    let mut rows = vec![
        ["KIND", "NAMESPACE", "NAME", "PROVIDER", "READY", "REASON", "CONSENTTOKENS", "MESSAGE"].map(String::from),
    ];
    rows.extend(lines.iter().map(|line| {
        let status = line.status.as_ref();
        let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        [
            line.kind.to_owned(),
            line.namespace.clone(),
            line.name.clone(),
            status.and_then(|s| s.provider.clone()).unwrap_or_else(|| "-".into()),
            ready.map_or("Unknown".into(), |c| c.status.clone()),
            ready.map_or("-".into(), |c| c.reason.clone()),
            status.map_or("-".into(), |s| s.consent_tokens.to_string()),
            ready.map_or(String::new(), |c| c.message.clone()),
        ]
    }));
    super::status::aligned(&rows)
}
