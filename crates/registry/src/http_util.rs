//! Small HTTP helpers every request path shares: bounded body reads, and URLs as they may be
//! shown (never with their query, which can carry signatures, nor with credentials).

use url::Url;

/// Reads at most `limit` bytes of a body; errors just end the read (the status is what matters).
pub(crate) async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// The URL without query, fragment, user name or password: safe for messages and logs.
pub(crate) fn without_query(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// `host[:port]` of a URL, for error messages and endpoint lookup. An IPv6 address keeps its
/// brackets and a default port is left out, as a `Host` header wants.
pub(crate) fn url_host(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_never_shown() {
        let url = Url::parse("https://u:p@r/v2/x/blobs/uploads/1?_state=abc&sig=s").unwrap();
        assert_eq!(without_query(&url), "https://r/v2/x/blobs/uploads/1");
    }

    #[test]
    fn hosts_keep_brackets_and_explicit_ports() {
        let url = Url::parse("http://[::1]:5000/v2/").unwrap();
        assert_eq!(url_host(&url), "[::1]:5000");
        let url = Url::parse("https://registry.local/v2/").unwrap();
        assert_eq!(url_host(&url), "registry.local");
    }
}
