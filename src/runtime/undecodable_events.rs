//! A Warning Event on each namespaced object that does not decode (see `cache::undecodable`),
//! so that `kubectl describe` on it says why the operator skips it. Published by the leader
//! only: the standby sees the same objects, and one Event per object is enough. An object first
//! seen while this replica stood by gets none from it (the log and the gauge still name it).

use kube::Client;
use kube::runtime::events::{Event, EventType, Reporter};
use tokio::sync::{mpsc, watch};

use crate::cache::undecodable::UndecodableReport;
use crate::runtime::leader::Role;

/// How many reports may wait for publication; more are dropped (each is logged and counted).
pub const QUEUE: usize = 256;

/// Publishes an Event for each report while this replica leads, until every sender is gone.
pub async fn publish(
    mut reports: mpsc::Receiver<UndecodableReport>,
    client: Client,
    reporter: Reporter,
    role: watch::Receiver<Role>,
) {
    while let Some(report) = reports.recv().await {
        if *role.borrow() != Role::Leader {
            continue;
        }
        let event = Event {
            type_: EventType::Warning,
            reason: "Undecodable".into(),
            note: Some(note(&report.path)),
            action: "Decode".into(),
            secondary: None,
        };
        crate::observability::events::publish(&client, &reporter, &event, &report.object).await;
    }
}

/// What the Event says: the field, never its value (it may be a customer id).
fn note(path: &str) -> String {
    format!(
        "this object does not decode as consent-token-operator {}'s types (at {path}); it is skipped, and its last version that decoded, if any, is still served. Fix the field, or run the version that wrote it",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_field_and_fits_an_event() {
        let note = note("spec.target.secretName");
        assert!(note.contains("spec.target.secretName"));
        // The API server refuses an Event note over 1 KiB.
        assert!(note.len() < 1024);
    }
}
