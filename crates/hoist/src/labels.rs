//! The daemon's labels (`--label`, daemon.json `labels`), checked as dockerd checks them.

use anyhow::bail;

/// dockerd's `opts.ValidateLabel`: `key=value`, outside the namespaces Docker reserves.
pub fn check(label: &str) -> Result<String, String> {
    if !label.contains('=') {
        return Err(format!("bad attribute format: {label}"));
    }
    let lowered = label.to_lowercase();
    if ["com.docker.", "io.docker.", "org.dockerproject."]
        .iter()
        .any(|reserved| lowered.starts_with(reserved))
    {
        return Err(format!(
            "label {label} is not allowed: the namespaces com.docker.*, io.docker.*, and org.dockerproject.* are reserved for internal use"
        ));
    }
    Ok(label.to_owned())
}

/// dockerd's `GetConflictFreeLabels`: one key with two values is an error; a label given twice
/// is kept once.
pub fn conflict_free(labels: Vec<String>) -> anyhow::Result<Vec<String>> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut kept = Vec::new();
    for label in &labels {
        let Some((key, value)) = label.split_once('=') else {
            continue;
        };
        match seen.iter().find(|(k, _)| *k == key) {
            Some((_, existing)) if *existing != value => {
                bail!("conflict labels for {key}={value} and {key}={existing}")
            }
            Some(_) => {}
            None => {
                seen.push((key, value));
                kept.push(label.clone());
            }
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked_as_dockerd_checks_them() {
        assert_eq!(check("a=b"), Ok("a=b".to_owned()));
        assert_eq!(check("a="), Ok("a=".to_owned()));
        assert_eq!(check("a").unwrap_err(), "bad attribute format: a");
        assert!(check("IO.Docker.x=1").unwrap_err().contains("reserved"));
    }

    #[test]
    fn one_key_with_two_values_conflicts() {
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            conflict_free(labels(&["a=1", "b=2", "a=1"])).unwrap(),
            labels(&["a=1", "b=2"])
        );
        assert_eq!(
            conflict_free(labels(&["a=1", "a=2"]))
                .unwrap_err()
                .to_string(),
            "conflict labels for a=2 and a=1"
        );
    }
}
