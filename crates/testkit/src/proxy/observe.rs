//! What the proxy saw.

use std::collections::HashMap;
use std::time::Instant;

/// One request through the proxy.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query, as the client sent them.
    pub path: String,
    /// `None` when no response was sent (connection reset, client gone).
    pub status: Option<u16>,
    /// Request-body bytes received from the client (and forwarded).
    pub request_body_bytes: u64,
    pub started: Instant,
    /// When the response body ended (or the exchange was abandoned).
    pub ended: Option<Instant>,
    /// Whether a rule answered instead of the registry.
    pub injected: bool,
}

#[derive(Default)]
pub(crate) struct Observations {
    /// Requests since the last reset. Each request keeps its number (`first_number` + its
    /// place here) for its whole exchange, so one still running across a reset updates nothing.
    pub requests: Vec<RequestRecord>,
    /// The number of `requests[0]`: how many were forgotten by resets.
    pub first_number: usize,
    pub uploads: HashMap<String, usize>,
    pub mounts: HashMap<String, usize>,
    pub uploads_in_flight: usize,
    pub max_uploads_in_flight: usize,
    pub last_upload_byte: Option<Instant>,
    pub upload_bytes: u64,
    pub tls_hellos_refused: usize,
}

impl Observations {
    /// Records a new request; returns its number.
    pub fn begin(&mut self, record: RequestRecord) -> usize {
        self.requests.push(record);
        self.first_number + self.requests.len() - 1
    }

    /// Changes the record of request `number`, unless a reset forgot it.
    pub fn update(&mut self, number: usize, change: impl FnOnce(&mut RequestRecord)) {
        let record =
            (number.checked_sub(self.first_number)).and_then(|at| self.requests.get_mut(at));
        if let Some(record) = record {
            change(record);
        }
    }

    /// Forgets what was observed. Uploads still in flight stay counted: they end later.
    pub fn reset(&mut self) {
        *self = Observations {
            first_number: self.first_number + self.requests.len(),
            uploads_in_flight: self.uploads_in_flight,
            max_uploads_in_flight: self.uploads_in_flight,
            ..Observations::default()
        };
    }
}

/// The value of `name=` in a query string, percent-decoded.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_parameters_are_decoded() {
        assert_eq!(
            query_param("_state=x&digest=sha256%3Aabc", "digest").as_deref(),
            Some("sha256:abc")
        );
        assert_eq!(
            query_param("mount=sha256:def&from=a%2Fb", "from").as_deref(),
            Some("a/b")
        );
        assert_eq!(query_param("a=1", "digest"), None);
    }

    fn record(method: &str) -> RequestRecord {
        RequestRecord {
            method: method.into(),
            path: "/v2/".into(),
            status: None,
            request_body_bytes: 0,
            started: Instant::now(),
            ended: None,
            injected: false,
        }
    }

    #[test]
    fn a_request_running_across_a_reset_updates_nothing_after_it() {
        let mut seen = Observations::default();
        let old = seen.begin(record("DELETE"));
        seen.uploads_in_flight = 1;
        seen.reset();
        let new = seen.begin(record("PUT"));
        assert_ne!(old, new);
        seen.update(new, |r| r.status = Some(201));
        seen.update(old, |r| r.status = Some(204));
        assert_eq!(seen.requests.len(), 1);
        assert_eq!(seen.requests[0].status, Some(201));
        assert_eq!(seen.uploads_in_flight, 1, "still running, still counted");
    }
}
