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
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail, ensure};
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
    let queue = Mutex::new(blobs);
    let uploaded = std::thread::scope(|scope| -> Result<u64> {
        let workers: Vec<_> = (0..parallel)
            .map(|_| {
                scope.spawn(|| -> Result<u64> {
                    let mut conn = Conn::open(&registry)?;
                    let mut bytes = 0;
                    loop {
                        let Some(blob) = queue.lock().unwrap().pop() else {
                            return Ok(bytes);
                        };
                        if push_blob(&mut conn, &blob, head).with_context(|| {
                            format!("push blob {} to {}", blob.digest, blob.repo)
                        })? {
                            bytes += blob.size;
                        }
                    }
                })
            })
            .collect();
        let mut total = 0;
        for worker in workers {
            total += worker.join().expect("worker panicked")?;
        }
        Ok(total)
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

enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    File(&'a Path, u64),
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    host: String,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(host: &str) -> Result<Conn> {
        let stream = TcpStream::connect(host).with_context(|| format!("connect to {host}"))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
        Ok(Conn {
            host: host.to_owned(),
            stream,
            reader,
        })
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Response> {
        let length = match body {
            Body::None => 0,
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File(_, size) => size,
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if method != "HEAD" && method != "GET" {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes())?;
        match body {
            Body::None => {}
            Body::Bytes(bytes) => self.stream.write_all(bytes)?,
            Body::File(path, size) => self.send_file(path, size)?,
        }
        self.read_response(method == "HEAD")
            .with_context(|| format!("{method} {path}"))
    }

    /// The whole file with sendfile(2): no copy through user space. (`std::io::copy` from a
    /// file to a socket reads and writes 8 KiB at a time.)
    fn send_file(&mut self, path: &Path, size: u64) -> Result<()> {
        let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut offset: libc::off_t = 0;
        let mut remaining = size;
        while remaining > 0 {
            let count = remaining.min(1 << 30) as usize;
            // SAFETY: both descriptors are open for the call (borrowed from `self.stream` and
            // `file`), and `offset` is a valid, exclusively borrowed off_t that the kernel updates.
            let sent = unsafe {
                libc::sendfile(
                    self.stream.as_raw_fd(),
                    file.as_raw_fd(),
                    &mut offset,
                    count,
                )
            };
            if sent < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error).with_context(|| format!("sendfile {}", path.display()));
            }
            ensure!(sent > 0, "{} is shorter than {size} bytes", path.display());
            remaining -= sent as u64;
        }
        Ok(())
    }

    fn read_response(&mut self, head_request: bool) -> Result<Response> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .with_context(|| format!("bad status line {line:?}"))?
            .parse()?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            let (name, value) = trimmed.split_once(':').context("bad header line")?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            bail!("chunked responses are not expected from the registry");
        }
        let length: u64 = match response.header("content-length") {
            Some(v) if !head_request => v.parse()?,
            _ => 0,
        };
        let mut body = Vec::with_capacity(length as usize);
        (&mut self.reader).take(length).read_to_end(&mut body)?;
        ensure!(body.len() as u64 == length, "connection closed mid-body");
        response.body = body;
        Ok(response)
    }
}
