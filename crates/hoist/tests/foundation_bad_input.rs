//! Bad input to `docker load`: every deliberately broken archive of the testkit is refused with a
//! clear in-stream error (the CLI prints it and exits 1), nothing of that load stays in the
//! store, and the daemon keeps serving. A `kill -9` in the middle of a large load leaves no
//! half-written blob and no record pointing at a missing blob.

mod foundation_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use foundation_support::*;
use hoist_testkit::archive::{
    ABSOLUTE_ENTRY_NAME, ArchiveBuilder, ArchiveCompression, ArchiveFormat, Breakage,
    PARENT_DIR_ENTRY_NAME, RawArchive, SYMLINK_DIR_NAME,
};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::Hoistd;
use hoist_testkit::image::{Compression, Flavor, Image, ImageBuilder, LayerSpec};

/// An image already in the store before the broken load; the broken image shares its layer.
struct Survivor {
    image: Image,
    tag: String,
}

fn load_survivor(docker: &DockerCli, scratch: &Scratch) -> Survivor {
    let image = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(3000))
        .build();
    let tag = format!("{}:kept", unique_repo("survivor"));
    docker_load(
        docker,
        &scratch.archive(
            "survivor.tar",
            &ArchiveBuilder::new(ArchiveFormat::Oci).image(&image, &[&tag]),
        ),
    );
    Survivor { image, tag }
}

/// Files that an archive escaping its directory could have created.
fn escape_targets(daemon: &Hoistd) -> Vec<std::path::PathBuf> {
    let name = PARENT_DIR_ENTRY_NAME.trim_start_matches("../");
    vec![
        Path::new(ABSOLUTE_ENTRY_NAME).to_owned(),
        Path::new("/tmp/hoist-testkit-through-link").to_owned(),
        daemon.dir().join(name),
        daemon.data_root().join(name),
        std::env::current_dir().expect("cwd").join(name),
        std::env::current_dir().expect("cwd").join(SYMLINK_DIR_NAME),
    ]
}

/// Loads the broken variant of an archive holding an image that shares the survivor's layer,
/// and checks the refusal and that the store is exactly as before.
fn assert_refused(
    format: ArchiveFormat,
    compression: ArchiveCompression,
    breakage: Breakage,
    expected_in_message: &[&str],
) {
    assert_refused_with_layer(
        Compression::GZIP,
        format,
        compression,
        breakage,
        expected_in_message,
    );
}

/// [`assert_refused`] with the broken image's own layer compressed as `layer`.
fn assert_refused_with_layer(
    layer: Compression,
    format: ArchiveFormat,
    compression: ArchiveCompression,
    breakage: Breakage,
    expected_in_message: &[&str],
) {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let survivor = load_survivor(&docker, &scratch);
    let before = stored_blobs(&daemon.data_root());

    // Its own layer first (the one breakages act on), then the survivor's.
    let flavor = if matches!(format, ArchiveFormat::DockerLegacy) {
        Flavor::Docker
    } else {
        Flavor::Oci
    };
    let broken_image = ImageBuilder::new(flavor)
        .layer(LayerSpec::files(&[6000, 2000]).compression(layer))
        .existing_layer(&survivor.image.layers[0])
        .build();
    let tag = format!("{}:broken", unique_repo("broken"));
    let archive = ArchiveBuilder::new(format)
        .compression(compression)
        .image(&broken_image, &[&tag])
        .broken(breakage);
    let path = scratch.raw_archive("broken.tar", &archive);

    let out = docker_fails(&docker, &["load", "-i", path.to_str().unwrap()]);
    let what = format!("{breakage:?} in {format:?} ({compression:?}, layer {layer:?})");
    assert_eq!(out.stdout, "", "{what}: {out}");
    let message = out.stderr.trim_end();
    assert!(
        message.starts_with("invalid archive: ") && !message.contains('\n'),
        "{what}: one clear line expected:\n{out}"
    );
    for fragment in expected_in_message {
        assert!(
            message.contains(fragment),
            "{what}: message lacks {fragment:?}: {message}"
        );
    }

    // Nothing of the load is left, not even the blobs it wrote before failing.
    assert_eq!(stored_blobs(&daemon.data_root()), before, "{what}");
    assert_every_blob_hashes_to_its_name(&daemon.data_root());
    let ingest = std::fs::read_dir(daemon.data_root().join("ingest"))
        .expect("ingest dir")
        .count();
    assert_eq!(ingest, 0, "{what}: temp files left in ingest/");
    assert_eq!(
        docker_ok(&docker, &["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        format!("{}\n", survivor.tag),
        "{what}"
    );
    for target in escape_targets(&daemon) {
        assert!(
            !target.exists(),
            "{what}: {} exists: the archive escaped",
            target.display()
        );
    }
    // The daemon keeps serving: the survivor is whole, and a good archive still loads.
    assert_eq!(
        inspect(&docker, &survivor.tag)["Id"],
        survivor.image.digest()
    );
    let good = ImageBuilder::new(Flavor::Oci).build();
    let good_tag = format!("{}:good", unique_repo("after"));
    assert_eq!(
        docker_load(
            &docker,
            &scratch.archive(
                "good.tar",
                &ArchiveBuilder::new(ArchiveFormat::Oci).image(&good, &[&good_tag]),
            ),
        ),
        format!("Loaded image: {good_tag}\n")
    );
}

#[test]
fn entry_with_parent_dir_is_refused() {
    assert_refused(
        ArchiveFormat::DockerBlobs,
        ArchiveCompression::None,
        Breakage::ParentDirEntry,
        &[PARENT_DIR_ENTRY_NAME, "points outside the archive"],
    );
}

#[test]
fn entry_with_absolute_path_is_refused() {
    assert_refused(
        ArchiveFormat::Oci,
        ArchiveCompression::Gzip,
        Breakage::AbsolutePathEntry,
        &[ABSOLUTE_ENTRY_NAME, "absolute path"],
    );
}

#[test]
fn layer_symlink_escaping_the_archive_is_refused() {
    assert_refused(
        ArchiveFormat::DockerLegacy,
        ArchiveCompression::None,
        Breakage::SymlinkEscape,
        &["/layer.tar", "points outside the archive", "etc/passwd"],
    );
    assert_refused(
        ArchiveFormat::Oci,
        ArchiveCompression::Zstd,
        Breakage::SymlinkEscape,
        &["blobs/sha256/", "points outside the archive"],
    );
}

#[test]
fn file_written_through_an_escaping_directory_symlink_is_refused() {
    assert_refused(
        ArchiveFormat::Both,
        ArchiveCompression::None,
        Breakage::SymlinkDirEscape,
        &[SYMLINK_DIR_NAME, "points outside the archive"],
    );
}

#[test]
fn truncated_archives_are_refused() {
    assert_refused(
        ArchiveFormat::Oci,
        ArchiveCompression::None,
        Breakage::Truncated,
        &["truncated"],
    );
    assert_refused(
        ArchiveFormat::DockerLegacy,
        ArchiveCompression::Gzip,
        Breakage::Truncated,
        &["truncated"],
    );
    assert_refused(
        ArchiveFormat::DockerBlobs,
        ArchiveCompression::Zstd,
        Breakage::Truncated,
        &["truncated"],
    );
}

#[test]
fn blob_whose_content_does_not_match_its_digest_is_refused() {
    assert_refused(
        ArchiveFormat::Oci,
        ArchiveCompression::None,
        Breakage::BlobContentMismatch,
        &["does not match its digest"],
    );
    // A legacy archive names its config by digest (`<hex>.json`).
    assert_refused(
        ArchiveFormat::DockerLegacy,
        ArchiveCompression::Gzip,
        Breakage::BlobContentMismatch,
        &[".json", "does not match its digest"],
    );
}

#[test]
fn malformed_manifest_json_is_refused() {
    assert_refused(
        ArchiveFormat::DockerBlobs,
        ArchiveCompression::None,
        Breakage::MalformedManifestJson,
        &["manifest.json"],
    );
}

#[test]
fn malformed_index_json_is_refused() {
    assert_refused(
        ArchiveFormat::Oci,
        ArchiveCompression::Zstd,
        Breakage::MalformedIndexJson,
        &["index.json"],
    );
}

#[test]
fn missing_layer_is_refused() {
    assert_refused(
        ArchiveFormat::DockerLegacy,
        ArchiveCompression::None,
        Breakage::MissingLayer,
        &["layer.tar", "not in the archive"],
    );
    assert_refused(
        ArchiveFormat::Oci,
        ArchiveCompression::Gzip,
        Breakage::MissingLayer,
        &["is missing"],
    );
}

/// moby unpacks what it loads: a layer that is a valid compressed stream with the right blob
/// digest, but whose tar is not what the config's diff_id says, never becomes an image.
#[test]
fn layer_whose_tar_does_not_hash_to_its_diff_id_is_refused() {
    assert_refused(
        ArchiveFormat::Oci,
        ArchiveCompression::None,
        Breakage::LayerDiffIdMismatch,
        &["does not match image config", "the config expects sha256:"],
    );
    assert_refused(
        ArchiveFormat::DockerLegacy,
        ArchiveCompression::Gzip,
        Breakage::LayerDiffIdMismatch,
        &["does not match image config", "its diff_id is sha256:"],
    );
    // A plain tar's DiffID is its blob digest, which the damaged blob's name follows.
    assert_refused_with_layer(
        Compression::None,
        ArchiveFormat::Oci,
        ArchiveCompression::None,
        Breakage::LayerDiffIdMismatch,
        &["does not match image config", "its diff_id is sha256:"],
    );
}

#[test]
fn layer_that_is_not_a_tar_is_refused() {
    assert_refused(
        ArchiveFormat::Both,
        ArchiveCompression::None,
        Breakage::LayerNotTar,
        &["is not a valid layer", "not a well-formed gzip tar"],
    );
    assert_refused(
        ArchiveFormat::DockerBlobs,
        ArchiveCompression::Zstd,
        Breakage::LayerNotTar,
        &["is not a valid layer", "tar"],
    );
    assert_refused_with_layer(
        Compression::None,
        ArchiveFormat::Oci,
        ArchiveCompression::None,
        Breakage::LayerNotTar,
        &["is not a valid layer", "not a well-formed tar"],
    );
}

#[test]
fn config_with_fewer_diff_ids_than_layers_is_refused() {
    assert_refused(
        ArchiveFormat::Oci,
        ArchiveCompression::Gzip,
        Breakage::FewerDiffIds,
        &["lists 1 diff_ids for 2 layers"],
    );
    assert_refused(
        ArchiveFormat::DockerLegacy,
        ArchiveCompression::None,
        Breakage::FewerDiffIds,
        &["lists 1 diff_ids for 2 layers"],
    );
}

/// Every blob digest the records in `meta.db` make reachable: record targets, and the children
/// of manifests and indexes among them, read with redb and our own JSON parsing. A copy of the
/// database is read, repaired as redb repairs a database after a crash, so that the data root
/// itself stays as the kill left it.
fn digests_reachable_from_records(data_root: &Path) -> BTreeSet<String> {
    use redb::{ReadableDatabase, ReadableTable};
    let copy = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::copy(data_root.join("meta.db"), copy.path()).expect("copy meta.db after a load");
    let db = redb::Database::create(copy.path()).expect("meta.db opens");
    let txn = db.begin_read().expect("read transaction");
    let images = txn
        .open_table(redb::TableDefinition::<&str, &[u8]>::new("images"))
        .expect("images table");
    let mut pending: Vec<String> = images
        .iter()
        .expect("records")
        .map(|entry| {
            let (_, value) = entry.expect("record");
            let record: serde_json::Value =
                serde_json::from_slice(value.value()).expect("record is JSON");
            record["target"]["digest"]
                .as_str()
                .expect("target digest")
                .to_owned()
        })
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(digest) = pending.pop() {
        if !seen.insert(digest.clone()) {
            continue;
        }
        let path = data_root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let children = doc["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(doc["layers"].as_array().into_iter().flatten())
            .chain(std::iter::once(&doc["config"]));
        for child in children {
            if let Some(d) = child["digest"].as_str() {
                pending.push(d.to_owned());
            }
        }
    }
    seen
}

#[test]
fn kill_9_during_a_large_load_leaves_no_partial_blob_and_no_dangling_record() {
    let mut daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let survivor = load_survivor(&docker, &scratch);
    let before = stored_blobs(&daemon.data_root());

    // Small blobs first (they are committed before the kill), then one 200 MiB layer stored
    // without compression (gzip level 0) so writing it takes a while.
    let big = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(8192))
        .layer(LayerSpec::single(200 << 20).compression(Compression::Gzip { level: 0 }))
        .build();
    let path = scratch.archive(
        "big.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci).image(&big, &["big-interrupted:1"]),
    );
    let loading = docker.spawn(&["load", "-i", path.to_str().unwrap()]);

    // Kill once the big layer is well under way in ingest/.
    let ingest = daemon.data_root().join("ingest");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let biggest = std::fs::read_dir(&ingest)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if biggest > 32 << 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the large layer never reached 32 MiB in ingest/; daemon log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    daemon.kill9();
    let cli = loading.wait(Duration::from_secs(60));
    assert!(!cli.success(), "docker load cannot succeed: {cli}");

    // Before any recovery: what is visible is whole, and every record's content is present.
    let data_root = daemon.data_root();
    assert_every_blob_hashes_to_its_name(&data_root);
    let stored = stored_blobs(&data_root);
    assert!(
        !stored.contains_key(big.layers[1].blob.hex()),
        "the interrupted layer cannot be complete"
    );
    for digest in digests_reachable_from_records(&data_root) {
        assert!(
            stored.contains_key(digest.trim_start_matches("sha256:")),
            "a record reaches {digest}, which is not stored"
        );
    }

    // After a restart: leftovers removed, the store exactly as before the load, serving.
    daemon.restart();
    assert_eq!(stored_blobs(&data_root), before);
    assert_every_blob_hashes_to_its_name(&data_root);
    assert_eq!(
        std::fs::read_dir(&ingest).expect("ingest dir").count(),
        0,
        "ingest/ emptied at start-up"
    );
    assert_eq!(
        docker_ok(
            &docker,
            &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]
        ),
        format!("{} {}\n", survivor.tag, short_id(survivor.image.digest()))
    );
    let saved = scratch.path("survivor-again.tar");
    docker_ok(
        &docker,
        &["save", "-o", saved.to_str().unwrap(), &survivor.tag],
    );
    let files = tar_files(&saved);
    for blob in survivor.image.contents() {
        assert_eq!(files[&format!("blobs/sha256/{}", blob.hex())], blob.bytes());
    }
}

#[test]
fn concurrent_good_and_broken_loads_sharing_a_layer_leave_the_good_images_whole() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let shared = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(1 << 20))
        .build();
    let images: Vec<Image> = (0..4)
        .map(|_| {
            ImageBuilder::new(Flavor::Oci)
                .layer(LayerSpec::single(256 << 10))
                .existing_layer(&shared.layers[0])
                .build()
        })
        .collect();
    // Even-numbered archives are good; odd ones have a corrupt first layer.
    let paths: Vec<(String, std::path::PathBuf, bool)> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let tag = format!("{}:{i}", unique_repo("concurrent"));
            let builder = ArchiveBuilder::new(ArchiveFormat::Oci).image(image, &[&tag]);
            let good = i % 2 == 0;
            let path = if good {
                scratch.archive(&format!("{i}.tar"), &builder)
            } else {
                scratch.raw_archive(
                    &format!("{i}.tar"),
                    &builder.broken(Breakage::BlobContentMismatch),
                )
            };
            (tag, path, good)
        })
        .collect();
    for _round in 0..3 {
        let children: Vec<_> = paths
            .iter()
            .map(|(_, path, _)| docker.spawn(&["load", "-i", path.to_str().unwrap()]))
            .collect();
        for (child, (tag, _, good)) in children.into_iter().zip(&paths) {
            let out = child.wait(Duration::from_secs(60));
            assert_eq!(out.success(), *good, "{tag}: {out}");
        }
        let mut expected: BTreeSet<String> = BTreeSet::new();
        for (image, (tag, _, good)) in images.iter().zip(&paths) {
            if *good {
                assert_eq!(inspect(&docker, tag)["Id"], image.digest());
                expected.extend(image.contents().map(|b| b.hex().to_owned()));
            }
        }
        let stored: BTreeSet<String> = stored_blobs(&daemon.data_root()).into_keys().collect();
        assert_eq!(stored, expected);
        assert_every_blob_hashes_to_its_name(&daemon.data_root());
    }
}

#[test]
fn an_archive_packing_endless_json_files_is_refused_within_bounded_memory() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    // 160 legacy `<id>/json` files of 1 MiB each: a few hundred KiB once gzipped, and far
    // beyond what a load keeps of an archive's JSON structure files.
    let filler = vec![b' '; 1 << 20];
    let mut archive = RawArchive::new().compression(ArchiveCompression::Gzip);
    for i in 0..160 {
        archive = archive.file(format!("layer{i}/json"), filler.clone());
    }
    let path = scratch.raw_archive("json-bomb.tar.gz", &archive);
    let out = docker_fails(&docker, &["load", "-i", path.to_str().unwrap()]);
    assert!(
        out.stderr
            .contains("invalid archive: its JSON structure files")
            && out.stderr.contains("in all"),
        "{out}"
    );
    // What the load held stayed under the bound (plus the daemon's own few tens of MiB).
    let peak_mib = daemon.peak_rss_kib() / 1024;
    assert!(peak_mib < 120, "hoistd peaked at {peak_mib} MiB");
    assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);
}
