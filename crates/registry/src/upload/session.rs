//! An open upload session, and the URLs of its requests: the `Location` the registry hands
//! out, with the digest appended to its query as sent.

use hoist_reference::Digest;
use reqwest::Response;
use reqwest::header::LOCATION;
use url::Url;

use crate::RegistryError;
use crate::http_util::{url_host, without_query};

/// An open upload session: where to send bytes next.
#[derive(Clone)]
pub struct UploadSession {
    /// Absolute; the registry's query string (e.g. distribution's `_state`) is kept as sent.
    url: Url,
    chunk_min_length: Option<u64>,
    uuid: Option<String>,
}

impl UploadSession {
    /// The session a response opened (its `Location`), or an error naming `host`.
    pub(super) fn from_response(
        response: &Response,
        operation: &str,
        host: &str,
    ) -> Result<UploadSession, RegistryError> {
        let url = location(response, operation)?.ok_or_else(|| {
            RegistryError::invalid_response(
                operation,
                host,
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

/// The response's `Location`, resolved against the URL that was actually requested.
pub(super) fn location(response: &Response, operation: &str) -> Result<Option<Url>, RegistryError> {
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
pub(super) fn query_escape(value: &str) -> String {
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
    fn escapes_like_go() {
        assert_eq!(query_escape("library/foo"), "library%2Ffoo");
        assert_eq!(query_escape("sha256:ab"), "sha256%3Aab");
    }
}
