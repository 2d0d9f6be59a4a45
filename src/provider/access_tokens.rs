//! OneTrust OAuth access tokens, cached per credential and shared by every ConsentToken that
//! uses that credential. Logging in once per reconcile is what took a Vault cluster down
//! for another operator; here a hundred reconciles that need the same token at the same moment
//! cause one request: the first fetches while the others wait on the same slot.

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

struct CachedToken {
    value: SecretString,
    renew_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

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
        if let Some(token) = cached.as_ref().filter(|t| t.renew_at > Instant::now()) {
            return Ok(token.value.clone());
        }
        let (value, lifetime) = fetch().await?;
        let margin = Duration::from_secs_f64(lifetime.as_secs_f64() * RENEW_SHARE).min(MAX_RENEW_MARGIN);
        *cached = Some(CachedToken { value: value.clone(), renew_at: Instant::now() + lifetime - margin });
        Ok(value)
    }

    /// Drops the cached token for `key` if it is still `used` (a 401 said it is no longer
    /// accepted); a token another caller already replaced is kept.
    pub async fn invalidate(&self, key: &str, used: &SecretString) {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.value.expose_secret() == used.expose_secret()) {
            *cached = None;
        }
    }

    fn slot(&self, key: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots.contains_key(key) && slots.len() >= PRUNE_ABOVE {
            let now = Instant::now();
            // A slot someone holds is in use; an empty or expired one can go.
            slots.retain(|_, slot| {
                slot.try_lock().map(|t| t.as_ref().is_some_and(|t| t.renew_at > now)).unwrap_or(true)
            });
        }
        slots.entry(key.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(AccessTokenCache::default());
        let fetches = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("cred", || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok((SecretString::from("access"), Duration::from_secs(3600)))
                    })
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().expose_secret(), "access");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
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
