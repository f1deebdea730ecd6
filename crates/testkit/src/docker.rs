//! The real `docker` CLI (and docker-py) pointed at a daemon socket, isolated from the machine's
//! own docker configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;

pub use crate::process::CliOutput;
use crate::process::{CollectedOutput, require_program, run_with_timeout};

/// Runs `docker` against one daemon socket with a private `DOCKER_CONFIG`.
pub struct DockerCli {
    bin: PathBuf,
    socket: PathBuf,
    config_dir: tempfile::TempDir,
    auths: BTreeMap<String, String>,
    timeout: Duration,
}

impl DockerCli {
    /// Fails the test when `docker` is not on PATH.
    pub fn new(socket: &Path) -> DockerCli {
        let bin = require_program("docker", "the docker CLI 28.x must be installed");
        let config_dir = tempfile::Builder::new()
            .prefix("hoist-docker-config-")
            .tempdir()
            .expect("temp DOCKER_CONFIG");
        let cli = DockerCli {
            bin,
            socket: socket.to_owned(),
            config_dir,
            auths: BTreeMap::new(),
            timeout: Duration::from_secs(120),
        };
        cli.write_config();
        cli
    }

    /// Stores credentials in `config.json` `auths` under `registry_key` (`host:port` for a
    /// private registry, `https://index.docker.io/v1/` for Docker Hub).
    pub fn with_auth(mut self, registry_key: &str, user: &str, password: &str) -> DockerCli {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.auths.insert(registry_key.to_owned(), token);
        self.write_config();
        self
    }

    /// How long [`DockerCli::run`] waits before killing the CLI and failing (default 120 s).
    pub fn with_timeout(mut self, timeout: Duration) -> DockerCli {
        self.timeout = timeout;
        self
    }

    /// The private `DOCKER_CONFIG` directory.
    pub fn config_dir(&self) -> &Path {
        self.config_dir.path()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn write_config(&self) {
        let auths: serde_json::Map<String, serde_json::Value> = self
            .auths
            .iter()
            .map(|(key, token)| (key.clone(), serde_json::json!({ "auth": token })))
            .collect();
        let config = serde_json::json!({ "auths": auths });
        std::fs::write(
            self.config_dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config).expect("serialize docker config"),
        )
        .expect("write docker config.json");
    }

    /// Environment for the CLI and docker-py: no inherited `DOCKER_*` (no content trust, no
    /// other host or context), then ours.
    fn isolate(&self, cmd: &mut Command) {
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DOCKER_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.config_dir.path())
            .env("DOCKER_CLI_HINTS", "false");
    }

    /// A `docker <args>` command with the isolated environment, for callers that need more
    /// control than [`DockerCli::run`] gives.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        self.isolate(&mut cmd);
        cmd
    }

    /// Runs `docker <args>` to completion; panics, with the output so far, after the timeout.
    pub fn run(&self, args: &[&str]) -> CliOutput {
        run_with_timeout(self.command(args), None, self.timeout)
    }

    /// Like [`DockerCli::run`] with `stdin` as input (`docker load` without `-i`).
    pub fn run_with_stdin(&self, args: &[&str], stdin: Vec<u8>) -> CliOutput {
        run_with_timeout(self.command(args), Some(stdin), self.timeout)
    }

    /// Starts `docker <args>` and returns at once; the child is killed when the guard drops.
    /// Not tied to the test binary with PDEATHSIG: the test itself kills it mid-operation.
    pub fn spawn(&self, args: &[&str]) -> CliChild {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start docker {args:?}: {e}"));
        let output = CollectedOutput::collect(&mut child);
        CliChild {
            child,
            output,
            finished: None,
        }
    }

    /// Runs `python3 -c <script>` with `DOCKER_HOST` and `DOCKER_CONFIG` set as for the CLI and
    /// `env` added, for docker-py tests. Fails clearly when `python3` or `import docker` does not
    /// work.
    pub fn python(&self, script: &str, env: &[(&str, &str)]) -> CliOutput {
        require_docker_py();
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(script);
        self.isolate(&mut cmd);
        cmd.envs(env.iter().copied());
        run_with_timeout(cmd, None, self.timeout)
    }

    /// Runs `node -e <script>` with `DOCKER_HOST` and `DOCKER_CONFIG` set as for the CLI and
    /// `env` added, for dockerode tests; `require('dockerode')` resolves to the package
    /// `scripts/test` installs under `crates/testkit/js`. Fails clearly when `node` or dockerode
    /// is missing.
    pub fn node(&self, script: &str, env: &[(&str, &str)]) -> CliOutput {
        require_dockerode();
        let mut cmd = Command::new("node");
        cmd.arg("-e").arg(script).env("NODE_PATH", node_modules());
        self.isolate(&mut cmd);
        cmd.envs(env.iter().copied());
        run_with_timeout(cmd, None, self.timeout)
    }
    /// Runs a docker-py program with `docker`, `json` and `sys` imported and `client` bound to
    /// `docker.from_env(version='auto')`; `script` must print one JSON document last, which is
    /// returned. Fails the test, with the output, when the program fails.
    pub fn docker_py_json(&self, script: &str, env: &[(&str, &str)]) -> serde_json::Value {
        let program =
            format!("import docker, json, sys\nclient = docker.from_env(version='auto')\n{script}");
        let out = self.python(&program, env);
        out.assert_success("docker-py script");
        last_json_line(&out)
    }

    /// Runs a dockerode program with `docker` bound to a client of the daemon: `script` is the
    /// body of an async function, and the value it returns is printed as JSON and returned.
    /// Fails the test, with the output, when the program fails.
    pub fn dockerode_json(&self, script: &str) -> serde_json::Value {
        let program = format!(
            "const Docker = require('dockerode');\n\
             const docker = new Docker({{ socketPath: process.env.DOCKER_HOST.replace('unix://', '') }});\n\
             (async () => {{ {script} }})().then(\n\
               (v) => console.log(JSON.stringify(v)),\n\
               (e) => {{ console.error(e); process.exit(1); }});"
        );
        let out = self.node(&program, &[]);
        out.assert_success("dockerode script");
        last_json_line(&out)
    }
}

/// The last line a client program printed, as JSON.
fn last_json_line(out: &CliOutput) -> serde_json::Value {
    let last = out
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("the program printed nothing:\n{out}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// Where `scripts/test` installs the Node.js clients (`npm ci` in `crates/testkit/js`).
fn node_modules() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js/node_modules")
}

/// Checks once per test binary that `node` runs and finds the `dockerode` package.
fn require_dockerode() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        require_program("node", "install Node.js (Debian package nodejs) and npm");
        let mut cmd = Command::new("node");
        cmd.args(["-e", "require('dockerode')"])
            .env("NODE_PATH", node_modules());
        let output = run_with_timeout(cmd, None, Duration::from_secs(60));
        if output.success() {
            Ok(())
        } else {
            Err(format!(
                "`require('dockerode')` failed; dockerode tests need `npm ci` in \
                 crates/testkit/js (scripts/test runs it):\n{output}"
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// Checks once per test binary that `python3` runs and has the `docker` package.
fn require_docker_py() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        require_program(
            "python3",
            "install python3 with the `docker` package (pip install docker==7.1.0)",
        );
        let mut cmd = Command::new("python3");
        cmd.args(["-c", "import docker; print(docker.__version__)"]);
        let output = run_with_timeout(cmd, None, Duration::from_secs(60));
        if output.success() {
            Ok(())
        } else {
            Err(format!(
                "`python3 -c 'import docker'` failed; docker-py tests need the `docker` package \
                 (pip install docker==7.1.0):\n{output}"
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// A running `docker` CLI; killed (and reaped) on drop.
pub struct CliChild {
    child: Child,
    output: CollectedOutput,
    finished: Option<std::process::ExitStatus>,
}

impl CliChild {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_so_far(&self) -> String {
        self.output.stdout()
    }

    pub fn stderr_so_far(&self) -> String {
        self.output.stderr()
    }

    /// Sends `signal` (e.g. `libc::SIGINT`, as Ctrl-C would).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) takes two integers and touches no memory of ours; the pid is our
        // child's.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.finished = self.child.wait().ok();
    }

    /// Whether it has exited (without waiting).
    pub fn try_finished(&mut self) -> Option<std::process::ExitStatus> {
        if self.finished.is_none() {
            self.finished = self.child.try_wait().expect("poll docker CLI");
        }
        self.finished
    }

    /// Waits for the CLI to exit; panics, with the output so far, after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> CliOutput {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_finished() {
                return self.output.finish(status);
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "docker CLI (pid {}) did not exit within {timeout:?}; output so far:\n--- stdout\n{}\n--- stderr\n{}",
                    self.child.id(),
                    self.output.stdout(),
                    self.output.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CliChild {
    fn drop(&mut self) {
        if self.finished.is_none() {
            self.kill();
        }
    }
}
