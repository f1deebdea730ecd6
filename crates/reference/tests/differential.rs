//! Differential test of the reference *grammar* against the `container_image_dist_ref` crate,
//! an independent parser of distribution/reference's grammar, plus properties every parse must
//! keep (no panics, canonical round trips).
//!
//! The oracle does no normalisation, so inputs are compared only when they are already in
//! canonical full form: a first component that normalisation keeps as the domain, so that
//! `ParseNormalizedNamed(s)` is upstream's `Parse(s)`. Where the two disagree on purpose, the
//! difference is named in [`Divergence`]; any other disagreement fails the test.

use container_image_dist_ref::ImgRef;
use container_image_dist_ref::digest::Compliance;
use container_image_dist_ref::err::Kind;
use hoist_reference::{Digest, Reference, ReferenceError, is_valid_tag};
use proptest::prelude::*;
use proptest::sample::select;

/// Why we and the oracle may disagree. Each is a point where the oracle departs from
/// distribution/reference v0.6, which we follow (and which `upstream_vectors.rs` checks against
/// upstream's own output).
#[derive(Debug)]
enum Divergence {
    /// v0.6 limits the path to 255 characters; the oracle still limits domain and path together,
    /// as upstream did before v0.6 (commit "Exclude domain from name length check").
    NameLongerThan255WithDomain,
    /// Upstream accepts any `[a-fA-F0-9:]+` between brackets; the oracle validates the address.
    Ipv6NotAnAddress,
    /// We validate a digest with go-digest rules (registered algorithm, exact length, lowercase
    /// hex) as upstream's `Parse` does; the oracle checks the grammar only.
    DigestRefusedByGoDigest,
    /// The oracle also accepts OCI-only digests (`[a-z0-9]+` algorithm components, base64
    /// encoding, fewer than 32 characters), which upstream's reference grammar refuses.
    OciOnlyDigest,
    /// Normalisation checks case up to the first ':' before parsing, which without a tag runs
    /// into the digest algorithm: `host/repo@SHA256:…` is refused as an uppercase repository.
    /// go-digest would refuse that digest anyway.
    UppercaseAlgorithmSeenByNormalisation,
    /// The oracle accepts a 129-character tag after a path (`host/repo:<129>`; it does refuse
    /// one after a bare name). `[\w][\w.-]{0,127}` allows 128, and upstream refuses 129.
    OracleAllows129CharacterTag,
}

/// Whether normalisation leaves `s` unchanged, decided from the text alone (not by our parser):
/// `splitDockerDomain` keeps a first component holding '.' or ':', `localhost`, or uppercase, but
/// rewrites `index.docker.io` and adds `library/` to single-component Docker Hub paths.
fn is_canonical_form(s: &str) -> bool {
    let Some((first, rest)) = s.split_once('/') else {
        return false;
    };
    let kept_as_domain =
        first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first;
    let gains_library_prefix = first == "docker.io" && !rest.contains('/');
    kept_as_domain && first != "index.docker.io" && !gains_library_prefix
}

fn classify(
    ours: &Result<Reference, ReferenceError>,
    oracle: &Result<ImgRef<'_>, Kind>,
) -> Option<Divergence> {
    match (ours, oracle) {
        (Ok(named), Err(kind)) => {
            let too_long = matches!(
                kind,
                Kind::NameTooLong
                    | Kind::HostOrPathTooLong
                    | Kind::HostTooLong
                    | Kind::Ipv6TooLong
                    | Kind::PortTooLong
                    | Kind::PathTooLong
            );
            let ipv6 = matches!(
                kind,
                Kind::Ipv6BadColon
                    | Kind::Ipv6TooManyHexDigits
                    | Kind::Ipv6TooManyGroups
                    | Kind::Ipv6TooFewGroups
            );
            if too_long && named.name().len() > 255 {
                Some(Divergence::NameLongerThan255WithDomain)
            } else if ipv6 && named.domain().starts_with('[') {
                Some(Divergence::Ipv6NotAnAddress)
            } else {
                None
            }
        }
        (Err(error), Ok(parsed)) => {
            // The oracle's compliance() overlooks distribution's 32-character minimum.
            let oci_only = parsed.digest().is_some_and(|d| {
                d.compliance() == Compliance::Oci || d.encoded().to_str().len() < 32
            });
            match error {
                ReferenceError::InvalidDigestFormat
                | ReferenceError::InvalidDigestLength
                | ReferenceError::UnsupportedDigestAlgorithm => {
                    Some(Divergence::DigestRefusedByGoDigest)
                }
                ReferenceError::InvalidReferenceFormat if oci_only => {
                    Some(Divergence::OciOnlyDigest)
                }
                ReferenceError::InvalidReferenceFormat
                    if parsed.tag().is_some_and(|tag| tag.len() == 129) =>
                {
                    Some(Divergence::OracleAllows129CharacterTag)
                }
                ReferenceError::RepositoryNameNotLowercase { repository }
                    if parsed.tag().is_none()
                        && repository.split_once('@').is_some_and(|(repo, algorithm)| {
                            repo.to_lowercase() == repo && algorithm.to_lowercase() != algorithm
                        }) =>
                {
                    Some(Divergence::UppercaseAlgorithmSeenByNormalisation)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Compares one canonical-form input; `Err` describes an unexplained disagreement.
fn compare(input: &str) -> Result<Option<Divergence>, String> {
    let ours = Reference::parse_normalized(input);
    let oracle = ImgRef::new(input).map_err(|e| e.kind());
    if let (Ok(named), Ok(parsed)) = (&ours, &oracle) {
        let theirs = (
            parsed.domain().map_or("", |d| d.to_str()),
            parsed.path().to_str(),
            parsed.tag(),
            parsed.digest().map(|d| d.to_str()),
        );
        let mine = (
            named.domain(),
            named.path(),
            named.tag(),
            named.digest().map(Digest::as_str),
        );
        return if mine == theirs {
            Ok(None)
        } else {
            Err(format!("{input:?}: ours {mine:?}, oracle {theirs:?}"))
        };
    }
    if ours.is_err() && oracle.is_err() {
        return Ok(None);
    }
    match classify(&ours, &oracle) {
        Some(divergence) => Ok(Some(divergence)),
        None => Err(format!(
            "{input:?}: ours {ours:?}, oracle {:?}",
            oracle.as_ref().map(|_| "accepted")
        )),
    }
}

const HEX64: &str = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";

/// Concatenations of `atoms`: strings made mostly of the reference alphabet, so that many of them
/// sit right at the grammar's boundaries.
fn soup(atoms: &'static [&'static str], max_atoms: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(select(atoms), 0..max_atoms).prop_map(|parts| parts.concat())
}

fn domain() -> impl Strategy<Value = String> {
    const HOST: &[&str] = &["a", "b", "z", "0", "9", "-", ".", "A", "Z", "_", "com"];
    prop_oneof![
        1 => Just("localhost".to_owned()),
        1 => Just("docker.io".to_owned()),
        1 => Just("index.docker.io".to_owned()),
        3 => "[a-z0-9]{1,8}(-[a-z0-9]{1,4})?\\.[a-z]{2,3}(:[0-9]{1,5})?",
        1 => "[A-Z][a-zA-Z0-9-]{0,8}",
        2 => "\\[[0-9a-fA-F:]{1,14}\\](:[0-9]{1,5})?",
        1 => "\\[[0-9a-g:%.]{1,10}\\]",
        2 => (soup(HOST, 5), soup(HOST, 5)).prop_map(|(a, b)| format!("{a}.{b}")),
        1 => (soup(HOST, 5), "[0-9]{0,6}|x").prop_map(|(host, port)| format!("{host}:{port}")),
        1 => "[a-z]{60,120}\\.com",
    ]
}

fn path() -> impl Strategy<Value = String> {
    const PATH: &[&str] = &[
        "a", "b", "z", "0", "9", "f", ".", "-", "--", "_", "__", "/", "/", "A", "Z", "library",
    ];
    prop_oneof![
        4 => "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}(/[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}){0,3}",
        2 => soup(PATH, 10),
        1 => "[a-z]{240,260}",
    ]
}

fn tag() -> impl Strategy<Value = String> {
    const TAG: &[&str] = &["a", "Z", "0", "_", ".", "-", "latest", ":", "/", "é"];
    prop_oneof![
        3 => Just(String::new()),
        3 => "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}".prop_map(|t| format!(":{t}")),
        1 => soup(TAG, 6).prop_map(|t| format!(":{t}")),
        1 => "[a-z]{126,130}".prop_map(|t| format!(":{t}")),
    ]
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(String::new()),
        3 => "[0-9a-f]{64}".prop_map(|hex| format!("@sha256:{hex}")),
        1 => "[0-9a-f]{128}".prop_map(|hex| format!("@sha512:{hex}")),
        1 => "[0-9a-f]{96}".prop_map(|hex| format!("@sha384:{hex}")),
        1 => "[0-9a-fA-F]{30,70}".prop_map(|hex| format!("@sha256:{hex}")),
        1 => ("[A-Za-z0-9][A-Za-z0-9+._-]{0,8}", "[0-9a-zA-Z=_-]{28,70}")
            .prop_map(|(algorithm, encoded)| format!("@{algorithm}:{encoded}")),
        1 => soup(&["a", "sha256", ":", "@", "f", "0", "A"], 6).prop_map(|d| format!("@{d}")),
    ]
}

/// `domain/path[:tag][@digest]`, nearly always canonical.
fn structured() -> impl Strategy<Value = String> {
    (domain(), path(), tag(), digest()).prop_map(|(d, p, t, g)| format!("{d}/{p}{t}{g}"))
}

/// Loose strings over the whole alphabet, for the properties that hold for any input.
fn anything() -> impl Strategy<Value = String> {
    const ANY: &[&str] = &[
        "a",
        "b",
        "z",
        "0",
        "9",
        "f",
        ".",
        "-",
        "_",
        "__",
        "/",
        ":",
        "@",
        "A",
        "Z",
        "[",
        "]",
        "::1",
        "localhost",
        "docker.io",
        "index.docker.io",
        "library",
        "5000",
        "sha256:",
        HEX64,
        "\u{212A}",
        "\u{130}",
        "é",
        " ",
        "\n",
    ];
    prop_oneof![
        4 => soup(ANY, 12),
        2 => structured(),
        1 => any::<String>(),
    ]
}

proptest! {
    // About one structured input in five is not canonical and is skipped by `prop_assume!`.
    #![proptest_config(ProptestConfig {
        cases: 4096,
        max_global_rejects: 1 << 20,
        ..ProptestConfig::default()
    })]

    #[test]
    fn canonical_forms_parse_like_the_grammar_oracle(input in structured()) {
        prop_assume!(is_canonical_form(&input));
        if let Err(disagreement) = compare(&input) {
            prop_assert!(false, "{}", disagreement);
        }
    }

    /// Whatever the input, a reference we produce is canonical: the oracle reads its full form
    /// with the same parts, and so do we.
    #[test]
    fn full_forms_are_canonical(input in anything()) {
        if let Ok(named) = Reference::parse_normalized(&input) {
            let full = named.to_string();
            let reparsed = Reference::parse_normalized(&full);
            prop_assert_eq!(reparsed.as_ref(), Ok(&named), "{}", full);
            prop_assert!(is_canonical_form(&full) || named.domain().is_empty(), "{}", full);
            if let Err(disagreement) = compare(&full) {
                prop_assert!(false, "{}", disagreement);
            }
        }
    }

    #[test]
    fn familiar_forms_read_back_unless_ambiguous(input in anything()) {
        if let Ok(named) = Reference::parse_normalized(&input) {
            let familiar = named.familiar_string();
            // Upstream's familiar form drops `docker.io/`, so a Docker Hub namespace that looks
            // like a host (`docker.io/foo.bar/baz`, `docker.io/localhost/x`) reads back as one,
            // and `docker.io/<64 hex>` becomes a bare image ID, which is refused.
            let first = familiar.split_once('/').map(|(first, _)| first);
            let is_image_id = familiar.len() == 64
                && familiar.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            let ambiguous = named.is_docker_hub()
                && (is_image_id
                    || first.is_some_and(|first| first == "localhost" || first.contains('.')));
            if !ambiguous {
                let reparsed = Reference::parse_normalized(&familiar);
                prop_assert_eq!(reparsed, Ok(named.clone()), "{}", familiar);
            }
            if !named.is_docker_hub() {
                prop_assert_eq!(familiar, named.to_string());
            }
        }
    }

    #[test]
    fn derived_references_keep_their_parts(
        input in anything(),
        new_tag in "[A-Za-z0-9_.:/-]{0,12}",
    ) {
        if let Ok(named) = Reference::parse_normalized(&input) {
            let bare = named.name_only();
            prop_assert_eq!(bare.name(), named.name());
            let defaulted = bare.clone().tag_name_only();
            prop_assert_eq!(defaulted.tag(), Some("latest"));
            // A digest pins the image, so TagNameOnly only tags what has neither.
            let expected_tag = match (named.tag(), named.digest()) {
                (Some(tag), _) => Some(tag),
                (None, Some(_)) => None,
                (None, None) => Some("latest"),
            };
            let tag_named = named.clone().tag_name_only();
            prop_assert_eq!(tag_named.tag(), expected_tag);
            match named.with_tag(&new_tag) {
                Ok(retagged) => {
                    prop_assert!(is_valid_tag(&new_tag));
                    prop_assert_eq!(retagged.tag(), Some(new_tag.as_str()));
                    prop_assert_eq!(retagged.digest(), named.digest());
                    let reparsed = Reference::parse_normalized(&retagged.to_string());
                    prop_assert_eq!(reparsed, Ok(retagged.clone()));
                }
                Err(error) => {
                    prop_assert!(!is_valid_tag(&new_tag));
                    prop_assert_eq!(error, ReferenceError::InvalidTagFormat);
                }
            }
            let serialized = serde_json::to_string(&named).expect("a reference serialises");
            prop_assert_eq!(serde_json::from_str::<Reference>(&serialized).ok(), Some(named));
        }
    }

    /// Nothing panics, on any string, in any entry point.
    #[test]
    fn never_panics(input in anything()) {
        let _ = Reference::parse_normalized(&input);
        let _ = input.parse::<Reference>();
        let _ = Digest::parse(&input);
        let _ = is_valid_tag(&input);
        let _ = serde_json::from_value::<Reference>(serde_json::Value::String(input.clone()));
        if let Ok(named) = Reference::parse_normalized("busybox") {
            let _ = named.with_tag(&input);
        }
    }
}

/// The divergences above are real: one example of each, so that a change on either side shows.
#[test]
fn each_documented_divergence_occurs() {
    let hex32 = "f".repeat(32);
    let cases = [
        format!("{}.com/{}", "d".repeat(60), "a".repeat(200)),
        "[:::::]/x".to_owned(),
        format!("example.com/x@md5:{hex32}"),
        format!("example.com/x@sha256+b64:{}", "q".repeat(40)),
        format!("example.com/x@SHA:{hex32}"),
        format!("example.com/x:{}", "t".repeat(129)),
    ];
    let found: Vec<String> = cases
        .iter()
        .map(|input| match compare(input) {
            Ok(Some(divergence)) => format!("{divergence:?}"),
            other => format!("{input:?} gave {other:?}"),
        })
        .collect();
    assert_eq!(
        found,
        [
            "NameLongerThan255WithDomain",
            "Ipv6NotAnAddress",
            "DigestRefusedByGoDigest",
            "OciOnlyDigest",
            "UppercaseAlgorithmSeenByNormalisation",
            "OracleAllows129CharacterTag",
        ]
    );
}
