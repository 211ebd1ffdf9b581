//! Fixture processes (`cet-fixture`, tests/fixture/main.rs) for the demo, the benchmark and the
//! end-to-end tests: started under setsid with stdio on /dev/null, asked for reports of their
//! bitmap through files, ended by their PID and reaped.

use crate::{sys, EngineError};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long a fixture may take to report: a busy machine can take long.
const REPORT_WITHIN: Duration = Duration::from_secs(120);

/// A fixture process, started here or adopted by PID and report file; ended by its PID (see
/// [`end`]) and reaped when dropped.
#[derive(Debug)]
pub struct Fixture {
    /// The process as started here; `None` when adopted, or once reaped.
    pub child: Option<Child>,
    /// Its pid.
    pub pid: u32,
    /// Where it writes its reports.
    pub report: PathBuf,
}

impl Fixture {
    /// Starts the fixture binary `bin` with `args`, reporting to `dir/name`, and waits for its
    /// first report.
    pub fn start(bin: &Path, dir: &Path, name: &str, args: &[&str]) -> Result<Fixture, EngineError> {
        let report = dir.join(name);
        let mut cmd = Command::new(bin);
        cmd.arg("--report").arg(&report).args(args);
        let child =
            sys::spawn_detached(&mut cmd).map_err(|source| EngineError::Io { path: bin.into(), source })?;
        let mut f = Fixture { pid: child.id(), child: Some(child), report };
        // A fixture that exits before its first report (bad arguments, a range it cannot map)
        // is said at once, not after the whole wait.
        let child = f.child.as_mut().expect("just started");
        wait_until_reported(&f.report, || match child.try_wait() {
            Ok(Some(status)) => Some(format!("the fixture exited before its first report ({status})")),
            _ => None,
        })?;
        Ok(f)
    }

    /// A fixture (or a restored process) known only by PID and report file.
    pub fn adopt(pid: u32, report: PathBuf) -> Fixture {
        Fixture { child: None, pid, report }
    }

    /// Asks for a fresh report of the bitmap as the process sees it now.
    pub fn ask(&self) -> Result<Report, EngineError> {
        ask(&self.report)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        match self.child.take() {
            Some(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            None => end(self.pid),
        }
    }
}

/// Asks the fixture (or restored process) reporting to `report` for a fresh report: removes the
/// report, writes `REPORT.req` and waits for the new one.
pub fn ask(report: &Path) -> Result<Report, EngineError> {
    let _ = std::fs::remove_file(report);
    let req = suffixed(report, "req");
    std::fs::write(&req, b"").map_err(|source| EngineError::Io { path: req, source })?;
    wait_for_report(report)
}

/// Waits for the report file `report` (two minutes at most).
pub fn wait_for_report(report: &Path) -> Result<Report, EngineError> {
    wait_until_reported(report, || None)
}

/// Waits for `report` as [`wait_for_report`] does, giving up early with the reason `gone` returns
/// once it returns one.
fn wait_until_reported(
    report: &Path,
    mut gone: impl FnMut() -> Option<String>,
) -> Result<Report, EngineError> {
    let deadline = Instant::now() + REPORT_WITHIN;
    let failed =
        |why: String| EngineError::Io { path: report.to_path_buf(), source: std::io::Error::other(why) };
    loop {
        if let Ok(text) = std::fs::read_to_string(report) {
            if !text.is_empty() {
                return Ok(Report(text.trim().to_string()));
            }
        }
        if let Some(why) = gone() {
            return Err(failed(why));
        }
        if Instant::now() > deadline {
            return Err(failed(format!("the fixture did not report within {} s", REPORT_WITHIN.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `PATH.suffix`, as the fixture names its request and child report files.
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// A fixture report: `pid=.. threads=.. bitmap=.. pages=.. ones=.. mixed=.. digest=..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report(pub String);

impl Report {
    /// The field `key`; empty when the report has none.
    pub fn get(&self, key: &str) -> &str {
        self.0.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')).unwrap_or("")
    }

    /// The field `key` as a number. Panics when it is missing or not a number: for tests.
    pub fn num(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap_or_else(|_| panic!("{key} in {:?}", self.0))
    }

    /// The field `pid`, the fixture's process id. Panics when it is missing or no u32: for tests.
    pub fn pid(&self) -> u32 {
        u32::try_from(self.num("pid")).unwrap_or_else(|_| panic!("pid in {:?}", self.0))
    }

    /// What must survive a checkpoint: the bitmap's place, size and every populated byte.
    pub fn bitmap_view(&self) -> String {
        ["bitmap", "pages", "ones", "mixed", "digest"]
            .iter()
            .map(|k| format!("{k}={} ", self.get(k)))
            .collect()
    }
}

/// Reaps `pid` if it is an exited child of ours (a process CRIU restored is reparented to a
/// subreaper that asked for it). Never `waitpid(-1)`: in a process whose threads trace others,
/// that would steal their ptrace-stop notifications.
pub fn reap(pid: u32) {
    if let Ok(pid) = crate::proc::kernel_pid(pid) {
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
}

/// Waits until `pid` no longer exists (reaping it if it is ours), at most `limit`; whether it went.
pub fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    // An id that names no task is gone already.
    let Ok(p) = crate::proc::kernel_pid(pid) else { return true };
    // Signal 0 finds any process or thread, zombies too, as /proc/PID does.
    while kill(p, None) != Err(Errno::ESRCH) {
        reap(pid);
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Ends a process the caller started (or restored), by its PID, and waits until it is gone (a
/// minute at most). Best effort: destructors call it, and must not panic.
pub fn end(pid: u32) {
    if let Ok(p) = crate::proc::kernel_pid(pid) {
        let _ = kill(p, Signal::SIGKILL);
    }
    gone_within(pid, Duration::from_secs(60));
}
