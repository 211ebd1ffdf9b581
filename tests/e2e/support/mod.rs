//! Helpers shared by the end-to-end suites: fixture processes (started under setsid with stdio
//! on /dev/null, ended by their PID), the criu-cet binary, and CRIU 4.1.1 provisioned on demand.
#![allow(dead_code)]

pub mod criu_images;

pub use criu_cet::proc::children;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Once;
use std::time::{Duration, Instant};

pub fn criu_cet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_criu-cet"))
}

/// A golden vector (tests/vectors/NAME), or the directory with `""`.
pub fn vector(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors").join(name)
}

pub fn fixture_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cet-fixture"))
}

/// The plugin library built beside the binaries.
pub fn plugin_so() -> PathBuf {
    let so = Path::new(env!("CARGO_BIN_EXE_criu-cet")).with_file_name("libcet_plugin.so");
    assert!(
        so.exists(),
        "{} is missing: the test command builds it (cargo build) before cargo test",
        so.display()
    );
    so
}

/// Makes this test process a child subreaper, so that processes CRIU restores (and orphans)
/// are reparented to it and can be reaped here instead of by the machine's init.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// Reaps `pid` if it is an exited child of ours (restored processes are reparented to us).
/// Never `waitpid(-1)`: in a test binary whose threads trace processes, that would steal their
/// ptrace-stop notifications.
pub fn reap(pid: u32) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let _ = waitpid(nix::unistd::Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
}

/// Waits until `pid` no longer exists (reaping it if it is ours).
pub fn wait_gone(pid: u32) {
    assert!(gone_within(pid, Duration::from_secs(120)), "process {pid} did not go away");
}

fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Path::new(&format!("/proc/{pid}")).exists() {
        reap(pid);
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Ends a process this test started (or restored), by PID, and waits until it is gone. Best
/// effort: it runs in destructors, which must not panic.
pub fn end(pid: u32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    gone_within(pid, Duration::from_secs(60));
}

pub struct Fixture {
    pub child: Option<Child>,
    pub pid: u32,
    pub report: PathBuf,
}

impl Fixture {
    /// Starts the fixture with `args`, reporting to `dir/name`, and waits for its first report.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Fixture {
        let report = dir.join(name);
        let mut cmd = Command::new(fixture_bin());
        cmd.arg("--report").arg(&report).args(args);
        let child = criu_cet::sys::spawn_detached(&mut cmd).expect("spawn fixture");
        let f = Fixture { pid: child.id(), child: Some(child), report };
        f.wait_report();
        f
    }

    /// A fixture (or a restored process) known only by PID and report file.
    pub fn adopt(pid: u32, report: PathBuf) -> Fixture {
        Fixture { child: None, pid, report }
    }

    pub fn wait_report(&self) -> String {
        wait_file(&self.report)
    }

    /// Asks for a fresh report of the bitmap as the process sees it now.
    pub fn ask(&self) -> Report {
        ask(&self.report)
    }

    /// After CRIU killed it at dump: reap our child so that its PID is free for restore.
    pub fn reap_after_dump(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        wait_gone(self.pid);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        end(self.pid);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// Asks the fixture (or restored process) reporting to `report` for a fresh report.
pub fn ask(report: &Path) -> Report {
    let _ = std::fs::remove_file(report);
    std::fs::write(suffixed(report, "req"), b"").unwrap();
    Report(wait_file(report))
}

/// `PATH.suffix`, as the fixture names its request and child report files.
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

pub fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(t) = std::fs::read_to_string(path) {
            if !t.is_empty() {
                return t.trim().to_string();
            }
        }
        assert!(Instant::now() < deadline, "no report at {} within 120 s", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A fixture report: `pid=.. threads=.. bitmap=.. pages=.. ones=.. mixed=.. digest=..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report(pub String);

impl Report {
    pub fn get(&self, key: &str) -> &str {
        self.0.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')).unwrap_or("")
    }

    /// What must survive a checkpoint: the bitmap's place, size and every populated byte.
    pub fn bitmap_view(&self) -> String {
        ["bitmap", "pages", "ones", "mixed", "digest"]
            .iter()
            .map(|k| format!("{k}={} ", self.get(k)))
            .collect()
    }

    pub fn num(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap_or_else(|_| panic!("{key} in {:?}", self.0))
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run command")
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// CRIU: $CRIU_CET_CRIU if set (the test command runs the CRIU suite with 4.1.1 and again with
/// 4.2.1), else 4.1.1 provisioned by tests/provision/criu.sh.
pub fn criu() -> PathBuf {
    static CRIU: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CRIU.get_or_init(|| {
        if let Some(p) = std::env::var_os("CRIU_CET_CRIU") {
            return PathBuf::from(p);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/provision/criu.sh");
        let out = Command::new("bash").arg(&script).output().expect("run tests/provision/criu.sh");
        assert!(out.status.success(), "provisioning CRIU failed:\n{}", text(&out));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().expect("criu path").trim())
    })
    .clone()
}

/// A fixture started as the init of a new pid namespace, as container runtimes start a
/// container's first process: `unshare --pid --fork setsid cet-fixture ...` (itself under setsid,
/// stdio on /dev/null). The fixture is pid 1 in there; `init.pid` is its host pid.
pub struct PidNamespace {
    launcher: Option<Child>,
    pub init: Fixture,
}

impl PidNamespace {
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> PidNamespace {
        let report = dir.join(name);
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "setsid"]).arg(fixture_bin()).arg("--report").arg(&report).args(args);
        let launcher = criu_cet::sys::spawn_detached(&mut cmd).expect("spawn unshare");
        let first = Report(wait_file(&report));
        assert_eq!(first.get("pid"), "1", "the fixture is not its namespace's init: {}", first.0);
        // The launcher's only child is the namespace's init.
        let pid = *children(launcher.id()).first().expect("unshare's child");
        PidNamespace { launcher: Some(launcher), init: Fixture::adopt(pid, report) }
    }

    /// After CRIU killed the tree at dump: reap the launcher, wait until the init is gone.
    pub fn reap_after_dump(&mut self) {
        if let Some(mut l) = self.launcher.take() {
            let _ = l.wait();
        }
        wait_gone(self.init.pid);
    }
}

impl Drop for PidNamespace {
    fn drop(&mut self) {
        if let Some(mut l) = self.launcher.take() {
            end(l.id());
            let _ = l.wait();
        }
    }
}
