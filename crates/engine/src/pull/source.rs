//! Where a pull fetches from: for Docker Hub images, the configured `registry-mirrors` first and
//! then Docker Hub itself; for any other registry, that registry alone.

use hoist_reference::Reference;
use hoist_registry::{Access, Credentials};

use crate::downloads::Source;
use crate::engine::Engine;

impl Engine {
    /// The sources of `name` (a repository), mirrors first, the origin last.
    pub(crate) fn pull_sources(&self, name: &Reference, credentials: Credentials) -> Vec<Source> {
        let path = name.path();
        let mut sources = Vec::new();
        let mut origin_host = name.domain().to_owned();
        if name.is_docker_hub() {
            let config = self.config();
            for mirror in &config.registry_mirrors {
                match mirror_host(mirror) {
                    Some(host) => sources.push(Source {
                        repository: self.registries.repository(
                            &host,
                            path,
                            Access::Pull,
                            Credentials::Anonymous,
                        ),
                        mirror: true,
                    }),
                    None => tracing::warn!(
                        %mirror,
                        "ignoring registry mirror: expected http(s)://host[:port] without a path"
                    ),
                }
            }
            if let Some(stand_in) = &config.docker_hub_pull_origin {
                origin_host = stand_in.clone();
            }
        }
        sources.push(Source {
            repository: self
                .registries
                .repository(&origin_host, path, Access::Pull, credentials),
            mirror: false,
        });
        sources
    }
}

/// `https://mirror.example:5000/` → `mirror.example:5000`. Mirrors under a path prefix are not
/// supported (the registry client addresses hosts).
fn mirror_host(url: &str) -> Option<String> {
    let rest = url
        .trim()
        .strip_prefix("https://")
        .or_else(|| url.trim().strip_prefix("http://"))?;
    let host = rest.trim_end_matches('/');
    (!host.is_empty() && !host.contains(['/', '?', '#', '@'])).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_urls_name_hosts() {
        assert_eq!(
            mirror_host("https://mirror.gcr.io").as_deref(),
            Some("mirror.gcr.io")
        );
        assert_eq!(
            mirror_host("http://127.0.0.1:5001/").as_deref(),
            Some("127.0.0.1:5001")
        );
        assert_eq!(mirror_host("mirror.example"), None);
        assert_eq!(mirror_host("https://mirror.example/prefix"), None);
        assert_eq!(mirror_host("https://"), None);
    }
}
