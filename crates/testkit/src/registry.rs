//! The real registry: Debian's `docker-registry` (CNCF distribution 2.8) on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process::{free_port, require_program, spawn_tied};
use crate::tls::{CertPair, TestCa};

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

/// HTTPS for a test registry (distribution's `http.tls`).
#[derive(Clone, Debug)]
pub struct RegistryTls {
    /// The server's certificate and key.
    pub server: CertPair,
    /// CA certificates (PEM) that client certificates must chain to (`clientcas`): set, the
    /// registry refuses clients without one.
    pub client_cas: Vec<String>,
    /// The identity the harness's own requests present when client certificates are required.
    harness_identity: Option<CertPair>,
}

impl RegistryTls {
    /// HTTPS with `server`'s certificate; any client may connect.
    pub fn server(server: CertPair) -> RegistryTls {
        RegistryTls {
            server,
            client_cas: Vec::new(),
            harness_identity: None,
        }
    }

    /// HTTPS that also requires a client certificate issued by `client_ca`.
    pub fn mutual(server: CertPair, client_ca: &TestCa) -> RegistryTls {
        RegistryTls {
            server,
            client_cas: vec![client_ca.cert_pem()],
            harness_identity: Some(client_ca.issue_client("hoist-testkit-harness")),
        }
    }
}

/// A running `docker-registry` process with its own storage directory.
pub struct TestRegistry {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
    tls: Option<RegistryTls>,
    /// The harness's client for seeding and reading (trusts whatever certificate the registry
    /// has: it checks bytes, not TLS). Made on first use: a blocking client cannot be made (or
    /// dropped) on an async runtime's thread, where registries are often started.
    client: OnceLock<reqwest::blocking::Client>,
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
        TestRegistry::launch(opts, None)
    }

    /// Starts a new registry serving HTTPS (and requiring client certificates when
    /// `tls.client_cas` is set).
    pub fn start_with_tls(opts: RegistryOptions, tls: RegistryTls) -> TestRegistry {
        TestRegistry::launch(opts, Some(tls))
    }

    fn launch(opts: RegistryOptions, tls: Option<RegistryTls>) -> TestRegistry {
        let bin = require_program("docker-registry", "apt-get install -y docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("hoist-registry-")
            .tempdir()
            .expect("registry temp dir");
        crate::process::remove_at_exit(dir.path().to_owned());
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
        let tls_yaml = tls
            .as_ref()
            .map(|tls| tls_config(dir.path(), tls))
            .unwrap_or_default();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: hoist-test-secret\n{tls_yaml}\
             {auth}",
            storage = storage.display(),
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("write registry config");
        let child = spawn_registry(&bin, dir.path());
        let mut reg = TestRegistry {
            port,
            dir,
            child,
            tls,
            client: OnceLock::new(),
        };
        reg.wait_ready();
        reg
    }

    /// Kills the registry process (SIGKILL: connections drop, nothing is flushed), keeping its
    /// port, storage and configuration for [`TestRegistry::start_again`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the registry again after [`TestRegistry::stop`] on the same port, storage and
    /// configuration, and waits until it answers.
    pub fn start_again(&mut self) {
        let bin = require_program("docker-registry", "apt-get install -y docker-registry");
        self.child = spawn_registry(&bin, self.dir.path());
        self.wait_ready();
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
                // A TLS registry answers this plain request with `HTTP/1.0 400`: it is up.
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && buf.starts_with(b"HTTP/1.")
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

    /// `http://127.0.0.1:<port>`, or `https://…` for a registry started with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The harness's HTTP client for this registry (accepts its certificate, presents the
    /// harness's client certificate when one is required).
    pub fn client(&self) -> &reqwest::blocking::Client {
        self.client
            .get_or_init(|| harness_client(self.tls.as_ref()))
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
        let response = self
            .client()
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
        let mut response = self
            .client()
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
        let response = self
            .client()
            .head(format!("{}/v2/{repo}/blobs/{digest}", self.url()))
            .send()
            .unwrap_or_else(|e| panic!("HEAD blob {repo}@{digest}: {e}"));
        response.status() == 200
    }

    /// Uploads `blob` into `repo` (POST, then one PUT streaming the file); panics unless 201.
    pub fn put_blob(&self, repo: &str, blob: &crate::image::Blob) {
        let client = self.client();
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
        let response = self
            .client()
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
        let response = self
            .client()
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

/// Runs `docker-registry serve <dir>/config.yml`, appending to `<dir>/registry.log`.
fn spawn_registry(bin: &Path, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("registry.log"))
        .expect("registry log");
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log);
    spawn_tied(cmd).expect("start docker-registry")
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

/// `http.tls` of the registry's config; the PEM files go into `dir`.
fn tls_config(dir: &Path, tls: &RegistryTls) -> String {
    let (cert, key) = tls.server.write(&dir.join("tls"), "server", "crt");
    let mut yaml = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        cert.display(),
        key.display()
    );
    if !tls.client_cas.is_empty() {
        yaml.push_str("    clientcas:\n");
        for (i, pem) in tls.client_cas.iter().enumerate() {
            let path = dir.join("tls").join(format!("client-ca-{i}.pem"));
            std::fs::write(&path, pem).expect("write client CA");
            yaml.push_str(&format!("      - {}\n", path.display()));
        }
    }
    yaml
}

fn harness_client(tls: Option<&RegistryTls>) -> reqwest::blocking::Client {
    let Some(tls) = tls else {
        return crate::http_client();
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_danger_accept_invalid_certs(true);
    if let Some(identity) = &tls.harness_identity {
        builder = builder.identity(
            reqwest::Identity::from_pem(&identity.identity_pem()).expect("harness identity"),
        );
    }
    builder.build().expect("build the harness's TLS client")
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
