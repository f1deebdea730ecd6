//! moby's `filters` query parameter, read as `filters.FromJSON` reads it: `{"key":{"value":true}}`
//! or the older `{"key":["value"]}`. What the keys and values mean is the route's business.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::ApiError;

/// Each key's values; empty when there is no parameter. Anything else than the two JSON forms
/// is moby's "invalid filter", 400.
pub fn parse(text: Option<&str>) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let invalid = || ApiError::BadRequest("invalid filter".into());
    let raw: BTreeMap<String, Value> = serde_json::from_str(text).map_err(|_| invalid())?;
    raw.into_iter()
        .map(|(key, value)| {
            let values = match value {
                Value::Object(map) => map
                    .into_iter()
                    .filter(|(_, v)| v.as_bool().unwrap_or(false))
                    .map(|(k, _)| k)
                    .collect(),
                Value::Array(items) => items
                    .into_iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or_else(invalid))
                    .collect::<Result<_, _>>()?,
                _ => return Err(invalid()),
            };
            Ok((key, values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_read_and_anything_else_is_invalid() {
        let args = parse(Some(r#"{"a":{"x":true,"y":false},"b":["1","2"]}"#)).unwrap();
        assert_eq!(args["a"], ["x"]);
        assert_eq!(args["b"], ["1", "2"]);
        assert!(parse(None).unwrap().is_empty());
        assert!(parse(Some("")).unwrap().is_empty());
        for bad in ["{", r#"{"a":true}"#, r#"{"a":[1]}"#] {
            assert_eq!(parse(Some(bad)).unwrap_err().to_string(), "invalid filter");
        }
    }
}
