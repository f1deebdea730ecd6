//! `WWW-Authenticate` challenges: how a registry asks to be authenticated, and the RFC 6750
//! error a Bearer challenge reports when it refuses a token.

use std::collections::HashMap;

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use url::Url;

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

impl Challenge {
    /// The challenge to answer. Bearer is preferred over Basic when a registry offers both, as
    /// containerd does.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Challenge> {
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
}

/// Why a Bearer challenge refused the request (its `error` parameter, RFC 6750).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BearerRefusal {
    /// `invalid_token`: the token is expired, revoked or malformed.
    InvalidToken,
    /// `insufficient_scope`: the token does not grant what the request needs.
    InsufficientScope,
}

/// The first Bearer challenge that names a refusal, with what it says about it.
pub(crate) struct BearerError {
    pub(crate) refusal: BearerRefusal,
    /// `error_description`, as sent (possibly empty).
    pub(crate) description: Option<String>,
    /// `scope`: what the request needed, as sent (possibly empty).
    pub(crate) scope: Option<String>,
}

impl BearerError {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<BearerError> {
        read_challenges(headers)
            .into_iter()
            .filter(|c| c.is("bearer"))
            .find_map(|mut challenge| {
                let refusal = match challenge.param("error") {
                    Some("invalid_token") => BearerRefusal::InvalidToken,
                    Some("insufficient_scope") => BearerRefusal::InsufficientScope,
                    _ => return None,
                };
                Some(BearerError {
                    refusal,
                    description: challenge.params.remove("error_description"),
                    scope: challenge.params.remove("scope"),
                })
            })
    }
}

/// One challenge of a `WWW-Authenticate` header: its scheme and parameters, names lowercased
/// and values unescaped (`scope="repository:x:pull,push"` keeps its comma).
struct ParsedChallenge {
    scheme: String,
    params: HashMap<String, String>,
}

impl ParsedChallenge {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

/// Every challenge of a response, in order; a header that stops parsing is read up to there.
fn read_challenges(headers: &HeaderMap) -> Vec<ParsedChallenge> {
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
        let c = Challenge::from_headers(&headers(&[
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
        let c = Challenge::from_headers(&headers(&[
            r#"Basic realm="r""#,
            r#"Bearer realm="https://t/token",service="s""#,
        ]))
        .unwrap();
        assert!(matches!(c, Challenge::Bearer { .. }));
        let c = Challenge::from_headers(&headers(&[
            r#"Basic realm="r", Bearer realm="https://t/token""#,
        ]))
        .unwrap();
        assert!(matches!(c, Challenge::Bearer { .. }));
        assert_eq!(
            Challenge::from_headers(&headers(&[r#"Basic realm="Registry Realm""#])),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::from_headers(&headers(&[])), None);
    }

    #[test]
    fn splits_space_separated_scopes() {
        let c = Challenge::from_headers(&headers(&[
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
    fn reads_the_refusal_of_a_bearer_challenge() {
        let error = BearerError::from_headers(&headers(&[
            r#"Basic realm="r""#,
            r#"Bearer realm="https://a/token",scope="repository:x:push",error="insufficient_scope""#,
        ]))
        .unwrap();
        assert_eq!(error.refusal, BearerRefusal::InsufficientScope);
        assert_eq!(error.scope.as_deref(), Some("repository:x:push"));
        assert_eq!(error.description, None);
        assert!(BearerError::from_headers(&headers(&[r#"Bearer realm="https://a/t""#])).is_none());
    }
}
