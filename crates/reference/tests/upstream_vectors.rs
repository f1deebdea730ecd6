//! Holds `parse_normalized` and the familiar forms to what distribution/reference v0.6.0 itself
//! answered for the inputs in `upstream/vectors.jsonl` (written by `upstream/main.go`).

use hoist_reference::{Digest, Reference};
use serde_json::Value;

const VECTORS: &str = include_str!("upstream/vectors.jsonl");

fn field<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

#[test]
fn parse_normalized_matches_upstream() {
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for line in VECTORS.lines() {
        let vector: Value = serde_json::from_str(line).expect("vectors.jsonl holds JSON lines");
        let input = field(&vector, "in").expect("every vector has an input");
        let ours = Reference::parse_normalized(input);
        let agrees = match (&ours, vector.get("norm"), field(&vector, "norm_err")) {
            (Ok(named), Some(want), None) => {
                named.to_string() == field(want, "s").unwrap_or_default()
                    && named.domain() == field(want, "d").unwrap_or_default()
                    && named.path() == field(want, "p").unwrap_or_default()
                    && named.tag() == field(want, "t")
                    && named.digest().map(Digest::as_str) == field(want, "g")
                    && named.familiar_name() == field(want, "fn").unwrap_or_default()
                    && named.familiar_string() == field(want, "fs").unwrap_or_default()
            }
            (Err(error), None, Some(want)) => error.to_string() == want,
            _ => false,
        };
        if !agrees {
            mismatches.push(format!(
                "{input:?}\n  upstream: {vector}\n  ours:     {ours:?}"
            ));
        }
        checked += 1;
    }
    assert!(checked > 2000, "only {checked} vectors");
    assert!(
        mismatches.is_empty(),
        "{} of {checked} differ from upstream:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
