//! Generates one of the benchmark's standard images as an archive that every tool can load.
//!
//! Usage: gen-images --image NAME --seed N --out DIR
//!
//! Writes DIR/NAME.tar (an OCI layout plus docker's manifest.json, as docker save ≥ 25 writes it,
//! tagged `bench/NAME:latest`) and, last, DIR/NAME.json describing it. Blobs are generated under
//! $TMPDIR (put it on the same disk) and removed afterwards.
//!
//! Images (random, incompressible content in gzip streams of stored blocks, see `layer`):
//! - big:    OCI, 5 layers of 400, 300, 200, 100, 24 MiB of tar content
//! - small:  OCI, 50 layers of 1 MiB
//! - multi:  OCI index of 3 platforms (linux/amd64, linux/arm64, linux/arm/v7), 100 MiB each
//! - conc-K: OCI, 2 layers of 64 MiB (K = 0..7, for the concurrent pushes)
//! - tiny:   OCI, 1,000 layers whose tar is 4 KiB (see `tiny_layer`), for per-blob costs
//! - layers10k: OCI, 10,000 such layers, for `docker load` of many blobs

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::image::{Compression, Flavor, Image, ImageBuilder, IndexBuilder, LayerSpec};

const MIB: u64 = 1 << 20;

/// A layer of one random file of `size` bytes, gzip with stored (level 0) blocks: the sizes
/// zlib's level 1 gives, since it falls back to stored blocks for random bytes. zlib-rs's level 1
/// codes them with static Huffman tables instead, 5.5 % larger.
fn layer(size: u64) -> LayerSpec {
    LayerSpec::single(size).compression(Compression::Gzip { level: 0 })
}

/// A layer whose tar is exactly 4 KiB: headers of two directories and one file (512 bytes
/// each), the file's 1.5 KiB and the 1 KiB end of archive; stored in gzip, the blob is about
/// 4.1 KiB. What a push or load of such layers
/// costs is almost all per-blob overhead.
fn tiny_layer() -> LayerSpec {
    layer(1536)
}

fn main() -> Result<()> {
    let mut name = None;
    let mut seed = None;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--image" => name = Some(value),
            "--seed" => seed = Some(value.parse::<u64>().context("--seed is a number")?),
            "--out" => out = Some(PathBuf::from(value)),
            other => {
                bail!("unknown argument {other}; usage: gen-images --image NAME --seed N --out DIR")
            }
        }
    }
    let (Some(name), Some(seed), Some(out)) = (name, seed, out) else {
        bail!("usage: gen-images --image NAME --seed N --out DIR");
    };
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let tag = format!("bench/{name}:latest");
    let archive = out.join(format!("{name}.tar"));
    // Each image gets its own seed derived from the run's, so images never share content.
    let image_seed = seed.wrapping_mul(1000).wrapping_add(
        name.bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
    );

    let (digest, media_type, images): (String, String, Vec<Image>) = match name.as_str() {
        "multi" => {
            let layer = [layer(100 * MIB)];
            let index = IndexBuilder::new(Flavor::Oci)
                .seed(image_seed)
                .platform("linux/amd64", &layer)
                .platform("linux/arm64", &layer)
                .platform("linux/arm/v7", &layer)
                .build();
            ArchiveBuilder::new(ArchiveFormat::Both)
                .index(&index, &[&tag])
                .write(&archive);
            (
                index.digest().to_owned(),
                index.index.media_type.clone(),
                index.images.clone(),
            )
        }
        _ => {
            let layers: Vec<LayerSpec> = match name.as_str() {
                "big" => [400, 300, 200, 100, 24]
                    .iter()
                    .map(|mib| layer(mib * MIB))
                    .collect(),
                "small" => (0..50).map(|_| layer(MIB)).collect(),
                conc if conc.starts_with("conc-") => (0..2).map(|_| layer(64 * MIB)).collect(),
                "tiny" => (0..1_000).map(|_| tiny_layer()).collect(),
                "layers10k" => (0..10_000).map(|_| tiny_layer()).collect(),
                other => {
                    bail!("unknown image {other} (big, small, multi, conc-K, tiny, layers10k)")
                }
            };
            let image = ImageBuilder::new(Flavor::Oci)
                .seed(image_seed)
                .layers(layers)
                .build();
            ArchiveBuilder::new(ArchiveFormat::Both)
                .image(&image, &[&tag])
                .write(&archive);
            (
                image.digest().to_owned(),
                image.media_type().to_owned(),
                vec![image],
            )
        }
    };

    let mut seen = std::collections::HashSet::new();
    let blobs: Vec<_> = images
        .iter()
        .flat_map(|image| image.blobs())
        .filter(|blob| seen.insert(blob.digest.clone()))
        .collect();
    let layer_count: usize = images.iter().map(|image| image.layers.len()).sum();
    let description = serde_json::json!({
        "name": name,
        "seed": seed,
        "tag": tag,
        "digest": digest,
        "media_type": media_type,
        "platforms": images.iter().map(|i| i.platform.to_string()).collect::<Vec<_>>(),
        "layers": layer_count,
        "blob_count": blobs.len(),
        // Bytes a first push uploads as blobs (configs and layers), manifests not counted.
        "blob_bytes": blobs.iter().map(|b| b.size).sum::<u64>(),
        "archive_bytes": std::fs::metadata(&archive)?.len(),
    });
    let json_path = out.join(format!("{name}.json"));
    let temp = out.join(format!(".{name}.json.tmp"));
    std::fs::write(&temp, serde_json::to_vec_pretty(&description)?)?;
    std::fs::rename(&temp, &json_path)?;
    println!("{description}");
    Ok(())
}
