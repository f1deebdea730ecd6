//! A data root on a small filesystem: loading an archive whose content unpacks to more than the
//! free space above `min-free-space` stops cleanly, in-stream, naming the cause; nothing
//! half-written stays, the daemon serves on and a small image still loads.

mod foundation_support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveCompression, ArchiveFormat, RawArchive};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::HoistdOptions;
use hoist_testkit::image::{Flavor, ImageBuilder, LayerSpec};

const TMPFS_SIZE: u64 = 64 << 20;
const RESERVE: u64 = 16 << 20;
/// More than the whole filesystem; gzip makes it a few hundred KiB of archive.
const LAYER_FILE_SIZE: u64 = 96 << 20;

/// A tmpfs mounted for the test, unmounted when dropped (lazily: a process that still has a file
/// open there must not make the unmount fail and leave the mount behind).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: u64) -> Tmpfs {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs at {} failed ({status}): this test needs root",
            dir.display()
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A docker-archive (`manifest.json` over `blobs/sha256/`), gzip-compressed, whose one layer is
/// an uncompressed tar holding `LAYER_FILE_SIZE` zero bytes.
fn zero_bomb(scratch: &Scratch, tag: &str) -> PathBuf {
    let layer_path = scratch.path("zeros.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&layer_path).unwrap());
    let mut header = tar::Header::new_ustar();
    header.set_size(LAYER_FILE_SIZE);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(
            &mut header,
            "zeros",
            std::io::repeat(0).take(LAYER_FILE_SIZE),
        )
        .unwrap();
    builder.into_inner().unwrap();
    let layer = format!("sha256:{}", sha256_hex_of_file(&layer_path));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    }))
    .unwrap();
    let config_digest = digest_of(&config);
    let hex = |d: &str| d.trim_start_matches("sha256:").to_owned();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("blobs/sha256/{}", hex(&config_digest)),
        "RepoTags": [tag],
        "Layers": [format!("blobs/sha256/{}", hex(&layer))],
    }]))
    .unwrap();
    let archive = RawArchive::new()
        .file(format!("blobs/sha256/{}", hex(&config_digest)), config)
        .file_from(format!("blobs/sha256/{}", hex(&layer)), &layer_path)
        .file("manifest.json", manifest)
        .compression(ArchiveCompression::Gzip);
    let path = scratch.raw_archive("zeros.tar.gz", &archive);
    std::fs::remove_file(&layer_path).unwrap();
    assert!(
        std::fs::metadata(&path).unwrap().len() < 4 << 20,
        "the archive is small"
    );
    path
}

#[test]
fn a_load_that_would_fill_the_data_root_stops_in_stream_and_the_daemon_serves_on() {
    let mut daemon = start_daemon_with(HoistdOptions {
        config: serde_json::json!({ "min-free-space": RESERVE }),
        ..HoistdOptions::default()
    });
    daemon.stop();
    let data_root = daemon.data_root();
    let _tmpfs = Tmpfs::mount(&data_root, TMPFS_SIZE);
    daemon.restart();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();

    let big_tag = format!("{}:1", unique_repo("zeros"));
    let archive = zero_bomb(&scratch, &big_tag);
    let out = docker.run(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out}");
    // The whole message is the store's: the cause, the data root, what is left and reserved.
    let left: u64 = out
        .stderr
        .strip_prefix(&format!(
            "not enough free space in {}: ",
            data_root.display()
        ))
        .and_then(|rest| rest.strip_suffix(&format!(" bytes left, {RESERVE} reserved\n")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("docker load names the cause:\n{out}"));
    // The reserve was kept: the refusal came before the free space fell under it.
    assert!(left >= RESERVE, "{left} bytes left, under the reserve");

    // Nothing half-written: no temp file, every blob whole, no big one, no record.
    assert_eq!(
        std::fs::read_dir(data_root.join("ingest")).unwrap().count(),
        0
    );
    assert_every_blob_hashes_to_its_name(&data_root);
    let stored = stored_blobs(&data_root);
    assert!(stored.values().all(|size| *size < 1 << 20), "{stored:?}");
    let images = docker_ok(&docker, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!images.contains(&big_tag), "{images}");

    // A small image still fits, and loads.
    let small = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(100_000))
        .build();
    let small_tag = format!("{}:1", unique_repo("small"));
    let small_archive = ArchiveBuilder::new(ArchiveFormat::Both).image(&small, &[&small_tag]);
    let stdout = docker_load(&docker, &scratch.archive("small.tar", &small_archive));
    assert_eq!(stdout, format!("Loaded image: {small_tag}\n"));
    assert_eq!(inspect(&docker, &small_tag)["Id"], small.digest());

    daemon.stop();
}
