//! `GET /events` for image events, read by the docker CLI, docker-py and dockerode: which events
//! load, save, tag, untag, delete, import, pull and push report (actor, `name`, the image's
//! labels), the time window and filters, and that a reader that does not read never holds up the
//! daemon.

mod push_support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::docker::{CliChild, DockerCli};
use hoist_testkit::hoistd::Hoistd;
use hoist_testkit::image::{Flavor, Image, ImageBuilder, LayerSpec};
use hoist_testkit::registry::TestRegistry;
use push_support::*;
use serde_json::Value;

fn labelled_image(seed: u64) -> Image {
    ImageBuilder::new(Flavor::Oci)
        .seed(seed)
        .layer(LayerSpec::single(20_000))
        .label("maintainer", "events-test")
        .label("tier", "backend")
        .build()
}

/// Now, as `seconds.nanoseconds` since the epoch: a form `--since`/`--until` of every client
/// pass through to the daemon unchanged.
fn unix_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// `docker events --since <since> --until <now> --format '{{json .}}'` (and `extra`), parsed.
fn cli_events(cli: &DockerCli, since: &str, extra: &[&str]) -> Vec<Value> {
    let until = unix_now();
    let mut args = vec![
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--format",
        "{{json .}}",
    ];
    args.extend_from_slice(extra);
    let out = cli.run(&args);
    out.assert_success("docker events");
    json_lines(&out.stdout)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// (Action, Actor.ID, Actor.Attributes.name) of each event.
fn summary(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["Action"].as_str().unwrap_or_default().to_owned(),
                e["Actor"]["ID"].as_str().unwrap_or_default().to_owned(),
                e["Actor"]["Attributes"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn row(action: &str, id: &str, name: &str) -> (String, String, String) {
    (action.to_owned(), id.to_owned(), name.to_owned())
}

/// Every event is an image event with moby's fields, legacy ones included.
fn assert_image_event_shape(event: &Value) {
    let action = event["Action"].as_str().expect("Action");
    assert_eq!(event["Type"], "image", "{event}");
    assert_eq!(event["scope"], "local", "{event}");
    assert_eq!(event["status"], action, "{event}");
    assert_eq!(event["id"], event["Actor"]["ID"], "{event}");
    let time = event["time"].as_i64().expect("time");
    let nanos = event["timeNano"].as_i64().expect("timeNano");
    assert_eq!(time, nanos / 1_000_000_000, "{event}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - 600..=now).contains(&time), "{event}");
}

/// Polls the CLI's output until `done` holds for it; panics with the output after 30 s.
fn wait_for_output(child: &CliChild, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = child.stdout_so_far();
        if done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "waited 30 s for {what}; stdout:\n{out}\nstderr:\n{}",
            child.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cli_reports_load_tag_save_untag_and_delete_with_names_and_labels() {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = labelled_image(1);
    let id = image.digest();
    let repo = unique_repo("events/local");
    let (first, second) = (format!("{repo}:1"), format!("{repo}:2"));
    let since = unix_now();
    load_image(&cli, &image, &[&first], ArchiveFormat::Oci);
    docker_ok(&cli, &["tag", &first, &second]);
    let saved = std::env::temp_dir().join(format!("{}.tar", repo.replace('/', "_")));
    docker_ok(&cli, &["save", "-o", saved.to_str().unwrap(), &first]);
    let _ = std::fs::remove_file(&saved);
    docker_ok(&cli, &["rmi", &second]);
    docker_ok(&cli, &["rmi", &first]);

    let events = cli_events(&cli, &since, &[]);
    assert_eq!(
        summary(&events),
        [
            row("load", id, id),
            row("tag", id, &second),
            row("save", id, id),
            row("untag", id, &second),
            row("untag", id, &first),
            row("delete", id, id),
        ]
    );
    for event in &events {
        assert_image_event_shape(event);
    }
    // The image's labels ride along while the image exists (moby looks them up); untag and
    // delete carry the name only.
    let attributes: Vec<&Value> = events.iter().map(|e| &e["Actor"]["Attributes"]).collect();
    for present in &attributes[..3] {
        assert_eq!(present["maintainer"], "events-test");
        assert_eq!(present["tier"], "backend");
    }
    for gone in &attributes[3..] {
        assert_eq!(gone.as_object().map(|o| o.len()), Some(1), "{gone}");
    }

    // The CLI's own format, with `--until 0s` (now, in whole seconds): wait until the clock
    // has passed the second of the last event so the window holds it.
    let last = events.last().unwrap()["time"].as_u64().unwrap();
    while SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= last
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = cli.run(&["events", "--since", "1m", "--until", "0s"]);
    out.assert_success("docker events --since 1m --until 0s");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    assert!(
        lines[1].ends_with(&format!(
            " image tag {id} (maintainer=events-test, name={second}, org.hoist.testkit.seed=1, tier=backend)"
        )),
        "{}",
        out.stdout
    );
    assert!(
        lines[5].ends_with(&format!(" image delete {id} (name={id})")),
        "{}",
        out.stdout
    );
}

#[test]
fn cli_follows_tag_events_live_through_a_filter() {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = labelled_image(2);
    let repo = unique_repo("events/live");
    load_image(&cli, &image, &[&format!("{repo}:1")], ArchiveFormat::Oci);
    // `--since` now: an event between the start of the CLI and its subscription is replayed, not
    // lost, so nothing needs to wait for the subscription.
    let since = unix_now();
    let child = cli.spawn(&[
        "events",
        "--since",
        &since,
        "--filter",
        "event=tag",
        "--format",
        "{{json .}}",
    ]);
    docker_ok(&cli, &["tag", &format!("{repo}:1"), &format!("{repo}:2")]);
    wait_for_output(&child, "the first tag event", |out| {
        out.lines().count() >= 1
    });
    // Certainly live now: untag is filtered out, the next tag comes through.
    docker_ok(&cli, &["rmi", &format!("{repo}:2")]);
    docker_ok(&cli, &["tag", &format!("{repo}:1"), &format!("{repo}:3")]);
    let out = wait_for_output(&child, "the second tag event", |out| {
        out.lines().count() >= 2
    });
    let events = json_lines(&out);
    assert_eq!(
        summary(&events),
        [
            row("tag", image.digest(), &format!("{repo}:2")),
            row("tag", image.digest(), &format!("{repo}:3")),
        ]
    );
    assert_eq!(events[1]["Actor"]["Attributes"]["tier"], "backend");
}

#[test]
fn a_future_until_ends_the_live_stream_then() {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let repo = unique_repo("events/until");
    load_image(
        &cli,
        &labelled_image(8),
        &[&format!("{repo}:1")],
        ArchiveFormat::Oci,
    );
    let since = unix_now();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let until = now + Duration::from_secs(3);
    let until = format!("{}.{:09}", until.as_secs(), until.subsec_nanos());
    let follower = cli.spawn(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{json .}}",
    ]);
    docker_ok(&cli, &["tag", &format!("{repo}:1"), &format!("{repo}:2")]);
    // The CLI exits on its own once the daemon ends the stream at `until`.
    let out = follower.wait(Duration::from_secs(30));
    out.assert_success("docker events --until <in 3 s>");
    let ended = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert!(
        ended >= now + Duration::from_secs(3),
        "ended before `until`"
    );
    assert_eq!(
        summary(&json_lines(&out.stdout)),
        [row("tag", labelled_image(8).digest(), &format!("{repo}:2"))]
    );
}

#[test]
fn push_and_pull_against_the_registry_as_docker_py_reads_them() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = labelled_image(3);
    let repo = unique_repo("events/remote");
    let remote = format!("{}/{repo}", registry.host());
    let since = unix_now();
    load_image(&cli, &image, &[&format!("{remote}:1")], ArchiveFormat::Oci);
    docker_ok(&cli, &["push", &format!("{remote}:1")]);
    assert_registry_has_image(registry, &repo, "1", &image);
    docker_ok(&cli, &["rmi", &format!("{remote}:1")]);
    docker_ok(&cli, &["pull", &format!("{remote}:1")]);
    let until = unix_now();

    let script = format!(
        r#"
import docker, json
client = docker.from_env()
events = client.events(since={since}, until={until}, decode=True,
                       filters={{"type": "image", "event": ["push", "pull"]}})
print(json.dumps(list(events)))
"#
    );
    let out = cli.python(&script, &[]);
    out.assert_success("docker-py events");
    let events: Vec<Value> = serde_json::from_str(out.stdout.trim()).expect("JSON list");
    let tagged = format!("{remote}:1");
    assert_eq!(
        summary(&events),
        [row("push", &tagged, &remote), row("pull", &tagged, &remote)]
    );
    for event in &events {
        assert_image_event_shape(event);
        assert_eq!(event["Actor"]["Attributes"]["maintainer"], "events-test");
    }
}

#[test]
fn import_as_dockerode_reads_it() {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let repo = unique_repo("events/import");
    let tarball = std::env::temp_dir().join(format!("{}-rootfs.tar", repo.replace('/', "_")));
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello.txt", &b"hello"[..])
        .unwrap();
    std::fs::write(&tarball, builder.into_inner().unwrap()).unwrap();
    let since = unix_now();
    let id = docker_ok(
        &cli,
        &["import", tarball.to_str().unwrap(), &format!("{repo}:v1")],
    );
    let _ = std::fs::remove_file(&tarball);
    let id = id.trim().to_owned();
    let until = unix_now();

    let program = format!(
        r#"
const Docker = require('dockerode');
const docker = new Docker({{ socketPath: process.env.DOCKER_HOST.replace('unix://', '') }});
docker.getEvents({{ since: '{since}', until: '{until}' }}).then((stream) => {{
  let text = '';
  stream.on('data', (d) => text += d);
  stream.on('end', () => console.log(JSON.stringify(text.split('\n').filter((l) => l).map(JSON.parse))));
}}, (e) => {{ console.error(e); process.exit(1); }});
"#
    );
    let out = cli.node(&program, &[]);
    out.assert_success("dockerode getEvents");
    let events: Vec<Value> = serde_json::from_str(out.stdout.trim()).expect("JSON list");
    assert_eq!(
        summary(&events),
        [
            row("tag", &id, &format!("{repo}:v1")),
            row("import", &id, &id)
        ]
    );
    for event in &events {
        assert_image_event_shape(event);
    }
}

#[test]
fn filters_select_by_type_image_event_and_label_and_bad_queries_fail_as_moby() {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let (one, two) = (labelled_image(4), labelled_image(5));
    let repo_one = unique_repo("events/one");
    let repo_two = unique_repo("events/two");
    let since = unix_now();
    load_image(&cli, &one, &[&format!("{repo_one}:1")], ArchiveFormat::Oci);
    load_image(&cli, &two, &[&format!("{repo_two}:1")], ArchiveFormat::Oci);
    docker_ok(
        &cli,
        &["tag", &format!("{repo_one}:1"), &format!("{repo_one}:2")],
    );
    docker_ok(
        &cli,
        &["tag", &format!("{repo_two}:1"), &format!("{repo_two}:2")],
    );
    docker_ok(&cli, &["rmi", &format!("{repo_two}:2")]);

    let by_repo = cli_events(&cli, &since, &["--filter", &format!("image={repo_one}")]);
    assert_eq!(
        summary(&by_repo),
        [row("tag", one.digest(), &format!("{repo_one}:2"))],
        "image= matches the name without its tag"
    );
    let by_id = cli_events(
        &cli,
        &since,
        &["--filter", &format!("image={}", two.digest())],
    );
    assert_eq!(
        by_id.len(),
        3,
        "load, tag, untag of the second image: {by_id:?}"
    );
    let untags = cli_events(
        &cli,
        &since,
        &["--filter", "type=image", "--filter", "event=untag"],
    );
    assert_eq!(
        summary(&untags),
        [row("untag", two.digest(), &format!("{repo_two}:2"))]
    );
    let labelled = cli_events(
        &cli,
        &since,
        &["--filter", "label=tier=backend", "--filter", "event=tag"],
    );
    assert_eq!(labelled.len(), 2, "{labelled:?}");
    let none = cli_events(&cli, &since, &["--filter", "type=container"]);
    assert!(none.is_empty(), "{none:?}");

    // The Engine API directly: the legacy filter form, and moby's errors.
    let until = unix_now();
    let path = format!(
        "/v1.50/events?since={since}&until={until}&filters=%7B%22event%22%3A%5B%22untag%22%5D%7D"
    );
    let response = hoistd.request("GET", &path, &[], b"");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json_lines().len(), 1, "{}", response.text());
    for (query, status, message) in [
        (
            "filters=%7B%22event%22%3A%22tag%22%7D",
            400,
            "invalid filter".to_owned(),
        ),
        (
            "since=20&until=10",
            400,
            "`since` time (20) cannot be after `until` time (10)".to_owned(),
        ),
        (
            "since=1m",
            500,
            "strconv.ParseInt: parsing \"1m\": invalid syntax".to_owned(),
        ),
    ] {
        let response = hoistd.request("GET", &format!("/events?{query}"), &[], b"");
        assert_eq!(response.status, status, "{query}: {}", response.text());
        assert_eq!(response.json()["message"], message.as_str(), "{query}");
    }
}

/// Reads the HTTP head of `GET path` from a raw connection; the body stays unread.
fn open_stream(hoistd: &Hoistd, path: &str) -> (UnixStream, String) {
    let mut stream = UnixStream::connect(hoistd.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream
            .read_exact(&mut byte)
            .expect("the head comes at once");
        head.push(byte[0]);
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn a_reader_that_does_not_read_is_dropped_and_never_holds_up_a_push() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    // Events of about 4 KiB each (labels ride along): the unread connection's socket holds a few
    // hundred, its buffer in the daemon 1024; 2000 overflow both.
    let image = ImageBuilder::new(Flavor::Docker)
        .seed(6)
        .layer(LayerSpec::single(10_000))
        .label("padding", &"x".repeat(4096))
        .build();
    let repo = unique_repo("events/slow");
    let remote = format!("{}/{repo}", registry.host());

    // Headers come before any event.
    let (mut slow, head) = open_stream(&hoistd, "/v1.50/events");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json\r\n"),
        "{head}"
    );
    // `--since` now: whenever the CLI subscribes, the push is replayed to it or sent live.
    let since = unix_now();
    let reader = cli.spawn(&[
        "events",
        "--since",
        &since,
        "--filter",
        "event=push",
        "--format",
        "{{json .}}",
    ]);
    let tags: Vec<String> = (0..2000).map(|i| format!("{remote}:{i}")).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let archive = std::env::temp_dir().join(format!("{}.tar", repo.replace('/', "_")));
    ArchiveBuilder::new(ArchiveFormat::DockerLegacy)
        .image(&image, &tag_refs)
        .write(&archive);
    let started = Instant::now();
    let out = cli.run(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let _ = std::fs::remove_file(&archive);
    out.assert_success("docker load of 2000 names");
    docker_ok(&cli, &["push", &tags[0]]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "load and push took {:?}",
        started.elapsed()
    );
    assert_registry_has_image(registry, &repo, "0", &image);
    let out = wait_for_output(&reader, "the push event", |out| out.contains("\"push\""));
    assert_eq!(summary(&json_lines(&out)), [row("push", &tags[0], &remote)]);

    // The unread connection was dropped: what it holds ends with the end of the chunked body.
    let mut body = Vec::new();
    slow.read_to_end(&mut body)
        .expect("the dropped stream ends");
    let text = String::from_utf8_lossy(&body);
    assert!(text.ends_with("0\r\n\r\n"), "the body ends cleanly");
    let received = text.matches("\"Action\":\"load\"").count();
    assert!(
        (1..2000).contains(&received),
        "it got part of the events: {received}"
    );
    assert!(!text.contains("\"push\""), "nothing after it was dropped");

    // The daemon keeps the last 256 events for replay.
    let replayed = cli_events(&cli, "1h", &[]);
    assert_eq!(replayed.len(), 256);
    assert_eq!(replayed[255]["Action"], "push");
}

#[test]
fn a_stopping_daemon_ends_event_streams_instead_of_waiting_for_them() {
    let mut hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let repo = unique_repo("events/stop");
    let since = unix_now();
    load_image(
        &cli,
        &labelled_image(7),
        &[&format!("{repo}:1")],
        ArchiveFormat::Oci,
    );
    let follower = cli.spawn(&["events", "--since", &since, "--format", "{{json .}}"]);
    // Subscribed once the replayed load event is out.
    wait_for_output(&follower, "the load event", |out| out.lines().count() >= 1);

    let asked = Instant::now();
    let status = hoistd.stop();
    // Running requests get 10 s to finish; an open event stream must not use them up.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "hoistd took {:?} to stop",
        asked.elapsed()
    );
    assert!(status.success(), "{status}");
    let out = follower.wait(Duration::from_secs(10));
    assert_eq!(json_lines(&out.stdout).len(), 1, "{}", out.stdout);
}

fn docker_ok(cli: &DockerCli, args: &[&str]) -> String {
    let out = cli.run(args);
    out.assert_success(&format!("docker {}", args.join(" ")));
    out.stdout
}

#[test]
fn system_prune_reports_the_container_and_network_prunes_as_moby_does() {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let since = unix_now();
    cli.run(&["system", "prune", "-f", "--volumes"])
        .assert_success("docker system prune");
    let prunes: Vec<(String, String, String)> =
        cli_events(&cli, &since, &["--filter", "event=prune"])
            .iter()
            .map(|e| {
                (
                    e["Type"].as_str().unwrap_or_default().to_owned(),
                    e["Actor"]["ID"].as_str().unwrap_or_default().to_owned(),
                    e["Actor"]["Attributes"]["reclaimed"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
    // moby reports every container, network and volume prune, with what it reclaimed; its
    // containerd image store reports no image prune.
    let expected: Vec<(String, String, String)> = ["container", "network", "volume"]
        .iter()
        .map(|kind| (kind.to_string(), String::new(), "0".to_owned()))
        .collect();
    let mut sorted = prunes.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "{prunes:?}");
}
