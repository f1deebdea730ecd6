//! A registry token server (distribution's token auth), on loopback, for tests of token auth
//! against the real registry.
//!
//! It checks Basic credentials against its user table and issues ES256 JWTs signed with a test
//! key whose self-signed certificate travels in the JWT `x5c` header and is the registry's
//! `rootcertbundle`. Each user gets only the actions granted to them (the intersection with what
//! was asked, as real token servers do: the registry then refuses the rest). Tokens are meant to
//! be short-lived: `expires_in` is what clients are told, and the JWT `exp` is set 60 s earlier
//! than the real end because the registry allows 60 s of leeway on it. GET with
//! `offline_token=true` also returns a `refresh_token` (bound to the `client_id`), and the
//! OAuth2 POST grants (`refresh_token`, `password`) are served. Every request is recorded.
//!
//! ```no_run
//! use hoist_testkit::registry::{RegistryOptions, TestRegistry};
//! use hoist_testkit::token_server::{TokenServer, TokenServerOptions};
//! let tokens = TokenServer::start(TokenServerOptions::default());
//! tokens.add_user("alice", "pw", &[("team/*", &["pull", "push"])]);
//! let registry = TestRegistry::start(RegistryOptions { auth: tokens.registry_auth() });
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::registry::RegistryAuth;
use crate::tls::CertPair;

/// The `iss` of every token, and the registry's `issuer`.
pub const ISSUER: &str = "hoist-test-token-issuer";
/// distribution allows this much clock skew on `exp` and `nbf`.
const REGISTRY_LEEWAY_SECS: u64 = 60;

#[derive(Clone, Debug)]
pub struct TokenServerOptions {
    /// The `service` tokens are for (the registry's `service`, the JWT `aud`).
    pub service: String,
    /// The `expires_in` clients are told.
    pub expires_in: Duration,
    /// How long tokens really stay valid at the registry when that should differ from
    /// `expires_in` (a token server whose tokens die early, or get revoked). `None`: as told.
    pub real_lifetime: Option<Duration>,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<CertPair>,
}

impl Default for TokenServerOptions {
    fn default() -> Self {
        TokenServerOptions {
            service: "hoist-test-registry".to_owned(),
            expires_in: Duration::from_secs(60),
            real_lifetime: None,
            tls: None,
        }
    }
}

/// One request the token server answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub method: String,
    pub service: Option<String>,
    /// `scope` parameters (GET) or the space-separated `scope` field split (POST), in order.
    pub scopes: Vec<String>,
    pub offline_token: bool,
    pub client_id: Option<String>,
    /// `grant_type` of a POST.
    pub grant_type: Option<String>,
    /// Whether the request carried an `Authorization` header at all.
    pub authorization: bool,
    /// The user the request authenticated as (Basic, password grant or refresh token).
    pub user: Option<String>,
    pub status: u16,
    /// Actions granted, per scope, in the issued token.
    pub granted: Vec<String>,
    pub at: Instant,
}

struct User {
    password: String,
    /// (repository, or prefix ending in `*`; actions).
    grants: Vec<(String, Vec<String>)>,
}

struct State {
    options: TokenServerOptions,
    cert_der: Vec<u8>,
    signing_key: ring::signature::EcdsaKeyPair,
    users: Mutex<HashMap<String, User>>,
    /// refresh token → (user, client_id it was issued to).
    refresh_tokens: Mutex<HashMap<String, (String, String)>>,
    requests: Mutex<Vec<TokenRequest>>,
    /// Every access token issued, for tests that look for them where they must not be.
    access_tokens: Mutex<Vec<String>>,
}

/// The running token server; stops when dropped.
pub struct TokenServer {
    addr: SocketAddr,
    state: Arc<State>,
    dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TokenServer {
    pub fn start(options: TokenServerOptions) -> TokenServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::KeyPair::generate().expect("generate token signing key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("signing cert params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hoist test token signer");
        let cert = params
            .self_signed(&key)
            .expect("self-sign the token signer");
        let signing_key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .expect("load the token signing key");
        let dir = tempfile::Builder::new()
            .prefix("hoist-token-server-")
            .tempdir()
            .expect("token server dir");
        // A server kept in a static (shared by a test binary) is never dropped.
        crate::process::remove_at_exit(dir.path().to_owned());
        std::fs::write(dir.path().join("rootcertbundle.pem"), cert.pem())
            .expect("write the root cert bundle");

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("token-server")
            .enable_all()
            .build()
            .expect("start the token server's runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the token server port");
        let addr = listener.local_addr().expect("token server address");
        let acceptor = options.tls.as_ref().map(tls_acceptor);
        let state = Arc::new(State {
            options,
            cert_der: cert.der().to_vec(),
            signing_key,
            users: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            access_tokens: Mutex::new(Vec::new()),
        });
        runtime.spawn(accept_loop(listener, acceptor, state.clone()));
        TokenServer {
            addr,
            state,
            dir,
            runtime: Some(runtime),
        }
    }

    /// Adds (or replaces) a user. `grants` are (repository, actions) pairs; a repository ending
    /// in `*` is a prefix (`team/*`).
    pub fn add_user(&self, name: &str, password: &str, grants: &[(&str, &[&str])]) {
        let grants = grants
            .iter()
            .map(|(repo, actions)| {
                (
                    repo.to_string(),
                    actions.iter().map(|a| a.to_string()).collect(),
                )
            })
            .collect();
        self.state.users.lock().expect("users lock").insert(
            name.to_owned(),
            User {
                password: password.to_owned(),
                grants,
            },
        );
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The token endpoint, `http(s)://127.0.0.1:<port>/token`.
    pub fn realm(&self) -> String {
        let scheme = if self.state.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/token", self.addr)
    }

    pub fn service(&self) -> &str {
        &self.state.options.service
    }

    /// The registry configuration that trusts this server's tokens.
    pub fn registry_auth(&self) -> RegistryAuth {
        RegistryAuth::Raw(format!(
            "  token:\n    realm: {}\n    service: {}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.service(),
            self.dir.path().join("rootcertbundle.pem").display()
        ))
    }

    /// A token for `user` with exactly `access` ((repository, actions) pairs), made directly
    /// (not recorded), for the harness's own reads of the registry.
    pub fn issue(&self, user: &str, access: &[(&str, &[&str])]) -> String {
        let access: Vec<(String, Vec<String>)> = access
            .iter()
            .map(|(r, a)| (r.to_string(), a.iter().map(|a| a.to_string()).collect()))
            .collect();
        self.state.sign(user, &access, Duration::from_secs(300))
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    /// Tokens issued so far (answers with status 200).
    pub fn tokens_issued(&self) -> usize {
        self.requests().iter().filter(|r| r.status == 200).count()
    }

    /// Every access token and refresh token issued so far: the secrets a client holds.
    pub fn issued_secrets(&self) -> Vec<String> {
        let mut secrets = self
            .state
            .access_tokens
            .lock()
            .expect("access tokens lock")
            .clone();
        secrets.extend(
            self.state
                .refresh_tokens
                .lock()
                .expect("refresh tokens lock")
                .keys()
                .cloned(),
        );
        secrets
    }

    pub fn reset_requests(&self) {
        self.state.requests.lock().expect("requests lock").clear();
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn tls_acceptor(pair: &CertPair) -> tokio_rustls::TlsAcceptor {
    let certs = vec![rustls::pki_types::CertificateDer::from(
        pair.cert_der.clone(),
    )];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
        .expect("token server key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("token server TLS config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let state = state.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                // A client that rejects our certificate just ends the handshake.
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// What a request asked for, before deciding.
struct Ask {
    service: Option<String>,
    scopes: Vec<String>,
    offline: bool,
    client_id: Option<String>,
    grant_type: Option<String>,
    /// Who is asking, if anyone: Ok(user) when the credentials are right, Err(()) when wrong.
    user: Option<Result<String, ()>>,
    access_type_offline: bool,
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_owned();
    let authorization = req.headers().get(hyper::header::AUTHORIZATION).cloned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if path != "/token" {
        return Ok(reply(404, json!({"details": "not found"})));
    }
    let ask = match method.as_str() {
        "GET" => state.read_get(&query, authorization.as_ref()),
        "POST" => state.read_post(&body),
        _ => return Ok(reply(405, json!({"details": "method not allowed"}))),
    };
    let (status, body, granted) = state.decide(&method, &ask);
    state
        .requests
        .lock()
        .expect("requests lock")
        .push(TokenRequest {
            method,
            service: ask.service.clone(),
            scopes: ask.scopes.clone(),
            offline_token: ask.offline,
            client_id: ask.client_id.clone(),
            grant_type: ask.grant_type.clone(),
            authorization: authorization.is_some(),
            user: ask.user.as_ref().and_then(|u| u.clone().ok()),
            status,
            granted,
            at: Instant::now(),
        });
    Ok(reply(status, body))
}

impl State {
    fn read_get(&self, query: &str, authorization: Option<&http::HeaderValue>) -> Ask {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let user = authorization.map(|value| {
            let text = value.to_str().map_err(|_| ())?;
            let encoded = text.strip_prefix("Basic ").ok_or(())?;
            let decoded = STANDARD.decode(encoded.trim()).map_err(|_| ())?;
            let decoded = String::from_utf8(decoded).map_err(|_| ())?;
            let (user, password) = decoded.split_once(':').ok_or(())?;
            self.check_password(user, password)
        });
        Ask {
            service: get("service"),
            scopes: pairs
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.clone())
                .collect(),
            offline: get("offline_token").as_deref() == Some("true"),
            client_id: get("client_id"),
            grant_type: None,
            user,
            access_type_offline: false,
        }
    }

    fn read_post(&self, body: &[u8]) -> Ask {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let grant_type = get("grant_type");
        let client_id = get("client_id");
        let refresh_token = get("refresh_token");
        let user = match grant_type.as_deref() {
            Some("password") => Some(self.check_password(
                &get("username").unwrap_or_default(),
                &get("password").unwrap_or_default(),
            )),
            Some("refresh_token") => Some(
                refresh_token
                    .as_deref()
                    .and_then(|t| {
                        self.refresh_tokens
                            .lock()
                            .expect("refresh tokens lock")
                            .get(t)
                            .cloned()
                    })
                    // A refresh token is only good for the client it was issued to.
                    .filter(|(_, issued_to)| Some(issued_to) == client_id.as_ref())
                    .map(|(user, _)| user)
                    .ok_or(()),
            ),
            _ => None,
        };
        Ask {
            service: get("service"),
            scopes: get("scope")
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            offline: false,
            client_id,
            grant_type,
            user,
            access_type_offline: get("access_type").as_deref() == Some("offline"),
        }
    }

    fn check_password(&self, user: &str, password: &str) -> Result<String, ()> {
        let users = self.users.lock().expect("users lock");
        match users.get(user) {
            Some(u) if u.password == password => Ok(user.to_owned()),
            _ => Err(()),
        }
    }

    /// (status, body, granted scopes).
    fn decide(&self, method: &str, ask: &Ask) -> (u16, Value, Vec<String>) {
        if ask.service.as_deref() != Some(self.options.service.as_str()) {
            return (
                400,
                json!({"error": "invalid_request", "error_description": "unknown service"}),
                Vec::new(),
            );
        }
        if method == "POST" {
            match ask.grant_type.as_deref() {
                Some("refresh_token") | Some("password") => {}
                _ => {
                    return (400, json!({"error": "unsupported_grant_type"}), Vec::new());
                }
            }
            if ask.client_id.is_none() {
                return (
                    400,
                    json!({"error": "invalid_request", "error_description": "client_id required"}),
                    Vec::new(),
                );
            }
        }
        let user = match &ask.user {
            Some(Ok(user)) => user.clone(),
            Some(Err(())) if ask.grant_type.as_deref() == Some("refresh_token") => {
                return (
                    400,
                    json!({"error": "invalid_grant", "error_description": "invalid refresh token"}),
                    Vec::new(),
                );
            }
            Some(Err(())) => {
                return (
                    401,
                    json!({"details": "incorrect username or password"}),
                    Vec::new(),
                );
            }
            // Anonymous: a token without access.
            None => String::new(),
        };
        let access = self.grant(&user, &ask.scopes);
        let granted = access
            .iter()
            .map(|(repo, actions)| format!("repository:{repo}:{}", actions.join(",")))
            .collect::<Vec<_>>();
        let lifetime = self
            .options
            .real_lifetime
            .unwrap_or(self.options.expires_in);
        let token = self.sign(&user, &access, lifetime);
        self.access_tokens
            .lock()
            .expect("access tokens lock")
            .push(token.clone());
        let issued_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let expires_in = self.options.expires_in.as_secs();
        let mut body = if method == "POST" {
            json!({
                "access_token": token,
                "expires_in": expires_in,
                "issued_at": issued_at,
                "scope": granted.join(" "),
            })
        } else {
            json!({
                "token": token,
                "access_token": token,
                "expires_in": expires_in,
                "issued_at": issued_at,
            })
        };
        let wants_refresh = !user.is_empty()
            && match ask.grant_type.as_deref() {
                None => ask.offline,
                Some("password") => ask.access_type_offline,
                // The client keeps the refresh token it has.
                _ => false,
            };
        if wants_refresh {
            let refresh = random_hex(24);
            self.refresh_tokens
                .lock()
                .expect("refresh tokens lock")
                .insert(
                    refresh.clone(),
                    (user.clone(), ask.client_id.clone().unwrap_or_default()),
                );
            body["refresh_token"] = Value::String(refresh);
        }
        (200, body, granted)
    }

    /// The intersection of what `user` may do with what `scopes` ask, per repository.
    fn grant(&self, user: &str, scopes: &[String]) -> Vec<(String, Vec<String>)> {
        let users = self.users.lock().expect("users lock");
        let grants = users.get(user).map(|u| u.grants.as_slice()).unwrap_or(&[]);
        let mut access = Vec::new();
        for scope in scopes {
            let Some(rest) = scope.strip_prefix("repository:") else {
                continue;
            };
            let Some((repo, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            let allowed: Vec<String> = actions
                .split(',')
                .filter(|action| {
                    grants.iter().any(|(pattern, granted)| {
                        repo_matches(pattern, repo) && granted.iter().any(|g| g == action)
                    })
                })
                .map(str::to_owned)
                .collect();
            access.push((repo.to_owned(), allowed));
        }
        access
    }

    /// An ES256 JWT valid at the registry for `lifetime` from now.
    fn sign(&self, subject: &str, access: &[(String, Vec<String>)], lifetime: Duration) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        // Rounded up to the next whole second, so a token lasts at least `lifetime`.
        let end = now + 1 + lifetime.as_secs();
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": self.options.service,
            "exp": end - REGISTRY_LEEWAY_SECS,
            "nbf": now.saturating_sub(1),
            "iat": now,
            "jti": random_hex(16),
            "access": access
                .iter()
                .map(|(name, actions)| json!({"type": "repository", "name": name, "actions": actions}))
                .collect::<Vec<_>>(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .signing_key
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .expect("sign token");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

fn repo_matches(pattern: &str, repo: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => repo.starts_with(prefix),
        None => pattern == repo,
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("token server response")
}
