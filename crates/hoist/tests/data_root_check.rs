//! `hoistd check` against a real data root: clean after `docker load`s, the damaged blob named
//! after a byte is flipped, and refused while the daemon holds the root.

mod foundation_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::Hoistd;
use hoist_testkit::image::{Flavor, ImageBuilder, LayerSpec};

fn check(daemon: &Hoistd) -> Output {
    check_at(&daemon.data_root(), &daemon.config_file())
}

/// `hoistd check --data-root <data_root> --config-file <config>`.
fn check_at(data_root: &Path, config: &Path) -> Output {
    Command::new(hoistd_bin())
        .arg("check")
        .arg("--data-root")
        .arg(data_root)
        .arg("--config-file")
        .arg(config)
        .output()
        .expect("run hoistd check")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_reports_a_clean_root_a_damaged_blob_and_refuses_a_root_in_use() {
    let mut daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let images = [
        ImageBuilder::new(Flavor::Oci)
            .layer(LayerSpec::single(150_000))
            .layer(LayerSpec::single(50_000))
            .build(),
        ImageBuilder::new(Flavor::Docker)
            .layer(LayerSpec::single(80_000))
            .build(),
    ];
    for image in &images {
        let tag = format!("{}:1", unique_repo("checked"));
        let archive = ArchiveBuilder::new(ArchiveFormat::Both).image(image, &[&tag]);
        docker_load(&docker, &scratch.archive(&format!("{tag}.tar"), &archive));
    }

    // The daemon holds the data root.
    let out = check(&daemon);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        format!(
            "hoistd check: data root {} is in use by another hoistd (pid {}): stop the daemon before checking its data root\n",
            daemon.data_root().display(),
            daemon.pid()
        )
    );

    daemon.stop();
    let blobs = stored_blobs(&daemon.data_root());
    let expected: std::collections::BTreeSet<String> = images
        .iter()
        .flat_map(|i| {
            i.layers
                .iter()
                .map(|l| l.digest())
                .chain([i.config_digest(), i.digest()])
        })
        .map(|d| d.trim_start_matches("sha256:").to_owned())
        .collect();
    assert_eq!(
        blobs
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expected
    );
    let out = check(&daemon);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        format!(
            "checked {} blobs ({} bytes) and 2 images in {}: no problems\n",
            blobs.len(),
            blobs.values().sum::<u64>(),
            daemon.data_root().display()
        )
    );

    // Flip a byte of the first image's second layer.
    let layer = &images[0].layers[1];
    let path = daemon
        .data_root()
        .join("blobs/sha256")
        .join(layer.digest().trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0x80;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let out = check(&daemon);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "blob {} is corrupt: its content hashes to {}",
                layer.digest(),
                digest_of(&bytes)
            ),
            format!(
                "checked {} blobs ({} bytes) and 2 images in {}: 1 problem",
                blobs.len(),
                blobs.values().sum::<u64>(),
                daemon.data_root().display()
            ),
        ],
        "{stdout}"
    );
    assert_eq!(text(&out.stderr), "");
    // Checking changed nothing.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn check_without_a_data_root_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let config = dir.path().join("daemon.json");
    let out = check_at(&missing, &config);
    // An explicitly named config file that is missing is an error too.
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    std::fs::write(&config, "{}").unwrap();
    let out = check_at(&missing, &config);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).starts_with(&format!(
            "hoistd check: cannot check {}: ",
            missing.display()
        )),
        "{}",
        text(&out.stderr)
    );
    assert!(!missing.exists());

    let out = Command::new(hoistd_bin())
        .args(["check", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
