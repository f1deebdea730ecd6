//! `docker save` never exports a blob whose bytes no longer match its digest: the transfer fails,
//! the CLI exits non-zero and leaves no output file. Intact images still save byte-identically.

mod foundation_support;

use std::os::unix::fs::PermissionsExt;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Flavor, ImageBuilder, LayerSpec};

#[test]
fn a_blob_damaged_on_disk_fails_the_save_and_an_intact_image_still_saves() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let damaged = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(300_000))
        .build();
    let intact = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(200_000))
        .build();
    let damaged_tag = format!("{}:1", unique_repo("damaged"));
    let intact_tag = format!("{}:1", unique_repo("intact"));
    for (image, tag) in [(&damaged, &damaged_tag), (&intact, &intact_tag)] {
        let archive = ArchiveBuilder::new(ArchiveFormat::Both).image(image, &[tag]);
        docker_load(&docker, &scratch.archive(&format!("{tag}.tar"), &archive));
    }

    // Flip one byte in the middle of the damaged image's layer file.
    let layer = &damaged.layers[0];
    let layer_hex = layer.digest().trim_start_matches("sha256:");
    let path = daemon.data_root().join("blobs/sha256").join(layer_hex);
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes,
        layer.blob.bytes(),
        "the stored layer is the generator's"
    );
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, &bytes).unwrap();

    let out_path = scratch.path("damaged.tar");
    let out = docker.run(&["save", "-o", out_path.to_str().unwrap(), &damaged_tag]);
    assert!(
        !out.status.success(),
        "docker save of a damaged blob succeeded:\n{out}"
    );
    assert!(
        out.stderr.contains("unexpected EOF"),
        "docker save names the cut-short transfer:\n{out}"
    );
    // docker CLI 28 keeps what arrived under the output name; it must not be a whole archive.
    if out_path.exists() {
        assert_incomplete_archive(&std::fs::read(&out_path).unwrap(), layer.digest());
    }
    let log = daemon.log();
    assert!(
        log.contains(&format!("blob {} is corrupt", layer.digest()))
            && log.contains("refusing to save a damaged blob"),
        "the daemon log names the damaged blob:\n{log}"
    );

    // The stream to stdout is cut short too: what arrived is not a complete archive.
    let mut piped = docker.command(&["save", &damaged_tag]).output().unwrap();
    assert!(!piped.status.success(), "docker save to stdout succeeded");
    assert_eq!(String::from_utf8_lossy(&piped.stderr), "unexpected EOF\n");
    assert_incomplete_archive(&std::mem::take(&mut piped.stdout), layer.digest());

    // The intact image saves, every blob byte-identical to the generator's, and the daemon
    // serves on.
    let saved = scratch.path("intact.tar");
    docker_ok(
        &docker,
        &["save", "-o", saved.to_str().unwrap(), &intact_tag],
    );
    let files = tar_files(&saved);
    for blob in intact.blobs() {
        let name = format!("blobs/sha256/{}", blob.digest.trim_start_matches("sha256:"));
        assert_eq!(
            files.get(&name).map(Vec::as_slice),
            Some(blob.bytes().as_slice()),
            "{name} in the saved archive"
        );
    }
}

/// `bytes` is a cut-short archive: the metadata written after the blobs never arrived, and the
/// damaged blob, if it began, is not there whole.
fn assert_incomplete_archive(bytes: &[u8], damaged: &str) {
    let mut archive = tar::Archive::new(bytes);
    let mut names = Vec::new();
    if let Ok(entries) = archive.entries() {
        for entry in entries {
            let Ok(mut entry) = entry else { break };
            let name = entry.path().unwrap().display().to_string();
            let mut content = Vec::new();
            if std::io::Read::read_to_end(&mut entry, &mut content).is_err() {
                break;
            }
            if name.ends_with(damaged.trim_start_matches("sha256:")) {
                assert_ne!(
                    digest_of(&content),
                    damaged,
                    "the damaged blob arrived intact?"
                );
            }
            names.push(name);
        }
    }
    for metadata in ["index.json", "manifest.json", "oci-layout"] {
        assert!(
            !names.iter().any(|n| n == metadata),
            "{metadata} in a cut-short archive: {names:?}"
        );
    }
}
