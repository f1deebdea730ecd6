//! The daemon under test: `hoistd` started with dockerd's flags in a private directory.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use crate::http1::RawResponse;
use crate::process::spawn_tied;

/// How to start the daemon.
#[derive(Clone, Debug)]
pub struct HoistdOptions {
    /// Written to `daemon.json` and passed with `--config-file`.
    pub config: serde_json::Value,
    /// Extra command-line arguments, after the standard ones; a `--log-level` among them replaces
    /// the default `--log-level debug`.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl Default for HoistdOptions {
    fn default() -> Self {
        HoistdOptions {
            config: serde_json::json!({}),
            args: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// A running `hoistd`; killed when dropped.
pub struct Hoistd {
    bin: PathBuf,
    opts: HoistdOptions,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

impl Hoistd {
    /// Starts the daemon (`bin` is the caller's `env!("CARGO_BIN_EXE_hoistd")`) and waits until
    /// `GET /_ping` answers 200; panics with the daemon's log if it dies or never answers.
    pub fn start(bin: &Path, opts: HoistdOptions) -> Hoistd {
        match Hoistd::try_start(bin, opts) {
            Ok(daemon) => daemon,
            Err(failure) => panic!("{failure}"),
        }
    }

    /// Like [`Hoistd::start`] but returns the exit status and log when the daemon exits before
    /// answering (for tests of refused configurations).
    pub fn try_start(bin: &Path, opts: HoistdOptions) -> Result<Hoistd, StartFailure> {
        let dir = tempfile::Builder::new()
            .prefix("hoistd-")
            .tempdir()
            .expect("daemon temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("create data root");
        let mut daemon = Hoistd {
            bin: bin.to_owned(),
            opts,
            dir,
            child: None,
        };
        std::fs::write(
            daemon.config_file(),
            serde_json::to_vec_pretty(&daemon.opts.config).expect("serialize daemon.json"),
        )
        .expect("write daemon.json");
        daemon.launch()?;
        Ok(daemon)
    }

    fn launch(&mut self) -> Result<(), StartFailure> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open daemon log");
        let mut cmd = Command::new(&self.bin);
        // Debug logs unless the test chooses a level itself.
        let level_chosen = self
            .opts
            .args
            .iter()
            .any(|a| a == "--log-level" || a == "-l" || a.starts_with("--log-level="));
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--data-root")
            .arg(self.data_root())
            .arg("--config-file")
            .arg(self.config_file())
            .arg("--pidfile")
            .arg(self.pidfile())
            .args(
                (!level_chosen)
                    .then_some(["--log-level", "debug"])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.opts.args)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup daemon log"))
            .stderr(log);
        let child = spawn_tied(cmd).unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("daemon was launched");
            if let Some(status) = child.try_wait().expect("poll daemon") {
                self.child = None;
                return Err(StartFailure {
                    status: Some(status),
                    log: self.log(),
                });
            }
            if let Ok(response) = self.try_request("GET", "/_ping", &[], b"")
                && response.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(StartFailure {
                    status: None,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The directory holding data root, socket, config, pidfile and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("hoist.sock")
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("daemon.json")
    }

    /// Runs `hoistd check` on the data root, which needs the daemon stopped (stop it first),
    /// and panics with its report unless it exits 0 having found no problem.
    pub fn assert_data_root_checks_clean(&self) {
        assert!(
            self.child.is_none(),
            "hoistd check runs on a stopped daemon's data root"
        );
        let check = Command::new(&self.bin)
            .arg("check")
            .arg("--data-root")
            .arg(self.data_root())
            .arg("--config-file")
            .arg(self.config_file())
            .output()
            .expect("run hoistd check");
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success() && report.contains("no problems"),
            "hoistd check ({}):\n{report}{}",
            check.status,
            String::from_utf8_lossy(&check.stderr)
        );
    }

    pub fn pidfile(&self) -> PathBuf {
        self.dir.path().join("hoistd.pid")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("hoistd.log")
    }

    /// Everything the daemon printed (across restarts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The running daemon's pid; panics when it is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon is not running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("poll daemon").is_none(),
            None => false,
        }
    }

    /// Peak resident set size (`VmHWM` of `/proc/<pid>/status`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    /// Current resident set size (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status of the daemon");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// Number of open file descriptors (entries of `/proc/<pid>/fd`).
    pub fn open_fds(&self) -> usize {
        self.fd_targets().len()
    }

    /// Open descriptors that are not sockets: files, pipes, event fds. Unlike sockets, none of
    /// them is legitimately kept in a pool between requests.
    pub fn open_non_socket_fds(&self) -> usize {
        self.fd_targets()
            .iter()
            .filter(|target| !target.starts_with("socket:"))
            .count()
    }

    /// What each open descriptor refers to (`/proc/<pid>/fd/*` link targets).
    pub fn fd_targets(&self) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("list /proc/<pid>/fd of the daemon")
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .map(|target| target.display().to_string())
            .collect()
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) takes two integers and touches no memory of ours; the pid is our
        // child's.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// SIGTERM, then waits for the exit (20 s, after which it is killed and the test fails with
    /// the log); returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(STOP_TIMEOUT).unwrap_or_else(|| {
            let pid = self.pid();
            self.kill9();
            panic!(
                "hoistd (pid {pid}) did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.log()
            )
        })
    }

    /// Waits up to `timeout` for the daemon to exit on its own; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().expect("poll daemon") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL (no chance to clean up) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon if running (SIGTERM) and starts it again on the same data root, socket
    /// and configuration.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.stop();
        }
        if let Err(failure) = self.launch() {
            panic!("restart: {failure}");
        }
    }

    /// One raw HTTP/1.1 exchange over the daemon's socket; panics on I/O errors (60 s timeout).
    /// See [`crate::http1`] for what is added to `headers`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} over {}: {e}", self.socket().display()))
    }

    /// Like [`Hoistd::request`] but returns I/O errors (connection refused, reset).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<RawResponse> {
        let stream = UnixStream::connect(self.socket())?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        crate::http1::exchange(stream, method, path, headers, body)
    }
}

impl Drop for Hoistd {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The daemon exited (or never answered) during start.
#[derive(Debug)]
pub struct StartFailure {
    /// `None` when it was still running but never answered `/_ping` (it was killed).
    pub status: Option<ExitStatus>,
    pub log: String,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "hoistd exited with {status} before answering /_ping")?,
            None => write!(f, "hoistd did not answer /_ping within {READY_TIMEOUT:?}")?,
        }
        write!(f, "; log:\n{}", self.log)
    }
}
