//! Shared helpers of the Foundation end-to-end suites: starting hoistd, writing generated
//! archives, and looking at the data root and at CLI tables without trusting hoist's answers.
//!
//! Every test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use hoist_testkit::archive::{ArchiveBuilder, RawArchive};
use hoist_testkit::docker::{CliOutput, DockerCli};
use hoist_testkit::hoistd::{Hoistd, HoistdOptions};
use sha2::Digest as _;

/// The daemon under test, built by cargo for this test binary.
pub fn hoistd_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hoistd"))
}

pub fn start_daemon() -> Hoistd {
    Hoistd::start(hoistd_bin(), HoistdOptions::default())
}

pub fn start_daemon_with(opts: HoistdOptions) -> Hoistd {
    Hoistd::start(hoistd_bin(), opts)
}

/// A repository name no other test of this process uses (tests of a binary share nothing, but a
/// unique name makes a leak between them visible instead of silently passing).
pub fn unique_repo(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A directory for archives and other files a test writes.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("hoist-foundation-")
                .tempdir()
                .expect("scratch dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the archive and returns its path.
    pub fn archive(&self, name: &str, archive: &ArchiveBuilder) -> PathBuf {
        let path = self.path(name);
        archive.write(&path);
        path
    }

    pub fn raw_archive(&self, name: &str, archive: &RawArchive) -> PathBuf {
        let path = self.path(name);
        archive.write(&path);
        path
    }
}

/// `docker load -i <path>`, which must succeed; returns stdout.
pub fn docker_load(docker: &DockerCli, path: &Path) -> String {
    let out = docker.run(&["load", "-i", path.to_str().expect("utf-8 path")]);
    out.assert_success("docker load");
    assert_eq!(out.stderr, "", "docker load printed on stderr:\n{out}");
    out.stdout
}

/// Runs `docker <args>`, which must succeed with nothing on stderr; returns stdout.
pub fn docker_ok(docker: &DockerCli, args: &[&str]) -> String {
    let out = docker.run(args);
    out.assert_success(&format!("docker {}", args.join(" ")));
    assert_eq!(
        out.stderr,
        "",
        "docker {} printed on stderr:\n{out}",
        args.join(" ")
    );
    out.stdout
}

/// Runs `docker <args>`, which must fail with exit status 1; returns the output.
pub fn docker_fails(docker: &DockerCli, args: &[&str]) -> CliOutput {
    let out = docker.run(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "docker {} should exit 1:\n{out}",
        args.join(" ")
    );
    out
}

/// `docker image inspect <name>` as JSON (the one element of the array it prints).
pub fn inspect(docker: &DockerCli, name: &str) -> serde_json::Value {
    let stdout = docker_ok(docker, &["image", "inspect", name]);
    let mut all: Vec<serde_json::Value> =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("inspect output ({e}): {stdout}"));
    assert_eq!(all.len(), 1, "{stdout}");
    all.remove(0)
}

/// The rows of a table the CLI printed: columns are separated by two or more spaces (cells
/// never contain two spaces in a row); the header row is first.
pub fn table(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The 12-hex-digit short form of `sha256:<hex>`, as the CLI prints image IDs.
pub fn short_id(digest: &str) -> String {
    digest.trim_start_matches("sha256:")[..12].to_owned()
}

/// go-units `HumanSizeWithPrecision(size, 3)`, as `docker images` prints SIZE: decimal units,
/// `%.3g`.
pub fn human_size(bytes: u64) -> String {
    human_size_with_precision(bytes, 3)
}

/// go-units `HumanSizeWithPrecision`: decimal units, `%.<precision>g` (trailing zeros dropped).
pub fn human_size_with_precision(bytes: u64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    // For 1 <= size < 1000, `%g` keeps `precision` significant digits.
    let digits_before_point = if size < 10.0 {
        1
    } else if size < 100.0 {
        2
    } else {
        3
    };
    let decimals = precision.saturating_sub(digits_before_point);
    let mut text = format!("{size:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[unit])
}

pub fn sha256_hex_of_file(path: &Path) -> String {
    let mut file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// The names (hex digests) and sizes of the files in the data root's `blobs/sha256/`.
pub fn stored_blobs(data_root: &Path) -> BTreeMap<String, u64> {
    let dir = data_root.join("blobs/sha256");
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => panic!("list {}: {e}", dir.display()),
    };
    for entry in entries {
        let entry = entry.expect("blob dir entry");
        let meta = entry.metadata().expect("stat blob");
        out.insert(entry.file_name().to_string_lossy().into_owned(), meta.len());
    }
    out
}

/// Every file under `blobs/sha256/` hashes to its own name: no half-written or corrupt blob is
/// visible.
pub fn assert_every_blob_hashes_to_its_name(data_root: &Path) {
    let dir = data_root.join("blobs/sha256");
    for name in stored_blobs(data_root).keys() {
        let actual = sha256_hex_of_file(&dir.join(name));
        assert_eq!(
            &actual, name,
            "blobs/sha256/{name} holds content hashing to {actual}"
        );
    }
}

/// The files of a (small, uncompressed) tar, by entry path.
pub fn tar_files(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut archive = tar::Archive::new(file);
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().expect("entry path").display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read tar entry");
        out.insert(name, bytes);
    }
    out
}

/// The full `sha256:<hex>` of bytes, computed here.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
