//! Archive forms have the structure `docker load` expects, and broken archives are broken in
//! exactly the intended way.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use hoist_testkit::archive::{
    ABSOLUTE_ENTRY_NAME, ArchiveBuilder, ArchiveCompression, ArchiveFormat, Breakage,
    PARENT_DIR_ENTRY_NAME, SYMLINK_DIR_NAME, normalize_tagged_name,
};
use hoist_testkit::image::{
    Compression, Flavor, Image, ImageBuilder, IndexBuilder, LayerSpec, sha256_digest,
};

/// One entry as read back: raw name bytes, kind, link target, content.
#[derive(Debug)]
struct ReadEntry {
    name: String,
    kind: tar::EntryType,
    link: Option<String>,
    content: Vec<u8>,
}

fn read_archive(path: &Path) -> Vec<ReadEntry> {
    let bytes = std::fs::read(path).expect("read archive file");
    let tar_bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .expect("gunzip archive");
        out
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(&bytes[..]).expect("unzstd archive")
    } else {
        bytes
    };
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    archive
        .entries()
        .expect("tar entries")
        .map(|entry| {
            let mut entry = entry.expect("tar entry");
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned());
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("entry content");
            ReadEntry {
                name,
                kind,
                link,
                content,
            }
        })
        .collect()
}

fn by_name(entries: &[ReadEntry]) -> BTreeMap<&str, &ReadEntry> {
    entries.iter().map(|e| (e.name.as_str(), e)).collect()
}

fn json_of(entries: &[ReadEntry], name: &str) -> serde_json::Value {
    let entry = by_name(entries)
        .get(name)
        .copied()
        .unwrap_or_else(|| panic!("archive has no {name}"));
    serde_json::from_slice(&entry.content).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn write(builder: &ArchiveBuilder) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("archive.tar");
    builder.write(&path);
    (dir, path)
}

fn image_with_repeated_layer() -> Image {
    ImageBuilder::new(Flavor::Docker)
        .seed(11)
        .layer(LayerSpec::single(300))
        .layer(LayerSpec::single(200).compression(Compression::None))
        .repeat_layer(0)
        .build()
}

/// Every `blobs/sha256/<hex>` file hashes to its name.
fn assert_blobs_named_by_content(entries: &[ReadEntry]) {
    for entry in entries.iter().filter(|e| e.kind.is_file()) {
        if let Some(hex) = entry.name.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256_digest(&entry.content), format!("sha256:{hex}"));
        }
    }
}

#[test]
fn docker_legacy_has_manifest_json_config_layer_dirs_and_symlinked_duplicates() {
    let image = image_with_repeated_layer();
    let (_dir, path) = write(
        &ArchiveBuilder::new(ArchiveFormat::DockerLegacy).image(&image, &["foo:latest", "foo:v2"]),
    );
    let entries = read_archive(&path);
    let names = by_name(&entries);
    let manifest = json_of(&entries, "manifest.json");
    let element = &manifest[0];
    assert_eq!(
        element["Config"],
        format!("{}.json", image.config.hex()),
        "{manifest}"
    );
    assert_eq!(
        element["RepoTags"],
        serde_json::json!(["foo:latest", "foo:v2"])
    );
    let layers: Vec<&str> = element["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| l.as_str().expect("layer path"))
        .collect();
    assert_eq!(layers.len(), 3);
    assert!(layers.iter().all(|l| l.ends_with("/layer.tar")));
    assert_eq!(
        names[layers[0]].content,
        image.layers[0].blob.bytes(),
        "first layer stored as is"
    );
    assert_eq!(names[layers[1]].content, image.layers[1].blob.bytes());
    let duplicate = names[layers[2]];
    assert_eq!(duplicate.kind, tar::EntryType::Symlink);
    let first_dir = layers[0].trim_end_matches("/layer.tar");
    assert_eq!(
        duplicate.link.as_deref(),
        Some(format!("../{first_dir}/layer.tar").as_str())
    );
    assert_eq!(
        names[element["Config"].as_str().unwrap()].content,
        image.config_bytes()
    );
    let repositories = json_of(&entries, "repositories");
    let top_dir = layers[2].trim_end_matches("/layer.tar");
    assert_eq!(repositories["foo"]["latest"], top_dir);
    assert_eq!(repositories["foo"]["v2"], top_dir);
    assert!(!names.contains_key("index.json"));
    assert!(names.contains_key(format!("{first_dir}/VERSION").as_str()));
}

#[test]
fn docker_blobs_manifest_json_points_into_blobs() {
    let image = image_with_repeated_layer();
    let (_dir, path) =
        write(&ArchiveBuilder::new(ArchiveFormat::DockerBlobs).image(&image, &["bar:1"]));
    let entries = read_archive(&path);
    let names = by_name(&entries);
    let manifest = json_of(&entries, "manifest.json");
    assert_eq!(
        manifest,
        serde_json::json!([{
            "Config": format!("blobs/sha256/{}", image.config.hex()),
            "RepoTags": ["bar:1"],
            "Layers": image.layers.iter().map(|l| format!("blobs/sha256/{}", l.blob.hex())).collect::<Vec<_>>(),
        }])
    );
    assert!(!names.contains_key("index.json"));
    assert!(!names.contains_key("oci-layout"));
    assert_blobs_named_by_content(&entries);
    // Config plus two distinct layers, each once.
    let blob_files = entries
        .iter()
        .filter(|e| e.kind.is_file() && e.name.starts_with("blobs/sha256/"))
        .count();
    assert_eq!(blob_files, 3);
}

#[test]
fn oci_layout_names_images_as_containerd_and_docker_save_do() {
    let image = ImageBuilder::new(Flavor::Oci).seed(12).build();
    let untagged = ImageBuilder::new(Flavor::Oci).seed(13).build();
    let (_dir, path) = write(
        &ArchiveBuilder::new(ArchiveFormat::Oci)
            .image(&image, &["foo", "127.0.0.1:5000/team/app:2"])
            .image(&untagged, &[]),
    );
    let entries = read_archive(&path);
    let names = by_name(&entries);
    assert_eq!(
        names["oci-layout"].content,
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert!(!names.contains_key("manifest.json"));
    let index_bytes = &names["index.json"].content;
    assert!(
        index_bytes.starts_with(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#),
        "{}",
        String::from_utf8_lossy(index_bytes)
    );
    let index = json_of(&entries, "index.json");
    assert_eq!(
        index["manifests"],
        serde_json::json!([
            {"mediaType": image.media_type(), "digest": image.digest(), "size": image.size(),
             "annotations": {"io.containerd.image.name": "docker.io/library/foo:latest",
                             "org.opencontainers.image.ref.name": "latest"}},
            {"mediaType": image.media_type(), "digest": image.digest(), "size": image.size(),
             "annotations": {"io.containerd.image.name": "127.0.0.1:5000/team/app:2",
                             "org.opencontainers.image.ref.name": "2"}},
            {"mediaType": untagged.media_type(), "digest": untagged.digest(), "size": untagged.size()},
        ])
    );
    assert_blobs_named_by_content(&entries);
    for blob in image.contents().chain(untagged.contents()) {
        assert!(names.contains_key(format!("blobs/sha256/{}", blob.hex()).as_str()));
    }
}

#[test]
fn both_is_the_oci_layout_plus_manifest_json_in_docker_save_order() {
    let image = ImageBuilder::new(Flavor::Docker).seed(14).build();
    let (_dir, path) = write(&ArchiveBuilder::new(ArchiveFormat::Both).image(&image, &["baz:3"]));
    let entries = read_archive(&path);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let tail = &names[names.len() - 4..];
    assert_eq!(
        tail,
        ["index.json", "manifest.json", "oci-layout", "repositories"]
    );
    assert_eq!(&names[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(
        json_of(&entries, "manifest.json")[0]["Config"],
        format!("blobs/sha256/{}", image.config.hex())
    );
    assert_eq!(
        json_of(&entries, "index.json")["manifests"][0]["digest"],
        image.digest()
    );
    assert_blobs_named_by_content(&entries);
}

#[test]
fn partial_layout_keeps_every_manifest_but_only_one_platforms_blobs() {
    let index = IndexBuilder::new(Flavor::Oci)
        .seed(15)
        .platform("linux/amd64", &[LayerSpec::single(100)])
        .platform("linux/arm64", &[LayerSpec::single(100)])
        .with_attestations()
        .build();
    let (_dir, path) = write(
        &ArchiveBuilder::new(ArchiveFormat::Both)
            .index(&index, &["multi:1"])
            .only_platform_blobs("linux/arm64"),
    );
    let entries = read_archive(&path);
    let names = by_name(&entries);
    let has = |digest: &str| {
        names
            .contains_key(format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")).as_str())
    };
    assert!(has(index.digest()));
    for manifest in index.manifests() {
        assert!(has(&manifest.digest), "every manifest stays");
    }
    let amd64 = index.image_for("linux/amd64");
    let arm64 = index.image_for("linux/arm64");
    assert!(amd64.blobs().all(|b| !has(&b.digest)));
    assert!(arm64.blobs().all(|b| has(&b.digest)));
    assert!(index.attestations[1].blobs().all(|b| has(&b.digest)));
    assert!(index.attestations[0].blobs().all(|b| !has(&b.digest)));
    // manifest.json lists only the complete platform image.
    let manifest = json_of(&entries, "manifest.json");
    assert_eq!(manifest.as_array().unwrap().len(), 1);
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", arm64.config.hex())
    );

    let single = index.images[0].layers[0].digest().to_owned();
    let (_dir2, path2) = write(
        &ArchiveBuilder::new(ArchiveFormat::Oci)
            .index(&index, &["multi:1"])
            .omit_blob(&single),
    );
    let names2: Vec<String> = read_archive(&path2).into_iter().map(|e| e.name).collect();
    assert!(!names2.contains(&format!(
        "blobs/sha256/{}",
        single.trim_start_matches("sha256:")
    )));
}

#[test]
fn compressed_archives_hold_the_same_entries() {
    let image = ImageBuilder::new(Flavor::Oci).seed(16).build();
    let plain = ArchiveBuilder::new(ArchiveFormat::Both).image(&image, &["c:1"]);
    let (_d0, p0) = write(&plain);
    let (_d1, p1) = write(&plain.clone().compression(ArchiveCompression::Gzip));
    let (_d2, p2) = write(&plain.clone().compression(ArchiveCompression::Zstd));
    assert!(std::fs::read(&p1).unwrap().starts_with(&[0x1f, 0x8b]));
    assert!(
        std::fs::read(&p2)
            .unwrap()
            .starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
    );
    let listing = |p: &Path| -> Vec<(String, Vec<u8>)> {
        read_archive(p)
            .into_iter()
            .map(|e| (e.name, e.content))
            .collect()
    };
    assert_eq!(listing(&p0), listing(&p1));
    assert_eq!(listing(&p0), listing(&p2));
    // Same inputs, same bytes.
    let (_d3, p3) = write(&plain);
    assert_eq!(std::fs::read(&p0).unwrap(), std::fs::read(&p3).unwrap());
}

#[test]
fn names_normalize_like_docker() {
    let cases = [
        ("foo", "docker.io/library/foo:latest", "latest"),
        ("foo:1.0", "docker.io/library/foo:1.0", "1.0"),
        ("team/app:2", "docker.io/team/app:2", "2"),
        ("localhost/app", "localhost/app:latest", "latest"),
        ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c", "c"),
        ("reg.example/x", "reg.example/x:latest", "latest"),
    ];
    for (input, full, tag) in cases {
        assert_eq!(
            normalize_tagged_name(input),
            (full.to_owned(), tag.to_owned()),
            "{input}"
        );
    }
}

// ---- broken archives -------------------------------------------------------------------------

fn broken(format: ArchiveFormat, breakage: Breakage) -> (Image, Vec<ReadEntry>, Vec<u8>) {
    let image = ImageBuilder::new(Flavor::Oci)
        .seed(17)
        .layer(LayerSpec::single(4000).compression(Compression::None))
        .build();
    let builder = ArchiveBuilder::new(format).image(&image, &["evil:1"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broken.tar");
    builder.broken(breakage).write(&path);
    let bytes = std::fs::read(&path).expect("read broken archive");
    let entries = if breakage == Breakage::Truncated {
        Vec::new()
    } else {
        read_archive(&path)
    };
    (image, entries, bytes)
}

#[test]
fn parent_dir_and_absolute_entries_carry_their_names_verbatim() {
    let (_, entries, bytes) = broken(ArchiveFormat::Both, Breakage::ParentDirEntry);
    assert_eq!(entries[0].name, PARENT_DIR_ENTRY_NAME);
    // The name is the first bytes of the first header, unnormalised.
    assert_eq!(
        &bytes[..PARENT_DIR_ENTRY_NAME.len()],
        PARENT_DIR_ENTRY_NAME.as_bytes()
    );
    assert_eq!(bytes[PARENT_DIR_ENTRY_NAME.len()], 0);

    let (_, entries, bytes) = broken(ArchiveFormat::Oci, Breakage::AbsolutePathEntry);
    assert_eq!(entries[0].name, ABSOLUTE_ENTRY_NAME);
    assert_eq!(
        &bytes[..ABSOLUTE_ENTRY_NAME.len()],
        ABSOLUTE_ENTRY_NAME.as_bytes()
    );
}

#[test]
fn symlink_escapes_point_outside_the_archive() {
    let (image, entries, _) = broken(ArchiveFormat::DockerLegacy, Breakage::SymlinkEscape);
    let manifest = json_of(&entries, "manifest.json");
    let layer_path = manifest[0]["Layers"][0].as_str().unwrap();
    let layer = by_name(&entries)[layer_path];
    assert_eq!(layer.kind, tar::EntryType::Symlink);
    assert_eq!(
        layer.link.as_deref(),
        Some("../../../../../../../../etc/passwd")
    );
    assert_eq!(image.layers.len(), 1);

    let (_, entries, _) = broken(ArchiveFormat::Oci, Breakage::SymlinkDirEscape);
    assert_eq!(entries[0].name, SYMLINK_DIR_NAME);
    assert_eq!(entries[0].kind, tar::EntryType::Symlink);
    assert_eq!(
        entries[0].link.as_deref(),
        Some("../../../../../../../../tmp")
    );
    assert_eq!(
        entries[1].name,
        format!("{SYMLINK_DIR_NAME}/hoist-testkit-through-link")
    );
}

#[test]
fn truncated_archive_stops_inside_the_first_layer() {
    let image = ImageBuilder::new(Flavor::Oci)
        .seed(17)
        .layer(LayerSpec::single(4000).compression(Compression::None))
        .build();
    let builder = ArchiveBuilder::new(ArchiveFormat::Oci).image(&image, &["evil:1"]);
    let raw = builder.to_raw();
    let layer_name = format!("blobs/sha256/{}", image.layers[0].blob.hex());
    let (_, start, size) = raw
        .data_offsets()
        .into_iter()
        .find(|(name, _, _)| *name == layer_name)
        .expect("layer in archive");
    let (_, _, bytes) = broken(ArchiveFormat::Oci, Breakage::Truncated);
    assert_eq!(bytes.len() as u64, start + size / 2);
    let full = raw.to_bytes();
    assert_eq!(&full[..bytes.len()], &bytes[..]);
    // The layer's content really starts there.
    assert_eq!(
        &full[start as usize..(start + size) as usize],
        &image.layers[0].blob.bytes()[..]
    );
}

#[test]
fn blob_content_mismatch_keeps_name_and_size_but_not_content() {
    let (image, entries, _) = broken(ArchiveFormat::Oci, Breakage::BlobContentMismatch);
    let layer = &image.layers[0];
    let entry = by_name(&entries)[format!("blobs/sha256/{}", layer.blob.hex()).as_str()];
    assert_eq!(entry.content.len() as u64, layer.size());
    assert_ne!(sha256_digest(&entry.content), layer.digest());

    let (image, entries, _) = broken(ArchiveFormat::DockerLegacy, Breakage::BlobContentMismatch);
    let name = format!("{}.json", image.config.hex());
    let config = by_name(&entries)[name.as_str()];
    assert_ne!(sha256_digest(&config.content), image.config_digest());
    assert_eq!(config.content.len() as u64, image.config.size);
    serde_json::from_slice::<serde_json::Value>(&config.content)
        .expect("the altered config is still JSON");
}

#[test]
fn malformed_json_and_missing_layer() {
    let (_, entries, _) = broken(ArchiveFormat::DockerBlobs, Breakage::MalformedManifestJson);
    let content = &by_name(&entries)["manifest.json"].content;
    assert!(serde_json::from_slice::<serde_json::Value>(content).is_err());

    let (_, entries, _) = broken(ArchiveFormat::Both, Breakage::MalformedIndexJson);
    let content = &by_name(&entries)["index.json"].content;
    assert!(serde_json::from_slice::<serde_json::Value>(content).is_err());
    assert!(
        serde_json::from_slice::<serde_json::Value>(&by_name(&entries)["manifest.json"].content)
            .is_ok()
    );

    let (image, entries, _) = broken(ArchiveFormat::DockerBlobs, Breakage::MissingLayer);
    let layer_path = format!("blobs/sha256/{}", image.layers[0].blob.hex());
    assert!(!by_name(&entries).contains_key(layer_path.as_str()));
    assert_eq!(
        json_of(&entries, "manifest.json")[0]["Layers"][0],
        layer_path
    );
}
