//! skopeo: an independent client that puts generated images into a registry (and so checks that
//! they are valid, since it refuses broken ones).

use std::process::Command;
use std::time::Duration;

use crate::archive::{ArchiveBuilder, ArchiveFormat};
use crate::image::{Image, ImageIndex};
use crate::process::{CliOutput, require_program, run_with_timeout};

/// Runs `skopeo --insecure-policy <args>` (no policy.json needed); panics on timeout (10 min).
pub fn skopeo(args: &[&str]) -> CliOutput {
    let bin = require_program("skopeo", "apt-get install -y skopeo");
    let mut cmd = Command::new(bin);
    cmd.arg("--insecure-policy").args(args);
    run_with_timeout(cmd, None, Duration::from_secs(600))
}

/// Copies `source` (any skopeo transport) to `docker://<destination>` over plain HTTP with the
/// digests kept; `all` copies every image of an index. Panics with skopeo's output on failure.
pub fn copy_to_registry(source: &str, destination: &str, all: bool) {
    let dest = format!("docker://{destination}");
    let mut args = vec![
        "copy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        source,
        &dest,
    ];
    if all {
        args.insert(1, "--all");
    }
    skopeo(&args).assert_success(&format!("skopeo copy {source} {dest}"));
}

/// Puts `image` into the registry at `host` (`127.0.0.1:<port>`) as `repo:tag`, byte for byte.
pub fn push_image(image: &Image, host: &str, repo: &str, tag: &str) {
    let dir = tempfile::tempdir().expect("temp dir for the OCI archive");
    let archive = dir.path().join("image.tar");
    ArchiveBuilder::new(ArchiveFormat::Oci)
        .image(image, &[&format!("{repo}:{tag}")])
        .write(&archive);
    copy_to_registry(
        &format!("oci-archive:{}:{tag}", archive.display()),
        &format!("{host}/{repo}:{tag}"),
        false,
    );
}

/// Puts `index` and all its images into the registry at `host` as `repo:tag`, byte for byte.
pub fn push_index(index: &ImageIndex, host: &str, repo: &str, tag: &str) {
    let dir = tempfile::tempdir().expect("temp dir for the OCI archive");
    let archive = dir.path().join("index.tar");
    ArchiveBuilder::new(ArchiveFormat::Oci)
        .index(index, &[&format!("{repo}:{tag}")])
        .write(&archive);
    copy_to_registry(
        &format!("oci-archive:{}:{tag}", archive.display()),
        &format!("{host}/{repo}:{tag}"),
        true,
    );
}
