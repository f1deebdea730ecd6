//! Deciding what `Authorization` a registry request carries, and learning from 401 answers.
//!
//! Each registry host's challenge is remembered once seen, so later requests authenticate
//! up front instead of paying a 401 round trip each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use url::Url;

use crate::RegistryError;
use crate::credentials::Credentials;
use crate::registries::Shared;
use crate::token::{self, TokenAsk, TokenCache, TokenKey};

/// How a registry host asked to be authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: Url,
        service: Option<String>,
        /// Scopes the registry named in its challenge, added to ours on the retry.
        scopes: Vec<String>,
    },
}

#[derive(Default)]
pub(crate) struct AuthState {
    challenges: Mutex<HashMap<String, Challenge>>,
    pub(crate) tokens: TokenCache,
}

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
}

impl AuthState {
    fn challenge(&self, host: &str) -> Option<Challenge> {
        self.challenges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(host)
            .cloned()
    }

    fn remember(&self, host: &str, challenge: Challenge) {
        self.challenges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(host.to_owned(), challenge);
    }
}

/// The Authorization for a request to registry `host` needing `scopes`. `refused_at`: the
/// previous attempt's token was refused then, so only a token fetched later will do.
pub(crate) async fn authorize(
    shared: &Shared,
    host: &str,
    credentials: &Credentials,
    scopes: &[String],
    refused_at: Option<Instant>,
) -> Result<Presented, RegistryError> {
    if let Credentials::RegistryToken(token) = credentials {
        return Ok(Presented::StaticToken(bearer_header(token)?));
    }
    match shared.auth.challenge(host) {
        None => Ok(Presented::None),
        Some(Challenge::Basic) => match credentials {
            Credentials::Basic { username, password } => {
                Ok(Presented::Basic(basic_header(username, password)?))
            }
            _ => Ok(Presented::None),
        },
        Some(Challenge::Bearer { realm, service, .. }) => {
            let key = TokenKey::new(&realm, service.as_deref(), scopes, credentials);
            let value = shared
                .auth
                .tokens
                .get_or_fetch(&key, refused_at, || async {
                    let ask = TokenAsk {
                        registry_host: host,
                        realm: &realm,
                        service: service.as_deref(),
                        scopes,
                        offline: false,
                    };
                    token::fetch(shared, &ask, credentials).await
                })
                .await?;
            let header = bearer_header(&value)?;
            Ok(Presented::Token { key, value, header })
        }
    }
}

/// Learns from a 401. Returns the extra scopes to retry with when a retry can succeed, `None`
/// when it cannot (no credentials for a Basic registry, a static token, the same
/// credentials already refused).
pub(crate) async fn after_unauthorized(
    shared: &Shared,
    host: &str,
    headers: &HeaderMap,
    presented: &Presented,
    credentials: &Credentials,
) -> Option<Vec<String>> {
    let challenge = parse_challenges(headers)?;
    shared.auth.remember(host, challenge.clone());
    match (&challenge, presented) {
        (_, Presented::StaticToken(_)) => None,
        (Challenge::Bearer { scopes, .. }, Presented::Token { key, value, .. }) => {
            // The token expired early or lacks a scope: drop it so that the retry (and every
            // concurrent request that used it) fetches a fresh one.
            shared.auth.tokens.invalidate(key, value).await;
            Some(scopes.clone())
        }
        (Challenge::Bearer { scopes, .. }, _) => Some(scopes.clone()),
        (Challenge::Basic, Presented::Basic(_)) => None,
        (Challenge::Basic, _) => matches!(credentials, Credentials::Basic { .. }).then(Vec::new),
    }
}

/// One challenge of a `WWW-Authenticate` header: its scheme and parameters, names lowercased
/// and values unescaped (`scope="repository:x:pull,push"` keeps its comma).
pub(crate) struct ParsedChallenge {
    pub scheme: String,
    params: HashMap<String, String>,
}

impl ParsedChallenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

/// Every challenge of a response, in order; a header that stops parsing is read up to there.
pub(crate) fn read_challenges(headers: &HeaderMap) -> Vec<ParsedChallenge> {
    let mut out = Vec::new();
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(text) = value.to_str() else { continue };
        for challenge in http_auth::ChallengeParser::new(text) {
            let Ok(challenge) = challenge else { break };
            out.push(ParsedChallenge {
                scheme: challenge.scheme.to_owned(),
                params: challenge
                    .params
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_unescaped()))
                    .collect(),
            });
        }
    }
    out
}

/// Bearer is preferred over Basic when a registry offers both, as containerd does.
pub(crate) fn parse_challenges(headers: &HeaderMap) -> Option<Challenge> {
    let challenges = read_challenges(headers);
    for challenge in challenges.iter().filter(|c| c.is("bearer")) {
        let Some(realm) = challenge.param("realm").and_then(|r| Url::parse(r).ok()) else {
            tracing::debug!("ignoring a Bearer challenge without a usable realm");
            continue;
        };
        if !matches!(realm.scheme(), "http" | "https") {
            continue;
        }
        let scopes = challenge
            .param("scope")
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        return Some(Challenge::Bearer {
            realm,
            service: challenge
                .param("service")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            scopes,
        });
    }
    challenges
        .iter()
        .any(|c| c.is("basic"))
        .then_some(Challenge::Basic)
}

pub(crate) fn basic_header(username: &str, password: &str) -> Result<HeaderValue, RegistryError> {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    sensitive(&format!("Basic {encoded}"))
}

pub(crate) fn bearer_header(token: &str) -> Result<HeaderValue, RegistryError> {
    sensitive(&format!("Bearer {token}"))
}

/// Marks the value sensitive so that hyper's and http's Debug output never show it.
fn sensitive(value: &str) -> Result<HeaderValue, RegistryError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        RegistryError::Config("credentials contain characters not allowed in a header".to_owned())
    })?;
    header.set_sensitive(true);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(WWW_AUTHENTICATE, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn parses_docker_hub_bearer() {
        let c = parse_challenges(&headers(&[
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        ]))
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: Url::parse("https://auth.docker.io/token").unwrap(),
                service: Some("registry.docker.io".into()),
                scopes: vec!["repository:samalba/my-app:pull,push".into()],
            }
        );
    }

    #[test]
    fn prefers_bearer_over_basic_and_reads_several_headers() {
        let c = parse_challenges(&headers(&[
            r#"Basic realm="r""#,
            r#"Bearer realm="https://t/token",service="s""#,
        ]))
        .unwrap();
        assert!(matches!(c, Challenge::Bearer { .. }));
        let c = parse_challenges(&headers(&[
            r#"Basic realm="r", Bearer realm="https://t/token""#,
        ]))
        .unwrap();
        assert!(matches!(c, Challenge::Bearer { .. }));
        assert_eq!(
            parse_challenges(&headers(&[r#"Basic realm="Registry Realm""#])),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenges(&headers(&[])), None);
    }

    #[test]
    fn splits_space_separated_scopes() {
        let c = parse_challenges(&headers(&[
            r#"Bearer realm="https://t/token",scope="repository:a:pull repository:b:pull,push""#,
        ]))
        .unwrap();
        let Challenge::Bearer {
            scopes, service, ..
        } = c
        else {
            panic!("bearer expected")
        };
        assert_eq!(scopes, vec!["repository:a:pull", "repository:b:pull,push"]);
        assert_eq!(service, None);
    }

    #[test]
    fn basic_header_is_sensitive() {
        let h = basic_header("alice", "s3cr3t").unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic YWxpY2U6czNjcjN0");
    }
}
