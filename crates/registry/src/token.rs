//! Bearer tokens from a registry's token server: fetching (GET, or OAuth2 POST for identity
//! tokens) and a cache shared by concurrent requests.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use crate::RegistryError;
use crate::credentials::Credentials;
use crate::error::from_response;
use crate::registries::Shared;
use crate::transport::url_host;

/// What the token spec says a token lasts when the server does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Refresh this long before expiry at most: the request using the token must still arrive
/// while it is valid.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// dockerd's client id. Token servers may bind refresh tokens to the client they were issued
/// to, and identity tokens come from `docker login` through dockerd (or through us, with the
/// same id), so the refresh grant must name the same client.
pub(crate) const CLIENT_ID: &str = "docker";

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

pub(crate) struct FetchedToken {
    pub(crate) value: String,
    refresh_at: Instant,
    /// A refresh token (identity token), when one was asked for and given.
    pub(crate) refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// What to ask a token server for.
pub(crate) struct TokenAsk<'a> {
    /// The registry host the token is for; its TLS settings apply to the token server too.
    pub(crate) registry_host: &'a str,
    pub(crate) realm: &'a Url,
    pub(crate) service: Option<&'a str>,
    pub(crate) scopes: &'a [String],
    /// Ask for a refresh token as well (`docker login`): `offline_token=true&client_id=docker`.
    pub(crate) offline: bool,
}

/// Gets a token for `ask.scopes` from `ask.realm`.
pub(crate) async fn fetch(
    shared: &Shared,
    ask: &TokenAsk<'_>,
    credentials: &Credentials,
) -> Result<FetchedToken, RegistryError> {
    let TokenAsk {
        registry_host,
        realm,
        service,
        scopes,
        ..
    } = *ask;
    let realm_host = url_host(realm);
    let client = shared
        .realm_endpoint(registry_host, &realm_host)
        .await?
        .client
        .clone();
    tracing::debug!(realm = %crate::error::without_query(realm), ?scopes, "fetching registry token");
    let (method, response) = match credentials {
        Credentials::IdentityToken(refresh_token) => {
            let response = oauth_post(&client, realm, service, scopes, refresh_token).await?;
            // Not every token server implements OAuth2 POST (GCR 404, Artifactory 401, ACR 400).
            if matches!(response.status().as_u16(), 400 | 401 | 404 | 405) {
                tracing::debug!(
                    status = response.status().as_u16(),
                    "OAuth2 token POST refused; using GET"
                );
                (
                    "GET",
                    get_token(&client, ask, Some(("", refresh_token))).await?,
                )
            } else {
                ("POST", response)
            }
        }
        Credentials::Basic { username, password } => (
            "GET",
            get_token(&client, ask, Some((username, password))).await?,
        ),
        Credentials::Anonymous | Credentials::RegistryToken(_) => {
            ("GET", get_token(&client, ask, None).await?)
        }
    };
    if response.status() != StatusCode::OK {
        return Err(from_response(response, method, false).await);
    }
    let received = Instant::now();
    let body: TokenResponse = response.json().await.map_err(|e| {
        RegistryError::invalid_response(
            "fetch token from",
            &realm_host,
            format!("unreadable token response: {e}"),
        )
    })?;
    let value = body
        .token
        .filter(|t| !t.is_empty())
        .or(body.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| {
            RegistryError::invalid_response(
                "fetch token from",
                &realm_host,
                "token server returned no token",
            )
        })?;
    let lifetime = remaining_lifetime(body.expires_in, body.issued_at.as_deref());
    Ok(FetchedToken {
        value,
        refresh_at: received + lifetime - refresh_margin(lifetime),
        refresh_token: body.refresh_token.filter(|t| !t.is_empty()),
    })
}

async fn get_token(
    client: &reqwest::Client,
    ask: &TokenAsk<'_>,
    basic: Option<(&str, &str)>,
) -> Result<reqwest::Response, RegistryError> {
    let realm = ask.realm;
    let mut url = realm.clone();
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = ask.service {
            query.append_pair("service", service);
        }
        for scope in ask.scopes {
            query.append_pair("scope", scope);
        }
        if ask.offline {
            query.append_pair("offline_token", "true");
            query.append_pair("client_id", CLIENT_ID);
        }
    }
    let mut request = client.get(url);
    if let Some((username, password)) = basic {
        request = request.basic_auth(username, Some(password));
    }
    request
        .send()
        .await
        .map_err(|e| RegistryError::transport("fetch token from", url_host(realm), e, false))
}

async fn oauth_post(
    client: &reqwest::Client,
    realm: &Url,
    service: Option<&str>,
    scopes: &[String],
    refresh_token: &str,
) -> Result<reqwest::Response, RegistryError> {
    let scope = scopes.join(" ");
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", CLIENT_ID),
        ("scope", scope.as_str()),
    ];
    if let Some(service) = service {
        form.push(("service", service));
    }
    client
        .post(realm.clone())
        .form(&form)
        .send()
        .await
        .map_err(|e| RegistryError::transport("fetch token from", url_host(realm), e, false))
}

/// How long the token stays valid from now. Counted from local receipt, so a skewed clock on
/// the token server cannot make us keep an expired token; `issued_at` only shortens it when
/// the token server hands out an already aged token. A short `expires_in` is believed
/// (distribution's client raises it to 60 s and then uses expired tokens until refused).
fn remaining_lifetime(expires_in: Option<u64>, issued_at: Option<&str>) -> Duration {
    let lifetime = match expires_in {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds),
        _ => DEFAULT_LIFETIME,
    };
    let age = issued_at
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .filter(|age| *age < lifetime);
    match age {
        Some(age) => lifetime - age,
        None => lifetime,
    }
}

/// A fifth of the lifetime, at most 30 s: a 60 s token is renewed after 48 s.
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 5).min(MAX_REFRESH_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_defaults_and_floors() {
        assert_eq!(remaining_lifetime(None, None), Duration::from_secs(60));
        assert_eq!(remaining_lifetime(Some(0), None), Duration::from_secs(60));
        // Short lives are believed: the token must be renewed before the registry refuses it.
        assert_eq!(remaining_lifetime(Some(3), None), Duration::from_secs(3));
        assert_eq!(
            remaining_lifetime(Some(300), None),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn issued_at_ages_the_token_within_reason() {
        let aged = (chrono::Utc::now() - chrono::Duration::seconds(100)).to_rfc3339();
        let left = remaining_lifetime(Some(300), Some(&aged));
        assert!(left <= Duration::from_secs(200) && left > Duration::from_secs(190));
        // Issued in the future (clock skew) or longer ago than its lifetime: ignore it.
        let future = (chrono::Utc::now() + chrono::Duration::seconds(100)).to_rfc3339();
        assert_eq!(
            remaining_lifetime(Some(300), Some(&future)),
            Duration::from_secs(300)
        );
        let ancient = "2001-01-01T00:00:00Z";
        assert_eq!(
            remaining_lifetime(Some(300), Some(ancient)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn margins() {
        assert_eq!(
            refresh_margin(Duration::from_secs(60)),
            Duration::from_secs(12)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
    }

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
