//! Against the real registry (CNCF distribution 2.8): the protocol as it is actually spoken.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use hoist_registry::{Access, Credentials, MountOutcome, Progress, Repository, UploadMode};
use hoist_testkit::registry::{RegistryAuth, RegistryOptions, TestRegistry};

fn shared_repo(test: &str) -> Repository {
    let registry = TestRegistry::shared();
    registries().repository(
        &registry.host(),
        &repo_name(test),
        Access::PullPush,
        Credentials::Anonymous,
    )
}

async fn download(repo: &Repository, digest: &hoist_reference::Digest) -> Vec<u8> {
    let mut stream = repo.get_blob(digest).await.unwrap();
    let announced = stream.content_length();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(announced, Some(bytes.len() as u64));
    bytes
}

async fn push_blob(repo: &Repository, bytes: &[u8]) -> hoist_registry::BlobSource {
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), bytes);
    let session = repo.start_upload().await.unwrap();
    repo.upload_blob(session, &blob, UploadMode::Monolithic, &Progress::default())
        .await
        .unwrap();
    // The file is gone with `dir`; callers only need the digest and size.
    blob
}

#[tokio::test]
async fn ping_reaches_a_plain_http_loopback_registry() {
    // Loopback is insecure by default: HTTPS is tried first and the plain-HTTP answer wins.
    shared_repo("ping").ping().await.unwrap();
}

#[tokio::test]
async fn monolithic_upload_round_trips_and_reports_progress() {
    let repo = shared_repo("monolithic");
    let bytes = pseudo_random(5 * 1024 * 1024 + 123, 1);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &bytes);

    assert_eq!(repo.blob_exists(&blob.digest).await.unwrap(), None);
    let session = repo.start_upload().await.unwrap();
    let progress = Progress::default();
    repo.upload_blob(session, &blob, UploadMode::Monolithic, &progress)
        .await
        .unwrap();
    assert_eq!(progress.get(), blob.size);

    assert_eq!(
        repo.blob_exists(&blob.digest).await.unwrap(),
        Some(blob.size)
    );
    let back = download(&repo, &blob.digest).await;
    assert_eq!(sha256(&back), blob.digest);
    assert_eq!(back, bytes);
}

#[tokio::test]
async fn chunked_upload_with_small_chunks_round_trips() {
    let repo = shared_repo("chunked");
    let bytes = pseudo_random(3 * 1024 * 1024 + 512 * 1024, 2);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &bytes);

    let session = repo.start_upload().await.unwrap();
    let progress = Progress::default();
    repo.upload_blob(
        session,
        &blob,
        UploadMode::Chunked {
            chunk_size: 1024 * 1024,
        },
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(progress.get(), blob.size);
    assert_eq!(
        repo.blob_exists(&blob.digest).await.unwrap(),
        Some(blob.size)
    );
    assert_eq!(sha256(&download(&repo, &blob.digest).await), blob.digest);
}

#[tokio::test]
async fn empty_blob_uploads_in_both_modes() {
    let repo = shared_repo("empty-blob");
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), b"");
    for mode in [
        UploadMode::Monolithic,
        UploadMode::Chunked { chunk_size: 1024 },
    ] {
        let session = repo.start_upload().await.unwrap();
        repo.upload_blob(session, &blob, mode, &Progress::default())
            .await
            .unwrap();
    }
    assert_eq!(repo.blob_exists(&blob.digest).await.unwrap(), Some(0));
}

#[tokio::test]
async fn mount_from_a_repository_that_has_the_blob() {
    let registry = TestRegistry::shared();
    let registries = registries();
    let source = registries.repository(
        &registry.host(),
        &repo_name("mount-source"),
        Access::PullPush,
        Credentials::Anonymous,
    );
    let target = registries.repository(
        &registry.host(),
        &repo_name("mount-target"),
        Access::PullPush,
        Credentials::Anonymous,
    );
    let blob = push_blob(&source, &pseudo_random(300_000, 3)).await;

    assert_eq!(target.blob_exists(&blob.digest).await.unwrap(), None);
    let outcome = target
        .mount_blob(&blob.digest, source.path())
        .await
        .unwrap();
    assert!(matches!(outcome, MountOutcome::Mounted), "{outcome:?}");
    assert_eq!(
        target.blob_exists(&blob.digest).await.unwrap(),
        Some(blob.size)
    );
}

#[tokio::test]
async fn mount_from_a_repository_without_the_blob_opens_a_usable_session() {
    let repo = shared_repo("mount-miss");
    let bytes = pseudo_random(200_000, 4);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &bytes);

    let outcome = repo
        .mount_blob(&blob.digest, &repo_name("mount-miss-nowhere"))
        .await
        .unwrap();
    let MountOutcome::Session(session) = outcome else {
        panic!("expected an upload session, got {outcome:?}");
    };
    repo.upload_blob(session, &blob, UploadMode::Monolithic, &Progress::default())
        .await
        .unwrap();
    assert_eq!(
        repo.blob_exists(&blob.digest).await.unwrap(),
        Some(blob.size)
    );
}

#[tokio::test]
async fn manifest_put_and_get_keep_exact_bytes() {
    let repo = shared_repo("manifest");
    let config = push_blob(
        &repo,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .await;
    let layer = push_blob(&repo, &pseudo_random(10_000, 5)).await;
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    // Unusual spacing and key order on purpose: re-serialising would change the digest.
    let manifest = format!(
        "{{\n  \"schemaVersion\": 2,   \"mediaType\": \"{media_type}\",\n  \"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"size\": {}, \"digest\": \"{}\"}},\n  \"layers\": [{{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", \"size\": {}, \"digest\": \"{}\"}}]\n}}",
        config.size, config.digest, layer.size, layer.digest
    );
    let bytes = Bytes::from(manifest);
    let digest = sha256(&bytes);

    assert_eq!(repo.manifest_digest("v1").await.unwrap(), None);
    repo.put_manifest("v1", media_type, bytes.clone(), &digest)
        .await
        .unwrap();
    assert_eq!(
        repo.manifest_digest("v1").await.unwrap(),
        Some(digest.clone())
    );
    assert_eq!(
        repo.manifest_digest(digest.as_str()).await.unwrap(),
        Some(digest.clone())
    );

    for reference in ["v1", digest.as_str()] {
        let fetched = repo.get_manifest(reference).await.unwrap();
        assert_eq!(fetched.bytes, bytes);
        assert_eq!(fetched.digest, digest);
        assert_eq!(fetched.media_type, media_type);
    }
}

#[tokio::test]
async fn registry_errors_read_like_distribution() {
    let repo = shared_repo("errors");
    let missing = repo.get_manifest("nope").await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
    assert_eq!(missing.to_string(), "manifest unknown: manifest unknown");
    assert!(!missing.is_retryable());

    // A manifest naming blobs the registry does not have.
    let absent = sha256(b"not uploaded");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":12,"digest":"{absent}"}},"layers":[]}}"#
    );
    let bytes = Bytes::from(manifest);
    let error = repo
        .put_manifest(
            "broken",
            "application/vnd.oci.image.manifest.v1+json",
            bytes.clone(),
            &sha256(&bytes),
        )
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert!(
        error.to_string().starts_with("manifest blob unknown: "),
        "{error}"
    );
}

#[tokio::test]
async fn a_cancelled_session_is_reported_as_upload_unknown() {
    let repo = shared_repo("cancel");
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &pseudo_random(1000, 6));
    let session = repo.start_upload().await.unwrap();
    repo.cancel_upload(&session).await;
    let error = repo
        .upload_blob(
            session,
            &blob,
            UploadMode::Chunked { chunk_size: 400 },
            &Progress::default(),
        )
        .await
        .unwrap_err();
    assert!(error.is_upload_unknown(), "{error:?}");
    assert!(
        error.to_string().starts_with("blob upload unknown: "),
        "{error}"
    );
}

#[tokio::test]
async fn basic_auth_with_right_and_wrong_credentials() {
    let registry = TestRegistry::start(RegistryOptions {
        auth: RegistryAuth::Htpasswd(vec![("alice".into(), "s3cr3t".into())]),
    });
    let registries = registries();
    let repo = registries.repository(
        &registry.host(),
        &repo_name("basic"),
        Access::PullPush,
        Credentials::Basic {
            username: "alice".into(),
            password: "s3cr3t".into(),
        },
    );
    repo.ping().await.unwrap();
    let blob = push_blob(&repo, &pseudo_random(70_000, 7)).await;
    assert_eq!(
        repo.blob_exists(&blob.digest).await.unwrap(),
        Some(blob.size)
    );

    let wrong = registries.repository(
        &registry.host(),
        &repo_name("basic"),
        Access::PullPush,
        Credentials::Basic {
            username: "alice".into(),
            password: "wrong".into(),
        },
    );
    let error = wrong.ping().await.unwrap_err();
    assert!(error.is_unauthorized(), "{error:?}");
    assert!(error.to_string().starts_with("unauthorized: "), "{error}");
    let error = wrong.blob_exists(&blob.digest).await.unwrap_err();
    assert_eq!(error.to_string(), "unauthorized: authentication required");
    // "Could not tell" is not "no tags".
    let error = wrong.has_tags().await.unwrap_err();
    assert!(error.is_unauthorized(), "{error:?}");

    let anonymous = registries.repository(
        &registry.host(),
        &repo_name("basic"),
        Access::PullPush,
        Credentials::Anonymous,
    );
    let error = anonymous.start_upload().await.unwrap_err();
    assert!(error.is_unauthorized(), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn tags_are_listed_and_an_unknown_repository_is_the_registrys_error() {
    let repo = shared_repo("tags");
    let config = push_blob(
        &repo,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .await;
    // Blobs alone make no tag: distribution still calls the repository unknown.
    assert!(!repo.has_tags().await.unwrap());
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    let manifest = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
        config.digest, config.size
    ));
    let digest = sha256(&manifest);
    for tag in ["b", "a", "c-1"] {
        repo.put_manifest(tag, media_type, manifest.clone(), &digest)
            .await
            .unwrap();
    }
    let mut tags = repo.list_tags().await.unwrap();
    tags.sort();
    assert_eq!(tags, ["a", "b", "c-1"]);
    assert!(repo.has_tags().await.unwrap());

    let nothing = shared_repo("tags-of-nothing");
    assert!(!nothing.has_tags().await.unwrap());
    let unknown = nothing.list_tags().await.unwrap_err();
    assert_eq!(unknown.status(), Some(404), "{unknown}");
    assert!(unknown.to_string().starts_with("name unknown"), "{unknown}");
}
