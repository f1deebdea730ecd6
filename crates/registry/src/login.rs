//! `docker login`: checking credentials against a registry the way dockerd does.
//!
//! `GET /v2/` anonymously; a Basic challenge is answered with the credentials, a Bearer one by
//! getting a token with them, asking for an offline token (`offline_token=true&client_id=docker`)
//! so that the token server's `refresh_token` can become the client's identity token. An identity
//! token given as the credentials is exchanged with the OAuth2 refresh grant instead. The token
//! is then shown to `GET /v2/`, which must accept it.

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, StatusCode};

use crate::RegistryError;
use crate::auth::{Auth, TokenAsk, basic_header, bearer_header};
use crate::challenge::Challenge;
use crate::credentials::Credentials;
use crate::endpoint::api_host;
use crate::error::from_response;
use crate::registries::Registries;
use crate::transport::{Call, Target, Transport};

/// A successful login.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    /// The refresh token to keep instead of the password (dockerd's `IdentityToken`), when the
    /// registry's token server gave one.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for LoginOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginOutcome")
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A failed login, naming the endpoint as dockerd does (`Get "https://host/v2/": …`).
#[derive(Debug, thiserror::Error)]
#[error("Get \"{url}\": {source}")]
pub struct LoginError {
    pub url: String,
    #[source]
    pub source: RegistryError,
}

impl LoginError {
    /// The registry or its token server refused the credentials.
    pub fn is_unauthorized(&self) -> bool {
        self.source.is_unauthorized()
    }
}

impl Registries {
    /// Checks `credentials` against the registry at `domain` (a reference domain: `docker.io`
    /// means Docker Hub's registry host).
    pub async fn login(
        &self,
        domain: &str,
        credentials: &Credentials,
    ) -> Result<LoginOutcome, LoginError> {
        let host = api_host(domain);
        let transport = self.transport(host.clone(), Credentials::Anonymous, Vec::new());
        match log_in(self.auth(), &transport, &host, credentials).await {
            Ok(outcome) => Ok(outcome),
            Err(source) => Err(LoginError {
                url: transport.url_text("/v2/").await,
                source,
            }),
        }
    }
}

fn ping() -> Call<'static> {
    Call::new(
        "log in to",
        Method::GET,
        Target::Registry("/v2/".to_owned()),
    )
}

async fn log_in(
    auth: &Auth,
    transport: &Transport,
    host: &str,
    credentials: &Credentials,
) -> Result<LoginOutcome, RegistryError> {
    let response = transport.send_unauthenticated(ping()).await?;
    if response.status().is_success() {
        // As dockerd: a registry that lets anyone in accepts any credentials.
        return Ok(LoginOutcome {
            identity_token: None,
        });
    }
    if response.status() != StatusCode::UNAUTHORIZED {
        return Err(from_response(response, "GET", false).await);
    }
    let (header, identity_token) = match Challenge::from_headers(response.headers()) {
        Some(Challenge::Bearer {
            realm,
            service,
            scopes,
        }) => {
            let ask = TokenAsk {
                registry_host: host,
                realm: &realm,
                service: service.as_deref(),
                scopes: &scopes,
                offline: true,
            };
            let fetched = auth.fetch_token(&ask, credentials).await?;
            let identity = fetched.refresh_token.clone().or_else(|| match credentials {
                // The server kept the refresh token it was given: it stays the identity.
                Credentials::IdentityToken(token) => Some(token.clone()),
                _ => None,
            });
            (bearer_header(&fetched.value)?, identity)
        }
        Some(Challenge::Basic) => match credentials {
            Credentials::Basic { username, password } => (basic_header(username, password)?, None),
            // Nothing to answer a Basic challenge with: the registry's refusal stands.
            _ => return Err(from_response(response, "GET", false).await),
        },
        None => return Err(from_response(response, "GET", false).await),
    };
    let mut call = ping();
    call.headers.insert(AUTHORIZATION, header);
    let response = transport.send_unauthenticated(call).await?;
    if !response.status().is_success() {
        return Err(from_response(response, "GET", false).await);
    }
    Ok(LoginOutcome { identity_token })
}
