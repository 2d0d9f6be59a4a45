//! Leader election on a Lease: of several replicas, only the holder runs the controllers.
//!
//! `kube-lease-manager` acquires and renews the Lease (server-side apply, so two replicas
//! cannot both take it), renewing every third of the Lease duration. On top of it, a fence makes
//! the leader stand down on its own, on time rather than on names: it reads the Lease
//! regularly, and each time it sees a new `renewTime` with itself as holder it knows a renewal
//! succeeded no earlier than its previous read began. Once the last renewal known that way is
//! older than two thirds of the duration, on its own monotonic clock, it stops, whatever it can
//! still read: a standby may take the Lease only a whole duration after the last renewal. A
//! leader cut off from the API server, or whose renewals fail while its reads succeed, therefore
//! stops writing before another can start.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stopping replica waits for its Lease to be released before it exits anyway (the
/// standby then waits for the Lease to expire).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Renewal happens this long before the Lease would expire: it is renewed every third of its
/// duration, so one failed renewal does not lose it.
fn grace(duration: Duration) -> Duration {
    (duration * 2 / 3).max(Duration::from_secs(1))
}

/// The leader stops writing when its last known renewal is this old: a third of the duration
/// before any standby may take over.
fn fence_deadline(duration: Duration) -> Duration {
    duration * 2 / 3
}

pub struct Leadership {
    is_leader: watch::Receiver<bool>,
    /// kube-lease-manager's task: renews while `is_leader` has a receiver, then releases.
    /// `None` only while a standby replaces it.
    task: Option<JoinHandle<Result<LeaseManager, LeaseManagerError>>>,
    identity: String,
    lease: Api<Lease>,
    lease_name: String,
    duration: Duration,
}

impl Leadership {
    pub async fn start(
        client: Client,
        namespace: &str,
        lease_name: &str,
        identity: String,
        duration: Duration,
    ) -> Result<Self, LeaseManagerError> {
        let lease = Api::namespaced(client, namespace);
        let (is_leader, task) = watch_lease(&lease, lease_name, &identity, duration).await?;
        Ok(Self { is_leader, task: Some(task), identity, lease, lease_name: lease_name.to_owned(), duration })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Gives the Lease up (at shutdown, after the last write), so that a standby takes over at
    /// once instead of a whole Lease duration later. The release runs in kube-lease-manager's
    /// task, which a returning `main` would cancel: it is awaited here.
    pub async fn release(self) {
        let Self { is_leader, task, identity, .. } = self;
        drop(is_leader);
        let Some(task) = task else { return };
        match tokio::time::timeout(RELEASE_TIMEOUT, task).await {
            Ok(Ok(Ok(_))) => tracing::info!(identity, "Lease released"),
            Ok(Ok(Err(err))) => tracing::warn!(identity, error = %err, "could not release the Lease"),
            Ok(Err(err)) => tracing::warn!(identity, error = %err, "the Lease task failed"),
            Err(_) => tracing::warn!(identity, "the Lease was not released in time"),
        }
    }

    /// Resolves once this replica holds the Lease.
    ///
    /// kube-lease-manager has a standby sleep until the Lease it saw would expire, so a Lease
    /// its leader gave up (at shutdown) would wait a whole duration for its successor. A standby
    /// therefore also reads the Lease every tenth of the duration, and when it finds it vacant
    /// starts its manager again, whose first look takes a vacant Lease at once.
    pub async fn acquired(&mut self) -> Result<(), LeaseManagerError> {
        let poll = (self.duration / 10).max(Duration::from_millis(300));
        loop {
            let manager_ended = tokio::select! {
                changed = self.is_leader.wait_for(|leader| *leader) => match changed {
                    Ok(_) => return Ok(()),
                    // The manager's task ended (an API error it gave up on): never a reason to
                    // believe this replica leads.
                    Err(_) => true,
                },
                () = vacant(&self.lease, &self.lease_name, poll) => false,
            };
            if manager_ended {
                tracing::warn!(identity = self.identity, "the Lease manager stopped; starting it again");
            } else {
                tracing::debug!(identity = self.identity, "the Lease is vacant; taking it");
            }
            // The old manager must be gone before the new one starts: its release (on the
            // closed channel) would otherwise clear the Lease the new one takes for this
            // identity. Until the new one is up, `is_leader` is a closed channel saying false.
            drop(std::mem::replace(&mut self.is_leader, watch::channel(false).1));
            if let Some(old_task) = self.task.take() {
                let _ = tokio::time::timeout(RELEASE_TIMEOUT, old_task).await;
            }
            let (is_leader, task) = watch_lease(&self.lease, &self.lease_name, &self.identity, self.duration).await?;
            self.is_leader = is_leader;
            self.task = Some(task);
        }
    }

    /// Resolves when this replica must stop writing: the Lease went to another holder, or the
    /// fence could not confirm the hold in time.
    pub async fn lost(&mut self) {
        let mut is_leader = self.is_leader.clone();
        tokio::select! {
            _ = is_leader.wait_for(|leader| !*leader) => tracing::warn!("leadership lost: the Lease has another holder"),
            _ = self.fence() => tracing::warn!("leadership lost: no renewal of the Lease confirmed in time"),
        }
    }

    async fn fence(&self) {
        let poll = (self.duration / 10).max(Duration::from_millis(300));
        let mut fence = Fence::new(Instant::now(), fence_deadline(self.duration));
        loop {
            tokio::time::sleep(poll).await;
            let read_started = Instant::now();
            let seen = match self.lease.get(&self.lease_name).await {
                Ok(lease) => {
                    let spec = lease.spec.unwrap_or_default();
                    let holder =
                        spec.holder_identity.map(|h| if h == self.identity { Holder::Me } else { Holder::Other });
                    Some((holder, spec.renew_time.map(|t| t.0.to_string())))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the leader Lease");
                    None
                }
            };
            if !fence.keep_writing(read_started, seen, Instant::now()) {
                return;
            }
        }
    }
}

/// kube-lease-manager's task for this identity: it renews (or waits for) the Lease for as long as
/// the returned receiver lives, then releases it if held.
async fn watch_lease(
    lease: &Api<Lease>,
    lease_name: &str,
    identity: &str,
    duration: Duration,
) -> Result<(watch::Receiver<bool>, JoinHandle<Result<LeaseManager, LeaseManagerError>>), LeaseManagerError> {
    let client: Client = lease.clone().into_client();
    let manager = LeaseManagerBuilder::new(client, lease_name)
        .with_namespace(lease.namespace().unwrap_or("default"))
        .with_identity(identity)
        .with_duration(duration.as_secs().max(2))
        .with_grace(grace(duration).as_secs().max(1))
        .with_field_manager("consent-token-operator-leader")
        .build()
        .await?;
    Ok(manager.watch().await)
}

/// Resolves once a read of the Lease finds no holder (read every `poll`; a failed read is
/// tried again at the next).
async fn vacant(lease: &Api<Lease>, lease_name: &str, poll: Duration) {
    loop {
        tokio::time::sleep(poll).await;
        if let Ok(lease) = lease.get(lease_name).await
            && lease.spec.and_then(|spec| spec.holder_identity).is_none_or(|holder| holder.is_empty())
        {
            return;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Me,
    Other,
}

/// The fence's bookkeeping, apart from the reads, so that its rule is a unit test.
struct Fence {
    /// No renewal is known to be later than this.
    renewed: Instant,
    last_renew_time: Option<String>,
    previous_read: Instant,
    deadline: Duration,
}

impl Fence {
    /// `start`: when the Lease was acquired (a renewal, no later than this).
    fn new(start: Instant, deadline: Duration) -> Self {
        Self { renewed: start, last_renew_time: None, previous_read: start, deadline }
    }

    /// One read of the Lease that began at `read_started` and saw this holder and `renewTime`
    /// (`None`: the read failed). Whether the leader may go on writing at `now`.
    fn keep_writing(
        &mut self,
        read_started: Instant,
        seen: Option<(Option<Holder>, Option<String>)>,
        now: Instant,
    ) -> bool {
        if let Some((holder, renew_time)) = seen {
            if holder == Some(Holder::Other) {
                return false;
            }
            if holder == Some(Holder::Me) && renew_time.is_some() && renew_time != self.last_renew_time {
                if self.last_renew_time.is_some() {
                    // A renewal landed after the previous read began: no earlier than that.
                    self.renewed = self.renewed.max(self.previous_read);
                }
                self.last_renew_time = renew_time;
            }
        }
        self.previous_read = read_started;
        now.saturating_duration_since(self.renewed) < self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_stops_on_the_age_of_the_last_renewal_it_saw_not_on_names() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let me = |renew: &str| Some((Some(Holder::Me), Some(renew.to_owned())));
        // 15 s Lease: renewed every 5 s, the fence stops 10 s after the last renewal it knows of.
        let mut fence = Fence::new(t0, fence_deadline(Duration::from_secs(15)));
        assert!(fence.keep_writing(at(1_000), me("r0"), at(1_100)));
        assert!(fence.keep_writing(at(5_500), me("r1"), at(5_600)), "renewed after 1.0 s");
        assert!(fence.keep_writing(at(10_500), me("r2"), at(10_600)), "renewed after 5.5 s");
        // Renewals fail, reads succeed and still name this replica: it stops 10 s after 5.5 s.
        assert!(fence.keep_writing(at(13_000), me("r2"), at(13_100)));
        assert!(fence.keep_writing(at(15_000), me("r2"), at(15_400)));
        assert!(!fence.keep_writing(at(15_500), me("r2"), at(15_600)));

        // Reads failing: the same deadline.
        let mut fence = Fence::new(t0, fence_deadline(Duration::from_secs(15)));
        assert!(fence.keep_writing(at(5_000), None, at(5_100)));
        assert!(!fence.keep_writing(at(10_000), None, at(10_100)));

        // Another holder: at once.
        let mut fence = Fence::new(t0, fence_deadline(Duration::from_secs(15)));
        assert!(!fence.keep_writing(at(1_000), Some((Some(Holder::Other), Some("x".into()))), at(1_100)));
    }
}
