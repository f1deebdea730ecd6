//! Shared by the push test binaries: start hoistd, load generated images into it, and check what
//! a registry holds against the generator's own bytes and digests (never hoist's store).

#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::{Hoistd, HoistdOptions};
use hoist_testkit::image::{Image, ImageIndex};
use hoist_testkit::registry::TestRegistry;

pub fn hoistd_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hoistd"))
}

pub fn start_hoistd() -> Hoistd {
    Hoistd::start(hoistd_bin(), HoistdOptions::default())
}

pub fn start_hoistd_with(config: serde_json::Value) -> Hoistd {
    Hoistd::start(
        hoistd_bin(),
        HoistdOptions {
            config,
            ..HoistdOptions::default()
        },
    )
}

/// A repository name no other test of this process uses.
pub fn unique_repo(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn archive_path(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hoist-push-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("archive dir");
        hoist_testkit::process::remove_at_exit(dir.clone());
        dir
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{}-{n}.tar", tag.replace(['/', ':'], "_")))
}

/// Writes `image` as an archive with `tags` and `docker load`s it; asserts the CLI's answer.
pub fn load_image(cli: &DockerCli, image: &Image, tags: &[&str], format: ArchiveFormat) {
    let path = archive_path(tags.first().copied().unwrap_or("untagged"));
    ArchiveBuilder::new(format).image(image, tags).write(&path);
    let out = cli.run(&["load", "-i", path.to_str().expect("utf-8 path")]);
    std::fs::remove_file(&path).expect("remove the loaded archive");
    out.assert_success("docker load");
    for tag in tags {
        assert!(
            out.stdout.contains(&format!("Loaded image: {tag}")),
            "load output: {}",
            out.stdout
        );
    }
    let _ = std::fs::remove_file(path);
}

pub fn load_index(
    cli: &DockerCli,
    index: &ImageIndex,
    tags: &[&str],
    build: impl FnOnce(ArchiveBuilder) -> ArchiveBuilder,
) {
    let path = archive_path(tags.first().copied().unwrap_or("untagged"));
    build(ArchiveBuilder::new(ArchiveFormat::Oci).index(index, tags)).write(&path);
    let out = cli.run(&["load", "-i", path.to_str().expect("utf-8 path")]);
    std::fs::remove_file(&path).expect("remove the loaded archive");
    out.assert_success("docker load");
    let _ = std::fs::remove_file(path);
}

/// The registry holds `image` under `repo:tag` byte for byte: the manifest's bytes, media type
/// and digest, and every blob's digest and size.
pub fn assert_registry_has_image(registry: &TestRegistry, repo: &str, tag: &str, image: &Image) {
    let fetched = registry.get_manifest(repo, tag);
    assert_eq!(
        fetched.bytes,
        image.manifest_bytes(),
        "manifest bytes of {repo}:{tag}"
    );
    assert_eq!(
        fetched.content_type,
        image.media_type(),
        "manifest media type of {repo}:{tag}"
    );
    assert_eq!(
        fetched.digest,
        image.digest(),
        "manifest digest of {repo}:{tag}"
    );
    assert_blobs(registry, repo, image);
}

pub fn assert_blobs(registry: &TestRegistry, repo: &str, image: &Image) {
    for blob in image.blobs() {
        let (digest, size) = registry.blob_digest_and_size(repo, &blob.digest);
        assert_eq!(
            digest, blob.digest,
            "content of blob {} in {repo}",
            blob.digest
        );
        assert_eq!(size, blob.size, "size of blob {} in {repo}", blob.digest);
    }
}

/// The registry holds `index` under `repo:tag` whole: index bytes, every child manifest by
/// digest (attestations included), every blob.
pub fn assert_registry_has_index(
    registry: &TestRegistry,
    repo: &str,
    tag: &str,
    index: &ImageIndex,
) {
    let fetched = registry.get_manifest(repo, tag);
    assert_eq!(
        fetched.bytes,
        index.index_bytes(),
        "index bytes of {repo}:{tag}"
    );
    assert_eq!(
        fetched.content_type,
        index.media_type(),
        "index media type of {repo}:{tag}"
    );
    assert_eq!(
        fetched.digest,
        index.digest(),
        "index digest of {repo}:{tag}"
    );
    for image in index.all_images() {
        let child = registry.get_manifest(repo, image.digest());
        assert_eq!(
            child.bytes,
            image.manifest_bytes(),
            "child manifest {} in {repo}",
            image.digest()
        );
        assert_blobs(registry, repo, image);
    }
}

/// The id docker shows for a layer: the first 12 hex digits of its blob digest.
pub fn layer_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..12]
}

/// Lines of the CLI's (non-TTY) output that concern layer `id`, without the id prefix.
pub fn layer_lines<'a>(output: &'a str, id: &str) -> Vec<&'a str> {
    output
        .lines()
        .filter_map(|line| {
            line.strip_prefix(id)
                .and_then(|rest| rest.strip_prefix(": "))
        })
        .collect()
}

/// JSON messages of a raw push response, split as the CLI splits them.
pub fn messages(body: &[u8]) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .map(|m| m.expect("push stream is JSON messages"))
        .collect()
}

pub fn base64url(json: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}
