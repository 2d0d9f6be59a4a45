//! The election's rules, apart from the API calls (see the parent module for why they are
//! what they are): when a replica may claim the Lease, and when a leader must stop writing.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use tokio::time::Instant;

/// The Lease's three periods, in client-go's proportions (15 s, 10 s, 2 s by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a standby waits, having seen no change to the Lease, before it takes it over.
    pub duration: Duration,
    /// How long after the start of its last confirmed renewal the leader stops writing.
    pub renew_deadline: Duration,
    /// How often every replica reads (and the leader renews) the Lease.
    pub retry_period: Duration,
}

impl LeaseTiming {
    pub fn new(duration: Duration) -> Self {
        let duration = duration.max(Duration::from_secs(2));
        Self {
            duration,
            renew_deadline: duration * 2 / 3,
            retry_period: (duration * 2 / 15).max(Duration::from_millis(200)),
        }
    }
}

/// What this replica is, as published to the controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Standby,
    Leader,
}

/// The parts of a Lease that say who holds it and whether it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    holder: String,
    renew_time: Option<String>,
    transitions: i32,
    duration: Duration,
}

impl Record {
    pub(super) fn of(lease: &Lease, default_duration: Duration) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.unwrap_or_default(),
            renew_time: spec.renew_time.map(|t| t.0.to_string()),
            transitions: spec.lease_transitions.unwrap_or_default(),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map_or(default_duration, Duration::from_secs),
        }
    }
}

/// The election's rules, apart from the API calls, so that each is a unit test. Every instant
/// is this replica's own monotonic clock.
pub(super) struct Election {
    pub(super) identity: String,
    pub(super) timing: LeaseTiming,
    /// The record last seen, and when it was first seen as it is.
    observed: Option<(Record, Instant)>,
    /// A read failed since the last successful one.
    blind: bool,
    /// While leading: when the last renewal the API server confirmed was sent.
    pub(super) renewed: Option<Instant>,
}

impl Election {
    pub(super) fn new(identity: String, timing: LeaseTiming) -> Self {
        Self { identity, timing, observed: None, blind: false, renewed: None }
    }

    /// A read of the Lease answered at `now` (`None`: there is no Lease). Whether to claim it.
    pub(super) fn may_claim(&mut self, record: Option<Record>, now: Instant) -> bool {
        let blind = std::mem::take(&mut self.blind);
        let Some(record) = record else { return true };
        if record.holder.is_empty() || record.holder == self.identity {
            self.observed = Some((record, now));
            return true;
        }
        self.renewed = None;
        let since = match &self.observed {
            Some((seen, since)) if *seen == record && !blind => *since,
            _ => {
                self.observed = Some((record.clone(), now));
                now
            }
        };
        now.saturating_duration_since(since) >= record.duration
    }

    /// The claim sent at `sent` was written: this replica leads until the fence.
    pub(super) fn confirmed(&mut self, sent: Instant, written: Record, now: Instant) {
        self.observed = Some((written, now));
        self.renewed = Some(self.renewed.map_or(sent, |earlier| earlier.max(sent)));
    }

    pub(super) fn read_failed(&mut self) {
        self.blind = true;
    }

    /// When this replica must stop writing, while it leads.
    pub(super) fn fence(&self) -> Option<Instant> {
        self.renewed.map(|sent| sent + self.timing.renew_deadline)
    }

    pub(super) fn role(&self, now: Instant) -> Role {
        match self.fence() {
            Some(fence) if now < fence => Role::Leader,
            _ => Role::Standby,
        }
    }

    /// Whether the fence has just stopped this replica leading.
    pub(super) fn fenced(&mut self, now: Instant) -> bool {
        let fenced = self.fence().is_some_and(|fence| now >= fence);
        if fenced {
            self.renewed = None;
        }
        fenced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, renew: &str) -> Option<Record> {
        Some(Record {
            holder: holder.to_owned(),
            renew_time: Some(renew.to_owned()),
            transitions: 0,
            duration: Duration::from_secs(15),
        })
    }

    fn election(identity: &str) -> Election {
        Election::new(identity.to_owned(), LeaseTiming::new(Duration::from_secs(15)))
    }

    #[test]
    fn the_default_periods_are_client_gos() {
        let timing = LeaseTiming::new(Duration::from_secs(15));
        assert_eq!(timing.renew_deadline, Duration::from_secs(10));
        assert_eq!(timing.retry_period, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_takes_over_a_whole_duration_after_it_first_saw_the_last_record() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut standby = election("b");
        assert!(!standby.may_claim(record("a", "r1"), at(0)));
        assert!(!standby.may_claim(record("a", "r2"), at(4)), "renewed: timed again from here");
        assert!(!standby.may_claim(record("a", "r2"), at(18)));
        assert!(standby.may_claim(record("a", "r2"), at(19)), "15 s after it first saw r2");
        // Whatever the renewTime says: a leader whose clock is behind writes an old renewTime,
        // and the standby still waits a whole duration of its own clock.
        let mut standby = election("b");
        assert!(!standby.may_claim(record("a", "1970-01-01T00:00:00Z"), at(0)));
        assert!(!standby.may_claim(record("a", "1970-01-01T00:00:00Z"), at(14)));
        assert!(standby.may_claim(record("a", "1970-01-01T00:00:00Z"), at(15)));
    }

    #[tokio::test(start_paused = true)]
    async fn after_reads_failed_the_holder_gets_a_whole_duration_again() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut standby = election("b");
        assert!(!standby.may_claim(record("a", "r1"), at(0)));
        standby.read_failed();
        assert!(!standby.may_claim(record("a", "r1"), at(30)), "the first read after an outage starts the clock");
        assert!(standby.may_claim(record("a", "r1"), at(45)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_vacant_lease_or_ones_own_is_claimed_at_once() {
        let t0 = Instant::now();
        let mut e = election("a");
        assert!(e.may_claim(None, t0), "no Lease yet");
        assert!(e.may_claim(record("", "r1"), t0), "released");
        assert!(e.may_claim(record("a", "r1"), t0), "its own, after a restart or an outage");
    }

    #[tokio::test(start_paused = true)]
    async fn the_leader_fences_two_thirds_of_a_duration_after_its_last_confirmed_renewal_was_sent() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut leader = election("a");
        assert!(leader.may_claim(None, at(0)));
        leader.confirmed(at(0), record("a", "r1").unwrap(), at(300));
        assert_eq!(leader.role(at(300)), Role::Leader);
        leader.confirmed(at(2_000), record("a", "r2").unwrap(), at(2_100));
        assert_eq!(leader.fence(), Some(at(12_000)), "from when the renewal was sent, not answered");
        assert!(!leader.fenced(at(11_999)));
        assert_eq!(leader.role(at(11_999)), Role::Leader);
        assert!(leader.fenced(at(12_000)));
        assert_eq!(leader.role(at(12_000)), Role::Standby);
        // A standby waits at least a whole duration from the renewal's sending: after the fence.
        let mut standby = election("b");
        assert!(!standby.may_claim(record("a", "r2"), at(2_050)));
        assert!(!standby.may_claim(record("a", "r2"), at(17_049)));
        assert!(standby.may_claim(record("a", "r2"), at(17_050)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_sees_another_holder_stops_at_once() {
        let t0 = Instant::now();
        let mut leader = election("a");
        leader.confirmed(t0, record("a", "r1").unwrap(), t0);
        assert_eq!(leader.role(t0), Role::Leader);
        assert!(!leader.may_claim(record("b", "r9"), t0 + Duration::from_secs(1)));
        assert_eq!(leader.role(t0 + Duration::from_secs(1)), Role::Standby);
    }
}
