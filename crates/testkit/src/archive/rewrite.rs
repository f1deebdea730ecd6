//! Replacing a blob of a planned archive by other content while keeping the archive consistent:
//! every name and JSON reference of the old digest (and its size) is moved to the new one, and
//! so on up the chain (a config's new digest changes its manifest, whose new digest changes the
//! index …). Image configs' `rootfs` is left alone: it is what the breakages test against.

use serde_json::Value;

use super::raw::{RawArchive, RawData, RawKind};
use crate::image::sha256_digest;

/// Gives the file entry `name` the content `bytes`, and repoints everything that named it.
pub(crate) fn replace_blob(raw: &mut RawArchive, name: &str, bytes: Vec<u8>) {
    let entry = raw
        .find_mut(name)
        .unwrap_or_else(|| panic!("no entry {name:?} in the archive"));
    let RawKind::File(old) = &entry.kind else {
        panic!("{name} is not a file");
    };
    let old_hex = hex_of(&old.bytes());
    let new_hex = hex_of(&bytes);
    let new_size = bytes.len() as u64;
    entry.kind = RawKind::File(RawData::Bytes(bytes));
    let new_name = name.replace(&old_hex, &new_hex);
    entry.name = new_name.clone().into_bytes();
    let referrers: Vec<String> = raw
        .entries
        .iter()
        .filter(|e| e.name_str() != new_name)
        .filter(|e| match &e.kind {
            RawKind::File(data) => contains(&data.bytes(), old_hex.as_bytes()),
            _ => false,
        })
        .map(|e| e.name_str())
        .collect();
    for referrer in referrers {
        let Some(RawKind::File(data)) = raw.find(&referrer).map(|e| e.kind.clone()) else {
            continue;
        };
        let Ok(mut json) = serde_json::from_slice::<Value>(&data.bytes()) else {
            continue;
        };
        if repoint(&mut json, &old_hex, &new_hex, new_size) {
            let bytes = serde_json::to_vec(&json).expect("serialize JSON");
            replace_blob(raw, &referrer, bytes);
        }
    }
}

/// Moves references of `old` to `new` in `value`; true when something changed.
fn repoint(value: &mut Value, old: &str, new: &str, new_size: u64) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            let names_old = map
                .get("digest")
                .and_then(Value::as_str)
                .is_some_and(|d| d.ends_with(old));
            if names_old {
                map.insert("digest".into(), Value::from(format!("sha256:{new}")));
                if map.contains_key("size") {
                    map.insert("size".into(), Value::from(new_size));
                }
                changed = true;
            }
            for (key, child) in map.iter_mut() {
                if key != "rootfs" && key != "digest" {
                    changed |= repoint(child, old, new, new_size);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, item| {
            repoint(item, old, new, new_size) | changed
        }),
        Value::String(s) if s.contains(old) => {
            *s = s.replace(old, new);
            true
        }
        _ => false,
    }
}

fn hex_of(bytes: &[u8]) -> String {
    sha256_digest(bytes)
        .trim_start_matches("sha256:")
        .to_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
