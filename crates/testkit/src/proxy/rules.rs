//! Fault injection rules: what to match and what to do.

use std::time::Duration;

/// What a rule does to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this instead of forwarding (the request body is not read, unless
    /// `ReadBodyFirst` applies too).
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// With `Respond`: read the whole request body (and drop it) before answering, as a
    /// registry that looks at an upload only once it has it. The client then finishes sending
    /// before the answer comes, with no reset of the unread body racing the answer.
    ReadBodyFirst,
    /// Forward, but after this many request-body bytes reset the client's connection
    /// (`SO_LINGER` 0, so the client sees a RST) and abort the upstream request.
    ResetAfterBodyBytes(u64),
    /// Forward, let the registry handle the request whole, then drop its answer and reset the
    /// client's connection: the client never learns whether the request took effect.
    ResetBeforeResponse,
    /// Forward, but reset the client's connection after this many bytes of the response body.
    ResetAfterResponseBytes(u64),
    /// Wait this long before forwarding.
    Delay(Duration),
    /// Read (and forward) the request body at this rate.
    SlowBody { bytes_per_second: u64 },
    /// Never read the request body: the upload stalls until the client gives up.
    StallBody,
    /// Hold the upload body until this many upload bodies are in flight at once (or `at_most`
    /// has passed): uploads a client runs in parallel are then seen overlapping however fast
    /// each one would finish on its own.
    GatherUploads { count: usize, at_most: Duration },
    /// Add this header to the response.
    AddResponseHeader(String, String),
    /// Rewrite an absolute `Location` (`http://host/path?q`) to its path and query.
    RelativeLocation,
}

impl FaultAction {
    /// A bare status with a registry-style JSON error body.
    pub fn status(status: u16) -> FaultAction {
        FaultAction::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: format!(
                r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected by FaultProxy: {status}"}}]}}"#
            )
            .into_bytes(),
        }
    }

    /// 429 with `Retry-After: <seconds>`.
    pub fn too_many_requests(retry_after_seconds: u64) -> FaultAction {
        FaultAction::Respond {
            status: 429,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Retry-After".into(), retry_after_seconds.to_string()),
            ],
            body: br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected by FaultProxy"}]}"#
                .to_vec(),
        }
    }

    /// A response with the given status, headers and body.
    pub fn respond(status: u16, headers: &[(&str, &str)], body: &[u8]) -> FaultAction {
        FaultAction::Respond {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    pub fn add_response_header(name: &str, value: &str) -> FaultAction {
        FaultAction::AddResponseHeader(name.to_owned(), value.to_owned())
    }
}

/// Matches requests by method, a path substring and optionally a query substring, and applies
/// its action to the next `times` matches (or to all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// `None` matches any method.
    pub method: Option<String>,
    pub path_contains: String,
    pub query_contains: Option<String>,
    /// `None`: every matching request.
    pub times: Option<usize>,
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule for every request whose method is `method` (`"*"` for any) and whose path
    /// contains `path_contains`.
    pub fn new(method: &str, path_contains: &str, action: FaultAction) -> FaultRule {
        FaultRule {
            method: (method != "*").then(|| method.to_ascii_uppercase()),
            path_contains: path_contains.to_owned(),
            query_contains: None,
            times: None,
            action,
        }
    }

    /// Also require the query string to contain `query_contains`.
    pub fn query(mut self, query_contains: &str) -> FaultRule {
        self.query_contains = Some(query_contains.to_owned());
        self
    }

    /// Apply to the next `n` matching requests only.
    pub fn times(mut self, n: usize) -> FaultRule {
        self.times = Some(n);
        self
    }

    pub fn once(self) -> FaultRule {
        self.times(1)
    }

    pub(crate) fn matches(&self, method: &str, path: &str, query: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && path.contains(&self.path_contains)
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
    }
}

/// Identifies an added rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(pub(crate) u64);

pub(crate) struct RuleSlot {
    pub id: RuleId,
    pub rule: FaultRule,
    pub remaining: Option<usize>,
    pub hits: usize,
}

/// Takes the actions of every rule matching this request, using up one of each rule's `times`.
pub(crate) fn take_actions(
    slots: &mut [RuleSlot],
    method: &str,
    path: &str,
    query: &str,
) -> Vec<FaultAction> {
    let mut actions = Vec::new();
    for slot in slots.iter_mut() {
        if slot.remaining == Some(0) || !slot.rule.matches(method, path, query) {
            continue;
        }
        if let Some(remaining) = slot.remaining.as_mut() {
            *remaining -= 1;
        }
        slot.hits += 1;
        actions.push(slot.rule.action.clone());
    }
    actions
}
