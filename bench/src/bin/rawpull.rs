//! The raw pull limit: fetches an image's blobs from a registry with as little as HTTP allows.
//!
//! Usage: rawpull --registry HOST:PORT [--parallel N] [--sync end|each|none] --out DIR REPO:TAG
//!
//! GETs the manifest (and an index's child manifests), then every config and layer: N worker
//! threads, each with one keep-alive connection, take the largest blob left, write it to
//! `DIR/<hex>.partial` while hashing it with sha256, check the digest and rename it to
//! `DIR/<hex>`. Durability, the cheapest correct way by default: one `syncfs(2)` of DIR's
//! filesystem once every blob is written (`--sync end`); `--sync each` fsyncs every blob before
//! its rename instead, `--sync none` skips it. Prints `{"blobs":N,"bytes":B}`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use hoist_bench::http::Conn;
use serde_json::Value;
use sha2::{Digest, Sha256};

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

#[derive(Clone, Copy, PartialEq)]
enum Sync {
    End,
    Each,
    None,
}

struct Blob {
    digest: String,
    size: u64,
}

fn main() -> Result<()> {
    let mut registry = None;
    let mut parallel = 5usize;
    let mut sync = Sync::End;
    let mut out = None;
    let mut name = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--registry" => registry = Some(args.next().context("--registry needs HOST:PORT")?),
            "--parallel" => {
                parallel = args.next().context("--parallel needs N")?.parse()?;
                ensure!(parallel > 0, "--parallel must be at least 1");
            }
            "--sync" => {
                sync = match args.next().as_deref() {
                    Some("end") => Sync::End,
                    Some("each") => Sync::Each,
                    Some("none") => Sync::None,
                    other => bail!("--sync takes end, each or none, not {other:?}"),
                }
            }
            "--out" => out = Some(PathBuf::from(args.next().context("--out needs DIR")?)),
            other if !other.starts_with('-') => name = Some(other.to_owned()),
            other => bail!("unknown argument {other}"),
        }
    }
    let registry = registry.context("--registry HOST:PORT is required")?;
    let out = out.context("--out DIR is required")?;
    let name = name.context("give REPO:TAG")?;
    let (repo, tag) = name.rsplit_once(':').context("the image needs REPO:TAG")?;
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;

    let mut conn = Conn::open(&registry)?;
    let mut blobs = Vec::new();
    let top = get_manifest(&mut conn, repo, tag)?;
    match top["manifests"].as_array() {
        Some(children) => {
            for child in children {
                let digest = child["digest"].as_str().context("child without digest")?;
                let manifest = get_manifest(&mut conn, repo, digest)?;
                add_blobs(&manifest, &mut blobs)?;
            }
        }
        None => add_blobs(&top, &mut blobs)?,
    }
    blobs.sort_by_key(|b| b.size);
    blobs.dedup_by(|a, b| a.digest == b.digest);
    let count = blobs.len();
    // Largest first, taken from the back.
    let bytes = hoist_bench::workers::drain(&registry, parallel, blobs, |conn, blob| {
        fetch_blob(conn, repo, &blob, &out, sync)
            .with_context(|| format!("fetch blob {}", blob.digest))?;
        Ok(blob.size)
    })?;
    if sync == Sync::End {
        let dir = File::open(&out).with_context(|| format!("open {}", out.display()))?;
        // SAFETY: `dir` is an open descriptor for the duration of the call.
        let status = unsafe { libc::syncfs(dir.as_raw_fd()) };
        ensure!(status == 0, "syncfs: {}", std::io::Error::last_os_error());
    }
    println!("{{\"blobs\":{count},\"bytes\":{bytes}}}");
    Ok(())
}

fn get_manifest(conn: &mut Conn, repo: &str, reference: &str) -> Result<Value> {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let mut body = Vec::new();
    let response = conn.get_streaming(&path, &[("Accept", ACCEPT)], &mut body)?;
    ensure!(response.status == 200, "GET {path}: {}", response.status);
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
}

fn add_blobs(manifest: &Value, blobs: &mut Vec<Blob>) -> Result<()> {
    let layers = manifest["layers"]
        .as_array()
        .context("manifest without layers")?;
    for descriptor in std::iter::once(&manifest["config"]).chain(layers) {
        blobs.push(Blob {
            digest: descriptor["digest"]
                .as_str()
                .context("descriptor without digest")?
                .to_owned(),
            size: descriptor["size"]
                .as_u64()
                .context("descriptor without size")?,
        });
    }
    Ok(())
}

/// Hashes what it writes.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn fetch_blob(conn: &mut Conn, repo: &str, blob: &Blob, out: &Path, sync: Sync) -> Result<()> {
    let hex = blob
        .digest
        .strip_prefix("sha256:")
        .context("only sha256 digests")?;
    let partial = out.join(format!("{hex}.partial"));
    let file = File::create(&partial).with_context(|| format!("create {}", partial.display()))?;
    let mut sink = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
    };
    let path = format!("/v2/{repo}/blobs/{}", blob.digest);
    let response = conn.get_streaming(&path, &[], &mut sink)?;
    ensure!(response.status == 200, "GET {path}: {}", response.status);
    let Hashing { inner, hasher } = sink;
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    ensure!(got == blob.digest, "digest mismatch: got {got}");
    let file = inner.into_inner().context("flush")?;
    if sync == Sync::Each {
        file.sync_all()?;
    }
    std::fs::rename(&partial, out.join(hex))?;
    Ok(())
}
