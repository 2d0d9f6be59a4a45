//! `kubectl consent version`: the plugin's build and, when the cluster answers, the build of the
//! replica that leads, as it wrote it on its Lease. As with `kubectl version`, the client's line
//! never depends on the cluster; unlike it, an operator that cannot be reached is said on the
//! second line rather than made an error, since a user asking for the plugin's version may well
//! not be allowed to read the operator's Lease.

use kube::Client;

use super::PluginError;
use super::check::{self, Installation};
use crate::api::annotations::build;

/// The plugin's line: `kubectl-consent 0.2.0 (revision 0123456789ab)`.
pub fn client_line() -> String {
    format!("kubectl-consent {}\n", build())
}

/// The operator's line, from its Lease.
pub async fn operator_line(client: &Client, installation: &Installation<'_>) -> String {
    let lease = format!("Lease {}/{}", installation.namespace, installation.lease);
    match check::leader(client, installation).await {
        Ok(Some(leader)) => match leader.build {
            Some(operator) => {
                let skew = if operator == build() { "" } else { "; not the plugin's build" };
                format!("operator {operator}, leader {} ({lease}){skew}\n", leader.holder)
            }
            None => format!("operator: a build before 0.2.0, leader {} ({lease})\n", leader.holder),
        },
        Ok(None) => format!("operator: unknown: you may not read the {lease}\n"),
        Err(err) => unreachable_line(&err),
    }
}

/// What `version` says when the operator's build cannot be learnt (no kubeconfig, no answer).
pub fn unreachable_line(err: &PluginError) -> String {
    format!("operator: unknown: {err}\n")
}
