//! Blob bodies sent straight from the file with `sendfile(2)`, for registries on other hosts
//! reached over plain HTTP without a proxy.
//!
//! hyper sends only bodies it is handed as memory, so every byte would cross into the kernel
//! with a copy; `sendfile` gives page-cache pages to the socket without touching them. No
//! maintained crate sends a request body that way, so this module writes one HTTP/1.1 request
//! (head, then the file range) and reads the response with `httparse`. Connections are kept
//! alive in a small pool of their own, as hyper's would be, so consecutive blobs do not pay a
//! new connection each. TLS and proxied registries keep the reqwest path.
//!
//! Like hyper, it watches for an answer while it sends: a registry that refuses the upload
//! (401, 403, 413) may answer before it reads the body and then close the connection.
//!
//! A registry on this host is left to the copying path unless the caller asks otherwise: over
//! loopback the pages `sendfile` hands the socket cost the receiving registry more CPU than
//! the copy costs the sender (1 GiB to distribution on 127.0.0.1: 4.2-4.4 CPU-s for the
//! registry against 3.7-3.9 copied, hoistd 0.1 against 0.3, the copied push no slower). Which
//! host a name reaches is known once connected, so the first connection tells, and the
//! answer is kept for the daemon's life.

mod pool;
mod response;

use std::fs::File;
use std::io::{self, ErrorKind};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use bytes::BytesMut;
use reqwest::Method;
use reqwest::header::{CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, TRANSFER_ENCODING, USER_AGENT};
use tokio::io::Interest;
use tokio::net::TcpStream;
use url::Url;

use super::range::FileRange;
use crate::RegistryError;
use crate::http_util::url_host;

pub(crate) use pool::ConnectionPool;
use response::{READ_STEP, parse_head, read_response, read_some, recv_now};

/// At most this much per `sendfile` call; the socket buffer usually takes less. Also the
/// readahead window asked of the kernel ahead of the bytes being sent.
const SEND_STEP: u64 = 4 * 1024 * 1024;

/// One request whose body is a range of a blob file.
pub(crate) struct FileRequest<'a> {
    pub(crate) operation: &'a str,
    pub(crate) method: &'a Method,
    pub(crate) url: &'a Url,
    /// Every header but `Host`, `Content-Length` and `Connection`, which are written here.
    pub(crate) headers: &'a HeaderMap,
    pub(crate) user_agent: &'a str,
    /// Its `progress` grows as the socket takes the bytes.
    pub(crate) body: &'a FileRange<'a>,
}

/// Bodies smaller than this go through reqwest, on the connection that opened the session: for
/// small blobs the separate connection costs the registry more than the copy saves hoistd.
const MIN_BODY: u64 = 4 * 1024 * 1024;

/// Whether a request to `url` with a body of `len` bytes takes this path: a body worth it, plain
/// HTTP, and no proxy in between.
pub(crate) fn applies(url: &Url, proxy: Option<Url>, len: u64) -> bool {
    len >= MIN_BODY && url.scheme() == "http" && proxy.is_none()
}

/// Which registries the path serves, besides needing plain HTTP without a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Serves {
    OtherHosts,
    /// This host's too: for tests, whose registries are all on 127.0.0.1.
    EveryHost,
}

/// What came of a request offered to this path.
pub(crate) enum Sent {
    /// The registry's answer, whatever its status.
    Answered(reqwest::Response),
    /// The registry is on this host, which the path does not serve: nothing was sent.
    Declined,
}

/// Sends the request and returns the registry's answer, or declines a registry on this host
/// when only [`Serves::OtherHosts`].
pub(crate) async fn send(
    request: FileRequest<'_>,
    pool: &ConnectionPool,
    serves: Serves,
    connect_timeout: Duration,
) -> Result<Sent, RegistryError> {
    // Plain HTTP only, so `host[:port]` names the server unambiguously.
    let host = url_host(request.url);
    if serves == Serves::OtherHosts && pool.is_this_host(&host) {
        return Ok(Sent::Declined);
    }
    // A file that cannot be sent fails before any connection is made.
    let blob = request.body.source;
    let local = |source| blob.read_error(source);
    let file = blob.open().await?;
    let head = request_head(&request);
    let fresh = || async {
        let stream = connect(request.url, connect_timeout)
            .await
            .map_err(|e| RegistryError::transport_io(request.operation, &host, e, false))?;
        if serves == Serves::OtherHosts && on_this_host(&stream) {
            pool.found_this_host(host.clone());
            return Ok::<_, RegistryError>(None);
        }
        Ok(Some(stream))
    };
    let (mut stream, mut reused) = match pool.take(&host) {
        Some(stream) => (stream, true),
        None => match fresh().await? {
            Some(stream) => (stream, false),
            None => return Ok(Sent::Declined),
        },
    };
    loop {
        match exchange(&stream, &head, &file, request.url, request.body).await {
            Ok((response, reusable)) => {
                if reusable {
                    pool.put(host, stream);
                }
                return Ok(Sent::Answered(response));
            }
            Err(Failure::Local(source)) => return Err(local(source)),
            // A kept-alive connection the server closed while it idled: the request never
            // reached it, so it goes once more, on a new connection.
            Err(Failure::Unsent(e)) if reused => {
                tracing::debug!(%host, error = %e, "a kept-alive connection was closed; sending on a new one");
                stream = match fresh().await? {
                    Some(stream) => stream,
                    // Nothing of this request went out, so the copying path can take it.
                    None => return Ok(Sent::Declined),
                };
                reused = false;
            }
            Err(Failure::Unsent(e)) => {
                return Err(RegistryError::transport_io(
                    request.operation,
                    &host,
                    e,
                    false,
                ));
            }
            // Whatever failed after the body started may have cost part of it.
            Err(Failure::Connection(e)) => {
                return Err(RegistryError::transport_io(
                    request.operation,
                    &host,
                    e,
                    true,
                ));
            }
        }
    }
}

enum Failure {
    /// Reading the blob file failed.
    Local(io::Error),
    Connection(io::Error),
    /// The connection failed before any byte of the body went out and before the registry
    /// said anything: on a kept-alive connection, the server had closed it while it idled.
    Unsent(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Connection(e)
    }
}

async fn connect(url: &Url, timeout: Duration) -> io::Result<TcpStream> {
    let port = url.port_or_known_default().unwrap_or(80);
    let connecting = async {
        match url.host() {
            Some(url::Host::Domain(name)) => TcpStream::connect((name, port)).await,
            Some(url::Host::Ipv4(ip)) => TcpStream::connect((ip, port)).await,
            Some(url::Host::Ipv6(ip)) => TcpStream::connect((ip, port)).await,
            None => Err(io::Error::new(
                ErrorKind::InvalidInput,
                "the URL has no host",
            )),
        }
    };
    let stream = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| io::Error::new(ErrorKind::TimedOut, "connecting timed out"))??;
    // The head goes out at once instead of waiting for an acknowledgement.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether the connection ends on this host: at a loopback address, or at one of this host's
/// own, which the kernel then also picks as the source address.
fn on_this_host(stream: &TcpStream) -> bool {
    match (stream.peer_addr(), stream.local_addr()) {
        (Ok(peer), Ok(local)) => same_host(peer.ip(), local.ip()),
        // Whatever failed will fail the request too, and say why.
        _ => false,
    }
}

fn same_host(peer: IpAddr, local: IpAddr) -> bool {
    let peer = peer.to_canonical();
    peer.is_loopback() || peer == local.to_canonical()
}

fn request_head(request: &FileRequest<'_>) -> Vec<u8> {
    let url = request.url;
    let mut target = url.path().to_owned();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    // `url_host` keeps an IPv6 address's brackets and leaves out a default port, as Host wants.
    let host = url_host(url);
    let mut head = format!("{} {target} HTTP/1.1\r\nHost: {host}\r\n", request.method).into_bytes();
    let ours = [HOST, CONTENT_LENGTH, CONNECTION, TRANSFER_ENCODING];
    for (name, value) in request.headers {
        if ours.contains(name) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !request.headers.contains_key(USER_AGENT) {
        head.extend_from_slice(format!("User-Agent: {}\r\n", request.user_agent).as_bytes());
    }
    head.extend_from_slice(format!("Content-Length: {}\r\n\r\n", request.body.len).as_bytes());
    head
}

/// Sends head and body, then reads the answer. Reads while sending, so an early answer stops
/// the body. Also says whether the connection can carry another request.
async fn exchange(
    stream: &TcpStream,
    head: &[u8],
    file: &File,
    url: &Url,
    body: &FileRange<'_>,
) -> Result<(reqwest::Response, bool), Failure> {
    let mut state = SendState::default();
    if let Err(failure) = send_all(stream, head, file, body, &mut state).await {
        return Err(match failure {
            Failure::Connection(e) if state.body_sent == 0 && state.received.is_empty() => {
                Failure::Unsent(e)
            }
            other => other,
        });
    }
    let (response, reusable) = read_response(stream, state.received, url).await?;
    // After an early answer the rest of the body was never sent: the connection is out of step.
    Ok((response, reusable && state.body_sent == body.len))
}

/// How far a request got: body bytes handed to the socket, and what the registry sent back.
#[derive(Default)]
struct SendState {
    body_sent: u64,
    received: BytesMut,
}

/// Sends head and body, stopping early when the registry's final answer arrives.
async fn send_all(
    stream: &TcpStream,
    head: &[u8],
    file: &File,
    body: &FileRange<'_>,
    state: &mut SendState,
) -> Result<(), Failure> {
    let mut head_sent = 0usize;
    let mut readahead_until = body.offset;
    advise_sequential(file, body.offset, body.len);
    while head_sent < head.len() || state.body_sent < body.len {
        tokio::select! {
            biased;
            ready = stream.readable() => {
                ready?;
                let read = match read_some(stream, &mut state.received) {
                    Ok(read) => read,
                    Err(_) if answer_arrived(stream, &mut state.received) => break,
                    Err(e) => return Err(e.into()),
                };
                if read == Some(0) {
                    if parse_head(&state.received)?.is_some() {
                        break;
                    }
                    return Err(Failure::Connection(io::Error::new(
                        ErrorKind::ConnectionReset,
                        "the registry closed the connection before the whole body was sent",
                    )));
                }
                if parse_head(&state.received)?.is_some_and(|h| !h.interim) {
                    // The registry answered before taking the whole body (a refusal).
                    break;
                }
            }
            ready = stream.writable() => {
                ready?;
                if head_sent < head.len() {
                    match stream.try_write(&head[head_sent..]) {
                        Ok(n) => head_sent += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(_) if answer_arrived(stream, &mut state.received) => break,
                        Err(e) => return Err(e.into()),
                    }
                    continue;
                }
                let position = body.offset + state.body_sent;
                if position >= readahead_until {
                    readahead_until = position + SEND_STEP;
                    advise_will_need(file, readahead_until, SEND_STEP);
                }
                let step = (body.len - state.body_sent).min(SEND_STEP);
                match stream.try_io(Interest::WRITABLE, || sendfile(stream, file, position, step)) {
                    Ok(0) => {
                        return Err(Failure::Local(io::Error::new(
                            ErrorKind::UnexpectedEof,
                            "the file ended before the blob's size",
                        )));
                    }
                    Ok(n) => {
                        state.body_sent += n as u64;
                        body.progress.add(n as u64);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // EIO is the disk; every other error is the connection's.
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => return Err(Failure::Local(e)),
                    Err(_) if answer_arrived(stream, &mut state.received) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

/// After a failed send or read: whether the registry's answer is already here. A registry that
/// refuses an upload (401, 413, 429) may answer and close the connection before it reads the
/// body; sending then fails, but the answer, queued before the close, says why.
fn answer_arrived(stream: &TcpStream, received: &mut BytesMut) -> bool {
    let mut chunk = [0u8; READ_STEP];
    while let Ok(n) = recv_now(stream, &mut chunk, 0) {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..n]);
    }
    matches!(parse_head(received), Ok(Some(head)) if !head.interim)
}

/// `sendfile` from `position`; the file's own offset is left alone.
fn sendfile(stream: &TcpStream, file: &File, position: u64, len: u64) -> io::Result<usize> {
    let mut offset = libc::off_t::try_from(position).map_err(io::Error::other)?;
    let len = usize::try_from(len).map_err(io::Error::other)?;
    // SAFETY: both descriptors are open for the duration of the call (borrowed), and `offset`
    // is a valid, exclusively borrowed off_t that the kernel updates. sendfile only reads the
    // file, whatever happens to it meanwhile, so no memory of ours is at stake.
    let sent = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, len) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Readahead hints: a cold blob is read from disk ahead of the socket, so `sendfile` rarely
/// waits for the disk on an async worker. Advice only; failure changes nothing.
fn advise_sequential(file: &File, offset: u64, len: u64) {
    advise(file, offset, len, libc::POSIX_FADV_SEQUENTIAL);
}

fn advise_will_need(file: &File, offset: u64, len: u64) {
    advise(file, offset, len, libc::POSIX_FADV_WILLNEED);
}

fn advise(file: &File, offset: u64, len: u64, advice: libc::c_int) {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open (borrowed) for the call, and no memory is passed.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset, len, advice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::range::{Progress, ReadFailure};
    use crate::upload::source::BlobSource;

    fn head_of(url: &Url, headers: &HeaderMap, method: &Method) -> String {
        let (progress, read_failure) = (Progress::default(), ReadFailure::default());
        let digest = hoist_reference::Digest::sha256_from_bytes(&[0; 32]);
        // SAFETY: the file does not exist and nothing reads it; only the request head is made.
        let source = unsafe { BlobSource::new("/nonexistent".into(), digest, 42) };
        let body = FileRange {
            source: &source,
            offset: 0,
            len: 42,
            progress: &progress,
            read_failure: &read_failure,
        };
        let request = FileRequest {
            operation: "upload blob to",
            method,
            url,
            headers,
            user_agent: "hoist/test",
            body: &body,
        };
        String::from_utf8(request_head(&request)).expect("utf-8")
    }

    #[test]
    fn the_head_carries_target_host_length_and_our_headers() {
        let url = Url::parse("http://[::1]:5000/v2/a/blobs/uploads/x?_state=a%2Bb&digest=sha256:1")
            .expect("url");
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            "application/octet-stream".parse().expect("value"),
        );
        headers.insert(CONTENT_LENGTH, "7".parse().expect("value"));
        let head = head_of(&url, &headers, &Method::PUT);
        assert_eq!(
            head,
            "PUT /v2/a/blobs/uploads/x?_state=a%2Bb&digest=sha256:1 HTTP/1.1\r\n\
             Host: [::1]:5000\r\n\
             content-type: application/octet-stream\r\n\
             User-Agent: hoist/test\r\n\
             Content-Length: 42\r\n\r\n"
        );
    }

    #[test]
    fn the_default_port_is_left_out_of_host() {
        let url = Url::parse("http://registry.local/v2/").expect("url");
        let headers = HeaderMap::new();
        let head = head_of(&url, &headers, &Method::PATCH);
        assert!(
            head.starts_with("PATCH /v2/ HTTP/1.1\r\nHost: registry.local\r\n"),
            "{head}"
        );
    }

    #[test]
    fn only_large_bodies_to_unproxied_plain_http_apply() {
        let http = Url::parse("http://127.0.0.1:5000/v2/").expect("url");
        let https = Url::parse("https://127.0.0.1:5000/v2/").expect("url");
        let proxy = Url::parse("http://proxy:3128").expect("url");
        let big = 64 * 1024 * 1024;
        assert!(applies(&http, None, big));
        assert!(!applies(&http, None, 1024 * 1024));
        assert!(!applies(&https, None, big));
        assert!(!applies(&http, Some(proxy), big));
    }

    #[test]
    fn loopback_and_own_addresses_are_this_host() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        let (here, there) = (ip("10.1.2.3"), ip("10.1.2.4"));
        assert!(same_host(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(same_host(ip("127.0.0.2"), ip("127.0.0.1")));
        assert!(same_host(ip("::1"), ip("::1")));
        assert!(same_host(ip("::ffff:127.0.0.1"), ip("::ffff:127.0.0.1")));
        assert!(same_host(here, here));
        assert!(same_host(ip("::ffff:10.1.2.3"), here));
        assert!(!same_host(there, here));
        // A registry in a container behind a bridge: another network namespace.
        assert!(!same_host(ip("172.17.0.2"), ip("172.17.0.1")));
    }

    #[tokio::test]
    async fn a_connection_to_127_0_0_1_is_this_host() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        assert!(on_this_host(&client));
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_body_started_is_unsent_not_interrupted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = Url::parse(&format!(
            "http://{}/v2/a/blobs/uploads/x",
            listener.local_addr().expect("address")
        ))
        .expect("url");
        let client = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        // The server closes the connection, as one closes a kept-alive connection it idled.
        let (server, _) = listener.accept().await.expect("accept");
        drop(server);
        client.readable().await.expect("the close arrives");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("blob");
        std::fs::write(&path, vec![7u8; 1024]).expect("write blob");
        let file = File::open(&path).expect("open blob");
        let (progress, read_failure) = (Progress::default(), ReadFailure::default());
        let digest = hoist_reference::Digest::sha256_from_bytes(&[0; 32]);
        // SAFETY: the test's own file, not changed while it is mapped.
        let source = unsafe { BlobSource::new(path.clone(), digest, 1024) };
        let body = FileRange {
            source: &source,
            offset: 0,
            len: 1024,
            progress: &progress,
            read_failure: &read_failure,
        };
        let failure = exchange(&client, b"PUT / HTTP/1.1\r\n\r\n", &file, &url, &body).await;
        assert!(matches!(failure, Err(Failure::Unsent(_))));
        assert_eq!(progress.get(), 0);
    }
}
