//! The media types hoist reads and writes, and how they are classified.

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// Every index and manifest type hoist handles, in the order a registry is asked for them.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// An OCI index or Docker manifest list: references manifests.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// An OCI or Docker schema2 image manifest: references a config and layers.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A filesystem layer, OCI or Docker, of any compression.
pub fn is_layer(media_type: &str) -> bool {
    media_type.contains(".layer.") || media_type.contains(".rootfs.diff.")
}

/// Layers a registry must not receive: their content lives elsewhere (Windows base layers).
pub fn is_non_distributable(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.nondistributable")
        || media_type.starts_with("application/vnd.docker.image.rootfs.foreign")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_indexes_manifests_and_layers() {
        assert!(is_index(OCI_INDEX) && is_index(DOCKER_MANIFEST_LIST));
        assert!(is_manifest(OCI_MANIFEST) && is_manifest(DOCKER_MANIFEST));
        assert!(!is_index(OCI_MANIFEST) && !is_manifest(OCI_INDEX));
        for layer in [
            OCI_LAYER_GZIP,
            OCI_LAYER_ZSTD,
            DOCKER_LAYER,
            DOCKER_LAYER_GZIP,
            DOCKER_LAYER_ZSTD,
        ] {
            assert!(is_layer(layer), "{layer}");
        }
        assert!(!is_layer(OCI_CONFIG) && !is_layer(DOCKER_CONFIG));
        assert!(is_non_distributable(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        ));
        assert!(!is_non_distributable(OCI_LAYER_GZIP));
        assert!(
            MANIFEST_MEDIA_TYPES
                .iter()
                .all(|t| is_index(t) || is_manifest(t))
        );
    }
}
