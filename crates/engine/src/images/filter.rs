//! The image filters of list and prune, applied per image record as moby's containerd store
//! applies them (`setupFilters`): a record passes when it passes every filter given.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset};
use hoist_reference::{Digest, Reference};
use hoist_store::{ImageRecord, Store};

use super::manifests::present_configs;
use crate::EngineError;
use crate::image_content::describe_target;
use crate::media::MAX_CONFIG_BYTES;
use crate::names::{self, RecordName};
use crate::platform::Platform;

/// containerd's limit on a label's key and value together.
const MAX_LABEL_BYTES: usize = 4096;

/// Filters of `GET /images/json` and `POST /images/prune`; empty lists filter nothing.
#[derive(Debug, Default)]
pub struct ListFilters {
    /// Only dangling records (`true`) or only named ones (`false`).
    pub dangling: Option<bool>,
    /// Globs matched as `reference.FamiliarMatch` does; a record passes if any matches.
    pub reference: Vec<String>,
    /// `key` or `key=value` (`key!=value` negates) that some config of the image must satisfy.
    pub label: Vec<String>,
    /// `key` or `key=value` that must not hold.
    pub label_not: Vec<String>,
    /// Images created (config `created`) before that of the image so named.
    pub before: Vec<String>,
    /// Images created after that of the image so named.
    pub since: Vec<String>,
    /// Records stored before this instant.
    pub until: Vec<SystemTime>,
}

struct LabelCheck {
    key: String,
    value: Option<String>,
    negate: bool,
}

/// The filters, with names resolved and labels parsed, ready to test records.
pub(crate) struct RecordFilter<'a> {
    store: &'a Store,
    host: &'a Platform,
    filters: &'a ListFilters,
    labels: Vec<LabelCheck>,
    before: Vec<DateTime<FixedOffset>>,
    since: Vec<DateTime<FixedOffset>>,
    created: HashMap<Digest, Option<DateTime<FixedOffset>>>,
}

impl<'a> RecordFilter<'a> {
    /// Resolves the images `before` and `since` name (404 when one does not exist) and checks
    /// the label filters.
    pub fn new(
        store: &'a Store,
        host: &'a Platform,
        filters: &'a ListFilters,
    ) -> Result<RecordFilter<'a>, EngineError> {
        let mut labels = Vec::new();
        for (negate, values) in [(false, &filters.label), (true, &filters.label_not)] {
            for text in values {
                labels.push(parse_label_check(text, negate)?);
            }
        }
        let mut this = RecordFilter {
            store,
            host,
            filters,
            labels,
            before: Vec::new(),
            since: Vec::new(),
            created: HashMap::new(),
        };
        // An image without a creation time sets no bound, as in moby.
        for name in &filters.before {
            let (view, _) = names::resolve(store, name)?;
            let created = this.created_of(&view.target)?;
            this.before.extend(created);
        }
        for name in &filters.since {
            let (view, _) = names::resolve(store, name)?;
            let created = this.created_of(&view.target)?;
            this.since.extend(created);
        }
        Ok(this)
    }

    pub fn passes(&mut self, record: &ImageRecord) -> Result<bool, EngineError> {
        let name = names::classify(&record.name);
        if let Some(dangling) = self.filters.dangling
            && matches!(name, RecordName::Dangling) != dangling
        {
            return Ok(false);
        }
        if !self.filters.until.iter().all(|u| record.created_at < *u) {
            return Ok(false);
        }
        if !self.filters.reference.is_empty() {
            let Ok(reference) = Reference::parse_normalized(&record.name) else {
                return Ok(false);
            };
            if !self
                .filters
                .reference
                .iter()
                .any(|p| familiar_match(p, &reference))
            {
                return Ok(false);
            }
        }
        if !self.before.is_empty() || !self.since.is_empty() {
            let Some(created) = self.created_of(&record.target)? else {
                return Ok(false);
            };
            if !self.before.iter().all(|b| created < *b) || !self.since.iter().all(|s| created > *s)
            {
                return Ok(false);
            }
        }
        if !self.labels.is_empty() && !self.some_config_matches(record)? {
            return Ok(false);
        }
        Ok(true)
    }

    fn created_of(
        &mut self,
        target: &hoist_store::Descriptor,
    ) -> Result<Option<DateTime<FixedOffset>>, EngineError> {
        if let Some(known) = self.created.get(&target.digest) {
            return Ok(*known);
        }
        let created = describe_target(self.store, target, self.host)?.and_then(|image| {
            image
                .config
                .get("created")
                .and_then(serde_json::Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        });
        self.created.insert(target.digest.clone(), created);
        Ok(created)
    }

    /// Some config present under the record's target satisfies every label check.
    fn some_config_matches(&self, record: &ImageRecord) -> Result<bool, EngineError> {
        for config in present_configs(self.store, &record.target)? {
            let raw = self.store.read_blob(&config.digest, MAX_CONFIG_BYTES)?;
            let labels = config_labels(&raw);
            if self.labels.iter().all(|check| check.holds(&labels)) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl LabelCheck {
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        let have = labels.get(&self.key);
        match &self.value {
            None => have.is_some() != self.negate,
            // A value check on an absent label fails whichever way it is asked.
            Some(value) => have.is_some_and(|have| (have == value) != self.negate),
        }
    }
}

fn parse_label_check(text: &str, negate: bool) -> Result<LabelCheck, EngineError> {
    let (key, value) = match text.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (text, None),
    };
    let length = key.len() + value.map_or(0, str::len);
    if length > MAX_LABEL_BYTES {
        return Err(EngineError::InvalidArgument(format!(
            "label key and value length ({length} bytes) greater than maximum size ({MAX_LABEL_BYTES} bytes): invalid argument"
        )));
    }
    let (key, negate) = match key.strip_suffix('!') {
        Some(k) => (k, !negate),
        None => (key, negate),
    };
    Ok(LabelCheck {
        key: key.to_owned(),
        value: value.map(str::to_owned),
        negate,
    })
}

/// The config's `config.Labels`; none when it has none or is not JSON.
pub(crate) fn config_labels(raw: &[u8]) -> BTreeMap<String, String> {
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|c| c.pointer("/config/Labels").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// distribution/reference's `FamiliarMatch`: the glob against the familiar string, then against
/// the familiar name. Globs follow Go's `path.Match` (`*` stops at `/`).
fn familiar_match(pattern: &str, reference: &Reference) -> bool {
    let Ok(glob) = glob::Pattern::new(pattern) else {
        return false;
    };
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    glob.matches_with(&reference.familiar_string(), opts)
        || glob.matches_with(&reference.familiar_name(), opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_match_follows_path_match() {
        let r = Reference::parse_normalized("foo:1").unwrap();
        assert!(familiar_match("foo", &r));
        assert!(familiar_match("foo:*", &r));
        assert!(familiar_match("f*", &r));
        let r = Reference::parse_normalized("localhost:5000/team/app:2").unwrap();
        assert!(!familiar_match("localhost:5000/*", &r));
        assert!(familiar_match("localhost:5000/*/*", &r));
    }

    fn holds(filter: &str, negate: bool, labels: &[(&str, &str)]) -> bool {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse_label_check(filter, negate).unwrap().holds(&labels)
    }

    #[test]
    fn label_checks_negate_as_moby() {
        assert!(holds("a", false, &[("a", "1")]));
        assert!(!holds("a", true, &[("a", "1")]));
        assert!(holds("a", true, &[]));
        assert!(holds("a=1", false, &[("a", "1")]));
        assert!(!holds("a=1", true, &[("a", "1")]));
        assert!(holds("a=2", true, &[("a", "1")]));
        // `label!=a=1` on an image without `a` fails, as moby 28.2 has it.
        assert!(!holds("a=1", true, &[]));
        assert!(holds("a!=2", false, &[("a", "1")]));
        assert!(parse_label_check(&"k".repeat(5000), false).is_err());
    }
}
