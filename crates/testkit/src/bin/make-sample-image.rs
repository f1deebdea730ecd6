//! Writes a small sample image as a docker-archive, without internet, for `scripts/demo`.
//!
//! Usage: make-sample-image --tag NAME:TAG --out FILE
//! Prints `{"image_id": "sha256:…", "tag": …}`: the ID `docker load` must report, computed here
//! independently of hoist.

use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::image::{Flavor, ImageBuilder, LayerSpec};

fn main() {
    let mut tag = None;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tag" => tag = args.next(),
            "--out" => out = args.next(),
            other => {
                eprintln!(
                    "make-sample-image: unknown argument {other}\nusage: make-sample-image --tag NAME:TAG --out FILE"
                );
                std::process::exit(2);
            }
        }
    }
    let (Some(tag), Some(out)) = (tag, out) else {
        eprintln!("usage: make-sample-image --tag NAME:TAG --out FILE");
        std::process::exit(2);
    };
    let image = ImageBuilder::new(Flavor::Docker)
        .layers([
            LayerSpec::files(&[256 * 1024, 64 * 1024]),
            LayerSpec::single(1024 * 1024),
            LayerSpec::single(16 * 1024),
        ])
        .cmd(&["/bin/sh"])
        .label("org.opencontainers.image.title", "hoist demo")
        .build();
    ArchiveBuilder::new(ArchiveFormat::DockerLegacy)
        .image(&image, &[tag.as_str()])
        .write(std::path::Path::new(&out));
    println!(
        "{}",
        serde_json::json!({ "image_id": image.docker_archive_id(), "tag": tag })
    );
}
