//! Prometheus metrics and JSON logs, checked against what really happened: real docker CLI
//! pushes and pulls through the fault proxy to the real registry, scrapes of `/metrics` compared
//! with the generator's blob sizes and the faults injected, every scrape passed through
//! `promtool check metrics`, every log line parsed as JSON, and a debug-level run with registry
//! credentials searched for the secrets.

mod push_support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hoist_testkit::archive::ArchiveFormat;
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::{Hoistd, HoistdOptions};
use hoist_testkit::image::{Flavor, Image, ImageBuilder};
use hoist_testkit::process::{free_port, require_program};
use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule};
use hoist_testkit::registry::{RegistryAuth, RegistryOptions, TestRegistry};
use hoist_testkit::token_server::{TokenServer, TokenServerOptions};
use push_support::*;
use serde_json::Value;

const USER: &str = "metrics-user";
const PASSWORD: &str = "s3cret-Pa55word!";

fn image(seed: u64, sizes: &[u64]) -> Image {
    ImageBuilder::gzip_layers(Flavor::Docker, seed, sizes)
}

fn blob_bytes(image: &Image) -> u64 {
    image.blobs().map(|b| b.size).sum()
}

/// hoistd with metrics on a free loopback port and JSON logs, plus `config`.
struct Daemon {
    hoistd: Hoistd,
    metrics_url: String,
}

impl Daemon {
    fn start(config: Value) -> Daemon {
        let port = free_port();
        let hoistd = Hoistd::start(
            hoistd_bin(),
            HoistdOptions {
                config,
                args: vec![
                    "--metrics-addr".into(),
                    format!("127.0.0.1:{port}"),
                    "--log-format".into(),
                    "json".into(),
                ],
                ..HoistdOptions::default()
            },
        );
        Daemon {
            hoistd,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    /// One scrape in the Prometheus text format, checked by `promtool check metrics`.
    fn scrape(&self) -> Scrape {
        let response = hoist_testkit::http_client()
            .get(&self.metrics_url)
            .send()
            .expect("scrape /metrics");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("content type")
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = response.text().expect("scrape body");
        promtool_check(&text);
        Scrape::parse(&text)
    }

    /// Every log line so far, each parsed as one JSON object with `time`, `level` and `msg`.
    fn log_lines(&self) -> Vec<Value> {
        let log = self.hoistd.log();
        log.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
                for key in ["time", "level", "msg"] {
                    assert!(value[key].is_string(), "no {key} in {line}");
                }
                chrono_like_time(value["time"].as_str().unwrap_or_default(), line);
                value
            })
            .collect()
    }

    /// The summary lines with message `msg` whose reference contains `repo`.
    fn summaries(&self, msg: &str, repo: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["msg"] == msg && l["reference"].as_str().unwrap_or("").contains(repo))
            .collect()
    }
}

/// RFC 3339 with a `T` and a zone: `2026-12-03T07:33:12.123456789Z`.
fn chrono_like_time(time: &str, line: &str) {
    let ok = time.len() >= 20
        && time.as_bytes()[4] == b'-'
        && time.as_bytes()[10] == b'T'
        && (time.ends_with('Z') || time[19..].contains(['+', '-']));
    assert!(ok, "time {time:?} is not RFC 3339 in {line}");
}

fn promtool_check(text: &str) {
    let promtool = require_program(
        "promtool",
        "apt-get install prometheus (Debian's package ships promtool)",
    );
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed: {}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The samples of one scrape: name and labels → value.
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    text: String,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => (name.to_owned(), parse_labels(rest)),
            };
            samples.push((name, labels, value));
        }
        Scrape {
            samples,
            text: text.to_owned(),
        }
    }

    /// The sum over the series of `name` carrying every label of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    fn assert(&self, name: &str, labels: &[(&str, &str)], expected: f64) {
        assert_eq!(
            self.sum(name, labels),
            expected,
            "{name}{labels:?}\n--- scrape ---\n{}",
            self.text
        );
    }
}

/// `k="v",k2="v2"}` (quotes escaped with `\`), up to the closing brace.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label value of {key} in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(match chars.next() {
                    Some('n') => '\n',
                    Some(other) => other,
                    None => break,
                }),
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(key, value);
        match chars.next() {
            Some(',') => continue,
            _ => return labels,
        }
    }
}

/// Waits until `condition` holds on a scrape, scraping every 50 ms, for up to 30 s.
fn wait_for_scrape(daemon: &Daemon, what: &str, condition: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = daemon.scrape();
        if condition(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}:\n{}",
            scrape.text
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_push_through_faults_is_counted_as_it_happened() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let daemon = Daemon::start(serde_json::json!({}));
    let cli = DockerCli::new(&daemon.hoistd.socket());
    let image = image(901, &[400_000, 250_000, 120_000]);
    let repo = unique_repo("metrics/push");
    let name = format!("{}/{repo}:1", proxy.host());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    let host = proxy.host();
    let blobs = image.blobs().count() as f64;
    let bytes = blob_bytes(&image) as f64;

    // One 503 opening an upload session, one connection reset in the middle of a layer's body.
    let refused =
        proxy.add_rule(FaultRule::new("POST", "/blobs/uploads/", FaultAction::status(503)).once());
    let big = &image.layers[0].blob;
    let reset = proxy.add_rule(
        FaultRule::new(
            "PUT",
            "/blobs/uploads/",
            FaultAction::ResetAfterBodyBytes(100_000),
        )
        .query(&big.digest.replace(':', "%3A"))
        .once(),
    );
    cli.run(&["push", &name])
        .assert_success("push through faults");
    assert_eq!(proxy.rule_hits(refused), 1, "the 503 was injected");
    assert_eq!(proxy.rule_hits(reset), 1, "the reset was injected");
    assert_registry_has_image(registry, &repo, "1", &image);

    let s = daemon.scrape();
    let push = [("registry", host.as_str()), ("direction", "push")];
    s.assert("hoist_transferred_bytes_total", &push, bytes);
    s.assert("hoist_blobs_transferred_total", &push, blobs);
    let at = |cause| [("registry", host.as_str()), ("cause", cause)];
    s.assert("hoist_retries_total", &at("server_error"), 1.0);
    s.assert("hoist_retries_total", &at("reset"), 1.0);
    s.assert("hoist_retries_total", &[], 2.0);
    s.assert("hoist_blobs_skipped_total", &[], 0.0);
    s.assert("hoist_failures_total", &[], 0.0);
    s.assert(
        "hoist_operation_duration_seconds_count",
        &[("operation", "push"), ("result", "success")],
        1.0,
    );
    s.assert(
        "hoist_operation_duration_seconds_count",
        &[("operation", "load"), ("result", "success")],
        1.0,
    );
    s.assert(
        "hoist_api_requests_total",
        &[
            ("route", "/images/{name}/push"),
            ("method", "POST"),
            ("status", "200"),
        ],
        1.0,
    );
    s.assert(
        "hoist_api_requests_total",
        &[
            ("route", "/images/load"),
            ("method", "POST"),
            ("status", "200"),
        ],
        1.0,
    );
    s.assert(
        "hoist_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    s.assert("hoist_uploads_in_flight", &[], 0.0);
    s.assert("hoist_uploads_queued", &[], 0.0);
    let images: f64 = cli
        .run(&["info", "--format", "{{.Images}}"])
        .stdout
        .trim()
        .parse()
        .expect("docker info's image count");
    s.assert("hoist_images", &[], images);
    let store = s.sum("hoist_store_size_bytes", &[]);
    assert!(
        store >= bytes && store < bytes + 64.0 * 1024.0,
        "the store holds the blobs and a manifest: {store} for {bytes} bytes of blobs"
    );
    // No label carries an image name or a digest.
    assert!(!s.text.contains(&repo), "{}", s.text);
    assert!(!s.text.contains("sha256"), "{}", s.text);

    // The push's summary line says the same, and each retry was logged with its cause.
    let summaries = daemon.summaries("push finished", &repo);
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    let line = &summaries[0];
    assert_eq!(line["level"], "info");
    assert_eq!(line["reference"], name.as_str());
    assert_eq!(line["registry"], host.as_str());
    assert_eq!(line["bytes"].as_f64(), Some(bytes));
    assert_eq!(line["blobs_uploaded"].as_f64(), Some(blobs));
    assert_eq!(line["blobs_skipped"], 0);
    assert_eq!(line["blobs_mounted"], 0);
    assert_eq!(line["retries"], 2);
    assert_eq!(line["result"], "success");
    assert!(line["duration_seconds"].as_f64().is_some_and(|d| d > 0.0));
    let mut causes: Vec<String> = daemon
        .log_lines()
        .into_iter()
        .filter(|l| {
            l["msg"]
                .as_str()
                .is_some_and(|m| m.ends_with("failed; retrying"))
        })
        .map(|l| {
            assert_eq!(l["level"], "info", "{l}");
            assert_eq!(l["registry"], host.as_str(), "{l}");
            l["cause"].as_str().expect("cause").to_owned()
        })
        .collect();
    causes.sort();
    assert_eq!(causes, ["reset", "server_error"]);

    // Pushed again: every blob is already there. To another repository: every blob mounted.
    cli.run(&["push", &name]).assert_success("second push");
    let other_repo = unique_repo("metrics/mount");
    let other = format!("{host}/{other_repo}:1");
    cli.run(&["tag", &name, &other]).assert_success("tag");
    cli.run(&["push", &other])
        .assert_success("push to another repository");
    assert_registry_has_image(registry, &other_repo, "1", &image);
    let s = daemon.scrape();
    s.assert(
        "hoist_blobs_skipped_total",
        &[("registry", host.as_str()), ("reason", "exists")],
        blobs,
    );
    s.assert(
        "hoist_blobs_skipped_total",
        &[("registry", host.as_str()), ("reason", "mounted")],
        blobs,
    );
    s.assert("hoist_transferred_bytes_total", &push, bytes);
    s.assert(
        "hoist_operation_duration_seconds_count",
        &[("operation", "push"), ("result", "success")],
        3.0,
    );
    let again = daemon.summaries("push finished", &repo);
    assert_eq!(again.len(), 2, "{again:#?}");
    assert_eq!(again[1]["blobs_skipped"].as_f64(), Some(blobs));
    assert_eq!(again[1]["blobs_uploaded"], 0);
    assert_eq!(again[1]["bytes"], 0);
    let mounted = daemon.summaries("push finished", &other_repo);
    assert_eq!(mounted.len(), 1, "{mounted:#?}");
    assert_eq!(mounted[0]["blobs_mounted"].as_f64(), Some(blobs));
    assert_eq!(mounted[0]["blobs_uploaded"], 0);
}

#[test]
fn uploads_in_flight_and_queued_are_seen_during_a_push() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let daemon = Daemon::start(serde_json::json!({"max-concurrent-uploads": 1}));
    let cli = DockerCli::new(&daemon.hoistd.socket());
    let image = image(902, &[600_000, 500_000, 400_000]);
    let repo = unique_repo("metrics/busy");
    let name = format!("{}/{repo}:1", proxy.host());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    proxy.add_rule(FaultRule::new(
        "PUT",
        "/blobs/uploads/",
        FaultAction::SlowBody {
            bytes_per_second: 1_000_000,
        },
    ));
    let push = cli.spawn(&["push", &name]);
    wait_for_scrape(&daemon, "one upload running and others queued", |s| {
        s.sum("hoist_uploads_in_flight", &[]) == 1.0 && s.sum("hoist_uploads_queued", &[]) >= 1.0
    });
    push.wait(Duration::from_secs(60))
        .assert_success("slow push");
    let s = daemon.scrape();
    s.assert("hoist_uploads_in_flight", &[], 0.0);
    s.assert("hoist_uploads_queued", &[], 0.0);
}

#[test]
fn a_pull_counts_the_bytes_of_its_blobs() {
    let registry = TestRegistry::shared();
    let daemon = Daemon::start(serde_json::json!({}));
    let cli = DockerCli::new(&daemon.hoistd.socket());
    let image = image(903, &[300_000, 90_000]);
    let repo = unique_repo("metrics/pull");
    registry.push_image(&repo, "1", &image);
    let host = registry.host();
    let name = format!("{host}/{repo}:1");
    let bytes = blob_bytes(&image) as f64;
    let blobs = image.blobs().count() as f64;

    cli.run(&["pull", &name]).assert_success("pull");
    cli.run(&["pull", &name])
        .assert_success("pull of what is there");
    let s = daemon.scrape();
    let pull = [("registry", host.as_str()), ("direction", "pull")];
    s.assert("hoist_transferred_bytes_total", &pull, bytes);
    s.assert("hoist_blobs_transferred_total", &pull, blobs);
    s.assert(
        "hoist_operation_duration_seconds_count",
        &[("operation", "pull"), ("result", "success")],
        2.0,
    );
    s.assert(
        "hoist_api_requests_total",
        &[
            ("route", "/images/create"),
            ("method", "POST"),
            ("status", "200"),
        ],
        2.0,
    );
    s.assert("hoist_downloads_in_flight", &[], 0.0);

    let lines = daemon.summaries("pull finished", &repo);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[0]["reference"], name.as_str());
    assert_eq!(lines[0]["registry"], host.as_str());
    assert_eq!(lines[0]["bytes"].as_f64(), Some(bytes));
    assert_eq!(lines[0]["blobs_downloaded"].as_f64(), Some(blobs));
    assert_eq!(lines[0]["blobs_present"], 0);
    assert_eq!(lines[0]["retries"], 0);
    assert_eq!(lines[0]["result"], "success");
    assert_eq!(lines[1]["bytes"], 0);
    assert_eq!(lines[1]["blobs_present"].as_f64(), Some(blobs));

    // A pull refused before it starts (no such image) is an API answer, a 404, not a failed pull.
    let missing = format!("{host}/{repo}-missing:1");
    assert!(!cli.run(&["pull", &missing]).success());
    let s = daemon.scrape();
    s.assert(
        "hoist_api_requests_total",
        &[
            ("route", "/images/create"),
            ("method", "POST"),
            ("status", "404"),
        ],
        1.0,
    );
    s.assert("hoist_failures_total", &[], 0.0);
}

#[test]
fn a_metrics_address_other_hosts_can_reach_needs_the_opt_in() {
    let port = free_port();
    let refused = Hoistd::try_start(
        hoistd_bin(),
        HoistdOptions {
            config: serde_json::json!({"metrics-addr": format!("0.0.0.0:{port}")}),
            ..HoistdOptions::default()
        },
    )
    .err()
    .expect("hoistd refuses a non-loopback metrics address");
    assert_eq!(refused.status.and_then(|s| s.code()), Some(1), "{refused}");
    assert!(
        refused
            .log
            .contains(&format!("refusing to serve metrics on 0.0.0.0:{port}")),
        "{refused}"
    );
    assert!(refused.log.contains("--metrics-allow-remote"), "{refused}");

    // With JSON logs the refusal is a JSON line too, and stderr holds nothing else.
    let refused_json = Hoistd::try_start(
        hoistd_bin(),
        HoistdOptions {
            args: vec![
                "--metrics-addr".into(),
                format!("[::]:{port}"),
                "--log-format".into(),
                "json".into(),
            ],
            ..HoistdOptions::default()
        },
    )
    .err()
    .expect("hoistd refuses a non-loopback metrics address");
    let lines: Vec<Value> = refused_json
        .log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "error"
            && l["msg"]
                .as_str()
                .is_some_and(|m| m.contains("refusing to serve metrics on [::]"))),
        "{refused_json}"
    );

    let bad = Hoistd::try_start(
        hoistd_bin(),
        HoistdOptions {
            args: vec!["--log-format".into(), "xml".into()],
            ..HoistdOptions::default()
        },
    )
    .err()
    .expect("hoistd refuses an unknown log format");
    assert!(bad.log.contains("unknown log format: xml"), "{bad}");

    // With the opt-in it serves, on every interface (so also on loopback).
    let allowed = Hoistd::start(
        hoistd_bin(),
        HoistdOptions {
            config: serde_json::json!({
                "metrics-addr": format!("0.0.0.0:{port}"),
                "metrics-allow-remote": true,
            }),
            ..HoistdOptions::default()
        },
    );
    let response = hoist_testkit::http_client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .header("Accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .expect("scrape");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "OpenMetrics to a scraper that asks for it"
    );
    let text = response.text().expect("body");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        allowed
            .log()
            .contains("serving metrics on a non-loopback address")
    );
}

/// A token server with one user, and a registry trusting it.
fn token_registry() -> (TokenServer, TestRegistry) {
    let tokens = TokenServer::start(TokenServerOptions::default());
    tokens.add_user(USER, PASSWORD, &[("*", &["pull", "push"])]);
    let registry = TestRegistry::start(RegistryOptions {
        auth: tokens.registry_auth(),
    });
    (tokens, registry)
}

#[test]
fn a_debug_log_never_holds_a_password_or_token() {
    let daemon = Daemon::start(serde_json::json!({"debug": true}));
    let cli = DockerCli::new(&daemon.hoistd.socket());
    let image = image(904, &[50_000]);
    let login = |host: &str| {
        cli.run_with_stdin(
            &["login", "--username", USER, "--password-stdin", host],
            PASSWORD.as_bytes().to_vec(),
        )
        .assert_success("docker login");
    };

    // Token auth: login (an identity token comes back), push, pull.
    let (tokens, registry) = token_registry();
    let host = registry.host();
    login(&host);
    let repo = unique_repo("metrics/token");
    let name = format!("{host}/{repo}:1");
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    cli.run(&["push", &name])
        .assert_success("push with token auth");
    cli.run(&["rmi", &name]).assert_success("rmi");
    cli.run(&["pull", &name])
        .assert_success("pull with token auth");

    // Basic auth (htpasswd): login and push.
    let basic = TestRegistry::start(RegistryOptions {
        auth: RegistryAuth::Htpasswd(vec![(USER.into(), PASSWORD.into())]),
    });
    login(&basic.host());
    let basic_name = format!("{}/{}:1", basic.host(), unique_repo("metrics/basic"));
    cli.run(&["tag", &name, &basic_name]).assert_success("tag");
    cli.run(&["push", &basic_name])
        .assert_success("push with basic auth");

    let log = daemon.hoistd.log();
    let lines = daemon.log_lines();
    assert!(
        lines.iter().any(|l| l["level"] == "debug"),
        "the run logged at debug level"
    );
    let secrets = tokens.issued_secrets();
    assert!(
        secrets.len() >= 2,
        "an access token and an identity token were issued: {secrets:?}"
    );
    use base64::Engine as _;
    let basic_header =
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for secret in secrets
        .iter()
        .map(String::as_str)
        .chain([PASSWORD, basic_header.as_str()])
    {
        assert!(!log.contains(secret), "a secret reached the log: {secret}");
    }
    assert_eq!(daemon.summaries("push finished", &repo).len(), 1);
    assert_eq!(daemon.summaries("pull finished", &repo).len(), 1);
}

#[test]
fn a_token_refused_before_its_time_counts_as_a_token_renewal_retry() {
    // Tokens said to last 30 s die after 2 s at the registry: hoistd's cached one is refused and
    // the request goes again with a fresh one.
    let tokens = TokenServer::start(TokenServerOptions {
        expires_in: Duration::from_secs(30),
        real_lifetime: Some(Duration::from_secs(2)),
        ..TokenServerOptions::default()
    });
    tokens.add_user(USER, PASSWORD, &[("*", &["pull", "push"])]);
    let registry = TestRegistry::start(RegistryOptions {
        auth: tokens.registry_auth(),
    });
    let host = registry.host();
    let daemon = Daemon::start(serde_json::json!({}));
    let cli = DockerCli::new(&daemon.hoistd.socket()).with_auth(&host, USER, PASSWORD);
    let repo = unique_repo("metrics/renewal");
    let image = image(905, &[30_000]);
    let (first, second) = (format!("{host}/{repo}:1"), format!("{host}/{repo}:2"));
    load_image(
        &cli,
        &image,
        &[&first, &second],
        ArchiveFormat::DockerLegacy,
    );
    cli.run(&["push", &first]).assert_success("first push");
    daemon
        .scrape()
        .assert("hoist_retries_total", &[("cause", "token_renewal")], 0.0);

    // Wait until the registry refuses the last token hoistd was given.
    let token = tokens
        .issued_secrets()
        .into_iter()
        .rfind(|t| t.matches('.').count() == 2)
        .expect("an access token (a JWT) was issued");
    let deadline = Instant::now() + Duration::from_secs(30);
    while registry
        .client()
        .get(format!("{}/v2/", registry.url()))
        .bearer_auth(&token)
        .send()
        .expect("GET /v2/")
        .status()
        .as_u16()
        != 401
    {
        assert!(Instant::now() < deadline, "the token never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    cli.run(&["push", &second])
        .assert_success("push with a token the registry now refuses");

    let logged = daemon
        .log_lines()
        .into_iter()
        .filter(|l| l["cause"] == "token_renewal")
        .count();
    assert!(logged >= 1, "the renewal was logged with its cause");
    daemon.scrape().assert(
        "hoist_retries_total",
        &[("registry", host.as_str()), ("cause", "token_renewal")],
        logged as f64,
    );
    assert!(
        !daemon.hoistd.log().contains(&token),
        "the refused token is not in the log"
    );
}

#[test]
fn a_failed_push_is_counted_by_cause_and_summed_up_as_a_failure() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let daemon = Daemon::start(serde_json::json!({}));
    let cli = DockerCli::new(&daemon.hoistd.socket());
    let image = image(906, &[40_000]);
    let repo = unique_repo("metrics/denied");
    let name = format!("{}/{repo}:1", proxy.host());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    proxy.add_rule(FaultRule::new(
        "PUT",
        "/manifests/",
        FaultAction::Respond {
            status: 403,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#
                .to_vec(),
        },
    ));
    let out = cli.run(&["push", &name]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("denied"), "{out}");

    let s = daemon.scrape();
    s.assert(
        "hoist_failures_total",
        &[("operation", "push"), ("cause", "denied")],
        1.0,
    );
    s.assert("hoist_failures_total", &[], 1.0);
    s.assert(
        "hoist_operation_duration_seconds_count",
        &[("operation", "push"), ("result", "failure")],
        1.0,
    );
    // The blobs did reach the registry before the manifest was refused.
    s.assert(
        "hoist_blobs_transferred_total",
        &[("direction", "push")],
        image.blobs().count() as f64,
    );
    let lines = daemon.summaries("push finished", &repo);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["result"], "failure");
    assert_eq!(lines[0]["cause"], "denied");
    assert!(
        lines[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("denied")),
        "{}",
        lines[0]
    );
}
