//! Test support: several answers send their keys sorted by name at every depth, so their fields
//! are declared in that order. This checks that they are.

use serde::Serialize;

/// Fails when `value` does not serialise with its keys sorted, as a JSON object map would.
pub fn assert_keys_sorted(value: &impl Serialize) {
    let declared = serde_json::to_string(value).expect("serialises");
    let sorted = serde_json::to_value(value)
        .and_then(|v| serde_json::to_string(&v))
        .expect("serialises");
    assert_eq!(declared, sorted);
}
