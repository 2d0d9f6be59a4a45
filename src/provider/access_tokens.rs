//! OneTrust OAuth access tokens, cached per credential and shared by every ConsentToken that
//! uses that credential. Logging in once per reconcile is what took a Vault cluster down
//! for another operator; here a hundred reconciles that need the same token at the same moment
//! cause one request: the first fetches while the others wait on the same slot. A failure is
//! shared the same way: every caller that waited, and every caller until the failure's backoff
//! ends, gets it without another request (one slow or failing OAuth endpoint is asked once, not
//! once per ConsentToken).
// Time arithmetic here is fed by upstream numbers: only saturating sums (see time_math).
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

/// Renew when this share of the lifetime is left...
const RENEW_SHARE: f64 = 0.1;
/// ...but never more than this long before expiry.
const MAX_RENEW_MARGIN: Duration = Duration::from_secs(300);
/// Past this many credentials, stale entries are dropped when a new one is added.
const PRUNE_ABOVE: usize = 256;

/// What a slot holds: a token, or the last failure and until when it stands.
enum Cached {
    Token { value: SecretString, renew_at: Instant },
    Failed { error: Error, until: Instant, failures: u32 },
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// How long a failed OAuth attempt stands for everyone: what the provider asked for, else 2 s
/// doubling with each failure in a row, up to a minute.
fn failure_backoff(error: &Error, failures: u32) -> Duration {
    match error.retry_class() {
        crate::error::RetryClass::After(wait) => wait,
        _ => Duration::from_secs(2)
            .saturating_mul(1u32 << failures.saturating_sub(1).min(5))
            .min(Duration::from_secs(60)),
    }
}

#[derive(Default)]
pub struct AccessTokenCache {
    slots: Mutex<HashMap<String, Slot>>,
}

impl AccessTokenCache {
    /// The cached token for `key`, or the one `fetch` returns (with its lifetime), fetched once
    /// however many callers ask at the same time.
    pub async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<SecretString, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Duration), Error>>,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        let now = Instant::now();
        let failures = match cached.as_ref() {
            Some(Cached::Token { value, renew_at }) if *renew_at > now => return Ok(value.clone()),
            Some(Cached::Failed { error, until, .. }) if *until > now => return Err(error.duplicate()),
            Some(Cached::Failed { failures, .. }) => *failures,
            _ => 0,
        };
        match fetch().await {
            Ok((value, lifetime)) => {
                let margin = crate::basics::time_math::scale(lifetime, RENEW_SHARE).min(MAX_RENEW_MARGIN);
                let renew_at = crate::basics::time_math::instant_after(Instant::now(), lifetime.saturating_sub(margin));
                *cached = Some(Cached::Token { value: value.clone(), renew_at });
                Ok(value)
            }
            // Nothing was asked (the host is busy or paused): nothing to remember.
            Err(err) if err.was_held() => Err(err),
            Err(err) => {
                let failures = failures.saturating_add(1);
                let until = crate::basics::time_math::instant_after(Instant::now(), failure_backoff(&err, failures));
                *cached = Some(Cached::Failed { error: err.duplicate(), until, failures });
                Err(err)
            }
        }
    }

    /// Drops the cached token for `key` if it is still `used` (a 401 said it is no longer
    /// accepted); a token another caller already replaced is kept.
    pub async fn invalidate(&self, key: &str, used: &SecretString) {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if matches!(cached.as_ref(), Some(Cached::Token { value, .. }) if value.expose_secret() == used.expose_secret())
        {
            *cached = None;
        }
    }

    fn slot(&self, key: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots.contains_key(key) && slots.len() >= PRUNE_ABOVE {
            let now = Instant::now();
            // A slot someone holds is in use; an empty or expired one can go.
            slots.retain(|_, slot| {
                slot.try_lock()
                    .map(|t| matches!(t.as_ref(), Some(Cached::Token { renew_at, .. }) if *renew_at > now))
                    .unwrap_or(true)
            });
        }
        slots.entry(key.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// `callers` concurrent `get_or_fetch` calls on one key whose fetch takes 20 ms and then
    /// answers `answer()`: what each caller got, and how many fetches were made.
    async fn concurrently(
        cache: &Arc<AccessTokenCache>,
        callers: usize,
        answer: fn() -> Result<(SecretString, Duration), Error>,
    ) -> (Vec<Result<SecretString, Error>>, u32) {
        let fetches = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("cred", || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        answer()
                    })
                    .await
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        (results, fetches.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(AccessTokenCache::default());
        let (results, fetches) =
            concurrently(&cache, 100, || Ok((SecretString::from("access"), Duration::from_secs(3600)))).await;
        assert!(results.iter().all(|r| r.as_ref().is_ok_and(|t| t.expose_secret() == "access")));
        assert_eq!(fetches, 1);
    }

    #[tokio::test]
    async fn a_failure_is_shared_by_everyone_who_waited_and_stands_for_its_backoff() {
        let cache = Arc::new(AccessTokenCache::default());
        let (results, fetches) =
            concurrently(&cache, 50, || Err(Error::UpstreamStatus { status: 500, retry_after: None })).await;
        assert!(results.iter().all(|r| matches!(r, Err(Error::UpstreamStatus { status: 500, .. }))));
        assert_eq!(fetches, 1, "one attempt for fifty callers");
        // Within the backoff (2 s) the failure stands without another request.
        let again =
            cache.get_or_fetch("cred", || async { Ok((SecretString::from("late"), Duration::from_secs(60))) }).await;
        assert!(again.is_err());
        // A held request (nothing sent) is not remembered.
        let held = cache.get_or_fetch("other", || async { Err(Error::HostBusy) }).await;
        assert!(matches!(held, Err(Error::HostBusy)));
        let next =
            cache.get_or_fetch("other", || async { Ok((SecretString::from("t"), Duration::from_secs(60))) }).await;
        assert_eq!(next.unwrap().expose_secret(), "t");
    }

    #[tokio::test]
    async fn invalidation_forces_one_new_fetch() {
        let cache = AccessTokenCache::default();
        let first = cache
            .get_or_fetch("k", || async { Ok((SecretString::from("one"), Duration::from_secs(3600))) })
            .await
            .unwrap();
        cache.invalidate("k", &first).await;
        let second = cache
            .get_or_fetch("k", || async { Ok((SecretString::from("two"), Duration::from_secs(3600))) })
            .await
            .unwrap();
        assert_eq!(second.expose_secret(), "two");
        // A stale invalidation (of "one") does not drop "two".
        cache.invalidate("k", &first).await;
        let third = cache
            .get_or_fetch("k", || async { Ok((SecretString::from("three"), Duration::from_secs(3600))) })
            .await
            .unwrap();
        assert_eq!(third.expose_secret(), "two");
    }

    #[tokio::test]
    async fn token_is_renewed_before_it_expires() {
        let cache = AccessTokenCache::default();
        cache
            .get_or_fetch("k", || async { Ok((SecretString::from("short"), Duration::from_millis(100))) })
            .await
            .unwrap();
        // 10 % of 100 ms = 10 ms margin: after 95 ms it is due.
        tokio::time::sleep(Duration::from_millis(95)).await;
        let next = cache
            .get_or_fetch("k", || async { Ok((SecretString::from("new"), Duration::from_secs(1))) })
            .await
            .unwrap();
        assert_eq!(next.expose_secret(), "new");
    }
}
