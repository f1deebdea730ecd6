//! Docker's JSON message stream: one JSON object per message, `\r\n` between them, with moby's
//! field names and order (stream, status, progressDetail, progress, id, errorDetail, error, aux).

use bytes::Bytes;
use serde::Serialize;

#[derive(Default, Serialize)]
pub struct JsonMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<ErrorDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

#[derive(Default, Serialize)]
pub struct ProgressDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

#[derive(Serialize)]
pub struct ErrorDetail {
    pub message: String,
}

impl JsonMessage {
    pub fn status(text: impl Into<String>) -> JsonMessage {
        JsonMessage {
            status: Some(text.into()),
            ..JsonMessage::default()
        }
    }

    /// A per-id status line; moby always attaches an empty progressDetail to these.
    pub fn id_status(id: &str, text: impl Into<String>) -> JsonMessage {
        JsonMessage {
            status: Some(text.into()),
            progress_detail: Some(ProgressDetail::default()),
            id: Some(id.to_owned()),
            ..JsonMessage::default()
        }
    }

    pub fn progress(id: &str, action: &str, current: u64, total: u64) -> JsonMessage {
        JsonMessage {
            status: Some(action.to_owned()),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            progress: Some(progress_bar(current, total)),
            id: Some(id.to_owned()),
            ..JsonMessage::default()
        }
    }

    pub fn stream(text: impl Into<String>) -> JsonMessage {
        JsonMessage {
            stream: Some(text.into()),
            ..JsonMessage::default()
        }
    }

    pub fn aux(value: serde_json::Value) -> JsonMessage {
        JsonMessage {
            progress_detail: Some(ProgressDetail::default()),
            aux: Some(value),
            ..JsonMessage::default()
        }
    }

    /// An error after the stream began: the docker CLI prints it and exits 1 only when
    /// `errorDetail` is present.
    pub fn error(message: impl Into<String>) -> JsonMessage {
        let message = message.into();
        JsonMessage {
            error_detail: Some(ErrorDetail {
                message: message.clone(),
            }),
            error: Some(message),
            ..JsonMessage::default()
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        // A struct of strings, numbers and JSON values always serialises.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.extend_from_slice(b"\r\n");
        Bytes::from(line)
    }
}

/// The bar moby's `JSONProgress.String()` draws on the server side, where no terminal is attached
/// and the width is taken as 200: `[====>    ]  3.146MB/8.389MB`.
pub fn progress_bar(current: u64, total: u64) -> String {
    if total == 0 {
        return if current == 0 {
            String::new()
        } else {
            format!("{:>8}", human_size(current))
        };
    }
    let percentage = ((current as f64 / total as f64 * 100.0) as u64 / 2).min(50) as usize;
    let bar = format!(
        "[{}>{}] ",
        "=".repeat(percentage),
        " ".repeat(50 - percentage)
    );
    let numbers = if current > total {
        format!("{:>8}", human_size(current))
    } else {
        format!("{:>8}/{}", human_size(current), human_size(total))
    };
    bar + &numbers
}

/// go-units `HumanSize`: decimal units and four significant digits (`%.4g`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", format_g4(size), UNITS[unit])
}

/// C's `%.4g` for 0 <= x < 1000: four significant digits, trailing zeros dropped.
fn format_g4(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).max(0) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(3_145_728), "3.146MB");
        assert_eq!(human_size(8_388_608), "8.389MB");
        assert_eq!(human_size(1_074_077_967), "1.074GB");
        assert_eq!(human_size(52_458_837), "52.46MB");
        assert_eq!(human_size(100_000), "100kB");
    }

    #[test]
    fn bar_matches_moby_example() {
        assert_eq!(
            progress_bar(3_145_728, 8_388_608),
            "[==================>                                ]  3.146MB/8.389MB"
        );
        assert_eq!(
            progress_bar(8_388_608, 8_388_608),
            "[==================================================>]  8.389MB/8.389MB"
        );
    }

    #[test]
    fn messages_have_moby_shape() {
        let m = JsonMessage::id_status("3f1e2d4c5b6a", "Preparing").to_bytes();
        assert_eq!(
            &m[..],
            b"{\"status\":\"Preparing\",\"progressDetail\":{},\"id\":\"3f1e2d4c5b6a\"}\r\n"
        );
        let e = JsonMessage::error("denied: x").to_bytes();
        assert_eq!(
            &e[..],
            b"{\"errorDetail\":{\"message\":\"denied: x\"},\"error\":\"denied: x\"}\r\n"
        );
        let a = JsonMessage::aux(serde_json::json!({"Tag":"latest"})).to_bytes();
        assert_eq!(
            &a[..],
            b"{\"progressDetail\":{},\"aux\":{\"Tag\":\"latest\"}}\r\n"
        );
    }
}
