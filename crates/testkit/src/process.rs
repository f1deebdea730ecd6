//! Child processes that die with the test binary.
//!
//! A registry shared by every test of a binary outlives the test that started it, and Rust never
//! runs destructors of statics, so children get `PR_SET_PDEATHSIG`. Linux sends that signal when
//! the *thread* that forked exits, not the process, so every child is forked from one thread that
//! lives as long as the test binary.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, Once, OnceLock};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: the closure runs in the forked child before exec, where only
                    // async-signal-safe calls are sound: it calls prctl and reads errno, neither
                    // of which allocates, locks or touches memory shared with the parent.
                    unsafe {
                        cmd.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static and is never dropped, so this thread never ends.
            })
            .expect("start the testkit spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `cmd` so that it is killed when the test binary exits, however it exits.
pub fn spawn_tied(cmd: Command) -> std::io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .expect("spawner lock")
        .send((cmd, tx))
        .expect("spawner thread is alive");
    rx.recv().expect("spawner thread replies")
}

/// A free TCP port on 127.0.0.1 (bound and released; the race with other binders is accepted).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Fails the test with a clear message when a required program is missing: tests never skip.
pub fn require_program(name: &str, install_hint: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is not on PATH; tests need it ({install_hint})");
}

/// What a finished command printed, and how it ended.
#[derive(Debug)]
pub struct CliOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with everything printed unless the command succeeded; returns self for chaining.
    pub fn assert_success(&self, what: &str) -> &CliOutput {
        assert!(
            self.status.success(),
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Output collected from a child's pipes by background threads, readable while it runs.
#[derive(Clone, Default)]
pub struct CollectedOutput {
    stdout: std::sync::Arc<Mutex<Vec<u8>>>,
    stderr: std::sync::Arc<Mutex<Vec<u8>>>,
    readers: std::sync::Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl CollectedOutput {
    /// Starts draining the child's piped stdout and stderr (whichever are piped).
    pub fn collect(child: &mut Child) -> CollectedOutput {
        let collected = CollectedOutput::default();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(drain(out, collected.stdout.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(drain(err, collected.stderr.clone()));
        }
        *collected.readers.lock().expect("readers lock") = readers;
        collected
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().expect("stdout lock")).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }

    /// Waits for the pipes to close (the child and anything it forked have exited).
    pub fn finish(&self, status: std::process::ExitStatus) -> CliOutput {
        for reader in self.readers.lock().expect("readers lock").drain(..) {
            let _ = reader.join();
        }
        CliOutput {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

fn drain(
    mut pipe: impl std::io::Read + Send + 'static,
    into: std::sync::Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .expect("output lock")
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// Runs `cmd` to completion with `stdin` as input (none: empty), collecting its output. Panics,
/// with the output so far, if it has not finished within `timeout` (it is killed first).
pub fn run_with_timeout(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: std::time::Duration,
) -> CliOutput {
    use std::process::Stdio;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let description = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {description}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&input);
        });
    }
    let output = CollectedOutput::collect(&mut child);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return output.finish(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{description} did not finish within {timeout:?}; output so far:\n--- stdout\n{}\n--- stderr\n{}",
                output.stdout(),
                output.stderr()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Directories to remove when the test binary exits.
static REMOVE_AT_EXIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes `dir` when the test binary exits, if nothing removed it before: the storage of a
/// child kept in a static (a shared registry), whose destructor never runs, would otherwise stay
/// behind after every run.
pub fn remove_at_exit(dir: PathBuf) {
    static REGISTER: Once = Once::new();
    extern "C" fn remove_all() {
        // try_lock: a thread still holding the lock at exit must not hang the exit.
        if let Ok(dirs) = REMOVE_AT_EXIT.try_lock() {
            for dir in dirs.iter() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    // SAFETY: atexit stores a function pointer to call at exit; `remove_all` takes no arguments,
    // does not unwind (it ignores every error) and touches only its own static.
    REGISTER.call_once(|| unsafe {
        libc::atexit(remove_all);
    });
    REMOVE_AT_EXIT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(dir);
}
