//! The CRIU plugin (`cet_plugin.so`): what happens at each hook, in safe Rust over the criu-cet
//! engine. `unsafe` lives in `ffi` and `criu` only.
//! `ffi` is CRIU calling in (the C ABI), `criu` is the plugin calling out (log, image directory,
//! inventory, run id), `config` the settings; CRIU's own images (pstree.img, inventory.img) are
//! read by the engine (`criu_cet::criu_images`), which also holds the rules tying cet images to
//! their dump (`criu_cet::checkpoint`). docs/PLUGIN.md documents every message and setting.
//!
//! Tasks are matched by their ids in the dumped tree's pid namespace, as CRIU names its own
//! images (`core-<id>.img`): CRIU hands plugins host pids, which differ between dump and restore
//! whenever the tree lives in its own pid namespace (every container).
//!
//! - dump, CHECKPOINT_DEVICES(pid): the tree is frozen and criu is the tracer; capture the
//!   bitmap and CET state into `cet-<id>.img` (an earlier dump's set aside), recording CRIU's
//!   run id, and register "cet" in the inventory. Refused under `--stream` (it would not travel).
//! - dump, exit: when the dump succeeded, earlier dumps' cet images go; when it failed, this
//!   dump's go and the earlier ones are put back: the directory is as it was.
//! - restore, init: before any task is forked, load, verify and check every cet image against
//!   this host, against CRIU's inventory.img (the same dump: its plugins and run id; an image
//!   missing) and against the tasks of CRIU's pstree.img; any problem aborts the restore.
//! - restore, RESUME_DEVICES_LATE(pid): memory restored, tasks stopped, criu is the tracer;
//!   recreate the mapping if needed, write and verify its pages, from the very file that init
//!   checked. CRIU ignores this hook's result, so on failure the task is killed (or, with
//!   CRIU_CET_ON_ERROR=warn, left running).

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod config;
pub mod criu;
pub mod ffi;
pub mod refusal;

use config::{Config, OnError, ENV_BITMAP_ADDR, ENV_ON_ERROR};
use criu::{log, Level};
use criu_cet::capture::CaptureOptions;
use criu_cet::check;
use criu_cet::checkpoint::{self, Belonging};
use criu_cet::criu_images::{self, Task};
use criu_cet::host::{self, HostProfile};
use criu_cet::restore::Recreated;
use criu_cet::trace::Tracing;
use criu_cet::{cet, image, job, proc, EngineError};
use criu_cet_format::{ImageSummary, Metadata, UserCet};
use refusal::Refusal;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// CRIU's plugin stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `criu dump`.
    Dump,
    /// `criu pre-dump`: nothing to do (the bitmap is captured at the final dump).
    PreDump,
    /// `criu restore`.
    Restore,
}

/// A hook's outcome, as CRIU understands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Success; for init, go on.
    Done,
    /// Nothing for this plugin here: CRIU offers the call to the next plugin.
    NotMine,
    /// Failure: init aborts the command, CHECKPOINT_DEVICES aborts the dump.
    Failed,
}

/// An image that restore init opened, verified and checked, kept open so that the hook uses the
/// very file that was checked (a file renamed over its name in between is never read).
struct CheckedImage {
    name: String,
    file: File,
    /// (device, inode, size, mtime) when checked: any write to the file changes them.
    identity: (u64, u64, u64, i64, i64),
    meta: Metadata,
    summary: ImageSummary,
    /// CRIU's mm-<id>.img records the bitmap mapping as the image does (see `Recreated::ByCriu`).
    recreated_by_criu: bool,
    used: bool,
}

/// What the plugin holds between hooks: one state per stage.
enum State {
    Idle,
    Dump {
        config: Config,
        host: HostProfile,
        registered: bool,
        /// Images this dump wrote, by task id: kept at exit if the dump succeeded.
        written: Vec<u32>,
        /// This CRIU run's id, recorded in every image of the dump.
        criu_run_id: Option<String>,
        /// Threads whose IBT tracking is off while CRIU's parasite runs: (pid, tid, value to
        /// put back at exit).
        suspended: Vec<(u32, u32, UserCet)>,
    },
    Restore {
        config: Config,
        host: HostProfile,
        images: BTreeMap<u32, CheckedImage>,
    },
}

/// The plugin: a state behind a lock (CRIU calls hooks from one thread, but nothing here relies
/// on that).
pub struct Hooks {
    state: Mutex<State>,
}

impl Hooks {
    /// The plugin's one instance.
    pub fn get() -> &'static Hooks {
        static HOOKS: OnceLock<Hooks> = OnceLock::new();
        HOOKS.get_or_init(|| Hooks { state: Mutex::new(State::Idle) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means an earlier hook panicked (and was reported); carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// init(stage): read the settings; at restore, check every image before any task exists.
    pub fn init(&self, stage: Stage) -> Outcome {
        let mut st = self.lock();
        *st = State::Idle;
        let config = match Config::from_env() {
            Ok(c) => c,
            Err(e) => {
                log(Level::Error, &e);
                return Outcome::Failed;
            }
        };
        match stage {
            Stage::PreDump => Outcome::Done,
            Stage::Dump => {
                *st = State::Dump {
                    config,
                    host: host::probe(),
                    registered: false,
                    written: Vec::new(),
                    criu_run_id: criu::run_id(),
                    suspended: Vec::new(),
                };
                Outcome::Done
            }
            Stage::Restore => match check_images(&config) {
                Ok((images, host)) => {
                    if !images.is_empty() {
                        log(
                            Level::Info,
                            &format!(
                                "{} cet image(s) checked against this host and CRIU's task list",
                                images.len()
                            ),
                        );
                    }
                    *st = State::Restore { config, host, images };
                    Outcome::Done
                }
                Err(refusals) => {
                    for r in &refusals {
                        log(Level::Error, &r.to_string());
                    }
                    log(Level::Error, "restore refused before any task was forked; nothing was changed");
                    Outcome::Failed
                }
            },
        }
    }

    /// exit(stage, success): IBT tracking goes back on where the dump turned it off (CRIU calls
    /// this while it still holds the tasks, before it kills or releases them), and the dump's
    /// images are published or, if it failed, discarded; at restore, a checked image that no
    /// restored task used is an error.
    pub fn exit(&self, stage: Option<Stage>, success: bool) {
        let mut st = self.lock();
        if let State::Dump { suspended, written, .. } = &*st {
            resume_ibt(suspended);
            finish_dump(written, success);
        }
        if let (Some(Stage::Restore), true, State::Restore { images, .. }) = (stage, success, &*st) {
            for (id, img) in images.iter().filter(|(_, i)| !i.used) {
                log(
                    Level::Error,
                    &format!(
                        "{}: task {id} of the checkpoint never reached RESUME_DEVICES_LATE, so its \
                         bitmap was NOT restored; check CRIU's log above for why",
                        img.name
                    ),
                );
            }
        }
        *st = State::Idle;
    }

    /// CHECKPOINT_DEVICES(pid): capture one process of the frozen tree.
    pub fn checkpoint(&self, pid: u32) -> Outcome {
        let mut st = self.lock();
        let State::Dump { config, host, registered, written, criu_run_id, suspended } = &mut *st else {
            return Outcome::NotMine;
        };
        match dump_one(config, host, criu_run_id, pid) {
            Ok(None) => Outcome::NotMine,
            Ok(Some((id, line))) => {
                written.push(id);
                // CRIU's parasite has no ENDBR: in a process with IBT tracking on, its first
                // indirect branch would kill the process (#CP). Off until exit puts it back.
                let off = proc::tasks(pid).and_then(|tids| cet::suspend_ibt(pid, &tids));
                match off {
                    Ok(off) if off.is_empty() => {}
                    Ok(off) => {
                        log(
                            Level::Info,
                            &format!(
                                "process {pid}: IBT tracking off in {} thread(s) while CRIU's parasite \
                                 runs; back on at the end of the dump",
                                off.len()
                            ),
                        );
                        suspended.extend(off.into_iter().map(|(tid, v)| (pid, tid, v)));
                    }
                    Err(e) => {
                        log(Level::Error, &format!("process {pid}: {e}; the dump is aborted"));
                        return Outcome::Failed;
                    }
                }
                if !*registered {
                    *registered = criu::add_inventory_plugin();
                    if !*registered {
                        log(
                            Level::Error,
                            "could not register the cet plugin in the inventory (add_inventory_plugin)",
                        );
                        return Outcome::Failed;
                    }
                }
                log(Level::Info, &line);
                Outcome::NotMine
            }
            Err(e) => {
                log(Level::Error, &format!("process {pid}: {e}; the dump is aborted"));
                Outcome::Failed
            }
        }
    }

    /// RESUME_DEVICES_LATE(pid): restore one process's bitmap from its checked image.
    pub fn resume(&self, pid: u32) -> Outcome {
        let mut st = self.lock();
        let State::Restore { config, host, images } = &mut *st else { return Outcome::NotMine };
        let on_error = config.on_error;
        let id = match proc::namespace_id(pid, pid) {
            Ok(id) => id,
            Err(e) => {
                // Without its id the task cannot be matched; if it had an image, exit() says so.
                log(Level::Error, &format!("process {pid}: {e}"));
                return Outcome::NotMine;
            }
        };
        let Some(img) = images.get_mut(&id) else { return Outcome::NotMine };
        img.used = true;
        let who = if id == pid {
            format!("process {pid}")
        } else {
            format!("process {pid} (task {id} in its pid namespace)")
        };
        match restore_one(img, pid, id, host) {
            Ok(outcome) => {
                log(Level::Info, &outcome.to_string());
                let r = outcome.report;
                if r.ibt_not_restored > 0 {
                    log(
                        Level::Warn,
                        &format!(
                            "{who}: IBT state of {} threads cannot be set on this kernel",
                            r.ibt_not_restored
                        ),
                    );
                }
                Outcome::NotMine
            }
            Err(e) => {
                log(Level::Error, &format!("{who}: restoring {} failed: {e}", img.name));
                if on_error == OnError::Kill {
                    if let Ok(p) = proc::kernel_pid(pid) {
                        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
                    }
                    log(
                        Level::Error,
                        &format!(
                            "{who} killed so that it does not run with a wrong IBT bitmap \
                             ({ENV_ON_ERROR}=warn lets it run instead)"
                        ),
                    );
                } else {
                    log(Level::Warn, &format!("{who} left running without its bitmap ({ENV_ON_ERROR}=warn)"));
                }
                Outcome::Failed
            }
        }
    }
}

/// Puts back the IBT state that the dump turned off.
fn resume_ibt(suspended: &[(u32, u32, UserCet)]) {
    for &(pid, tid, value) in suspended {
        let why = match cet::write_user_cet(pid, tid, value) {
            Ok(true) => {
                let line =
                    format!("process {pid}: thread {tid}: IBT tracking back on (IA32_U_CET {:#x})", value.0);
                log(Level::Info, &line);
                continue;
            }
            Ok(false) => "the interface is gone".to_string(),
            Err(e) => e.to_string(),
        };
        // A thread that has gone needs nothing back.
        if proc::tasks(pid).is_ok_and(|tids| tids.contains(&tid)) {
            let line =
                format!("process {pid}: thread {tid}: IBT tracking could NOT be turned back on: {why}");
            log(Level::Error, &line);
        }
    }
}

/// Captures process `pid` into `cet-<id>.img`: its task id and the log line, or `None` when it
/// has neither a bitmap nor CET state.
fn dump_one(
    config: &Config,
    host: &HostProfile,
    criu_run_id: &Option<String>,
    pid: u32,
) -> Result<Option<(u32, String)>, EngineError> {
    let dir = criu::image_dir().map_err(|message| EngineError::Criu { message })?;
    let opts = job::DumpOptions {
        host,
        tracing: Tracing::AlreadyTracer,
        durability: image::Durability::AsCriu,
        capture: CaptureOptions {
            bitmap_addr: config.bitmap_addr.map(|a| (a, ENV_BITMAP_ADDR)),
            ..Default::default()
        },
        criu_run_id: criu_run_id.clone(),
    };
    let Some(mut report) = job::dump_if_cet(pid, job::Destination::ImageDirectory(&dir), &opts)? else {
        return Ok(None);
    };
    let id = report.namespace_pid;
    if checkpoint::streaming(&dir) {
        let _ = checkpoint::roll_back(&dir, &[id]);
        return Err(EngineError::Criu {
            message: format!(
                "criu dump --stream is not supported by the cet plugin: CRIU's images go through the \
                 image streamer ({}), but {} would stay in the images directory and never travel \
                 with them, so the restored task would lose its bitmap; dump without --stream (then \
                 move the whole images directory, cet-*.img included)",
                checkpoint::STREAMER_CAPTURE_SOCKET,
                job::image_name(id)
            ),
        });
    }
    // Named in the log as it will be once the dump succeeds, not by the descriptor path CRIU gave.
    report.file = PathBuf::from(job::image_name(id));
    Ok(Some((id, report.to_string())))
}

/// At the end of a dump: keeps the images it wrote if it succeeded (and removes earlier dumps'),
/// else removes them and puts back the earlier images they replaced.
fn finish_dump(written: &[u32], success: bool) {
    let dir = match criu::image_dir() {
        Ok(d) => d,
        Err(e) if written.is_empty() => return log(Level::Debug, &e),
        Err(e) => return log(Level::Error, &format!("{e}: the dump's cet images could not be settled")),
    };
    if !success {
        match checkpoint::roll_back(&dir, written) {
            Ok(0) => {}
            Ok(n) => log(
                Level::Warn,
                &format!(
                    "the dump failed: its {n} cet image(s) were discarded; the directory's earlier images \
                     are as they were"
                ),
            ),
            Err(e) => {
                log(Level::Error, &format!("the dump failed, and its cet images could not be discarded: {e}"))
            }
        }
        return;
    }
    match checkpoint::publish(&dir, written) {
        Ok(done) => {
            if !done.images.is_empty() {
                log(Level::Info, &format!("{} cet image(s) in place for this dump", done.images.len()));
            }
            if !done.removed.is_empty() {
                log(
                    Level::Info,
                    &format!(
                        "removed {} cet image(s) of an earlier dump: {}",
                        done.removed.len(),
                        list(&done.removed)
                    ),
                );
            }
        }
        Err(e) => log(
            Level::Error,
            &format!(
                "removing earlier dumps' cet images failed: {e}; remove them by hand (restore refuses \
                 an image from another dump)"
            ),
        ),
    }
}

/// A list for a log line: at most eight items, then how many more.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let mut shown: Vec<String> = items.iter().take(8).map(T::to_string).collect();
    if items.len() > 8 {
        shown.push(format!("and {} more", items.len() - 8));
    }
    shown.join(", ")
}

/// What identifies a file's contents without reading them: any write changes its size or mtime.
/// Not ctime: renaming another file over the name, or unlinking it, changes the inode's ctime
/// (its link count) while its contents, which the kept descriptor still reads, stay as checked.
/// Content rewritten with its mtime set back is still caught by the checksums the restore
/// verifies as it reads, and by comparing what the metadata says.
fn identity_of(m: &std::fs::Metadata) -> (u64, u64, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
}

/// Restores from the file init checked: read again through the same open file, unchanged since
/// (by its identity, then by what its header, tables and metadata say; each block's checksum is
/// checked again as the restore decompresses it).
fn restore_one(
    img: &CheckedImage,
    pid: u32,
    id: u32,
    host: &HostProfile,
) -> Result<job::RestoreOutcome, EngineError> {
    let path = PathBuf::from(&img.name);
    let io = |e| EngineError::Io { path: path.clone(), source: e };
    let mut file = img.file.try_clone().map_err(io)?;
    file.rewind().map_err(io)?;
    let changed = || EngineError::Refused {
        findings: vec![format!(
            "{}: the file changed between the check in restore init and its use; refusing it \
                 (was it rewritten in place while CRIU ran?)",
            img.name
        )],
    };
    if identity_of(&file.metadata().map_err(io)?) != img.identity {
        return Err(changed());
    }
    let mut r = criu_cet_format::ImageReader::open(BufReader::with_capacity(1 << 16, file))
        .map_err(|source| EngineError::Image { file: path.clone(), source })?;
    if r.metadata() != &img.meta || r.summary() != &img.summary {
        return Err(changed());
    }
    let recreated = if img.recreated_by_criu { Recreated::ByCriu } else { Recreated::Unknown };
    job::restore(pid, id, &path, &mut r, host, Tracing::AlreadyTracer, recreated)
}

/// Restore init: every cet image in the directory must be intact, carry the id its name gives,
/// fit this host, and belong to a task CRIU is about to restore, with the same threads.
fn check_images(config: &Config) -> Result<(BTreeMap<u32, CheckedImage>, HostProfile), Vec<Refusal>> {
    // CRIU's own bookkeeping of the plugins the dump required; the rules below read inventory.img.
    criu::claim_inventory_entry();
    let dir = criu::image_dir().map_err(|e| vec![Refusal::Criu(e)])?;
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| vec![Refusal::Criu(format!("reading the image directory: {e}"))])?;
    let here = host::probe();
    let (mut images, mut problems, mut found) = (BTreeMap::new(), Vec::new(), 0usize);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix("cet-")
            .and_then(|s| s.strip_suffix(".img"))
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        found += 1;
        if checkpoint::image_id(&name).is_none() {
            problems.push(Refusal::NotOurName { name, id });
            continue;
        }
        match check_one(&dir, &name, id, &here, config) {
            Ok((img, warnings)) => {
                for w in warnings {
                    log(Level::Warn, &w);
                }
                images.insert(id, img);
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    // The dump's own witness: its inventory names the plugins it registered and its CRIU run.
    // Without one (a --stream restore reads CRIU's images from the streamer) there is nothing of
    // ours to restore unless cet images lie here.
    let inventory = match criu_images::read_inventory(&dir) {
        Ok(inv) => Some(inv),
        Err(_) if found == 0 => None,
        Err(e) => {
            problems.push(Refusal::Criu(format!("{e}: cannot tell which dump the cet images belong to")));
            None
        }
    };
    // CRIU's task list, read once, when an image or the inventory needs it.
    let needs_tasks = !images.is_empty() || inventory.as_ref().is_some_and(|i| i.names_cet());
    let tasks: Option<Result<BTreeMap<u32, Task>, String>> =
        needs_tasks.then(|| criu_images::read_pstree(&dir));
    if let Some(inv) = &inventory {
        for img in images.values() {
            match checkpoint::belonging(&img.name, &img.meta, inv) {
                Belonging::Same => {}
                Belonging::Unknown(why) => log(Level::Warn, &format!("{why}; restoring it anyway")),
                Belonging::Foreign(why) => problems.push(Refusal::Foreign(why)),
            }
        }
        if inv.names_cet() {
            let known: Vec<u32> = tasks
                .as_ref()
                .and_then(|t| t.as_ref().ok())
                .map(|t| t.keys().copied().collect())
                .unwrap_or_default();
            let found: Vec<u32> = images.keys().copied().collect();
            problems.extend(
                checkpoint::missing_images(&dir, "the images directory", &known, &found)
                    .map(Refusal::Missing),
            );
        }
    }
    if !images.is_empty() {
        match &tasks {
            Some(Ok(tasks)) => problems.extend(refusal::match_tasks(
                images.iter().map(|(&id, img)| (id, img.name.as_str(), &img.meta)),
                tasks,
            )),
            Some(Err(e)) => {
                problems.push(Refusal::Criu(format!("{e}: cannot tell which tasks the cet images belong to")))
            }
            None => {}
        }
    }
    if problems.is_empty() {
        Ok((images, here))
    } else {
        Err(problems)
    }
}

/// Opens, verifies and checks one image; returns it with its warnings, or why it is refused.
fn check_one(
    dir: &Path,
    name: &str,
    id: u32,
    here: &HostProfile,
    config: &Config,
) -> Result<(CheckedImage, Vec<String>), Vec<Refusal>> {
    // The file's identity as opened, before a byte was read: a change while it is checked or
    // later is seen when the hook compares. Errors name the file as it lies in the directory,
    // not by the /proc/self/fd/N path CRIU's directory descriptor gives.
    let (file, opened, r) = image::open_keeping_file(&dir.join(name)).map_err(|e| {
        vec![Refusal::Unreadable { name: name.to_string(), error: e.named(Path::new(name)).to_string() }]
    })?;
    let meta = r.metadata().clone();
    let recorded = meta.namespace.as_ref().map_or(meta.process.pid, |ns| ns.pid);
    if recorded != id {
        return Err(vec![Refusal::WrongTask { name: name.to_string(), recorded, id }]);
    }
    let (errors, warnings): (Vec<check::Finding>, Vec<check::Finding>) =
        check::check(name, &meta, r.summary(), here, "this host", config.coverage)
            .into_iter()
            .partition(|f| f.severity == check::Severity::Error);
    if !errors.is_empty() {
        return Err(errors.into_iter().map(Refusal::Host).collect());
    }
    let summary = *r.summary();
    let identity = identity_of(&opened);
    let warnings = warnings.into_iter().map(|f| f.message).collect();
    let recreated_by_criu = meta.bitmap.as_ref().is_some_and(|b| {
        criu_images::read_mappings(dir, id).is_ok_and(|vmas| {
            vmas.iter().any(|v| {
                (v.start, v.end) == (b.base.0, b.end())
                    && v.backing == proc::Backing::Anonymous
                    && v.private
                    && !v.exec
                    && (v.noreserve, v.dontdump) == (b.noreserve, b.dontdump)
            })
        })
    });
    let img = CheckedImage {
        name: name.to_string(),
        file,
        identity,
        meta,
        summary,
        recreated_by_criu,
        used: false,
    };
    Ok((img, warnings))
}
