//! A fault-injecting, observing HTTP/1.1 proxy in front of the real registry.
//!
//! In-process, on its own tokio runtime. Keep-alive both ways; bodies are streamed frame by frame
//! in both directions (never buffered whole). The client's `Host` header is forwarded unchanged:
//! distribution builds absolute `Location` URLs from it, so they keep pointing at the proxy.
//!
//! hoist tries HTTPS first on loopback registries, so a connection whose first byte is a TLS
//! handshake record (0x16) gets `400 Bad Request` and is closed at once instead of hanging.
//!
//! ```no_run
//! use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule};
//! use hoist_testkit::registry::TestRegistry;
//! let registry = TestRegistry::shared();
//! let proxy = FaultProxy::start(format!("127.0.0.1:{}", registry.port()).parse().unwrap());
//! proxy.add_rule(FaultRule::new("PUT", "/blobs/uploads/", FaultAction::status(503)).once());
//! // push to proxy.host() …
//! ```

mod body;
mod observe;
mod rules;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

use body::{BoxError, ChannelBody, CutBody, EndingBody, ProxyBody, empty, full};
pub use observe::RequestRecord;
use observe::{Observations, query_param};
pub use rules::{FaultAction, FaultRule, RuleId};
use rules::{RuleSlot, take_actions};

/// The proxy; stops (dropping every connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    upstream: SocketAddr,
    client: Client<HttpConnector, ProxyBody>,
    rules: Mutex<Vec<RuleSlot>>,
    next_rule: AtomicU64,
    seen: Mutex<Observations>,
    /// Woken whenever an upload body starts.
    upload_started: Notify,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("start the proxy's tokio runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let client = {
            let _entered = runtime.enter();
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build_http()
        };
        let shared = Arc::new(Shared {
            upstream,
            client,
            rules: Mutex::new(Vec::new()),
            next_rule: AtomicU64::new(0),
            seen: Mutex::new(Observations::default()),
            upload_started: Notify::new(),
        });
        runtime.spawn(accept_loop(listener, shared.clone()));
        FaultProxy {
            addr,
            upstream,
            shared,
            runtime: Some(runtime),
        }
    }

    /// A proxy in front of `registry`.
    pub fn in_front_of(registry: &crate::registry::TestRegistry) -> FaultProxy {
        FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], registry.port())))
    }

    /// `127.0.0.1:<port>`, the registry part of image names pushed through the proxy.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    // ---- rules ----

    pub fn add_rule(&self, rule: FaultRule) -> RuleId {
        let id = RuleId(self.shared.next_rule.fetch_add(1, Ordering::Relaxed));
        self.shared
            .rules
            .lock()
            .expect("rules lock")
            .push(RuleSlot {
                id,
                remaining: rule.times,
                rule,
                hits: 0,
            });
        id
    }

    pub fn remove_rule(&self, id: RuleId) {
        self.shared
            .rules
            .lock()
            .expect("rules lock")
            .retain(|slot| slot.id != id);
    }

    pub fn clear_rules(&self) {
        self.shared.rules.lock().expect("rules lock").clear();
    }

    /// How many requests the rule has applied to so far (0 once removed).
    pub fn rule_hits(&self, id: RuleId) -> usize {
        self.shared
            .rules
            .lock()
            .expect("rules lock")
            .iter()
            .find(|slot| slot.id == id)
            .map_or(0, |slot| slot.hits)
    }

    // ---- observations ----

    fn seen<T>(&self, read: impl FnOnce(&Observations) -> T) -> T {
        read(&self.shared.seen.lock().expect("observations lock"))
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.seen(|s| s.requests.clone())
    }

    /// Completed uploads of `digest`: `PUT …?digest=<digest>` answered 201 by the registry.
    pub fn completed_uploads(&self, digest: &str) -> usize {
        self.seen(|s| s.uploads.get(digest).copied().unwrap_or(0))
    }

    /// Completed uploads per digest.
    pub fn upload_counts(&self) -> HashMap<String, usize> {
        self.seen(|s| s.uploads.clone())
    }

    /// Successful cross-repository mounts of `digest` (`POST …?mount=<digest>` answered 201).
    pub fn mounts(&self, digest: &str) -> usize {
        self.seen(|s| s.mounts.get(digest).copied().unwrap_or(0))
    }

    pub fn mount_counts(&self) -> HashMap<String, usize> {
        self.seen(|s| s.mounts.clone())
    }

    /// The most upload bodies (PUT/PATCH with a non-empty body) in flight at once so far.
    pub fn max_uploads_in_flight(&self) -> usize {
        self.seen(|s| s.max_uploads_in_flight)
    }

    /// Requests whose exchange has not ended: a client that left one open mid-way holds it.
    pub fn open_requests(&self) -> usize {
        self.seen(|s| s.requests.iter().filter(|r| r.ended.is_none()).count())
    }

    pub fn uploads_in_flight(&self) -> usize {
        self.seen(|s| s.uploads_in_flight)
    }

    /// When the last byte of an upload body arrived.
    pub fn last_upload_byte_at(&self) -> Option<Instant> {
        self.seen(|s| s.last_upload_byte)
    }

    /// Total upload-body bytes received (PUT and PATCH).
    pub fn upload_bytes(&self) -> u64 {
        self.seen(|s| s.upload_bytes)
    }

    /// Connections refused because they opened with a TLS handshake.
    pub fn tls_hellos_refused(&self) -> usize {
        self.seen(|s| s.tls_hellos_refused)
    }

    /// Forgets everything observed (rules stay).
    pub fn reset_observations(&self) {
        self.shared.seen.lock().expect("observations lock").reset();
    }

    /// Waits until `condition` holds on the request log (polling), or panics after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&[RequestRecord]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !condition(&self.requests()) {
            if Instant::now() > deadline {
                panic!(
                    "proxy: timed out after {timeout:?} waiting for {what}; requests: {:#?}",
                    self.requests()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Does not block, so it is also safe when dropped inside an async test.
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(serve_connection(stream, shared.clone()));
    }
}

const TLS_HANDSHAKE_RECORD: u8 = 0x16;

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(_) => {}
    }
    if first[0] == TLS_HANDSHAKE_RECORD {
        shared
            .seen
            .lock()
            .expect("observations lock")
            .tls_hellos_refused += 1;
        let _ = stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 43\r\n\
                  Connection: close\r\n\r\nthis proxy speaks plain HTTP, not HTTPS/TLS",
            )
            .await;
        let _ = stream.shutdown().await;
        return;
    }
    let fd = stream.as_raw_fd();
    let abort = Arc::new(Notify::new());
    let service = {
        let abort = abort.clone();
        hyper::service::service_fn(move |req| handle(req, shared.clone(), abort.clone()))
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = abort.notified() => {
            // Close with a RST rather than a FIN: the client sees its connection reset mid-body.
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: `fd` belongs to the stream still owned by `connection`, alive here, and
            // the option value points to `linger`, which outlives the call, with its exact size.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &linger as *const libc::linger as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
    }
}

/// Marks the request record ended (once) when dropped, whatever way the exchange stops.
struct RecordEnd {
    shared: Arc<Shared>,
    index: usize,
}

impl Drop for RecordEnd {
    fn drop(&mut self) {
        let mut seen = self.shared.seen.lock().expect("observations lock");
        seen.update(self.index, |record| {
            record.ended.get_or_insert_with(Instant::now);
        });
    }
}

/// What to do with the request body on its way upstream.
#[derive(Default)]
struct BodyPlan {
    reset_after: Option<u64>,
    /// Set once the reset fired, so the request's handler knows not to answer.
    reset_fired: Arc<AtomicBool>,
    bytes_per_second: Option<u64>,
    stall: bool,
    gather: Option<(usize, Duration)>,
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    abort: Arc<Notify>,
) -> Result<Response<ProxyBody>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let index = {
        let mut seen = shared.seen.lock().expect("observations lock");
        seen.begin(RequestRecord {
            method: method.clone(),
            path: path_and_query.clone(),
            status: None,
            request_body_bytes: 0,
            started: Instant::now(),
            ended: None,
            injected: false,
        })
    };
    let record_end = RecordEnd {
        shared: shared.clone(),
        index,
    };
    let actions = take_actions(
        &mut shared.rules.lock().expect("rules lock"),
        &method,
        &path,
        &query,
    );

    let mut plan = BodyPlan::default();
    let mut added_headers = Vec::new();
    let mut relative_location = false;
    let mut reset_before_response = false;
    let mut reset_response_after = None;
    let mut injected = None;
    let mut read_body_first = false;
    for action in actions {
        match action {
            FaultAction::Delay(delay) => tokio::time::sleep(delay).await,
            FaultAction::Respond {
                status,
                headers,
                body,
            } => {
                injected.get_or_insert((status, headers, body));
            }
            FaultAction::ResetAfterBodyBytes(limit) => plan.reset_after = Some(limit),
            FaultAction::SlowBody { bytes_per_second } => {
                plan.bytes_per_second = Some(bytes_per_second.max(1))
            }
            FaultAction::StallBody => plan.stall = true,
            FaultAction::GatherUploads { count, at_most } => plan.gather = Some((count, at_most)),
            FaultAction::AddResponseHeader(name, value) => added_headers.push((name, value)),
            FaultAction::RelativeLocation => relative_location = true,
            FaultAction::ResetBeforeResponse => reset_before_response = true,
            FaultAction::ReadBodyFirst => read_body_first = true,
            FaultAction::ResetAfterResponseBytes(limit) => reset_response_after = Some(limit),
        }
    }

    if let Some((status, headers, body)) = injected {
        if read_body_first {
            let mut incoming = req.into_body();
            while let Some(Ok(_)) = incoming.frame().await {}
        }
        let mut response = Response::builder().status(status);
        for (name, value) in headers.iter().chain(&added_headers) {
            response = response.header(name, value);
        }
        let response = response
            .body(full(body))
            .expect("injected response is valid");
        let mut seen = shared.seen.lock().expect("observations lock");
        seen.update(index, |record| {
            record.status = Some(status);
            record.injected = true;
        });
        return Ok(response);
    }

    let (parts, incoming) = req.into_parts();
    let length = incoming.size_hint().exact();
    let has_body = !incoming.is_end_stream() && length != Some(0);
    let is_upload = matches!(method.as_str(), "PUT" | "PATCH") && has_body;
    let reset_fired = plan.reset_fired.clone();
    let upstream_body = if has_body {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(pump(
            incoming,
            tx,
            plan,
            shared.clone(),
            index,
            is_upload,
            abort.clone(),
        ));
        ChannelBody { rx, length }.boxed()
    } else {
        empty()
    };

    let mut upstream_req = Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://{}{path_and_query}", shared.upstream))
        .version(http::Version::HTTP_11);
    for (name, value) in &parts.headers {
        // The proxy already answers `Expect: 100-continue` to the client (hyper does, on
        // reading the body); passing it on would make the registry send a second 100.
        if name != http::header::EXPECT {
            upstream_req = upstream_req.header(name, value);
        }
    }
    let upstream_req = upstream_req
        .body(upstream_body)
        .expect("upstream request is valid");

    let upstream_response = match shared.client.request(upstream_req).await {
        Ok(response) => response,
        Err(_) if reset_fired.load(Ordering::SeqCst) => {
            // The upstream request failed because the reset cut its body. The connection is
            // being torn down with a RST; answering with a 502 could beat that on another
            // worker thread and turn the reset the test asked for into a response.
            std::future::pending().await
        }
        Err(error) => {
            let message = format!("proxy: upstream request failed: {error:?}");
            let mut seen = shared.seen.lock().expect("observations lock");
            seen.update(index, |record| record.status = Some(502));
            drop(seen);
            return Ok(Response::builder()
                .status(502)
                .header("Content-Type", "text/plain")
                .body(full(message))
                .expect("502 response is valid"));
        }
    };

    if reset_before_response {
        // The registry has acted on the request; its answer is lost with the connection.
        drop(upstream_response);
        abort.notify_one();
        return std::future::pending().await;
    }

    let (mut parts, upstream_incoming) = upstream_response.into_parts();
    let status = parts.status.as_u16();
    {
        let mut seen = shared.seen.lock().expect("observations lock");
        seen.update(index, |record| record.status = Some(status));
        if status == 201
            && method == "PUT"
            && let Some(digest) = query_param(&query, "digest")
        {
            *seen.uploads.entry(digest).or_default() += 1;
        }
        if status == 201
            && method == "POST"
            && let Some(digest) = query_param(&query, "mount")
        {
            *seen.mounts.entry(digest).or_default() += 1;
        }
    }
    if relative_location
        && let Some(location) = parts.headers.get(http::header::LOCATION)
        && let Ok(location) = location.to_str()
    {
        let relative = relative_form(location);
        parts.headers.insert(
            http::header::LOCATION,
            relative
                .parse()
                .expect("relative Location is a valid header"),
        );
    }
    for (name, value) in added_headers {
        parts.headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("valid header name in rule"),
            value.parse().expect("valid header value in rule"),
        );
    }
    let body = EndingBody {
        inner: upstream_incoming,
        on_end: Some(move || drop(record_end)),
    };
    let body = match reset_response_after {
        Some(limit) => CutBody::new(body.boxed(), limit, abort).boxed(),
        None => body.boxed(),
    };
    Ok(Response::from_parts(parts, body))
}

/// `http://host:port/path?q` → `/path?q`; relative values are returned unchanged.
fn relative_form(location: &str) -> String {
    let Some(rest) = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
    else {
        return location.to_owned();
    };
    match rest.find('/') {
        Some(slash) => rest[slash..].to_owned(),
        None => "/".to_owned(),
    }
}

/// Counts an upload body as in flight while alive.
struct InFlight {
    shared: Arc<Shared>,
}

impl InFlight {
    fn begin(shared: &Arc<Shared>) -> InFlight {
        let mut seen = shared.seen.lock().expect("observations lock");
        seen.uploads_in_flight += 1;
        seen.max_uploads_in_flight = seen.max_uploads_in_flight.max(seen.uploads_in_flight);
        shared.upload_started.notify_waiters();
        InFlight {
            shared: shared.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared
            .seen
            .lock()
            .expect("observations lock")
            .uploads_in_flight -= 1;
    }
}

/// Returns once `count` upload bodies have been in flight at the same time, or after `at_most`.
async fn gather_uploads(shared: &Shared, count: usize, at_most: Duration) {
    let deadline = tokio::time::Instant::now() + at_most;
    loop {
        // Registered before looking, so a start between the look and the wait is not missed.
        let started = shared.upload_started.notified();
        tokio::pin!(started);
        started.as_mut().enable();
        if shared
            .seen
            .lock()
            .expect("observations lock")
            .max_uploads_in_flight
            >= count
        {
            return;
        }
        tokio::select! {
            () = started => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// Moves the client's request body to the upstream request, applying the body faults.
async fn pump(
    mut incoming: Incoming,
    tx: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    plan: BodyPlan,
    shared: Arc<Shared>,
    index: usize,
    is_upload: bool,
    abort: Arc<Notify>,
) {
    let _in_flight = is_upload.then(|| InFlight::begin(&shared));
    if let Some((count, at_most)) = plan.gather.filter(|_| is_upload) {
        gather_uploads(&shared, count, at_most).await;
    }
    if plan.stall {
        // Never read: the client's upload stalls until it (or the test) gives up.
        tx.closed().await;
        return;
    }
    let count = |n: usize| {
        let mut seen = shared.seen.lock().expect("observations lock");
        seen.update(index, |record| record.request_body_bytes += n as u64);
        if is_upload {
            seen.upload_bytes += n as u64;
            seen.last_upload_byte = Some(Instant::now());
        }
    };
    let mut forwarded = 0u64;
    while let Some(frame) = incoming.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                let _ = tx.send(Err(Box::new(error))).await;
                return;
            }
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(trailers) => {
                if tx.send(Ok(trailers)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let mut reset_now = false;
        if let Some(limit) = plan.reset_after {
            let room = limit.saturating_sub(forwarded);
            if data.len() as u64 >= room {
                data.truncate(room as usize);
                reset_now = true;
            }
        }
        let piece_size = match plan.bytes_per_second {
            // Tenths of a second: smooth enough, few wake-ups.
            Some(rate) => ((rate / 10).max(1)) as usize,
            None => data.len().max(1),
        };
        while !data.is_empty() {
            let piece = data.split_to(piece_size.min(data.len()));
            if let Some(rate) = plan.bytes_per_second {
                tokio::time::sleep(Duration::from_secs_f64(piece.len() as f64 / rate as f64)).await;
            }
            count(piece.len());
            forwarded += piece.len() as u64;
            if tx.send(Ok(Frame::data(piece))).await.is_err() {
                return;
            }
        }
        if reset_now {
            plan.reset_fired.store(true, Ordering::SeqCst);
            abort.notify_one();
            let _ = tx
                .send(Err("proxy: connection reset by fault rule".into()))
                .await;
            return;
        }
    }
}
