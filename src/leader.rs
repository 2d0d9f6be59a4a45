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
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

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
        let manager = LeaseManagerBuilder::new(client.clone(), lease_name)
            .with_namespace(namespace)
            .with_identity(identity.clone())
            .with_duration(duration.as_secs().max(2))
            .with_grace(grace(duration).as_secs().max(1))
            .with_field_manager("consent-token-operator-leader")
            .build()
            .await?;
        // The task renews the Lease for as long as `is_leader` has a receiver; dropping it
        // (at shutdown) releases the Lease so a standby can take over at once.
        let (is_leader, _task) = manager.watch().await;
        Ok(Self {
            is_leader,
            identity,
            lease: Api::namespaced(client, namespace),
            lease_name: lease_name.to_owned(),
            duration,
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Resolves once this replica holds the Lease.
    pub async fn acquired(&mut self) {
        let _ = self.is_leader.wait_for(|leader| *leader).await.map(drop);
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
