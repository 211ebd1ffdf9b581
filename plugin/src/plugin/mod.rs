//! The CRIU plugin (`cet_plugin.so`): what happens at each hook, in safe Rust over the engine.
//! `ffi` holds the C ABI. docs/PLUGIN.md documents every message and setting.
//!
//! - dump, CHECKPOINT_DEVICES(pid): the tree is frozen and criu is the tracer; capture the
//!   bitmap and CET state into `cet-<pid>.img`, atomically, and register "cet" in the inventory.
//! - restore, init: before any task is forked, load, verify and check every cet image against
//!   this host; any problem aborts the restore.
//! - restore, RESUME_DEVICES_LATE(pid): memory restored, tasks stopped, criu is the tracer;
//!   recreate the mapping if needed, write and verify its pages. CRIU ignores this hook's result,
//!   so on failure the task is killed (or, with CRIU_CET_ON_ERROR=warn, left running).

pub mod ffi;

use crate::capture::{self, CaptureOptions};
use crate::check::{self, Coverage};
use crate::host::{self, HostProfile};
use crate::trace::{Stopped, Tracing};
use crate::{image, restore, EngineError};
use criu_cet_format::{Ibt, ShadowStack};
use std::collections::BTreeMap;
use std::os::raw::c_int;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// CRIU log levels.
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

use ffi::log;

const STAGE_DUMP: c_int = 0;
const STAGE_PRE_DUMP: c_int = 1;
const STAGE_RESTORE: c_int = 2;
const NOT_MINE: c_int = -libc::ENOTSUP;

/// Environment variables (docs/PLUGIN.md).
pub const ENV_BITMAP_ADDR: &str = "CRIU_CET_BITMAP_ADDR";
pub const ENV_ON_ERROR: &str = "CRIU_CET_ON_ERROR";
pub const ENV_COVERAGE: &str = "CRIU_CET_COVERAGE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnError {
    Kill,
    Warn,
}

#[derive(Clone, Debug)]
struct Config {
    bitmap_addr: Option<u64>,
    on_error: OnError,
    coverage: Coverage,
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let bitmap_addr = match var(ENV_BITMAP_ADDR) {
            None => None,
            Some(v) => {
                Some(criu_cet_format::meta::parse_hex(&v).map_err(|e| format!("{ENV_BITMAP_ADDR}: {e}"))?)
            }
        };
        let on_error = match var(ENV_ON_ERROR).as_deref() {
            None | Some("kill") => OnError::Kill,
            Some("warn") => OnError::Warn,
            Some(v) => return Err(format!("{ENV_ON_ERROR}={v:?}: expected \"kill\" (default) or \"warn\"")),
        };
        let coverage = match var(ENV_COVERAGE).as_deref() {
            None | Some("warn") => Coverage::Warn,
            Some("strict") => Coverage::Strict,
            Some(v) => {
                return Err(format!("{ENV_COVERAGE}={v:?}: expected \"warn\" (default) or \"strict\""))
            }
        };
        Ok(Config { bitmap_addr, on_error, coverage })
    }
}

#[derive(Default)]
struct State {
    stage: Option<c_int>,
    config: Option<Config>,
    host: Option<HostProfile>,
    registered: bool,
    /// Restore: images checked in init, by pid, and whether RESUME_DEVICES_LATE has seen it.
    images: BTreeMap<u32, (PathBuf, bool)>,
}

pub struct Hooks {
    state: Mutex<State>,
}

fn image_dir() -> Result<PathBuf, String> {
    ffi::image_dir_fd()
        .map(|fd| PathBuf::from(format!("/proc/self/fd/{fd}")))
        .ok_or_else(|| "CRIU did not give an image directory (criu_get_image_dir)".to_string())
}

fn image_name(pid: u32) -> String {
    format!("cet-{pid}.img")
}

impl Hooks {
    pub fn get() -> &'static Hooks {
        static HOOKS: OnceLock<Hooks> = OnceLock::new();
        HOOKS.get_or_init(|| Hooks { state: Mutex::new(State::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means an earlier hook panicked (and was reported); carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn init(&self, stage: c_int) -> c_int {
        let mut st = self.lock();
        *st = State { stage: Some(stage), ..State::default() };
        let config = match Config::from_env() {
            Ok(c) => c,
            Err(e) => {
                log(Level::Error, &e);
                return -1;
            }
        };
        st.config = Some(config.clone());
        match stage {
            STAGE_DUMP => {
                st.host = Some(host::probe());
                0
            }
            STAGE_PRE_DUMP => 0,
            STAGE_RESTORE => match self.check_images(&config) {
                Ok(images) => {
                    if !images.is_empty() {
                        log(Level::Info, &format!("{} cet image(s) checked against this host", images.len()));
                    }
                    st.images = images.into_iter().map(|(pid, p)| (pid, (p, false))).collect();
                    0
                }
                Err(problems) => {
                    for p in &problems {
                        log(Level::Error, p);
                    }
                    log(Level::Error, "restore refused before any task was forked; nothing was changed");
                    -1
                }
            },
            _ => 0,
        }
    }

    /// Restore init: every cet image in the directory must be intact, name its own pid, and fit
    /// this host.
    fn check_images(&self, config: &Config) -> Result<BTreeMap<u32, PathBuf>, Vec<String>> {
        let named = ffi::claim_inventory_entry();
        let dir = image_dir().map_err(|e| vec![e])?;
        let entries =
            std::fs::read_dir(&dir).map_err(|e| vec![format!("reading the image directory: {e}")])?;
        let here = host::probe();
        let (mut images, mut problems) = (BTreeMap::new(), Vec::new());
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("cet-")
                .and_then(|s| s.strip_suffix(".img"))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if name != image_name(pid) {
                problems.push(format!(
                    "{name}: not a name this plugin writes (it would be {}); a second image for process \
                     {pid}? remove the one that does not belong",
                    image_name(pid)
                ));
                continue;
            }
            let path = dir.join(&name);
            let r = match image::open(&path) {
                Ok(r) => r,
                Err(e) => {
                    // The error names the file by its path; the name alone reads better in a log.
                    problems.push(strip_dir(&e.to_string(), &dir));
                    continue;
                }
            };
            if r.metadata().process.pid != pid {
                problems.push(format!(
                    "{name}: the image records process {}, not {pid}; refusing an image under another pid's name",
                    r.metadata().process.pid
                ));
                continue;
            }
            let findings =
                check::check(&name, r.metadata(), r.summary(), &here, "this host", config.coverage);
            for f in &findings {
                match f.severity {
                    check::Severity::Error => problems.push(f.message.clone()),
                    check::Severity::Warning => log(Level::Warn, &f.message),
                }
            }
            images.insert(pid, path);
        }
        if !named && !images.is_empty() {
            log(
                Level::Warn,
                "cet images found, but the inventory does not name the cet plugin; restoring them anyway",
            );
        }
        if problems.is_empty() {
            Ok(images)
        } else {
            Err(problems)
        }
    }

    pub fn exit(&self, stage: c_int, ret: c_int) {
        let mut st = self.lock();
        if stage == STAGE_RESTORE && ret == 0 {
            for (pid, (path, seen)) in &st.images {
                if !seen {
                    log(
                        Level::Warn,
                        &format!(
                            "{}: no process {pid} was restored, so this image was not used",
                            path.display()
                        ),
                    );
                }
            }
        }
        *st = State::default();
    }

    pub fn checkpoint_devices(&self, pid: c_int) -> c_int {
        let mut st = self.lock();
        if st.stage != Some(STAGE_DUMP) {
            return NOT_MINE;
        }
        let pid = pid as u32;
        match self.dump_one(&st, pid) {
            Ok(None) => NOT_MINE,
            Ok(Some(line)) => {
                if !st.registered {
                    st.registered = ffi::add_inventory_plugin();
                    if !st.registered {
                        log(
                            Level::Error,
                            "could not register the cet plugin in the inventory (add_inventory_plugin)",
                        );
                        return -1;
                    }
                }
                log(Level::Info, &line);
                NOT_MINE
            }
            Err(e) => {
                log(Level::Error, &format!("process {pid}: {e}; the dump is aborted"));
                -1
            }
        }
    }

    fn dump_one(&self, st: &State, pid: u32) -> Result<Option<String>, EngineError> {
        let config = st.config.as_ref().expect("init ran");
        let host = st.host.as_ref().expect("init probed the host");
        let opts = CaptureOptions {
            bitmap_addr: config.bitmap_addr.map(|a| (a, ENV_BITMAP_ADDR)),
            ..Default::default()
        };
        let stopped = Stopped::new(pid, Tracing::AlreadyTracer)?;
        let cap = capture::prepare(&stopped, host, &opts)?;
        let uses_cet = cap.meta.process.threads.iter().any(|t| {
            matches!(t.shadow_stack, ShadowStack::Available { features, .. } if features != 0)
                || matches!(t.ibt, Ibt::Available { user_cet } if user_cet.0 != 0)
        });
        if cap.bitmap().is_none() && !uses_cet {
            return Ok(None);
        }
        let dir = image_dir().map_err(|e| EngineError::Refused { findings: vec![e] })?;
        let name = image_name(pid);
        let report = image::write_atomically(&dir.join(&name), |out| cap.write(out, &opts).map(|(_, r)| r))?;
        let w = report.written;
        Ok(Some(format!(
            "process {pid}: wrote {name}: {} runs, {} all-ones and {} data pages, {} bytes; {} stale legacy bits",
            w.runs, w.ones_pages, w.data_pages, w.file_bytes, report.stale_bits
        )))
    }

    pub fn resume_devices_late(&self, pid: c_int) -> c_int {
        let mut st = self.lock();
        let pid = pid as u32;
        let on_error = st.config.as_ref().map_or(OnError::Kill, |c| c.on_error);
        let Some((path, seen)) = st.images.get_mut(&pid) else { return NOT_MINE };
        *seen = true;
        let path = path.clone();
        let result = image::open(&path).and_then(|mut r| {
            let stopped = Stopped::new(pid, Tracing::AlreadyTracer)?;
            restore::restore(&stopped, &mut r).map_err(|e| e.in_file(&path))
        });
        match result {
            Ok(r) => {
                log(
                    Level::Info,
                    &format!(
                        "process {pid}: restored {}: mapping {}, {} all-ones and {} data pages verified, {} stray pages cleared",
                        image_name(pid),
                        if r.created_mapping { "created" } else { "present" },
                        r.ones_pages,
                        r.data_pages,
                        r.cleared_pages
                    ),
                );
                if r.ibt_not_restored > 0 {
                    log(
                        Level::Warn,
                        &format!(
                            "process {pid}: IBT state of {} threads cannot be set on this kernel",
                            r.ibt_not_restored
                        ),
                    );
                }
                NOT_MINE
            }
            Err(e) => {
                log(Level::Error, &format!("process {pid}: restoring {} failed: {e}", image_name(pid)));
                if on_error == OnError::Kill {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    log(
                        Level::Error,
                        &format!(
                            "process {pid} killed so that it does not run with a wrong IBT bitmap \
                             ({ENV_ON_ERROR}=warn lets it run instead)"
                        ),
                    );
                } else {
                    log(
                        Level::Warn,
                        &format!("process {pid} left running without its bitmap ({ENV_ON_ERROR}=warn)"),
                    );
                }
                -1
            }
        }
    }
}

/// Error messages name files by their path under /proc/self/fd/N; show the plain name instead.
fn strip_dir(msg: &str, dir: &std::path::Path) -> String {
    msg.replace(&format!("{}/", dir.display()), "")
}
