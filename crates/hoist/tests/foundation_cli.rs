//! The image basics, driven by the real docker CLI: `version`, `info`, `load` of every
//! archive form and compression, `images`, `tag`, `image inspect`, `history`, `rmi`, and a
//! `save` → `load` round trip. Expected IDs and digests come from the testkit generator, never
//! from hoist's store.

mod foundation_support;

use std::collections::BTreeSet;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveCompression, ArchiveFormat};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::HoistdOptions;
use hoist_testkit::image::{
    Compression, Flavor, Image, ImageBuilder, ImageIndex, IndexBuilder, LayerSpec,
    ZstdInDockerManifest, media_type,
};

const COMPRESSIONS: [ArchiveCompression; 3] = [
    ArchiveCompression::None,
    ArchiveCompression::Gzip,
    ArchiveCompression::Zstd,
];

fn small_layer(size: u64, compression: Compression) -> LayerSpec {
    LayerSpec::single(size).compression(compression)
}

/// Loads `archive`, checks the `Loaded image:` line and that the image got `expected_id` and the
/// generator's DiffIDs.
fn load_and_check(
    docker: &DockerCli,
    scratch: &Scratch,
    archive: &ArchiveBuilder,
    tag: &str,
    expected_id: &str,
    diff_ids: &[&str],
) {
    let path = scratch.archive(&format!("{}.tar", tag.replace([':', '/'], "_")), archive);
    let stdout = docker_load(docker, &path);
    assert_eq!(stdout, format!("Loaded image: {tag}\n"));
    let inspected = inspect(docker, tag);
    assert_eq!(inspected["Id"], expected_id, "image ID of {tag}");
    assert_eq!(inspected["RepoTags"], serde_json::json!([tag]));
    assert_eq!(
        inspected["RootFS"],
        serde_json::json!({"Type": "layers", "Layers": diff_ids}),
        "RootFS of {tag}"
    );
}

#[test]
fn docker_version_prints_the_server_without_complaint() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let stdout = docker_ok(&docker, &["version"]);
    let server = stdout
        .split_once("Server: hoist\n")
        .unwrap_or_else(|| panic!("no `Server: hoist` section:\n{stdout}"))
        .1;
    let field = |name: &str| {
        server
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in the server section:\n{server}"))
    };
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("API version"), "1.50 (minimum version 1.24)");
    assert_eq!(field("OS/Arch"), format!("linux/{}", host_arch()));
    assert_eq!(field("Experimental"), "false");

    let formatted = docker_ok(
        &docker,
        &[
            "version",
            "--format",
            "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}",
        ],
    );
    assert_eq!(
        formatted,
        format!("{} 1.50 1.24 linux\n", env!("CARGO_PKG_VERSION"))
    );
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn docker_info_prints_the_daemon_and_registry_settings() {
    let daemon = start_daemon_with(HoistdOptions {
        config: serde_json::json!({
            "insecure-registries": ["registry.test:5000", "10.20.0.0/16"],
            "registry-mirrors": ["https://mirror.test/"],
        }),
        ..Default::default()
    });
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let image = ImageBuilder::new(Flavor::Oci).build();
    let repo = unique_repo("info");
    docker_load(
        &docker,
        &scratch.archive(
            "a.tar",
            &ArchiveBuilder::new(ArchiveFormat::Oci).image(&image, &[&format!("{repo}:1")]),
        ),
    );

    let stdout = docker_ok(&docker, &["info"]);
    let server = stdout
        .split_once("\nServer:\n")
        .unwrap_or_else(|| panic!("no Server section:\n{stdout}"))
        .1;
    for expected in [
        " Images: 1\n".to_owned(),
        format!(" Server Version: {}\n", env!("CARGO_PKG_VERSION")),
        " Storage Driver: hoist\n".to_owned(),
        " Logging Driver: none\n".to_owned(),
        " OSType: linux\n".to_owned(),
        format!(" Architecture: {}\n", std::env::consts::ARCH),
        format!(" Docker Root Dir: {}\n", daemon.data_root().display()),
        " Live Restore Enabled: false\n".to_owned(),
        format!(
            " CPUs: {}\n",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        // dockerd's order: named registries, the configured CIDRs, then the loopback ones.
        " Insecure Registries:\n  registry.test:5000\n  10.20.0.0/16\n  ::1/128\n  127.0.0.0/8\n"
            .to_owned(),
        " Registry Mirrors:\n  https://mirror.test/\n".to_owned(),
    ] {
        assert!(
            server.contains(&expected),
            "docker info lacks {expected:?}:\n{stdout}"
        );
    }
    assert!(server.contains(" Debug Mode: "), "{stdout}");
    let field = |name: &str| {
        server
            .lines()
            .find_map(|l| l.strip_prefix(&format!(" {name}: ")))
            .unwrap_or_else(|| panic!("no {name} in docker info:\n{stdout}"))
            .to_owned()
    };
    assert!(!field("ID").is_empty());
    assert!(!field("Name").is_empty());
    assert!(!field("Operating System").is_empty());
    assert!(field("Total Memory").ends_with("GiB") || field("Total Memory").ends_with("MiB"));
    // The daemon ID is stable across restarts, as dockerd's engine-id.
    let formatted = docker_ok(&docker, &["info", "--format", "{{.ID}} {{.Images}}"]);
    assert_eq!(formatted, format!("{} 1\n", field("ID")));
}

#[test]
fn load_docker_legacy_archives_in_every_compression() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    for compression in COMPRESSIONS {
        // gzip and plain layers, and the first layer again: docker save writes the repeat as a
        // symlink `../<first>/layer.tar`.
        let image = ImageBuilder::new(Flavor::Docker)
            .layer(small_layer(3000, Compression::GZIP))
            .layer(small_layer(2000, Compression::None))
            .repeat_layer(0)
            .build();
        let tag = format!("{}:1", unique_repo("legacy"));
        let archive = ArchiveBuilder::new(ArchiveFormat::DockerLegacy)
            .compression(compression)
            .image(&image, &[&tag]);
        assert!(
            archive
                .to_raw()
                .entries
                .iter()
                .any(|e| matches!(e.kind, hoist_testkit::archive::RawKind::Symlink(_))),
            "the repeated layer is a symlink in the archive"
        );
        // containerd's importer (moby's containerd store) gives exactly this ID.
        load_and_check(
            &docker,
            &scratch,
            &archive,
            &tag,
            &image.docker_archive_id(),
            &image.diff_ids(),
        );
        assert_eq!(image.docker_archive_id(), image.digest());

        // zstd layers are labelled zstd by hoist (a documented difference from containerd,
        // which labels them gzip), so the ID is that of the honest manifest.
        let zstd_image = ImageBuilder::new(Flavor::Docker)
            .zstd_in_docker_manifest(ZstdInDockerManifest::AsZstd)
            .layer(small_layer(2500, Compression::ZSTD))
            .layer(small_layer(1500, Compression::GZIP))
            .build();
        let zstd_tag = format!("{}:zstd", unique_repo("legacy"));
        load_and_check(
            &docker,
            &scratch,
            &ArchiveBuilder::new(ArchiveFormat::DockerLegacy)
                .compression(compression)
                .image(&zstd_image, &[&zstd_tag]),
            &zstd_tag,
            zstd_image.digest(),
            &zstd_image.diff_ids(),
        );
        assert_ne!(zstd_image.digest(), zstd_image.docker_archive_id());
        assert_eq!(
            zstd_image.manifest_json()["layers"][0]["mediaType"],
            media_type::DOCKER_LAYER_ZSTD
        );
    }
}

#[test]
fn load_docker_blobs_archives_in_every_compression() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    for compression in COMPRESSIONS {
        // An OCI-flavoured image in a docker-archive: the manifest is rebuilt as Docker schema2.
        let image = ImageBuilder::new(Flavor::Oci)
            .layer(small_layer(1000, Compression::None))
            .layer(small_layer(4000, Compression::GZIP))
            .build();
        let tag = format!("{}:blobs", unique_repo("registry.test:5000/team/blobs"));
        load_and_check(
            &docker,
            &scratch,
            &ArchiveBuilder::new(ArchiveFormat::DockerBlobs)
                .compression(compression)
                .image(&image, &[&tag]),
            &tag,
            &image.docker_archive_id(),
            &image.diff_ids(),
        );
        assert_ne!(image.docker_archive_id(), image.digest());

        let zstd_image = ImageBuilder::new(Flavor::Docker)
            .zstd_in_docker_manifest(ZstdInDockerManifest::AsZstd)
            .layer(small_layer(2500, Compression::ZSTD))
            .build();
        let zstd_tag = format!("{}:zstd", unique_repo("user/blobs"));
        load_and_check(
            &docker,
            &scratch,
            &ArchiveBuilder::new(ArchiveFormat::DockerBlobs)
                .compression(compression)
                .image(&zstd_image, &[&zstd_tag]),
            &zstd_tag,
            zstd_image.digest(),
            &zstd_image.diff_ids(),
        );
    }
}

#[test]
fn load_oci_layouts_in_every_compression() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    for compression in COMPRESSIONS {
        let image = ImageBuilder::new(Flavor::Oci)
            .layer(small_layer(1000, Compression::ZSTD))
            .layer(small_layer(3000, Compression::GZIP))
            .layer(small_layer(500, Compression::None))
            .build();
        let tag = format!("{}:oci", unique_repo("oci"));
        load_and_check(
            &docker,
            &scratch,
            &ArchiveBuilder::new(ArchiveFormat::Oci)
                .compression(compression)
                .image(&image, &[&tag]),
            &tag,
            image.digest(),
            &image.diff_ids(),
        );
        let descriptor = inspect(&docker, &tag)["Descriptor"].clone();
        assert_eq!(descriptor, image.descriptor());
    }
}

#[test]
fn load_of_both_layouts_takes_index_json() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    for compression in COMPRESSIONS {
        // manifest.json would give the rebuilt schema2 manifest's ID; index.json must win.
        let image = ImageBuilder::new(Flavor::Oci)
            .layer(small_layer(2000, Compression::GZIP))
            .build();
        assert_ne!(image.digest(), image.docker_archive_id());
        let tag = format!("{}:both", unique_repo("both"));
        load_and_check(
            &docker,
            &scratch,
            &ArchiveBuilder::new(ArchiveFormat::Both)
                .compression(compression)
                .image(&image, &[&tag]),
            &tag,
            image.digest(),
            &image.diff_ids(),
        );
    }
}

fn multi_platform_index() -> ImageIndex {
    IndexBuilder::new(Flavor::Oci)
        .platform(
            "linux/amd64",
            &[
                small_layer(3000, Compression::GZIP),
                small_layer(1000, Compression::ZSTD),
            ],
        )
        .platform("linux/arm64/v8", &[small_layer(2000, Compression::GZIP)])
        .with_attestations()
        .build()
}

/// The platform image hoist shows for an index on this host (amd64 or arm64 hosts).
fn host_image(index: &ImageIndex) -> &Image {
    index
        .images
        .iter()
        .find(|i| i.platform.architecture == host_arch())
        .expect("the test index has an image for this host's architecture")
}

#[test]
fn load_multi_platform_index_keeps_it_whole_and_byte_identical() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    for (format, compression) in [
        (ArchiveFormat::Oci, ArchiveCompression::None),
        (ArchiveFormat::Oci, ArchiveCompression::Gzip),
        (ArchiveFormat::Both, ArchiveCompression::Zstd),
    ] {
        let index = multi_platform_index();
        let tag = format!("{}:multi", unique_repo("multi"));
        let shown = host_image(&index);
        load_and_check(
            &docker,
            &scratch,
            &ArchiveBuilder::new(format)
                .compression(compression)
                .index(&index, &[&tag]),
            &tag,
            index.digest(),
            &shown.diff_ids(),
        );

        // The raw API answer at 1.50: the Descriptor is the index itself.
        let response = daemon.request("GET", &format!("/v1.50/images/{tag}/json"), &[], b"");
        assert_eq!(response.status, 200, "{}", response.text());
        let body = response.json();
        assert_eq!(body["Id"], index.digest());
        assert_eq!(
            body["Descriptor"],
            serde_json::json!({
                "mediaType": media_type::OCI_INDEX,
                "digest": index.digest(),
                "size": index.index.size,
            })
        );
        assert_eq!(body["Architecture"], host_arch());
        assert_eq!(body["Os"], "linux");

        // Saving it gives back every blob of the index byte for byte, and nothing else.
        let saved = scratch.path(&format!("saved-{}.tar", tag.replace(':', "_")));
        docker_ok(&docker, &["save", "-o", saved.to_str().unwrap(), &tag]);
        let files = tar_files(&saved);
        let saved_blobs: BTreeSet<&str> = files
            .keys()
            .filter_map(|k| k.strip_prefix("blobs/sha256/"))
            .collect();
        let expected_blobs: BTreeSet<&str> = index.contents().map(|b| b.hex()).collect();
        assert_eq!(saved_blobs, expected_blobs);
        for blob in index.contents() {
            assert_eq!(
                files[&format!("blobs/sha256/{}", blob.hex())],
                blob.bytes(),
                "saved {} differs from the generated blob",
                blob.digest
            );
        }
        let saved_index: serde_json::Value =
            serde_json::from_slice(&files["index.json"]).expect("index.json is JSON");
        assert_eq!(saved_index["manifests"][0]["digest"], index.digest());
        assert_eq!(
            saved_index["manifests"][0]["annotations"]["io.containerd.image.name"],
            format!("docker.io/library/{tag}")
        );
    }
}

#[test]
fn load_partial_multi_platform_index_keeps_the_index_id() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let index = multi_platform_index();
    let tag = format!("{}:partial", unique_repo("partial"));
    let shown = host_image(&index);
    let platform = shown.platform.to_string();
    load_and_check(
        &docker,
        &scratch,
        &ArchiveBuilder::new(ArchiveFormat::Oci)
            .index(&index, &[&tag])
            .only_platform_blobs(&platform),
        &tag,
        index.digest(),
        &shown.diff_ids(),
    );
    // The missing platform's layers are absent from the data root; the present ones are there.
    let stored = stored_blobs(&daemon.data_root());
    for layer in &shown.layers {
        assert!(stored.contains_key(layer.blob.hex()));
    }
    for other in index.images.iter().filter(|i| i.platform != shown.platform) {
        for layer in &other.layers {
            assert!(!stored.contains_key(layer.blob.hex()));
        }
    }
    // Saved, it holds what is present (the whole index, every manifest, the present platform's
    // config and layers); loaded again, it is the same image.
    let saved = scratch.path("partial-saved.tar");
    docker_ok(&docker, &["save", "-o", saved.to_str().unwrap(), &tag]);
    let files = tar_files(&saved);
    let saved_blobs: BTreeSet<&str> = files
        .keys()
        .filter_map(|k| k.strip_prefix("blobs/sha256/"))
        .collect();
    let present: BTreeSet<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(saved_blobs, present);
    assert!(saved_blobs.contains(index.index.hex()));
    for manifest in index.manifests() {
        assert!(
            saved_blobs.contains(manifest.hex()),
            "manifest {} saved",
            manifest.digest
        );
    }
    docker_ok(&docker, &["rmi", &tag]);
    assert_eq!(stored_blobs(&daemon.data_root()).len(), 0);
    assert_eq!(
        docker_load(&docker, &saved),
        format!("Loaded image: {tag}\n")
    );
    assert_eq!(inspect(&docker, &tag)["Id"], index.digest());
    assert_eq!(stored_blobs(&daemon.data_root()), stored);
}

#[test]
fn load_untagged_image_prints_its_id_and_lists_it_as_dangling() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let image = ImageBuilder::new(Flavor::Oci).build();
    let stdout = docker_load(
        &docker,
        &scratch.archive(
            "untagged.tar",
            &ArchiveBuilder::new(ArchiveFormat::Oci).image(&image, &[]),
        ),
    );
    assert_eq!(stdout, format!("Loaded image ID: {}\n", image.digest()));
    let dangling = docker_ok(
        &docker,
        &[
            "images",
            "-f",
            "dangling=true",
            "--format",
            "{{.ID}} {{.Repository}} {{.Tag}}",
        ],
    );
    assert_eq!(
        dangling,
        format!("{} <none> <none>\n", short_id(image.digest()))
    );

    let legacy = ImageBuilder::new(Flavor::Docker).build();
    let stdout = docker_load(
        &docker,
        &scratch.archive(
            "untagged-legacy.tar",
            &ArchiveBuilder::new(ArchiveFormat::DockerLegacy).image(&legacy, &[]),
        ),
    );
    assert_eq!(
        stdout,
        format!("Loaded image ID: {}\n", legacy.docker_archive_id())
    );
}

#[test]
fn images_lists_columns_tags_filters_digests_and_quiet_ids() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let repo_a = unique_repo("alpha");
    let repo_b = unique_repo("localhost:5000/team/beta");
    // Distinct creation times make the newest-first order certain.
    let a = ImageBuilder::new(Flavor::Oci)
        .created("2025-03-01T00:00:00Z")
        .layer(small_layer(4000, Compression::GZIP))
        .build();
    let b = ImageBuilder::new(Flavor::Docker)
        .created("2025-02-01T00:00:00Z")
        .layer(small_layer(2000, Compression::None))
        .build();
    let c = ImageBuilder::new(Flavor::Oci)
        .created("2025-01-01T00:00:00Z")
        .build();
    let archive = ArchiveBuilder::new(ArchiveFormat::Oci)
        .image(&a, &[&format!("{repo_a}:1"), &format!("{repo_a}:2")])
        .image(&c, &[]);
    let loaded = docker_load(&docker, &scratch.archive("ac.tar", &archive));
    assert_eq!(
        loaded,
        format!(
            "Loaded image: {repo_a}:1\nLoaded image: {repo_a}:2\nLoaded image ID: {}\n",
            c.digest()
        )
    );
    docker_load(
        &docker,
        &scratch.archive(
            "b.tar",
            &ArchiveBuilder::new(ArchiveFormat::DockerLegacy).image(&b, &[&format!("{repo_b}:v1")]),
        ),
    );

    let content_size = |image: &Image| image.size() + image.blobs_size();
    let rows = table(&docker_ok(&docker, &["images"]));
    assert_eq!(
        rows[0],
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        "header"
    );
    let body: Vec<Vec<String>> = rows[1..]
        .iter()
        .map(|r| {
            assert!(r[3].ends_with(" ago"), "CREATED column: {r:?}");
            vec![r[0].clone(), r[1].clone(), r[2].clone(), r[4].clone()]
        })
        .collect();
    let row = |repo: &str, tag: &str, image: &Image, id: &str| {
        vec![
            repo.to_owned(),
            tag.to_owned(),
            short_id(id),
            human_size(content_size(image)),
        ]
    };
    assert_eq!(
        body,
        [
            row(&repo_a, "1", &a, a.digest()),
            row(&repo_a, "2", &a, a.digest()),
            row(&repo_b, "v1", &b, &b.docker_archive_id()),
            row("<none>", "<none>", &c, c.digest()),
        ]
    );

    let format = "{{.Repository}}:{{.Tag}} {{.ID}}";
    assert_eq!(
        docker_ok(
            &docker,
            &["images", "-f", "dangling=true", "--format", format]
        ),
        format!("<none>:<none> {}\n", short_id(c.digest()))
    );
    assert_eq!(
        docker_ok(&docker, &["images", "-f", "dangling=false", "-q"]),
        format!(
            "{a}\n{a}\n{b}\n",
            a = short_id(a.digest()),
            b = short_id(&b.docker_archive_id())
        )
    );
    assert_eq!(
        docker_ok(
            &docker,
            &[
                "images",
                "-f",
                &format!("reference={repo_a}:2"),
                "--format",
                format
            ]
        ),
        format!("{repo_a}:2 {}\n", short_id(a.digest()))
    );
    assert_eq!(
        docker_ok(
            &docker,
            &[
                "images",
                "-f",
                "reference=localhost:5000/*/*",
                "--format",
                format
            ]
        ),
        format!("{repo_b}:v1 {}\n", short_id(&b.docker_archive_id()))
    );
    // A positional repository argument is a reference filter too.
    assert_eq!(
        docker_ok(&docker, &["images", &repo_a, "--format", "{{.Tag}}"]),
        "1\n2\n"
    );
    assert_eq!(
        docker_ok(
            &docker,
            &["images", "-f", "reference=nothing-like-this", "-q"]
        ),
        ""
    );
    assert_eq!(
        docker_ok(&docker, &["images", "-q", "--no-trunc"]),
        format!(
            "{a}\n{a}\n{b}\n{c}\n",
            a = a.digest(),
            b = b.docker_archive_id(),
            c = c.digest()
        )
    );

    let with_digests = table(&docker_ok(&docker, &["images", "--digests"]));
    assert_eq!(
        with_digests[0],
        ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    );
    // As moby's containerd store: a named image has the digest of its ID in its repository; a
    // dangling one has none.
    let digests: Vec<[&str; 3]> = with_digests[1..]
        .iter()
        .map(|r| [r[0].as_str(), r[1].as_str(), r[2].as_str()])
        .collect();
    let b_id = b.docker_archive_id();
    assert_eq!(
        digests,
        [
            [repo_a.as_str(), "1", a.digest()],
            [repo_a.as_str(), "2", a.digest()],
            [repo_b.as_str(), "v1", b_id.as_str()],
            ["<none>", "<none>", "<none>"],
        ]
    );
}

#[test]
fn tag_adds_names_and_moving_a_tag_leaves_the_old_image_dangling() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let repo = unique_repo("tagged");
    let old = ImageBuilder::new(Flavor::Oci).build();
    let new = ImageBuilder::new(Flavor::Oci).build();
    docker_load(
        &docker,
        &scratch.archive(
            "old.tar",
            &ArchiveBuilder::new(ArchiveFormat::Oci).image(&old, &[&format!("{repo}:latest")]),
        ),
    );
    docker_load(
        &docker,
        &scratch.archive(
            "new.tar",
            &ArchiveBuilder::new(ArchiveFormat::Oci).image(&new, &[&format!("{repo}:next")]),
        ),
    );

    // New names for an image, by name, short ID and full ID.
    assert_eq!(docker_ok(&docker, &["tag", &repo, "other.test/x/y:1"]), "");
    assert_eq!(
        docker_ok(
            &docker,
            &["tag", &short_id(old.digest()), &format!("{repo}-copy")]
        ),
        ""
    );
    assert_eq!(
        docker_ok(&docker, &["tag", old.digest(), &format!("{repo}:old")]),
        ""
    );
    let old_tags = inspect(&docker, old.digest())["RepoTags"].clone();
    assert_eq!(
        old_tags,
        // Sorted by full name, as containerd lists image records.
        serde_json::json!([
            format!("{repo}-copy:latest"),
            format!("{repo}:latest"),
            format!("{repo}:old"),
            "other.test/x/y:1",
        ])
    );

    // Moving `latest` to the new image: the old one keeps its other names.
    docker_ok(&docker, &["tag", &format!("{repo}:next"), &repo]);
    assert_eq!(inspect(&docker, &repo)["Id"], new.digest());
    // Remove two of the old image's remaining names; moving its last one away leaves it
    // dangling, not deleted.
    for name in [
        "other.test/x/y:1",
        &format!("docker.io/library/{repo}-copy"),
    ] {
        assert_eq!(
            docker_ok(&docker, &["rmi", name]),
            format!("Untagged: {}\n", familiar(name))
        );
    }
    assert_eq!(
        docker_ok(&docker, &["images", "-f", "dangling=true", "-q"]),
        ""
    );
    docker_ok(&docker, &["tag", new.digest(), &format!("{repo}:old")]);
    assert_eq!(
        docker_ok(
            &docker,
            &[
                "images",
                "-f",
                "dangling=true",
                "--format",
                "{{.ID}} {{.Repository}}:{{.Tag}}"
            ]
        ),
        format!("{} <none>:<none>\n", short_id(old.digest()))
    );
    // The dangling image is still whole: it can be inspected and named again.
    assert_eq!(
        inspect(&docker, &short_id(old.digest()))["RepoTags"],
        serde_json::json!([])
    );
    docker_ok(
        &docker,
        &["tag", &short_id(old.digest()), &format!("{repo}:back")],
    );
    assert_eq!(
        docker_ok(&docker, &["images", "-f", "dangling=true", "-q"]),
        ""
    );

    // Errors, as moby words them.
    let missing = docker_fails(&docker, &["tag", "no-such-image-here", "x:1"]);
    assert_eq!(
        missing.stderr,
        "Error response from daemon: No such image: no-such-image-here:latest\n"
    );
    let bad = docker_fails(&docker, &["tag", &repo, "Bad/Name"]);
    assert!(bad.stderr.contains("invalid reference format"), "{bad}");
}

/// `docker.io/library/foo:latest` style input → what the CLI prints (`foo:latest`).
fn familiar(name: &str) -> String {
    let with_tag = if name
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
    {
        name.to_owned()
    } else {
        format!("{name}:latest")
    };
    with_tag
        .strip_prefix("docker.io/library/")
        .unwrap_or(&with_tag)
        .to_owned()
}

#[test]
fn inspect_shows_the_generated_config_rootfs_and_platform() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let image = ImageBuilder::new(Flavor::Oci)
        .platform(hoist_testkit::image::Platform::new(
            "linux",
            "arm64",
            Some("v8"),
        ))
        .env("HOIST_TEST=1")
        .cmd(&["/bin/app", "--serve"])
        .label("org.example.team", "foundation")
        .layers([
            small_layer(1000, Compression::GZIP),
            small_layer(1000, Compression::ZSTD),
        ])
        .build();
    let tag = format!("{}:v1", unique_repo("inspected"));
    docker_load(
        &docker,
        &scratch.archive(
            "i.tar",
            &ArchiveBuilder::new(ArchiveFormat::Oci).image(&image, &[&tag]),
        ),
    );
    let generated: serde_json::Value =
        serde_json::from_slice(&image.config_bytes()).expect("config JSON");
    for name in [
        tag.clone(),
        format!("docker.io/library/{tag}"),
        image.digest().to_owned(),
        image.digest().trim_start_matches("sha256:").to_owned(),
        short_id(image.digest()),
        format!("{}@{}", tag.split(':').next().unwrap(), image.digest()),
    ] {
        let inspected = inspect(&docker, &name);
        assert_eq!(inspected["Id"], image.digest(), "inspect {name}");
        assert_eq!(inspected["RepoTags"], serde_json::json!([tag]));
        assert_eq!(inspected["RepoDigests"], serde_json::json!([]));
        assert_eq!(inspected["Architecture"], "arm64");
        assert_eq!(inspected["Variant"], "v8");
        assert_eq!(inspected["Os"], "linux");
        assert_eq!(inspected["Created"], "2025-01-01T00:00:00Z");
        assert_eq!(inspected["Config"], generated["config"]);
        assert_eq!(
            inspected["RootFS"],
            serde_json::json!({"Type": "layers", "Layers": image.diff_ids()})
        );
        assert_eq!(inspected["Size"], image.size() + image.blobs_size());
        assert_eq!(inspected["Descriptor"], image.descriptor());
    }
    let format = docker_ok(
        &docker,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}} {{index .Config.Labels \"org.example.team\"}}",
            &tag,
        ],
    );
    assert_eq!(format, "linux/arm64 foundation\n");

    let missing = docker_fails(&docker, &["image", "inspect", "nothing-here:v9"]);
    assert_eq!(missing.stdout, "[]\n");
    assert_eq!(
        missing.stderr,
        "Error response from daemon: No such image: nothing-here:v9\n"
    );
}

#[test]
fn history_lists_the_generated_history_newest_first() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let image = ImageBuilder::new(Flavor::Docker)
        .layers([
            small_layer(4000, Compression::GZIP),
            small_layer(1000, Compression::None),
            small_layer(7000, Compression::GZIP),
        ])
        .build();
    let tag = format!("{}:h", unique_repo("history"));
    docker_load(
        &docker,
        &scratch.archive(
            "h.tar",
            &ArchiveBuilder::new(ArchiveFormat::DockerBlobs).image(&image, &[&tag]),
        ),
    );
    let rows = docker_ok(
        &docker,
        &[
            "history",
            "--no-trunc",
            "--format",
            "{{.ID}}|{{.CreatedBy}}|{{.Comment}}",
            &tag,
        ],
    );
    let mut expected = String::new();
    for (i, layer) in image.layers.iter().enumerate().rev() {
        let id = if i + 1 == image.layers.len() {
            image.digest().to_owned()
        } else {
            "<missing>".to_owned()
        };
        expected.push_str(&format!(
            "{id}|COPY layer-{i} / # {}|hoist-testkit\n",
            layer.diff_id
        ));
    }
    assert_eq!(rows, expected);
    let table_rows = table(&docker_ok(&docker, &["history", &tag]));
    assert_eq!(
        table_rows[0],
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    );
    assert_eq!(table_rows.len(), 4);
    assert_eq!(table_rows[1][0], short_id(image.digest()));
    let missing = docker_fails(&docker, &["history", "nope-history"]);
    assert_eq!(
        missing.stderr,
        "Error response from daemon: No such image: nope-history:latest\n"
    );
}

#[test]
fn rmi_untags_then_deletes_and_collects_the_blobs() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let repo = unique_repo("removed");
    let shared = ImageBuilder::new(Flavor::Oci)
        .layer(small_layer(3000, Compression::GZIP))
        .build();
    let image = ImageBuilder::new(Flavor::Oci)
        .existing_layer(&shared.layers[0])
        .layer(small_layer(2000, Compression::GZIP))
        .build();
    docker_load(
        &docker,
        &scratch.archive(
            "r.tar",
            &ArchiveBuilder::new(ArchiveFormat::Oci)
                .image(&image, &[&format!("{repo}:1"), &format!("{repo}:2")])
                .image(&shared, &[&format!("{repo}-shared:1")]),
        ),
    );
    let hex = |b: &hoist_testkit::image::Blob| b.hex().to_owned();
    let image_only: Vec<String> = vec![
        hex(&image.manifest),
        hex(&image.config),
        hex(&image.layers[1].blob),
    ];
    let stored = stored_blobs(&daemon.data_root());
    for blob in image.contents().chain(shared.contents()) {
        assert!(stored.contains_key(blob.hex()), "{} stored", blob.digest);
    }

    // Another tag keeps the image: only the name goes.
    assert_eq!(
        docker_ok(&docker, &["rmi", &format!("{repo}:1")]),
        format!("Untagged: {repo}:1\n")
    );
    assert_eq!(
        inspect(&docker, image.digest())["RepoTags"],
        serde_json::json!([format!("{repo}:2")])
    );
    // The last tag: untagged and deleted, its own blobs collected, the shared layer kept.
    assert_eq!(
        docker_ok(&docker, &["rmi", &format!("{repo}:2")]),
        format!("Untagged: {repo}:2\nDeleted: {}\n", image.digest())
    );
    let stored = stored_blobs(&daemon.data_root());
    for hex in &image_only {
        assert!(
            !stored.contains_key(hex),
            "blob {hex} of the deleted image is gone"
        );
    }
    for blob in shared.contents() {
        assert!(
            stored.contains_key(blob.hex()),
            "{} of the other image kept",
            blob.digest
        );
    }
    let missing = docker_fails(&docker, &["rmi", &format!("{repo}:2")]);
    assert_eq!(
        missing.stderr,
        format!("Error response from daemon: No such image: {repo}:2\n")
    );

    // By short ID, with one name.
    assert_eq!(
        docker_ok(&docker, &["rmi", &short_id(shared.digest())]),
        format!("Untagged: {repo}-shared:1\nDeleted: {}\n", shared.digest())
    );
    assert_eq!(stored_blobs(&daemon.data_root()).len(), 0);
    assert_eq!(docker_ok(&docker, &["images", "-q"]), "");
}

#[test]
fn rmi_by_id_of_an_image_with_several_names_needs_force() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let repo = unique_repo("multi-named");
    let image = ImageBuilder::new(Flavor::Docker).build();
    let id = image.docker_archive_id();
    docker_load(
        &docker,
        &scratch.archive(
            "m.tar",
            &ArchiveBuilder::new(ArchiveFormat::DockerLegacy)
                .image(&image, &[&format!("{repo}:1"), &format!("{repo}-other:1")]),
        ),
    );
    let conflict = docker_fails(&docker, &["rmi", &short_id(&id)]);
    assert_eq!(
        conflict.stderr,
        format!(
            "Error response from daemon: conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories\n",
            short_id(&id)
        )
    );
    // Raw: 409 with the same message.
    let raw = daemon.request(
        "DELETE",
        &format!("/v1.50/images/{}", short_id(&id)),
        &[],
        b"",
    );
    assert_eq!(raw.status, 409);
    assert_eq!(raw.header("content-type"), Some("application/json"));
    assert_eq!(
        raw.json()["message"],
        format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            short_id(&id)
        )
    );
    // Two tags of one repository are several references too (moby's containerd store and
    // graphdriver both refuse).
    docker_ok(&docker, &["rmi", &format!("{repo}-other:1")]);
    docker_ok(
        &docker,
        &["tag", &format!("{repo}:1"), &format!("{repo}:2")],
    );
    docker_fails(&docker, &["rmi", &id]);
    assert_eq!(
        docker_ok(&docker, &["rmi", "-f", &id]),
        format!("Untagged: {repo}:1\nUntagged: {repo}:2\nDeleted: {id}\n")
    );
    assert_eq!(docker_ok(&docker, &["images", "-q"]), "");
    assert_eq!(stored_blobs(&daemon.data_root()).len(), 0);
}

#[test]
fn save_then_load_round_trips_with_blobs_byte_identical() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let repo = unique_repo("saved");
    let oci = ImageBuilder::new(Flavor::Oci)
        .layers([
            small_layer(5000, Compression::GZIP),
            small_layer(2000, Compression::ZSTD),
        ])
        .build();
    let legacy = ImageBuilder::new(Flavor::Docker)
        .layers([
            small_layer(3000, Compression::None),
            small_layer(3000, Compression::GZIP),
        ])
        .build();
    docker_load(
        &docker,
        &scratch.archive(
            "oci.tar",
            &ArchiveBuilder::new(ArchiveFormat::Oci).image(&oci, &[&format!("{repo}:oci")]),
        ),
    );
    docker_load(
        &docker,
        &scratch.archive(
            "legacy.tar",
            &ArchiveBuilder::new(ArchiveFormat::DockerLegacy)
                .compression(ArchiveCompression::Gzip)
                .image(&legacy, &[&format!("{repo}:legacy")]),
        ),
    );
    let legacy_id = legacy.docker_archive_id();

    // Saving the repository saves every tag of it.
    let saved = scratch.path("saved.tar");
    assert_eq!(
        docker_ok(&docker, &["save", "-o", saved.to_str().unwrap(), &repo]),
        ""
    );
    let files = tar_files(&saved);
    let mut expected: BTreeSet<String> = oci.contents().map(|b| b.hex().to_owned()).collect();
    expected.extend(legacy.blobs().map(|b| b.hex().to_owned()));
    expected.insert(legacy_id.trim_start_matches("sha256:").to_owned());
    let saved_blobs: BTreeSet<String> = files
        .keys()
        .filter_map(|k| k.strip_prefix("blobs/sha256/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(saved_blobs, expected);
    for (name, bytes) in &files {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(
                digest_of(bytes),
                format!("sha256:{hex}"),
                "{name} hashes to its name"
            );
        }
    }
    for blob in oci.contents().chain(legacy.blobs()) {
        assert_eq!(files[&format!("blobs/sha256/{}", blob.hex())], blob.bytes());
    }
    assert_eq!(
        files[&format!("blobs/sha256/{}", legacy_id.trim_start_matches("sha256:"))],
        legacy.docker_archive_manifest_bytes(),
        "the stored manifest of the docker-archive is containerd's"
    );
    let manifest_json: serde_json::Value =
        serde_json::from_slice(&files["manifest.json"]).expect("manifest.json");
    let entries = manifest_json.as_array().expect("manifest.json is an array");
    assert_eq!(entries.len(), 2);
    for entry in entries {
        let tags = entry["RepoTags"].as_array().expect("RepoTags");
        assert_eq!(tags.len(), 1);
    }
    assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);

    // Through stdout, by ID and by full name, too.
    let by_id = docker
        .command(&["save", &short_id(oci.digest())])
        .output()
        .expect("docker save");
    assert!(
        by_id.status.success(),
        "{}",
        String::from_utf8_lossy(&by_id.stderr)
    );
    let by_id_path = scratch.path("by-id.tar");
    std::fs::write(&by_id_path, &by_id.stdout).unwrap();
    let by_id_files = tar_files(&by_id_path);
    let by_id_index: serde_json::Value =
        serde_json::from_slice(&by_id_files["index.json"]).unwrap();
    assert_eq!(by_id_index["manifests"][0]["digest"], oci.digest());

    // Delete everything, load the saved archive: same IDs, same names.
    docker_ok(
        &docker,
        &["rmi", &format!("{repo}:oci"), &format!("{repo}:legacy")],
    );
    assert_eq!(stored_blobs(&daemon.data_root()).len(), 0);
    let loaded = docker_load(&docker, &saved);
    let lines: BTreeSet<&str> = loaded.lines().collect();
    assert_eq!(
        lines,
        BTreeSet::from([
            format!("Loaded image: {repo}:oci").as_str(),
            format!("Loaded image: {repo}:legacy").as_str()
        ])
    );
    assert_eq!(inspect(&docker, &format!("{repo}:oci"))["Id"], oci.digest());
    assert_eq!(inspect(&docker, &format!("{repo}:legacy"))["Id"], legacy_id);
    assert_every_blob_hashes_to_its_name(&daemon.data_root());
    assert_eq!(
        stored_blobs(&daemon.data_root())
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        expected
    );
}

#[test]
fn load_over_an_existing_tag_moves_it_and_reloading_changes_nothing() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let tag = format!("{}:1", unique_repo("reloaded"));
    let first = ImageBuilder::new(Flavor::Oci).build();
    let second = ImageBuilder::new(Flavor::Docker).build();
    let first_archive = scratch.archive(
        "first.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci).image(&first, &[&tag]),
    );
    assert_eq!(
        docker_load(&docker, &first_archive),
        format!("Loaded image: {tag}\n")
    );
    // The same archive again: same answer, one image, no extra content.
    let blobs = stored_blobs(&daemon.data_root());
    assert_eq!(
        docker_load(&docker, &first_archive),
        format!("Loaded image: {tag}\n")
    );
    assert_eq!(stored_blobs(&daemon.data_root()), blobs);
    assert_eq!(
        docker_ok(&docker, &["images", "-q", "--no-trunc"]),
        format!("{}\n", first.digest())
    );
    // Another image under the same name takes it; the first stays, dangling.
    docker_load(
        &docker,
        &scratch.archive(
            "second.tar",
            &ArchiveBuilder::new(ArchiveFormat::DockerLegacy).image(&second, &[&tag]),
        ),
    );
    assert_eq!(inspect(&docker, &tag)["Id"], second.docker_archive_id());
    assert_eq!(
        docker_ok(
            &docker,
            &["images", "-f", "dangling=true", "-q", "--no-trunc"]
        ),
        format!("{}\n", first.digest())
    );
    // Loading the first again names it again: nothing is dangling any more.
    docker_load(
        &docker,
        &scratch.archive(
            "first-other-name.tar",
            &ArchiveBuilder::new(ArchiveFormat::Oci).image(&first, &[&format!("{tag}-again")]),
        ),
    );
    assert_eq!(
        docker_ok(&docker, &["images", "-f", "dangling=true", "-q"]),
        ""
    );
    assert_eq!(
        docker_ok(&docker, &["rmi", &format!("{tag}-again")]),
        format!("Untagged: {tag}-again\nDeleted: {}\n", first.digest())
    );
}
