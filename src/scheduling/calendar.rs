//! The refresh calendar: how many refreshes are planned in each second, so that each new plan
//! goes into the quietest second of the window its token allows.
//!
//! Random jitter alone keeps a burst a burst: 9,000 tokens created within a minute would renew
//! within the same minute (plus the jitter) every lifetime, and a restart would add its own
//! burst. Filling the emptiest seconds first spreads such a burst over the whole window in one
//! lifetime, and keeps renewals at the latest second of their window while there is no crowd,
//! so tokens are not renewed earlier than they need to be.
//!
//! One calendar per process; it only ever holds one plan per object.
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use jiff::Timestamp;

use crate::basics::object_id::ObjectId;

#[derive(Default)]
pub struct Calendar(Mutex<Plans>);

#[derive(Default)]
struct Plans {
    /// Planned refreshes per second (Unix time).
    per_second: BTreeMap<i64, u32>,
    /// The second each object is planned at, by uid.
    by_object: HashMap<ObjectId, i64>,
}

impl Calendar {
    /// Plans `object`'s next refresh in the quietest second from `earliest` to `latest` (the
    /// latest of the quietest, so nothing is renewed earlier than a crowd requires), replacing
    /// its previous plan, and returns it.
    pub fn place(&self, object: &str, earliest: Timestamp, latest: Timestamp) -> Timestamp {
        let mut plans = self.lock();
        plans.unplan(object);
        // Whole seconds inside the window (a window of under a second still has its end).
        let to = latest.as_second();
        let from = earliest.as_second().saturating_add(i64::from(earliest.subsec_nanosecond() > 0)).min(to);
        let mut best = (u32::MAX, to);
        // Latest first, so the first second with the lowest count is the latest such second.
        for second in (from..=to).rev() {
            let count = plans.per_second.get(&second).copied().unwrap_or(0);
            if count < best.0 {
                best = (count, second);
                if count == 0 {
                    break;
                }
            }
        }
        plans.plan(object, best.1);
        if best.1 == to {
            // Keep the sub-second part: a window of under a second stays exact.
            latest
        } else {
            Timestamp::from_second(best.1).unwrap_or(latest)
        }
    }

    /// Records a plan made elsewhere (a schedule read back after a restart, a retry time).
    pub fn keep(&self, object: &str, at: Timestamp) {
        let mut plans = self.lock();
        if plans.by_object.get(&ObjectId::of(object)) != Some(&at.as_second()) {
            plans.unplan(object);
            plans.plan(object, at.as_second());
        }
    }

    /// The object is gone.
    pub fn forget(&self, object: &str) {
        self.lock().unplan(object);
    }

    /// Refreshes planned in `[from, to)`.
    #[cfg(test)]
    pub(crate) fn planned_between(&self, from: Timestamp, to: Timestamp) -> u32 {
        self.lock().per_second.range(from.as_second()..to.as_second()).map(|(_, n)| n).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Plans> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Plans {
    fn plan(&mut self, object: &str, second: i64) {
        let count = self.per_second.entry(second).or_default();
        *count = count.saturating_add(1);
        self.by_object.insert(ObjectId::of(object), second);
    }

    fn unplan(&mut self, object: &str) {
        let Some(second) = self.by_object.remove(&ObjectId::of(object)) else { return };
        if let Some(count) = self.per_second.get_mut(&second) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_second.remove(&second);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures::t;

    #[test]
    fn without_a_crowd_a_refresh_is_planned_as_late_as_allowed() {
        let calendar = Calendar::default();
        assert_eq!(calendar.place("a", t(120), t(150)), t(150));
        // Sub-second precision is kept at the latest point.
        let latest = t(150) + jiff::SignedDuration::from_millis(250);
        assert_eq!(calendar.place("b", t(120), latest), t(149));
    }

    #[test]
    fn a_burst_is_spread_evenly_over_the_window() {
        let calendar = Calendar::default();
        // 3,100 tokens fetched in the same second, each allowing a 31-second window.
        for i in 0..3100 {
            calendar.place(&format!("o{i}"), t(120), t(150));
        }
        for second in 120..=150 {
            assert_eq!(calendar.planned_between(t(second), t(second + 1)), 100, "second {second}");
        }
    }

    #[test]
    fn a_new_plan_replaces_the_old_one_and_forget_removes_it() {
        let calendar = Calendar::default();
        calendar.place("a", t(100), t(100));
        calendar.place("a", t(200), t(200));
        assert_eq!(calendar.planned_between(t(0), t(1000)), 1);
        assert_eq!(calendar.planned_between(t(200), t(201)), 1);
        calendar.keep("a", t(300));
        calendar.keep("a", t(300));
        assert_eq!(calendar.planned_between(t(0), t(1000)), 1);
        calendar.forget("a");
        assert_eq!(calendar.planned_between(t(0), t(1000)), 0);
    }

    #[test]
    fn plans_kept_after_a_restart_steer_overdue_tokens_to_quiet_seconds() {
        let calendar = Calendar::default();
        // Seconds 0-9 already hold ten renewals each; 10-19 hold none.
        for i in 0..100 {
            calendar.keep(&format!("k{i}"), t(i / 10));
        }
        for i in 0..10 {
            let at = calendar.place(&format!("overdue{i}"), t(0), t(19));
            assert!(at >= t(10), "{at}");
        }
    }
}
