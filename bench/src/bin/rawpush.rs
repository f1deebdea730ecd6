//! The raw limit: pushes OCI layouts to a registry with as little as HTTP allows.
//!
//! Usage: rawpush --registry HOST:PORT [--parallel N] [--head] [--plan] LAYOUT=REPO:TAG...
//!
//! Per blob, one POST to open an upload and one PUT `?digest=` carrying the whole blob with a
//! Content-Length (the body is sent with sendfile(2)). N worker threads each keep
//! one keep-alive connection and take the largest blob left. Then the manifests are PUT (platform
//! manifests by digest, the top one by tag). `--head` first HEADs every blob and skips those the
//! registry has (a re-push). `--plan` only prints what would be sent, one line each:
//! `blob REPO DIGEST SIZE PATH` then `manifest REPO REF MEDIATYPE PATH`, for bench/lib/curl-push.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use hoist_bench::http::{Body, Conn};
use serde_json::Value;

struct Blob {
    repo: String,
    digest: String,
    size: u64,
    path: PathBuf,
}

struct Manifest {
    repo: String,
    reference: String,
    media_type: String,
    path: PathBuf,
}

fn main() -> Result<()> {
    let mut registry = None;
    let mut parallel = 1usize;
    let mut head = false;
    let mut plan_only = false;
    let mut targets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--registry" => registry = Some(args.next().context("--registry needs HOST:PORT")?),
            "--parallel" => {
                parallel = args.next().context("--parallel needs N")?.parse()?;
                ensure!(parallel > 0, "--parallel must be at least 1");
            }
            "--head" => head = true,
            "--plan" => plan_only = true,
            target if target.contains('=') => targets.push(target.to_owned()),
            other => bail!("unknown argument {other}"),
        }
    }
    let registry = registry.context("--registry HOST:PORT is required")?;
    ensure!(!targets.is_empty(), "give at least one LAYOUT=REPO:TAG");

    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    let mut seen = HashSet::new();
    for target in &targets {
        let (layout, name) = target.split_once('=').expect("checked above");
        let (repo, tag) = name.rsplit_once(':').context("target needs REPO:TAG")?;
        plan_layout(
            Path::new(layout),
            repo,
            tag,
            &mut blobs,
            &mut manifests,
            &mut seen,
        )
        .with_context(|| format!("read OCI layout {layout}"))?;
    }
    if plan_only {
        for b in &blobs {
            println!(
                "blob {} {} {} {}",
                b.repo,
                b.digest,
                b.size,
                b.path.display()
            );
        }
        for m in &manifests {
            println!(
                "manifest {} {} {} {}",
                m.repo,
                m.reference,
                m.media_type,
                m.path.display()
            );
        }
        return Ok(());
    }

    // Largest first, taken from the back.
    blobs.sort_by_key(|b| b.size);
    let uploaded = hoist_bench::workers::drain(&registry, parallel, blobs, |conn, blob| {
        let pushed = push_blob(conn, &blob, head)
            .with_context(|| format!("push blob {} to {}", blob.digest, blob.repo))?;
        Ok(if pushed { blob.size } else { 0 })
    })?;

    let mut conn = Conn::open(&registry)?;
    for m in &manifests {
        let body = std::fs::read(&m.path).with_context(|| format!("read {}", m.path.display()))?;
        let path = format!("/v2/{}/manifests/{}", m.repo, m.reference);
        let response = conn.request(
            "PUT",
            &path,
            &[("Content-Type", &m.media_type)],
            Body::Bytes(&body),
        )?;
        ensure!(
            response.status == 201,
            "PUT {path}: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    println!(
        "{{\"uploaded_bytes\":{uploaded},\"manifests\":{}}}",
        manifests.len()
    );
    Ok(())
}

/// Adds the image or index tagged `tag` in the layout (or its only manifest) to the plan.
fn plan_layout(
    layout: &Path,
    repo: &str,
    tag: &str,
    blobs: &mut Vec<Blob>,
    manifests: &mut Vec<Manifest>,
    seen: &mut HashSet<(String, String)>,
) -> Result<()> {
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let descriptors = index["manifests"]
        .as_array()
        .context("index.json has no manifests")?;
    let top = descriptors
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .or(descriptors.first())
        .context("index.json lists no manifest")?;
    let blob_path = |digest: &str| -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .context("only sha256 digests")?;
        Ok(layout.join("blobs/sha256").join(hex))
    };
    let mut add_blob = |descriptor: &Value| -> Result<()> {
        let digest = descriptor["digest"]
            .as_str()
            .context("descriptor without digest")?;
        if seen.insert((repo.to_owned(), digest.to_owned())) {
            blobs.push(Blob {
                repo: repo.to_owned(),
                digest: digest.to_owned(),
                size: descriptor["size"]
                    .as_u64()
                    .context("descriptor without size")?,
                path: blob_path(digest)?,
            });
        }
        Ok(())
    };
    let top_digest = top["digest"]
        .as_str()
        .context("descriptor without digest")?;
    let top_type = top["mediaType"]
        .as_str()
        .context("descriptor without mediaType")?;
    let top_json: Value = serde_json::from_slice(&std::fs::read(blob_path(top_digest)?)?)?;
    let image_manifests: Vec<Value> = match top_json["manifests"].as_array() {
        Some(children) => children.clone(),
        None => Vec::new(),
    };
    for child in &image_manifests {
        let digest = child["digest"].as_str().context("child without digest")?;
        let json: Value = serde_json::from_slice(&std::fs::read(blob_path(digest)?)?)?;
        add_blob(&json["config"])?;
        for layer in json["layers"]
            .as_array()
            .context("manifest without layers")?
        {
            add_blob(layer)?;
        }
        manifests.push(Manifest {
            repo: repo.to_owned(),
            reference: digest.to_owned(),
            media_type: child["mediaType"]
                .as_str()
                .context("child without mediaType")?
                .to_owned(),
            path: blob_path(digest)?,
        });
    }
    if image_manifests.is_empty() {
        add_blob(&top_json["config"])?;
        for layer in top_json["layers"]
            .as_array()
            .context("manifest without layers")?
        {
            add_blob(layer)?;
        }
    }
    manifests.push(Manifest {
        repo: repo.to_owned(),
        reference: tag.to_owned(),
        media_type: top_type.to_owned(),
        path: blob_path(top_digest)?,
    });
    Ok(())
}

/// Uploads one blob; false when `head` found it already there.
fn push_blob(conn: &mut Conn, blob: &Blob, head: bool) -> Result<bool> {
    if head {
        let path = format!("/v2/{}/blobs/{}", blob.repo, blob.digest);
        let response = conn.request("HEAD", &path, &[], Body::None)?;
        if response.status == 200 {
            return Ok(false);
        }
    }
    let path = format!("/v2/{}/blobs/uploads/", blob.repo);
    let response = conn.request("POST", &path, &[], Body::None)?;
    ensure!(response.status == 202, "POST {path}: {}", response.status);
    let location = response
        .header("location")
        .context("POST answered no Location")?;
    // Absolute (http://host/…) or a path.
    let location = match location.find("://") {
        Some(i) => {
            let rest = &location[i + 3..];
            rest[rest.find('/').unwrap_or(rest.len())..].to_owned()
        }
        None => location.to_owned(),
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = format!("{location}{separator}digest={}", blob.digest);
    let response = conn.request(
        "PUT",
        &put,
        &[("Content-Type", "application/octet-stream")],
        Body::File(&blob.path, blob.size),
    )?;
    ensure!(
        response.status == 201,
        "PUT blob: {} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    Ok(true)
}
