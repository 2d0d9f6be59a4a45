//! A provider account's rate limit, shared fairly between the namespaces that use it, so that
//! one namespace's flood is held back by the operator (for that namespace alone) before the
//! provider answers 429 (which holds back every namespace on the account).
//!
//! Each account's budget is what the provider documents (OneTrust: 1,000 requests a minute per
//! endpoint, 200,000 an hour per account) or, once a 429 has said more, what it said
//! (`ot-requests-allowed` per `ot-period`; without them, the requests the operator had sent in
//! the window when the 429 came). Within each window of the budget's period:
//!
//! - the namespaces that used the account in this window or the one before share it equally;
//! - a namespace alone may use three quarters of it, so that one that comes later in the window
//!   still finds a quarter left (work-conserving, with a reserve: no namespace waits for a share
//!   nobody else uses, and none can spend the whole window before another arrives).
//!
//! A namespace over its share sends nothing until the window ends ([`ShareUsed`]), and nobody
//! sends once the whole budget is spent (the provider would answer 429 anyway). Accounts
//! the provider documents nothing for and has sent no 429 for are only counted.
//!
//! Keys come from hosts tenants name, so the map is bounded: accounts idle for a whole window
//! go once it has grown, and at [`MAX_ACCOUNTS`] the half idle longest makes room.
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::rate_limit::RateLimit;

/// Accounts kept before the idle ones are dropped.
const PRUNE_AT: usize = 1024;
/// Accounts kept at most.
pub const MAX_ACCOUNTS: usize = 4096;
/// The window of an account whose period nobody said.
const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

/// Requests allowed per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Budget {
    pub requests: u32,
    pub period: Duration,
}

impl Budget {
    pub const fn per_minute(requests: u32) -> Self {
        Self { requests, period: Duration::from_secs(60) }
    }

    pub const fn per_hour(requests: u32) -> Self {
        Self { requests, period: Duration::from_secs(3600) }
    }

    /// What one namespace may use in a window that `sharing` namespaces (it included) use.
    fn share(&self, sharing: usize) -> u32 {
        let share = match u32::try_from(sharing) {
            Ok(0 | 1) => self.requests.saturating_sub(self.requests / 4),
            Ok(n) => self.requests.checked_div(n).unwrap_or(0),
            Err(_) => 0,
        };
        share.max(1)
    }
}

/// A namespace has used its share of an account's budget for this window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareUsed {
    /// Until the window ends.
    pub retry_in: Duration,
    pub share: u32,
    pub period: Duration,
    /// Namespaces sharing the account (the one held back included).
    pub sharing: usize,
}

pub struct AccountShares<K> {
    accounts: Mutex<Accounts<K>>,
}

struct Accounts<K> {
    quotas: HashMap<K, Quota>,
    /// The size at which the next pruning runs: doubling keeps its cost constant per request.
    prune_at: usize,
}

struct Quota {
    /// What a 429 said; replaces the documented budget.
    learned: Option<Budget>,
    started: Instant,
    window: Duration,
    /// Requests per namespace in this window.
    used: HashMap<String, u32>,
    /// The namespaces that used the account in the window before: still counted as sharing it.
    before: HashSet<String>,
}

impl Quota {
    fn new(now: Instant, window: Duration) -> Self {
        Self { learned: None, started: now, window, used: HashMap::new(), before: HashSet::new() }
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < self.window {
            return;
        }
        self.before = if elapsed < self.window.saturating_mul(2) {
            self.used.drain().map(|(ns, _)| ns).collect()
        } else {
            HashSet::new()
        };
        self.used.clear();
        self.started = now;
    }

    fn spent(&self) -> u32 {
        self.used.values().fold(0u32, |sum, n| sum.saturating_add(*n))
    }

    fn sharing(&self, namespace: &str) -> usize {
        let others = self.used.keys().chain(self.before.iter()).filter(|ns| *ns != namespace);
        others.collect::<HashSet<_>>().len().saturating_add(1)
    }
}

impl<K> Default for AccountShares<K> {
    fn default() -> Self {
        Self { accounts: Mutex::new(Accounts { quotas: HashMap::new(), prune_at: PRUNE_AT }) }
    }
}

impl<K: Hash + Eq + Clone> AccountShares<K> {
    /// Counts one request of `namespace` against each of `keys` (each with the budget its
    /// provider documents, if any), or says why it may not go now; then nothing is counted.
    pub fn admit(&self, keys: &[(K, Option<Budget>)], namespace: &str) -> Result<(), ShareUsed> {
        self.admit_at(keys, namespace, Instant::now())
    }

    fn admit_at(&self, keys: &[(K, Option<Budget>)], namespace: &str, now: Instant) -> Result<(), ShareUsed> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        for (key, documented) in keys {
            if accounts.quotas.len() >= accounts.prune_at && !accounts.quotas.contains_key(key) {
                accounts.prune(now);
            }
            let window = documented.map_or(DEFAULT_PERIOD, |b| b.period);
            let quota = accounts.quotas.entry(key.clone()).or_insert_with(|| Quota::new(now, window));
            quota.roll(now);
            let Some(budget) = quota.learned.or(*documented) else { continue };
            let sharing = quota.sharing(namespace);
            let share = budget.share(sharing);
            if quota.used.get(namespace).copied().unwrap_or(0) >= share || quota.spent() >= budget.requests {
                let retry_in = quota.window.saturating_sub(now.saturating_duration_since(quota.started));
                return Err(ShareUsed { retry_in, share, period: budget.period, sharing });
            }
        }
        for (key, _) in keys {
            if let Some(quota) = accounts.quotas.get_mut(key) {
                let used = quota.used.entry(namespace.to_owned()).or_default();
                *used = used.saturating_add(1);
            }
        }
        Ok(())
    }

    /// What a 429 for `key` says about its budget: the limit and period it names, or, when it
    /// names none, the requests sent in this window.
    pub fn learn(&self, key: &K, limit: &RateLimit) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(quota) = accounts.quotas.get_mut(key) else { return };
        let period = limit.period.as_deref().and_then(period_of);
        let said = limit.requests_allowed.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
        let budget = match (said, period) {
            (Some(requests), Some(period)) => Budget { requests, period },
            (Some(requests), None) => Budget { requests, period: quota.window },
            (None, _) => Budget { requests: quota.spent().max(1), period: quota.window },
        };
        quota.learned = Some(budget);
        quota.window = budget.period;
        // The provider's window ends when it says to come back: this one ends then too, so that
        // the shares of the next one are counted in the provider's windows, not across two.
        let now = Instant::now();
        let ends_in = limit.retry_after.min(budget.period);
        quota.started = now.checked_sub(budget.period.saturating_sub(ends_in)).unwrap_or(now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.accounts.lock().map(|a| a.quotas.len()).unwrap_or_default()
    }
}

impl<K> Accounts<K> {
    /// Drops accounts idle for a whole window; at the ceiling, also the half idle longest.
    fn prune(&mut self, now: Instant) {
        self.quotas.retain(|_, q| now.saturating_duration_since(q.started) < q.window.saturating_mul(2));
        if self.quotas.len() >= MAX_ACCOUNTS {
            let mut starts: Vec<Instant> = self.quotas.values().map(|q| q.started).collect();
            let (_, median, _) = starts.select_nth_unstable(MAX_ACCOUNTS / 2);
            let median = *median;
            self.quotas.retain(|_, q| q.started > median);
        }
        self.prune_at = self.quotas.len().saturating_mul(2).clamp(PRUNE_AT, MAX_ACCOUNTS);
    }
}

/// OneTrust's `ot-period` values (and the obvious others) as a window.
fn period_of(text: &str) -> Option<Duration> {
    match text.trim().to_ascii_uppercase().as_str() {
        "SECOND" => Some(Duration::from_secs(1)),
        "MINUTE" => Some(Duration::from_secs(60)),
        "HOUR" => Some(Duration::from_secs(3600)),
        "DAY" => Some(Duration::from_secs(86_400)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // small test numbers
mod tests;
