//! Leader election on a Lease: of several replicas, only the holder runs the controllers.
//!
//! `kube-lease-manager` acquires and renews the Lease (server-side apply, so two replicas
//! cannot both take it). On top of it, a fence makes the leader stand down on its own: it
//! reads the Lease regularly and stops once it has not seen itself as holder for
//! `duration - grace`, which is before any standby may take the Lease (after `duration`). A
//! leader cut off from the API server therefore stops writing before another can start.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

/// Renewal happens this long before the Lease would expire; it is also the fence's margin.
fn grace(duration: Duration) -> Duration {
    (duration / 3).max(Duration::from_secs(1))
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
            _ = self.fence() => tracing::warn!("leadership lost: could not confirm the Lease in time"),
        }
    }

    async fn fence(&self) {
        let deadline = self.duration.saturating_sub(grace(self.duration));
        let mut confirmed = Instant::now();
        loop {
            tokio::time::sleep((self.duration / 6).max(Duration::from_millis(500))).await;
            match self.lease.get(&self.lease_name).await {
                Ok(lease) => {
                    let holder = lease.spec.and_then(|s| s.holder_identity);
                    if holder.as_deref() == Some(self.identity.as_str()) {
                        confirmed = Instant::now();
                    } else if holder.is_some() {
                        return;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot read the leader Lease"),
            }
            if confirmed.elapsed() >= deadline {
                return;
            }
        }
    }
}
