//! Listing a repository's tags: every tag for `docker pull --all-tags`, or whether there is any.

use reqwest::header::LINK;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::RegistryError;
use crate::error::from_response;
use crate::http_util::read_bounded;
use crate::repository::Repository;
use crate::transport::{Call, Target};

/// Pages followed at most, so a registry whose `Link` loops cannot hold a pull forever.
const MAX_PAGES: usize = 1000;
const OPERATION: &str = "list tags of";
/// Bytes read of one page at most.
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Deserialize)]
struct TagPage {
    /// distribution answers `null` for a repository without tags.
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Repository {
    /// `GET /v2/<name>/tags/list`, following `Link: <…>; rel="next"` pages; tags in the
    /// registry's order. An unknown repository is the registry's error (NAME_UNKNOWN, 404).
    pub async fn list_tags(&self) -> Result<Vec<String>, RegistryError> {
        let mut target = Target::Registry(format!("/v2/{}/tags/list", self.path()));
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let call = Call::new(OPERATION, Method::GET, target);
            let response = self.transport().send(call).await?;
            if response.status() != StatusCode::OK {
                return Err(from_response(response, "GET", false).await);
            }
            let next = next_page(response.headers(), response.url());
            tags.extend(self.read_page(response).await?);
            match next {
                Some(url) => target = Target::Url(url),
                None => return Ok(tags),
            }
        }
        Err(RegistryError::invalid_response(
            OPERATION,
            self.transport().host(),
            format!("the tag list goes on for more than {MAX_PAGES} pages"),
        ))
    }

    /// Whether the repository has a tag, asking for one at most (`tags/list?n=1`). False when
    /// the registry lists none or does not know the repository (404 NAME_UNKNOWN); any other
    /// answer is an error, so a caller can tell "no" from "could not tell".
    pub async fn has_tags(&self) -> Result<bool, RegistryError> {
        let target = Target::Registry(format!("/v2/{}/tags/list?n=1", self.path()));
        let call = Call::new(OPERATION, Method::GET, target);
        let response = self.transport().send(call).await?;
        if response.status() != StatusCode::OK {
            let error = from_response(response, "GET", false).await;
            return if error.is_name_unknown() {
                Ok(false)
            } else {
                Err(error)
            };
        }
        Ok(!self.read_page(response).await?.is_empty())
    }

    /// The tags of one page of a tag list.
    async fn read_page(&self, response: reqwest::Response) -> Result<Vec<String>, RegistryError> {
        let body = read_bounded(response, MAX_PAGE_BYTES).await;
        let page: TagPage = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::invalid_response(
                OPERATION,
                self.transport().host(),
                format!("tag list is not valid JSON: {e}"),
            )
        })?;
        Ok(page.tags.unwrap_or_default())
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), resolved against the page's URL.
fn next_page(headers: &reqwest::header::HeaderMap, base: &Url) -> Option<Url> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            next.then(|| base.join(target).ok()).flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn next_links_resolve_against_the_page() {
        let base = Url::parse("http://reg:5000/v2/a/b/tags/list").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static("</v2/a/b/tags/list?last=x&n=2>; rel=\"next\""),
        );
        assert_eq!(
            next_page(&headers, &base).unwrap().as_str(),
            "http://reg:5000/v2/a/b/tags/list?last=x&n=2"
        );
        let mut other = HeaderMap::new();
        other.insert(
            LINK,
            HeaderValue::from_static("<https://elsewhere/p>; rel=\"prev\""),
        );
        assert!(next_page(&other, &base).is_none());
        assert!(next_page(&HeaderMap::new(), &base).is_none());
    }
}
