//! The real registry: Debian's `docker-registry` (CNCF distribution 2.8) on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process::{free_port, require_program, spawn_tied};

/// How a test registry authenticates clients.
#[derive(Clone, Debug, Default)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    /// htpasswd with bcrypt hashes (the only kind distribution accepts): (user, password) pairs.
    Htpasswd(Vec<(String, String)>),
    /// Raw YAML placed under `auth:` (for token servers), indented by the caller's choice of keys.
    Raw(String),
}

#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    pub auth: RegistryAuth,
}

/// A running `docker-registry` process with its own storage directory.
pub struct TestRegistry {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl TestRegistry {
    /// One anonymous registry shared by every test in this test binary. Tests must use
    /// repository names unique to themselves.
    pub fn shared() -> &'static TestRegistry {
        static SHARED: OnceLock<TestRegistry> = OnceLock::new();
        SHARED.get_or_init(|| TestRegistry::start(RegistryOptions::default()))
    }

    /// Starts a new registry and waits until it answers `GET /v2/`.
    pub fn start(opts: RegistryOptions) -> TestRegistry {
        let bin = require_program("docker-registry", "apt-get install -y docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("hoist-registry-")
            .tempdir()
            .expect("registry temp dir");
        let port = free_port();
        let auth = match &opts.auth {
            RegistryAuth::Anonymous => String::new(),
            RegistryAuth::Htpasswd(users) => {
                let mut lines = String::new();
                for (user, password) in users {
                    let hash = bcrypt::hash(password, 4).expect("bcrypt hash");
                    lines.push_str(&format!("{user}:{hash}\n"));
                }
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, lines).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: hoist-test\n    path: {}\n",
                    file.display()
                )
            }
            RegistryAuth::Raw(yaml) => format!("auth:\n{yaml}\n"),
        };
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("registry storage dir");
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: hoist-test-secret\n\
             {auth}",
            storage = storage.display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = spawn_tied(cmd).expect("start docker-registry");
        let mut reg = TestRegistry { port, dir, child };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "docker-registry exited with {status} before answering; log:\n{}",
                    self.log()
                );
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!(
                    "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    self.port
                );
                let mut buf = [0u8; 12];
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && buf.starts_with(b"HTTP/1.1")
                {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not answer within 15 s; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the registry part of image names pushed here.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory holding the registry's storage, config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `GET /v2/<repo>/manifests/<reference>` accepting every manifest and index type; panics
    /// unless 200.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> FetchedManifest {
        let response = crate::http_client()
            .get(format!("{}/v2/{repo}/manifests/{reference}", self.url()))
            .header("Accept", ALL_MANIFEST_TYPES)
            .send()
            .unwrap_or_else(|e| panic!("GET manifest {repo}:{reference}: {e}"));
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let content_type = header("content-type");
        let digest = header("docker-content-digest");
        let bytes = response.bytes().expect("read manifest body").to_vec();
        assert_eq!(
            status,
            200,
            "GET manifest {repo}:{reference}: {}",
            String::from_utf8_lossy(&bytes)
        );
        FetchedManifest {
            bytes,
            content_type,
            digest,
        }
    }

    /// `GET /v2/<repo>/blobs/<digest>`, streamed through sha256: (`sha256:<hex>`, size). Panics
    /// unless 200.
    pub fn blob_digest_and_size(&self, repo: &str, digest: &str) -> (String, u64) {
        use sha2::Digest;
        use std::io::Read;
        let mut response = crate::http_client()
            .get(format!("{}/v2/{repo}/blobs/{digest}", self.url()))
            .send()
            .unwrap_or_else(|e| panic!("GET blob {repo}@{digest}: {e}"));
        assert_eq!(response.status(), 200, "GET blob {repo}@{digest}");
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = response.read(&mut buf).expect("read blob body");
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        (format!("sha256:{}", hex::encode(hasher.finalize())), size)
    }

    /// Whether `HEAD /v2/<repo>/blobs/<digest>` answers 200.
    pub fn has_blob(&self, repo: &str, digest: &str) -> bool {
        let response = crate::http_client()
            .head(format!("{}/v2/{repo}/blobs/{digest}", self.url()))
            .send()
            .unwrap_or_else(|e| panic!("HEAD blob {repo}@{digest}: {e}"));
        response.status() == 200
    }

    /// Uploads `blob` into `repo` (POST, then one PUT streaming the file); panics unless 201.
    pub fn put_blob(&self, repo: &str, blob: &crate::image::Blob) {
        let client = crate::http_client();
        let started = client
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.url()))
            .send()
            .unwrap_or_else(|e| panic!("POST upload to {repo}: {e}"));
        assert_eq!(started.status(), 202, "POST upload to {repo}");
        let location = started.headers()["location"]
            .to_str()
            .expect("Location is text")
            .to_owned();
        let separator = if location.contains('?') { '&' } else { '?' };
        let file = std::fs::File::open(&blob.path)
            .unwrap_or_else(|e| panic!("open {}: {e}", blob.path.display()));
        let put = client
            .put(format!("{location}{separator}digest={}", blob.digest))
            .header("Content-Type", "application/octet-stream")
            .body(file)
            .send()
            .unwrap_or_else(|e| panic!("PUT blob {} to {repo}: {e}", blob.digest));
        assert_eq!(put.status(), 201, "PUT blob {} to {repo}", blob.digest);
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with `manifest`'s bytes and media type; panics
    /// unless 201.
    pub fn put_manifest(&self, repo: &str, reference: &str, manifest: &crate::image::Blob) {
        let response = crate::http_client()
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.url()))
            .header("Content-Type", &manifest.media_type)
            .body(manifest.bytes())
            .send()
            .unwrap_or_else(|e| panic!("PUT manifest {repo}:{reference}: {e}"));
        let status = response.status();
        let body = response.text().unwrap_or_default();
        assert_eq!(status, 201, "PUT manifest {repo}:{reference}: {body}");
    }

    /// Puts `image` into `repo` as `tag` over plain HTTP, byte for byte (no skopeo needed).
    pub fn push_image(&self, repo: &str, tag: &str, image: &crate::image::Image) {
        for blob in image.blobs() {
            self.put_blob(repo, blob);
        }
        self.put_manifest(repo, tag, &image.manifest);
    }

    /// Puts `index`, its images and attestations into `repo` as `tag`, byte for byte.
    pub fn push_index(&self, repo: &str, tag: &str, index: &crate::image::ImageIndex) {
        for blob in index.blobs() {
            self.put_blob(repo, blob);
        }
        for image in index.all_images() {
            self.put_manifest(repo, image.digest(), &image.manifest);
        }
        self.put_manifest(repo, tag, &index.index);
    }

    /// The tags of `repo` (empty when the repository is unknown).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let response = crate::http_client()
            .get(format!("{}/v2/{repo}/tags/list", self.url()))
            .send()
            .unwrap_or_else(|e| panic!("GET tags of {repo}: {e}"));
        if response.status() == 404 {
            return Vec::new();
        }
        let body: serde_json::Value = response.json().expect("tags list JSON");
        body["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Every manifest and index media type, for `Accept`.
pub const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest as the registry served it.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: String,
    /// The `Docker-Content-Digest` header.
    pub digest: String,
}

impl FetchedManifest {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).expect("manifest is JSON")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
