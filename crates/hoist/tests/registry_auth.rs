//! Registry authentication with the real docker CLI against real `docker-registry` instances:
//! htpasswd Basic, token auth through our test token server (short-lived ES256 JWTs, per-user
//! scopes, refresh tokens), `docker login` then `docker push`, and the failures users meet.

mod push_support;

use std::sync::OnceLock;
use std::time::Duration;

use hoist_testkit::archive::ArchiveFormat;
use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Flavor, Image, ImageBuilder, LayerSpec};
use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule};
use hoist_testkit::registry::{RegistryAuth, RegistryOptions, TestRegistry};
use hoist_testkit::token_server::{TokenServer, TokenServerOptions};
use push_support::*;
use serde_json::json;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse?>";
/// May pull everything but push nothing.
const READER: &str = "rita";
const READER_PASSWORD: &str = "reads-only";

fn image(seed: u64) -> Image {
    ImageBuilder::new(Flavor::Docker)
        .seed(seed)
        .layers([LayerSpec::single(40_000), LayerSpec::single(6_000)])
        .build()
}

/// A token server with the test users, and a registry trusting it.
struct TokenRegistry {
    tokens: TokenServer,
    registry: TestRegistry,
}

impl TokenRegistry {
    fn start(options: TokenServerOptions) -> TokenRegistry {
        let tokens = TokenServer::start(options);
        tokens.add_user(USER, PASSWORD, &[("*", &["pull", "push"])]);
        tokens.add_user(READER, READER_PASSWORD, &[("*", &["pull"])]);
        let registry = TestRegistry::start(RegistryOptions {
            auth: tokens.registry_auth(),
        });
        TokenRegistry { tokens, registry }
    }

    /// The manifest digest under `repo:tag`, read with a token of our own.
    fn manifest_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let token = self.tokens.issue("harness", &[(repo, &["pull"])]);
        let response = self
            .registry
            .client()
            .head(format!("{}/v2/{repo}/manifests/{tag}", self.registry.url()))
            .header("Accept", hoist_testkit::registry::ALL_MANIFEST_TYPES)
            .bearer_auth(token)
            .send()
            .expect("HEAD manifest");
        (response.status() == 200).then(|| {
            response.headers()["docker-content-digest"]
                .to_str()
                .expect("digest header")
                .to_owned()
        })
    }
}

/// One token registry with tokens of a minute, shared by the tests that do not time tokens.
fn shared_tokens() -> &'static TokenRegistry {
    static SHARED: OnceLock<TokenRegistry> = OnceLock::new();
    SHARED.get_or_init(|| TokenRegistry::start(TokenServerOptions::default()))
}

fn docker_login(
    cli: &DockerCli,
    host: &str,
    user: &str,
    password: &str,
) -> hoist_testkit::docker::CliOutput {
    cli.run_with_stdin(
        &["login", "--username", user, "--password-stdin", host],
        password.as_bytes().to_vec(),
    )
}

/// The CLI's stored entry for `host` in its config.json.
fn stored_auth(cli: &DockerCli, host: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(cli.config_dir().join("config.json")).expect("config.json");
    let config: serde_json::Value = serde_json::from_str(&text).expect("config.json is JSON");
    config["auths"][host].clone()
}

fn assert_failed_with(out: &hoist_testkit::docker::CliOutput, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains(needle),
        "expected {needle:?} in:\n{out}"
    );
}

#[test]
fn htpasswd_registry_docker_login_then_push() {
    let registry = TestRegistry::start(RegistryOptions {
        auth: RegistryAuth::Htpasswd(vec![(USER.into(), PASSWORD.into())]),
    });
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let host = registry.host();

    let out = docker_login(&cli, &host, USER, "wrong");
    assert_failed_with(&out, "unauthorized: authentication required");
    assert!(out.stderr.contains(&format!("{host}/v2/")), "{out}");

    docker_login(&cli, &host, USER, PASSWORD).assert_success("docker login");
    let stored = stored_auth(&cli, &host);
    assert!(stored["auth"].is_string(), "{stored}");
    assert_eq!(
        stored.get("identitytoken"),
        None,
        "Basic registries give no identity token"
    );

    let repo = unique_repo("auth/basic-login");
    let name = format!("{host}/{repo}:1");
    let image = image(11);
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    cli.run(&["push", &name]).assert_success("push after login");
    assert!(
        !hoistd.log().contains(PASSWORD),
        "credentials must never reach the log"
    );
}

#[test]
fn token_auth_push_with_stored_password_asks_for_the_push_scope() {
    let reg = shared_tokens();
    let hoistd = start_hoistd();
    let host = reg.registry.host();
    let cli = DockerCli::new(&hoistd.socket()).with_auth(&host, USER, PASSWORD);
    let repo = unique_repo("auth/token-push");
    let name = format!("{host}/{repo}:1");
    let image = image(12);
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);

    cli.run(&["push", &name])
        .assert_success("push with token auth");
    assert_eq!(
        reg.manifest_digest(&repo, "1").as_deref(),
        Some(image.digest())
    );
    let asked: Vec<_> = reg
        .tokens
        .requests()
        .into_iter()
        .filter(|r| r.scopes.iter().any(|s| s.contains(&repo)))
        .collect();
    assert!(!asked.is_empty(), "no token asked for {repo}");
    for request in &asked {
        assert_eq!(request.method, "GET");
        assert_eq!(request.user.as_deref(), Some(USER));
        assert_eq!(request.service.as_deref(), Some(reg.tokens.service()));
        assert_eq!(request.scopes[0], format!("repository:{repo}:pull,push"));
        assert!(!request.offline_token, "a push needs no refresh token");
    }
    let tokens = hoistd.log();
    assert!(
        !tokens.contains(PASSWORD) && !tokens.contains("eyJ"),
        "no secret may be logged"
    );
}

#[test]
fn docker_login_keeps_an_identity_token_and_push_exchanges_it() {
    let reg = shared_tokens();
    let hoistd = start_hoistd();
    let host = reg.registry.host();
    let cli = DockerCli::new(&hoistd.socket());

    let out = docker_login(&cli, &host, USER, PASSWORD);
    out.assert_success("docker login");
    assert!(out.stdout.contains("Login Succeeded"), "{out}");
    let stored = stored_auth(&cli, &host);
    let identity = stored["identitytoken"]
        .as_str()
        .expect("identitytoken stored")
        .to_owned();
    assert!(!identity.is_empty());
    assert!(
        !stored.to_string().contains(PASSWORD),
        "the password is not kept: {stored}"
    );
    let logins: Vec<_> = reg
        .tokens
        .requests()
        .into_iter()
        .filter(|r| r.offline_token)
        .collect();
    assert!(
        logins.iter().any(|r| r.method == "GET"
            && r.client_id.as_deref() == Some("docker")
            && r.user.as_deref() == Some(USER)
            && r.status == 200),
        "login asks for an offline token as dockerd does: {logins:#?}"
    );

    let repo = unique_repo("auth/identity");
    let name = format!("{host}/{repo}:1");
    let image = image(13);
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    cli.run(&["push", &name])
        .assert_success("push with the identity token");
    assert_eq!(
        reg.manifest_digest(&repo, "1").as_deref(),
        Some(image.digest())
    );
    let for_push: Vec<_> = reg
        .tokens
        .requests()
        .into_iter()
        .filter(|r| r.scopes.iter().any(|s| s.contains(&repo)))
        .collect();
    assert!(!for_push.is_empty());
    for request in &for_push {
        assert_eq!(request.method, "POST", "{request:?}");
        assert_eq!(request.grant_type.as_deref(), Some("refresh_token"));
        // Refresh tokens are bound to the client they were issued to.
        assert_eq!(request.client_id.as_deref(), Some("docker"));
        assert_eq!(request.user.as_deref(), Some(USER));
        assert_eq!(request.status, 200);
    }

    // A login with the identity token alone (what the CLI sends once it has one) succeeds.
    let r = hoistd.request(
        "POST",
        "/v1.50/auth",
        &[("Content-Type", "application/json")],
        json!({"identitytoken": identity, "serveraddress": format!("http://{host}")})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(body["Status"], "Login Succeeded");
    assert_eq!(body["IdentityToken"], identity.as_str());
    assert!(
        !hoistd.log().contains(&identity),
        "identity tokens must never reach the log"
    );
}

#[test]
fn a_registry_token_is_sent_as_it_is() {
    let reg = shared_tokens();
    let hoistd = start_hoistd();
    let host = reg.registry.host();
    let repo = unique_repo("auth/registrytoken");
    let image = image(18);
    let cli = DockerCli::new(&hoistd.socket());
    load_image(
        &cli,
        &image,
        &[&format!("{host}/{repo}:1")],
        ArchiveFormat::DockerLegacy,
    );
    // A bearer token obtained elsewhere (`registrytoken`): used as is, never exchanged.
    let token = reg.tokens.issue(USER, &[(&repo, &["pull", "push"])]);
    let header = base64url(&json!({"registrytoken": token, "serveraddress": host}));
    let r = hoistd.request(
        "POST",
        &format!("/v1.50/images/{host}/{repo}/push?tag=1"),
        &[("X-Registry-Auth", &header)],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(
        messages(&r.body)
            .iter()
            .all(|m| m.get("errorDetail").is_none()),
        "{}",
        r.text()
    );
    assert_eq!(
        reg.manifest_digest(&repo, "1").as_deref(),
        Some(image.digest())
    );
    assert!(
        reg.tokens
            .requests()
            .iter()
            .all(|r| !r.scopes.iter().any(|s| s.contains(&repo))),
        "no token may be asked for with a registry token"
    );
}

#[test]
fn wrong_password_and_missing_scope_fail_clearly() {
    let reg = shared_tokens();
    let hoistd = start_hoistd();
    let host = reg.registry.host();
    let repo = unique_repo("auth/refused");
    let name = format!("{host}/{repo}:1");
    let image = image(14);

    let cli = DockerCli::new(&hoistd.socket());
    let out = docker_login(&cli, &host, USER, "wrong");
    assert_failed_with(&out, "unauthorized: incorrect username or password");
    assert!(out.stderr.contains(&format!("{host}/v2/")), "{out}");
    // On the wire: 401 with the token server's message.
    let r = hoistd.request(
        "POST",
        "/v1.50/auth",
        &[("Content-Type", "application/json")],
        json!({"username": USER, "password": "wrong", "serveraddress": host})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("unauthorized: incorrect username or password")),
        "{body}"
    );

    let wrong = DockerCli::new(&hoistd.socket()).with_auth(&host, USER, "wrong");
    load_image(&wrong, &image, &[&name], ArchiveFormat::DockerLegacy);
    let out = wrong.run(&["push", &name]);
    assert_failed_with(&out, "unauthorized: incorrect username or password");

    // The reader logs in fine but may not push: the token server grants pull only and the
    // registry refuses the upload.
    let reader = DockerCli::new(&hoistd.socket());
    docker_login(&reader, &host, READER, READER_PASSWORD).assert_success("reader login");
    let out = reader.run(&["push", &name]);
    assert_failed_with(&out, "denied: requested access to the resource is denied");
    // The registry names the scope it wanted (its actions in either order: Go map order).
    assert!(
        out.stderr.contains("insufficient_scope")
            && out.stderr.contains(&format!("repository:{repo}:")),
        "{out}"
    );
    assert_eq!(reg.manifest_digest(&repo, "1"), None);
    assert!(!hoistd.log().contains(READER_PASSWORD));
}

#[test]
fn a_push_that_outlasts_its_tokens_renews_them_in_time() {
    // Tokens live 2 s; the push takes several: three layers uploaded one at a time through a
    // proxy that slows every upload body to about 1.5 s.
    let reg = TokenRegistry::start(TokenServerOptions {
        expires_in: Duration::from_secs(2),
        ..TokenServerOptions::default()
    });
    let proxy = FaultProxy::in_front_of(&reg.registry);
    proxy.add_rule(FaultRule::new(
        "PUT",
        "/blobs/uploads/",
        FaultAction::SlowBody {
            bytes_per_second: 20_000,
        },
    ));
    let hoistd = start_hoistd_with(json!({"max-concurrent-uploads": 1}));
    let cli = DockerCli::new(&hoistd.socket()).with_auth(&proxy.host(), USER, PASSWORD);
    let image = ImageBuilder::new(Flavor::Docker)
        .seed(15)
        .layers([
            LayerSpec::single(30_000),
            LayerSpec::single(29_000),
            LayerSpec::single(28_000),
        ])
        .build();
    let repo = unique_repo("auth/long");
    let name = format!("{}/{repo}:1", proxy.host());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);

    let started = std::time::Instant::now();
    cli.run(&["push", &name])
        .assert_success("push outlasting its tokens");
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(3),
        "the push must outlast its tokens: {took:?}"
    );
    assert_eq!(
        reg.manifest_digest(&repo, "1").as_deref(),
        Some(image.digest())
    );
    let fetched = reg
        .tokens
        .requests()
        .iter()
        .filter(|r| r.status == 200 && r.scopes.iter().any(|s| s.contains(&repo)))
        .count();
    assert!(fetched >= 2, "tokens must have been renewed, got {fetched}");
    // Renewed before they expired: the registry never saw an expired token.
    assert!(
        !reg.registry.log().contains("invalid token"),
        "a request carried an expired token; registry log:\n{}",
        reg.registry.log()
    );
}

#[test]
fn a_token_refused_before_its_time_is_replaced_once() {
    // The token server promises 30 s but its tokens die after 2 s (a revocation, or clocks
    // apart): hoist's cached token is refused, and each refused request is retried once with a
    // fresh one.
    let reg = TokenRegistry::start(TokenServerOptions {
        expires_in: Duration::from_secs(30),
        real_lifetime: Some(Duration::from_secs(2)),
        ..TokenServerOptions::default()
    });
    let hoistd = start_hoistd();
    let host = reg.registry.host();
    let cli = DockerCli::new(&hoistd.socket()).with_auth(&host, USER, PASSWORD);
    let repo = unique_repo("auth/revoked");
    let image = image(16);
    let first = format!("{host}/{repo}:1");
    let second = format!("{host}/{repo}:2");
    load_image(
        &cli,
        &image,
        &[&first, &second],
        ArchiveFormat::DockerLegacy,
    );
    cli.run(&["push", &first]).assert_success("first push");
    let issued = reg.tokens.tokens_issued();

    std::thread::sleep(Duration::from_millis(3_500));
    cli.run(&["push", &second])
        .assert_success("push with a cached token the registry now refuses");
    assert_eq!(
        reg.manifest_digest(&repo, "2").as_deref(),
        Some(image.digest())
    );
    assert!(
        reg.registry.log().contains("invalid token"),
        "the cached token was to be refused once"
    );
    assert!(
        reg.tokens.tokens_issued() > issued,
        "a fresh token was fetched"
    );
}

#[test]
fn credentials_for_another_registry_never_reach_this_ones_token_server() {
    let reg = shared_tokens();
    let hoistd = start_hoistd();
    let host = reg.registry.host();
    let repo = unique_repo("auth/elsewhere");
    let cli = DockerCli::new(&hoistd.socket());
    load_image(
        &cli,
        &image(17),
        &[&format!("{host}/{repo}:1")],
        ArchiveFormat::DockerLegacy,
    );
    // Right password, but given for another registry: the push goes anonymously.
    let header = base64url(
        &json!({"username": USER, "password": PASSWORD, "serveraddress": "registry.example:5000"}),
    );
    let r = hoistd.request(
        "POST",
        &format!("/v1.50/images/{host}/{repo}/push?tag=1"),
        &[("X-Registry-Auth", &header)],
        b"",
    );
    assert_eq!(r.status, 200);
    let last = messages(&r.body).pop().expect("a message");
    assert!(last["errorDetail"]["message"].is_string(), "{}", r.text());
    let asked: Vec<_> = reg
        .tokens
        .requests()
        .into_iter()
        .filter(|r| r.scopes.iter().any(|s| s.contains(&repo)))
        .collect();
    assert!(!asked.is_empty(), "an anonymous token is still asked for");
    for request in &asked {
        assert!(!request.authorization, "credentials were sent: {request:?}");
    }
    assert_eq!(reg.manifest_digest(&repo, "1"), None);
}
