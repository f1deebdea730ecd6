//! Sending requests to one registry on behalf of one repository handle: scheme choice with the
//! insecure-registry HTTP fallback, credentials only for the registry's own origin, and one
//! re-authentication after a 401.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::OnceCell;
use url::Url;

use crate::RegistryError;
use crate::auth::{Auth, Presented};
use crate::credentials::Credentials;
use crate::endpoint::{Endpoint, Endpoints, ProxyRules, Scheme};
use crate::http_util::{url_host, without_query};

/// Where a request goes.
pub(crate) enum Target {
    /// A path (and query) on the registry itself, e.g. `/v2/foo/blobs/uploads/`.
    Registry(String),
    /// An absolute URL the registry handed out (upload `Location`), possibly on another host.
    Url(Url),
}

/// A request whose body can be rebuilt, so it can be re-sent after a 401 or a scheme fallback.
pub(crate) struct Call<'a> {
    /// Names the step in errors and logs, e.g. "HEAD blob".
    pub(crate) operation: &'static str,
    pub(crate) method: Method,
    pub(crate) target: Target,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    /// Scopes beyond the repository's own, such as the source of a mount.
    pub(crate) extra_scopes: &'a [String],
}

impl<'a> Call<'a> {
    pub(crate) fn new(operation: &'static str, method: Method, target: Target) -> Call<'a> {
        Call {
            operation,
            method,
            target,
            headers: HeaderMap::new(),
            body: None,
            extra_scopes: &[],
        }
    }
}

/// A request whose body can be sent only once (a range of a blob file), without its body.
pub(crate) struct OneShot {
    pub(crate) operation: &'static str,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    /// Set on the second attempt: when the first one's token was refused.
    pub(crate) refused_at: Option<Instant>,
}

/// A [`OneShot`] with its credentials attached, for the caller to send with its body.
pub(crate) struct Ready {
    pub(crate) operation: &'static str,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    /// The registry's client, for a body reqwest sends.
    pub(crate) client: reqwest::Client,
    /// The proxy rules that client follows.
    pub(crate) proxy: Arc<ProxyRules>,
}

/// The answer to a [`OneShot`].
pub(crate) struct OneShotResponse {
    pub(crate) response: Response,
    /// The registry refused the token it was shown (at this instant): sending the body again,
    /// once, with a token fetched since may succeed.
    pub(crate) token_refused_at: Option<Instant>,
}

pub(crate) struct Transport {
    endpoints: Endpoints,
    auth: Auth,
    /// The host actually contacted (`registry-1.docker.io` for `docker.io`).
    host: String,
    credentials: Credentials,
    /// The repository's own scope first: some registries only look at the first one.
    scopes: Vec<String>,
    /// The endpoint this operation set up on its first request: it keeps it to the end, so a
    /// reload or a certs.d change applies from the next operation on.
    endpoint: OnceCell<Arc<Endpoint>>,
}

impl Transport {
    pub(crate) fn new(
        endpoints: Endpoints,
        auth: Auth,
        host: String,
        credentials: Credentials,
        scopes: Vec<String>,
    ) -> Transport {
        Transport {
            endpoints,
            auth,
            host,
            credentials,
            scopes,
            endpoint: OnceCell::new(),
        }
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    async fn endpoint(&self) -> Result<Arc<Endpoint>, RegistryError> {
        let endpoint = self
            .endpoint
            .get_or_try_init(|| self.endpoints.registry(&self.host))
            .await?;
        Ok(endpoint.clone())
    }

    /// Sends a request with a rebuildable body and returns the response whatever its status.
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Response, RegistryError> {
        let endpoint = self.endpoint().await?;
        let mut scopes = self.scopes.clone();
        push_unique(&mut scopes, call.extra_scopes.iter().cloned());
        let mut reauthenticated = false;
        let mut refused_at = None;
        loop {
            let for_registry = match &call.target {
                Target::Registry(_) => true,
                Target::Url(url) => endpoint.is_origin_of(url),
            };
            let presented = if for_registry {
                self.auth
                    .authorize(&self.host, &self.credentials, &scopes, refused_at)
                    .await?
            } else {
                Presented::None
            };
            let response = match &call.target {
                Target::Registry(path) => {
                    self.send_to_registry(&endpoint, path, &call, &presented)
                        .await?
                }
                Target::Url(url) => {
                    let request = build(&endpoint, &call, url.clone(), &presented);
                    log_request(call.operation, &call.method, url);
                    request.send().await.map_err(|e| {
                        RegistryError::transport(call.operation, url_host(url), e, false)
                    })?
                }
            };
            tracing::debug!(
                operation = call.operation,
                status = response.status().as_u16(),
                "registry response"
            );
            if response.status() == StatusCode::UNAUTHORIZED && for_registry && !reauthenticated {
                let retry = self.after_unauthorized(&response, &presented).await;
                if let Some(extra) = retry {
                    push_unique(&mut scopes, extra);
                    reauthenticated = true;
                    if presented.is_renewable_token() {
                        refused_at = Some(Instant::now());
                        self.auth.token_renewed(&self.host, call.operation);
                    }
                    continue;
                }
            }
            return Ok(response);
        }
    }

    /// Sends `call` to the registry as it is: its own headers, no credentials added, no retry
    /// after a 401. For login, which answers the challenge itself.
    pub(crate) async fn send_unauthenticated(
        &self,
        call: Call<'_>,
    ) -> Result<Response, RegistryError> {
        let endpoint = self.endpoint().await?;
        let Target::Registry(path) = &call.target else {
            return Err(RegistryError::Config(
                "an unauthenticated request must go to the registry itself".to_owned(),
            ));
        };
        self.send_to_registry(&endpoint, path, &call, &Presented::None)
            .await
    }

    /// `scheme://host<path>` as the registry is (or would first be) reached, for messages.
    pub(crate) async fn url_text(&self, path: &str) -> String {
        let scheme = match self.endpoint().await {
            Ok(endpoint) => endpoint.scheme().unwrap_or(Scheme::Https),
            Err(_) => Scheme::Https,
        };
        format!("{}://{}{path}", scheme.as_str(), self.host)
    }

    /// Sends a request whose body cannot be rebuilt here: credentials are attached and `send`
    /// sends it with its body. It is not re-sent from here: after a 401 that a fresh token may
    /// answer, the auth state is renewed and the answer says so, and the caller sends the body
    /// again once.
    pub(crate) async fn send_once<F, Fut>(
        &self,
        request: OneShot,
        send: F,
    ) -> Result<OneShotResponse, RegistryError>
    where
        F: FnOnce(Ready) -> Fut,
        Fut: Future<Output = Result<Response, RegistryError>>,
    {
        let OneShot {
            operation,
            method,
            url,
            mut headers,
            refused_at,
        } = request;
        let endpoint = self.endpoint().await?;
        let for_registry = endpoint.is_origin_of(&url);
        let presented = if for_registry {
            self.auth
                .authorize(&self.host, &self.credentials, &self.scopes, refused_at)
                .await?
        } else {
            Presented::None
        };
        if let Some(value) = presented.header() {
            headers.insert(AUTHORIZATION, value.clone());
        }
        log_request(operation, &method, &url);
        let response = send(Ready {
            operation,
            method,
            url,
            headers,
            client: endpoint.client.clone(),
            proxy: endpoint.proxy.clone(),
        })
        .await?;
        tracing::debug!(
            operation,
            status = response.status().as_u16(),
            "registry response"
        );
        let mut token_refused_at = None;
        if response.status() == StatusCode::UNAUTHORIZED && for_registry {
            let retry = self.after_unauthorized(&response, &presented).await;
            // Only a token can be renewed; refused Basic credentials stay refused.
            if retry.is_some() && presented.is_renewable_token() {
                token_refused_at = Some(Instant::now());
                // The caller sends the body again once, only after a first refusal.
                if refused_at.is_none() {
                    self.auth.token_renewed(&self.host, operation);
                }
            }
        }
        Ok(OneShotResponse {
            response,
            token_refused_at,
        })
    }

    /// Learns from a 401 to a request that carried `presented`: the extra scopes to retry with,
    /// or `None` when a retry cannot succeed.
    async fn after_unauthorized(
        &self,
        response: &Response,
        presented: &Presented,
    ) -> Option<Vec<String>> {
        self.auth
            .after_unauthorized(&self.host, response.headers(), presented, &self.credentials)
            .await
    }

    /// Picks the scheme: the remembered one, or for an insecure host HTTPS first and plain HTTP
    /// when HTTPS fails before any response (a plain-HTTP server rejects the TLS hello at once).
    async fn send_to_registry(
        &self,
        endpoint: &Endpoint,
        path: &str,
        call: &Call<'_>,
        presented: &Presented,
    ) -> Result<Response, RegistryError> {
        let attempt = |url: Url| {
            log_request(call.operation, &call.method, &url);
            build(endpoint, call, url, presented).send()
        };
        if let Some(scheme) = endpoint.scheme() {
            return attempt(registry_url(scheme, &endpoint.host, path)?)
                .await
                .map_err(|e| RegistryError::transport(call.operation, &endpoint.host, e, false));
        }
        if endpoint.https_never_answers().await {
            tracing::debug!(host = %endpoint.host, "the TLS handshake timed out on an insecure registry; using plain HTTP");
            let response = attempt(registry_url(Scheme::Http, &endpoint.host, path)?)
                .await
                .map_err(|e| RegistryError::transport(call.operation, &endpoint.host, e, false))?;
            endpoint.remember(Scheme::Http);
            return Ok(response);
        }
        let https_error = match attempt(registry_url(Scheme::Https, &endpoint.host, path)?).await {
            Ok(response) => {
                endpoint.remember(Scheme::Https);
                return Ok(response);
            }
            Err(e) if endpoint.insecure && (e.is_connect() || e.is_timeout()) => e,
            Err(e) => {
                return Err(RegistryError::transport(
                    call.operation,
                    &endpoint.host,
                    e,
                    false,
                ));
            }
        };
        tracing::debug!(host = %endpoint.host, error = %https_error, "HTTPS failed on an insecure registry; trying plain HTTP");
        match attempt(registry_url(Scheme::Http, &endpoint.host, path)?).await {
            Ok(response) => {
                endpoint.remember(Scheme::Http);
                Ok(response)
            }
            Err(http_error) => {
                let https =
                    RegistryError::transport(call.operation, &endpoint.host, https_error, false);
                let mut error =
                    RegistryError::transport(call.operation, &endpoint.host, http_error, false);
                if let (
                    RegistryError::Transport { cause, .. },
                    RegistryError::Transport {
                        cause: https_cause, ..
                    },
                ) = (&mut error, &https)
                {
                    *cause = format!("HTTPS: {https_cause}; plain HTTP: {cause}");
                }
                Err(error)
            }
        }
    }
}

fn build(
    endpoint: &Endpoint,
    call: &Call<'_>,
    url: Url,
    presented: &Presented,
) -> reqwest::RequestBuilder {
    let mut request = endpoint
        .client
        .request(call.method.clone(), url)
        .headers(call.headers.clone());
    if let Some(value) = presented.header() {
        request = request.header(AUTHORIZATION, value.clone());
    }
    match &call.body {
        Some(body) => request.body(body.clone()),
        // Some registries answer 411 to a body-less POST or PUT without it.
        None if matches!(call.method, Method::POST | Method::PUT | Method::PATCH) => {
            request.header(CONTENT_LENGTH, 0)
        }
        None => request,
    }
}

fn registry_url(scheme: Scheme, host: &str, path: &str) -> Result<Url, RegistryError> {
    let text = format!("{}://{}{}", scheme.as_str(), host, path);
    Url::parse(&text)
        .map_err(|e| RegistryError::Config(format!("invalid registry URL {text}: {e}")))
}

fn log_request(operation: &str, method: &Method, url: &Url) {
    tracing::debug!(operation, %method, url = %without_query(url), "registry request");
}

fn push_unique(scopes: &mut Vec<String>, extra: impl IntoIterator<Item = String>) {
    for scope in extra {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
}
