use hoist_testkit::registry::{RegistryAuth, RegistryOptions, TestRegistry};

#[test]
fn shared_registry_answers_v2() {
    let reg = TestRegistry::shared();
    let resp = hoist_testkit::http_client()
        .get(format!("{}/v2/", reg.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
}

#[test]
fn htpasswd_registry_demands_credentials() {
    let reg = TestRegistry::start(RegistryOptions {
        auth: RegistryAuth::Htpasswd(vec![("alice".into(), "s3cr3t".into())]),
    });
    let client = hoist_testkit::http_client();
    let anon = client.get(format!("{}/v2/", reg.url())).send().unwrap();
    assert_eq!(anon.status(), 401);
    let ok = client
        .get(format!("{}/v2/", reg.url()))
        .basic_auth("alice", Some("s3cr3t"))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = client
        .get(format!("{}/v2/", reg.url()))
        .basic_auth("alice", Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(bad.status(), 401);
}

#[test]
fn a_stopped_registry_starts_again_on_its_port_with_its_content() {
    use hoist_testkit::image::sha256_digest;
    let mut reg = TestRegistry::start(RegistryOptions::default());
    let content = b"kept across a restart".to_vec();
    let digest = sha256_digest(&content);
    let client = hoist_testkit::http_client();
    let location = client
        .post(format!("{}/v2/restart/blobs/uploads/", reg.url()))
        .send()
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = client
        .put(format!("{location}{separator}digest={digest}"))
        .body(content)
        .send()
        .unwrap();
    assert_eq!(put.status(), 201);

    reg.stop();
    assert!(
        client.get(format!("{}/v2/", reg.url())).send().is_err(),
        "a stopped registry answers nothing"
    );
    reg.start_again();
    assert!(reg.has_blob("restart", &digest));
}
