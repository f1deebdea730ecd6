//! Bearer tokens cached per realm, service, scope set and credentials, shared by concurrent
//! requests and renewed before they expire.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use url::Url;

use super::token::FetchedToken;
use crate::RegistryError;
use crate::credentials::Credentials;

/// Tokens are cached per realm, service, scope set and credentials.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    realm: String,
    service: Option<String>,
    /// Sorted, so that the same set in another order shares the token.
    scopes: Vec<String>,
    credentials: String,
}

impl TokenKey {
    pub(crate) fn new(
        realm: &Url,
        service: Option<&str>,
        scopes: &[String],
        credentials: &Credentials,
    ) -> TokenKey {
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        TokenKey {
            realm: realm.to_string(),
            service: service.map(str::to_owned),
            scopes,
            credentials: credentials.fingerprint(),
        }
    }
}

struct CachedToken {
    value: String,
    refresh_at: Instant,
    fetched_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<TokenKey, Slot>>,
}

impl TokenCache {
    fn slot(&self, key: &TokenKey) -> Slot {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// The cached token, or a fresh one from `fetch`. Concurrent callers for one key wait for
    /// a single fetch instead of each asking the token server. With `fetched_after`, a cached
    /// token only counts if it was fetched after that instant: a request refused then retries
    /// with a token newer than the refusal, whichever cache entry its scopes select, while
    /// concurrent retries still share one fetch.
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        key: &TokenKey,
        fetched_after: Option<Instant>,
        fetch: F,
    ) -> Result<String, RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FetchedToken, RegistryError>>,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
            && fetched_after.is_none_or(|after| token.fetched_at > after)
        {
            return Ok(token.value.clone());
        }
        let fetched = fetch().await?;
        let value = fetched.value.clone();
        *cached = Some(CachedToken {
            value: fetched.value,
            refresh_at: fetched.refresh_at,
            fetched_at: Instant::now(),
        });
        Ok(value)
    }

    /// Forgets `value` if it is still the cached token for `key` (a concurrent request may
    /// already have replaced it, and that newer token must be kept).
    pub(crate) async fn invalidate(&self, key: &TokenKey, value: &str) {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == value) {
            *cached = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keys_ignore_scope_order_but_not_credentials() {
        let realm = Url::parse("https://auth/token").unwrap();
        let a = TokenKey::new(
            &realm,
            Some("s"),
            &["b".into(), "a".into()],
            &Credentials::Anonymous,
        );
        let b = TokenKey::new(
            &realm,
            Some("s"),
            &["a".into(), "b".into()],
            &Credentials::Anonymous,
        );
        assert_eq!(a, b);
        let c = TokenKey::new(
            &realm,
            Some("s"),
            &["a".into(), "b".into()],
            &Credentials::Basic {
                username: "u".into(),
                password: "p".into(),
            },
        );
        assert_ne!(a, c);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let key = TokenKey::new(
            &Url::parse("https://a/t").unwrap(),
            None,
            &[],
            &Credentials::Anonymous,
        );
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, fetches, key) = (cache.clone(), fetches.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&key, None, || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(FetchedToken {
                            value: "t1".into(),
                            refresh_at: Instant::now() + Duration::from_secs(60),
                            refresh_token: None,
                        })
                    })
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), "t1");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        cache.invalidate(&key, "other").await;
        let kept = cache
            .get_or_fetch(&key, None, || async {
                panic!("cached token must be reused")
            })
            .await
            .unwrap();
        assert_eq!(kept, "t1");
        cache.invalidate(&key, "t1").await;
        let fresh = cache
            .get_or_fetch(&key, None, || async {
                Ok(FetchedToken {
                    value: "t2".into(),
                    refresh_at: Instant::now() + Duration::from_secs(60),
                    refresh_token: None,
                })
            })
            .await
            .unwrap();
        assert_eq!(fresh, "t2");

        // A request refused after t2 was fetched wants a newer token, even though t2 is cached.
        let refused_at = Instant::now();
        let newer = cache
            .get_or_fetch(&key, Some(refused_at), || async {
                Ok(FetchedToken {
                    value: "t3".into(),
                    refresh_at: Instant::now() + Duration::from_secs(60),
                    refresh_token: None,
                })
            })
            .await
            .unwrap();
        assert_eq!(newer, "t3");
        // A concurrent retry refused at the same moment shares t3.
        let shared = cache
            .get_or_fetch(&key, Some(refused_at), || async {
                panic!("t3 is newer than the refusal")
            })
            .await
            .unwrap();
        assert_eq!(shared, "t3");
    }
}
