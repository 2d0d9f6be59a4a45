//! What this process last wrote into each ConsentToken's status.
//!
//! The cached ConsentToken can lag behind our own status write (the Secret's watch event may
//! arrive first), and a stale status would make a handled refresh request or spec change look
//! new, or cause a second, identical write. The memory also tells a first reconcile after a
//! start (nothing remembered) from later ones.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::crd::{ConsentTokenStatus, FailureStatus, RateLimitStatus};
use crate::basics::object_id::ObjectId;
use crate::reconcile::status::{self, Ready};

/// The decision-relevant part of the last status written for one object.
#[derive(Debug, Clone, Default)]
pub struct Written {
    observed_generation: Option<i64>,
    refresh_requested_at: Option<String>,
    consecutive_failures: i32,
    next_refresh_time: Option<Time>,
    // Boxed (as in the status): rare, and large next to the rest (one record per object).
    last_failure: Option<Box<FailureStatus>>,
    rate_limit: Option<Box<RateLimitStatus>>,
    /// Ready as last written, so a transition gets exactly one Event.
    pub ready: Option<Ready>,
    /// Hash of the status written, and of the cached status it replaced: a cache still showing
    /// the replaced one is stale, not in disagreement (see [`needs_status_write`]).
    status_hash: u64,
    replaced_hash: u64,
    /// [`substance_hash`] of the status written: what its readers saw last.
    shown: u64,
}

impl Written {
    pub fn of(status: &ConsentTokenStatus, replaced: Option<&ConsentTokenStatus>) -> Self {
        Self {
            status_hash: status_hash(Some(status)),
            replaced_hash: status_hash(replaced),
            shown: substance_hash(Some(status)),
            observed_generation: status.observed_generation,
            refresh_requested_at: status.refresh_requested_at.clone(),
            consecutive_failures: status.consecutive_failures,
            next_refresh_time: status.next_refresh_time.clone(),
            last_failure: status.last_failure.clone(),
            rate_limit: status.rate_limit.clone(),
            ready: status::ready(Some(status)),
        }
    }

    /// The same record with Ready as `status` now says: nothing was written, so the record of
    /// what the last write replaced is kept (a stale cache is still recognised).
    pub fn with_ready_of(&self, status: &ConsentTokenStatus) -> Self {
        Self { ready: status::ready(Some(status)), ..self.clone() }
    }

    /// The record after a write [`deferred`] as a routine retry: the failure count, the retry
    /// time and the failure are remembered (the next attempt backs off from them), while what
    /// the API server holds stays `base` (this process's last write) or, after a start, `cached`.
    pub fn deferred(base: Option<&Self>, desired: &ConsentTokenStatus, cached: Option<&ConsentTokenStatus>) -> Self {
        let held = match base {
            Some(base) => base.clone(),
            None => Self {
                status_hash: status_hash(cached),
                replaced_hash: status_hash(cached),
                shown: substance_hash(cached),
                ..Self::default()
            },
        };
        Self {
            observed_generation: desired.observed_generation,
            refresh_requested_at: desired.refresh_requested_at.clone(),
            consecutive_failures: desired.consecutive_failures,
            next_refresh_time: desired.next_refresh_time.clone(),
            last_failure: desired.last_failure.clone(),
            rate_limit: desired.rate_limit.clone(),
            ready: status::ready(Some(desired)),
            ..held
        }
    }

    /// The same record planning the next look at `next_refresh`, also where the status does not
    /// show it (tokens renewed on time): a deferral planned by one reconcile holds for the next.
    pub fn planning(self, next_refresh: jiff::Timestamp) -> Self {
        Self { next_refresh_time: Some(status::whole_seconds(next_refresh)), ..self }
    }

    /// `status` with what we wrote laid over it, where the cached copy is older.
    pub fn overlay(&self, mut status: ConsentTokenStatus) -> ConsentTokenStatus {
        if status.observed_generation < self.observed_generation {
            status.observed_generation = self.observed_generation;
        }
        status.refresh_requested_at = self.refresh_requested_at.clone();
        status.consecutive_failures = self.consecutive_failures;
        status.next_refresh_time = self.next_refresh_time.clone();
        status.last_failure = self.last_failure.clone();
        status.rate_limit = self.rate_limit.clone();
        status
    }
}

fn status_hash(status: Option<&ConsentTokenStatus>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&status).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// Whether the status must be written: it differs from the cached one, unless the cached one
/// is merely stale, still showing what our last write replaced while that write equals `desired`.
pub fn needs_status_write(
    cached: Option<&ConsentTokenStatus>,
    desired: &ConsentTokenStatus,
    written: Option<&Written>,
) -> bool {
    if cached == Some(desired) {
        return false;
    }
    !written.is_some_and(|w| w.status_hash == status_hash(Some(desired)) && w.replaced_hash == status_hash(cached))
}

/// Whether writing `desired` can wait: a failure goes on and all a reader would learn is its
/// count and its next retry time. Such writes are a failing object's whole cost to the API
/// server (thousands of objects failing on one host, retried every few seconds, would use the
/// write budget every other namespace's renewals need), so the status is written when what a
/// user sees changes: Ready, a reason, a message beyond its numbers, the token, and the count
/// when it reaches 1, 2, 4, 8... (a handful of writes a day for a failure that lasts).
pub fn deferred(cached: Option<&ConsentTokenStatus>, desired: &ConsentTokenStatus, written: Option<&Written>) -> bool {
    let shown = written.map_or_else(|| substance_hash(cached), |w| w.shown);
    desired.consecutive_failures > 0 && substance_hash(Some(desired)) == shown
}

/// What a user reads in a status: everything but the retry time, the times inside the failure
/// and the condition, the digits of messages (a retry's "in 17s", a status code that moved
/// from 502 to 503) and the failure count between two powers of two.
fn substance_hash(status: Option<&ConsentTokenStatus>) -> u64 {
    let Some(status) = status else { return 0 };
    let epoch = Time(jiff::Timestamp::UNIX_EPOCH);
    let mut seen = status.clone();
    seen.next_refresh_time = None;
    seen.consecutive_failures = match u32::try_from(seen.consecutive_failures) {
        Ok(n) if n > 0 => 1_i32.checked_shl(n.ilog2()).unwrap_or(i32::MAX),
        _ => 0,
    };
    for condition in &mut seen.conditions {
        condition.last_transition_time = epoch.clone();
        condition.message = without_numbers(&condition.message);
    }
    if let Some(failure) = seen.last_failure.as_mut() {
        failure.time = epoch.clone();
        failure.message = without_numbers(&failure.message);
    }
    if let Some(limit) = seen.rate_limit.as_mut() {
        limit.retry_after = None;
        limit.requests_made = None;
    }
    status_hash(Some(&seen))
}

/// `text` with each run of digits replaced by `#`.
fn without_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !in_number {
            out.push('#');
        }
        in_number = c.is_ascii_digit();
    }
    out
}

/// [`Written`] records by object uid. Boxed: a table keeps room for up to twice as many entries
/// as it holds, and a slot of two words wastes less than one of a whole record (about 1 MB at
/// 10,000 objects).
#[derive(Default)]
pub struct StatusMemory(Mutex<HashMap<ObjectId, Box<Written>>>);

impl StatusMemory {
    pub fn recall(&self, uid: &str) -> Option<Written> {
        self.lock().get(&ObjectId::of(uid)).map(|written| Written::clone(written))
    }

    pub fn remember(&self, uid: &str, written: Written) {
        match self.lock().entry(ObjectId::of(uid)) {
            Entry::Occupied(mut kept) => **kept.get_mut() = written,
            Entry::Vacant(slot) => {
                slot.insert(Box::new(written));
            }
        }
    }

    pub fn forget(&self, uid: &str) {
        self.lock().remove(&ObjectId::of(uid));
    }

    /// Forgets everything (this replica stopped leading: another may write meanwhile, so what
    /// this one wrote last says nothing when it leads again).
    pub fn clear(&self) {
        *self.lock() = HashMap::new();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Box<Written>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::t;

    fn ok_status() -> ConsentTokenStatus {
        ConsentTokenStatus { observed_generation: Some(1), ..Default::default() }
    }

    #[test]
    fn a_stale_cache_of_our_own_write_does_not_cause_a_second_write() {
        let old = ConsentTokenStatus { consecutive_failures: 0, ..ok_status() };
        let new = ConsentTokenStatus { next_refresh_time: Some(Time(t(150))), ..ok_status() };
        assert!(needs_status_write(Some(&old), &new, None), "first write");
        let written = Written::of(&new, Some(&old));
        // The cache still shows what we replaced: stale, skip.
        assert!(!needs_status_write(Some(&old), &new, Some(&written)));
        // The cache caught up: nothing to do either.
        assert!(!needs_status_write(Some(&new), &new, Some(&written)));
        // Someone else changed the status since: write it back.
        let other = ConsentTokenStatus { consecutive_failures: 7, ..ok_status() };
        assert!(needs_status_write(Some(&other), &new, Some(&written)));
        // Something new to say: write.
        let newer = ConsentTokenStatus { next_refresh_time: Some(Time(t(300))), ..ok_status() };
        assert!(needs_status_write(Some(&old), &newer, Some(&written)));
    }

    fn failing(count: i32, reason: &str, message: &str, retry_at: i64) -> ConsentTokenStatus {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
        ConsentTokenStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: reason.into(),
                message: message.into(),
                observed_generation: Some(1),
                last_transition_time: Time(t(0)),
            }],
            consecutive_failures: count,
            next_refresh_time: Some(Time(t(retry_at))),
            last_failure: Some(Box::new(FailureStatus {
                reason: reason.into(),
                message: message.into(),
                time: Time(t(retry_at.saturating_sub(5))),
            })),
            ..ok_status()
        }
    }

    #[test]
    fn a_failure_that_goes_on_is_written_when_something_a_reader_sees_changes() {
        let first = failing(1, "UpstreamError", "the provider answered HTTP 500", 10);
        let written = Written::of(&first, None);
        let again = failing(2, "UpstreamError", "the provider answered HTTP 500", 20);
        assert!(!deferred(Some(&first), &again, Some(&written)), "the count reached 2: written");
        let written = Written::of(&again, Some(&first));
        for (count, code) in [(3, 502), (3, 503)] {
            let retry = failing(count, "UpstreamError", &format!("the provider answered HTTP {code}"), 40);
            assert!(needs_status_write(Some(&again), &retry, Some(&written)), "it differs...");
            assert!(deferred(Some(&again), &retry, Some(&written)), "...only in its count, times and numbers");
        }
        let fourth = failing(4, "UpstreamError", "the provider answered HTTP 500", 80);
        assert!(!deferred(Some(&again), &fourth, Some(&written)), "1, 2, 4, 8...: written");
        let other = failing(3, "Unauthorized", "the provider refused the credentials (HTTP 401)", 40);
        assert!(!deferred(Some(&again), &other, Some(&written)), "another reason: written");
        let words = failing(3, "UpstreamError", "the provider could not be reached: the connection failed", 40);
        assert!(!deferred(Some(&again), &words, Some(&written)), "another message: written");
        let recovered = ConsentTokenStatus { consecutive_failures: 0, ..ok_status() };
        assert!(!deferred(Some(&again), &recovered, Some(&written)), "a success: written");

        // Deferred, the count and retry time are still remembered for the next back-off.
        let third = failing(3, "UpstreamError", "the provider answered HTTP 500", 40);
        let kept = Written::deferred(Some(&written), &third, Some(&again));
        let seen = kept.overlay(again.clone());
        assert_eq!((seen.consecutive_failures, seen.next_refresh_time), (3, Some(Time(t(40)))));
        assert!(deferred(
            Some(&again),
            &failing(3, "UpstreamError", "the provider answered HTTP 500", 45),
            Some(&kept)
        ));
        // After a start, nothing remembered: judged against the status the API server holds.
        assert!(deferred(Some(&again), &third, None));
    }
}
