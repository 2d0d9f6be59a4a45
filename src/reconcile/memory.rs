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
}

impl Written {
    pub fn of(status: &ConsentTokenStatus, replaced: Option<&ConsentTokenStatus>) -> Self {
        Self {
            status_hash: status_hash(Some(status)),
            replaced_hash: status_hash(replaced),
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
}
