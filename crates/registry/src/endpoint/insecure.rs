//! Which registries are "insecure" (unverified TLS, plain-HTTP fallback), as dockerd decides.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::ConfigError;

/// A name lookup that hangs must not hold up a push for long: the host is then secure.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct InsecureRules {
    /// Exact `host` or `host:port` entries, lowercased.
    names: HashSet<String>,
    cidrs: Vec<IpNet>,
    loopback: bool,
}

impl InsecureRules {
    pub(crate) fn new(entries: &[String], loopback: bool) -> Result<InsecureRules, ConfigError> {
        let mut names = HashSet::new();
        let mut cidrs = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            // dockerd refuses schemes here rather than guess what was meant.
            if entry.contains("://") {
                return Err(ConfigError(format!(
                    "insecure registry {entry} should not contain '://'"
                )));
            }
            if entry.contains('/') {
                let net = entry.parse::<IpNet>().map_err(|_| {
                    ConfigError(format!("insecure registry {entry} is not a valid CIDR"))
                })?;
                cidrs.push(net.trunc());
            } else if !entry.is_empty() {
                names.insert(entry.to_ascii_lowercase());
            }
        }
        Ok(InsecureRules {
            names,
            cidrs,
            loopback,
        })
    }

    /// `domain` is the reference domain (`host` or `host:port`, IPv6 in brackets).
    pub(crate) async fn is_insecure(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        // dockerd pins Docker Hub as secure whatever the configuration says.
        if is_docker_hub(&domain) {
            return false;
        }
        if self.names.contains(&domain) {
            return true;
        }
        let host = host_without_port(&domain);
        if self.loopback && host == "localhost" {
            return true;
        }
        let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) if self.cidrs.is_empty() && !self.loopback => return false,
            // dockerd resolves the name and checks every address against the CIDRs.
            Err(_) => resolve(host).await,
        };
        addresses.into_iter().any(|ip| self.matches(ip))
    }

    fn matches(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        (self.loopback && ip.is_loopback()) || self.cidrs.iter().any(|net| net.contains(&ip))
    }
}

pub(crate) fn is_docker_hub(domain: &str) -> bool {
    matches!(
        domain,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// `host:port` → `host`, `[::1]:5000` → `::1`.
pub(crate) fn host_without_port(domain: &str) -> &str {
    if let Some(rest) = domain.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match domain.rsplit_once(':') {
        // More than one colon without brackets is a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => domain,
    }
}

async fn resolve(host: &str) -> Vec<IpAddr> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(addresses)) => addresses.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(entries: &[&str], loopback: bool) -> InsecureRules {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        InsecureRules::new(&entries, loopback).unwrap()
    }

    #[tokio::test]
    async fn loopback_is_insecure_by_default() {
        let r = rules(&[], true);
        for host in [
            "127.0.0.1:5000",
            "127.8.9.1",
            "[::1]:5000",
            "localhost:5000",
            "localhost",
        ] {
            assert!(r.is_insecure(host).await, "{host}");
        }
        assert!(!r.is_insecure("10.1.2.3:5000").await);
        assert!(!r.is_insecure("docker.io").await);
        let strict = rules(&[], false);
        assert!(!strict.is_insecure("127.0.0.1:5000").await);
        assert!(!strict.is_insecure("localhost:5000").await);
    }

    #[tokio::test]
    async fn names_match_exactly_and_cidrs_by_address() {
        let r = rules(&["myreg:5000", "other", "10.0.0.0/8"], false);
        assert!(r.is_insecure("myreg:5000").await);
        assert!(r.is_insecure("MyReg:5000").await);
        assert!(!r.is_insecure("myreg").await);
        assert!(r.is_insecure("other").await);
        assert!(!r.is_insecure("other:443").await);
        assert!(r.is_insecure("10.20.30.40:5000").await);
        assert!(!r.is_insecure("11.0.0.1").await);
        // A name that resolves into a CIDR: localhost resolves to loopback.
        let by_name = rules(&["127.0.0.0/8"], false);
        assert!(by_name.is_insecure("localhost:5000").await);
    }

    #[tokio::test]
    async fn docker_hub_stays_secure() {
        let r = rules(&["docker.io", "0.0.0.0/0"], true);
        assert!(!r.is_insecure("docker.io").await);
        assert!(!r.is_insecure("registry-1.docker.io").await);
    }

    #[test]
    fn refuses_schemes_and_bad_cidrs() {
        assert!(InsecureRules::new(&["http://x".into()], true).is_err());
        assert!(InsecureRules::new(&["10.0.0.0/99".into()], true).is_err());
    }

    #[test]
    fn strips_ports() {
        assert_eq!(host_without_port("a:1"), "a");
        assert_eq!(host_without_port("a"), "a");
        assert_eq!(host_without_port("[::1]:5000"), "::1");
        assert_eq!(host_without_port("::1"), "::1");
    }
}
