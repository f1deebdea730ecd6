//! Sending a range of a blob file as the body of a request whose credentials are attached:
//! with `sendfile` over an unproxied plain-HTTP connection to another host, otherwise as a
//! streamed reqwest body.

use std::sync::Arc;

use reqwest::Response;

use super::file_body::file_body;
use super::range::FileRange;
use super::sendfile::{self, ConnectionPool, FileRequest, Sent, Serves};
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
    serves: Serves,
    user_agent: String,
}

impl FileSender {
    /// `this_host_too`: whether registries on this host get `sendfile` too.
    pub(crate) fn new(user_agent: String, this_host_too: bool) -> FileSender {
        let serves = match this_host_too {
            true => Serves::EveryHost,
            false => Serves::OtherHosts,
        };
        FileSender {
            inner: Arc::new(Inner {
                connections: ConnectionPool::default(),
                serves,
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
            let inner = &self.inner;
            match sendfile::send(request, &inner.connections, inner.serves, CONNECT_TIMEOUT).await?
            {
                Sent::Answered(response) => return Ok(response),
                Sent::Declined => {}
            }
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
