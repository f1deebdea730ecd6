//! How much of a document hoist reads before refusing it.
//!
//! One limit serves everyone who reads a manifest: the registry client fetching it, the engine
//! reading it back, and the store walking it for garbage collection. A manifest that one of them
//! accepts, all of them can read; otherwise content accepted on pull could make every later
//! collection fail.

/// Largest manifest or index hoist accepts. distribution refuses to store manifests larger than
/// 4 MiB, and containerd and moby read at most about that much, so a larger one could not have
/// been pushed to the reference registry nor pulled by the reference clients.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Largest image config hoist reads. Configs carry the image history and can outgrow a
/// manifest, but anything this large is not an image config.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
