//! moby's `filters.Args`: the `filters` query parameter, `{"key":{"value":true}}` or the older
//! `{"key":["value"]}`, with moby's validation and error texts.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::ApiError;

#[derive(Debug, Default)]
pub struct FilterArgs(BTreeMap<String, Vec<String>>);

#[derive(Deserialize)]
#[serde(untagged)]
enum Values {
    /// Every key counts, whatever its boolean (moby's `Get` lists keys only).
    Set(BTreeMap<String, bool>),
    Legacy(Vec<String>),
}

impl FilterArgs {
    /// Parses the parameter; absent or empty is no filter.
    pub fn parse(text: Option<&str>) -> Result<FilterArgs, ApiError> {
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return Ok(FilterArgs::default());
        };
        // Go's decoder takes `null` for the whole map or for a key's values as empty.
        let raw: Option<BTreeMap<String, Option<Values>>> = serde_json::from_str(text)
            .map_err(|_| ApiError::BadRequest("invalid filter".into()))?;
        Ok(FilterArgs(
            raw.unwrap_or_default()
                .into_iter()
                .map(|(key, values)| {
                    let values = match values {
                        Some(Values::Set(set)) => set.into_keys().collect(),
                        Some(Values::Legacy(list)) => list,
                        None => Vec::new(),
                    };
                    (key, values)
                })
                .collect(),
        ))
    }

    /// `invalid filter '<key>'` for the first key not in `accepted`.
    pub fn validate(&self, accepted: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(key) => Err(ApiError::BadRequest(format!("invalid filter '{key}'"))),
            None => Ok(()),
        }
    }

    /// Every key with its values.
    pub fn into_fields(self) -> BTreeMap<String, Vec<String>> {
        self.0
    }

    pub fn get(&self, key: &str) -> Vec<String> {
        self.0.get(key).cloned().unwrap_or_default()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// moby's `GetBoolOrDefault`: `1`/`true` or `0`/`false`; none or both is an invalid filter.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        let Some(values) = self.0.get(key) else {
            return Ok(default);
        };
        let has = |v: &str| values.iter().any(|x| x == v);
        let is_true = has("1") || has("true");
        let is_false = has("0") || has("false");
        if is_true == is_false {
            return Err(ApiError::BadRequest(if values.is_empty() {
                format!("invalid filter '{key}'")
            } else {
                format!("invalid filter '{key}=[{}]'", values.join(" "))
            }));
        }
        Ok(is_true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_and_nulls_read_as_go_reads_them() {
        let current = FilterArgs::parse(Some(
            r#"{"type":{"image":true},"event":{"tag":true,"x":false}}"#,
        ))
        .unwrap();
        // Go's `Get` lists every key of a value map, whatever its boolean.
        assert_eq!(current.get("event"), ["tag", "x"]);
        let legacy = FilterArgs::parse(Some(r#"{"type":["image"],"event":["tag"]}"#)).unwrap();
        assert_eq!(legacy.get("type"), ["image"]);
        assert!(
            FilterArgs::parse(Some("null"))
                .unwrap()
                .into_fields()
                .is_empty()
        );
        let empty = FilterArgs::parse(Some(r#"{"type":null}"#)).unwrap();
        assert!(empty.contains("type") && empty.get("type").is_empty());
        for bad in ["{", "[1]", r#"{"a":true}"#, r#"{"a":[1]}"#] {
            assert!(FilterArgs::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn both_forms_parse_and_bools_follow_moby() {
        let args =
            FilterArgs::parse(Some(r#"{"dangling":{"true":true},"label":["a","b=1"]}"#)).unwrap();
        assert_eq!(args.get("label"), ["a", "b=1"]);
        assert!(args.bool_or("dangling", false).unwrap());
        assert!(args.bool_or("absent", true).unwrap());
        assert!(args.validate(&["dangling", "label"]).is_ok());
        assert_eq!(
            args.validate(&["label"]).unwrap_err().to_string(),
            "invalid filter 'dangling'"
        );
        let args = FilterArgs::parse(Some(r#"{"dangling":["maybe"]}"#)).unwrap();
        assert_eq!(
            args.bool_or("dangling", true).unwrap_err().to_string(),
            "invalid filter 'dangling=[maybe]'"
        );
        assert_eq!(
            FilterArgs::parse(Some("nope")).unwrap_err().to_string(),
            "invalid filter"
        );
    }
}
