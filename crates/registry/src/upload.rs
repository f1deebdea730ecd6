//! Blob uploads: opening a session (plain or by cross-repository mount), sending the bytes in
//! one streamed PUT or in resumable PATCH chunks, and committing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hoist_reference::Digest;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RANGE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::RegistryError;
use crate::error::{from_response, without_query};
use crate::file_body::FileRange;
use crate::repository::Repository;
use crate::transport::{Call, StreamUpload, Target, url_host};

/// How often one chunked upload recovers in-session before giving the error to the engine.
const MAX_CHUNK_RESUMES: u32 = 5;
const MAX_RESUME_DELAY: Duration = Duration::from_secs(10);
const OCTET_STREAM: &str = "application/octet-stream";

/// An open upload session: where to send bytes next.
#[derive(Clone)]
pub struct UploadSession {
    /// Absolute; the registry's query string (e.g. distribution's `_state`) is kept as sent.
    url: Url,
    chunk_min_length: Option<u64>,
    uuid: Option<String>,
}

impl UploadSession {
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `OCI-Chunk-Min-Length`: the smallest chunk the registry accepts, if it says.
    pub fn chunk_min_length(&self) -> Option<u64> {
        self.chunk_min_length
    }

    /// `Docker-Upload-UUID`, informational only.
    pub fn uuid(&self) -> Option<&str> {
        self.uuid.as_deref()
    }
}

impl std::fmt::Debug for UploadSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The query may carry signatures (presigned storage URLs): never print it.
        f.debug_struct("UploadSession")
            .field("url", &without_query(&self.url))
            .field("chunk_min_length", &self.chunk_min_length)
            .field("uuid", &self.uuid)
            .finish()
    }
}

/// A blob in a local file. The file must not change while it is uploaded: it is sent from a
/// memory map (content-addressed store files never change).
#[derive(Clone, Debug)]
pub struct BlobSource {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

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

/// Bytes of one blob the registry has been sent (or has confirmed). Cheap to share and bump.
#[derive(Clone, Default, Debug)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// What `GET <upload url>` said about a session.
struct UploadStatus {
    url: Option<Url>,
    /// The last byte stored, from `Range: 0-<end>`.
    range_end: Option<u64>,
}

impl Repository {
    /// `POST /v2/<name>/blobs/uploads/`: opens an upload session.
    pub async fn start_upload(&self) -> Result<UploadSession, RegistryError> {
        let path = self.api_path("blobs/uploads/");
        let call = Call::new("start upload on", Method::POST, Target::Registry(path));
        let response = self.transport().send(call).await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => {
                self.session_from(&response, "start upload on")
            }
            _ => Err(from_response(response, "POST", false).await),
        }
    }

    /// Cross-repository mount of `digest` from repository `from` on the same registry.
    pub async fn mount_blob(
        &self,
        digest: &Digest,
        from: &str,
    ) -> Result<MountOutcome, RegistryError> {
        let path = self.api_path(&format!(
            "blobs/uploads/?mount={}&from={}",
            query_escape(digest.as_str()),
            query_escape(from)
        ));
        let scopes = [format!("repository:{from}:pull")];
        let mut call = Call::new("mount blob on", Method::POST, Target::Registry(path));
        call.extra_scopes = &scopes;
        let response = self.transport().send(call).await?;
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

    /// Sends the blob's bytes through `session` and commits them.
    pub async fn upload_blob(
        &self,
        session: UploadSession,
        blob: &BlobSource,
        mode: UploadMode,
        progress: &Progress,
    ) -> Result<(), RegistryError> {
        check_file(blob).await?;
        match mode {
            UploadMode::Monolithic => self.upload_monolithic(session, blob, progress).await,
            UploadMode::Chunked { chunk_size } => {
                self.upload_chunked(session, blob, chunk_size, progress)
                    .await
            }
        }
    }

    /// Best-effort `DELETE` of a session; many registries refuse it (no `delete` scope).
    pub async fn cancel_upload(&self, session: &UploadSession) {
        let call = Call::new(
            "cancel upload on",
            Method::DELETE,
            Target::Url(session.url.clone()),
        );
        match self.transport().send(call).await {
            Ok(response) => {
                tracing::debug!(status = response.status().as_u16(), "upload cancelled")
            }
            Err(e) => tracing::debug!(error = %e, "cancelling upload failed"),
        }
    }

    async fn upload_monolithic(
        &self,
        session: UploadSession,
        blob: &BlobSource,
        progress: &Progress,
    ) -> Result<(), RegistryError> {
        const OPERATION: &str = "upload blob to";
        let url = with_digest(&session.url, &blob.digest);
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

    async fn upload_chunked(
        &self,
        session: UploadSession,
        blob: &BlobSource,
        chunk_size: u64,
        progress: &Progress,
    ) -> Result<(), RegistryError> {
        let chunk = effective_chunk_size(chunk_size, session.chunk_min_length);
        let mut url = session.url;
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
        let response = self.transport().send(call).await?;
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
                path: &blob.path,
                offset,
                len,
                progress,
                read_failure: &read_failure,
            };
            let upload = StreamUpload {
                operation,
                method: method.clone(),
                url: url.clone(),
                headers: headers.clone(),
                refused_at,
            };
            let sent = self
                .transport()
                .send_stream(upload, body)
                .await
                .map_err(|e| read_failure.take(&blob.path).unwrap_or(e))?;
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
        let response = self.transport().send(call).await?;
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
        let url = location(response, operation)?.ok_or_else(|| {
            RegistryError::invalid_response(
                operation,
                self.transport().host(),
                "registry opened an upload session without a Location",
            )
        })?;
        let headers = response.headers();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Ok(UploadSession {
            url,
            chunk_min_length: text("oci-chunk-min-length").and_then(|v| v.trim().parse().ok()),
            uuid: text("docker-upload-uuid").map(str::to_owned),
        })
    }
}

/// The response's `Location`, resolved against the URL that was actually requested.
fn location(response: &Response, operation: &str) -> Result<Option<Url>, RegistryError> {
    let Some(value) = response.headers().get(LOCATION) else {
        return Ok(None);
    };
    let invalid =
        |why: String| RegistryError::invalid_response(operation, url_host(response.url()), why);
    let text = value
        .to_str()
        .map_err(|_| invalid("Location header is not valid text".to_owned()))?;
    resolve_location(response.url(), text)
        .map(Some)
        .map_err(|e| invalid(format!("invalid Location {:?}: {e}", text)))
}

pub(crate) fn resolve_location(base: &Url, location: &str) -> Result<Url, url::ParseError> {
    let location = location.trim();
    // containerd: `host:port/path` without a scheme keeps the scheme in use.
    if looks_like_host_port(location) {
        return Url::parse(&format!("{}://{}", base.scheme(), location));
    }
    base.join(location)
}

fn looks_like_host_port(location: &str) -> bool {
    if location.starts_with('/') || location.contains("://") {
        return false;
    }
    let authority = location.split(['/', '?']).next().unwrap_or("");
    match authority.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Appends `digest=<d>` to the query string as the registry sent it: parsing and re-encoding
/// it could change opaque or signed parameters.
pub(crate) fn with_digest(url: &Url, digest: &Digest) -> Url {
    let param = format!("digest={}", query_escape(digest.as_str()));
    let query = match url.query() {
        Some(q) if !q.is_empty() && q.ends_with('&') => format!("{q}{param}"),
        Some(q) if !q.is_empty() => format!("{q}&{param}"),
        _ => param,
    };
    let mut url = url.clone();
    url.set_query(Some(&query));
    url
}

/// Go's `url.QueryEscape` minus the space-as-plus rule (nothing here has spaces).
pub(crate) fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `0-<end>` or the legacy `bytes=0-<end>`; only the end matters.
fn parse_range_end(value: &str) -> Option<u64> {
    value.rsplit_once('-')?.1.trim().parse().ok()
}

/// Where to continue after a failed chunk `[offset, offset + len)`. The registry's count is
/// used only when it lies within what we actually sent; `0-0` is ambiguous (distribution
/// sends it for both 0 and 1 stored bytes) and ECR's Range goes stale, so otherwise we trust
/// our own confirmed offset.
fn resume_offset(offset: u64, len: u64, range_end: Option<u64>) -> u64 {
    match range_end {
        Some(end) if end > 0 => {
            let stored = end + 1;
            if stored >= offset && stored <= offset + len {
                stored
            } else {
                offset
            }
        }
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

/// The first error from reading the local file, so an upload that failed because of our disk
/// is reported as such rather than as a network failure.
#[derive(Clone, Default)]
pub(crate) struct ReadFailure(Arc<Mutex<Option<std::io::Error>>>);

impl ReadFailure {
    pub(crate) fn record(&self, error: &std::io::Error) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(std::io::Error::new(error.kind(), error.to_string()));
        }
    }

    fn take(&self, path: &Path) -> Option<RegistryError> {
        let error = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(RegistryError::LocalIo {
            path: path.to_owned(),
            source: error,
        })
    }
}

async fn check_file(blob: &BlobSource) -> Result<(), RegistryError> {
    let local = |source| RegistryError::LocalIo {
        path: blob.path.clone(),
        source,
    };
    let metadata = tokio::fs::metadata(&blob.path).await.map_err(local)?;
    if metadata.len() != blob.size {
        return Err(local(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "file holds {} bytes but blob {} has {}",
                metadata.len(),
                blob.digest,
                blob.size
            ),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::parse("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .unwrap()
    }

    #[test]
    fn digest_is_appended_to_the_raw_query() {
        let url =
            Url::parse("https://r/v2/x/blobs/uploads/u?_state=a%2Bb%3D%3D&X-Sig=Zz%2F").unwrap();
        assert_eq!(
            with_digest(&url, &digest()).as_str(),
            "https://r/v2/x/blobs/uploads/u?_state=a%2Bb%3D%3D&X-Sig=Zz%2F&digest=sha256%3Ae3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let bare = Url::parse("https://r/v2/x/blobs/uploads/u").unwrap();
        assert!(with_digest(&bare, &digest()).as_str().ends_with(
            "/u?digest=sha256%3Ae3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ));
    }

    #[test]
    fn locations_resolve_like_containerd() {
        let base = Url::parse("https://reg:5000/v2/x/blobs/uploads/").unwrap();
        assert_eq!(
            resolve_location(&base, "/v2/x/blobs/uploads/abc?_state=s")
                .unwrap()
                .as_str(),
            "https://reg:5000/v2/x/blobs/uploads/abc?_state=s"
        );
        assert_eq!(
            resolve_location(&base, "http://store:9000/up/1?sig=a")
                .unwrap()
                .as_str(),
            "http://store:9000/up/1?sig=a"
        );
        assert_eq!(
            resolve_location(&base, "other:5001/v2/x/blobs/uploads/abc")
                .unwrap()
                .as_str(),
            "https://other:5001/v2/x/blobs/uploads/abc"
        );
        assert_eq!(
            resolve_location(&base, "abc").unwrap().as_str(),
            "https://reg:5000/v2/x/blobs/uploads/abc"
        );
    }

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
    fn ranges_and_chunk_sizes() {
        assert_eq!(parse_range_end("0-1023"), Some(1023));
        assert_eq!(parse_range_end("bytes=0-7"), Some(7));
        assert_eq!(parse_range_end("junk"), None);
        assert_eq!(effective_chunk_size(1024, Some(5 << 20)), 5 << 20);
        assert_eq!(effective_chunk_size(8 << 20, Some(5 << 20)), 8 << 20);
        assert_eq!(effective_chunk_size(0, None), 1);
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(query_escape("library/foo"), "library%2Ffoo");
        assert_eq!(query_escape("sha256:ab"), "sha256%3Aab");
    }
}
