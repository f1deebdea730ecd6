//! distribution/reference's grammar (its `regexp.go`), matched by hand.
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] remote-name
//! domain           := host [':' port-number]
//! host             := domain-name | '[' [a-fA-F0-9:]+ ']'
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port-number      := [0-9]+
//! remote-name      := path-component ['/' path-component]*
//! path-component   := [a-z0-9]+ [separator [a-z0-9]+]*
//! separator        := [_.] | '__' | [-]+
//! tag              := [\w][\w.-]{0,127}
//! digest           := algorithm ':' [0-9a-fA-F]{32,}
//! algorithm        := [A-Za-z][A-Za-z0-9]* ([-_+.] [A-Za-z][A-Za-z0-9]*)*
//! identifier       := [a-f0-9]{64}
//! ```
//!
//! The grammar is unambiguous but for one choice: a first component followed by `/` may be both
//! a domain and a path component (`a/b`). Go's regexp prefers to take the optional domain group,
//! so the matcher does too. Everything here works on ASCII bytes: any other character fails the
//! grammar, so slicing at the ASCII delimiters we search for is always on a char boundary.

/// The pieces of a string that matches the reference grammar, as slices of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Components<'a> {
    /// Empty when the name has no domain (`test_com/foo`).
    pub(crate) domain: &'a str,
    pub(crate) path: &'a str,
    pub(crate) tag: Option<&'a str>,
    /// Matched by the reference grammar only; go-digest validation is the caller's job.
    pub(crate) digest: Option<&'a str>,
}

/// Matches the whole string against `reference`, as upstream's anchored `ReferenceRegexp`.
pub(crate) fn match_reference(s: &str) -> Option<Components<'_>> {
    // Neither a name nor a tag may hold '@', and a digest cannot hold another.
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if digest.is_some_and(|digest| !is_reference_digest(digest)) {
        return None;
    }
    let (name, tag) = split_tag(rest);
    if tag.is_some_and(|tag| !is_tag(tag)) {
        return None;
    }
    let (domain, path) = match_name(name)?;
    Some(Components {
        domain,
        path,
        tag,
        digest,
    })
}

/// A tag holds neither ':' nor '/', and a name holds ':' only in its domain, which '/' follows:
/// so a ':' after the last '/' can only start the tag.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    match s.rfind(':') {
        Some(colon) if !s[colon..].contains('/') => (&s[..colon], Some(&s[colon + 1..])),
        _ => (s, None),
    }
}

/// Splits `[domain '/'] remote-name` into domain (possibly empty) and path.
pub(crate) fn match_name(name: &str) -> Option<(&str, &str)> {
    if let Some((first, rest)) = name.split_once('/')
        && is_domain(first)
        && is_remote_name(rest)
    {
        return Some((first, rest));
    }
    is_remote_name(name).then_some(("", name))
}

/// `host [':' port-number]`.
pub(crate) fn is_domain(s: &str) -> bool {
    // An IPv6 literal has colons of its own, so a port can only follow its closing bracket.
    let host_end_search = if s.starts_with('[') {
        s.find(']').map_or(s.len(), |close| close + 1)
    } else {
        0
    };
    let (host, port) = match s[host_end_search..].find(':') {
        Some(colon) => {
            let colon = host_end_search + colon;
            (&s[..colon], Some(&s[colon + 1..]))
        }
        None => (s, None),
    };
    let port_ok =
        port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    port_ok && (is_ipv6_literal(host) || is_domain_name(host))
}

/// Upstream deliberately accepts any run of hex digits and colons between brackets rather than
/// validating the address (zones and IPv4-mapped forms are excluded by the character set).
fn is_ipv6_literal(host: &str) -> bool {
    host.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|inner| {
            !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
        })
}

fn is_domain_name(host: &str) -> bool {
    host.split('.').all(|component| {
        let bytes = component.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            }
            _ => false,
        }
    })
}

fn is_remote_name(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        let run_start = i;
        while i < bytes.len() && is_lower_alphanumeric(bytes[i]) {
            i += 1;
        }
        if i == run_start {
            // Empty component, or one that starts or ends with a separator.
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let separator_start = i;
        while i < bytes.len() && !is_lower_alphanumeric(bytes[i]) {
            i += 1;
        }
        if !is_separator(&bytes[separator_start..i]) {
            return false;
        }
    }
}

fn is_lower_alphanumeric(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One period, one or two underscores, or any number of dashes.
fn is_separator(separator: &[u8]) -> bool {
    matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&b| b == b'-')
}

/// `[\w][\w.-]{0,127}`, where Go's `\w` is ASCII only.
pub(crate) fn is_tag(tag: &str) -> bool {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.as_bytes().split_first() {
        Some((&first, rest)) => {
            rest.len() <= 127
                && is_word(first)
                && rest.iter().all(|&b| is_word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

/// The reference grammar's digest, looser than go-digest: uppercase algorithms and hex of any
/// length from 32 pass here and are refused afterwards by [`Digest::parse`](crate::Digest::parse).
fn is_reference_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A bare image ID: `[a-f0-9]{64}`.
pub(crate) fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_follow_the_separator_rules() {
        for ok in [
            "a",
            "a0",
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "a.b-c_d__e",
        ] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in [
            "", "A", "-a", "a-", "_a", "a_", ".a", "a.", "a..b", "a___b", "a_.b", "a-.b", "a._b",
            "a/b", "a:b", "é",
        ] {
            assert!(!is_path_component(bad), "{bad}");
        }
    }

    #[test]
    fn domains_are_hostnames_or_bracketed_ipv6_with_optional_port() {
        for ok in [
            "localhost",
            "LOCALDOMAIN",
            "a",
            "test-com:8080",
            "xn--n3h.com:18080",
            "192.168.1.1:5000",
            "[::1]",
            "[::1]:5000",
            "[2001:db8:1:2:3:4:5:6]",
            "[:::::]",
        ] {
            assert!(is_domain(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a_b",
            "a:",
            "a:x",
            "a:1:2",
            ":5000",
            "[]",
            "[::1",
            "::1]",
            "[::1]x",
            "[::1]:",
            "[fe80::1%eth0]",
            "[2001:db8:3:4::192.0.2.33]",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
    }

    #[test]
    fn tags_are_word_characters_up_to_128() {
        assert!(is_tag("latest"));
        assert!(is_tag("_"));
        assert!(is_tag("V1.0-rc_2"));
        assert!(is_tag(&"a".repeat(128)));
        assert!(!is_tag(&"a".repeat(129)));
        assert!(!is_tag(""));
        assert!(!is_tag("-foo"));
        assert!(!is_tag(".foo"));
        assert!(!is_tag("a:b"));
        assert!(!is_tag("a/b"));
        assert!(!is_tag("é"));
    }

    #[test]
    fn reference_digests_follow_the_loose_grammar() {
        let hex32 = "f".repeat(32);
        assert!(is_reference_digest(&format!("sha256:{hex32}")));
        assert!(is_reference_digest(&format!(
            "SHA256:{}",
            hex32.to_uppercase()
        )));
        assert!(is_reference_digest(&format!("a+b.c-d_e:{hex32}")));
        assert!(!is_reference_digest(&format!("sha256:{}", &hex32[1..])));
        assert!(!is_reference_digest(&format!("0sha:{hex32}")));
        assert!(!is_reference_digest(&format!("a--b:{hex32}")));
        assert!(!is_reference_digest(&format!(":{hex32}")));
        assert!(!is_reference_digest(&format!("sha256:{hex32}g")));
        assert!(!is_reference_digest(&hex32));
    }

    #[test]
    fn the_first_component_is_a_domain_whenever_it_can_be() {
        let split = |s| match_reference(s).map(|c| (c.domain, c.path));
        assert_eq!(split("a/b"), Some(("a", "b")));
        assert_eq!(split("test_com/foo"), Some(("", "test_com/foo")));
        assert_eq!(split("a_b.c/foo"), Some(("", "a_b.c/foo")));
        assert_eq!(split("test.com"), Some(("", "test.com")));
        assert_eq!(split("Foo/bar"), Some(("Foo", "bar")));
        assert_eq!(split("Foo"), None);
    }

    #[test]
    fn identifiers_are_exactly_64_lowercase_hex() {
        let id = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        assert!(is_identifier(id));
        assert!(!is_identifier(&id[1..]));
        assert!(!is_identifier(&id.to_uppercase()));
        assert!(!is_identifier(&format!("{id}0")));
    }
}
