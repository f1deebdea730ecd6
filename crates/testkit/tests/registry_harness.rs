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
