//! `docker import --change`: Dockerfile instructions applied to an empty container config, as
//! moby's `BuildFromConfig` applies them (the instructions `docker commit` accepts too).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::EngineError;

/// The image config's `config` object, with the fields and order of moby's
/// `DockerOCIImageConfig`; empty fields are left out, as Go's `omitempty` does.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RunConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
}

/// Go's `struct{}`: serialises as `{}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Empty {}

/// Applies `changes` (each one or more Dockerfile lines) in order.
pub(crate) fn apply_changes(changes: &[String]) -> Result<RunConfig, EngineError> {
    let mut config = RunConfig::default();
    let mut cmd_set = false;
    for line in logical_lines(&changes.join("\n")) {
        let (instruction, args) = match line.split_once(char::is_whitespace) {
            Some((i, a)) => (i.to_ascii_lowercase(), a.trim()),
            None => (line.to_ascii_lowercase(), ""),
        };
        let invalid = |message: String| EngineError::InvalidArgument(message);
        let needs_args = || {
            invalid(format!(
                "{} requires at least one argument",
                instruction.to_ascii_uppercase()
            ))
        };
        match instruction.as_str() {
            "cmd" => {
                config.cmd = command_line(args);
                cmd_set = true;
            }
            "entrypoint" => {
                config.entrypoint = command_line(args);
                // As in a Dockerfile: a new ENTRYPOINT drops a CMD not set alongside it.
                if !cmd_set {
                    config.cmd.clear();
                }
            }
            "env" => {
                for (key, value) in key_values(args, "ENV")? {
                    let entry = format!("{key}={value}");
                    match config
                        .env
                        .iter_mut()
                        .find(|e| e.split('=').next() == Some(key.as_str()))
                    {
                        Some(existing) => *existing = entry,
                        None => config.env.push(entry),
                    }
                }
            }
            "label" => {
                for (key, value) in key_values(args, "LABEL")? {
                    config.labels.insert(key, value);
                }
            }
            "expose" => {
                let ports = words(args)?;
                if ports.is_empty() {
                    return Err(needs_args());
                }
                for port in ports {
                    for spec in port_specs(&port)? {
                        config.exposed_ports.insert(spec, Empty {});
                    }
                }
            }
            "user" => {
                if args.is_empty() {
                    return Err(needs_args());
                }
                config.user = args.to_owned();
            }
            "workdir" => {
                if args.is_empty() {
                    return Err(needs_args());
                }
                config.working_dir = workdir(&config.working_dir, &single_word(args)?);
            }
            "volume" => {
                let volumes = json_array(args).unwrap_or(words(args)?);
                if volumes.is_empty() {
                    return Err(needs_args());
                }
                for volume in volumes {
                    if volume.is_empty() {
                        return Err(invalid(
                            "VOLUME specified can not be an empty string".into(),
                        ));
                    }
                    config.volumes.insert(volume, Empty {});
                }
            }
            "stopsignal" => {
                if args.is_empty() {
                    return Err(needs_args());
                }
                config.stop_signal = single_word(args)?;
            }
            "onbuild" => {
                if args.is_empty() {
                    return Err(needs_args());
                }
                config.on_build.push(args.to_owned());
            }
            "healthcheck" => {
                return Err(invalid(
                    "HEALTHCHECK is not supported as an import change by hoist".into(),
                ));
            }
            _ => {
                return Err(invalid(format!(
                    "{instruction} is not a valid change command"
                )));
            }
        }
    }
    Ok(config)
}

/// Dockerfile lines: `\` at a line's end continues it; blank lines and `#` comments go.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        lines.push(current.trim().to_owned());
    }
    lines
}

/// Exec form (a JSON array of strings) as given; shell form run by `/bin/sh -c`.
fn command_line(args: &str) -> Vec<String> {
    match json_array(args) {
        Some(exec) => exec,
        None if args.is_empty() => Vec::new(),
        None => vec!["/bin/sh".into(), "-c".into(), args.to_owned()],
    }
}

fn json_array(args: &str) -> Option<Vec<String>> {
    if !args.starts_with('[') {
        return None;
    }
    serde_json::from_str(args).ok()
}

/// `k=v k2="v 2"`, or the legacy `k v with spaces` (one pair).
fn key_values(args: &str, instruction: &str) -> Result<Vec<(String, String)>, EngineError> {
    let first = words(args)?;
    let Some(head) = first.first() else {
        return Err(EngineError::InvalidArgument(format!(
            "{instruction} requires at least one argument"
        )));
    };
    if !head.contains('=') {
        let (key, value) = args.split_once(char::is_whitespace).ok_or_else(|| {
            EngineError::InvalidArgument(format!("{instruction} must have two arguments"))
        })?;
        return Ok(vec![(unquote(key)?, unquote(value.trim())?)]);
    }
    first
        .into_iter()
        .map(|word| {
            let (key, value) = word.split_once('=').ok_or_else(|| {
                EngineError::InvalidArgument(format!("{instruction} names can not be blank"))
            })?;
            if key.is_empty() {
                return Err(EngineError::InvalidArgument(format!(
                    "{instruction} names can not be blank"
                )));
            }
            Ok((key.to_owned(), value.to_owned()))
        })
        .collect()
}

fn single_word(args: &str) -> Result<String, EngineError> {
    let mut all = words(args)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        _ => Ok(args.to_owned()),
    }
}

fn unquote(text: &str) -> Result<String, EngineError> {
    Ok(words(text)?.join(" "))
}

/// Splits on whitespace outside quotes, removing quotes; `\` escapes the next character except
/// inside single quotes (the Dockerfile word rules, without variable expansion).
fn words(text: &str) -> Result<Vec<String>, EngineError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    let (mut single, mut double) = (false, false);
    while let Some(c) = chars.next() {
        match c {
            '\'' if !double => {
                single = !single;
                in_word = true;
            }
            '"' if !single => {
                double = !double;
                in_word = true;
            }
            '\\' if !single => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            c if c.is_whitespace() && !single && !double => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if single || double {
        return Err(EngineError::InvalidArgument(format!(
            "unmatched quote in {text:?}"
        )));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`, … (moby's `nat.ParsePortSpecs`).
fn port_specs(spec: &str) -> Result<Vec<String>, EngineError> {
    let bad = || EngineError::InvalidArgument(format!("invalid containerPort: {spec}"));
    let (ports, protocol) = match spec.split_once('/') {
        Some((p, proto)) if !proto.is_empty() => (p, proto.to_ascii_lowercase()),
        Some(_) => return Err(bad()),
        None => (spec, "tcp".to_owned()),
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (a, b),
        None => (ports, ports),
    };
    let start: u16 = start.parse().map_err(|_| bad())?;
    let end: u16 = end.parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{protocol}")).collect())
}

/// A relative WORKDIR continues the current one.
fn workdir(current: &str, requested: &str) -> String {
    if requested.starts_with('/') {
        return requested.to_owned();
    }
    let mut parts: Vec<&str> = current.split('/').filter(|p| !p.is_empty()).collect();
    for part in requested.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> RunConfig {
        apply_changes(&changes.iter().map(|c| c.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_changes_docker_import_documents() {
        let c = apply(&[
            r#"CMD ["/app", "--serve"]"#,
            "ENTRYPOINT /entry.sh",
            "ENV A=1 B=\"two words\"",
            "ENV LEGACY some value",
            "ENV A=3",
            "WORKDIR /srv",
            "WORKDIR data",
            "LABEL org.example.team=infra \"quoted key\"=v",
            "USER 1000:1000",
            "EXPOSE 80 443/UDP 8000-8001",
        ]);
        assert_eq!(c.cmd, ["/app", "--serve"]);
        assert_eq!(c.entrypoint, ["/bin/sh", "-c", "/entry.sh"]);
        assert_eq!(c.env, ["A=3", "B=two words", "LEGACY=some value"]);
        assert_eq!(c.working_dir, "/srv/data");
        assert_eq!(c.labels["org.example.team"], "infra");
        assert_eq!(c.labels["quoted key"], "v");
        assert_eq!(c.user, "1000:1000");
        let ports: Vec<&str> = c.exposed_ports.keys().map(String::as_str).collect();
        assert_eq!(ports, ["443/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    }

    #[test]
    fn entrypoint_alone_clears_no_cmd_it_did_not_see() {
        let c = apply(&["ENTRYPOINT [\"/e\"]", "CMD [\"x\"]"]);
        assert_eq!(
            (c.entrypoint.as_slice(), c.cmd.as_slice()),
            (&["/e".to_owned()][..], &["x".to_owned()][..])
        );
    }

    #[test]
    fn config_json_has_go_names_and_omits_empty_fields() {
        let c = apply(&["CMD [\"a\"]", "EXPOSE 80"]);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"ExposedPorts":{"80/tcp":{}},"Cmd":["a"]}"#
        );
        assert_eq!(serde_json::to_string(&RunConfig::default()).unwrap(), "{}");
    }

    #[test]
    fn refusals() {
        let err = |c: &str| apply_changes(&[c.to_owned()]).unwrap_err().to_string();
        assert_eq!(err("RUN make"), "run is not a valid change command");
        assert_eq!(err("EXPOSE eighty"), "invalid containerPort: eighty");
        assert_eq!(err("ENV =x"), "ENV names can not be blank");
        assert!(err("LABEL a=\"open").contains("unmatched quote"));
    }
}
