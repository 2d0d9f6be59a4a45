//! The ConsentTokens still waiting for their first token, and when they are expected to have it.
//!
//! A fill of thousands of new ConsentTokens (a GitOps sync, a first install) keeps the API server
//! busy for minutes. A new token's first renewal may be planned early in its life, to spread a
//! burst over the token's lifetime (see `Schedule::renewal_window`); planned inside the fill,
//! those renewals compete with the objects still waiting for a first token, and each costs two
//! API writes. At 10,000 objects this made half of them renew before the last one was Ready. So
//! a first renewal is planned no earlier than the moment the objects waiting now are expected
//! to have their token, at the pace first tokens have been reported since the fill began.
//!
//! A wrong guess costs little: too early, some renewals still come during the fill, as before;
//! too late, the window still closes at the latest point the schedule allows, so no renewal is
//! ever later than it would have been. An object whose status is never written (every write of
//! it refused) keeps its fill open: new tokens' first renewals then go to the latest seconds of
//! their windows, as every later renewal does, and the calendar still spreads them there.
// Time arithmetic here is fed by the clock: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashSet;
use std::sync::Mutex;

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::crd::ConsentToken;

use crate::basics::object_id::ObjectId;
use crate::basics::time_math::{between, later};
use crate::basics::watch_cache::WatchCache;

/// One per process, like the calendar: every namespace's objects share the API server.
#[derive(Default)]
pub struct FirstTokens(Mutex<Fill>);

#[derive(Default)]
struct Fill {
    /// Objects no operator has reported on yet (they have no status).
    waiting: HashSet<ObjectId>,
    /// When `waiting` last stopped being empty.
    began: Option<Timestamp>,
    /// Objects of this fill reported on since it began.
    done: u32,
}

impl FirstTokens {
    /// What the watch saw of an object: `waiting` when it has no status yet.
    pub fn observe(&self, uid: &str, waiting: bool, now: Timestamp) {
        let mut fill = self.lock();
        let id = ObjectId::of(uid);
        if waiting {
            if fill.waiting.is_empty() {
                fill.began = Some(now);
                fill.done = 0;
            }
            fill.waiting.insert(id);
        } else if fill.waiting.remove(&id) {
            fill.done = fill.done.saturating_add(1);
            fill.end_if_empty();
        }
    }

    /// The object is gone.
    pub fn forget(&self, uid: &str) {
        let mut fill = self.lock();
        if fill.waiting.remove(&ObjectId::of(uid)) {
            fill.end_if_empty();
        }
    }

    /// When the objects waiting now, `uid` aside, are expected to have their first token: `now`
    /// when none is waiting.
    pub fn expected_done(&self, uid: &str, now: Timestamp) -> Timestamp {
        let fill = self.lock();
        let others = fill.waiting.len().saturating_sub(usize::from(fill.waiting.contains(&ObjectId::of(uid))));
        let Some(began) = fill.began.filter(|_| others > 0) else { return now };
        // Before any is done, the time so far counts as one object's: an overestimate at the
        // start of a large fill, which only moves first renewals towards their latest point.
        let per_object = between(began, now).checked_div(fill.done.max(1)).unwrap_or_default();
        later(now, per_object.saturating_mul(u32::try_from(others).unwrap_or(u32::MAX)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fill> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Fill {
    fn end_if_empty(&mut self) {
        if self.waiting.is_empty() {
            self.began = None;
            self.done = 0;
            // A fill of 10,000 leaves a table of a quarter of a megabyte behind.
            self.waiting.shrink_to_fit();
        }
    }
}

/// Fed by the ConsentToken watch: an object without status waits for its first token.
impl WatchCache<ConsentToken> for FirstTokens {
    fn apply(&self, ct: &ConsentToken) {
        self.observe(&ct.uid().unwrap_or_default(), ct.status.is_none(), Timestamp::now());
    }
    fn delete(&self, ct: &ConsentToken) {
        self.forget(&ct.uid().unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::t;

    #[test]
    fn without_others_waiting_nothing_is_held_back() {
        let first = FirstTokens::default();
        assert_eq!(first.expected_done("a", t(10)), t(10));
        // An object alone in its fill does not wait for itself.
        first.observe("a", true, t(0));
        assert_eq!(first.expected_done("a", t(10)), t(10));
    }

    #[test]
    fn the_rest_of_a_fill_is_expected_at_the_pace_so_far() {
        let first = FirstTokens::default();
        for i in 0..100 {
            first.observe(&format!("o{i}"), true, t(0));
        }
        // 20 reported in 10 s: half a second each; 80 wait, one of them is asking.
        for i in 0..20 {
            first.observe(&format!("o{i}"), false, t(10));
        }
        assert_eq!(first.expected_done("o20", t(10)), t(10) + jiff::SignedDuration::from_millis(39_500));
        // Before any is done: the time so far per object, an overestimate.
        let fresh = FirstTokens::default();
        fresh.observe("x", true, t(0));
        fresh.observe("y", true, t(0));
        assert_eq!(fresh.expected_done("x", t(2)), t(4));
    }

    #[test]
    fn a_fill_ends_when_the_last_object_is_reported_or_deleted() {
        let first = FirstTokens::default();
        first.observe("a", true, t(0));
        first.observe("b", true, t(0));
        first.observe("a", false, t(5));
        first.forget("b");
        assert_eq!(first.expected_done("c", t(100)), t(100));
        // A new fill starts its own count.
        first.observe("c", true, t(100));
        first.observe("d", true, t(100));
        assert_eq!(first.expected_done("c", t(101)), t(102));
        // Objects with a status never wait, and an unknown one is not counted as done.
        first.observe("e", false, t(101));
        assert_eq!(first.expected_done("c", t(101)), t(102));
    }
}
