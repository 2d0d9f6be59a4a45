//! Who may not call a provider until when, after a 429: one object's 429 holds back every
//! request counted against the same quota. Keys come from hosts tenants name, so the map is
//! bounded: blocks that are over go once it has grown, and at [`MAX_BLOCKS`] the quarter that
//! ends first makes room (the next request learns them again from the provider's 429).
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use crate::api::rate_limit::RateLimit;
use crate::basics::time_math::instant_after;

/// Blocks kept before the ones that are over are dropped.
const PRUNE_AT: usize = 1024;
/// Blocks kept at most.
pub const MAX_BLOCKS: usize = 4096;

pub struct RateLimitBlocks<K> {
    blocks: Mutex<Blocks<K>>,
}

struct Blocks<K> {
    until: HashMap<K, (Instant, RateLimit)>,
    /// The size at which the next pruning runs: doubling keeps its cost constant per block.
    prune_at: usize,
}

impl<K> Default for RateLimitBlocks<K> {
    fn default() -> Self {
        Self { blocks: Mutex::new(Blocks { until: HashMap::new(), prune_at: PRUNE_AT }) }
    }
}

impl<K: Hash + Eq + Clone> RateLimitBlocks<K> {
    /// The limit still in force for `key`, with the wait that is left.
    pub fn still_blocked(&self, key: &K) -> Option<RateLimit> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        let (until, limit) = blocks.until.get(key)?;
        let now = Instant::now();
        if *until <= now {
            blocks.until.remove(key);
            return None;
        }
        Some(RateLimit { retry_after: until.saturating_duration_since(now), ..limit.clone() })
    }

    /// Holds `key` back for the limit's `retry_after` (a longer block already there stays).
    pub fn block(&self, key: K, limit: &RateLimit) {
        let now = Instant::now();
        let until = instant_after(now, limit.retry_after);
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        if blocks.until.len() >= blocks.prune_at && !blocks.until.contains_key(&key) {
            blocks.prune(now);
        }
        let entry = blocks.until.entry(key).or_insert((until, limit.clone()));
        if entry.0 < until {
            *entry = (until, limit.clone());
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.blocks.lock().map(|b| b.until.len()).unwrap_or_default()
    }
}

impl<K> Blocks<K> {
    /// Drops the blocks that are over; at the ceiling, also the quarter that ends first.
    fn prune(&mut self, now: Instant) {
        self.until.retain(|_, (until, _)| *until > now);
        if self.until.len() >= MAX_BLOCKS {
            let mut ends: Vec<Instant> = self.until.values().map(|(until, _)| *until).collect();
            let (_, quarter, _) = ends.select_nth_unstable(MAX_BLOCKS / 4);
            let quarter = *quarter;
            self.until.retain(|_, (until, _)| *until > quarter);
        }
        self.prune_at = self.until.len().saturating_mul(2).clamp(PRUNE_AT, MAX_BLOCKS);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limit(seconds: u64) -> RateLimit {
        RateLimit {
            retry_after: Duration::from_secs(seconds),
            capped: false,
            period: None,
            requests_allowed: None,
            requests_made: None,
            event_id: None,
        }
    }

    #[test]
    fn a_block_holds_until_its_wait_is_over_and_a_longer_one_wins() {
        let blocks = RateLimitBlocks::default();
        blocks.block("a", &limit(60));
        blocks.block("a", &limit(10));
        let left = blocks.still_blocked(&"a").unwrap().retry_after;
        assert!(left > Duration::from_secs(50), "the longer block stays: {left:?}");
        assert!(blocks.still_blocked(&"b").is_none());
        blocks.block("c", &limit(0));
        assert!(blocks.still_blocked(&"c").is_none(), "a block that is over holds nothing");
    }

    #[test]
    fn a_hundred_thousand_hosts_leave_the_map_bounded() {
        let blocks = RateLimitBlocks::default();
        blocks.block("the provider".to_owned(), &limit(86_400));
        // A tenant's own hosts, each answering one 429: some over at once, most long.
        for i in 0..100_000u64 {
            blocks.block(format!("tenant-host-{i}"), &limit(if i % 3 == 0 { 0 } else { 3600 }));
            assert!(blocks.len() <= MAX_BLOCKS, "{} blocks after {i}", blocks.len());
        }
        assert!(blocks.still_blocked(&"the provider".to_owned()).is_some(), "the block that ends last is kept");
    }
}
