//! Entry points for fuzzing what this crate parses out of a registry's (or token server's)
//! answers: each takes arbitrary bytes or text, runs the production parser and asserts what
//! must hold for any input. The unit tests below run them as property tests; the targets in
//! `fuzz/` run them under libFuzzer.

use std::time::Instant;

use hoist_reference::Digest;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use url::Url;

use crate::auth::{MAX_LIFETIME, parse_token_response};
use crate::challenge::{BearerError, Challenge};
use crate::error::{decode_error, parse_error_body, parse_retry_after};
use crate::upload::{parse_range_end, resolve_location, resume_offset, with_digest};

/// Statuses an error body is decoded with: the ones given meaning without a body, and others.
const ERROR_STATUSES: [u16; 7] = [400, 401, 403, 404, 429, 500, 503];
/// Upload URLs a `Location` is resolved against, as the request that got it went to.
const UPLOAD_URLS: [&str; 2] = [
    "https://registry.example:5000/v2/library/foo/blobs/uploads/",
    "http://[::1]:5000/v2/a/b/blobs/uploads/0d2c?_state=x%3D&expires=1",
];

/// `WWW-Authenticate` headers, one per line of `input`: the challenge chosen has a usable
/// realm, and a 401 carrying them is decoded to at least one error.
pub fn www_authenticate(input: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in input.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(WWW_AUTHENTICATE, value);
        }
    }
    if let Some(Challenge::Bearer { realm, scopes, .. }) = Challenge::from_headers(&headers) {
        assert!(matches!(realm.scheme(), "http" | "https"), "{realm}");
        assert!(scopes.iter().all(|s| !s.is_empty()), "{scopes:?}");
    }
    let _ = BearerError::from_headers(&headers);
    let decoded = decode_error(401, &headers, b"", "HEAD", "https://r/v2/".into(), false);
    assert_eq!(decoded.status, 401);
    assert!(!decoded.errors.is_empty());
    assert!(!decoded.to_string().is_empty());
}

/// A token server's answer: a token that is accepted is not empty, and is renewed no later
/// than its capped lifetime from now, whatever `expires_in` and `issued_at` say.
pub fn token_response(input: &[u8]) {
    let received = Instant::now();
    let Ok(token) = parse_token_response(input, received) else {
        return;
    };
    assert!(!token.value.is_empty());
    assert!(token.refresh_at >= received);
    assert!(token.refresh_at <= received + MAX_LIFETIME);
    assert!(token.refresh_token.is_none_or(|t| !t.is_empty()));
}

/// An error response body: decoded under any status it keeps that status, names a code and a
/// message for each error it reports, and displays.
pub fn error_body(input: &[u8]) {
    if let Some(errors) = parse_error_body(input) {
        assert!(!errors.is_empty());
        for e in &errors {
            assert!(!e.code.is_empty() && !e.message.is_empty(), "{e:?}");
        }
    }
    for status in ERROR_STATUSES {
        let decoded = decode_error(
            status,
            &HeaderMap::new(),
            input,
            "PUT",
            "https://r/v2/x/manifests/latest".into(),
            false,
        );
        assert_eq!(decoded.status, status);
        if matches!(status, 401 | 403 | 429) {
            assert!(!decoded.errors.is_empty());
        }
        let shown = decoded.to_string();
        assert!(!shown.is_empty());
        // The excerpt of a page that is no error body stays short.
        if let Some(excerpt) = &decoded.body_excerpt {
            assert!(excerpt.chars().count() <= 201, "{excerpt:?}");
        }
    }
}

/// A `Retry-After` value, alone and as the header of an error response.
pub fn retry_after(input: &str) {
    let parsed = parse_retry_after(input);
    let seconds = input.trim().parse::<u64>().ok();
    if seconds.is_some() {
        assert_eq!(parsed.map(|d| d.as_secs()), seconds);
    }
    // Header text outside ASCII is not read as text at all.
    let Some(value) = HeaderValue::from_str(input)
        .ok()
        .filter(|v| v.to_str().is_ok())
    else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, value);
    let decoded = decode_error(503, &headers, b"", "GET", "https://r/v2/".into(), false);
    // A date is counted down from now, which moves between the two readings.
    assert_eq!(decoded.retry_after.is_some(), parsed.is_some());
    if seconds.is_some() {
        assert_eq!(decoded.retry_after, parsed);
    }
}

/// An upload session's `Range`: wherever a resumed chunk continues lies within what was sent.
pub fn upload_range(input: &str) {
    let end = parse_range_end(input);
    for (offset, len) in [(0, 0), (0, 1), (1, 1), (4096, 1 << 20), (u64::MAX - 7, 7)] {
        let resumed = resume_offset(offset, len, end);
        assert!(
            resumed >= offset && resumed <= offset + len,
            "{input:?} resumed at {resumed} for {offset}+{len}"
        );
    }
}

/// An upload session's `Location`: it resolves against the request's URL, or is refused, and
/// the digest can be added to what it resolves to.
pub fn upload_location(input: &str) {
    let digest = Digest::sha256_from_bytes(&[7; 32]);
    for base in UPLOAD_URLS {
        let Ok(base) = Url::parse(base) else {
            panic!("{base} is a URL");
        };
        let Ok(resolved) = resolve_location(&base, input) else {
            continue;
        };
        let committed = with_digest(&resolved, &digest);
        assert!(
            committed
                .query()
                .is_some_and(|q| q.ends_with(&format!("digest=sha256%3A{}", digest.hex()))),
            "{input:?} resolved to {resolved}, committed at {committed}"
        );
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_challenge_is_chosen_safely(input in prop::collection::vec(any::<u8>(), 0..300)) {
            www_authenticate(&input);
        }

        #[test]
        fn challenge_like_text_is_chosen_safely(
            input in r#"((Bearer|Basic|bearer|Digest) ?([a-z_]{1,12}="?[a-zA-Z0-9:/.,\\" ]{0,30}"?,? ?){0,4}\n?){1,3}"#
        ) {
            www_authenticate(input.as_bytes());
        }

        #[test]
        fn any_token_response_is_read_safely(input in prop::collection::vec(any::<u8>(), 0..300)) {
            token_response(&input);
        }

        #[test]
        fn token_like_responses_are_read_safely(
            token in "[a-zA-Z0-9.]{0,12}",
            expires_in in any::<i128>(),
            issued_at in r#"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})|"#,
        ) {
            let body = format!(
                r#"{{"token":"{token}","expires_in":{expires_in},"issued_at":"{issued_at}"}}"#
            );
            token_response(body.as_bytes());
        }

        #[test]
        fn any_error_body_is_decoded_safely(input in prop::collection::vec(any::<u8>(), 0..400)) {
            error_body(&input);
        }

        #[test]
        fn error_like_bodies_are_decoded_safely(
            input in r#"\{"(errors|details|error|error_description)":(\[\{"code":"[A-Z_]{0,10}","message":"[^"\\]{0,250}"(,"detail":(null|\{\}|1))?\}\]|"[^"\\]{0,250}"|null|1)\}"#
        ) {
            error_body(input.as_bytes());
        }

        #[test]
        fn any_retry_after_is_read_safely(input in "[0-9a-zA-Z ,:+-]{0,40}") {
            retry_after(&input);
        }

        #[test]
        fn any_range_resumes_within_what_was_sent(input in "([0-9]{0,22}-?){0,3}|.{0,30}") {
            upload_range(&input);
        }

        #[test]
        fn any_numeric_range_resumes_within_what_was_sent(start in any::<u64>(), end in any::<u64>()) {
            upload_range(&format!("{start}-{end}"));
        }

        #[test]
        fn any_location_resolves_or_is_refused(input in r"[a-zA-Z0-9:/?&=.%#\[\] _@-]{0,60}|.{0,40}") {
            upload_location(&input);
        }
    }
}
