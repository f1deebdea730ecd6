//! TLS to registries with the real docker CLI against real `docker-registry` instances serving
//! HTTPS: CAs from a certs.d directory, client certificates (mutual TLS), a self-signed CA
//! certificate used as the registry's own, untrusted certificates, and insecure registries whose
//! token server is unverifiable too. Loopback is made secure with `"insecure-loopback": false`.

mod push_support;

use std::path::Path;

use hoist_testkit::archive::ArchiveFormat;
use hoist_testkit::docker::{CliOutput, DockerCli};
use hoist_testkit::hoistd::Hoistd;
use hoist_testkit::image::{Flavor, Image, ImageBuilder, LayerSpec};
use hoist_testkit::registry::{RegistryAuth, RegistryOptions, RegistryTls, TestRegistry};
use hoist_testkit::tls::{CertPair, TestCa};
use hoist_testkit::token_server::{TokenServer, TokenServerOptions};
use push_support::*;
use serde_json::json;

const USER: &str = "alice";
const PASSWORD: &str = "tls-s3cr3t";
const LOOPBACK: &[&str] = &["127.0.0.1", "localhost"];

fn image(seed: u64) -> Image {
    ImageBuilder::new(Flavor::Docker)
        .seed(seed)
        .layers([LayerSpec::single(30_000), LayerSpec::single(5_000)])
        .build()
}

/// A certs.d directory for hoistd.
fn certs_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hoist-certs-d-")
        .tempdir()
        .expect("certs.d temp dir")
}

/// `<certs_dir>/<host>/<file>` with `contents`.
fn place(certs: &Path, host: &str, file: &str, contents: &str) {
    let dir = certs.join(host);
    std::fs::create_dir_all(&dir).expect("certs.d host dir");
    std::fs::write(dir.join(file), contents).expect("write into certs.d");
}

/// hoistd that treats loopback registries as secure and reads TLS material from `certs`.
fn secure_hoistd(certs: &Path) -> Hoistd {
    start_hoistd_with(json!({"insecure-loopback": false, "certs-dir": certs}))
}

fn push(cli: &DockerCli, name: &str, image: &Image) -> CliOutput {
    load_image(cli, image, &[name], ArchiveFormat::DockerLegacy);
    cli.run(&["push", name])
}

fn docker_login(cli: &DockerCli, host: &str) -> CliOutput {
    cli.run_with_stdin(
        &["login", "--username", USER, "--password-stdin", host],
        PASSWORD.as_bytes().to_vec(),
    )
}

fn assert_failed_with(out: &CliOutput, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{out}");
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "expected {needle:?} in:\n{out}"
        );
    }
}

#[test]
fn a_ca_in_certs_d_makes_a_tls_registry_trusted_for_login_and_push() {
    let ca = TestCa::new("hoist test registry CA");
    let registry = TestRegistry::start_with_tls(
        RegistryOptions {
            auth: RegistryAuth::Htpasswd(vec![(USER.into(), PASSWORD.into())]),
        },
        RegistryTls::server(ca.issue_server(LOOPBACK)),
    );
    let certs = certs_dir();
    place(certs.path(), &registry.host(), "ca.crt", &ca.cert_pem());
    let hoistd = secure_hoistd(certs.path());
    let cli = DockerCli::new(&hoistd.socket());

    let out = docker_login(&cli, &registry.host());
    out.assert_success("docker login over verified TLS");
    let repo = unique_repo("tls/ca");
    let image = image(21);
    push(&cli, &format!("{}/{repo}:1", registry.host()), &image).assert_success("push over TLS");
    let response = registry
        .client()
        .get(format!("{}/v2/{repo}/manifests/1", registry.url()))
        .header("Accept", hoist_testkit::registry::ALL_MANIFEST_TYPES)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .expect("GET manifest");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["docker-content-digest"].to_str().ok(),
        Some(image.digest())
    );
}

#[test]
fn mutual_tls_presents_the_client_certificate_from_certs_d() {
    let ca = TestCa::new("hoist test registry CA");
    let client_ca = TestCa::new("hoist test client CA");
    let registry = TestRegistry::start_with_tls(
        RegistryOptions::default(),
        RegistryTls::mutual(ca.issue_server(LOOPBACK), &client_ca),
    );
    let host = registry.host();
    let repo = unique_repo("tls/mutual");
    let name = format!("{host}/{repo}:1");
    let image = image(22);
    let certs = certs_dir();
    place(certs.path(), &host, "ca.crt", &ca.cert_pem());

    // Without a client certificate the registry ends the handshake.
    let hoistd = secure_hoistd(certs.path());
    let out = push(&DockerCli::new(&hoistd.socket()), &name, &image);
    assert_failed_with(&out, &[&host, "TLS handshake failed", "client.cert"]);
    drop(hoistd);

    let identity = client_ca.issue_client("hoist");
    place(certs.path(), &host, "client.cert", &identity.cert_pem);
    place(certs.path(), &host, "client.key", &identity.key_pem);
    let hoistd = secure_hoistd(certs.path());
    push(&DockerCli::new(&hoistd.socket()), &name, &image).assert_success("push with mTLS");
    assert_registry_has_image(&registry, &repo, "1", &image);
}

#[test]
fn a_self_signed_ca_certificate_as_the_registrys_own_is_trusted_from_certs_d() {
    // What `openssl req -x509 -newkey rsa:4096 -nodes -keyout key -out crt` makes.
    let own = CertPair::self_signed_ca_as_leaf(LOOPBACK);
    let registry =
        TestRegistry::start_with_tls(RegistryOptions::default(), RegistryTls::server(own.clone()));
    let host = registry.host();
    let repo = unique_repo("tls/self-signed");
    let name = format!("{host}/{repo}:1");
    let image = image(23);
    let certs = certs_dir();

    let hoistd = secure_hoistd(certs.path());
    let out = push(&DockerCli::new(&hoistd.socket()), &name, &image);
    assert_failed_with(
        &out,
        &[&host, "self-signed CA certificate that is not trusted"],
    );
    drop(hoistd);

    place(certs.path(), &host, "ca.crt", &own.cert_pem);
    let hoistd = secure_hoistd(certs.path());
    push(&DockerCli::new(&hoistd.socket()), &name, &image)
        .assert_success("push to a registry whose certificate is in certs.d");
    assert_registry_has_image(&registry, &repo, "1", &image);
}

#[test]
fn an_untrusted_certificate_fails_push_and_login_clearly() {
    let ca = TestCa::new("a CA nobody trusts");
    let registry = TestRegistry::start_with_tls(
        RegistryOptions::default(),
        RegistryTls::server(ca.issue_server(LOOPBACK)),
    );
    let host = registry.host();
    let certs = certs_dir();
    let hoistd = secure_hoistd(certs.path());
    let cli = DockerCli::new(&hoistd.socket());
    let where_to_put_it = format!("{}/ca.crt", certs.path().join(&host).display());

    let out = push(
        &cli,
        &format!("{host}/{}:1", unique_repo("tls/untrusted")),
        &image(24),
    );
    assert_failed_with(
        &out,
        &[
            &host,
            "certificate signed by unknown authority",
            &where_to_put_it,
        ],
    );
    let out = docker_login(&cli, &host);
    assert_failed_with(
        &out,
        &[
            &host,
            "certificate signed by unknown authority",
            &where_to_put_it,
        ],
    );
}

#[test]
fn an_insecure_registrys_token_server_is_not_verified_either() {
    // Registry and token server both have certificates nobody trusts; only the registry is
    // listed as insecure. dockerd fetches tokens through the registry's transport, so the
    // setting carries over to the token server.
    let ca = TestCa::new("a CA nobody trusts");
    let tokens = TokenServer::start(TokenServerOptions {
        tls: Some(ca.issue_server(LOOPBACK)),
        ..TokenServerOptions::default()
    });
    tokens.add_user(USER, PASSWORD, &[("*", &["pull", "push"])]);
    let registry = TestRegistry::start_with_tls(
        RegistryOptions {
            auth: tokens.registry_auth(),
        },
        RegistryTls::server(ca.issue_server(LOOPBACK)),
    );
    let host = registry.host();
    assert!(tokens.realm().starts_with("https://"));
    let certs = certs_dir();
    let hoistd = start_hoistd_with(json!({
        "insecure-loopback": false,
        "certs-dir": certs.path(),
        "insecure-registries": [host],
    }));
    let cli = DockerCli::new(&hoistd.socket());
    docker_login(&cli, &host).assert_success("login to an insecure token registry");
    let repo = unique_repo("tls/insecure-token");
    push(&cli, &format!("{host}/{repo}:1"), &image(25))
        .assert_success("push to an insecure token registry");
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.status == 200 && r.scopes.iter().any(|s| s.contains(&repo))),
        "the token came from the HTTPS token server"
    );
}

#[test]
fn a_secure_registrys_certs_d_applies_to_its_token_server() {
    // The token server's certificate comes from the registry's CA, which is only in the
    // registry's certs.d directory.
    let ca = TestCa::new("hoist test registry CA");
    let tokens = TokenServer::start(TokenServerOptions {
        tls: Some(ca.issue_server(LOOPBACK)),
        ..TokenServerOptions::default()
    });
    tokens.add_user(USER, PASSWORD, &[("*", &["pull", "push"])]);
    let registry = TestRegistry::start_with_tls(
        RegistryOptions {
            auth: tokens.registry_auth(),
        },
        RegistryTls::server(ca.issue_server(LOOPBACK)),
    );
    let host = registry.host();
    let certs = certs_dir();
    place(certs.path(), &host, "ca.crt", &ca.cert_pem());
    let hoistd = secure_hoistd(certs.path());
    let cli = DockerCli::new(&hoistd.socket()).with_auth(&host, USER, PASSWORD);
    let repo = unique_repo("tls/token");
    push(&cli, &format!("{host}/{repo}:1"), &image(26)).assert_success("push");
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.status == 200 && r.user.as_deref() == Some(USER)),
        "the token came from the HTTPS token server"
    );
}
