//! Entry points for fuzzing the reference and digest parsers with hostile input: each takes
//! arbitrary text, runs the production parser and asserts what must hold for any input. The
//! unit tests below run them as property tests; the targets in `fuzz/` run them under
//! libFuzzer.

use crate::{Digest, Reference};

/// A reference that parses prints its full form, which parses back to the same reference.
/// Its familiar form is only printed: as upstream's, it need not parse back to the same
/// reference (`docker.io/a.b/c` is familiar `a.b/c`, a name on registry `a.b`) nor parse at
/// all (`library/<64 hex digits>` is familiar `<64 hex digits>`, refused as an image ID).
pub fn reference(input: &str) {
    let Ok(reference) = Reference::parse_normalized(input) else {
        return;
    };
    let full = reference.to_string();
    let reparsed = Reference::parse_normalized(&full)
        .unwrap_or_else(|e| panic!("{input:?} printed as {full:?}, which does not parse: {e}"));
    assert_eq!(reparsed, reference, "{input:?} printed as {full:?}");
    assert!(!reference.familiar_string().is_empty());
}

/// A digest that parses prints itself unchanged, and names its algorithm and hex.
pub fn digest(input: &str) {
    let Ok(digest) = Digest::parse(input) else {
        return;
    };
    assert_eq!(digest.as_str(), input);
    assert_eq!(format!("{}:{}", digest.algorithm(), digest.hex()), input);
    assert_eq!(Digest::parse(&digest.to_string()).ok(), Some(digest));
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Text drawn mostly from the characters the grammar gives meaning to, so that many cases
    /// parse and the round trip is exercised, not only the rejections.
    const REFERENCE_LIKE: &str = "[a-zA-Z0-9._:/@\\-\\[\\]]{0,80}";

    const DIGEST_LIKE: &str =
        "sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}|[a-z0-9+._-]{0,8}:[a-fA-F0-9=_-]{0,130}";

    #[test]
    fn names_whose_familiar_form_is_ambiguous_round_trip_in_full() {
        reference("index.docker.io/a.b/c");
        reference("docker.io/docker.io/library/a/b");
        reference(&format!("library/{}", "ab".repeat(32)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_text_is_a_reference_or_an_error(input in any::<String>()) {
            reference(&input);
        }

        #[test]
        fn reference_like_text_round_trips(input in REFERENCE_LIKE) {
            reference(&input);
        }

        #[test]
        fn digest_like_text_is_a_digest_or_an_error(input in DIGEST_LIKE) {
            digest(&input);
        }
    }
}
