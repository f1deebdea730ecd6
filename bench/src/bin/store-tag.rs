//! Tag and untag in a large store: fills a fresh hoist store with RECORDS image records (in
//! batches, as one load of many tags would), then times TAGS single tags (one record each, a
//! durable commit each) and as many untags of names whose image keeps other names. Prints one JSON
//! line: the store size and the median, 95th percentile and maximum milliseconds of each.
//!
//! Usage: store-tag [--records N] [--tags N] [--dir DIR]  (DIR: where the temp store goes; put it
//! on the daemon's disk, default the system temp dir)

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use hoist_store::{Descriptor, ImageChange, Store};

const BATCH: usize = 10_000;

fn main() -> Result<()> {
    let (mut records, mut tags, mut dir) = (100_000usize, 200usize, std::env::temp_dir());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--records" => records = value.parse()?,
            "--tags" => tags = value.parse()?,
            "--dir" => dir = PathBuf::from(value),
            _ => bail!("usage: store-tag [--records N] [--tags N] [--dir DIR]"),
        }
    }
    let temp = tempfile::Builder::new()
        .prefix("store-tag-")
        .tempdir_in(&dir)
        .with_context(|| format!("temp dir in {}", dir.display()))?;
    let store = Store::open(temp.path())?;
    let target = stored_image(&store)?;

    let started = Instant::now();
    for batch in 0..records.div_ceil(BATCH) {
        let changes = (batch * BATCH..records.min((batch + 1) * BATCH))
            .map(|i| put(&format!("registry.example/team/repo-{i}:tag"), &target))
            .collect();
        store.apply(changes)?;
    }
    let fill_seconds = started.elapsed().as_secs_f64();

    let mut tag_ms = Vec::with_capacity(tags);
    let mut untag_ms = Vec::with_capacity(tags);
    for i in 0..tags {
        let name = format!("docker.io/library/measured:{i}");
        let started = Instant::now();
        store.apply(vec![put(&name, &target)])?;
        tag_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        store.apply(vec![ImageChange::Delete { name }])?;
        untag_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let database = std::fs::metadata(temp.path().join("meta.db"))?.len();
    println!(
        "{}",
        serde_json::json!({
            "records": records,
            "database_bytes": database,
            "fill_seconds": fill_seconds,
            "tag_ms": summary(&mut tag_ms),
            "untag_ms": summary(&mut untag_ms),
        })
    );
    Ok(())
}

fn put(name: &str, target: &Descriptor) -> ImageChange {
    ImageChange::Put {
        name: name.to_owned(),
        target: target.clone(),
    }
}

/// A one-layer image, stored as a load stores it.
fn stored_image(store: &Store) -> Result<Descriptor> {
    let lease = store.lease();
    let layer = store.put_blob(&lease, b"layer")?;
    let config = store.put_blob(&lease, br#"{"architecture":"amd64","os":"linux"}"#)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.0, "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer.0, "size": layer.1}],
    });
    let (digest, size) = store.put_blob(&lease, &serde_json::to_vec(&manifest)?)?;
    let target = Descriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        digest,
        size,
    };
    store.apply(vec![put("seed", &target)])?;
    Ok(target)
}

fn summary(ms: &mut [f64]) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    serde_json::json!({"median": at(0.5), "p95": at(0.95), "max": at(1.0)})
}
