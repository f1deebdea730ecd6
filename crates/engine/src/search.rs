//! `GET /images/search`: repositories an index (Docker Hub unless the term names another)
//! knows, through its v1 search API, filtered as moby filters them.

use hoist_registry::RegistryError;

use crate::auth::AuthConfig;
use crate::engine::Engine;
use crate::error::EngineError;

/// moby's page size when the client asks for none.
const DEFAULT_LIMIT: i64 = 25;
const MAX_LIMIT: i64 = 100;

/// What the client asked for.
#[derive(Debug, Default)]
pub struct SearchRequest {
    /// `[index/]name`: a first component with `.` or `:`, or `localhost`, names the index.
    pub term: String,
    /// 0 means moby's default, 25.
    pub limit: i64,
    pub filters: SearchFilters,
    pub auth: AuthConfig,
}

/// The filters moby accepts, already read.
#[derive(Clone, Debug, Default)]
pub struct SearchFilters {
    /// `is-official`: only (or no) official repositories.
    pub is_official: Option<bool>,
    /// `is-automated=true`: nothing is automated any more, so nothing matches.
    pub is_automated: bool,
    /// `stars`: at least this many (the largest value given).
    pub min_stars: Option<i64>,
}

/// One repository found. moby reports every result as not automated (the flag is deprecated
/// and Docker Hub's value untrustworthy), so it is not carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchResult {
    pub star_count: i64,
    pub is_official: bool,
    pub name: String,
    pub description: String,
}

impl Engine {
    pub async fn search_images(
        &self,
        request: SearchRequest,
    ) -> Result<Vec<SearchResult>, EngineError> {
        let filters = request.filters;
        if filters.is_automated {
            return Ok(Vec::new());
        }
        let term = request.term;
        if term.contains("://") {
            return Err(EngineError::InvalidArgument(format!(
                "invalid repository name: repository name ({term}) should not have a scheme"
            )));
        }
        let (index, mut remote) = split_search_term(&term);
        if index == "docker.io" {
            remote = remote.strip_prefix("library/").unwrap_or(remote);
        }
        let limit = match request.limit {
            0 => DEFAULT_LIMIT,
            n => n,
        };
        let limit = u32::try_from(limit)
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(&i64::from(*n)))
            .ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "limit {limit} is outside the range of [1, {MAX_LIMIT}]"
                ))
            })?;
        let credentials = request.auth.credentials_for(&index);
        let found = match self
            .registries
            .search(&index, remote, limit, credentials)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                let insecure = self.registries.is_insecure(&index).await;
                return Err(search_error(e, &index, insecure));
            }
        };
        Ok(found
            .results
            .into_iter()
            .filter(|hit| filters.is_official.is_none_or(|o| o == hit.is_official))
            .filter(|hit| filters.min_stars.is_none_or(|s| hit.star_count >= s))
            .map(|hit| SearchResult {
                star_count: hit.star_count,
                is_official: hit.is_official,
                name: hit.name,
                description: hit.description,
            })
            .collect())
    }
}

/// `(index, rest)`: the first component names the index when it looks like a host, as moby's
/// `splitReposSearchTerm` decides; Docker Hub's spellings fold into `docker.io`.
fn split_search_term(term: &str) -> (String, &str) {
    match term.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (crate::auth::normalize_server(first), rest)
        }
        _ => ("docker.io".to_owned(), term),
    }
}

/// In moby's words: an index that answers with an error status is an unknown error (500); one
/// that cannot be reached, other than Docker Hub, is an invalid endpoint (400).
fn search_error(error: RegistryError, index: &str, insecure: bool) -> EngineError {
    match &error {
        RegistryError::Response(response) => {
            EngineError::Internal(format!("Unexpected status code {}", response.status))
        }
        RegistryError::Transport { .. } if index != "docker.io" => {
            EngineError::InvalidArgument(if insecure {
                format!("invalid registry endpoint \"http://{index}/v1/\": {error}")
            } else {
                format!(
                    "invalid registry endpoint https://{index}/v1/: {error}. If this private registry supports only HTTP or HTTPS with an unknown CA certificate, please add `--insecure-registry {index}` to the daemon's arguments. In the case of HTTPS, if you have access to the registry's CA certificate, no need for the flag; simply place the CA certificate at /etc/docker/certs.d/{index}/ca.crt"
                )
            })
        }
        _ => EngineError::Registry(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_name_their_index_as_moby_splits_them() {
        assert_eq!(split_search_term("ubuntu"), ("docker.io".into(), "ubuntu"));
        assert_eq!(
            split_search_term("user/app"),
            ("docker.io".into(), "user/app")
        );
        assert_eq!(
            split_search_term("localhost:5000/app"),
            ("localhost:5000".into(), "app")
        );
        assert_eq!(
            split_search_term("localhost/a/b"),
            ("localhost".into(), "a/b")
        );
        assert_eq!(
            split_search_term("index.docker.io/library/ubuntu"),
            ("docker.io".into(), "library/ubuntu")
        );
    }
}
