//! Entry points for fuzzing the store's reading of manifests and indexes, the JSON it walks to
//! find what a blob references: each takes arbitrary bytes, runs the production parser and
//! asserts what must hold for any input. The unit tests below run them as property tests; the
//! targets in `fuzz/` run them under libFuzzer.

use crate::manifest::{ManifestKind, sniff};

/// Bytes of unknown kind, read as GC reads a lease root and as each kind the store walks: a
/// manifest that parses references at least its config.
pub fn manifest(input: &[u8]) {
    let _ = sniff(input);
    let _ = ManifestKind::Index.parse_children(input);
    if let Ok(children) = ManifestKind::Manifest.parse_children(input) {
        assert!(!children.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Manifest-shaped JSON with descriptors both valid and not.
    const MANIFEST_LIKE: &str = r#"\{("mediaType":"application/vnd\.(oci\.image\.(index|manifest)\.v1|docker\.distribution\.manifest\.(list\.)?v2)\+json",?)?("(config|layers|manifests)":(\[?\{"mediaType":"[a-z/.+]{0,20}","digest":"sha256:[a-f0-9]{64}","size":-?[0-9]{1,20}\}\]?|null|\[\]),?){0,3}\}"#;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_bytes_are_a_manifest_or_an_error(input in prop::collection::vec(any::<u8>(), 0..300)) {
            manifest(&input);
        }

        #[test]
        fn manifest_like_json_is_read_safely(input in MANIFEST_LIKE) {
            manifest(input.as_bytes());
        }
    }
}
