//! Docker Hub's v1 search: `GET /v1/search?q=<term>&n=<limit>` on an index. Registries
//! speaking only the v2 distribution API have no such endpoint and answer 404.

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::RegistryError;
use crate::credentials::Credentials;
use crate::error::from_response;
use crate::http_util::read_bounded;
use crate::registries::Registries;
use crate::transport::{Call, Target};

const OPERATION: &str = "search";
/// A page of at most 100 results is far smaller than this.
const MAX_RESULTS_BYTES: usize = 4 * 1024 * 1024;
/// Where Docker Hub serves its index API (the v1 search), not its registry API.
const DOCKER_HUB_INDEX_HOST: &str = "index.docker.io";
/// The scope Docker Hub's token server grants searches under.
const SEARCH_SCOPE: &str = "registry:catalog:search";

/// The index's answer, as Docker Hub sends it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SearchResults {
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub num_results: i64,
    #[serde(default)]
    pub results: Vec<SearchHit>,
}

/// One repository found.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SearchHit {
    #[serde(default)]
    pub star_count: i64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub is_automated: bool,
    #[serde(default)]
    pub description: String,
}

impl Registries {
    /// Searches the index at `domain` (a reference domain: `docker.io` means Docker Hub's
    /// index) for `term`, asking for `limit` results. The index's error status is the error.
    pub async fn search(
        &self,
        domain: &str,
        term: &str,
        limit: u32,
        credentials: Credentials,
    ) -> Result<SearchResults, RegistryError> {
        let host = match domain {
            "docker.io" => DOCKER_HUB_INDEX_HOST.to_owned(),
            other => other.to_owned(),
        };
        let transport = self.transport(host.clone(), credentials, vec![SEARCH_SCOPE.to_owned()]);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", term)
            .append_pair("n", &limit.to_string())
            .finish();
        let mut call = Call::new(
            OPERATION,
            Method::GET,
            Target::Registry(format!("/v1/search?{query}")),
        );
        // Docker Hub's v1 API hands out a token only when asked for one.
        call.headers
            .insert("X-Docker-Token", HeaderValue::from_static("true"));
        let response = transport.send(call).await?;
        if response.status() != StatusCode::OK {
            return Err(from_response(response, "GET", false).await);
        }
        let body = read_bounded(response, MAX_RESULTS_BYTES).await;
        serde_json::from_slice(&body).map_err(|e| {
            RegistryError::invalid_response(
                OPERATION,
                host,
                format!("error decoding registry search results: {e}"),
            )
        })
    }
}
