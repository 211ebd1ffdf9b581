//! Helpers shared by the end-to-end suites: fixture processes (the engine's harness,
//! `criu_cet::fixture`, with the fixture built beside these tests), the criu-cet binary, and
//! CRIU 4.1.1 provisioned on demand.
#![allow(dead_code)]

pub mod criu_images;

pub use criu_cet::fixture::*;
pub use criu_cet::proc::children;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Once;
use std::time::Duration;

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

/// Waits until `pid` no longer exists (reaping it if it is ours).
pub fn wait_gone(pid: u32) {
    assert!(gone_within(pid, Duration::from_secs(120)), "process {pid} did not go away");
}

/// Starts the fixture built with these tests, as [`Fixture::start`] does.
pub fn start_fixture(dir: &Path, name: &str, args: &[&str]) -> Fixture {
    Fixture::start(&fixture_bin(), dir, name, args).expect("start the fixture")
}

/// For a fixture that CRIU's dump killed.
pub trait ReapAfterDump {
    /// Reaps our child and waits until its PID is gone, so that a restore can take it.
    fn reap_after_dump(&mut self);
}

impl ReapAfterDump for Fixture {
    fn reap_after_dump(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        wait_gone(self.pid);
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
        let first = wait_for_report(&report).expect("the namespace init's report");
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

/// A memory cgroup (v1 here; v2 hosts put it in the unified tree) below ours, removed on drop.
pub struct MemCgroup(pub PathBuf);

impl MemCgroup {
    /// A new memory cgroup named for this process and `name`, limited to `limit` bytes.
    pub fn new(name: &str, limit: u64) -> MemCgroup {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let (v2, path) = criu_cet::proc::parse_memory_cgroup(&text).expect("a memory cgroup");
        let root = if v2 { "/sys/fs/cgroup" } else { "/sys/fs/cgroup/memory" };
        let dir = Path::new(root)
            .join(path.trim_start_matches('/'))
            .join(format!("criu-cet-{}{name}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let file = if v2 { "memory.max" } else { "memory.limit_in_bytes" };
        std::fs::write(dir.join(file), limit.to_string()).unwrap();
        MemCgroup(dir)
    }

    /// Moves `pid` into it.
    pub fn add(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
