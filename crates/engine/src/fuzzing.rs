//! Entry points for fuzzing what the engine parses from clients and archives: each takes
//! arbitrary bytes, runs the production code and asserts what must hold for any input. The
//! unit tests below run them as property tests; the targets in `fuzz/` run them under
//! libFuzzer.

use std::path::Path;
use std::sync::OnceLock;

use hoist_reference::Digest;

use crate::image_content::parse_manifest;
use crate::{AuthConfig, Engine, EngineConfig, EngineError, Platform, normalize_server};

/// `Engine::load` of arbitrary bytes into a fresh data root: it answers Ok or an error, never
/// panics, and an archive it refuses leaves nothing behind (no image, no blob, no temp file).
pub fn load_archive(input: &[u8]) {
    let Ok(root) = tempfile::tempdir() else {
        panic!("no temporary directory for the data root");
    };
    let engine = match Engine::open(EngineConfig::new(root.path().to_owned())) {
        Ok(engine) => engine,
        Err(e) => panic!("opening a fresh data root failed: {e}"),
    };
    let loaded = runtime().block_on(engine.load(std::io::Cursor::new(input.to_vec()), None));
    match loaded {
        Ok(images) => {
            for image in &images {
                assert!(engine.store.has_blob(&image.id), "{image:?} has no blob");
            }
        }
        Err(EngineError::Internal(message)) if message.starts_with("background task failed") => {
            panic!("load panicked: {message}")
        }
        Err(_) => {
            assert!(
                engine.store.images().is_empty(),
                "a refused archive left images"
            );
            assert_no_files(&root.path().join("blobs/sha256"));
        }
    }
    assert_no_files(&root.path().join("ingest"));
}

/// A manifest or index as the engine reads it from the store: what parses can be asked which
/// of its entries are attestations and which suits a host best.
pub fn manifest(input: &[u8]) {
    let digest = Digest::sha256_from_bytes(&[0; 32]);
    let Ok(doc) = parse_manifest(&digest, input) else {
        return;
    };
    let host = Platform::host();
    for entry in &doc.manifests {
        let _ = entry.is_attestation();
        if let Some(platform) = &entry.platform {
            let _ = host.host_preference(platform);
        }
    }
}

/// An image config read for its platform (as pull's platform check and distribution's inspect
/// read it), and the same text as a client's platform (JSON, or `os/arch/variant`).
pub fn config(input: &[u8]) {
    let host = Platform::host();
    if let Ok(platform) = serde_json::from_slice::<Platform>(input) {
        let _ = host.matches(&platform);
        let _ = host.host_preference(&platform);
        let _ = platform.normalized().format();
    }
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let parsed = [Platform::from_json(text), Platform::parse_specifier(text)];
    for platform in parsed.into_iter().flatten() {
        assert!(!platform.normalized().format().is_empty());
    }
}

/// The JSON inside `X-Registry-Auth` (or a login body): credentials named for another registry
/// are never presented to this one.
pub fn auth_config(input: &[u8]) {
    let Ok(config) = serde_json::from_slice::<AuthConfig>(input) else {
        return;
    };
    credentials(&config);
}

/// What `config` presents to a registry it names and to one it does not.
pub fn credentials(config: &AuthConfig) {
    let own = normalize_server(&config.serveraddress);
    let _ = config.credentials_for(&own);
    let _ = config.credentials_for("docker.io");
    let other = "other.example:5000";
    if !config.serveraddress.is_empty() && own != other {
        assert!(
            matches!(
                config.credentials_for(other),
                hoist_registry::Credentials::Anonymous
            ),
            "{config:?} presented to {other}"
        );
    }
}

/// One runtime for every input: building one per archive would dominate the run.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => panic!("no tokio runtime: {e}"),
        }
    })
}

fn assert_no_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let left: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest as _, Sha256};

    use super::*;

    /// A tar of `entries` (path, bytes), as the load endpoint receives it.
    fn tar_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, path, bytes.as_slice())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn sha256(bytes: &[u8]) -> String {
        Digest::sha256_from_bytes(&Sha256::digest(bytes).into()).to_string()
    }

    fn blob_path(bytes: &[u8]) -> String {
        format!("blobs/sha256/{}", &sha256(bytes)["sha256:".len()..])
    }

    /// A docker-archive whose manifest.json, config and layer vary, pointing at what is there
    /// or not, with sizes right or wrong.
    fn docker_archive() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::vec(any::<u8>(), 0..64),
            r#"\{("architecture":"[a-z0-9]{0,6}",?|"os":"[a-z]{0,6}",?|"rootfs":\{"type":"layers","diff_ids":\["sha256:[a-f0-9]{64}"\]\},?){0,3}\}|[^"]{0,20}"#,
            r#"[a-zA-Z0-9:/@._-]{0,24}"#,
            any::<u8>(),
        )
            .prop_map(|(layer, config, tag, choice)| {
                let config_path = if choice & 1 == 0 {
                    blob_path(config.as_bytes())
                } else {
                    "config.json".to_owned()
                };
                let layer_path = if choice & 2 == 0 {
                    blob_path(&layer)
                } else {
                    "abc/layer.tar".to_owned()
                };
                let manifest = format!(
                    r#"[{{"Config":"{config_path}","RepoTags":["{tag}"],"Layers":["{layer_path}"]}}]"#
                );
                let mut entries = vec![(
                    "manifest.json".to_owned(),
                    manifest_or_garbage(choice, manifest).into_bytes(),
                )];
                if choice & 4 == 0 {
                    entries.push((config_path, config.into_bytes()));
                }
                if choice & 8 == 0 {
                    entries.push((layer_path, layer));
                }
                tar_of(&entries)
            })
    }

    /// An OCI layout: index.json → manifest → config and layer, with any link of the chain
    /// broken or lying about its size.
    fn oci_layout() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::vec(any::<u8>(), 0..64),
            r#"\{("architecture":"[a-z0-9]{0,6}",?|"os":"[a-z]{0,6}",?){0,2}\}"#,
            r#"[a-zA-Z0-9:/@._-]{0,24}"#,
            any::<u8>(),
            0u64..80,
        )
            .prop_map(|(layer, config, name, choice, lie)| {
                let size = |bytes: &[u8]| {
                    if choice & 16 == 0 {
                        bytes.len() as u64
                    } else {
                        lie
                    }
                };
                let manifest = format!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
                    sha256(config.as_bytes()),
                    config.len(),
                    sha256(&layer),
                    size(&layer),
                );
                let media_type = if choice & 32 == 0 {
                    "application/vnd.oci.image.manifest.v1+json"
                } else {
                    "application/vnd.oci.image.index.v1+json"
                };
                let index = format!(
                    r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{media_type}","digest":"{}","size":{},"annotations":{{"io.containerd.image.name":"{name}"}}}}]}}"#,
                    sha256(manifest.as_bytes()),
                    size(manifest.as_bytes()),
                );
                let mut entries = vec![
                    ("oci-layout".to_owned(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
                    ("index.json".to_owned(), manifest_or_garbage(choice, index).into_bytes()),
                ];
                if choice & 4 == 0 {
                    entries.push((blob_path(config.as_bytes()), config.into_bytes()));
                }
                if choice & 8 == 0 {
                    entries.push((blob_path(&layer), layer));
                }
                if choice & 64 == 0 {
                    entries.push((blob_path(manifest.as_bytes()), manifest.into_bytes()));
                }
                tar_of(&entries)
            })
    }

    /// The structure file as built, or cut short.
    fn manifest_or_garbage(choice: u8, json: String) -> String {
        if choice & 128 == 0 {
            json
        } else {
            json[..json.len() / 2].to_owned()
        }
    }

    #[test]
    fn a_well_formed_archive_loads() {
        // A layer is a tar, and the config names what it unpacks to.
        let layer = tar_of(&[("etc/motd".to_owned(), b"hello from a layer\n".to_vec())]);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            sha256(&layer)
        )
        .into_bytes();
        let manifest = format!(
            r#"[{{"Config":"{}","RepoTags":["fuzz:seed"],"Layers":["{}"]}}]"#,
            blob_path(&config),
            blob_path(&layer)
        );
        let archive = tar_of(&[
            ("manifest.json".to_owned(), manifest.into_bytes()),
            (blob_path(&config), config),
            (blob_path(&layer), layer),
        ]);
        let root = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(root.path().to_owned())).unwrap();
        let loaded = runtime().block_on(engine.load(std::io::Cursor::new(archive.clone()), None));
        // The property must see success too, or it checks only refusals.
        assert!(loaded.is_ok(), "{loaded:?}");
        load_archive(&archive);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_bytes_load_or_are_refused_cleanly(input in prop::collection::vec(any::<u8>(), 0..2048)) {
            load_archive(&input);
        }

        #[test]
        fn docker_archives_load_or_are_refused_cleanly(input in docker_archive()) {
            load_archive(&input);
        }

        #[test]
        fn oci_layouts_load_or_are_refused_cleanly(input in oci_layout()) {
            load_archive(&input);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_manifest_is_read_safely(input in prop::collection::vec(any::<u8>(), 0..300)) {
            manifest(&input);
        }

        #[test]
        fn index_like_json_is_read_safely(
            input in r#"\{"manifests":\[(\{"mediaType":"[a-z/.+]{0,10}","digest":"sha256:[a-f0-9]{64}","size":[0-9]{1,3}(,"platform":\{("architecture":"[a-z0-9]{0,6}",?|"os":"[a-z]{0,6}",?|"variant":"v[0-9]",?){0,3}\})?(,"annotations":\{"vnd\.docker\.reference\.type":"attestation-manifest"\})?\},?){0,3}\]\}"#
        ) {
            manifest(input.as_bytes());
        }

        #[test]
        fn any_config_or_platform_is_read_safely(input in r#"\{("architecture":"[a-z0-9]{0,6}",?|"os":"[a-z]{0,6}",?|"variant":"[a-z0-9]{0,3}",?|"os\.version":"[0-9.]{0,5}",?){0,4}\}|[a-zA-Z0-9/]{0,20}|.{0,40}"#) {
            config(input.as_bytes());
        }

        #[test]
        fn any_auth_config_is_read_safely(
            input in r#"\{("(username|password|auth|serveraddress|identitytoken|registrytoken)":"[a-zA-Z0-9+/=:.]{0,20}",?){0,6}\}|.{0,40}"#
        ) {
            auth_config(input.as_bytes());
        }
    }
}
