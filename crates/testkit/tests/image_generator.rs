//! The generator's images are valid and its digests right, checked against the real registry via
//! skopeo (an independent client) and against hand-computed hashes.

use std::io::Read;

use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::image::{
    Compression, Flavor, Image, ImageBuilder, IndexBuilder, LayerSpec, ZstdInDockerManifest,
    media_type, sha256_digest,
};
use hoist_testkit::registry::TestRegistry;
use hoist_testkit::skopeo;

fn three_layer_image(flavor: Flavor, seed: u64) -> Image {
    ImageBuilder::new(flavor)
        .seed(seed)
        .layer(LayerSpec::files(&[3000, 10]).compression(Compression::GZIP))
        .layer(LayerSpec::single(70_000).compression(Compression::ZSTD))
        .layer(LayerSpec::single(512).compression(Compression::None))
        .label("purpose", "testkit")
        .build()
}

/// Asserts the registry holds `image` under `repo` exactly: manifest bytes, digest, media type,
/// config and every layer.
fn assert_registry_holds(registry: &TestRegistry, repo: &str, image: &Image) {
    let fetched = registry.get_manifest(repo, image.digest());
    assert_eq!(
        fetched.bytes,
        image.manifest_bytes(),
        "manifest bytes differ for {repo}"
    );
    assert_eq!(fetched.digest, image.digest());
    assert_eq!(fetched.content_type, image.media_type());
    assert_eq!(sha256_digest(&fetched.bytes), image.digest());
    for blob in image.blobs() {
        let (digest, size) = registry.blob_digest_and_size(repo, &blob.digest);
        assert_eq!(digest, blob.digest, "blob content differs in {repo}");
        assert_eq!(size, blob.size, "blob size differs in {repo}");
    }
}

#[test]
fn oci_image_is_accepted_byte_for_byte_by_skopeo_and_the_registry() {
    let registry = TestRegistry::shared();
    let image = three_layer_image(Flavor::Oci, 1);
    skopeo::push_image(&image, &registry.host(), "gen/oci", "v1");
    assert_registry_holds(registry, "gen/oci", &image);
    let by_tag = registry.get_manifest("gen/oci", "v1");
    assert_eq!(by_tag.digest, image.digest());

    let manifest = image.manifest_json();
    assert_eq!(manifest["mediaType"], media_type::OCI_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], media_type::OCI_CONFIG);
    let layer_types: Vec<&str> = manifest["layers"]
        .as_array()
        .expect("layers array")
        .iter()
        .map(|l| l["mediaType"].as_str().expect("layer mediaType"))
        .collect();
    assert_eq!(
        layer_types,
        [
            media_type::OCI_LAYER_GZIP,
            media_type::OCI_LAYER_ZSTD,
            media_type::OCI_LAYER
        ]
    );
}

#[test]
fn docker_image_is_accepted_byte_for_byte_by_the_registry() {
    let registry = TestRegistry::shared();
    let image = ImageBuilder::new(Flavor::Docker)
        .seed(2)
        .layer(LayerSpec::single(4000))
        .layer(LayerSpec::single(100).compression(Compression::None))
        .build();
    // skopeo 1.9 reads only OCI media types from an OCI layout, so this one goes over plain
    // HTTP; distribution validates a schema2 manifest against the blobs on PUT.
    registry.push_image("gen/docker", "v1", &image);
    assert_registry_holds(registry, "gen/docker", &image);
    let manifest = image.manifest_json();
    assert_eq!(manifest["mediaType"], media_type::DOCKER_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], media_type::DOCKER_CONFIG);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        media_type::DOCKER_LAYER_GZIP
    );
    assert_eq!(manifest["layers"][1]["mediaType"], media_type::DOCKER_LAYER);
}

#[test]
fn multi_platform_index_with_attestations_is_accepted_byte_for_byte() {
    let registry = TestRegistry::shared();
    let index = IndexBuilder::new(Flavor::Oci)
        .seed(3)
        .platform("linux/amd64", &[LayerSpec::single(2000)])
        .platform(
            "linux/arm64/v8",
            &[LayerSpec::single(3000), LayerSpec::single(10)],
        )
        .platform("linux/arm/v7", &[LayerSpec::single(1000)])
        .with_attestations()
        .build();
    skopeo::push_index(&index, &registry.host(), "gen/multi", "v1");

    let fetched = registry.get_manifest("gen/multi", "v1");
    assert_eq!(fetched.bytes, index.index_bytes());
    assert_eq!(fetched.digest, index.digest());
    assert_eq!(fetched.content_type, media_type::OCI_INDEX);
    for image in index.all_images() {
        assert_registry_holds(registry, "gen/multi", image);
    }

    let json = index.index_json();
    let descriptors = json["manifests"].as_array().expect("manifests array");
    assert_eq!(descriptors.len(), 6, "3 platform images + 3 attestations");
    assert_eq!(
        descriptors[1]["platform"],
        serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
    );
    let attestation = &descriptors[4];
    assert_eq!(
        attestation["platform"],
        serde_json::json!({"architecture": "unknown", "os": "unknown"})
    );
    assert_eq!(
        attestation["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        attestation["annotations"]["vnd.docker.reference.digest"],
        index.images[1].digest()
    );
    assert_eq!(
        index.attestations[0].manifest_json()["layers"][0]["mediaType"],
        media_type::IN_TOTO
    );
}

#[test]
fn oci_image_pushed_over_http_matches_the_skopeo_push() {
    let registry = TestRegistry::shared();
    let image = three_layer_image(Flavor::Oci, 10);
    registry.push_image("gen/http-oci", "v1", &image);
    assert_registry_holds(registry, "gen/http-oci", &image);
    assert_eq!(registry.tags("gen/http-oci"), ["v1"]);
}

#[test]
fn docker_manifest_list_is_accepted_byte_for_byte() {
    let registry = TestRegistry::shared();
    let index = IndexBuilder::new(Flavor::Docker)
        .seed(4)
        .platform("linux/amd64", &[LayerSpec::single(100)])
        .platform("linux/s390x", &[LayerSpec::single(100)])
        .build();
    registry.push_index("gen/list", "v1", &index);
    let fetched = registry.get_manifest("gen/list", "v1");
    assert_eq!(fetched.bytes, index.index_bytes());
    assert_eq!(fetched.content_type, media_type::DOCKER_MANIFEST_LIST);
    for image in &index.images {
        assert_registry_holds(registry, "gen/list", image);
    }
}

/// skopeo reads docker-archive `manifest.json` itself (and builds its own manifest), so this
/// checks the legacy layout independently: config and layers arrive unchanged.
#[test]
fn docker_legacy_archive_is_readable_by_skopeo() {
    let registry = TestRegistry::shared();
    let image = ImageBuilder::new(Flavor::Docker)
        .seed(5)
        .layer(LayerSpec::single(5000).compression(Compression::None))
        .layer(LayerSpec::single(6000).compression(Compression::None))
        .repeat_layer(0)
        .build();
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("legacy.tar");
    ArchiveBuilder::new(ArchiveFormat::DockerLegacy)
        .image(&image, &["gen/legacy:v1"])
        .write(&archive);
    skopeo::copy_to_registry(
        &format!("docker-archive:{}", archive.display()),
        &format!("{}/gen/legacy:v1", registry.host()),
        false,
    );
    let manifest = registry.get_manifest("gen/legacy", "v1").json();
    assert_eq!(manifest["config"]["digest"], image.config_digest());
    let layer_digests: Vec<&str> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest"))
        .collect();
    let expected: Vec<&str> = image.layers.iter().map(|l| l.digest()).collect();
    assert_eq!(layer_digests, expected);
}

#[test]
fn docker_flavour_manifest_is_exactly_what_containerd_builds_from_a_docker_archive() {
    let image = ImageBuilder::new(Flavor::Docker)
        .seed(6)
        .layer(LayerSpec::single(100).compression(Compression::Gzip { level: 6 }))
        .layer(LayerSpec::single(100).compression(Compression::ZSTD))
        .layer(LayerSpec::single(100).compression(Compression::None))
        .build();
    let l = &image.layers;
    let expected = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","#,
            r#""config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":{}}},"#,
            r#""layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}","size":{}}},"#,
            r#"{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}","size":{}}},"#,
            r#"{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar","digest":"{}","size":{}}}]}}"#
        ),
        image.config.digest,
        image.config.size,
        l[0].digest(),
        l[0].size(),
        l[1].digest(),
        l[1].size(),
        l[2].digest(),
        l[2].size(),
    );
    assert_eq!(String::from_utf8(image.manifest_bytes()).unwrap(), expected);
    assert_eq!(
        image.docker_archive_manifest_bytes(),
        image.manifest_bytes()
    );
    assert_eq!(image.docker_archive_id(), image.digest());

    // The honest zstd type is available, and then differs from the docker-archive ID.
    let honest = ImageBuilder::new(Flavor::Docker)
        .seed(6)
        .layer(LayerSpec::single(100).compression(Compression::ZSTD))
        .zstd_in_docker_manifest(ZstdInDockerManifest::AsZstd)
        .build();
    assert_eq!(
        honest.manifest_json()["layers"][0]["mediaType"],
        media_type::DOCKER_LAYER_ZSTD
    );
    assert_ne!(honest.docker_archive_id(), honest.digest());

    // An OCI image loaded from a docker-archive gets the Docker manifest built from its blobs.
    let oci = three_layer_image(Flavor::Oci, 6);
    let rebuilt: serde_json::Value =
        serde_json::from_slice(&oci.docker_archive_manifest_bytes()).unwrap();
    assert_eq!(rebuilt["config"]["digest"], oci.config_digest());
    assert_eq!(rebuilt["config"]["mediaType"], media_type::DOCKER_CONFIG);
    assert_ne!(oci.docker_archive_id(), oci.digest());
}

#[test]
fn layers_hold_random_files_and_their_diff_ids_hash_the_tar() {
    let image = three_layer_image(Flavor::Oci, 7);
    for layer in &image.layers {
        let compressed = layer.blob.bytes();
        assert_eq!(sha256_digest(&compressed), layer.digest());
        assert_eq!(compressed.len() as u64, layer.size());
        let tar_bytes = match layer.compression {
            Compression::None => compressed.clone(),
            Compression::Gzip { .. } => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&compressed[..])
                    .read_to_end(&mut out)
                    .expect("gunzip layer");
                out
            }
            Compression::Zstd { .. } => zstd::decode_all(&compressed[..]).expect("unzstd layer"),
        };
        assert_eq!(sha256_digest(&tar_bytes), layer.diff_id);
        assert_eq!(tar_bytes.len() as u64, layer.uncompressed_size);
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let files: Vec<(String, u64)> = archive
            .entries()
            .expect("tar entries")
            .map(|e| e.expect("tar entry"))
            .filter(|e| e.header().entry_type().is_file())
            .map(|e| {
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().size().unwrap(),
                )
            })
            .collect();
        assert_eq!(files, layer.files);
    }
    let config: serde_json::Value = serde_json::from_slice(&image.config_bytes()).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(image.diff_ids())
    );
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["Labels"]["purpose"], "testkit");
    assert_eq!(config["history"].as_array().unwrap().len(), 3);
}

#[test]
fn a_seed_reproduces_every_byte_and_another_seed_does_not() {
    let a = three_layer_image(Flavor::Oci, 42);
    let b = three_layer_image(Flavor::Oci, 42);
    let c = three_layer_image(Flavor::Oci, 43);
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.blob_dir().path(), b.blob_dir().path());
    assert_ne!(a.digest(), c.digest());
    for (x, y) in a.layers.iter().zip(&c.layers) {
        assert_ne!(x.digest(), y.digest());
    }
    // Unseeded images differ from each other.
    let d = ImageBuilder::new(Flavor::Oci).build();
    let e = ImageBuilder::new(Flavor::Oci).build();
    assert_ne!(d.digest(), e.digest());
}

#[test]
fn big_stored_layer_is_streamed_to_disk_with_the_right_digest() {
    let size = 96u64 << 20;
    let image = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(size).compression(Compression::Gzip { level: 0 }))
        .build();
    let layer = &image.layers[0];
    // Stored gzip adds only headers: random content is not compressed.
    assert!(layer.size() > size && layer.size() < size + (1 << 20));
    let mut file = std::fs::File::open(&layer.blob.path).expect("open layer file");
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read layer file");
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
    }
    let digest = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher)));
    assert_eq!(digest, layer.digest());
}

#[test]
fn blobs_lists_config_and_distinct_layers_and_contents_adds_the_manifest() {
    let base = ImageBuilder::new(Flavor::Oci).seed(8).build();
    let image = ImageBuilder::new(Flavor::Docker)
        .seed(9)
        .existing_layer(&base.layers[0])
        .layer(LayerSpec::single(10))
        .repeat_layer(0)
        .build();
    assert_eq!(image.layers.len(), 3);
    assert_eq!(image.layers[0].digest(), base.layers[0].digest());
    assert_eq!(
        image.layers[0].blob.media_type,
        media_type::DOCKER_LAYER_GZIP
    );
    let blobs: Vec<&str> = image.blobs().map(|b| b.digest.as_str()).collect();
    assert_eq!(
        blobs,
        [
            image.config_digest(),
            image.layers[0].digest(),
            image.layers[1].digest()
        ]
    );
    assert_eq!(image.contents().count(), 4);
    assert_eq!(image.contents().next().unwrap().digest, image.digest());
}
