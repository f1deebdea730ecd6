//! Faults a real registry will not produce on demand, played by a small fake server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hoist_registry::{
    Access, Credentials, Progress, Registries, RegistryConfig, RegistryError, Repository,
    UploadMode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REPO: &str = "team/app";

fn repo_on(registries: &Registries, host: &str, credentials: Credentials) -> Repository {
    registries.repository(host, REPO, Access::PullPush, credentials)
}

fn query_of(uri: &str) -> Vec<(String, String)> {
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// A registry whose upload endpoint behaves like distribution's, with knobs for faults.
#[derive(Default)]
struct UploadState {
    stored: Vec<u8>,
    patches: usize,
    /// This PATCH (1-based) keeps only half its bytes and answers 500.
    fail_patch: Option<usize>,
    chunk_min_length: Option<u64>,
    committed: bool,
}

async fn upload_registry(state: Arc<Mutex<UploadState>>) -> FakeRegistry {
    FakeRegistry::start(move |req, _| {
        let mut s = state.lock().unwrap();
        let path = req.uri.split('?').next().unwrap_or("");
        let location = |len: usize| ("location", format!("/upload/1?_state=n{len}%3D"));
        let range = |len: usize| ("range", format!("0-{}", len.saturating_sub(1)));
        match (req.method.as_str(), path) {
            ("POST", "/v2/team/app/blobs/uploads/") => {
                let mut headers = vec![location(0), range(0)];
                if let Some(min) = s.chunk_min_length {
                    headers.push(("oci-chunk-min-length", min.to_string()));
                }
                empty(202, &headers)
            }
            ("PATCH", "/upload/1") => {
                s.patches += 1;
                let start: usize = req
                    .header("content-range")
                    .and_then(|r| r.split('-').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(usize::MAX);
                if start != s.stored.len() {
                    return empty(416, &[range(s.stored.len())]);
                }
                if s.fail_patch == Some(s.patches) {
                    let half = req.body.len() / 2;
                    s.stored.extend_from_slice(&req.body[..half]);
                    return respond(500, &[], "internal error");
                }
                s.stored.extend_from_slice(&req.body);
                let len = s.stored.len();
                empty(202, &[location(len), range(len)])
            }
            ("GET", "/upload/1") => {
                let len = s.stored.len();
                empty(204, &[location(len), range(len)])
            }
            ("PUT", "/upload/1") => {
                let digest = query_of(&req.uri)
                    .into_iter()
                    .find(|(k, _)| k == "digest")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                s.stored.extend_from_slice(&req.body);
                if sha256(&s.stored).as_str() != digest {
                    return respond(
                        400,
                        &[],
                        r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#,
                    );
                }
                s.committed = true;
                empty(201, &[("docker-content-digest", digest)])
            }
            _ => empty(404, &[]),
        }
    })
    .await
}

#[tokio::test]
async fn relative_location_keeps_the_query_byte_exact() {
    let fake = FakeRegistry::start(|req, _| match req.method.as_str() {
        "POST" => empty(
            202,
            &[(
                "location",
                "/v2/team/app/blobs/uploads/abc?_state=q%2Bz%3D%3D&x=1".to_owned(),
            )],
        ),
        "PUT" => empty(201, &[]),
        _ => empty(404, &[]),
    })
    .await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &pseudo_random(100_000, 10));
    let session = repo.start_upload().await.unwrap();
    assert_eq!(
        session.url().as_str(),
        format!(
            "http://{}/v2/team/app/blobs/uploads/abc?_state=q%2Bz%3D%3D&x=1",
            fake.host()
        )
    );
    let progress = Progress::default();
    repo.upload_blob(session, &blob, UploadMode::Monolithic, &progress)
        .await
        .unwrap();
    assert_eq!(progress.get(), blob.size);

    let requests = fake.requests();
    let post = requests.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post.header("content-length"), Some("0"));
    let put = requests.iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(
        put.uri,
        format!(
            "/v2/team/app/blobs/uploads/abc?_state=q%2Bz%3D%3D&x=1&digest=sha256%3A{}",
            blob.digest.hex()
        )
    );
    assert_eq!(put.header("content-type"), Some("application/octet-stream"));
    assert_eq!(put.header("content-length"), Some("100000"));
    assert!(put.header("transfer-encoding").is_none());
    assert_eq!(sha256(&put.body), blob.digest);
}

#[tokio::test]
async fn chunk_min_length_raises_the_chunk_size() {
    let state = Arc::new(Mutex::new(UploadState {
        chunk_min_length: Some(2000),
        ..UploadState::default()
    }));
    let fake = upload_registry(state.clone()).await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &pseudo_random(5000, 11));
    let session = repo.start_upload().await.unwrap();
    assert_eq!(session.chunk_min_length(), Some(2000));
    repo.upload_blob(
        session,
        &blob,
        UploadMode::Chunked { chunk_size: 1000 },
        &Progress::default(),
    )
    .await
    .unwrap();

    let requests = fake.requests();
    let patches: Vec<_> = requests.iter().filter(|r| r.method == "PATCH").collect();
    let ranges: Vec<_> = patches
        .iter()
        .map(|r| r.header("content-range").unwrap().to_owned())
        .collect();
    assert_eq!(ranges, ["0-1999", "2000-3999", "4000-4999"]);
    let lengths: Vec<_> = patches
        .iter()
        .map(|r| r.header("content-length").unwrap().to_owned())
        .collect();
    assert_eq!(lengths, ["2000", "2000", "1000"]);
    // Each PATCH goes to the newest Location, whose _state changes every time.
    assert_eq!(patches[1].uri, "/upload/1?_state=n2000%3D");
    let put = requests.iter().find(|r| r.method == "PUT").unwrap();
    assert!(put.body.is_empty());
    assert_eq!(put.header("content-length"), Some("0"));
    assert!(
        put.uri
            .starts_with("/upload/1?_state=n5000%3D&digest=sha256%3A")
    );
    assert!(state.lock().unwrap().committed);
}

#[tokio::test]
async fn chunked_upload_resumes_from_the_confirmed_offset_after_a_failed_patch() {
    let state = Arc::new(Mutex::new(UploadState {
        fail_patch: Some(2),
        ..UploadState::default()
    }));
    let fake = upload_registry(state.clone()).await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(4000, 12);
    let blob = blob_file(dir.path(), &bytes);
    let progress = Progress::default();
    let session = repo.start_upload().await.unwrap();
    repo.upload_blob(
        session,
        &blob,
        UploadMode::Chunked { chunk_size: 1000 },
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(progress.get(), 4000);

    let requests = fake.requests();
    let summary: Vec<String> = requests
        .iter()
        .map(|r| match r.method.as_str() {
            "PATCH" => format!("PATCH {}", r.header("content-range").unwrap()),
            m => m.to_owned(),
        })
        .collect();
    // The second chunk failed after the registry kept 500 of its bytes; the status GET says
    // so, and the upload continues from byte 1500 instead of starting over.
    assert_eq!(
        summary,
        [
            "POST",
            "PATCH 0-999",
            "PATCH 1000-1999",
            "GET",
            "PATCH 1500-2499",
            "PATCH 2500-3499",
            "PATCH 3500-3999",
            "PUT"
        ]
    );
    let s = state.lock().unwrap();
    assert!(s.committed);
    assert_eq!(s.stored, bytes);
}

#[tokio::test]
async fn patch_on_a_vanished_session_is_upload_unknown() {
    let fake = FakeRegistry::start(|req, _| match req.method.as_str() {
        "POST" => empty(202, &[("location", "/upload/gone".to_owned())]),
        _ => empty(404, &[]),
    })
    .await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &pseudo_random(3000, 13));
    let session = repo.start_upload().await.unwrap();
    let error = repo
        .upload_blob(
            session,
            &blob,
            UploadMode::Chunked { chunk_size: 1000 },
            &Progress::default(),
        )
        .await
        .unwrap_err();
    assert!(error.is_upload_unknown(), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn forbidden_head_means_absent() {
    let fake = FakeRegistry::start(|_, _| empty(403, &[])).await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    assert_eq!(repo.blob_exists(&sha256(b"x")).await.unwrap(), None);
}

#[tokio::test]
async fn too_many_requests_is_retryable_after_the_given_delay() {
    let fake = FakeRegistry::start(|req, _| match req.method.as_str() {
        "HEAD" => empty(429, &[("retry-after", "7".to_owned())]),
        _ => respond(
            429,
            &[("retry-after", "3".to_owned())],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        ),
    })
    .await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    let error = repo.blob_exists(&sha256(b"x")).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(error.to_string(), "toomanyrequests: too many requests");
    let error = repo.start_upload().await.unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(error.to_string(), "toomanyrequests: slow down");
}

#[tokio::test]
async fn server_errors_are_retryable_and_client_errors_are_not() {
    let fake = FakeRegistry::start(|req, _| match req.method.as_str() {
        "POST" => respond(503, &[], "upstream unavailable"),
        "GET" => respond(
            403,
            &[],
            r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
        ),
        _ => respond(
            404,
            &[],
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"team/app"}}]}"#,
        ),
    })
    .await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    let error = repo.start_upload().await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.status(), Some(503));
    assert!(
        error
            .to_string()
            .contains("503 Service Unavailable: upstream unavailable"),
        "{error}"
    );

    let error = repo.get_manifest("latest").await.unwrap_err();
    assert!(error.is_denied());
    assert!(!error.is_retryable());
    assert_eq!(
        error.to_string(),
        "denied: requested access to the resource is denied"
    );

    let error = repo
        .put_manifest(
            "latest",
            "application/vnd.oci.image.manifest.v1+json",
            Bytes::from_static(b"{}"),
            &sha256(b"{}"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "name unknown: repository name not known to registry"
    );
    assert_eq!(error.error_codes()[0].code, "NAME_UNKNOWN");
}

#[tokio::test]
async fn digest_mismatch_from_the_registry_is_an_error() {
    let wrong = sha256(b"something else");
    let header = wrong.to_string();
    let fake = FakeRegistry::start(move |req, _| match req.method.as_str() {
        "POST" => empty(202, &[("location", "/upload/1".to_owned())]),
        "PUT" => empty(201, &[("docker-content-digest", header.clone())]),
        _ => empty(404, &[]),
    })
    .await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &pseudo_random(1000, 14));
    let session = repo.start_upload().await.unwrap();
    let error = repo
        .upload_blob(session, &blob, UploadMode::Monolithic, &Progress::default())
        .await
        .unwrap_err();
    assert!(error.is_digest_mismatch(), "{error:?}");
    assert!(error.to_string().contains(wrong.as_str()), "{error}");

    let bytes = Bytes::from_static(b"{\"schemaVersion\":2}");
    let error = repo
        .put_manifest(
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            bytes.clone(),
            &sha256(&bytes),
        )
        .await
        .unwrap_err();
    assert!(error.is_digest_mismatch(), "{error:?}");
}

#[tokio::test]
async fn credentials_stay_with_the_registry_host() {
    // The upload goes to storage on another host; Basic credentials must not follow it.
    let storage = FakeRegistry::start(|_, _| empty(201, &[])).await;
    let storage_port = storage.addr.port();
    let registry = FakeRegistry::start(move |req, _| {
        if req.header("authorization").is_none() {
            return empty(
                401,
                &[("www-authenticate", r#"Basic realm="fake""#.to_owned())],
            );
        }
        match req.method.as_str() {
            "POST" => empty(
                202,
                &[(
                    "location",
                    format!("http://localhost:{storage_port}/upload/1?sig=abc%2F"),
                )],
            ),
            _ => empty(200, &[]),
        }
    })
    .await;
    let credentials = Credentials::Basic {
        username: "alice".into(),
        password: "s3cr3t".into(),
    };
    let repo = repo_on(&registries(), &registry.host(), credentials);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &pseudo_random(50_000, 15));
    let session = repo.start_upload().await.unwrap();
    repo.upload_blob(
        session.clone(),
        &blob,
        UploadMode::Monolithic,
        &Progress::default(),
    )
    .await
    .unwrap();
    repo.cancel_upload(&session).await;

    let registry_requests = registry.requests();
    assert_eq!(
        registry_requests.len(),
        2,
        "401 then the authenticated POST"
    );
    assert_eq!(
        registry_requests[1].header("authorization"),
        Some("Basic YWxpY2U6czNjcjN0")
    );
    let storage_requests = storage.requests();
    assert_eq!(storage_requests.len(), 2);
    for request in &storage_requests {
        assert!(request.header("authorization").is_none(), "{request:?}");
    }
    assert_eq!(
        storage_requests[0].uri,
        format!("/upload/1?sig=abc%2F&digest=sha256%3A{}", blob.digest.hex())
    );
}

/// A registry behind a token server (both on the fake), issuing `tok-<n>` tokens, and
/// rejecting `expired` tokens once.
async fn token_registry(expire_first_token_after: Option<usize>) -> FakeRegistry {
    let uses = Arc::new(Mutex::new(0usize));
    let issued = Arc::new(Mutex::new(0usize));
    FakeRegistry::start(move |req, addr| {
        if req.uri.starts_with("/token") {
            let mut n = issued.lock().unwrap();
            *n += 1;
            return respond(
                200,
                &[("content-type", "application/json".to_owned())],
                format!(
                    r#"{{"token":"tok-{n}","expires_in":300,"issued_at":"2020-01-01T00:00:00Z"}}"#
                ),
            );
        }
        let challenge = format!(r#"Bearer realm="http://{addr}/token",service="fake-registry""#);
        let auth = req.header("authorization").unwrap_or("");
        let first_token_expired = {
            let mut u = uses.lock().unwrap();
            if auth == "Bearer tok-1" {
                *u += 1;
            }
            expire_first_token_after.is_some_and(|after| auth == "Bearer tok-1" && *u > after)
        };
        if !auth.starts_with("Bearer tok-") || first_token_expired {
            let challenge = if first_token_expired {
                format!(r#"{challenge},error="invalid_token""#)
            } else {
                challenge
            };
            return empty(401, &[("www-authenticate", challenge)]);
        }
        match req.method.as_str() {
            "POST" => empty(201, &[]),
            "HEAD" => empty(404, &[]),
            _ => empty(200, &[]),
        }
    })
    .await
}

#[tokio::test]
async fn bearer_challenge_fetches_a_token_with_the_right_scopes() {
    let fake = token_registry(None).await;
    let credentials = Credentials::Basic {
        username: "bob".into(),
        password: "pw".into(),
    };
    let repo = repo_on(&registries(), &fake.host(), credentials);
    let outcome = repo
        .mount_blob(&sha256(b"layer"), "team/base")
        .await
        .unwrap();
    assert!(matches!(outcome, hoist_registry::MountOutcome::Mounted));
    // Same scopes again: the cached token is used without a new challenge.
    let outcome = repo
        .mount_blob(&sha256(b"layer2"), "team/base")
        .await
        .unwrap();
    assert!(matches!(outcome, hoist_registry::MountOutcome::Mounted));

    let requests = fake.requests();
    let summary: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri.split('?').next().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            "POST /v2/team/app/blobs/uploads/",
            "GET /token",
            "POST /v2/team/app/blobs/uploads/",
            "POST /v2/team/app/blobs/uploads/",
        ]
    );
    let token_request = &requests[1];
    assert_eq!(
        query_of(&token_request.uri),
        [
            ("service".to_owned(), "fake-registry".to_owned()),
            (
                "scope".to_owned(),
                "repository:team/app:pull,push".to_owned()
            ),
            ("scope".to_owned(), "repository:team/base:pull".to_owned()),
        ]
    );
    // Basic credentials go to the token server only; the registry sees the token.
    assert_eq!(
        token_request.header("authorization"),
        Some("Basic Ym9iOnB3")
    );
    assert_eq!(requests[0].header("authorization"), None);
    assert_eq!(requests[2].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(requests[3].header("authorization"), Some("Bearer tok-1"));
    assert!(
        requests[2].uri.contains("mount=sha256%3A") && requests[2].uri.contains("from=team%2Fbase")
    );
}

#[tokio::test]
async fn a_rejected_token_is_replaced_once() {
    let fake = token_registry(Some(1)).await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    assert_eq!(repo.blob_exists(&sha256(b"a")).await.unwrap(), None);
    assert_eq!(repo.blob_exists(&sha256(b"b")).await.unwrap(), None);
    let requests = fake.requests();
    let auths: Vec<_> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.header("authorization").unwrap_or("-")))
        .collect();
    assert_eq!(
        auths,
        [
            "HEAD -",
            "GET -",
            "HEAD Bearer tok-1",
            "HEAD Bearer tok-1",
            "GET -",
            "HEAD Bearer tok-2",
        ]
    );
}

#[tokio::test]
async fn static_registry_token_is_sent_and_not_renewed() {
    let fake = token_registry(None).await;
    let repo = repo_on(
        &registries(),
        &fake.host(),
        Credentials::RegistryToken("tok-static".into()),
    );
    assert_eq!(repo.blob_exists(&sha256(b"a")).await.unwrap(), None);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer tok-static")
    );
}

#[tokio::test]
async fn insecure_loopback_falls_back_to_plain_http() {
    let fake = FakeRegistry::start(|_, _| empty(200, &[])).await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    let started = std::time::Instant::now();
    repo.ping().await.unwrap();
    // A plain-HTTP server rejects the TLS hello at once: no timeout is involved.
    assert!(started.elapsed() < Duration::from_secs(5));
    repo.ping().await.unwrap();
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn a_secure_host_does_not_fall_back() {
    let fake = FakeRegistry::start(|_, _| empty(200, &[])).await;
    let registries = Registries::new(RegistryConfig {
        insecure_loopback: false,
        ..test_config()
    })
    .unwrap();
    assert!(!registries.is_insecure(&fake.host()).await);
    let repo = repo_on(&registries, &fake.host(), Credentials::Anonymous);
    let error = repo.ping().await.unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, RegistryError::Transport { .. }),
        "{error:?}"
    );
    assert!(text.contains(&fake.host()), "{text}");
    assert!(text.contains("TLS handshake failed"), "{text}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn connection_lost_mid_body_is_body_interrupted() {
    // Hand-written server: answers the POST, then reads part of the PUT body and hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let Ok(n) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 || buffer[0] == 0x16 {
                        return; // closed, or a TLS hello: hang up
                    }
                    let head = String::from_utf8_lossy(&buffer[..n]).to_string();
                    if head.starts_with("POST") {
                        let reply = "HTTP/1.1 202 Accepted\r\nLocation: /upload/1\r\nContent-Length: 0\r\n\r\n";
                        if socket.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    } else {
                        let mut seen = n;
                        while seen < 200_000 {
                            match socket.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(m) => seen += m,
                            }
                        }
                        return;
                    }
                }
            });
        }
    });
    let repo = repo_on(&registries(), &addr.to_string(), Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &pseudo_random(8 * 1024 * 1024, 16));
    let session = repo.start_upload().await.unwrap();
    let error = repo
        .upload_blob(session, &blob, UploadMode::Monolithic, &Progress::default())
        .await
        .unwrap_err();
    assert!(error.body_interrupted(), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_missing_blob_file_is_a_local_error() {
    let fake =
        FakeRegistry::start(|_, _| empty(202, &[("location", "/upload/1".to_owned())])).await;
    let repo = repo_on(&registries(), &fake.host(), Credentials::Anonymous);
    let session = repo.start_upload().await.unwrap();
    // SAFETY: the file does not exist, so nothing can change it while it is read.
    let blob = unsafe {
        hoist_registry::BlobSource::new("/nonexistent/hoist/blob".into(), sha256(b"x"), 1)
    };
    let error = repo
        .upload_blob(session, &blob, UploadMode::Monolithic, &Progress::default())
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::LocalIo { .. }), "{error:?}");
    assert!(!error.is_retryable());
}

/// A registry whose token server implements the OAuth2 POST only if `post_status` is 200.
async fn oauth_registry(post_status: u16) -> FakeRegistry {
    FakeRegistry::start(move |req, addr| {
        let json = [("content-type", "application/json".to_owned())];
        if req.uri.starts_with("/token") {
            return match (req.method.as_str(), post_status) {
                ("POST", 200) => respond(
                    200,
                    &json,
                    r#"{"access_token":"tok-oauth","expires_in":300}"#,
                ),
                ("POST", status) => empty(status, &[]),
                _ => respond(200, &json, r#"{"token":"tok-get"}"#),
            };
        }
        match req.header("authorization") {
            Some("Bearer tok-oauth" | "Bearer tok-get") => empty(200, &[]),
            _ => empty(
                401,
                &[(
                    "www-authenticate",
                    format!(r#"Bearer realm="http://{addr}/token",service="fake-registry""#),
                )],
            ),
        }
    })
    .await
}

#[tokio::test]
async fn identity_token_uses_the_oauth2_refresh_grant() {
    let fake = oauth_registry(200).await;
    let repo = repo_on(
        &registries(),
        &fake.host(),
        Credentials::IdentityToken("refresh-secret".into()),
    );
    repo.ping().await.unwrap();
    let requests = fake.requests();
    let post = requests.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(
        post.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let mut form: Vec<(String, String)> = url::form_urlencoded::parse(&post.body)
        .into_owned()
        .collect();
    form.sort();
    let expected: Vec<(String, String)> = [
        ("client_id", "docker"),
        ("grant_type", "refresh_token"),
        ("refresh_token", "refresh-secret"),
        ("scope", "repository:team/app:pull,push"),
        ("service", "fake-registry"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form, expected);
    assert_eq!(
        requests.last().unwrap().header("authorization"),
        Some("Bearer tok-oauth")
    );
}

#[tokio::test]
async fn identity_token_falls_back_to_get_when_post_is_not_supported() {
    let fake = oauth_registry(404).await;
    let repo = repo_on(
        &registries(),
        &fake.host(),
        Credentials::IdentityToken("refresh-secret".into()),
    );
    repo.ping().await.unwrap();
    let requests = fake.requests();
    let summary: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri.split('?').next().unwrap()))
        .collect();
    assert_eq!(
        summary,
        ["GET /v2/", "POST /token", "GET /token", "GET /v2/"]
    );
    // containerd's fallback: the identity token as the Basic password, no username.
    assert_eq!(
        requests[2].header("authorization"),
        Some("Basic OnJlZnJlc2gtc2VjcmV0")
    );
    assert_eq!(requests[3].header("authorization"), Some("Bearer tok-get"));
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_host() {
    let storage = FakeRegistry::start(|_, _| respond(200, &[], "blob bytes")).await;
    let storage_port = storage.addr.port();
    let registry = FakeRegistry::start(move |req, _| {
        if req.header("authorization").is_none() {
            return empty(
                401,
                &[("www-authenticate", r#"Basic realm="fake""#.to_owned())],
            );
        }
        empty(
            307,
            &[(
                "location",
                format!("http://localhost:{storage_port}/storage/blob?sig=1"),
            )],
        )
    })
    .await;
    let repo = repo_on(
        &registries(),
        &registry.host(),
        Credentials::Basic {
            username: "alice".into(),
            password: "s3cr3t".into(),
        },
    );
    let mut stream = repo.get_blob(&sha256(b"blob bytes")).await.unwrap();
    let mut body = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        body.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(body, b"blob bytes");
    assert!(registry.requests()[1].header("authorization").is_some());
    let storage_requests = storage.requests();
    assert_eq!(storage_requests.len(), 1);
    assert!(storage_requests[0].header("authorization").is_none());
}
