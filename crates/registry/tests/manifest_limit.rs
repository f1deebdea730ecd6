//! The registry client fetches no manifest larger than hoist can read back: the store walks
//! manifests for garbage collection with the same limit, and one it could not read would make
//! every collection fail.

mod common;

use axum::body::Body;
use common::*;
use futures_util::stream;
use hoist_oci::limits::MAX_MANIFEST_BYTES;
use hoist_oci::media;
use hoist_registry::{Access, Credentials};

/// An OCI manifest of exactly `len` bytes (padded with spaces, which JSON ignores).
fn manifest_of_len(len: usize) -> Vec<u8> {
    let mut bytes = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}"}}"#,
        media::OCI_MANIFEST
    )
    .into_bytes();
    bytes.resize(len, b' ');
    bytes
}

#[tokio::test]
async fn manifests_up_to_the_limit_are_fetched_and_larger_ones_refused() {
    let limit = usize::try_from(MAX_MANIFEST_BYTES).unwrap();
    let fake = FakeRegistry::start(move |req, _| {
        let content_type = [("content-type", media::OCI_MANIFEST.to_owned())];
        match req.uri.rsplit('/').next().unwrap_or("") {
            "at-limit" => respond(200, &content_type, manifest_of_len(limit)),
            "over-limit" => respond(200, &content_type, manifest_of_len(limit + 1)),
            // No Content-Length: the body itself must be cut off.
            "over-limit-streamed" => {
                let chunks = manifest_of_len(limit + 1)
                    .chunks(64 << 10)
                    .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                    .collect::<Vec<_>>();
                respond(200, &content_type, Body::from_stream(stream::iter(chunks)))
            }
            _ => empty(404, &[]),
        }
    })
    .await;
    let repo = registries().repository(
        &fake.host(),
        "team/app",
        Access::Pull,
        Credentials::Anonymous,
    );

    let fetched = repo.get_manifest("at-limit").await.unwrap();
    assert_eq!(fetched.bytes.len(), limit);
    assert_eq!(fetched.media_type, media::OCI_MANIFEST);

    for reference in ["over-limit", "over-limit-streamed"] {
        let error = repo.get_manifest(reference).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("manifest is larger than {limit} bytes")),
            "{reference}: {error}"
        );
    }
}
