//! Fetching a bearer token from a registry's token server: GET with Basic credentials, or the
//! OAuth2 refresh grant (POST) for identity tokens, and how long the answer stays usable.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use crate::RegistryError;
use crate::credentials::Credentials;
use crate::endpoint::Endpoints;
use crate::error::from_response;
use crate::http_util::{url_host, without_query};

/// What the token spec says a token lasts when the server does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// The longest life believed: a token is renewed at least daily, whatever `expires_in` says, so
/// a hostile or broken token server cannot push the renewal time past what a clock can hold.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// A token response is a small JSON document (a JWT is a few KiB); anything larger is refused
/// rather than held in memory.
const MAX_TOKEN_RESPONSE_BYTES: usize = 1 << 20;
/// Refresh this long before expiry at most: the request using the token must still arrive
/// while it is valid.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// dockerd's client id. Token servers may bind refresh tokens to the client they were issued
/// to, and identity tokens come from `docker login` through dockerd (or through us, with the
/// same id), so the refresh grant must name the same client.
const CLIENT_ID: &str = "docker";

pub(crate) struct FetchedToken {
    pub(crate) value: String,
    /// When to fetch a new one: some time before it expires.
    pub(crate) refresh_at: Instant,
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
    endpoints: &Endpoints,
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
    let client = endpoints
        .token_server(registry_host, &realm_host)
        .await?
        .client
        .clone();
    tracing::debug!(realm = %without_query(realm), ?scopes, "fetching registry token");
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
    read_token_response(response)
        .await
        .and_then(|bytes| parse_token_response(&bytes, received))
        .map_err(|message| {
            RegistryError::invalid_response("fetch token from", &realm_host, message)
        })
}

/// Reads the token server's JSON answer, `received` when it arrived.
pub(crate) fn parse_token_response(
    bytes: &[u8],
    received: Instant,
) -> Result<FetchedToken, String> {
    let body: TokenResponse =
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable token response: {e}"))?;
    let value = body
        .token
        .filter(|t| !t.is_empty())
        .or(body.access_token.filter(|t| !t.is_empty()))
        .ok_or("token server returned no token")?;
    let lifetime = remaining_lifetime(body.expires_in, body.issued_at.as_deref());
    Ok(FetchedToken {
        value,
        refresh_at: received + (lifetime - refresh_margin(lifetime)),
        refresh_token: body.refresh_token.filter(|t| !t.is_empty()),
    })
}

/// The body of a token response, refused once it grows past [`MAX_TOKEN_RESPONSE_BYTES`].
async fn read_token_response(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_large = || format!("token response is larger than {MAX_TOKEN_RESPONSE_BYTES} bytes");
    if response
        .content_length()
        .is_some_and(|length| length > MAX_TOKEN_RESPONSE_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("unreadable token response: {e}"))?
    {
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds).min(MAX_LIFETIME),
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
    fn an_endless_lifetime_is_capped_and_renewal_time_computable() {
        let lifetime = remaining_lifetime(Some(u64::MAX), None);
        assert_eq!(lifetime, MAX_LIFETIME);
        let received = Instant::now();
        let refresh_at = received + (lifetime - refresh_margin(lifetime));
        assert!(refresh_at > received);
    }

    /// A response with `body`, its length declared, or streamed in 64 KiB chunks of unknown
    /// total length.
    fn response(body: Vec<u8>, declared: bool) -> reqwest::Response {
        let builder = http::Response::builder().status(200);
        let response = if declared {
            builder.body(reqwest::Body::from(body))
        } else {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
            builder.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
        };
        reqwest::Response::from(response.expect("a response"))
    }

    #[tokio::test]
    async fn a_token_response_is_read_up_to_its_bound() {
        let within = format!(
            r#"{{"token":"{}"}}"#,
            "a".repeat(MAX_TOKEN_RESPONSE_BYTES - 20)
        );
        let read = read_token_response(response(within.clone().into_bytes(), true)).await;
        assert_eq!(read.as_deref(), Ok(within.as_bytes()));
        let over = vec![b' '; MAX_TOKEN_RESPONSE_BYTES + 1];
        for declared in [true, false] {
            let error = read_token_response(response(over.clone(), declared))
                .await
                .expect_err("an oversized token response is refused");
            assert_eq!(error, "token response is larger than 1048576 bytes");
        }
    }

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
}
