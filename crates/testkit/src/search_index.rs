//! A stand-in for Docker Hub's v1 search API, on loopback over plain HTTP.
//!
//! No registry on this machine implements v1 search (CNCF distribution's `docker-registry`
//! speaks only the v2 API and answers 404), so the positive path of `/images/search` is tested
//! against this server. It answers `GET /v1/search?q=<term>&n=<limit>` as Docker Hub does: the
//! repositories whose name contains the term, at most `n` (25 without it), in Docker Hub's JSON
//! shape including the fields moby ignores (`is_trusted`, paging). `GET /v1/_ping` answers like
//! a standalone index. With `credentials` set, a search without those Basic credentials gets
//! a 401 with a Basic challenge. Every search is recorded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One repository the index knows.
#[derive(Clone, Debug)]
pub struct IndexedRepository {
    pub name: String,
    pub description: String,
    pub star_count: u64,
    pub is_official: bool,
    /// Sent as Docker Hub sends it; moby reports every result as not automated.
    pub is_automated: bool,
}

impl IndexedRepository {
    pub fn new(name: &str, description: &str, star_count: u64, is_official: bool) -> Self {
        IndexedRepository {
            name: name.to_owned(),
            description: description.to_owned(),
            star_count,
            is_official,
            is_automated: false,
        }
    }

    pub fn automated(mut self) -> Self {
        self.is_automated = true;
        self
    }
}

#[derive(Clone, Debug, Default)]
pub struct SearchIndexOptions {
    pub repositories: Vec<IndexedRepository>,
    /// Basic credentials every search must carry.
    pub credentials: Option<(String, String)>,
}

/// One search the index answered.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    /// `q`, decoded.
    pub term: String,
    /// `n` as sent.
    pub limit: Option<String>,
    /// The Basic user the request carried, if any.
    pub user: Option<String>,
    pub status: u16,
}

struct State {
    options: SearchIndexOptions,
    queries: Mutex<Vec<SearchQuery>>,
}

/// The running index; stops when dropped.
pub struct SearchIndex {
    addr: SocketAddr,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl SearchIndex {
    pub fn start(options: SearchIndexOptions) -> SearchIndex {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("search-index")
            .enable_all()
            .build()
            .expect("start the search index's runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the search index port");
        let addr = listener.local_addr().expect("search index address");
        let state = Arc::new(State {
            options,
            queries: Mutex::new(Vec::new()),
        });
        runtime.spawn(accept_loop(listener, state.clone()));
        SearchIndex {
            addr,
            state,
            _runtime: runtime,
        }
    }

    /// `localhost:PORT`: a term starting with it names this index, and moby (like hoist)
    /// treats loopback registries as insecure, so plain HTTP is used.
    pub fn host(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// The searches answered so far, in order.
    pub fn queries(&self) -> Vec<SearchQuery> {
        self.state
            .queries
            .lock()
            .expect("search index queries lock")
            .clone()
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    while let Ok((stream, _)) = listener.accept().await {
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if path == "/v1/_ping" {
        return Ok(reply(200, json!({"standalone": true})));
    }
    if path != "/v1/search" {
        return Ok(reply(404, json!({"detail": "Not Found"})));
    }
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let term = param("q").unwrap_or_default();
    let limit = param("n");
    let user_pass = basic_credentials(&req);
    let user = user_pass.as_ref().map(|(u, _)| u.clone());
    let authorized = match &state.options.credentials {
        None => true,
        Some(wanted) => user_pass.as_ref() == Some(wanted),
    };
    let response = if !authorized {
        let mut r = reply(
            401,
            json!({"detail": "Authentication credentials were not provided."}),
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"search\""),
        );
        r
    } else {
        let page_size: usize = limit.as_deref().and_then(|n| n.parse().ok()).unwrap_or(25);
        let needle = term.to_lowercase();
        let found: Vec<Value> = state
            .options
            .repositories
            .iter()
            .filter(|r| r.name.to_lowercase().contains(&needle))
            .take(page_size)
            .map(|r| {
                json!({
                    "star_count": r.star_count,
                    "is_official": r.is_official,
                    "name": r.name,
                    "is_automated": r.is_automated,
                    "is_trusted": r.is_automated,
                    "description": r.description,
                })
            })
            .collect();
        reply(
            200,
            json!({
                "num_pages": 1,
                "num_results": found.len(),
                "results": found,
                "page_size": page_size,
                "query": term,
                "page": 1,
            }),
        )
    };
    state
        .queries
        .lock()
        .expect("search index queries lock")
        .push(SearchQuery {
            term,
            limit,
            user,
            status: response.status().as_u16(),
        });
    Ok(response)
}

fn basic_credentials(req: &Request<Incoming>) -> Option<(String, String)> {
    let value = req
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("search index response")
}
