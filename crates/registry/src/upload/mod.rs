//! Blob uploads: opening a session (plain or by cross-repository mount), sending the bytes in
//! one streamed PUT or in resumable PATCH chunks, and committing.

mod file_body;
mod range;
mod relay;
mod sender;
mod sendfile;
mod session;
mod source;

use std::future::Future;
use std::time::Duration;

use hoist_reference::Digest;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, RANGE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::RegistryError;
use crate::error::from_response;
use crate::http_util::url_host;
use crate::transport::{Call, OneShot, Ready, Target, Transport};
pub use range::Progress;
use range::{FileRange, ReadFailure};
pub(crate) use relay::SourceStream;
use relay::{RelayFailure, VerifiedBody};
pub(crate) use sender::FileSender;
pub use session::UploadSession;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use session::resolve_location;
pub(crate) use session::with_digest;
use session::{location, query_escape};
pub use source::BlobSource;

/// How often one chunked upload recovers in-session before giving the error to the engine.
const MAX_CHUNK_RESUMES: u32 = 5;
const MAX_RESUME_DELAY: Duration = Duration::from_secs(10);
const OCTET_STREAM: &str = "application/octet-stream";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadMode {
    /// One `PUT ?digest=` carrying the whole blob.
    Monolithic,
    /// `PATCH` chunks of this size (raised to the registry's minimum), then an empty `PUT`.
    Chunked { chunk_size: u64 },
}

#[derive(Debug)]
pub enum MountOutcome {
    /// 201: the blob is now in this repository.
    Mounted,
    /// 202: not mounted, but the registry opened an upload session; use it.
    Session(UploadSession),
    /// Anything else; do a plain upload.
    NotMounted,
}

/// What `GET <upload url>` said about a session.
struct UploadStatus {
    url: Option<Url>,
    /// The last byte stored, from `Range: 0-<end>`.
    range_end: Option<u64>,
}

/// The uploads of one repository: its requests' transport, how file bodies are sent, and the
/// repository's path.
pub(crate) struct Uploads<'a> {
    pub(crate) transport: &'a Transport,
    pub(crate) files: &'a FileSender,
    /// The repository path, such as `library/foo`.
    pub(crate) repository: &'a str,
}

impl Uploads<'_> {
    /// `POST /v2/<name>/blobs/uploads/`: opens an upload session.
    pub(crate) async fn start(&self) -> Result<UploadSession, RegistryError> {
        let path = self.uploads_path("");
        let call = Call::new("start upload on", Method::POST, Target::Registry(path));
        let response = self.transport.send(call).await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => {
                self.session_from(&response, "start upload on")
            }
            _ => Err(from_response(response, "POST", false).await),
        }
    }

    /// Cross-repository mount of `digest` from repository `from` on the same registry.
    pub(crate) async fn mount(
        &self,
        digest: &Digest,
        from: &str,
    ) -> Result<MountOutcome, RegistryError> {
        let path = self.uploads_path(&format!(
            "?mount={}&from={}",
            query_escape(digest.as_str()),
            query_escape(from)
        ));
        let scopes = [format!("repository:{from}:pull")];
        let mut call = Call::new("mount blob on", Method::POST, Target::Registry(path));
        call.extra_scopes = &scopes;
        let response = self.transport.send(call).await?;
        match response.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => match self.session_from(&response, "mount blob on") {
                Ok(session) => Ok(MountOutcome::Session(session)),
                Err(e) => {
                    tracing::debug!(error = %e, "mount answered 202 without a usable session");
                    Ok(MountOutcome::NotMounted)
                }
            },
            status => {
                // Harbor answers 401 for a missing source project, others 404 or 403: a plain
                // upload follows, and it reports any real problem.
                tracing::debug!(status = status.as_u16(), from, "blob not mounted");
                Ok(MountOutcome::NotMounted)
            }
        }
    }

    /// Best-effort `DELETE` of a session; many registries refuse it (no `delete` scope).
    pub(crate) async fn cancel(&self, session: &UploadSession) {
        let call = Call::new(
            "cancel upload on",
            Method::DELETE,
            Target::Url(session.url().clone()),
        );
        match self.transport.send(call).await {
            Ok(response) => {
                tracing::debug!(status = response.status().as_u16(), "upload cancelled")
            }
            Err(e) => tracing::debug!(error = %e, "cancelling upload failed"),
        }
    }

    /// `/v2/<name>/blobs/uploads/<rest>`.
    fn uploads_path(&self, rest: &str) -> String {
        format!("/v2/{}/blobs/uploads/{rest}", self.repository)
    }

    /// The whole blob in one `PUT ?digest=`. The caller has checked the file's length.
    pub(crate) async fn monolithic(
        &self,
        session: UploadSession,
        blob: &BlobSource,
        progress: &Progress,
    ) -> Result<(), RegistryError> {
        const OPERATION: &str = "upload blob to";
        let url = with_digest(session.url(), &blob.digest);
        let headers = body_headers(blob.size, None);
        let response = self
            .send_file(
                OPERATION,
                Method::PUT,
                &url,
                blob,
                (0, blob.size),
                headers,
                progress,
            )
            .await?;
        match response.status() {
            StatusCode::CREATED
            | StatusCode::OK
            | StatusCode::ACCEPTED
            | StatusCode::NO_CONTENT => {
                check_digest_header(response.headers(), &blob.digest, OPERATION, &url)?;
                progress.set(blob.size);
                Ok(())
            }
            _ => Err(from_response(response, "PUT", true).await),
        }
    }

    /// The blob `digest` of `size` bytes read from another registry (`open` starts reading it)
    /// and sent in one `PUT ?digest=` with an exact `Content-Length`, verified on the way (see
    /// `relay`). If the registry refused our token before taking the body, the source is opened
    /// again and the body sent once more with a token fetched after the refusal.
    pub(crate) async fn relayed<F, Fut>(
        &self,
        session: UploadSession,
        (digest, size): (&Digest, u64),
        mut open: F,
        progress: &Progress,
    ) -> Result<(), RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(SourceStream, String), RegistryError>>,
    {
        const OPERATION: &str = "upload blob to";
        let url = with_digest(session.url(), digest);
        let mut refused_at = None;
        loop {
            progress.set(0);
            let (source, origin) = open().await?;
            let failure = RelayFailure::default();
            let body = VerifiedBody::new(
                source,
                digest.clone(),
                size,
                origin,
                progress.clone(),
                failure.clone(),
            );
            let request = OneShot {
                operation: OPERATION,
                method: Method::PUT,
                url: url.clone(),
                headers: body_headers(size, None),
                refused_at,
            };
            let sent = self
                .transport
                .send_once(request, |ready| send_stream(ready, body, progress))
                .await
                .map_err(|e| failure.take().unwrap_or(e))?;
            if let (Some(at), None) = (sent.token_refused_at, refused_at) {
                refused_at = Some(at);
                continue;
            }
            let response = sent.response;
            return match response.status() {
                StatusCode::CREATED
                | StatusCode::OK
                | StatusCode::ACCEPTED
                | StatusCode::NO_CONTENT => {
                    check_digest_header(response.headers(), digest, OPERATION, &url)?;
                    progress.set(size);
                    Ok(())
                }
                _ => Err(failure
                    .take()
                    .unwrap_or(from_response(response, "PUT", true).await)),
            };
        }
    }

    /// `PATCH` chunks resumed in-session after failures, then the committing `PUT`. The caller
    /// has checked the file's length.
    pub(crate) async fn chunked(
        &self,
        session: UploadSession,
        blob: &BlobSource,
        chunk_size: u64,
        progress: &Progress,
    ) -> Result<(), RegistryError> {
        let chunk = effective_chunk_size(chunk_size, session.chunk_min_length());
        let mut url = session.url().clone();
        // Our own count of what the registry accepted; its Range header is only a hint.
        let mut offset = 0u64;
        let mut resumes = 0u32;
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            progress.set(offset);
            let error = match self.send_chunk(&url, blob, offset, len, progress).await {
                Ok(next) => {
                    url = next;
                    offset += len;
                    continue;
                }
                Err(error) => error,
            };
            if resumes >= MAX_CHUNK_RESUMES || !worth_resuming(&error) {
                return Err(error);
            }
            resumes += 1;
            tokio::time::sleep(resume_delay(&error, resumes)).await;
            match self.upload_status(&url).await {
                Ok(status) => {
                    let resume_at = resume_offset(offset, len, status.range_end);
                    tracing::debug!(
                        failed_at = offset,
                        resume_at,
                        registry_range_end = ?status.range_end,
                        error = %error,
                        "resuming chunked upload"
                    );
                    offset = resume_at;
                    if let Some(next) = status.url {
                        url = next;
                    }
                }
                Err(status_error) if status_error.is_upload_unknown() => return Err(status_error),
                Err(_) => return Err(error),
            }
        }
        progress.set(blob.size);
        self.commit(&url, &blob.digest).await
    }

    /// One `PATCH` with `Content-Range: <start>-<end>`; returns where the next one goes.
    async fn send_chunk(
        &self,
        url: &Url,
        blob: &BlobSource,
        offset: u64,
        len: u64,
        progress: &Progress,
    ) -> Result<Url, RegistryError> {
        let headers = body_headers(len, Some((offset, offset + len - 1)));
        let operation = "upload blob chunk to";
        let response = self
            .send_file(
                operation,
                Method::PATCH,
                url,
                blob,
                (offset, len),
                headers,
                progress,
            )
            .await?;
        match response.status() {
            // ECR answers 201 to intermediate chunks.
            StatusCode::ACCEPTED | StatusCode::CREATED | StatusCode::NO_CONTENT => {
                Ok(location(&response, "upload blob chunk to")?.unwrap_or_else(|| url.clone()))
            }
            _ => Err(from_response(response, "PATCH", true).await),
        }
    }

    /// `GET <upload url>`: the session's state, for resuming.
    async fn upload_status(&self, url: &Url) -> Result<UploadStatus, RegistryError> {
        let call = Call::new("check upload on", Method::GET, Target::Url(url.clone()));
        let response = self.transport.send(call).await?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::ACCEPTED => Ok(UploadStatus {
                url: location(&response, "check upload on")?,
                range_end: response
                    .headers()
                    .get(RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_range_end),
            }),
            _ => Err(from_response(response, "GET", true).await),
        }
    }

    /// Sends `len` bytes of the blob from `offset` (`range`) as one request's body. If the
    /// registry refused our token before taking the body, the body is sent again, once, with a
    /// token fetched after the refusal.
    #[allow(clippy::too_many_arguments)] // one request's parts; a struct would only rename them
    async fn send_file(
        &self,
        operation: &'static str,
        method: Method,
        url: &Url,
        blob: &BlobSource,
        (offset, len): (u64, u64),
        headers: HeaderMap,
        progress: &Progress,
    ) -> Result<Response, RegistryError> {
        let mut refused_at = None;
        loop {
            progress.set(offset);
            let read_failure = ReadFailure::default();
            let body = FileRange {
                source: blob,
                offset,
                len,
                progress,
                read_failure: &read_failure,
            };
            let request = OneShot {
                operation,
                method: method.clone(),
                url: url.clone(),
                headers: headers.clone(),
                refused_at,
            };
            let sent = self
                .transport
                .send_once(request, |ready| self.files.send(ready, &body))
                .await
                .map_err(|e| read_failure.take(blob).unwrap_or(e))?;
            match (sent.token_refused_at, refused_at) {
                (Some(at), None) => refused_at = Some(at),
                _ => return Ok(sent.response),
            }
        }
    }

    /// The closing `PUT ?digest=` with an empty body.
    async fn commit(&self, url: &Url, digest: &Digest) -> Result<(), RegistryError> {
        const OPERATION: &str = "commit blob on";
        let url = with_digest(url, digest);
        let mut call = Call::new(OPERATION, Method::PUT, Target::Url(url.clone()));
        call.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
        let response = self.transport.send(call).await?;
        match response.status() {
            StatusCode::CREATED
            | StatusCode::OK
            | StatusCode::ACCEPTED
            | StatusCode::NO_CONTENT => {
                check_digest_header(response.headers(), digest, OPERATION, &url)
            }
            _ => Err(from_response(response, "PUT", true).await),
        }
    }

    fn session_from(
        &self,
        response: &Response,
        operation: &str,
    ) -> Result<UploadSession, RegistryError> {
        UploadSession::from_response(response, operation, self.transport.host())
    }
}

/// Sends `ready` with a streamed body through the registry's client.
async fn send_stream(
    ready: Ready,
    body: VerifiedBody,
    progress: &Progress,
) -> Result<Response, RegistryError> {
    // The client already follows the proxy rules; they matter only to the sendfile sender.
    let Ready {
        operation,
        method,
        url,
        headers,
        client,
        proxy: _,
    } = ready;
    client
        .request(method, url.clone())
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| {
            let body_interrupted = !e.is_connect() && progress.get() > 0;
            RegistryError::transport(operation, url_host(&url), e, body_interrupted)
        })
}

/// `0-<end>` or the legacy `bytes=0-<end>`; only the end matters.
pub(crate) fn parse_range_end(value: &str) -> Option<u64> {
    value.rsplit_once('-')?.1.trim().parse().ok()
}

/// Where to continue after a failed chunk `[offset, offset + len)`. The registry's count is
/// used only when it lies within what we actually sent; `0-0` is ambiguous (distribution
/// sends it for both 0 and 1 stored bytes) and ECR's Range goes stale, so otherwise we trust
/// our own confirmed offset.
pub(crate) fn resume_offset(offset: u64, len: u64, range_end: Option<u64>) -> u64 {
    match range_end {
        // A count past the largest offset is as much nonsense as one past what we sent.
        Some(end) if end > 0 => match end.checked_add(1) {
            Some(stored) if stored >= offset && stored <= offset.saturating_add(len) => stored,
            _ => offset,
        },
        _ => offset,
    }
}

fn effective_chunk_size(requested: u64, registry_min: Option<u64>) -> u64 {
    requested.max(registry_min.unwrap_or(0)).max(1)
}

fn worth_resuming(error: &RegistryError) -> bool {
    if error.is_upload_unknown() || matches!(error, RegistryError::LocalIo { .. }) {
        return false;
    }
    // 416: the registry's offset differs from ours; 401: a token expired mid-upload and the
    // status request renews it.
    error.is_retryable() || matches!(error.status(), Some(416 | 401))
}

fn resume_delay(error: &RegistryError, attempt: u32) -> Duration {
    error
        .retry_after()
        .unwrap_or(Duration::from_millis(200) * attempt)
        .min(MAX_RESUME_DELAY)
}

fn body_headers(len: u64, range: Option<(u64, u64)>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some((start, end)) = range {
        // Inclusive, and without the `bytes=` prefix of HTTP ranges, as the spec requires.
        if let Ok(value) = HeaderValue::from_str(&format!("{start}-{end}")) {
            headers.insert("content-range", value);
        }
    }
    headers
}

fn check_digest_header(
    headers: &HeaderMap,
    expected: &Digest,
    operation: &str,
    url: &Url,
) -> Result<(), RegistryError> {
    let Some(value) = headers.get("docker-content-digest") else {
        return Ok(());
    };
    let actual = value.to_str().unwrap_or("<not text>").trim();
    if actual == expected.as_str() {
        return Ok(());
    }
    Err(RegistryError::DigestMismatch {
        operation: operation.to_owned(),
        host: url_host(url),
        expected: expected.clone(),
        actual: actual.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_offsets() {
        // Registry confirms part of the failed chunk.
        assert_eq!(resume_offset(100, 50, Some(119)), 120);
        // Registry confirms the whole chunk.
        assert_eq!(resume_offset(100, 50, Some(149)), 150);
        // Stale (ECR) or lost: our own count.
        assert_eq!(resume_offset(100, 50, Some(9)), 100);
        // More than we sent: nonsense.
        assert_eq!(resume_offset(100, 50, Some(500)), 100);
        // 0-0 is ambiguous; no header.
        assert_eq!(resume_offset(0, 50, Some(0)), 0);
        assert_eq!(resume_offset(100, 50, None), 100);
    }

    #[test]
    fn a_range_ending_at_the_largest_offset_is_nonsense_not_an_overflow() {
        let end = parse_range_end("0-18446744073709551615");
        assert_eq!(end, Some(u64::MAX));
        assert_eq!(resume_offset(0, 50, end), 0);
        assert_eq!(resume_offset(u64::MAX - 50, 50, end), u64::MAX - 50);
    }

    #[test]
    fn ranges_and_chunk_sizes() {
        assert_eq!(parse_range_end("0-1023"), Some(1023));
        assert_eq!(parse_range_end("bytes=0-7"), Some(7));
        assert_eq!(parse_range_end("junk"), None);
        assert_eq!(effective_chunk_size(1024, Some(5 << 20)), 5 << 20);
        assert_eq!(effective_chunk_size(8 << 20, Some(5 << 20)), 8 << 20);
        assert_eq!(effective_chunk_size(0, None), 1);
    }
}
