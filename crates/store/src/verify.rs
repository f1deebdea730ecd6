//! Verifying a data root offline (`hoistd check`): every blob still hashes to its name, and every
//! image record's target and what it reaches is present, of the size its descriptor says, and
//! parseable. Nothing is changed: unlike [`Store::open`], which repairs what a crash left, this
//! only reports.
//!
//! What a record reaches through an index may be absent (an index may be partial); what a
//! record's own manifest names (its config and layers) must be present. Present content must be
//! intact wherever it is.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use hoist_reference::Digest;

use crate::descriptor::Descriptor;
use crate::error::{IoContext, StoreError};
use crate::integrity::hash_file;
use crate::layout::Layout;
use crate::lock::DataRootLock;
use crate::manifest::{ChildrenCache, ManifestKind};
use crate::metadata::{Metadata, RecordRoot};
use crate::store::Store;

/// Blobs are hashed on this many threads at most: hashing a few GiB is bound by sha256 on a
/// core or two, then by the disk.
const MAX_HASH_THREADS: usize = 4;

/// What [`Store::verify`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Blobs hashed, and their bytes.
    pub blobs: usize,
    pub bytes: u64,
    /// Image records checked.
    pub images: usize,
    /// Sorted: blob problems first, by digest, then image problems, by name.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One thing wrong with a data root. Its `Display` is one line naming what is wrong and where.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// A blob's content does not hash to its name.
    CorruptBlob { digest: Digest, actual: Digest },
    /// A blob file could not be read.
    UnreadableBlob { path: PathBuf, reason: String },
    /// The metadata database cannot be opened or read: no record could be checked.
    Metadata { reason: String },
    /// A record whose stored value cannot be decoded.
    UndecodableRecord { image: String },
    /// A blob a record needs is absent.
    MissingBlob { image: String, digest: Digest },
    /// A blob differs in size from the descriptor that references it.
    SizeMismatch {
        image: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// A manifest or index a record reaches cannot be read as one.
    InvalidManifest {
        image: String,
        digest: Digest,
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CorruptBlob { digest, actual } => {
                write!(
                    f,
                    "blob {digest} is corrupt: its content hashes to {actual}"
                )
            }
            Problem::UnreadableBlob { path, reason } => {
                write!(f, "blob file {} cannot be read: {reason}", path.display())
            }
            Problem::Metadata { reason } => {
                write!(f, "image records cannot be read: {reason}")
            }
            Problem::UndecodableRecord { image } => {
                write!(f, "image {image}: its record cannot be decoded")
            }
            Problem::MissingBlob { image, digest } => {
                write!(f, "image {image}: blob {digest} is missing")
            }
            Problem::SizeMismatch {
                image,
                digest,
                expected,
                actual,
            } => write!(
                f,
                "image {image}: blob {digest} is {actual} bytes, its descriptor says {expected}"
            ),
            Problem::InvalidManifest {
                image,
                digest,
                reason,
            } => write!(
                f,
                "image {image}: manifest {digest} cannot be read: {reason}"
            ),
        }
    }
}

impl Store {
    /// Verifies the data root at `root` without changing it. Holds the data root's lock while it
    /// runs, so it fails with [`StoreError::Locked`] while a daemon uses the root; a root that
    /// does not exist is an error too. Everything else it finds is a [`Problem`] in the report.
    pub fn verify(root: &Path) -> Result<VerifyReport, StoreError> {
        let metadata = fs::metadata(root).context(|| format!("opening {}", root.display()))?;
        if !metadata.is_dir() {
            return Err(StoreError::Io {
                context: format!("opening {}", root.display()),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let layout = Layout::new(root);
        let _lock = DataRootLock::acquire(root, &layout.lock)?;

        let mut report = VerifyReport::default();
        hash_blobs(&layout, &mut report)?;
        check_records(&layout, &mut report);
        report.problems.sort();
        Ok(report)
    }
}

fn hash_blobs(layout: &Layout, report: &mut VerifyReport) -> Result<(), StoreError> {
    let blobs = blob_files(&layout.sha256_blobs)?;
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_HASH_THREADS)
        .min(blobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((digest, path)) = blobs.get(i) else {
                        break;
                    };
                    mine.push((digest, path, hash_file(path)));
                }
                found
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(mine);
            });
        }
    });
    let found = found
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (digest, path, hashed) in found {
        match hashed {
            Ok((actual, size)) => {
                report.blobs += 1;
                report.bytes += size;
                if actual != *digest {
                    report.problems.push(Problem::CorruptBlob {
                        digest: digest.clone(),
                        actual,
                    });
                }
            }
            Err(e) => report.problems.push(Problem::UnreadableBlob {
                path: path.clone(),
                reason: e.to_string(),
            }),
        }
    }
    Ok(())
}

/// The regular files under `blobs/sha256/` named by a digest, with their paths, sorted. Other
/// names are not the store's and are left alone, as GC leaves them.
fn blob_files(dir: &Path) -> Result<Vec<(Digest, PathBuf)>, StoreError> {
    let listing_error = || format!("listing {}", dir.display());
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context(listing_error),
    };
    let mut blobs = Vec::new();
    for entry in entries {
        let entry = entry.context(listing_error)?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let (true, Ok(digest)) = (is_file, Digest::parse(&format!("sha256:{name}"))) {
            blobs.push((digest, entry.path()));
        }
    }
    blobs.sort();
    Ok(blobs)
}

fn check_records(layout: &Layout, report: &mut VerifyReport) {
    // A root a daemon never opened has no database yet: nothing to check, and nothing created.
    if !layout.database.exists() {
        return;
    }
    let roots = match Metadata::open(layout).and_then(|meta| meta.image_roots()) {
        Ok(roots) => roots,
        Err(e) => {
            report.problems.push(Problem::Metadata {
                reason: e.to_string(),
            });
            return;
        }
    };
    let children = ChildrenCache::default();
    for RecordRoot { name, target } in roots {
        report.images += 1;
        match target {
            Ok(target) => check_graph(layout, &children, &name, target, &mut report.problems),
            Err(_) => report
                .problems
                .push(Problem::UndecodableRecord { image: name }),
        }
    }
}

/// Walks what `target` reaches. A node is `required` unless an index leads to it.
fn check_graph(
    layout: &Layout,
    children: &ChildrenCache,
    image: &str,
    target: Descriptor,
    problems: &mut Vec<Problem>,
) {
    let mut seen = HashSet::new();
    let mut stack = vec![(target, true)];
    while let Some((desc, required)) = stack.pop() {
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        let missing = || Problem::MissingBlob {
            image: image.to_owned(),
            digest: desc.digest.clone(),
        };
        let size = match fs::metadata(layout.blob_path(&desc.digest)) {
            Ok(meta) if meta.is_file() => meta.len(),
            _ => {
                if required {
                    problems.push(missing());
                }
                continue;
            }
        };
        if size != desc.size {
            problems.push(Problem::SizeMismatch {
                image: image.to_owned(),
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: size,
            });
        }
        let Some(kind) = ManifestKind::of_media_type(&desc.media_type) else {
            continue;
        };
        let children_required = required && kind == ManifestKind::Manifest;
        match children.of_kind(layout, &desc.digest, kind) {
            Ok(found) => stack.extend(found.iter().map(|c| (c.clone(), children_required))),
            Err(StoreError::NotFound(_)) if required => problems.push(missing()),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => problems.push(Problem::InvalidManifest {
                image: image.to_owned(),
                digest: desc.digest.clone(),
                reason: match e {
                    StoreError::InvalidManifest { reason, .. } => reason,
                    other => other.to_string(),
                },
            }),
        }
    }
}
