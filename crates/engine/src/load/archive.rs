//! Reading a load's archive: every tar entry, blobs streamed into the store and verified against
//! the digests their paths name, the archive's own JSON structure files kept in memory, links
//! resolved within the archive.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

use hoist_oci::compression::{self, Compression};
use hoist_reference::Digest;
use hoist_store::{Lease, StoreError};

use crate::{Engine, EngineError};

/// Small JSON files of an archive's own structure, kept in memory rather than stored as blobs.
const MAX_METADATA_BYTES: u64 = 64 * 1024 * 1024;
/// How many links may chain (a link to a link …) before an archive is refused.
const MAX_LINK_DEPTH: usize = 16;

#[derive(Clone, Debug)]
pub(super) enum ArchiveFile {
    Blob(Digest, u64),
    Metadata(Vec<u8>),
}

impl Engine {
    /// Reads every tar entry, storing files as blobs (verified against `blobs/<alg>/<hex>` names)
    /// and keeping the archive's JSON structure files in memory. Returns path → file.
    pub(super) fn ingest_archive(
        &self,
        reader: impl Read + Send + 'static,
        lease: &Lease,
    ) -> Result<HashMap<String, ArchiveFile>, EngineError> {
        let reader = decompress(BufReader::with_capacity(1 << 20, reader))
            .map_err(|e| EngineError::BadArchive(format!("invalid archive: {e}")))?;
        let mut archive = tar::Archive::new(reader);
        let mut files: HashMap<String, ArchiveFile> = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let entries = archive.entries().map_err(corrupt)?;
        for entry in entries {
            let mut entry = entry.map_err(corrupt)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path = normalize_entry_path(&raw)?;
            match entry.header().entry_type() {
                tar::EntryType::Directory => {}
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if path.is_empty() {
                        continue;
                    }
                    let declared_size = entry.size();
                    let file = if is_structure_file(&path) {
                        let mut bytes = Vec::new();
                        (&mut entry)
                            .take(MAX_METADATA_BYTES + 1)
                            .read_to_end(&mut bytes)
                            .map_err(corrupt)?;
                        if bytes.len() as u64 > MAX_METADATA_BYTES {
                            return Err(EngineError::BadArchive(format!(
                                "invalid archive: {path} is too large"
                            )));
                        }
                        check_complete(&path, bytes.len() as u64, declared_size)?;
                        ArchiveFile::Metadata(bytes)
                    } else {
                        self.ingest_blob(&path, &mut entry, declared_size, lease)?
                    };
                    files.insert(path, file);
                }
                tar::EntryType::Symlink => {
                    // Relative to the link's directory: docker save links a repeated layer
                    // as `<id>/layer.tar` → `../<other id>/layer.tar`.
                    let target = link_target(&entry, &raw)?;
                    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    let resolved = resolve_within_archive(parent, &target)
                        .ok_or_else(|| escaping_link(&raw, &target))?;
                    links.push((path, resolved));
                }
                tar::EntryType::Link => {
                    // Hard links name their target from the archive's root.
                    let target = link_target(&entry, &raw)?;
                    let resolved = resolve_within_archive("", &target)
                        .ok_or_else(|| escaping_link(&raw, &target))?;
                    links.push((path, resolved));
                }
                // Extended headers are consumed by the tar crate; anything else has no place here.
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
                other => {
                    return Err(EngineError::BadArchive(format!(
                        "invalid archive: entry {raw} has unsupported type {other:?}"
                    )));
                }
            }
        }
        for _ in 0..MAX_LINK_DEPTH {
            let mut changed = false;
            for (path, target) in &links {
                if !files.contains_key(path)
                    && let Some(file) = files.get(target).cloned()
                {
                    files.insert(path.clone(), file);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        Ok(files)
    }

    fn ingest_blob(
        &self,
        path: &str,
        entry: &mut impl Read,
        declared_size: u64,
        lease: &Lease,
    ) -> Result<ArchiveFile, EngineError> {
        let expected = blob_digest_from_path(path)?;
        let mut writer = self.store.blob_writer(lease)?;
        let copied = std::io::copy(entry, &mut writer).map_err(corrupt)?;
        check_complete(path, copied, declared_size)?;
        match writer.commit(expected.as_ref()) {
            Ok((digest, size)) => Ok(ArchiveFile::Blob(digest, size)),
            Err(StoreError::DigestMismatch { expected, actual }) => {
                Err(EngineError::BadArchive(format!(
                    "invalid archive: content of {path} does not match its digest {expected} (it hashes to {actual})"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn decompress<R: BufRead + Send + 'static>(reader: R) -> std::io::Result<Box<dyn Read + Send>> {
    let (compression, reader) = compression::detect(reader)?;
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::Uncompressed | Compression::Bzip2 | Compression::Xz => Box::new(reader),
    })
}

/// An archive path made relative and clean (`./a//b` → `a/b`). Absolute paths and `..` are
/// refused outright: nothing legitimate in an image archive needs them.
pub(super) fn normalize_entry_path(raw: &str) -> Result<String, EngineError> {
    if raw.starts_with('/') {
        return Err(EngineError::BadArchive(format!(
            "invalid archive: entry {raw:?} has an absolute path"
        )));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(EngineError::BadArchive(format!(
                    "invalid archive: entry {raw:?} points outside the archive"
                )));
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// `target` taken relative to the directory `base` (both archive paths), with `.` and `..`
/// applied; None when it is absolute or climbs above the archive's root.
fn resolve_within_archive(base: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn link_target(entry: &tar::Entry<'_, impl Read>, raw: &str) -> Result<String, EngineError> {
    entry
        .link_name_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .ok_or_else(|| {
            EngineError::BadArchive(format!("invalid archive: link {raw:?} has no target"))
        })
}

fn escaping_link(raw: &str, target: &str) -> EngineError {
    EngineError::BadArchive(format!(
        "invalid archive: link {raw:?} points outside the archive ({target:?})"
    ))
}

fn is_structure_file(path: &str) -> bool {
    matches!(
        path,
        "index.json" | "manifest.json" | "oci-layout" | "repositories"
    ) || path.ends_with("/json")
        || path.ends_with("/VERSION")
}

/// `blobs/<alg>/<hex>` names the digest its content must have, and so does the `<hex>.json`
/// name docker save gives a docker-archive's config (the sha256 of the config).
fn blob_digest_from_path(path: &str) -> Result<Option<Digest>, EngineError> {
    if let Some(hex) = path.strip_suffix(".json")
        && hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Digest::parse(&format!("sha256:{hex}"))
            .map(Some)
            .map_err(|e| EngineError::Internal(format!("a 64-hex name is a digest: {e}")));
    }
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("blobs"), Some(alg), Some(hex), None) => Digest::parse(&format!("{alg}:{hex}"))
            .map(Some)
            .map_err(|e| {
                EngineError::BadArchive(format!(
                    "invalid archive: {path} is not named by a valid digest: {e}"
                ))
            }),
        _ => Ok(None),
    }
}

fn corrupt(e: std::io::Error) -> EngineError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return EngineError::BadArchive(format!("invalid archive: it is truncated ({e})"));
    }
    EngineError::BadArchive(format!("invalid archive: {e}"))
}

/// The tar reader hands out a short entry when the input ends inside it; say so, rather than
/// let the short content fail later as a digest mismatch or bad JSON.
fn check_complete(path: &str, read: u64, declared: u64) -> Result<(), EngineError> {
    if read < declared {
        return Err(EngineError::BadArchive(format!(
            "invalid archive: it is truncated: {path} ends after {read} of its {declared} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_cleaned_and_escapes_refused() {
        assert_eq!(normalize_entry_path("./a//b/").unwrap(), "a/b");
        assert!(normalize_entry_path("../etc/passwd").is_err());
        assert!(normalize_entry_path("a/../../b").is_err());
        assert!(normalize_entry_path("/etc/passwd").is_err());
    }

    #[test]
    fn link_targets_resolve_inside_the_archive_only() {
        assert_eq!(
            resolve_within_archive("aaa", "../bbb/layer.tar").as_deref(),
            Some("bbb/layer.tar")
        );
        assert_eq!(resolve_within_archive("", "./x//y").as_deref(), Some("x/y"));
        assert_eq!(resolve_within_archive("aaa", "../../etc/passwd"), None);
        assert_eq!(resolve_within_archive("", "../x"), None);
        assert_eq!(resolve_within_archive("a/b", "/etc/passwd"), None);
    }

    #[test]
    fn blob_paths_name_digests() {
        let hex = "a".repeat(64);
        assert_eq!(
            blob_digest_from_path(&format!("blobs/sha256/{hex}"))
                .unwrap()
                .unwrap()
                .hex(),
            hex
        );
        assert!(blob_digest_from_path("blobs/sha256/zz").is_err());
        assert!(blob_digest_from_path("abc/layer.tar").unwrap().is_none());
        assert_eq!(
            blob_digest_from_path(&format!("{hex}.json"))
                .unwrap()
                .unwrap()
                .hex(),
            hex
        );
        assert!(
            blob_digest_from_path(&format!("{hex}/json"))
                .unwrap()
                .is_none()
        );
        assert!(blob_digest_from_path("config.json").unwrap().is_none());
    }
}
