//! Pushing to a registry that demands credentials (htpasswd Basic auth), with credentials passed
//! the ways real clients pass them: the CLI's config.json, each `X-Registry-Auth` encoding, and
//! docker-py's JSON body.

mod push_support;

use std::sync::OnceLock;

use base64::Engine as _;
use hoist_testkit::archive::ArchiveFormat;
use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Flavor, Image, ImageBuilder, LayerSpec};
use hoist_testkit::registry::{RegistryAuth, RegistryOptions, TestRegistry};
use push_support::*;
use serde_json::json;

/// A request header: name and value.
type Header = (&'static str, String);

const USER: &str = "alice";
// `?` and `>` make base64's standard and URL-safe alphabets differ in the encoded header.
const PASSWORD: &str = "s3cr3t?>?>";

fn registry() -> &'static TestRegistry {
    static REGISTRY: OnceLock<TestRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        TestRegistry::start(RegistryOptions {
            auth: RegistryAuth::Htpasswd(vec![(USER.into(), PASSWORD.into())]),
        })
    })
}

fn image(seed: u64) -> Image {
    ImageBuilder::new(Flavor::Docker)
        .seed(seed)
        .layers([LayerSpec::single(120_000), LayerSpec::single(8_000)])
        .build()
}

/// Reads what the registry holds, with credentials (the harness reads anonymously).
fn manifest_digest(repo: &str, tag: &str) -> Option<String> {
    let response = hoist_testkit::http_client()
        .head(format!("{}/v2/{repo}/manifests/{tag}", registry().url()))
        .header("Accept", hoist_testkit::registry::ALL_MANIFEST_TYPES)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .expect("HEAD manifest");
    (response.status() == 200).then(|| {
        response.headers()["docker-content-digest"]
            .to_str()
            .expect("digest header")
            .to_owned()
    })
}

#[test]
fn credentials_from_the_cli_config_authenticate_the_push() {
    let registry = registry();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket()).with_auth(&registry.host(), USER, PASSWORD);
    let image = image(1);
    let repo = unique_repo("auth/ok");
    let name = format!("{}/{repo}:1", registry.host());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    let out = cli.run(&["push", &name]);
    out.assert_success("authenticated push");
    assert_eq!(manifest_digest(&repo, "1").as_deref(), Some(image.digest()));
    assert!(
        !hoistd.log().contains(PASSWORD),
        "credentials must never reach the log"
    );
}

#[test]
fn wrong_or_missing_credentials_fail_in_the_stream_never_as_401() {
    let registry = registry();
    let hoistd = start_hoistd();
    let image = image(2);
    let repo = unique_repo("auth/denied");
    let name = format!("{}/{repo}:1", registry.host());
    let anonymous = DockerCli::new(&hoistd.socket());
    load_image(&anonymous, &image, &[&name], ArchiveFormat::DockerLegacy);

    for cli in [
        DockerCli::new(&hoistd.socket()).with_auth(&registry.host(), USER, "wrong"),
        anonymous,
    ] {
        let out = cli.run(&["push", &name]);
        assert!(!out.success(), "push must fail: {}", out.stdout);
        assert!(
            out.stderr.contains("unauthorized: authentication required"),
            "stderr: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("Login prior to push"),
            "a 401 would make the CLI prompt: {}",
            out.stderr
        );
    }
    // On the wire: 200 and an errorDetail message, not a 401.
    let header = base64url(
        &json!({"username": USER, "password": "wrong", "serveraddress": registry.host()}),
    );
    let r = hoistd.request(
        "POST",
        &format!("/v1.50/images/{}/{repo}/push?tag=1", registry.host()),
        &[("X-Registry-Auth", &header)],
        b"",
    );
    assert_eq!(r.status, 200);
    let last = messages(&r.body).pop().expect("a message");
    assert_eq!(
        last["errorDetail"]["message"],
        "unauthorized: authentication required",
        "{}",
        r.text()
    );
    assert_eq!(manifest_digest(&repo, "1"), None);
    assert!(
        !hoistd.log().contains("wrong\""),
        "credentials must never reach the log"
    );
}

#[test]
fn every_x_registry_auth_encoding_and_the_json_body_are_understood() {
    let registry = registry();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = image(3);
    let repo = unique_repo("auth/encodings");
    let base = format!("{}/{repo}", registry.host());
    let creds = json!({"username": USER, "password": PASSWORD, "serveraddress": registry.host()})
        .to_string();
    let padded = base64::engine::general_purpose::URL_SAFE.encode(&creds);
    let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&creds);
    let standard = base64::engine::general_purpose::STANDARD.encode(&creds);
    assert_ne!(
        padded, standard,
        "the password must make the alphabets differ"
    );
    let config_auth = json!({
        "auth": base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")),
        "serveraddress": registry.host(),
    });
    let cases: Vec<(&str, Vec<Header>, Vec<u8>)> = vec![
        ("padded", vec![("X-Registry-Auth", padded)], Vec::new()),
        ("unpadded", vec![("X-Registry-Auth", unpadded)], Vec::new()),
        ("standard", vec![("X-Registry-Auth", standard)], Vec::new()),
        (
            "config-auth",
            vec![("X-Registry-Auth", base64url(&config_auth))],
            Vec::new(),
        ),
        // docker-py: no header, credentials (without serveraddress) as the JSON body.
        (
            "body",
            vec![("Content-Type", "application/json".into())],
            json!({"username": USER, "password": PASSWORD})
                .to_string()
                .into_bytes(),
        ),
    ];
    for (tag, headers, body) in cases {
        let name = format!("{base}:{tag}");
        load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = hoistd.request(
            "POST",
            &format!("/v1.50/images/{base}/push?tag={tag}"),
            &headers,
            &body,
        );
        assert_eq!(r.status, 200, "{tag}");
        let msgs = messages(&r.body);
        assert!(
            msgs.iter().all(|m| m.get("errorDetail").is_none()),
            "{tag}: {}",
            r.text()
        );
        assert_eq!(
            manifest_digest(&repo, tag).as_deref(),
            Some(image.digest()),
            "{tag}"
        );
    }
}

#[test]
fn credentials_for_another_registry_are_never_sent() {
    let registry = registry();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = image(4);
    let repo = unique_repo("auth/elsewhere");
    let name = format!("{}/{repo}:1", registry.host());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    // Right password, but meant for Docker Hub: the push goes anonymously and is refused.
    let header = base64url(
        &json!({"username": USER, "password": PASSWORD, "serveraddress": "https://index.docker.io/v1/"}),
    );
    let r = hoistd.request(
        "POST",
        &format!("/v1.50/images/{}/{repo}/push?tag=1", registry.host()),
        &[("X-Registry-Auth", &header)],
        b"",
    );
    let last = messages(&r.body).pop().expect("a message");
    assert_eq!(
        last["errorDetail"]["message"],
        "unauthorized: authentication required",
        "{}",
        r.text()
    );
    assert_eq!(manifest_digest(&repo, "1"), None);
}
