//! Sending a range of a blob file as the body of a request whose credentials are attached:
//! with `sendfile` over an unproxied plain-HTTP connection, otherwise as a streamed reqwest
//! body.

use std::sync::Arc;

use reqwest::Response;

use super::file_body::file_body;
use super::range::FileRange;
use super::sendfile::{self, ConnectionPool, FileRequest};
use crate::RegistryError;
use crate::endpoint::CONNECT_TIMEOUT;
use crate::http_util::url_host;
use crate::transport::Ready;

/// What sending file bodies needs beyond the registry's client: the sendfile path's own
/// kept-alive connections and the User-Agent it writes. Cheap to clone.
#[derive(Clone)]
pub(crate) struct FileSender {
    inner: Arc<Inner>,
}

struct Inner {
    connections: ConnectionPool,
    user_agent: String,
}

impl FileSender {
    pub(crate) fn new(user_agent: String) -> FileSender {
        FileSender {
            inner: Arc::new(Inner {
                connections: ConnectionPool::default(),
                user_agent,
            }),
        }
    }

    /// Sends `request` with `body` and returns the answer, whatever its status.
    pub(crate) async fn send(
        &self,
        request: Ready,
        body: &FileRange<'_>,
    ) -> Result<Response, RegistryError> {
        let Ready {
            operation,
            method,
            url,
            headers,
            client,
            proxy,
        } = request;
        if sendfile::applies(&url, proxy.proxy_for(&url), body.len) {
            let request = FileRequest {
                operation,
                method: &method,
                url: &url,
                headers: &headers,
                user_agent: &self.inner.user_agent,
                body,
            };
            return sendfile::send(request, &self.inner.connections, CONNECT_TIMEOUT).await;
        }
        let before = body.progress.get();
        let request = client
            .request(method, url.clone())
            .headers(headers)
            .body(file_body(body).await?);
        request.send().await.map_err(|e| {
            // Only a failure after hyper took part of the body can have cost part of it: a
            // connect error, or a kept-alive connection found closed before the body started,
            // cost nothing.
            let body_interrupted = !e.is_connect() && body.progress.get() > before;
            RegistryError::transport(operation, url_host(&url), e, body_interrupted)
        })
    }
}
