//! The fault proxy in front of the real registry: forwarding, observation and each fault.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hoist_testkit::image::{Compression, Flavor, ImageBuilder, LayerSpec, sha256_digest};
use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule};
use hoist_testkit::registry::TestRegistry;

fn client() -> reqwest::blocking::Client {
    hoist_testkit::http_client()
}

/// POST an upload session through the proxy; returns the `Location` as given.
fn start_upload(proxy: &FaultProxy, repo: &str) -> String {
    let response = client()
        .post(format!("{}/v2/{repo}/blobs/uploads/", proxy.url()))
        .send()
        .expect("POST upload through proxy");
    assert_eq!(response.status(), 202, "POST upload through proxy");
    response.headers()["location"]
        .to_str()
        .expect("Location is text")
        .to_owned()
}

fn put_blob(location: &str, content: Vec<u8>) -> reqwest::Result<reqwest::blocking::Response> {
    let digest = sha256_digest(&content);
    let separator = if location.contains('?') { '&' } else { '?' };
    client()
        .put(format!("{location}{separator}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .body(content)
        .send()
}

fn random_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[2] ^ seed)
        .collect()
}

#[test]
fn host_is_preserved_so_upload_locations_point_at_the_proxy() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let location = start_upload(&proxy, "px/host");
    assert!(
        location.starts_with(&format!(
            "http://{}/v2/px/host/blobs/uploads/",
            proxy.host()
        )),
        "distribution built Location from the forwarded Host: {location}"
    );
    let content = random_bytes(300_000, 1);
    let digest = sha256_digest(&content);
    let put = put_blob(&location, content).expect("PUT through proxy");
    assert_eq!(put.status(), 201);
    assert_eq!(proxy.completed_uploads(&digest), 1);
    assert_eq!(proxy.upload_bytes(), 300_000);
    assert!(proxy.last_upload_byte_at().is_some());
    assert!(registry.has_blob("px/host", &digest));

    let log = proxy.requests();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].method.as_str(), log[0].status), ("POST", Some(202)));
    assert_eq!(log[0].path, "/v2/px/host/blobs/uploads/");
    assert_eq!((log[1].method.as_str(), log[1].status), ("PUT", Some(201)));
    assert!(
        log[1].path.ends_with(&format!("digest={digest}")),
        "{}",
        log[1].path
    );
    assert_eq!(log[1].request_body_bytes, 300_000);
    assert!(
        log.iter()
            .all(|r| r.ended.is_some_and(|end| end >= r.started))
    );
    assert_eq!(proxy.uploads_in_flight(), 0);
    assert_eq!(proxy.max_uploads_in_flight(), 1);
}

#[test]
fn skopeo_push_through_the_proxy_uploads_each_blob_once() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let image = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(200_000))
        .layer(LayerSpec::single(100_000).compression(Compression::ZSTD))
        .layer(LayerSpec::single(50_000).compression(Compression::None))
        .build();
    hoist_testkit::skopeo::push_image(&image, &proxy.host(), "px/skopeo", "v1");
    for blob in image.blobs() {
        assert_eq!(proxy.completed_uploads(&blob.digest), 1, "{}", blob.digest);
    }
    assert_eq!(proxy.upload_counts().len(), 4);
    assert!(proxy.max_uploads_in_flight() >= 1);
    assert!(proxy.upload_bytes() >= image.blobs_size());
    assert_eq!(
        registry.get_manifest("px/skopeo", "v1").bytes,
        image.manifest_bytes()
    );
}

#[test]
fn concurrent_upload_bodies_are_counted() {
    let registry = TestRegistry::shared();
    let proxy = Arc::new(FaultProxy::in_front_of(registry));
    // Slow bodies keep all four uploads in flight together.
    proxy.add_rule(FaultRule::new(
        "PUT",
        "/blobs/uploads/",
        FaultAction::SlowBody {
            bytes_per_second: 200_000,
        },
    ));
    let threads: Vec<_> = (0..4u8)
        .map(|i| {
            let proxy = proxy.clone();
            std::thread::spawn(move || {
                let location = start_upload(&proxy, "px/concurrent");
                let put = put_blob(&location, random_bytes(200_000, i)).expect("slow PUT");
                assert_eq!(put.status(), 201);
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("upload thread");
    }
    assert_eq!(proxy.max_uploads_in_flight(), 4);
    assert_eq!(proxy.uploads_in_flight(), 0);
    assert_eq!(proxy.upload_counts().len(), 4);
}

#[test]
fn injected_503_applies_to_the_next_matching_request_only() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let rule = proxy.add_rule(FaultRule::new("GET", "/v2/", FaultAction::status(503)).once());
    let first = client().get(format!("{}/v2/", proxy.url())).send().unwrap();
    assert_eq!(first.status(), 503);
    assert!(first.text().unwrap().contains("injected by FaultProxy"));
    let second = client().get(format!("{}/v2/", proxy.url())).send().unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(proxy.rule_hits(rule), 1);
    let log = proxy.requests();
    assert!(log[0].injected && !log[1].injected);
    assert_eq!(log[0].status, Some(503));
}

#[test]
fn injected_429_carries_retry_after_and_rules_match_queries() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    proxy.add_rule(
        FaultRule::new("PUT", "/blobs/uploads/", FaultAction::too_many_requests(1))
            .query("digest=")
            .times(2),
    );
    let location = start_upload(&proxy, "px/429");
    let content = random_bytes(1000, 2);
    for _ in 0..2 {
        let response = put_blob(&location, content.clone()).unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
    }
    assert_eq!(put_blob(&location, content.clone()).unwrap().status(), 201);
    assert_eq!(proxy.completed_uploads(&sha256_digest(&content)), 1);
}

#[test]
fn reset_mid_body_cuts_the_connection_after_the_given_bytes() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    proxy.add_rule(
        FaultRule::new(
            "PUT",
            "/blobs/uploads/",
            FaultAction::ResetAfterBodyBytes(65_536),
        )
        .once(),
    );
    let content = random_bytes(4 << 20, 3);
    let digest = sha256_digest(&content);
    let location = start_upload(&proxy, "px/reset");
    let started = Instant::now();
    let error = put_blob(&location, content.clone()).expect_err("the connection is reset");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "reset is prompt"
    );
    assert!(
        !error.is_status(),
        "a transport error, not a response: {error:?}"
    );
    proxy.wait_for("the reset PUT to end", Duration::from_secs(5), |log| {
        log.iter().any(|r| r.method == "PUT" && r.ended.is_some())
    });
    let put = proxy
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("PUT logged");
    assert_eq!(put.status, None);
    assert_eq!(put.request_body_bytes, 65_536);
    assert_eq!(proxy.completed_uploads(&digest), 0);
    assert!(!registry.has_blob("px/reset", &digest));

    // The next attempt goes through.
    let location = start_upload(&proxy, "px/reset");
    assert_eq!(put_blob(&location, content).unwrap().status(), 201);
    assert_eq!(proxy.completed_uploads(&digest), 1);
}

#[test]
fn location_is_made_relative_and_headers_are_added_on_request() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    proxy.add_rule(FaultRule::new(
        "POST",
        "/blobs/uploads/",
        FaultAction::RelativeLocation,
    ));
    proxy.add_rule(FaultRule::new(
        "POST",
        "/blobs/uploads/",
        FaultAction::add_response_header("OCI-Chunk-Min-Length", "1048576"),
    ));
    let response = client()
        .post(format!("{}/v2/px/relative/blobs/uploads/", proxy.url()))
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["oci-chunk-min-length"], "1048576");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/v2/px/relative/blobs/uploads/"),
        "{location}"
    );
    assert!(location.contains("_state="), "query kept: {location}");
    let put = put_blob(&format!("{}{location}", proxy.url()), b"relative".to_vec()).unwrap();
    assert_eq!(put.status(), 201);

    proxy.clear_rules();
    let plain = client()
        .post(format!("{}/v2/px/relative/blobs/uploads/", proxy.url()))
        .send()
        .unwrap();
    assert!(
        plain.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("http://")
    );
    assert!(plain.headers().get("oci-chunk-min-length").is_none());
}

#[test]
fn a_tls_client_hello_is_refused_at_once() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut tls = rustls::ClientConnection::new(
        Arc::new(config),
        "127.0.0.1".try_into().expect("server name"),
    )
    .expect("TLS client");
    let mut tcp = std::net::TcpStream::connect(proxy.addr()).expect("connect to proxy");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    tls.write_tls(&mut tcp).expect("send ClientHello");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer)
        .expect("the proxy closes the connection");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        answer.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(proxy.tls_hellos_refused(), 1);
    // Plain HTTP still works on the same proxy.
    let ok = client().get(format!("{}/v2/", proxy.url())).send().unwrap();
    assert_eq!(ok.status(), 200);
}

#[test]
fn delay_slow_body_and_stalled_body() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let delay = proxy.add_rule(
        FaultRule::new(
            "GET",
            "/v2/",
            FaultAction::Delay(Duration::from_millis(300)),
        )
        .once(),
    );
    let started = Instant::now();
    assert_eq!(
        client()
            .get(format!("{}/v2/", proxy.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(proxy.rule_hits(delay), 1);

    proxy.add_rule(
        FaultRule::new(
            "PUT",
            "/blobs/uploads/",
            FaultAction::SlowBody {
                bytes_per_second: 100_000,
            },
        )
        .once(),
    );
    let location = start_upload(&proxy, "px/slow");
    let started = Instant::now();
    assert_eq!(
        put_blob(&location, random_bytes(50_000, 4))
            .unwrap()
            .status(),
        201
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "50 kB at 100 kB/s took {:?}",
        started.elapsed()
    );

    proxy.add_rule(FaultRule::new("PUT", "/blobs/uploads/", FaultAction::StallBody).once());
    let location = start_upload(&proxy, "px/stall");
    let stalled = {
        let location = location.clone();
        std::thread::spawn(move || {
            hoist_testkit::http_client();
            reqwest::blocking::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap()
                .put(format!("{location}&digest={}", sha256_digest(b"stalled")))
                .body(b"stalled".to_vec())
                .send()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        proxy.uploads_in_flight(),
        1,
        "the stalled upload is in flight"
    );
    let result = stalled.join().expect("stalled client thread");
    assert!(result.expect_err("the client times out").is_timeout());
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.uploads_in_flight() != 0 {
        assert!(
            Instant::now() < deadline,
            "stalled upload never left flight"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn mounts_are_counted_separately_from_uploads() {
    let registry = TestRegistry::shared();
    let image = ImageBuilder::new(Flavor::Oci).build();
    registry.push_image("px/mount-source", "v1", &image);
    let proxy = FaultProxy::in_front_of(registry);
    let layer = image.layers[0].digest();
    let response = client()
        .post(format!(
            "{}/v2/px/mount-target/blobs/uploads/?mount={layer}&from=px/mount-source",
            proxy.url()
        ))
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(proxy.mounts(layer), 1);
    assert_eq!(proxy.completed_uploads(layer), 0);
    assert_eq!(proxy.mount_counts().len(), 1);
}

#[test]
fn big_bodies_stream_through_both_ways() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let image = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(48 << 20).compression(Compression::Gzip { level: 0 }))
        .build();
    let layer = &image.layers[0].blob;
    let location = start_upload(&proxy, "px/big");
    let file = std::fs::File::open(&layer.path).unwrap();
    let put = client()
        .put(format!("{location}&digest={}", layer.digest))
        .body(file)
        .send()
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(proxy.upload_bytes(), layer.size);
    let mut response = client()
        .get(format!("{}/v2/px/big/blobs/{}", proxy.url(), layer.digest))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = response.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        sha2::Digest::update(&mut hasher, &buf[..n]);
    }
    assert_eq!(total, layer.size);
    assert_eq!(
        format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher))),
        layer.digest
    );
    // HEAD keeps the registry's Content-Length.
    let head = client()
        .head(format!("{}/v2/px/big/blobs/{}", proxy.url(), layer.digest))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        layer.size.to_string().as_str()
    );
}

#[test]
fn client_connections_are_kept_alive() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let tcp = std::net::TcpStream::connect(proxy.addr()).expect("connect to proxy");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let host = proxy.host();
    let headers = [("Host", host.as_str()), ("Connection", "keep-alive")];
    for _ in 0..3 {
        let response = hoist_testkit::http1::exchange(&tcp, "GET", "/v2/", &headers, b"")
            .expect("request on the kept-alive connection");
        assert_eq!(response.status, 200);
    }
    assert_eq!(proxy.requests().len(), 3);
}

#[test]
fn reset_before_the_response_lets_the_registry_act_but_loses_its_answer() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let location = start_upload(&proxy, "px/lost-answer");
    let content = random_bytes(50_000, 7);
    let digest = sha256_digest(&content);
    proxy.add_rule(
        FaultRule::new("PUT", "/blobs/uploads/", FaultAction::ResetBeforeResponse).once(),
    );
    let error = put_blob(&location, content).expect_err("the answer is lost");
    assert!(
        format!("{error:?}").contains("reset") || format!("{error:?}").contains("closed"),
        "{error:?}"
    );
    // The registry stored the blob all the same.
    assert!(registry.has_blob("px/lost-answer", &digest));
    let log = proxy.requests();
    assert_eq!(log.last().map(|r| r.status), Some(None), "{log:#?}");
}

#[test]
fn reset_after_response_bytes_cuts_a_download_mid_body() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let content = random_bytes(300_000, 8);
    let digest = sha256_digest(&content);
    let location = start_upload(&proxy, "px/cut-download");
    assert_eq!(put_blob(&location, content).expect("PUT").status(), 201);
    proxy.add_rule(
        FaultRule::new(
            "GET",
            &format!("/blobs/{digest}"),
            FaultAction::ResetAfterResponseBytes(100_000),
        )
        .once(),
    );
    let url = format!("{}/v2/px/cut-download/blobs/{digest}", proxy.url());
    let mut response = client().get(&url).send().expect("the head arrives");
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    let error = response
        .read_to_end(&mut received)
        .expect_err("the body is cut");
    assert!(received.len() <= 100_000, "{} bytes passed", received.len());
    assert_eq!(error.kind(), std::io::ErrorKind::Other, "{error:?}");
    // Only once: the next download is whole.
    let again = client()
        .get(&url)
        .send()
        .expect("GET")
        .bytes()
        .expect("body");
    assert_eq!(again.len(), 300_000);
}
