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
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
