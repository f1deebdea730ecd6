//! Runs one timed command and appends a JSON line with what it cost.
//!
//! Usage: measure --out FILE --log FILE [--tag KEY=VALUE]... [--daemon NAME=PID]... -- CMD ARGS...
//!
//! Recorded: wall seconds, the command's exit code, its CPU seconds and max RSS (its own and its
//! waited-for children's, from getrusage), and for each daemon the CPU seconds it spent meanwhile
//! and its peak RSS during the command: VmHWM, reset first by writing 5 to /proc/PID/clear_refs.
//! Exits with the command's status.
//!
//! A daemon's CPU is read from a cgroup (v2) of its own, `hoist-bench/pid-PID`, into which it is
//! moved at its first measurement: `cpu.stat`'s `usage_usec` counts every thread the process
//! ever had, to the microsecond. Where that cannot be done (no cgroup2 mount, no permission) it
//! is utime+stime from /proc/PID/stat, in clock ticks (10 ms where USER_HZ is 100): a fifth of
//! a 50 ms figure. `cpu_source` says which (`cgroup` or `ticks`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

fn main() -> Result<()> {
    let mut out = None;
    let mut log = None;
    let mut tags = Map::new();
    let mut daemons: Vec<(String, u32)> = Vec::new();
    let mut args = std::env::args().skip(1);
    let mut command: Vec<String> = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = Some(args.next().context("--out needs FILE")?),
            "--log" => log = Some(args.next().context("--log needs FILE")?),
            "--tag" => {
                let tag = args.next().context("--tag needs KEY=VALUE")?;
                let (k, v) = tag.split_once('=').context("--tag needs KEY=VALUE")?;
                let value = v
                    .parse::<f64>()
                    .map(|n| json!(n))
                    .unwrap_or_else(|_| json!(v));
                tags.insert(k.to_owned(), value);
            }
            "--daemon" => {
                let d = args.next().context("--daemon needs NAME=PID")?;
                let (name, pid) = d.split_once('=').context("--daemon needs NAME=PID")?;
                daemons.push((name.to_owned(), pid.parse().context("daemon PID")?));
            }
            "--" => {
                command = args.by_ref().collect();
                break;
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let (Some(out), Some(log)) = (out, log) else {
        bail!(
            "usage: measure --out FILE --log FILE [--tag K=V]... [--daemon NAME=PID]... -- CMD..."
        );
    };
    let Some((program, rest)) = command.split_first() else {
        bail!("no command given after --");
    };

    // SAFETY: sysconf takes an integer name and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let meters: Vec<CpuMeter> = daemons
        .iter()
        .map(|(_, pid)| CpuMeter::for_daemon(*pid, ticks))
        .collect();
    let before: Vec<Option<f64>> = meters.iter().map(CpuMeter::seconds).collect();
    let machine_before = machine_busy_ticks();
    for (_, pid) in &daemons {
        // Resets VmHWM to the current RSS (Linux ≥ 4.0). Best effort: the daemon may be gone.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("open {log}"))?;
    let started = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("run {program}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let usage = children_usage();
    let machine_busy = match (machine_before, machine_busy_ticks()) {
        (Some(b), Some(a)) => json!((a - b) as f64 / ticks),
        _ => Value::Null,
    };

    let mut daemon_json = Map::new();
    for (((name, pid), meter), before) in daemons.iter().zip(&meters).zip(before) {
        let after = meter.seconds();
        let cpu = match (before, after) {
            (Some(b), Some(a)) => json!(((a - b) * 1e6).round() / 1e6),
            _ => Value::Null,
        };
        daemon_json.insert(
            name.clone(),
            json!({"pid": pid, "cpu_s": cpu, "cpu_source": meter.source(),
                   "peak_rss_kib": vm_hwm_kib(*pid), "alive": cpu_ticks(*pid).is_some()}),
        );
    }
    let mut record = tags;
    record.insert("ok".into(), json!(status.success()));
    record.insert("exit".into(), json!(status.code()));
    record.insert("seconds".into(), json!(seconds));
    record.insert("client_cpu_s".into(), json!(usage.0));
    record.insert("client_max_rss_kib".into(), json!(usage.1));
    record.insert("daemons".into(), Value::Object(daemon_json));
    record.insert("machine_busy_cpu_s".into(), machine_busy);
    record.insert("command".into(), json!(command));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .with_context(|| format!("open {out}"))?;
    writeln!(file, "{}", Value::Object(record))?;
    std::process::exit(status.code().unwrap_or(128));
}

/// Where a daemon's CPU seconds are read.
enum CpuMeter {
    /// `cpu.stat` of the daemon's own cgroup.
    Cgroup(PathBuf),
    /// /proc/PID/stat, at this many ticks per second.
    Ticks { pid: u32, per_second: f64 },
}

impl CpuMeter {
    fn for_daemon(pid: u32, per_second: f64) -> CpuMeter {
        match own_cgroup(pid) {
            Ok(dir) => CpuMeter::Cgroup(dir),
            Err(e) => {
                eprintln!("measure: CPU of pid {pid} in clock ticks: {e:#}");
                CpuMeter::Ticks { pid, per_second }
            }
        }
    }

    fn seconds(&self) -> Option<f64> {
        match self {
            CpuMeter::Cgroup(dir) => {
                let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
                let usec: u64 = stat
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))?
                    .parse()
                    .ok()?;
                Some(usec as f64 / 1e6)
            }
            CpuMeter::Ticks { pid, per_second } => Some(cpu_ticks(*pid)? as f64 / per_second),
        }
    }

    fn source(&self) -> &'static str {
        match self {
            CpuMeter::Cgroup(_) => "cgroup",
            CpuMeter::Ticks { .. } => "ticks",
        }
    }
}

/// The cgroup `hoist-bench/pid-PID` of the cgroup2 hierarchy, with the process in it (moved
/// there now unless an earlier measurement did). Empty groups of processes gone since are
/// removed on the way.
fn own_cgroup(pid: u32) -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("read /proc/mounts")?;
    let root = mounts
        .lines()
        .find_map(|l| {
            let mut fields = l.split(' ');
            let (_, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(dir))
        })
        .context("no cgroup2 hierarchy is mounted")?;
    let groups = root.join("hoist-bench");
    remove_empty_groups(&groups);
    let name = format!("pid-{pid}");
    let dir = groups.join(&name);
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .with_context(|| format!("read /proc/{pid}/cgroup"))?;
    let current = membership.lines().find_map(|l| l.strip_prefix("0::"));
    if current != Some(&format!("/hoist-bench/{name}")) {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("move pid {pid} into {}", dir.display()))?;
    }
    Ok(dir)
}

/// Removes the groups under `groups` no process is in (rmdir refuses the others).
fn remove_empty_groups(groups: &Path) {
    let Ok(entries) = std::fs::read_dir(groups) else {
        return;
    };
    for entry in entries.flatten() {
        let _ = std::fs::remove_dir(entry.path());
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after "pid (comm) ".
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU time of the whole machine spent on anything but idling, in clock ticks (`/proc/stat`):
/// with the measured processes' own CPU it tells how much else ran during a measurement.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = fields.iter().take(8).sum::<u64>() - fields.get(3)? - fields.get(4)?;
    Some(busy)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (CPU seconds, max RSS KiB) of the waited-for children.
fn children_usage() -> (f64, i64) {
    // SAFETY: rusage is plain integers and timevals, for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, exclusively borrowed rusage that the kernel fills in.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
        usage.ru_maxrss,
    )
}
