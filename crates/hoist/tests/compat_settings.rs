//! Daemon settings old clients and `docker info` see: `DOCKER_MIN_API_VERSION` (down to 1.12,
//! as dockerd 25 took it) with the answers those API versions had, and the daemon's labels.
//! Invalid values stop the daemon at start with dockerd's messages.

mod foundation_support;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::{Hoistd, HoistdOptions};
use hoist_testkit::image::{Flavor, ImageBuilder};

fn with_min_api(version: &str) -> HoistdOptions {
    HoistdOptions {
        env: vec![("DOCKER_MIN_API_VERSION".into(), version.into())],
        ..HoistdOptions::default()
    }
}

#[test]
fn min_api_version_serves_older_clients_and_shows_in_version() {
    let daemon = start_daemon_with(with_min_api("1.22"));
    let version = daemon.request("GET", "/v1.22/version", &[], b"");
    assert_eq!(version.status, 200, "{}", version.text());
    let version = version.json();
    assert_eq!(version["MinAPIVersion"], "1.22");
    assert_eq!(version["ApiVersion"], "1.50");
    assert_eq!(version["Components"][0]["Details"]["MinAPIVersion"], "1.22");

    let too_old = daemon.request("GET", "/v1.21/_ping", &[], b"");
    assert_eq!(too_old.status, 400);
    assert_eq!(
        too_old.text(),
        "client version 1.21 is too old. Minimum supported API version is 1.22, please upgrade your client to a newer version\n"
    );

    // What clients before 1.25 got from /info, and what later ones do not.
    let old = daemon.request("GET", "/v1.22/info", &[], b"").json();
    assert_eq!(old["ExecutionDriver"], "<not supported>");
    let new = daemon.request("GET", "/v1.25/info", &[], b"").json();
    assert!(new.get("ExecutionDriver").is_none(), "{new}");

    // An image without names, as clients before 1.43 were shown it.
    let image = ImageBuilder::new(Flavor::Oci).build();
    let archive = ArchiveBuilder::new(ArchiveFormat::Oci)
        .image(&image, &[])
        .to_raw()
        .to_bytes();
    let loaded = daemon.request(
        "POST",
        "/v1.22/images/load?quiet=1",
        &[("Content-Type", "application/x-tar")],
        &archive,
    );
    assert_eq!(loaded.status, 200, "{}", loaded.text());
    let old = daemon.request("GET", "/v1.22/images/json", &[], b"").json();
    assert_eq!(old[0]["Id"], image.digest());
    assert_eq!(old[0]["RepoTags"], serde_json::json!(["<none>:<none>"]));
    assert_eq!(old[0]["RepoDigests"], serde_json::json!(["<none>@<none>"]));
    assert_eq!(old[0]["VirtualSize"], old[0]["Size"]);
    let new = daemon.request("GET", "/v1.43/images/json", &[], b"").json();
    assert_eq!(new[0]["RepoTags"], serde_json::json!([]));
    let path = format!("/images/{}/json", image.digest());
    let old = daemon
        .request("GET", &format!("/v1.22{path}"), &[], b"")
        .json();
    assert_eq!(old["VirtualSize"], old["Size"]);
    let new = daemon
        .request("GET", &format!("/v1.44{path}"), &[], b"")
        .json();
    assert!(new.get("VirtualSize").is_none(), "{new}");

    // The default stays 1.24; the docker CLI reads it from /version.
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let out = docker_ok(
        &docker,
        &["version", "--format", "{{.Server.MinAPIVersion}}"],
    );
    assert_eq!(out.trim(), "1.24");
    let out = daemon.request("GET", "/v1.22/_ping", &[], b"");
    assert_eq!(out.status, 400);
}

#[test]
fn an_invalid_min_api_version_stops_the_start() {
    for (value, message) in [
        (
            "1.11",
            "invalid DOCKER_MIN_API_VERSION: minimum supported API version is 1.12: 1.11",
        ),
        (
            "1.51",
            "invalid DOCKER_MIN_API_VERSION: maximum supported API version is 1.50: 1.51",
        ),
        (
            "v1.22",
            r#"invalid DOCKER_MIN_API_VERSION: API version must be provided without "v" prefix"#,
        ),
        (
            "latest",
            "invalid DOCKER_MIN_API_VERSION: minimum supported API version is 1.12: latest",
        ),
    ] {
        let failure = match Hoistd::try_start(hoistd_bin(), with_min_api(value)) {
            Ok(_) => panic!("hoistd started with DOCKER_MIN_API_VERSION={value}"),
            Err(failure) => failure,
        };
        assert!(
            failure.status.is_some_and(|s| !s.success()),
            "{value}: {failure}"
        );
        assert!(failure.log.contains(message), "{value}: {failure}");
    }
}

#[test]
fn labels_from_flags_or_daemon_json_show_in_docker_info() {
    let daemon = start_daemon_with(HoistdOptions {
        args: vec![
            "--label".into(),
            "com.example.team=images".into(),
            "--label".into(),
            "zone=".into(),
            "--label".into(),
            "com.example.team=images".into(),
        ],
        ..HoistdOptions::default()
    });
    let docker = DockerCli::new(&daemon.socket());
    let out = docker_ok(&docker, &["info", "--format", "{{json .Labels}}"]);
    assert_eq!(out.trim(), r#"["com.example.team=images","zone="]"#);

    let daemon = start_daemon_with(HoistdOptions {
        config: serde_json::json!({"labels": ["tier=build"]}),
        ..HoistdOptions::default()
    });
    let docker = DockerCli::new(&daemon.socket());
    let out = docker_ok(&docker, &["info", "--format", "{{json .Labels}}"]);
    assert_eq!(out.trim(), r#"["tier=build"]"#);
}

#[test]
fn invalid_labels_stop_the_start() {
    let cases = [
        (
            serde_json::json!({"labels": ["novalue"]}),
            Vec::new(),
            "merged configuration validation from file and command line flags failed: bad attribute format: novalue",
        ),
        (
            serde_json::json!({"labels": ["com.docker.x=1"]}),
            Vec::new(),
            "label com.docker.x=1 is not allowed: the namespaces com.docker.*, io.docker.*, and org.dockerproject.* are reserved for internal use",
        ),
        (
            serde_json::json!({}),
            vec!["--label".to_owned(), "novalue".to_owned()],
            "bad attribute format: novalue",
        ),
        (
            serde_json::json!({"labels": ["a=1", "a=2"]}),
            Vec::new(),
            "conflict labels for a=2 and a=1",
        ),
        (
            serde_json::json!({"labels": ["a=1"]}),
            vec!["--label".to_owned(), "b=2".to_owned()],
            "the following directives are specified both as a flag and in the configuration file: labels",
        ),
    ];
    for (config, args, message) in cases {
        let opts = HoistdOptions {
            config: config.clone(),
            args: args.clone(),
            ..HoistdOptions::default()
        };
        let failure = match Hoistd::try_start(hoistd_bin(), opts) {
            Ok(_) => panic!("hoistd started with {config} {args:?}"),
            Err(failure) => failure,
        };
        assert!(
            failure.status.is_some_and(|s| !s.success()),
            "{config} {args:?}: {failure}"
        );
        assert!(
            failure.log.contains(message),
            "{config} {args:?}: {failure}"
        );
    }
}
