//! Publishing one Kubernetes Event, given up after [`TIMEOUT`]: the one way the reconcile (a
//! Ready transition) and the runtime (an object that does not decode) publish theirs.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};

/// How long an Event's publication may take before it is given up.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes `event` about `regarding`; a failure or no answer within [`TIMEOUT`] is logged.
pub async fn publish(client: &Client, reporter: &Reporter, event: &Event, regarding: &ObjectReference) {
    // A Recorder per Event: a shared one keeps every Event it published for six minutes and
    // scans them all on each publish (to fold repeats into a series), which with 10,000
    // objects turning Ready is megabytes held and quadratic work. Ours are one per transition
    // or per undecodable object, so there are no repeats to fold.
    let recorder = Recorder::new(client.clone(), reporter.clone());
    // An Event is not worth holding anything for: a request stalled on a dead connection
    // would otherwise keep its caller (a reconcile, and so the renewal timer set when it ends)
    // waiting for the client's five-minute read timeout.
    match tokio::time::timeout(TIMEOUT, recorder.publish(event, regarding)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "could not publish an event"),
        Err(_) => tracing::warn!(timeout = ?TIMEOUT, "could not publish an event: no answer in time"),
    }
}
