//! Upstream's `Parse`: the grammar, then its length limit and go-digest validation, with no
//! normalisation. Only [`normalize`](crate::normalize) calls it, always with a domain in front.

use crate::grammar;
use crate::{Digest, ReferenceError};

/// distribution/reference's `RepositoryNameTotalLengthMax`. Since v0.6 it bounds the path only:
/// `example.com/` followed by 255 characters is a valid name.
pub(crate) const REPOSITORY_NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A reference as the grammar reads it, before it becomes a [`Reference`](crate::Reference).
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) domain: String,
    pub(crate) path: String,
    pub(crate) tag: Option<String>,
    pub(crate) digest: Option<Digest>,
}

pub(crate) fn parse(s: &str) -> Result<Parts, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::NameEmpty);
    }
    let Some(components) = grammar::match_reference(s) else {
        let lowered = go_lowercase_for_grammar(s);
        return Err(
            if lowered != s && grammar::match_reference(&lowered).is_some() {
                ReferenceError::NameContainsUppercase
            } else {
                ReferenceError::InvalidReferenceFormat
            },
        );
    };
    if components.path.len() > REPOSITORY_NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    let digest = components.digest.map(Digest::parse).transpose()?;
    Ok(Parts {
        domain: components.domain.to_owned(),
        path: components.path.to_owned(),
        tag: components.tag.map(str::to_owned),
        digest,
    })
}

/// Lowercases as Go's `strings.ToLower` does, as far as the grammar can tell. Only ASCII can
/// match the grammar, and besides ASCII letters only U+0130 (`İ`) and U+212A (Kelvin sign) have
/// ASCII lowercase forms under Go's simple case mapping (`i` and `k`; Rust's full mapping turns
/// `İ` into two characters). Any other character fails the grammar lowercased or not.
fn go_lowercase_for_grammar(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{130}' => 'i',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Vectors of distribution/reference v0.6 `reference_test.go`, which exercise `Parse` itself.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reference;

    fn parse(s: &str) -> Result<Reference, ReferenceError> {
        super::parse(s).map(Reference::from)
    }

    const SHA256_F: &str =
        "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    struct Case<'a> {
        input: String,
        /// `Name()`: domain and path.
        name: &'a str,
        domain: &'a str,
        tag: Option<&'a str>,
        digest: Option<&'a str>,
    }

    fn ok<'a>(
        input: impl Into<String>,
        name: &'a str,
        domain: &'a str,
        tag: Option<&'a str>,
        digest: Option<&'a str>,
    ) -> Case<'a> {
        Case {
            input: input.into(),
            name,
            domain,
            tag,
            digest,
        }
    }

    /// TestReferenceParse, successes.
    #[test]
    fn parses_upstream_valid_references() {
        let sha512_f = format!("sha512:{}", "f".repeat(128));
        let long_path_name = format!("example.com/{}", "a".repeat(255));
        let many_components = format!("{}a", "a/".repeat(127));
        let cases = vec![
            ok("test_com", "test_com", "", None, None),
            ok("test.com:tag", "test.com", "", Some("tag"), None),
            ok("test.com:5000", "test.com", "", Some("5000"), None),
            ok(
                "test.com/repo:tag",
                "test.com/repo",
                "test.com",
                Some("tag"),
                None,
            ),
            ok("test:5000/repo", "test:5000/repo", "test:5000", None, None),
            ok(
                "test:5000/repo:tag",
                "test:5000/repo",
                "test:5000",
                Some("tag"),
                None,
            ),
            ok(
                format!("test:5000/repo@{SHA256_F}"),
                "test:5000/repo",
                "test:5000",
                None,
                Some(SHA256_F),
            ),
            ok(
                format!("test:5000/repo:tag@{SHA256_F}"),
                "test:5000/repo",
                "test:5000",
                Some("tag"),
                Some(SHA256_F),
            ),
            ok(
                "lowercase:Uppercase",
                "lowercase",
                "",
                Some("Uppercase"),
                None,
            ),
            ok(
                format!("{many_components}:tag-puts-this-over-max"),
                &many_components,
                "a",
                Some("tag-puts-this-over-max"),
                None,
            ),
            ok(
                "sub-dom1.foo.com/bar/baz/quux",
                "sub-dom1.foo.com/bar/baz/quux",
                "sub-dom1.foo.com",
                None,
                None,
            ),
            ok(
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com/bar/baz/quux",
                "sub-dom1.foo.com",
                Some("some-long-tag"),
                None,
            ),
            ok(
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io/test.example.com/my-app",
                "b.gcr.io",
                Some("test.example.com"),
                None,
            ),
            ok(
                "xn--n3h.com/myimage:xn--n3h.com",
                "xn--n3h.com/myimage",
                "xn--n3h.com",
                Some("xn--n3h.com"),
                None,
            ),
            // v0.6 registers sha512 (its test imports crypto/sha512); so does our Digest.
            ok(
                format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512_f}"),
                "xn--7o8h.com/myimage",
                "xn--7o8h.com",
                Some("xn--7o8h.com"),
                Some(&sha512_f),
            ),
            ok(
                format!("xn--7o8h.com/myimage:xn--7o8h.com@{SHA256_F}"),
                "xn--7o8h.com/myimage",
                "xn--7o8h.com",
                Some("xn--7o8h.com"),
                Some(SHA256_F),
            ),
            ok("foo_bar.com:8080", "foo_bar.com", "", Some("8080"), None),
            ok(
                "foo/foo_bar.com:8080",
                "foo/foo_bar.com",
                "foo",
                Some("8080"),
                None,
            ),
            ok("192.168.1.1", "192.168.1.1", "", None, None),
            ok("192.168.1.1:tag", "192.168.1.1", "", Some("tag"), None),
            ok("192.168.1.1:5000", "192.168.1.1", "", Some("5000"), None),
            ok(
                "192.168.1.1/repo",
                "192.168.1.1/repo",
                "192.168.1.1",
                None,
                None,
            ),
            ok(
                "192.168.1.1:5000/repo",
                "192.168.1.1:5000/repo",
                "192.168.1.1:5000",
                None,
                None,
            ),
            ok(
                "192.168.1.1:5000/repo:5050",
                "192.168.1.1:5000/repo",
                "192.168.1.1:5000",
                Some("5050"),
                None,
            ),
            ok(
                "[2001:db8::1]/repo",
                "[2001:db8::1]/repo",
                "[2001:db8::1]",
                None,
                None,
            ),
            ok(
                "[2001:db8:1:2:3:4:5:6]/repo:tag",
                "[2001:db8:1:2:3:4:5:6]/repo",
                "[2001:db8:1:2:3:4:5:6]",
                Some("tag"),
                None,
            ),
            ok(
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000",
                None,
                None,
            ),
            ok(
                "[2001:db8::1]:5000/repo:tag",
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000",
                Some("tag"),
                None,
            ),
            ok(
                format!("[2001:db8::1]:5000/repo@{SHA256_F}"),
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000",
                None,
                Some(SHA256_F),
            ),
            ok(
                format!("[2001:db8::1]:5000/repo:tag@{SHA256_F}"),
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000",
                Some("tag"),
                Some(SHA256_F),
            ),
            ok(
                "[2001:db8::]:5000/repo",
                "[2001:db8::]:5000/repo",
                "[2001:db8::]:5000",
                None,
                None,
            ),
            ok(
                "[::1]:5000/repo",
                "[::1]:5000/repo",
                "[::1]:5000",
                None,
                None,
            ),
            ok(
                format!("{long_path_name}:tag"),
                &long_path_name,
                "example.com",
                Some("tag"),
                None,
            ),
            // TestDomainAndPath (written for WithName, which splits names the same way).
            ok("test.com/foo", "test.com/foo", "test.com", None, None),
            ok("test_com/foo", "test_com/foo", "", None, None),
            ok("test:8080/foo", "test:8080/foo", "test:8080", None, None),
            ok(
                "test.com:8080/foo",
                "test.com:8080/foo",
                "test.com:8080",
                None,
                None,
            ),
            ok(
                "test-com:8080/foo",
                "test-com:8080/foo",
                "test-com:8080",
                None,
                None,
            ),
            ok(
                "xn--n3h.com:18080/foo",
                "xn--n3h.com:18080/foo",
                "xn--n3h.com:18080",
                None,
                None,
            ),
        ];
        for case in &cases {
            let input = &case.input;
            let parsed = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.to_string(), *input, "String() of {input}");
            assert_eq!(parsed.name(), case.name, "Name() of {input}");
            assert_eq!(parsed.domain(), case.domain, "Domain() of {input}");
            let path = case
                .name
                .strip_prefix(case.domain)
                .map_or(case.name, |rest| rest.trim_start_matches('/'));
            assert_eq!(parsed.path(), path, "Path() of {input}");
            assert_eq!(parsed.tag(), case.tag, "Tag() of {input}");
            assert_eq!(
                parsed.digest().map(Digest::as_str),
                case.digest,
                "Digest() of {input}"
            );
        }
    }

    /// TestReferenceParse failures, TestWithNameFailure's that apply to Parse, and the
    /// characters Go lowercases into ASCII.
    #[test]
    fn refuses_upstream_invalid_references_with_upstream_errors() {
        use ReferenceError::*;
        let cases: Vec<(String, ReferenceError)> = vec![
            ("".into(), NameEmpty),
            (":justtag".into(), InvalidReferenceFormat),
            (format!("@{SHA256_F}"), InvalidReferenceFormat),
            (
                "repo@sha256:ffffffffffffffffffffffffffffffffff".into(),
                InvalidDigestLength,
            ),
            (
                format!("validname@invaliddigest:{}", "f".repeat(64)),
                UnsupportedDigestAlgorithm,
            ),
            ("Uppercase:tag".into(), NameContainsUppercase),
            (
                "test:5000/Uppercase/lowercase:tag".into(),
                NameContainsUppercase,
            ),
            (format!("domain/{}:tag", "a".repeat(256)), NameTooLong),
            (format!("example.com/{}", "a".repeat(256)), NameTooLong),
            ("aa/asdf$$^/aa".into(), InvalidReferenceFormat),
            ("[2001:db8::1]".into(), InvalidReferenceFormat),
            ("[2001:db8::1]:5000".into(), InvalidReferenceFormat),
            ("[2001:db8::1]:tag".into(), InvalidReferenceFormat),
            ("[fe80::1%eth0]:5000/repo".into(), InvalidReferenceFormat),
            (
                "[fe80::1%@invalidzone]:5000/repo".into(),
                InvalidReferenceFormat,
            ),
            // The uppercase-hex digest passes the grammar, then fails go-digest.
            (
                format!("repo@sha256:{}", "F".repeat(64)),
                InvalidDigestFormat,
            ),
            // Go's strings.ToLower maps these two into ASCII, so upstream blames the case.
            ("\u{212A}:tag".into(), NameContainsUppercase),
            ("\u{130}".into(), NameContainsUppercase),
            ("\u{212B}".into(), InvalidReferenceFormat),
        ];
        for (input, want) in &cases {
            assert_eq!(parse(input).as_ref(), Err(want), "{input}");
        }
    }

    /// What upstream's own `Parse` answered for the inputs of `tests/upstream/vectors.jsonl`.
    #[test]
    fn matches_upstream_parse_on_recorded_vectors() {
        use serde_json::Value;
        let text =
            |object: &Value, key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
        let mut mismatches = Vec::new();
        for line in include_str!("../tests/upstream/vectors.jsonl").lines() {
            let vector: Value = serde_json::from_str(line).expect("JSON lines");
            let input = text(&vector, "in").expect("an input");
            let ours = parse(&input);
            let agrees = match (&ours, vector.get("parse"), text(&vector, "parse_err")) {
                (Ok(named), Some(want), None) => {
                    Some(named.to_string()) == text(want, "s")
                        && Some(named.domain().to_owned()) == text(want, "d")
                        && Some(named.path().to_owned()) == text(want, "p")
                        && named.tag().map(str::to_owned) == text(want, "t")
                        && named.digest().map(|d| d.as_str().to_owned()) == text(want, "g")
                }
                (Err(error), None, Some(want)) => error.to_string() == want,
                _ => false,
            };
            if !agrees {
                mismatches.push(format!("{input:?}: upstream {vector}, ours {ours:?}"));
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    /// "Uppercase/lowercase:tag" is commented out upstream as a FIXME: `Uppercase` passes as
    /// a domain name. We keep upstream's behaviour.
    #[test]
    fn an_uppercase_first_component_is_a_domain() {
        let parsed = parse("Uppercase/lowercase:tag").unwrap();
        assert_eq!(parsed.domain(), "Uppercase");
        assert_eq!(parsed.path(), "lowercase");
    }
}
