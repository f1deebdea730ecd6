//! What an archive is made of before it is written: its layout and its planned entries.

use super::raw::RawArchive;

/// The layout of an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// docker save before 25: `manifest.json` (`[{"Config":"<hex>.json","RepoTags":[…],
    /// "Layers":["<id>/layer.tar",…]}]`), `<hex>.json`, `<id>/{VERSION,json,layer.tar}`,
    /// `repositories`. A layer whose content already sits in another directory is a symlink
    /// `../<other>/layer.tar`, as docker save writes it.
    DockerLegacy,
    /// `manifest.json` pointing into `blobs/sha256/<hex>` (config and layers), no `index.json`.
    DockerBlobs,
    /// An OCI image layout: `oci-layout`, `index.json`, `blobs/sha256/<hex>`.
    Oci,
    /// The OCI layout plus `manifest.json` and `repositories`, as docker save ≥ 25 writes.
    Both,
}

/// What the plan knows beyond the entries, for [`Breakage`]s.
pub(crate) struct Plan {
    pub raw: RawArchive,
    /// Entry names of layer files, first image first.
    pub layer_entries: Vec<String>,
    pub config_entries: Vec<String>,
}
