//! Fixture processes for the demo and the benchmark: `cet-fixture` beside this binary, started
//! under setsid with stdio on /dev/null, ended by its PID and reaped when dropped.

use criu_cet::{sys, EngineError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A fixture process we started, ended (by its PID) and reaped when dropped.
pub struct Fixture {
    child: Child,
    report: PathBuf,
}

impl Fixture {
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Result<Fixture, EngineError> {
        let exe =
            std::env::current_exe().map_err(|source| EngineError::Io { path: "criu-cet".into(), source })?;
        let bin = exe.with_file_name("cet-fixture");
        let report = dir.join(name);
        let mut cmd = Command::new(&bin);
        cmd.arg("--report").arg(&report).args(args);
        let child =
            sys::spawn_detached(&mut cmd).map_err(|source| EngineError::Io { path: bin.clone(), source })?;
        let f = Fixture { child, report };
        f.wait_for_report()?;
        Ok(f)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for_report(&self) -> Result<String, EngineError> {
        wait_for_report(&self.report)
    }

    /// Asks the fixture for a fresh report of its bitmap.
    pub fn ask(&self) -> Result<String, EngineError> {
        ask(&self.report)
    }
}

/// Waits for the report file `report` (a busy machine can take long: two minutes at most).
pub fn wait_for_report(report: &Path) -> Result<String, EngineError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(text) = std::fs::read_to_string(report) {
            if !text.is_empty() {
                return Ok(text.trim().to_string());
            }
        }
        if Instant::now() > deadline {
            return Err(EngineError::Io {
                path: report.to_path_buf(),
                source: std::io::Error::other("the fixture did not report within 120 s"),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asks the process reporting to `report` for a fresh report of its bitmap.
pub fn ask(report: &Path) -> Result<String, EngineError> {
    let _ = std::fs::remove_file(report);
    let mut req = report.to_path_buf().into_os_string();
    req.push(".req");
    let req = PathBuf::from(req);
    std::fs::write(&req, b"").map_err(|source| EngineError::Io { path: req, source })?;
    wait_for_report(report)
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The field `key=` of a fixture report.
pub fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')).unwrap_or("?")
}
