//! The fault matrix: each fault a registry, a network or a machine can throw at hoist, crossed
//! with push, pull and load. Every cell ends either correct (the registry's bytes or the
//! store's content checked against the generator) or with an error naming its cause; the store
//! is consistent afterwards and the daemon keeps serving a follow-up operation.
//!
//! Each cell is its own test and checks its outcome against [`CELLS`], the one list the table
//! printed by `the_matrix_table` (and docs/reliability.md's "Fault matrix") is made from.
//! Faults are picked to fail once or twice, so that the real backoff (1, 2, 4, 8 s) stays short.

mod foundation_support;
mod push_support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::docker::{CliOutput, DockerCli};
use hoist_testkit::hoistd::Hoistd;
use hoist_testkit::image::{Flavor, Image, ImageBuilder};
use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule};
use hoist_testkit::registry::{RegistryOptions, TestRegistry};
use hoist_testkit::token_server::{TokenServer, TokenServerOptions};
use push_support::{assert_registry_has_image, load_image, start_hoistd, unique_repo};
use serde_json::json;

// ---- the matrix ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Push,
    Pull,
    Load,
}

const OPS: [Op; 3] = [Op::Push, Op::Pull, Op::Load];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Push => "push",
            Op::Pull => "pull",
            Op::Load => "load",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    ResetMidBody,
    ResetBeforeResponse,
    ServerError,
    TooManyRequests,
    Stall,
    RegistryRestart,
    TokenExpiry,
    DiskFull,
    Kill9,
}

const FAULTS: [Fault; 9] = [
    Fault::ResetMidBody,
    Fault::ResetBeforeResponse,
    Fault::ServerError,
    Fault::TooManyRequests,
    Fault::Stall,
    Fault::RegistryRestart,
    Fault::TokenExpiry,
    Fault::DiskFull,
    Fault::Kill9,
];

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::ResetMidBody => "reset mid-body",
            Fault::ResetBeforeResponse => "reset before the response",
            Fault::ServerError => "503",
            Fault::TooManyRequests => "429 with Retry-After: 1",
            Fault::Stall => "stall",
            Fault::RegistryRestart => "registry restart",
            Fault::TokenExpiry => "token expiry",
            Fault::DiskFull => "disk full",
            Fault::Kill9 => "kill -9 of hoistd",
        }
    }
}

/// One cell: the outcome its test asserts.
struct Cell {
    fault: Fault,
    op: Op,
    outcome: &'static str,
}

const NOT_APPLICABLE: &str = "n/a";

/// Every cell's outcome. `ok (retried N)`: the operation succeeded after N retries of the
/// faulted transfer; `error: …`: it failed with a message containing the text after `error: `.
const CELLS: &[Cell] = &[
    cell(Fault::ResetMidBody, Op::Push, "ok (retried 1)"),
    cell(Fault::ResetMidBody, Op::Pull, "ok (retried 1)"),
    cell(
        Fault::ResetMidBody,
        Op::Load,
        "error: reading the archive from the client",
    ),
    cell(Fault::ResetBeforeResponse, Op::Push, "ok (retried 1)"),
    cell(Fault::ResetBeforeResponse, Op::Pull, "ok (retried 1)"),
    cell(Fault::ResetBeforeResponse, Op::Load, NOT_APPLICABLE),
    cell(Fault::ServerError, Op::Push, "ok (retried 1)"),
    cell(Fault::ServerError, Op::Pull, "ok (retried 1)"),
    cell(Fault::ServerError, Op::Load, NOT_APPLICABLE),
    cell(Fault::TooManyRequests, Op::Push, "ok (retried 1)"),
    cell(Fault::TooManyRequests, Op::Pull, "ok (retried 1)"),
    cell(Fault::TooManyRequests, Op::Load, NOT_APPLICABLE),
    cell(Fault::Stall, Op::Push, "ok (retried 1)"),
    cell(Fault::Stall, Op::Pull, "ok (retried 1)"),
    cell(
        Fault::Stall,
        Op::Load,
        "error: reading the archive from the client",
    ),
    cell(Fault::RegistryRestart, Op::Push, "ok (retried 2)"),
    cell(Fault::RegistryRestart, Op::Pull, "ok (retried 2)"),
    cell(Fault::RegistryRestart, Op::Load, NOT_APPLICABLE),
    cell(Fault::TokenExpiry, Op::Push, "ok (token renewed)"),
    cell(Fault::TokenExpiry, Op::Pull, "ok (token renewed)"),
    cell(Fault::TokenExpiry, Op::Load, NOT_APPLICABLE),
    cell(Fault::DiskFull, Op::Push, "ok"),
    cell(Fault::DiskFull, Op::Pull, "error: not enough free space in"),
    cell(Fault::DiskFull, Op::Load, "error: not enough free space in"),
    cell(Fault::Kill9, Op::Push, "error: EOF"),
    cell(Fault::Kill9, Op::Pull, "error: EOF"),
    cell(Fault::Kill9, Op::Load, "error: connection closed"),
];

const fn cell(fault: Fault, op: Op, outcome: &'static str) -> Cell {
    Cell { fault, op, outcome }
}

fn expected(fault: Fault, op: Op) -> &'static str {
    CELLS
        .iter()
        .find(|c| c.fault == fault && c.op == op)
        .map(|c| c.outcome)
        .unwrap_or_else(|| panic!("no cell for {fault:?} x {op:?}"))
}

/// The cell's outcome is the one the matrix lists. An `error: ` cell passes when `message` (the
/// whole error the client saw) contains the listed cause.
fn assert_cell(fault: Fault, op: Op, outcome: Outcome) {
    let want = expected(fault, op);
    let shown = match &outcome {
        Outcome::Ok => "ok".to_owned(),
        Outcome::Retried(n) => format!("ok (retried {n})"),
        Outcome::TokenRenewed => "ok (token renewed)".to_owned(),
        Outcome::Failed(message) => match want.strip_prefix("error: ") {
            Some(cause) if message.contains(cause) => want.to_owned(),
            _ => format!("error: {message}"),
        },
    };
    match &outcome {
        Outcome::Failed(message) => println!(
            "fault matrix: {} x {}: {shown}\n    the whole message: {message}",
            fault.name(),
            op.name()
        ),
        _ => println!("fault matrix: {} x {}: {shown}", fault.name(), op.name()),
    }
    assert_eq!(shown, want, "{} x {}", fault.name(), op.name());
}

enum Outcome {
    Ok,
    Retried(usize),
    TokenRenewed,
    Failed(String),
}

/// The matrix as a Markdown table, as docs/reliability.md shows it.
fn matrix_table() -> String {
    let mut table = String::from("| fault | push | pull | load |\n|---|---|---|---|\n");
    for fault in FAULTS {
        let row: Vec<&str> = OPS.iter().map(|&op| expected(fault, op)).collect();
        table.push_str(&format!("| {} | {} |\n", fault.name(), row.join(" | ")));
    }
    table
}

#[test]
fn the_matrix_table() {
    assert_eq!(CELLS.len(), FAULTS.len() * OPS.len(), "one cell per pair");
    println!("{}", matrix_table());
    // Load reads nothing from a registry: only the local faults apply to it.
    for fault in FAULTS {
        let local = matches!(
            fault,
            Fault::ResetMidBody | Fault::Stall | Fault::DiskFull | Fault::Kill9
        );
        assert_eq!(
            expected(fault, Op::Load) == NOT_APPLICABLE,
            !local,
            "{fault:?}"
        );
    }
}

// ---- store consistency ----

/// The store is consistent: nothing is left in `<data-root>/ingest` (a failed transfer's
/// temporary files go within a few seconds), every image `docker images -a` lists inspects
/// fine, and `hoistd check` - run with the daemon stopped, as it must be - finds no problem in
/// the data root (every blob hashes to its name; every record's content is there and parses).
/// The daemon is started again on the same data root afterwards.
fn assert_store_consistent(daemon: &mut Hoistd) {
    let data_root = daemon.data_root();
    let ingest = data_root.join("ingest");
    wait_until("ingest/ to be empty", Duration::from_secs(10), || {
        std::fs::read_dir(&ingest).map_or(0, |d| d.count()) == 0
    });
    let cli = DockerCli::new(&daemon.socket());
    let listed = cli.run(&["images", "-a", "-q", "--no-trunc"]);
    listed.assert_success("docker images");
    for id in listed.stdout.lines().filter(|l| !l.is_empty()) {
        let inspected = cli.run(&["image", "inspect", "--format", "{{.Id}}", id]);
        inspected.assert_success(&format!("docker image inspect {id}"));
        assert_eq!(inspected.stdout.trim(), id, "inspect of a listed image");
    }
    daemon.stop();
    daemon.assert_data_root_checks_clean();
    daemon.restart();
}

/// Polls `condition` every 20 ms; panics after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Retries hoistd logged for the transfer of `digest` (one line per failed attempt it retried).
fn retries(daemon: &Hoistd, digest: &str) -> usize {
    daemon
        .log()
        .lines()
        .filter(|l| l.contains("failed; retrying") && l.contains(digest))
        .count()
}

fn hoistd_with(config: serde_json::Value) -> Hoistd {
    push_support::start_hoistd_with(config)
}

fn image(flavor: Flavor, seed: u64, sizes: &[u64]) -> Image {
    ImageBuilder::gzip_layers(flavor, seed, sizes)
}

/// The error line the CLI printed (stderr), which must have failed.
fn failure(out: &CliOutput) -> String {
    assert!(!out.success(), "expected a failure:\n{out}");
    out.stderr.trim().to_owned()
}

// ---- push ----

/// A push through a proxy in front of `registry`: a generated image loaded as
/// `<proxy>/<repo>:1`, its first layer the one the faults aim at.
struct Push<'r> {
    registry: &'r TestRegistry,
    proxy: FaultProxy,
    daemon: Hoistd,
    cli: DockerCli,
    image: Image,
    repo: String,
    name: String,
}

impl<'r> Push<'r> {
    fn new(registry: &'r TestRegistry, seed: u64, config: serde_json::Value) -> Push<'r> {
        Push::with_daemon(registry, seed, hoistd_with(config))
    }

    fn with_daemon(registry: &'r TestRegistry, seed: u64, daemon: Hoistd) -> Push<'r> {
        let proxy = FaultProxy::in_front_of(registry);
        let cli = DockerCli::new(&daemon.socket());
        let image = image(Flavor::Docker, seed, &[400_000, 30_000]);
        let repo = unique_repo("matrix/push");
        let name = format!("{}/{repo}:1", proxy.host());
        load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
        Push {
            registry,
            proxy,
            daemon,
            cli,
            image,
            repo,
            name,
        }
    }

    fn layer(&self) -> String {
        self.image.layers[0].blob.digest.clone()
    }

    /// A rule on the final PUT of the faulted layer's upload.
    fn on_layer_put(&self, action: FaultAction) -> FaultRule {
        FaultRule::new("PUT", "/blobs/uploads/", action).query(&self.layer().replace(':', "%3A"))
    }

    fn push(&self) -> CliOutput {
        self.cli.run(&["push", &self.name])
    }

    /// The push succeeded, the registry holds the image byte for byte, the store is consistent
    /// and the daemon pushes again: the outcome is the retries of the faulted layer.
    fn assert_pushed(&mut self, out: &CliOutput) -> Outcome {
        let outcome = self.assert_pushed_only(out);
        self.assert_serving();
        outcome
    }

    /// The push succeeded and the registry holds the image byte for byte.
    fn assert_pushed_only(&self, out: &CliOutput) -> Outcome {
        out.assert_success("docker push");
        assert_registry_has_image(self.registry, &self.repo, "1", &self.image);
        match retries(&self.daemon, &self.layer()) {
            0 => Outcome::Ok,
            n => Outcome::Retried(n),
        }
    }

    fn assert_serving(&mut self) {
        assert_store_consistent(&mut self.daemon);
        self.proxy.clear_rules();
        let again = format!("{}/{}:again", self.proxy.host(), self.repo);
        self.cli
            .run(&["tag", &self.name, &again])
            .assert_success("docker tag");
        self.cli
            .run(&["push", &again])
            .assert_success("the follow-up push");
        assert_registry_has_image(self.registry, &self.repo, "again", &self.image);
    }
}

#[test]
fn push_reset_mid_body() {
    let mut p = Push::new(TestRegistry::shared(), 1, json!({}));
    p.proxy.add_rule(
        p.on_layer_put(FaultAction::ResetAfterBodyBytes(100_000))
            .once(),
    );
    let out = p.push();
    assert_cell(Fault::ResetMidBody, Op::Push, p.assert_pushed(&out));
}

#[test]
fn push_reset_before_the_response() {
    let mut p = Push::new(TestRegistry::shared(), 2, json!({}));
    p.proxy
        .add_rule(p.on_layer_put(FaultAction::ResetBeforeResponse).once());
    let out = p.push();
    assert_cell(Fault::ResetBeforeResponse, Op::Push, p.assert_pushed(&out));
}

#[test]
fn push_server_error() {
    let mut p = Push::new(TestRegistry::shared(), 3, json!({}));
    p.proxy
        .add_rule(p.on_layer_put(FaultAction::status(503)).once());
    let out = p.push();
    assert_cell(Fault::ServerError, Op::Push, p.assert_pushed(&out));
}

#[test]
fn push_too_many_requests() {
    let mut p = Push::new(TestRegistry::shared(), 4, json!({}));
    p.proxy
        .add_rule(p.on_layer_put(FaultAction::too_many_requests(1)).once());
    let out = p.push();
    assert_cell(Fault::TooManyRequests, Op::Push, p.assert_pushed(&out));
}

#[test]
fn push_stall() {
    let mut p = Push::new(
        TestRegistry::shared(),
        5,
        json!({"upload-stall-timeout": 1}),
    );
    p.proxy
        .add_rule(p.on_layer_put(FaultAction::StallBody).once());
    let out = p.push();
    assert_cell(Fault::Stall, Op::Push, p.assert_pushed(&out));
}

/// How long the faulted request is held in the proxy: the registry is stopped meanwhile.
const REGISTRY_STOP_WINDOW: Duration = Duration::from_secs(2);

/// Stops `registry` while the faulted request waits in the proxy, keeps it down until hoistd
/// has retried the transfer of `digest` twice, then starts it again.
fn restart_registry_during(
    registry: &mut TestRegistry,
    proxy: &FaultProxy,
    daemon: &Hoistd,
    digest: &str,
) {
    proxy.wait_for(
        "the delayed request of the faulted blob",
        Duration::from_secs(30),
        |requests| {
            requests
                .iter()
                .any(|r| r.path.contains(&digest.replace(':', "%3A")) || r.path.ends_with(digest))
        },
    );
    registry.stop();
    wait_until(
        "two retries while the registry is down",
        Duration::from_secs(30),
        || retries(daemon, digest) >= 2,
    );
    registry.start_again();
}

#[test]
fn push_registry_restart() {
    let mut registry = TestRegistry::start(RegistryOptions::default());
    // The scenario borrows the registry, which the restart needs to itself: it is taken apart
    // meanwhile.
    let (daemon, proxy, cli, image, repo, name) = {
        let p = Push::new(&registry, 6, json!({}));
        p.proxy.add_rule(
            p.on_layer_put(FaultAction::Delay(REGISTRY_STOP_WINDOW))
                .once(),
        );
        (p.daemon, p.proxy, p.cli, p.image, p.repo, p.name)
    };
    let layer = image.layers[0].blob.digest.clone();
    let pushing = cli.spawn(&["push", &name]);
    restart_registry_during(&mut registry, &proxy, &daemon, &layer);
    let out = pushing.wait(Duration::from_secs(60));
    let mut p = Push {
        registry: &registry,
        proxy,
        daemon,
        cli,
        image,
        repo,
        name,
    };
    assert_cell(Fault::RegistryRestart, Op::Push, p.assert_pushed(&out));
}

const TOKEN_USER: &str = "matrix";
const TOKEN_PASSWORD: &str = "matrix-password";

/// A registry behind a token server whose tokens die after 1 s although clients are told 60 s
/// (a revocation, or clocks apart): an operation that outlasts its first token meets the
/// registry's refusal mid-way.
struct TokenRegistry {
    tokens: TokenServer,
    registry: TestRegistry,
}

fn token_registry() -> &'static TokenRegistry {
    static SHARED: OnceLock<TokenRegistry> = OnceLock::new();
    SHARED.get_or_init(|| {
        let tokens = TokenServer::start(TokenServerOptions {
            expires_in: Duration::from_secs(60),
            real_lifetime: Some(Duration::from_secs(1)),
            ..TokenServerOptions::default()
        });
        tokens.add_user(TOKEN_USER, TOKEN_PASSWORD, &[("*", &["pull", "push"])]);
        let registry = TestRegistry::start(RegistryOptions {
            auth: tokens.registry_auth(),
        });
        TokenRegistry { tokens, registry }
    })
}

/// The registry refused an expired token and hoist fetched a new one, which the operation
/// then went on with.
fn token_renewed(reg: &TokenRegistry, issued_before: usize) -> Outcome {
    assert!(
        reg.registry.log().contains("invalid token"),
        "the first token was to expire mid-way; registry log:\n{}",
        reg.registry.log()
    );
    assert!(reg.tokens.tokens_issued() > issued_before, "no new token");
    Outcome::TokenRenewed
}

#[test]
fn push_token_expiry() {
    let reg = token_registry();
    let daemon = start_hoistd();
    let p = Push::with_daemon(&reg.registry, 7, daemon);
    let cli =
        DockerCli::new(&p.daemon.socket()).with_auth(&p.proxy.host(), TOKEN_USER, TOKEN_PASSWORD);
    let mut p = Push { cli, ..p };
    // Held long enough for the token the upload started with to die.
    p.proxy.add_rule(
        p.on_layer_put(FaultAction::Delay(Duration::from_millis(2_500)))
            .once(),
    );
    let issued = reg.tokens.tokens_issued();
    let out = p.push();
    out.assert_success("docker push");
    let outcome = token_renewed(reg, issued);
    // Read back with a token of our own (the harness's reads are anonymous).
    let token = reg.tokens.issue("harness", &[(&p.repo, &["pull"])]);
    let manifest = reg
        .registry
        .client()
        .get(format!("{}/v2/{}/manifests/1", reg.registry.url(), p.repo))
        .header("Accept", hoist_testkit::registry::ALL_MANIFEST_TYPES)
        .bearer_auth(&token)
        .send()
        .expect("GET manifest");
    assert_eq!(manifest.status(), 200);
    assert_eq!(
        manifest.bytes().expect("manifest body").to_vec(),
        p.image.manifest_bytes()
    );
    for blob in p.image.blobs() {
        let got = reg
            .registry
            .client()
            .get(format!(
                "{}/v2/{}/blobs/{}",
                reg.registry.url(),
                p.repo,
                blob.digest
            ))
            .bearer_auth(&token)
            .send()
            .expect("GET blob");
        assert_eq!(got.status(), 200);
        assert_eq!(
            foundation_support::digest_of(&got.bytes().expect("blob body")),
            blob.digest
        );
    }
    assert_store_consistent(&mut p.daemon);
    p.proxy.clear_rules();
    p.push().assert_success("the follow-up push");
    assert_cell(Fault::TokenExpiry, Op::Push, outcome);
}

#[test]
fn push_disk_full() {
    let (tmpfs, daemon) = Tmpfs::over_data_root(start_hoistd(), "16m");
    let mut p = Push::with_daemon(TestRegistry::shared(), 8, daemon);
    let filler = tmpfs.fill();
    // A push reads the store; what it writes afterwards (where the blobs went) may fail.
    let out = p.push();
    let outcome = p.assert_pushed_only(&out);
    assert!(
        p.daemon.log().contains("No space left on device"),
        "the push's own writes were to meet the full disk"
    );
    assert_store_consistent(&mut p.daemon);
    // Once there is room again, the store takes writes again: a tag, then its push.
    drop(filler);
    p.assert_serving();
    assert_cell(Fault::DiskFull, Op::Push, outcome);
}

#[test]
fn push_kill9() {
    let p = Push::new(TestRegistry::shared(), 9, json!({}));
    p.proxy.add_rule(p.on_layer_put(FaultAction::SlowBody {
        bytes_per_second: 100_000,
    }));
    let pushing = p.cli.spawn(&["push", &p.name]);
    wait_until("the layer upload to flow", Duration::from_secs(30), || {
        p.proxy.upload_bytes() > 50_000
    });
    let mut p = p;
    p.daemon.kill9();
    let out = pushing.wait(Duration::from_secs(30));
    let message = failure(&out);
    p.daemon.restart();
    assert_store_consistent(&mut p.daemon);
    p.proxy.clear_rules();
    p.push().assert_success("the push after the restart");
    assert_registry_has_image(p.registry, &p.repo, "1", &p.image);
    assert_cell(Fault::Kill9, Op::Push, Outcome::Failed(message));
}

// ---- pull ----

/// A pull through a proxy in front of `registry`, which holds a generated OCI image as
/// `<repo>:1`; its first layer is the blob the faults aim at.
struct Pull<'r> {
    registry: &'r TestRegistry,
    proxy: FaultProxy,
    daemon: Hoistd,
    cli: DockerCli,
    image: Image,
    name: String,
}

impl<'r> Pull<'r> {
    fn new(registry: &'r TestRegistry, seed: u64, daemon: Hoistd) -> Pull<'r> {
        let image = image(Flavor::Oci, seed, &[400_000, 30_000]);
        let repo = unique_repo("matrix/pull");
        registry.push_image(&repo, "1", &image);
        Pull::of(registry, image, &repo, daemon)
    }

    fn of(registry: &'r TestRegistry, image: Image, repo: &str, daemon: Hoistd) -> Pull<'r> {
        let proxy = FaultProxy::in_front_of(registry);
        let cli = DockerCli::new(&daemon.socket());
        let name = format!("{}/{repo}:1", proxy.host());
        Pull {
            registry,
            proxy,
            daemon,
            cli,
            image,
            name,
        }
    }

    fn layer(&self) -> String {
        self.image.layers[0].blob.digest.clone()
    }

    fn on_layer_get(&self, action: FaultAction) -> FaultRule {
        FaultRule::new("GET", &format!("/blobs/{}", self.layer()), action)
    }

    fn pull(&self) -> CliOutput {
        self.cli.run(&["pull", &self.name])
    }

    /// The pull succeeded with the generator's image: its ID is the manifest digest and every
    /// blob of it is in the store; the store is consistent and the daemon pulls again.
    fn assert_pulled(&mut self, out: &CliOutput) -> Outcome {
        out.assert_success("docker pull");
        self.assert_has_image();
        let retried = retries(&self.daemon, &self.layer());
        self.assert_serving();
        Outcome::Retried(retried)
    }

    fn assert_has_image(&self) {
        let id = self
            .cli
            .run(&["image", "inspect", "--format", "{{.Id}}", &self.name]);
        id.assert_success("docker image inspect");
        assert_eq!(id.stdout.trim(), self.image.digest());
        let stored = foundation_support::stored_blobs(&self.daemon.data_root());
        for blob in self.image.contents() {
            assert!(
                stored.contains_key(blob.hex()),
                "{} not stored",
                blob.digest
            );
        }
    }

    /// A follow-up pull of another small image works.
    fn assert_serving(&mut self) {
        assert_store_consistent(&mut self.daemon);
        self.proxy.clear_rules();
        let other = image(Flavor::Oci, 1000 + self.image.layers[0].blob.size, &[5_000]);
        let repo = unique_repo("matrix/follow-up");
        self.registry.push_image(&repo, "1", &other);
        let name = format!("{}/{repo}:1", self.proxy.host());
        self.cli
            .run(&["pull", &name])
            .assert_success("the follow-up pull");
        let id = self
            .cli
            .run(&["image", "inspect", "--format", "{{.Id}}", &name]);
        assert_eq!(id.stdout.trim(), other.digest());
    }
}

#[test]
fn pull_reset_mid_body() {
    let mut p = Pull::new(TestRegistry::shared(), 11, start_hoistd());
    p.proxy.add_rule(
        p.on_layer_get(FaultAction::ResetAfterResponseBytes(100_000))
            .once(),
    );
    let out = p.pull();
    assert_cell(Fault::ResetMidBody, Op::Pull, p.assert_pulled(&out));
}

#[test]
fn pull_reset_before_the_response() {
    let mut p = Pull::new(TestRegistry::shared(), 12, start_hoistd());
    p.proxy
        .add_rule(p.on_layer_get(FaultAction::ResetBeforeResponse).once());
    let out = p.pull();
    assert_cell(Fault::ResetBeforeResponse, Op::Pull, p.assert_pulled(&out));
}

#[test]
fn pull_server_error() {
    let mut p = Pull::new(TestRegistry::shared(), 13, start_hoistd());
    p.proxy
        .add_rule(p.on_layer_get(FaultAction::status(503)).once());
    let out = p.pull();
    assert_cell(Fault::ServerError, Op::Pull, p.assert_pulled(&out));
}

#[test]
fn pull_too_many_requests() {
    let mut p = Pull::new(TestRegistry::shared(), 14, start_hoistd());
    p.proxy
        .add_rule(p.on_layer_get(FaultAction::too_many_requests(1)).once());
    let out = p.pull();
    assert_cell(Fault::TooManyRequests, Op::Pull, p.assert_pulled(&out));
}

/// hoistd's download stall limit (not configurable): the stall cell waits it out once.
const DOWNLOAD_STALL_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn pull_stall() {
    let mut p = Pull::new(TestRegistry::shared(), 15, start_hoistd());
    // The registry takes the request and never answers it.
    p.proxy.add_rule(
        p.on_layer_get(FaultAction::Delay(DOWNLOAD_STALL_TIMEOUT * 10))
            .once(),
    );
    let started = Instant::now();
    let out = p.pull();
    assert!(
        started.elapsed() >= DOWNLOAD_STALL_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert_cell(Fault::Stall, Op::Pull, p.assert_pulled(&out));
}

#[test]
fn pull_registry_restart() {
    let mut registry = TestRegistry::start(RegistryOptions::default());
    let image = image(Flavor::Oci, 16, &[400_000, 30_000]);
    let repo = unique_repo("matrix/pull");
    registry.push_image(&repo, "1", &image);
    // As for push: the scenario is taken apart while the registry restarts.
    let (proxy, daemon, cli, name) = {
        let p = Pull::of(&registry, image.clone(), &repo, start_hoistd());
        p.proxy.add_rule(
            p.on_layer_get(FaultAction::Delay(REGISTRY_STOP_WINDOW))
                .once(),
        );
        (p.proxy, p.daemon, p.cli, p.name)
    };
    let layer = image.layers[0].blob.digest.clone();
    let pulling = cli.spawn(&["pull", &name]);
    restart_registry_during(&mut registry, &proxy, &daemon, &layer);
    let out = pulling.wait(Duration::from_secs(60));
    let mut p = Pull {
        registry: &registry,
        proxy,
        daemon,
        cli,
        image,
        name,
    };
    assert_cell(Fault::RegistryRestart, Op::Pull, p.assert_pulled(&out));
}

#[test]
fn pull_token_expiry() {
    let reg = token_registry();
    // Put the image there with hoist itself (the harness's uploads are anonymous).
    let image = image(Flavor::Oci, 17, &[400_000, 30_000]);
    let repo = unique_repo("matrix/pull-token");
    {
        let pusher = start_hoistd();
        let cli = DockerCli::new(&pusher.socket()).with_auth(
            &reg.registry.host(),
            TOKEN_USER,
            TOKEN_PASSWORD,
        );
        let name = format!("{}/{repo}:1", reg.registry.host());
        load_image(&cli, &image, &[&name], ArchiveFormat::Oci);
        cli.run(&["push", &name]).assert_success("seeding push");
    }
    let p = Pull::of(&reg.registry, image, &repo, start_hoistd());
    let cli =
        DockerCli::new(&p.daemon.socket()).with_auth(&p.proxy.host(), TOKEN_USER, TOKEN_PASSWORD);
    let mut p = Pull { cli, ..p };
    p.proxy.add_rule(
        p.on_layer_get(FaultAction::Delay(Duration::from_millis(2_500)))
            .once(),
    );
    let issued = reg.tokens.tokens_issued();
    let out = p.pull();
    out.assert_success("docker pull");
    let outcome = token_renewed(reg, issued);
    p.assert_has_image();
    assert_store_consistent(&mut p.daemon);
    // A follow-up: the same image again, now up to date.
    p.proxy.clear_rules();
    let again = p.pull();
    again.assert_success("the follow-up pull");
    assert!(
        again.stdout.contains("Image is up to date"),
        "{}",
        again.stdout
    );
    assert_cell(Fault::TokenExpiry, Op::Pull, outcome);
}

#[test]
fn pull_disk_full() {
    let (_tmpfs, daemon) = Tmpfs::over_data_root(start_hoistd(), "4m");
    let registry = TestRegistry::shared();
    let big = image(Flavor::Oci, 18, &[6_000_000]);
    let repo = unique_repo("matrix/pull-big");
    registry.push_image(&repo, "1", &big);
    let mut p = Pull::of(registry, big, &repo, daemon);
    let out = p.pull();
    let message = failure(&out);
    let images = p.cli.run(&["images", "-aq"]);
    assert_eq!(
        images.stdout.trim(),
        "",
        "nothing of the failed pull is listed"
    );
    // The failed pull's room is given back: a small pull fits.
    p.assert_serving();
    assert_cell(Fault::DiskFull, Op::Pull, Outcome::Failed(message));
}

#[test]
fn pull_kill9() {
    let p = Pull::new(TestRegistry::shared(), 19, start_hoistd());
    p.proxy.add_rule(
        p.on_layer_get(FaultAction::Delay(Duration::from_secs(30)))
            .once(),
    );
    let pulling = p.cli.spawn(&["pull", &p.name]);
    let layer = p.layer();
    p.proxy
        .wait_for("the layer's GET", Duration::from_secs(30), |requests| {
            requests.iter().any(|r| r.path.ends_with(&layer))
        });
    let mut p = p;
    p.daemon.kill9();
    let out = pulling.wait(Duration::from_secs(30));
    let message = failure(&out);
    p.daemon.restart();
    assert_store_consistent(&mut p.daemon);
    p.proxy.clear_rules();
    p.pull().assert_success("the pull after the restart");
    p.assert_has_image();
    assert_cell(Fault::Kill9, Op::Pull, Outcome::Failed(message));
}

// ---- load ----

/// A generated OCI image (one 2 MB layer) as a `docker load` archive.
struct LoadArchive {
    image: Image,
    tag: String,
    bytes: Vec<u8>,
}

fn load_archive(seed: u64, layer_size: u64) -> LoadArchive {
    let image = image(Flavor::Oci, seed, &[layer_size]);
    let tag = format!("{}:1", unique_repo("matrix/load"));
    let scratch = foundation_support::Scratch::new();
    let path = scratch.archive(
        "image.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci).image(&image, &[&tag]),
    );
    let bytes = std::fs::read(&path).expect("read the archive");
    LoadArchive { image, tag, bytes }
}

/// A load whose client sent the request head and the first `sent` bytes of the archive.
fn start_raw_load(daemon: &Hoistd, archive: &LoadArchive, sent: usize) -> UnixStream {
    let mut stream = UnixStream::connect(daemon.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let head = format!(
        "POST /v1.50/images/load HTTP/1.1\r\nHost: api.moby.localhost\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        archive.bytes.len()
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    stream
        .write_all(&archive.bytes[..sent])
        .expect("send part of the archive");
    stream
}

/// Everything the daemon sends until it closes the connection.
fn read_answer(stream: &mut UnixStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The `errorDetail` message of a load's answer.
fn load_error(answer: &str) -> String {
    answer
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|m| m["errorDetail"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no error in the load's answer: {answer}"))
}

/// The daemon still loads: a small image goes in and inspects as the generator's.
fn assert_loads(daemon: &Hoistd) {
    let archive = load_archive(900, 10_000);
    let cli = DockerCli::new(&daemon.socket());
    let out = cli.run_with_stdin(&["load"], archive.bytes.clone());
    out.assert_success("the follow-up load");
    let id = cli.run(&["image", "inspect", "--format", "{{.Id}}", &archive.tag]);
    assert_eq!(id.stdout.trim(), archive.image.digest());
}

fn ingest_has_partial_file(daemon: &Hoistd) -> bool {
    std::fs::read_dir(daemon.data_root().join("ingest"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .any(|m| m.len() > 0)
        })
        .unwrap_or(false)
}

#[test]
fn load_reset_mid_body() {
    let mut daemon = start_hoistd();
    let archive = load_archive(21, 2_000_000);
    let mut stream = start_raw_load(&daemon, &archive, 1_000_000);
    // The client's side of the connection goes away mid-upload (a unix socket has no RST: the
    // daemon sees the body end early, as it would a reset).
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("close the sending side");
    let answer = read_answer(&mut stream);
    let message = load_error(&answer);
    assert_store_consistent(&mut daemon);
    let images = DockerCli::new(&daemon.socket()).run(&["images", "-aq"]);
    assert_eq!(
        images.stdout.trim(),
        "",
        "nothing of the cut load is listed"
    );
    assert_loads(&daemon);
    assert_cell(Fault::ResetMidBody, Op::Load, Outcome::Failed(message));
}

#[test]
fn load_stall() {
    let mut daemon = hoistd_with(json!({"api-limits": {"body-idle-timeout": 1}}));
    let archive = load_archive(22, 2_000_000);
    let mut stream = start_raw_load(&daemon, &archive, 1_000_000);
    // The client goes silent, its connection open.
    let answer = read_answer(&mut stream);
    let message = load_error(&answer);
    assert!(
        message.contains("timeout") || message.contains("timed out"),
        "{message}"
    );
    assert_store_consistent(&mut daemon);
    assert_loads(&daemon);
    assert_cell(Fault::Stall, Op::Load, Outcome::Failed(message));
}

#[test]
fn load_disk_full() {
    let (_tmpfs, mut daemon) = Tmpfs::over_data_root(start_hoistd(), "4m");
    let archive = load_archive(23, 6_000_000);
    let cli = DockerCli::new(&daemon.socket());
    let out = cli.run_with_stdin(&["load"], archive.bytes.clone());
    let message = failure(&out);
    let images = cli.run(&["images", "-aq"]);
    assert_eq!(
        images.stdout.trim(),
        "",
        "nothing of the failed load is listed"
    );
    assert_store_consistent(&mut daemon);
    assert_loads(&daemon);
    assert_cell(Fault::DiskFull, Op::Load, Outcome::Failed(message));
}

#[test]
fn load_kill9() {
    let mut daemon = start_hoistd();
    let archive = load_archive(24, 2_000_000);
    let mut stream = start_raw_load(&daemon, &archive, 1_000_000);
    wait_until(
        "the layer to reach ingest/",
        Duration::from_secs(30),
        || ingest_has_partial_file(&daemon),
    );
    daemon.kill9();
    let answer = read_answer(&mut stream);
    let message = if answer.is_empty() {
        "connection closed without an answer".to_owned()
    } else {
        answer
    };
    daemon.restart();
    assert_store_consistent(&mut daemon);
    let images = DockerCli::new(&daemon.socket()).run(&["images", "-aq"]);
    assert_eq!(
        images.stdout.trim(),
        "",
        "nothing of the killed load is listed"
    );
    assert_loads(&daemon);
    assert_cell(Fault::Kill9, Op::Load, Outcome::Failed(message));
}

// ---- disk full ----

/// A tmpfs of a given size mounted over a daemon's data root, unmounted when dropped. Failing
/// to mount fails the test: disk full is never skipped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Stops `daemon`, mounts the tmpfs over its (then empty) data root and starts it again.
    fn over_data_root(mut daemon: Hoistd, size: &str) -> (Tmpfs, Hoistd) {
        daemon.stop();
        let path = daemon.data_root();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs on {}: {status}",
            path.display()
        );
        let tmpfs = Tmpfs { path };
        // The daemon's temp dir cannot be removed while the tmpfs covers its data root, and a
        // test may drop the daemon first: it goes when the test binary exits.
        hoist_testkit::process::remove_at_exit(daemon.dir().to_owned());
        daemon.restart();
        (tmpfs, daemon)
    }

    /// Fills what is left of the tmpfs with one file, removed when the guard drops.
    fn fill(&self) -> Filler {
        let path = self.path.join("filler");
        let mut file = std::fs::File::create(&path).expect("create filler");
        for chunk in [vec![0u8; 64 * 1024], vec![0u8; 512]] {
            loop {
                match file.write(&chunk) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("fill the tmpfs: {e}"),
                }
            }
        }
        Filler { path }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a daemon still holding files there (a failing test) does not keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

struct Filler {
    path: PathBuf,
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
