//! A handle on one repository of one registry: existence checks, blob downloads, uploads
//! (carried out by the `upload` module), and the entry point for manifests and tags.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hoist_reference::Digest;
use reqwest::header::{CONTENT_LENGTH, HeaderMap};
use reqwest::{Method, StatusCode};

use crate::RegistryError;
use crate::config::Access;
use crate::error::from_response;
use crate::transport::{Call, Target, Transport};
use crate::upload::{
    BlobSource, FileSender, MountOutcome, Progress, SourceStream, UploadMode, UploadSession,
    Uploads,
};

#[derive(Clone)]
pub struct Repository {
    inner: Arc<Parts>,
}

/// What a repository handle is made of.
pub(crate) struct Parts {
    /// The reference domain (`docker.io`, not its API host).
    pub(crate) domain: String,
    pub(crate) path: String,
    pub(crate) access: Access,
    pub(crate) chunk_size: Option<u64>,
    pub(crate) transport: Transport,
    pub(crate) files: FileSender,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("host", &self.inner.domain)
            .field("path", &self.inner.path)
            .field("access", &self.inner.access)
            .finish_non_exhaustive()
    }
}

impl Repository {
    pub(crate) fn new(parts: Parts) -> Self {
        Repository {
            inner: Arc::new(parts),
        }
    }

    /// The reference domain this handle was made for (`docker.io`, not its API host).
    pub fn host(&self) -> &str {
        &self.inner.domain
    }

    pub fn path(&self) -> &str {
        &self.inner.path
    }

    pub fn access(&self) -> Access {
        self.inner.access
    }

    /// The chunk size configured for this registry, if uploads to it should be chunked.
    pub fn configured_chunk_size(&self) -> Option<u64> {
        self.inner.chunk_size
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// `/v2/<path>/<rest>`.
    pub(crate) fn api_path(&self, rest: &str) -> String {
        format!("/v2/{}/{}", self.inner.path, rest)
    }

    /// `POST /v2/<name>/blobs/uploads/`: opens an upload session.
    pub async fn start_upload(&self) -> Result<UploadSession, RegistryError> {
        self.uploads().start().await
    }

    /// Cross-repository mount of `digest` from repository `from` on the same registry.
    pub async fn mount_blob(
        &self,
        digest: &Digest,
        from: &str,
    ) -> Result<MountOutcome, RegistryError> {
        self.uploads().mount(digest, from).await
    }

    /// Sends the blob's bytes through `session` and commits them.
    pub async fn upload_blob(
        &self,
        session: UploadSession,
        blob: &BlobSource,
        mode: UploadMode,
        progress: &Progress,
    ) -> Result<(), RegistryError> {
        let uploads = self.uploads();
        match mode {
            UploadMode::Monolithic => uploads.monolithic(session, blob, progress).await,
            UploadMode::Chunked { chunk_size } => {
                uploads.chunked(session, blob, chunk_size, progress).await
            }
        }
    }

    /// Sends the blob `digest` of `size` bytes, read from `origin` (a repository of another
    /// registry, or of this one) as it is sent, through `session` in one `PUT`. The bytes are
    /// checked against the size and digest on the way and never stored locally; the target is
    /// never handed a wrong blob whole, so it cannot commit one.
    pub async fn upload_relayed(
        &self,
        session: UploadSession,
        digest: &Digest,
        size: u64,
        origin: &Repository,
        progress: &Progress,
    ) -> Result<(), RegistryError> {
        let open = || async move {
            let stream = origin.get_blob(digest).await?;
            let source: SourceStream = Box::pin(stream);
            Ok((source, origin.host().to_owned()))
        };
        self.uploads()
            .relayed(session, (digest, size), open, progress)
            .await
    }

    /// Best-effort `DELETE` of a session; many registries refuse it (no `delete` scope).
    pub async fn cancel_upload(&self, session: &UploadSession) {
        self.uploads().cancel(session).await
    }

    fn uploads(&self) -> Uploads<'_> {
        Uploads {
            transport: &self.inner.transport,
            files: &self.inner.files,
            repository: &self.inner.path,
        }
    }

    /// `GET /v2/`: learns whether the registry speaks HTTPS or plain HTTP (insecure registries)
    /// and how it authenticates, then authenticates, so later requests skip those round trips.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let call = Call::new("ping", Method::GET, Target::Registry("/v2/".to_owned()));
        let response = self.inner.transport.send(call).await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(from_response(response, "GET", false).await)
    }

    /// `HEAD` a blob: its size when present. 403 counts as absent because some registries
    /// (Artifactory) answer it for blobs they do not have; the upload then shows the real error.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let path = self.api_path(&format!("blobs/{digest}"));
        let call = Call::new("check blob on", Method::HEAD, Target::Registry(path));
        let response = self.inner.transport.send(call).await?;
        match response.status() {
            StatusCode::OK => Ok(Some(header_length(response.headers()).unwrap_or(0))),
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => Ok(None),
            _ => Err(from_response(response, "HEAD", false).await),
        }
    }

    /// `GET` a blob as a stream. Redirects (to object storage or a CDN) are followed without
    /// credentials. The caller verifies the digest of what it reads.
    pub async fn get_blob(&self, digest: &Digest) -> Result<BlobStream, RegistryError> {
        let path = self.api_path(&format!("blobs/{digest}"));
        let call = Call::new("download blob from", Method::GET, Target::Registry(path));
        let response = self.inner.transport.send(call).await?;
        if response.status() != StatusCode::OK {
            return Err(from_response(response, "GET", false).await);
        }
        let content_length = header_length(response.headers());
        let host = self.inner.transport.host().to_owned();
        let stream = response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| RegistryError::transport("download blob from", &host, e, false))
        });
        Ok(BlobStream {
            content_length,
            stream: Box::pin(stream),
        })
    }
}

/// A blob's bytes as they arrive.
pub struct BlobStream {
    content_length: Option<u64>,
    stream: Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>,
}

impl BlobStream {
    /// The `Content-Length` the registry announced.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

/// `Content-Length` read from the header itself: for HEAD responses reqwest reports the
/// (empty) body's length instead.
pub(crate) fn header_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
