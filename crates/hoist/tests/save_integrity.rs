//! `docker save` never exports a blob whose bytes no longer match its digest: the transfer fails
//! inside that blob (its last part is held back until the whole blob hashed right), the CLI
//! exits non-zero and what it kept is not a whole archive. Intact images still save
//! byte-identically, blobs of several read chunks included.

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
    // The damaged layer spans several of the daemon's 1 MiB read chunks, damaged in the first,
    // so that chunks before the damage is known go out; the intact image has a layer of several
    // chunks that is not a multiple of one, and one smaller than a chunk.
    let damaged = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(3_500_000))
        .build();
    let intact = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(5_300_000))
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
    assert!(bytes.len() > 3 << 20, "the layer spans several chunks");
    let early = 100_000;
    bytes[early] ^= 0x01;
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
/// damaged blob, if it began, ends early: fewer bytes than its header says.
fn assert_incomplete_archive(bytes: &[u8], damaged: &str) {
    let mut archive = tar::Archive::new(bytes);
    let mut names = Vec::new();
    let hex = damaged.trim_start_matches("sha256:");
    if let Ok(entries) = archive.entries() {
        for entry in entries {
            let Ok(mut entry) = entry else { break };
            let name = entry.path().unwrap().display().to_string();
            let size = entry.header().size().unwrap();
            let mut content = Vec::new();
            let whole = std::io::Read::read_to_end(&mut entry, &mut content).is_ok()
                && content.len() as u64 == size;
            if name.ends_with(hex) {
                assert!(
                    !whole,
                    "the damaged blob arrived whole ({} of {size} bytes)",
                    content.len()
                );
            }
            names.push(name);
            if !whole {
                break;
            }
        }
    }
    for metadata in ["index.json", "manifest.json", "oci-layout"] {
        assert!(
            !names.iter().any(|n| n == metadata),
            "{metadata} in a cut-short archive: {names:?}"
        );
    }
}
