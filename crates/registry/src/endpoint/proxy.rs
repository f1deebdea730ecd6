//! Proxy selection from the environment, the way Go's `http.ProxyFromEnvironment` does it for
//! dockerd, so a daemon configured for Docker behaves the same here.
//!
//! reqwest's own environment handling differs in details that matter on real networks: Go never
//! proxies loopback addresses or `localhost`, and matches `NO_PROXY` entries with ports, CIDRs
//! and `*.` prefixes in its own way.

use std::net::IpAddr;

use ipnet::IpNet;
use url::Url;

use crate::config::{ConfigError, ProxyConfig};
use crate::http_util::without_query;

#[derive(Debug, Default, Clone)]
pub(crate) struct ProxyRules {
    http: Option<Url>,
    https: Option<Url>,
    no_proxy: NoProxy,
}

#[derive(Debug, Default, Clone)]
struct NoProxy {
    everything: bool,
    networks: Vec<IpNet>,
    addresses: Vec<(IpAddr, Option<u16>)>,
    domains: Vec<DomainMatch>,
}

#[derive(Debug, Clone)]
struct DomainMatch {
    /// Always starts with a dot: `.example.com`.
    suffix: String,
    /// The entry was written without a leading dot, so the bare domain matches too.
    match_bare: bool,
    port: Option<u16>,
}

impl ProxyRules {
    /// The daemon's proxy settings, each falling back to its environment variable.
    pub(crate) fn new(config: &ProxyConfig) -> Result<ProxyRules, ConfigError> {
        let effective = config.effective();
        ProxyRules::from_lookup(|name| {
            let value = match name {
                "HTTP_PROXY" | "http_proxy" => &effective.http_proxy,
                "HTTPS_PROXY" | "https_proxy" => &effective.https_proxy,
                "NO_PROXY" | "no_proxy" => &effective.no_proxy,
                _ => return std::env::var(name).ok(),
            };
            value.clone()
        })
    }

    pub(crate) fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<ProxyRules, ConfigError> {
        let any = |upper: &str, lower: &str| {
            get(upper)
                .filter(|v| !v.is_empty())
                .or_else(|| get(lower).filter(|v| !v.is_empty()))
        };
        // Go ignores HTTP_PROXY under CGI, where a client controls it through the Proxy header.
        let cgi = get("REQUEST_METHOD").is_some_and(|v| !v.is_empty());
        let http = if cgi {
            None
        } else {
            any("HTTP_PROXY", "http_proxy")
                .map(|v| parse_proxy(&v))
                .transpose()?
        };
        let https = any("HTTPS_PROXY", "https_proxy")
            .map(|v| parse_proxy(&v))
            .transpose()?;
        let no_proxy = NoProxy::parse(&any("NO_PROXY", "no_proxy").unwrap_or_default());
        Ok(ProxyRules {
            http,
            https,
            no_proxy,
        })
    }

    /// Whether no URL at all goes through a proxy: neither an HTTP nor an HTTPS proxy is set.
    pub(crate) fn proxies_nothing(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The proxy for a request to `url`, if any.
    pub(crate) fn proxy_for(&self, url: &Url) -> Option<Url> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref()?,
            "http" => self.http.as_ref()?,
            _ => return None,
        };
        let host = match url.host()? {
            url::Host::Domain(d) => d.to_ascii_lowercase(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        let port = url.port_or_known_default()?;
        if self.bypass(&host, port) {
            return None;
        }
        Some(proxy.clone())
    }

    fn bypass(&self, host: &str, port: u16) -> bool {
        if host == "localhost" {
            return true;
        }
        let ip = host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        let rules = &self.no_proxy;
        if rules.everything {
            return true;
        }
        if let Some(ip) = ip {
            if rules.networks.iter().any(|n| n.contains(&ip)) {
                return true;
            }
            if rules
                .addresses
                .iter()
                .any(|(a, p)| *a == ip && p.is_none_or(|p| p == port))
            {
                return true;
            }
        }
        rules.domains.iter().any(|d| {
            (host.ends_with(&d.suffix) || (d.match_bare && host == &d.suffix[1..]))
                && d.port.is_none_or(|p| p == port)
        })
    }
}

impl NoProxy {
    fn parse(list: &str) -> NoProxy {
        let mut rules = NoProxy::default();
        for entry in list.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                rules.everything = true;
                continue;
            }
            if let Ok(net) = entry.parse::<IpNet>() {
                rules.networks.push(net);
                continue;
            }
            let (host, port) = split_entry(&entry);
            if host.is_empty() {
                continue;
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                rules.addresses.push((ip.to_canonical(), port));
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            if host.is_empty() {
                continue;
            }
            let (suffix, match_bare) = match host.strip_prefix('.') {
                Some(_) => (host.to_owned(), false),
                None => (format!(".{host}"), true),
            };
            rules.domains.push(DomainMatch {
                suffix,
                match_bare,
                port,
            });
        }
        rules
    }
}

/// Splits `host:port` or `[v6]:port` like Go's `net.SplitHostPort`; anything else is all host.
fn split_entry(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (host, port);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn parse_proxy(value: &str) -> Result<Url, ConfigError> {
    // Go accepts a bare `host:port` and reads it as http.
    let url = match Url::parse(value) {
        Ok(url) if url.has_host() => url,
        _ => Url::parse(&format!("http://{value}"))
            .map_err(|e| ConfigError(format!("invalid proxy address {value:?}: {e}")))?,
    };
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(ConfigError(format!(
            "proxy scheme {other} is not supported (proxy {})",
            without_query(&url)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(vars: &[(&str, &str)]) -> ProxyRules {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyRules::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .unwrap()
    }

    fn via(r: &ProxyRules, url: &str) -> Option<String> {
        r.proxy_for(&Url::parse(url).unwrap())
            .map(|u| u.to_string())
    }

    #[test]
    fn proxies_nothing_only_without_a_proxy_for_either_scheme() {
        assert!(rules(&[]).proxies_nothing());
        assert!(rules(&[("NO_PROXY", "*")]).proxies_nothing());
        assert!(!rules(&[("HTTP_PROXY", "http://p1:3128")]).proxies_nothing());
        assert!(!rules(&[("https_proxy", "p2:8080")]).proxies_nothing());
    }

    #[test]
    fn picks_by_scheme_and_prefers_uppercase() {
        let r = rules(&[
            ("HTTP_PROXY", "http://p1:3128"),
            ("http_proxy", "http://ignored:1"),
            ("https_proxy", "p2:8080"),
        ]);
        assert_eq!(
            via(&r, "http://reg.example/v2/").as_deref(),
            Some("http://p1:3128/")
        );
        assert_eq!(
            via(&r, "https://reg.example/v2/").as_deref(),
            Some("http://p2:8080/")
        );
    }

    #[test]
    fn never_proxies_loopback() {
        let r = rules(&[("HTTPS_PROXY", "http://p:1"), ("HTTP_PROXY", "http://p:1")]);
        assert_eq!(via(&r, "https://localhost:5000/v2/"), None);
        assert_eq!(via(&r, "http://127.0.0.1:5000/v2/"), None);
        assert_eq!(via(&r, "http://[::1]:5000/v2/"), None);
        assert!(via(&r, "http://10.0.0.1:5000/v2/").is_some());
    }

    #[test]
    fn no_proxy_forms() {
        let r = rules(&[
            ("HTTPS_PROXY", "http://p:1"),
            (
                "NO_PROXY",
                "example.com, .internal,*.corp.net,10.0.0.0/8,192.168.1.5,ports.io:8443,[2001:db8::1]:443",
            ),
        ]);
        for bypassed in [
            "https://example.com/",
            "https://a.example.com/",
            "https://x.internal/",
            "https://a.corp.net/",
            "https://10.2.3.4/",
            "https://192.168.1.5/",
            "https://ports.io:8443/",
            "https://[2001:db8::1]/",
        ] {
            assert_eq!(via(&r, bypassed), None, "{bypassed}");
        }
        for proxied in [
            "https://notexample.com/",
            "https://internal/",
            "https://192.168.1.6/",
            "https://ports.io/",
            "https://[2001:db8::1]:8443/",
        ] {
            assert!(via(&r, proxied).is_some(), "{proxied}");
        }
        let all = rules(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")]);
        assert_eq!(via(&all, "https://anything/"), None);
    }

    #[test]
    fn cgi_ignores_http_proxy() {
        let r = rules(&[("HTTP_PROXY", "http://p:1"), ("REQUEST_METHOD", "GET")]);
        assert_eq!(via(&r, "http://reg/"), None);
    }

    #[test]
    fn socks_is_refused_rather_than_bypassed() {
        assert!(
            ProxyRules::from_lookup(|n| (n == "HTTPS_PROXY").then(|| "socks5://p:1080".to_owned()))
                .is_err()
        );
    }
}
