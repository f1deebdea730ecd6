//! Credentials and tokens: deciding what `Authorization` a registry request carries, and
//! learning from 401 answers.
//!
//! Each registry host's challenge is remembered once seen, so later requests authenticate
//! up front instead of paying a 401 round trip each. Bearer tokens are fetched from the
//! challenge's token server (reached with the registry's TLS settings) and cached until shortly
//! before they expire.

mod header;
mod token;
mod token_cache;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use token::{MAX_LIFETIME, parse_token_response};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use reqwest::header::{HeaderMap, HeaderValue};

use crate::RegistryError;
use crate::challenge::Challenge;
use crate::credentials::Credentials;
use crate::endpoint::{Endpoints, name_domain};
pub(crate) use header::{basic_header, bearer_header};
pub(crate) use token::{FetchedToken, TokenAsk};
use token_cache::{TokenCache, TokenKey};

/// The authentication state of every registry: remembered challenges and cached tokens. Cheap
/// to clone.
#[derive(Clone)]
pub(crate) struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where token servers are reached.
    endpoints: Endpoints,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: TokenCache,
    /// Told the registry host each time a refused token makes a request go again.
    on_token_renewal: OnceLock<TokenRenewalHook>,
}

/// What the daemon is told when a registry refuses a token before its time and the request is
/// sent again with a fresh one: the registry host.
pub(crate) type TokenRenewalHook = Box<dyn Fn(&str) + Send + Sync>;

/// What a request carried, so a 401 can be answered sensibly.
pub(crate) enum Presented {
    None,
    Basic(HeaderValue),
    /// A caller-supplied registry token: it cannot be renewed, so a 401 is final.
    StaticToken(HeaderValue),
    Token {
        key: TokenKey,
        value: String,
        header: HeaderValue,
    },
}

impl Presented {
    pub(crate) fn header(&self) -> Option<&HeaderValue> {
        match self {
            Presented::None => None,
            Presented::Basic(h) | Presented::StaticToken(h) => Some(h),
            Presented::Token { header, .. } => Some(header),
        }
    }

    /// A token from a token server, which a fresh fetch may replace.
    pub(crate) fn is_renewable_token(&self) -> bool {
        matches!(self, Presented::Token { .. })
    }
}

impl Auth {
    pub(crate) fn new(endpoints: Endpoints) -> Auth {
        Auth {
            inner: Arc::new(Inner {
                endpoints,
                challenges: Mutex::default(),
                tokens: TokenCache::default(),
                on_token_renewal: OnceLock::new(),
            }),
        }
    }

    /// Sets the hook told of token renewals; only the first one set is kept.
    pub(crate) fn set_token_renewal_hook(&self, hook: TokenRenewalHook) {
        let _ = self.inner.on_token_renewal.set(hook);
    }

    /// A request to `host` carried a token the registry refused, and goes again with a fresh
    /// one: one retry, logged with its cause (never the token) and told to the hook.
    pub(crate) fn token_renewed(&self, host: &str, operation: &str) {
        let host = name_domain(host);
        tracing::info!(
            registry = host,
            operation,
            cause = "token_renewal",
            "the registry refused the token; retrying with a fresh one"
        );
        if let Some(hook) = self.inner.on_token_renewal.get() {
            hook(host);
        }
    }

    /// The Authorization for a request to registry `host` needing `scopes`. `refused_at`: the
    /// previous attempt's token was refused then, so only a token fetched later will do.
    pub(crate) async fn authorize(
        &self,
        host: &str,
        credentials: &Credentials,
        scopes: &[String],
        refused_at: Option<Instant>,
    ) -> Result<Presented, RegistryError> {
        if let Credentials::RegistryToken(token) = credentials {
            return Ok(Presented::StaticToken(bearer_header(token)?));
        }
        match self.challenge(host) {
            None => Ok(Presented::None),
            Some(Challenge::Basic) => match credentials {
                Credentials::Basic { username, password } => {
                    Ok(Presented::Basic(basic_header(username, password)?))
                }
                _ => Ok(Presented::None),
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = TokenKey::new(&realm, service.as_deref(), scopes, credentials);
                let value = self
                    .inner
                    .tokens
                    .get_or_fetch(&key, refused_at, || async {
                        let ask = TokenAsk {
                            registry_host: host,
                            realm: &realm,
                            service: service.as_deref(),
                            scopes,
                            offline: false,
                        };
                        self.fetch_token(&ask, credentials).await
                    })
                    .await?;
                let header = bearer_header(&value)?;
                Ok(Presented::Token { key, value, header })
            }
        }
    }

    /// Learns from a 401. Returns the extra scopes to retry with when a retry can succeed,
    /// `None` when it cannot (no credentials for a Basic registry, a static token, the same
    /// credentials already refused).
    pub(crate) async fn after_unauthorized(
        &self,
        host: &str,
        headers: &HeaderMap,
        presented: &Presented,
        credentials: &Credentials,
    ) -> Option<Vec<String>> {
        let challenge = Challenge::from_headers(headers)?;
        self.remember(host, challenge.clone());
        match (&challenge, presented) {
            (_, Presented::StaticToken(_)) => None,
            (Challenge::Bearer { scopes, .. }, Presented::Token { key, value, .. }) => {
                // The token expired early or lacks a scope: drop it so that the retry (and every
                // concurrent request that used it) fetches a fresh one.
                self.inner.tokens.invalidate(key, value).await;
                Some(scopes.clone())
            }
            (Challenge::Bearer { scopes, .. }, _) => Some(scopes.clone()),
            (Challenge::Basic, Presented::Basic(_)) => None,
            (Challenge::Basic, _) => {
                matches!(credentials, Credentials::Basic { .. }).then(Vec::new)
            }
        }
    }

    /// A new token from the token server, bypassing the cache.
    pub(crate) async fn fetch_token(
        &self,
        ask: &TokenAsk<'_>,
        credentials: &Credentials,
    ) -> Result<FetchedToken, RegistryError> {
        token::fetch(&self.inner.endpoints, ask, credentials).await
    }

    fn challenge(&self, host: &str) -> Option<Challenge> {
        self.inner
            .challenges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(host)
            .cloned()
    }

    fn remember(&self, host: &str, challenge: Challenge) {
        self.inner
            .challenges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(host.to_owned(), challenge);
    }
}
