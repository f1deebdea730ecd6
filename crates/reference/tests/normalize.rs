//! Vectors of distribution/reference v0.6 `normalize_test.go` (and the `reference_test.go` ones
//! that go through names, tags and digests), run against the public API.

use hoist_reference::{Digest, Reference, ReferenceError, is_valid_tag};

const SHA256_DBCC: &str = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
const SHA256_E669: &str = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
const HEX_ID: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

fn parse(s: &str) -> Reference {
    Reference::parse_normalized(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn digest(s: &str) -> Digest {
    Digest::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// TestValidateReferenceName and TestValidateRemoteName, valid inputs.
#[test]
fn accepts_upstream_valid_names() {
    let valid = [
        "docker/docker",
        "library/debian",
        "debian",
        "localhost/library/debian",
        "localhost/debian",
        "LOCALDOMAIN/library/debian",
        "LOCALDOMAIN/debian",
        "docker.io/docker/docker",
        "docker.io/library/debian",
        "docker.io/debian",
        "index.docker.io/docker/docker",
        "index.docker.io/library/debian",
        "index.docker.io/debian",
        "127.0.0.1:5000/docker/docker",
        "127.0.0.1:5000/library/debian",
        "127.0.0.1:5000/debian",
        "192.168.0.1",
        "192.168.0.1:80",
        "192.168.0.1:8/debian",
        "192.168.0.2:25000/debian",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "[fc00::1]:5000/docker",
        "[fc00::1]:5000/docker/docker",
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        // With a hostname, 64 hex characters are a repository, not an image ID.
        "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "Docker/docker",
        "DOCKER/docker",
        // TestValidateRemoteName
        "docker-rules/docker",
        "docker---rules/docker",
        "doc/docker",
        "d/docker",
        "jess/t",
        "dock__er/docker",
    ];
    for name in valid {
        parse(name);
    }
}

/// TestValidateReferenceName and TestValidateRemoteName, invalid inputs, with the error each
/// gets from upstream (upstream's tests only check that one is returned).
#[test]
fn refuses_upstream_invalid_names_with_upstream_errors() {
    use ReferenceError::*;
    let too_long_namespace = format!(
        "{}/docker",
        ["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"; 4].join("_")
    );
    let cases: Vec<(&str, ReferenceError)> = vec![
        ("https://github.com/docker/docker", InvalidReferenceFormat),
        (
            "docker/Docker",
            RepositoryNameNotLowercase {
                repository: "docker/Docker".into(),
            },
        ),
        ("-docker", InvalidReferenceFormat),
        ("-docker/docker", InvalidReferenceFormat),
        ("-docker.io/docker/docker", InvalidReferenceFormat),
        ("docker///docker", InvalidReferenceFormat),
        (
            "docker.io/docker/Docker",
            RepositoryNameNotLowercase {
                repository: "docker/Docker".into(),
            },
        ),
        ("docker.io/docker///docker", InvalidReferenceFormat),
        ("[fc00::1]", InvalidReferenceFormat),
        ("[fc00::1]:5000", InvalidReferenceFormat),
        ("fc00::1:5000/debian", InvalidReferenceFormat),
        ("[fe80::1%eth0]:5000/debian", InvalidReferenceFormat),
        (
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            InvalidReferenceFormat,
        ),
        (
            HEX_ID,
            HexadecimalRepositoryName {
                name: HEX_ID.into(),
            },
        ),
        // TestValidateRemoteName
        ("docker-/docker", InvalidReferenceFormat),
        ("-docker-/docker", InvalidReferenceFormat),
        ("____/____", InvalidReferenceFormat),
        ("_docker/_docker", InvalidReferenceFormat),
        ("dock..er/docker", InvalidReferenceFormat),
        ("dock_.er/docker", InvalidReferenceFormat),
        ("dock-.er/docker", InvalidReferenceFormat),
        ("docker/", InvalidReferenceFormat),
        (&too_long_namespace, NameTooLong),
    ];
    for (input, want) in &cases {
        assert_eq!(
            Reference::parse_normalized(input).as_ref(),
            Err(want),
            "{input}"
        );
    }
}

/// TestParseRepositoryInfo: every spelling of a repository gives the same familiar name, full
/// name, domain and path.
#[test]
fn spellings_of_a_repository_agree() {
    struct Case {
        path: &'static str,
        familiar: &'static str,
        full: &'static str,
        ambiguous: Option<&'static str>,
        domain: &'static str,
    }
    let case = |path, familiar, full, ambiguous, domain| Case {
        path,
        familiar,
        full,
        ambiguous,
        domain,
    };
    let cases = [
        case(
            "fooo",
            "localhost/fooo",
            "localhost/fooo",
            Some("localhost/fooo"),
            "localhost",
        ),
        case(
            "fooo/bar",
            "localhost/fooo/bar",
            "localhost/fooo/bar",
            Some("localhost/fooo/bar"),
            "localhost",
        ),
        case(
            "fooo",
            "LOCALDOMAIN/fooo",
            "LOCALDOMAIN/fooo",
            Some("LOCALDOMAIN/fooo"),
            "LOCALDOMAIN",
        ),
        case(
            "fooo/bar",
            "LOCALDOMAIN/fooo/bar",
            "LOCALDOMAIN/fooo/bar",
            Some("LOCALDOMAIN/fooo/bar"),
            "LOCALDOMAIN",
        ),
        case(
            "fooo/bar",
            "fooo/bar",
            "docker.io/fooo/bar",
            Some("index.docker.io/fooo/bar"),
            "docker.io",
        ),
        case(
            "library/ubuntu",
            "ubuntu",
            "docker.io/library/ubuntu",
            Some("library/ubuntu"),
            "docker.io",
        ),
        case(
            "nonlibrary/ubuntu",
            "nonlibrary/ubuntu",
            "docker.io/nonlibrary/ubuntu",
            None,
            "docker.io",
        ),
        case(
            "other/library",
            "other/library",
            "docker.io/other/library",
            None,
            "docker.io",
        ),
        case(
            "private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            None,
            "127.0.0.1:8000",
        ),
        case(
            "privatebase",
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000/privatebase",
            None,
            "127.0.0.1:8000",
        ),
        case(
            "private/moonbase",
            "example.com/private/moonbase",
            "example.com/private/moonbase",
            None,
            "example.com",
        ),
        case(
            "privatebase",
            "example.com/privatebase",
            "example.com/privatebase",
            None,
            "example.com",
        ),
        case(
            "private/moonbase",
            "example.com:8000/private/moonbase",
            "example.com:8000/private/moonbase",
            None,
            "example.com:8000",
        ),
        case(
            "privatebasee",
            "example.com:8000/privatebasee",
            "example.com:8000/privatebasee",
            None,
            "example.com:8000",
        ),
        case(
            "library/ubuntu-12.04-base",
            "ubuntu-12.04-base",
            "docker.io/library/ubuntu-12.04-base",
            Some("index.docker.io/library/ubuntu-12.04-base"),
            "docker.io",
        ),
        case(
            "library/foo",
            "foo",
            "docker.io/library/foo",
            Some("docker.io/foo"),
            "docker.io",
        ),
        case(
            "library/foo/bar",
            "library/foo/bar",
            "docker.io/library/foo/bar",
            None,
            "docker.io",
        ),
        case(
            "store/foo/bar",
            "store/foo/bar",
            "docker.io/store/foo/bar",
            None,
            "docker.io",
        ),
        case("bar", "Foo/bar", "Foo/bar", None, "Foo"),
        case("bar", "FOO/bar", "FOO/bar", None, "FOO"),
    ];
    for case in &cases {
        for spelling in [Some(case.familiar), Some(case.full), case.ambiguous]
            .into_iter()
            .flatten()
        {
            let named = parse(spelling);
            assert_eq!(
                named.familiar_name(),
                case.familiar,
                "familiar of {spelling}"
            );
            assert_eq!(named.to_string(), case.full, "full of {spelling}");
            assert_eq!(named.name(), case.full, "name of {spelling}");
            assert_eq!(named.domain(), case.domain, "domain of {spelling}");
            assert_eq!(named.path(), case.path, "path of {spelling}");
            assert_eq!(named.is_docker_hub(), case.domain == "docker.io");
        }
    }
}

/// TestParseReferenceWithTagAndDigest.
#[test]
fn keeps_both_tag_and_digest() {
    let short =
        "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    let named = parse(short);
    assert_eq!(named.to_string(), format!("docker.io/library/{short}"));
    assert_eq!(named.tag(), Some("latest"));
    assert_eq!(
        named.digest().map(Digest::as_str),
        Some("sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa")
    );
    assert_eq!(named.familiar_string(), short);
}

/// TestInvalidReferenceComponents. Its `WithDigest(ref, "foo")` case cannot be written: a
/// `Digest` is validated when built, so `with_digest` has nothing left to refuse.
#[test]
fn refuses_invalid_components() {
    assert!(Reference::parse_normalized("-foo").is_err());
    let busybox = parse("busybox");
    assert_eq!(
        busybox.with_tag("-foo"),
        Err(ReferenceError::InvalidTagFormat)
    );
    assert!(Digest::parse("foo").is_err());
}

/// TestParseAnyReference, the cases that are names (IDs and bare digests are not references
/// here), and TestNormalizedSplitHostname.
#[test]
fn normalises_familiar_forms() {
    let cases: Vec<(String, String)> = vec![
        ("redis".into(), "docker.io/library/redis".into()),
        (
            "redis:latest".into(),
            "docker.io/library/redis:latest".into(),
        ),
        (
            "docker.io/library/redis:latest".into(),
            "docker.io/library/redis:latest".into(),
        ),
        (
            format!("redis@{SHA256_DBCC}"),
            format!("docker.io/library/redis@{SHA256_DBCC}"),
        ),
        (
            format!("docker.io/library/redis@{SHA256_DBCC}"),
            format!("docker.io/library/redis@{SHA256_DBCC}"),
        ),
        ("dmcgowan/myapp".into(), "docker.io/dmcgowan/myapp".into()),
        (
            "dmcgowan/myapp:latest".into(),
            "docker.io/dmcgowan/myapp:latest".into(),
        ),
        (
            "docker.io/mcgowan/myapp:latest".into(),
            "docker.io/mcgowan/myapp:latest".into(),
        ),
        (
            format!("dmcgowan/myapp@{SHA256_DBCC}"),
            format!("docker.io/dmcgowan/myapp@{SHA256_DBCC}"),
        ),
        (
            format!("docker.io/dmcgowan/myapp@{SHA256_DBCC}"),
            format!("docker.io/dmcgowan/myapp@{SHA256_DBCC}"),
        ),
        // 63 hex characters are a name.
        (
            "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9".into(),
            "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9"
                .into(),
        ),
        ("dbcc1".into(), "docker.io/library/dbcc1".into()),
        // TestNormalizedSplitHostname
        ("test.com/foo".into(), "test.com/foo".into()),
        ("test_com/foo".into(), "docker.io/test_com/foo".into()),
        ("docker/migrator".into(), "docker.io/docker/migrator".into()),
        ("test.com:8080/foo".into(), "test.com:8080/foo".into()),
        ("test-com:8080/foo".into(), "test-com:8080/foo".into()),
        ("foo".into(), "docker.io/library/foo".into()),
        ("xn--n3h.com/foo".into(), "xn--n3h.com/foo".into()),
        (
            "xn--n3h.com:18080/foo".into(),
            "xn--n3h.com:18080/foo".into(),
        ),
        ("docker.io/foo".into(), "docker.io/library/foo".into()),
        (
            "docker.io/library/foo".into(),
            "docker.io/library/foo".into(),
        ),
        (
            "docker.io/library/foo/bar".into(),
            "docker.io/library/foo/bar".into(),
        ),
    ];
    for (input, full) in &cases {
        let named = parse(input);
        assert_eq!(named.to_string(), *full, "{input}");
        // The full form is canonical: it parses to itself.
        assert_eq!(parse(full), named, "{full}");
    }
}

/// TestParseNamed: the inputs upstream calls canonical are exactly those whose full form is
/// themselves.
#[test]
fn canonical_names_are_their_own_full_form() {
    let cases = [
        ("test.com/foo", true),
        ("test:8080/foo", true),
        ("test_com/foo", false),
        ("test.com", false),
        ("foo", false),
        ("library/foo", false),
        ("docker.io/library/foo", true),
        ("docker.io/foo", false),
    ];
    for (input, canonical) in cases {
        assert_eq!(parse(input).to_string() == input, canonical, "{input}");
    }
}

/// TestParseDockerRef, written with `tag_name_only` and `without_tag`: docker keeps the digest
/// when given both.
#[test]
fn docker_ref_forms() {
    let docker_ref = |input: &str| {
        let named = parse(input);
        if named.digest().is_some() {
            named.without_tag()
        } else {
            named.tag_name_only()
        }
    };
    let cases: Vec<(String, String)> = vec![
        ("busybox".into(), "docker.io/library/busybox:latest".into()),
        (
            "busybox:latest".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            format!("busybox@{SHA256_E669}"),
            format!("docker.io/library/busybox@{SHA256_E669}"),
        ),
        (
            "library/busybox".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "docker.io/busybox".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "docker.io/library/busybox".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "docker.io/busybox:latest".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "library/busybox:latest".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "docker.io/library/busybox:latest".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "gcr.io/library/busybox".into(),
            "gcr.io/library/busybox:latest".into(),
        ),
        (
            format!("gcr.io/library/busybox:latest@{SHA256_E669}"),
            format!("gcr.io/library/busybox@{SHA256_E669}"),
        ),
    ];
    for (input, want) in &cases {
        let got = docker_ref(input);
        assert_eq!(got.to_string(), *want, "{input}");
        assert_eq!(parse(want), got, "{want} reparses");
    }
}

/// TestWithTag and TestWithDigest. Upstream's digests there are 40 hex characters long, which
/// the grammar allows but go-digest's sha256 does not, so a real sha256 stands in.
#[test]
fn with_tag_and_with_digest_combine() {
    let sha = digest(SHA256_DBCC);
    let cases = [
        ("test.com/foo", None, "tag", "test.com/foo:tag"),
        ("foo", None, "tag2", "docker.io/library/foo:tag2"),
        ("test.com:8000/foo", None, "tag4", "test.com:8000/foo:tag4"),
        ("test.com:8000/foo", None, "TAG5", "test.com:8000/foo:TAG5"),
        (
            "test.com:8000/foo",
            Some(&sha),
            "TAG5",
            "test.com:8000/foo:TAG5@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        ),
    ];
    for (name, digest, tag, want) in cases {
        let mut named = parse(name);
        if let Some(digest) = digest {
            named = named.with_digest(digest.clone());
        }
        assert_eq!(named.with_tag(tag).unwrap().to_string(), want);
    }

    let cases = [
        ("test.com/foo", None, "test.com/foo@"),
        ("foo", None, "docker.io/library/foo@"),
        ("test.com:8000/foo", None, "test.com:8000/foo@"),
        (
            "test.com:8000/foo",
            Some("latest"),
            "test.com:8000/foo:latest@",
        ),
    ];
    for (name, tag, want) in cases {
        let mut named = parse(name);
        if let Some(tag) = tag {
            named = named.with_tag(tag).unwrap();
        }
        assert_eq!(
            named.with_digest(sha.clone()).to_string(),
            format!("{want}{SHA256_DBCC}")
        );
    }
}

#[test]
fn with_and_without_replace_only_their_part() {
    let both = parse(&format!("localhost:5000/a/b:v1@{SHA256_DBCC}"));
    let other = digest(SHA256_E669);

    let retagged = both.with_tag("v2").unwrap();
    assert_eq!(retagged.tag(), Some("v2"));
    assert_eq!(retagged.digest(), both.digest());

    let redigested = both.with_digest(other.clone());
    assert_eq!(redigested.tag(), Some("v1"));
    assert_eq!(redigested.digest(), Some(&other));

    assert_eq!(
        both.without_tag().to_string(),
        format!("localhost:5000/a/b@{SHA256_DBCC}")
    );
    assert_eq!(both.without_digest().to_string(), "localhost:5000/a/b:v1");
    assert_eq!(both.name_only().to_string(), "localhost:5000/a/b");
    assert_eq!(both.name_only(), parse("localhost:5000/a/b"));
    assert_eq!(both.clone().tag_name_only(), both);
    assert_eq!(both.without_tag().tag_name_only(), both.without_tag());
    assert_eq!(
        both.name_only().tag_name_only().to_string(),
        "localhost:5000/a/b:latest"
    );

    for bad in ["", "-v", ".v", "a:b", "a/b", "a@b", &"a".repeat(129), "ünï"] {
        assert_eq!(
            both.with_tag(bad),
            Err(ReferenceError::InvalidTagFormat),
            "{bad}"
        );
    }
    assert!(both.with_tag(&"a".repeat(128)).is_ok());
}

#[test]
fn familiar_forms() {
    let cases = [
        ("foo", "foo", "foo"),
        ("foo:1", "foo", "foo:1"),
        ("user/foo:1", "user/foo", "user/foo:1"),
        (
            "docker.io/library/foo/bar",
            "library/foo/bar",
            "library/foo/bar",
        ),
        (
            "localhost:5000/foo",
            "localhost:5000/foo",
            "localhost:5000/foo",
        ),
        ("[::1]:5000/x:y", "[::1]:5000/x", "[::1]:5000/x:y"),
        ("index.docker.io/foo:t", "foo", "foo:t"),
    ];
    for (input, name, string) in cases {
        let named = parse(input);
        assert_eq!(named.familiar_name(), name, "{input}");
        assert_eq!(named.familiar_string(), string, "{input}");
    }
    let digested = parse(&format!("foo@{SHA256_DBCC}"));
    assert_eq!(digested.familiar_string(), format!("foo@{SHA256_DBCC}"));
}

#[test]
fn domains_and_paths_from_the_brief() {
    let cases = [
        ("localhost:5000/a/b", "localhost:5000", "a/b"),
        ("[::1]:5000/x", "[::1]:5000", "x"),
        ("[::1]/x", "[::1]", "x"),
        ("localhost/x", "localhost", "x"),
        ("index.docker.io/user/foo", "docker.io", "user/foo"),
    ];
    for (input, domain, path) in cases {
        let named = parse(input);
        assert_eq!((named.domain(), named.path()), (domain, path), "{input}");
    }
}

/// Upstream's error texts, as the docker CLI prints them.
#[test]
fn error_texts_match_upstream() {
    let error = |s: &str| match Reference::parse_normalized(s) {
        Ok(named) => panic!("{s:?} parsed as {named}"),
        Err(e) => e.to_string(),
    };
    let cases: Vec<(String, String)> = vec![
        ("".into(), "invalid reference format".into()),
        ("foo:-bar".into(), "invalid reference format".into()),
        (
            "Foo".into(),
            "invalid reference format: repository name (library/Foo) must be lowercase".into(),
        ),
        (
            "foo/Bar:Tag".into(),
            "invalid reference format: repository name (foo/Bar) must be lowercase".into(),
        ),
        // The cut at the first ':' lands in the digest when there is no tag.
        (
            format!("Foo@{SHA256_DBCC}"),
            "invalid reference format: repository name (library/Foo@sha256) must be lowercase"
                .into(),
        ),
        // After an explicit domain, the repository named is everything up to a tag.
        (
            "example.com:5000/foo/Bar".into(),
            "invalid reference format: repository name (foo/Bar) must be lowercase".into(),
        ),
        // An uppercase first element is a domain, so the wrapper passes and Parse blames case.
        (
            "Foo_bar/baz".into(),
            "repository name must be lowercase".into(),
        ),
        (
            format!("example.com/{}", "a".repeat(256)),
            "repository name must not be more than 255 characters".into(),
        ),
        (
            "a".repeat(248),
            "repository name must not be more than 255 characters".into(),
        ),
        (
            HEX_ID.into(),
            format!(
                "invalid repository name ({HEX_ID}), cannot specify 64-byte hexadecimal strings"
            ),
        ),
        ("foo@sha256:abc".into(), "invalid reference format".into()),
        (
            format!("foo@sha256:{}", "a".repeat(40)),
            "invalid checksum digest length".into(),
        ),
        (
            format!("foo@sha256:{}", "A".repeat(64)),
            "invalid checksum digest format".into(),
        ),
        (
            format!("foo@md5:{}", "a".repeat(32)),
            "unsupported digest algorithm".into(),
        ),
        (
            format!("foo@MD5:{}", "a".repeat(32)),
            "invalid reference format: repository name (library/foo@MD5) must be lowercase".into(),
        ),
        (
            format!("foo:t@MD5:{}", "a".repeat(32)),
            "invalid checksum digest format".into(),
        ),
    ];
    for (input, want) in &cases {
        assert_eq!(error(input), *want, "{input}");
    }
    assert_eq!(
        Reference::parse_normalized("foo")
            .unwrap()
            .with_tag("a:b")
            .unwrap_err()
            .to_string(),
        "invalid tag format"
    );
}

/// Since distribution/reference v0.6 the 255-character limit counts the path only, and
/// normalisation's `library/` counts towards it.
#[test]
fn length_limit_counts_the_path() {
    let max_path = "a".repeat(255);
    let long_domain = format!("{}.com", "d".repeat(60));
    let named = parse(&format!("{long_domain}/{max_path}"));
    assert!(named.name().len() > 255);
    assert_eq!(named.path(), max_path);
    assert_eq!(
        Reference::parse_normalized(&format!("{long_domain}/{max_path}a")),
        Err(ReferenceError::NameTooLong)
    );
    // "library/" plus 247 characters is the longest official image name.
    parse(&"a".repeat(247));
    assert_eq!(
        Reference::parse_normalized(&"a".repeat(248)),
        Err(ReferenceError::NameTooLong)
    );
}

/// A first element with '.' or ':' is taken for a domain before validation; when the grammar
/// then cannot read it as one but can read the whole as a path, upstream keeps an empty domain.
#[test]
fn upstream_keeps_an_empty_domain_when_the_grammar_disagrees_with_normalisation() {
    let named = parse("a_b.c/foo");
    assert_eq!(named.domain(), "");
    assert_eq!(named.path(), "a_b.c/foo");
    assert_eq!(named.name(), "a_b.c/foo");
    assert_eq!(named.to_string(), "a_b.c/foo");
    assert_eq!(named.familiar_name(), "a_b.c/foo");
    assert!(!named.is_docker_hub());
    assert_eq!(parse(&named.to_string()), named);
}

#[test]
fn bare_localhost_and_hostnames_are_docker_hub_images() {
    assert_eq!(
        parse("localhost").to_string(),
        "docker.io/library/localhost"
    );
    assert_eq!(
        parse("example.com").to_string(),
        "docker.io/library/example.com"
    );
    assert_eq!(
        parse("example.com:5000").to_string(),
        "docker.io/library/example.com:5000"
    );
}

#[test]
fn from_str_display_and_serde_use_the_full_form() {
    let named: Reference = "user/app:1.0".parse().unwrap();
    assert_eq!(named, parse("docker.io/user/app:1.0"));
    let json = serde_json::to_string(&named).unwrap();
    assert_eq!(json, "\"docker.io/user/app:1.0\"");
    let back: Reference = serde_json::from_str(&json).unwrap();
    assert_eq!(back, named);
    let familiar: Reference = serde_json::from_str("\"ubuntu\"").unwrap();
    assert_eq!(familiar.to_string(), "docker.io/library/ubuntu");
    let err = serde_json::from_str::<Reference>("\"Foo\"").unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid reference format: repository name (library/Foo) must be lowercase"),
        "{err}"
    );
    assert!(serde_json::from_str::<Reference>("42").is_err());
}

#[test]
fn is_valid_tag_follows_the_tag_grammar() {
    assert!(is_valid_tag("latest"));
    assert!(is_valid_tag("v1.2.3-rc_1"));
    assert!(is_valid_tag("_hidden"));
    assert!(!is_valid_tag(""));
    assert!(!is_valid_tag("-x"));
    assert!(!is_valid_tag("x y"));
    assert!(!is_valid_tag(&"t".repeat(129)));
}
