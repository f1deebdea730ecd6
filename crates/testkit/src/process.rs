//! Child processes that die with the test binary.
//!
//! A registry shared by every test of a binary outlives the test that started it, and Rust never
//! runs destructors of statics, so children get `PR_SET_PDEATHSIG`. Linux sends that signal when
//! the *thread* that forked exits, not the process, so every child is forked from one thread that
//! lives as long as the test binary.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
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
