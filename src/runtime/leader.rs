//! Leader election on a Lease: of several replicas, only the holder writes.
//!
//! Every replica reads the Lease every retry period (a seventh of its duration, 2 s for the
//! default 15 s) and, when it may, claims it: a merge patch carrying the `resourceVersion` it
//! read, so of two replicas claiming at once the API server lets one through. Time is measured
//! as client-go's leader election measures it, on each replica's own monotonic clock, never by
//! comparing one node's wall clock with another's (the `renewTime` a leader writes is for people):
//!
//! - A standby takes a Lease held by another only once it has seen the same Lease record,
//!   unchanged, for the Lease's whole duration, timed from the moment it first saw that record.
//!   After a stretch in which its reads failed it starts timing again: the holder may have
//!   renewed unseen, and it was cut off too (an API server outage), so the holder gets the first
//!   chance to renew and keep its warm work.
//! - The leader fences itself two thirds of a duration after the start of its last renewal that
//!   the API server confirmed: a standby cannot have seen that renewal before it was sent, so it
//!   waits at least a whole duration from then, and the last third is the margin for writes
//!   already on the wire. A read that hangs does not delay the fence.
//!
//! Each claim and renewal also writes the leader's build on the Lease (`consent.dev/leader-build`),
//! for `kubectl consent version`: the one place a user who may read the Lease finds which build
//! writes, without access to the pods or their metrics.
//!
//! Losing the Lease, or failing to confirm it, is not an error: the replica stops writing at
//! once and goes on as a standby, with its caches, until it can claim the Lease again.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api::annotations::{LEADER_BUILD, build};

/// Stated in the Lease's managed fields.
const FIELD_MANAGER: &str = "consent-token-operator-leader";

mod election;

use election::{Election, Record};
pub use election::{LeaseTiming, Role};

/// One replica's part in the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    election: Election,
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: String, timing: LeaseTiming) -> Self {
        Self { api, name: name.to_owned(), election: Election::new(identity, timing) }
    }

    pub fn identity(&self) -> &str {
        &self.election.identity
    }

    /// Takes part until `stop` resolves, publishing this replica's role on `role` as it
    /// changes; then gives the Lease up if it holds it, so that a standby takes over at once
    /// rather than a whole duration later. `stop` must resolve only once this replica has
    /// stopped writing.
    pub async fn run(mut self, role: watch::Sender<Role>, stop: impl std::future::Future<Output = ()>) {
        let timing = self.election.timing;
        tracing::info!(identity = self.identity(), lease = %self.name, "waiting to become leader");
        tokio::pin!(stop);
        loop {
            let started = Instant::now();
            // The attempt may take as long as a renewal may (client-go's rule), and never past
            // the fence: a read that hangs must not keep a leader writing.
            let give_up = self
                .election
                .fence()
                .map_or(started + timing.renew_deadline, |fence| fence.min(started + timing.renew_deadline));
            tokio::select! {
                attempt = tokio::time::timeout_at(give_up, self.attempt(started)) => match attempt {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        self.election.read_failed();
                        tracing::debug!(error = %err, "cannot read or claim the leader Lease");
                    }
                    Err(_) => {
                        self.election.read_failed();
                        tracing::debug!("no answer about the leader Lease in time");
                    }
                },
                () = &mut stop => break,
            }
            self.publish(&role);
            let next = match self.election.fence() {
                Some(fence) => fence.min(started + timing.retry_period),
                None => started + timing.retry_period,
            };
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = &mut stop => break,
            }
            self.publish(&role);
        }
        self.release().await;
    }

    /// One read and, where the rules allow, one claim.
    async fn attempt(&mut self, started: Instant) -> Result<(), kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let timing = self.election.timing;
        let was_leading = self.election.renewed.is_some();
        if !self.election.may_claim(lease.as_ref().map(|l| Record::of(l, timing.duration)), Instant::now()) {
            if was_leading {
                tracing::warn!(identity = self.identity(), "leadership lost: the Lease has another holder");
            }
            return Ok(());
        }
        match self.claim(lease).await {
            Ok(written) => {
                self.election.confirmed(started, Record::of(&written, timing.duration), Instant::now());
                Ok(())
            }
            // Another replica changed the Lease since it was read: the next read says who holds it.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Takes or renews the Lease, provided it is still as read (`resourceVersion`).
    async fn claim(&self, read: Option<Lease>) -> Result<Lease, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let identity = self.identity().to_owned();
        let duration = i32::try_from(self.election.timing.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(read) = read else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    annotations: Some([(LEADER_BUILD.to_owned(), build())].into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
            return self.api.create(&params, &lease).await;
        };
        let spec = read.spec.unwrap_or_default();
        let renewal = spec.holder_identity.as_deref() == Some(identity.as_str());
        let transitions = spec.lease_transitions.unwrap_or_default();
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": read.metadata.resource_version,
                "annotations": { LEADER_BUILD: build() },
            },
            "spec": LeaseSpec {
                holder_identity: Some(identity),
                lease_duration_seconds: Some(duration),
                acquire_time: if renewal { spec.acquire_time } else { Some(now.clone()) },
                renew_time: Some(now),
                lease_transitions: Some(if renewal { transitions } else { transitions.saturating_add(1) }),
                ..LeaseSpec::default()
            },
        });
        self.api.patch(&self.name, &Self::params(), &Patch::Merge(&patch)).await
    }

    fn params() -> PatchParams {
        PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() }
    }

    /// Sends this replica's role if it changed, saying why leading ended.
    fn publish(&mut self, role: &watch::Sender<Role>) {
        let now = Instant::now();
        if self.election.fenced(now) {
            tracing::warn!(identity = self.identity(), "leadership lost: no renewal of the Lease confirmed in time");
        }
        let now_role = self.election.role(now);
        let before = role.send_replace(now_role);
        match (before, now_role) {
            (Role::Standby, Role::Leader) => tracing::info!(identity = self.identity(), "became leader"),
            (Role::Leader, Role::Standby) => tracing::info!(identity = self.identity(), "standing by"),
            _ => {}
        }
    }

    /// Gives the Lease up if this replica holds it: an empty holder, which a standby takes at
    /// its next read.
    async fn release(self) {
        let identity = self.identity().to_owned();
        let release = async {
            let Some(lease) = self.api.get_opt(&self.name).await? else { return Ok(false) };
            if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(identity.as_str()) {
                return Ok(false);
            }
            let patch = serde_json::json!({
                "metadata": { "resourceVersion": lease.metadata.resource_version },
                "spec": { "holderIdentity": "", "renewTime": MicroTime(jiff::Timestamp::now()) },
            });
            self.api.patch(&self.name, &Self::params(), &Patch::Merge(&patch)).await.map(|_| true)
        };
        match tokio::time::timeout(self.election.timing.retry_period.max(Duration::from_secs(2)), release).await {
            Ok(Ok(true)) => tracing::info!(identity, "Lease released"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => tracing::warn!(identity, error = %err, "could not release the Lease"),
            Err(_) => tracing::warn!(identity, "the Lease was not released in time"),
        }
    }
}
