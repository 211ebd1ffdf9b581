//! The jobs, each written once: capture a process into an image file, and restore an image into
//! a process. The CLI, the CRIU plugin, the benchmark and the demo all call these; they differ
//! only in the options they pass (who stops the threads, how durable the file must be, where it
//! goes), and in that the plugin writes no image for a process that uses no CET (`dump_if_cet`).

use crate::capture::{self, Capture, CaptureOptions, CaptureReport};
use crate::check::{self, CoveragePolicy};
use crate::error::EngineError;
use crate::host::HostProfile;
use crate::image::{self, Durability};
use crate::proc::Vma;
use crate::restore::{self, RestoreReport};
use crate::trace::{Stopped, Tracing};
use criu_cet_format::{Ibt, ImageReader, ShadowStack};
use std::fmt;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

/// Where a dump writes its image.
#[derive(Clone, Copy, Debug)]
pub enum Destination<'a> {
    /// This file (the CLI's `--output`).
    File(&'a Path),
    /// CRIU's image directory (the plugin): `cet-<id>.img`, `<id>` being the process's pid in its
    /// own pid namespace, as CRIU names its images; an earlier dump's image of that name is set
    /// aside until CRIU says how the dump ended (`checkpoint`).
    ImageDirectory(&'a Path),
}

/// How to dump.
#[derive(Clone, Debug)]
pub struct DumpOptions<'a> {
    /// The profile recorded as the source host (probed once by the caller).
    pub host: &'a HostProfile,
    /// Who stops the threads.
    pub tracing: Tracing,
    /// Whether the image must be on stable storage when the dump returns.
    pub durability: Durability,
    /// Bitmap address, scan method, stale-bit pruning.
    pub capture: CaptureOptions,
    /// The CRIU run dumping (the plugin), recorded in the image to tie it to that dump.
    pub criu_run_id: Option<String>,
}

/// What a dump did (`criu-cet dump --json` prints it).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DumpReport {
    /// The process, by the pid the caller gave (a host pid).
    pub pid: u32,
    /// Its pid in its own pid namespace (equal to `pid` outside any).
    pub namespace_pid: u32,
    /// The image written.
    pub file: PathBuf,
    /// What the capture found and wrote.
    pub capture: CaptureReport,
}

impl fmt::Display for DumpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, w) = (&self.capture, &self.capture.written);
        write!(f, "process {}", self.pid)?;
        if self.namespace_pid != self.pid {
            write!(f, " (task {} in its pid namespace)", self.namespace_pid)?;
        }
        write!(
            f,
            ": wrote {}: {} populated pages scanned, {} runs ({} all-ones, {} data pages, {} zero pages \
             skipped), {} bytes; {} stale legacy bits{}",
            self.file.display(),
            r.populated_pages,
            w.runs,
            w.ones_pages,
            w.data_pages,
            w.zero_pages_skipped,
            w.file_bytes,
            r.stale_bits,
            if r.pruned { " (pruned)" } else { "" }
        )
    }
}

/// Captures process `pid` into an image at `dest`, atomically: the file is complete or absent.
pub fn dump(pid: u32, dest: Destination<'_>, opts: &DumpOptions<'_>) -> Result<DumpReport, EngineError> {
    let stopped = Stopped::new(pid, opts.tracing)?;
    write(pid, &prepare(&stopped, None, opts)?, dest, opts)
}

/// The capture of a stopped process (`maps`: its mappings, if read while it was held), recording
/// the CRIU run that dumps it.
fn prepare(
    stopped: &Stopped,
    maps: Option<Vec<Vma>>,
    opts: &DumpOptions<'_>,
) -> Result<Capture, EngineError> {
    let mut cap = capture::prepare(stopped, maps, opts.host, &opts.capture)?;
    cap.meta.criu_run_id.clone_from(&opts.criu_run_id);
    Ok(cap)
}

/// [`dump`], except that a process with neither a bitmap nor CET state in use gets no image and
/// `None` (the plugin: CRIU dumps such processes without one).
pub fn dump_if_cet(
    pid: u32,
    dest: Destination<'_>,
    opts: &DumpOptions<'_>,
) -> Result<Option<DumpReport>, EngineError> {
    // Most processes of a container use no CET: where the kernel offers no thread CET state and
    // no address is given, the maps alone tell that a process has no bitmap, before smaps and
    // every thread's state are read.
    let cet = &opts.host.cet;
    let maps = crate::proc::read_maps(pid)?;
    if !cet.kernel_shstk
        && !cet.kernel_ibt
        && opts.capture.bitmap_addr.is_none()
        && !crate::find::might_hold_bitmap(&maps)
    {
        return Ok(None);
    }
    let stopped = Stopped::new(pid, opts.tracing)?;
    // Maps read while the process was held already (CRIU's hooks) serve the capture too.
    let held = matches!(opts.tracing, Tracing::AlreadyTracer);
    let cap = prepare(&stopped, held.then_some(maps), opts)?;
    let uses_cet = cap.meta.process.threads.iter().any(|t| {
        matches!(t.shadow_stack, ShadowStack::Available { features, .. } if features != 0)
            || matches!(t.ibt, Ibt::Available { user_cet } if user_cet.0 != 0)
    });
    if cap.bitmap().is_none() && !uses_cet {
        return Ok(None);
    }
    write(pid, &cap, dest, opts).map(Some)
}

/// Writes what `cap` holds of process `pid` (still stopped) to `dest`, atomically.
fn write(
    pid: u32,
    cap: &Capture,
    dest: Destination<'_>,
    opts: &DumpOptions<'_>,
) -> Result<DumpReport, EngineError> {
    let namespace_pid = cap.meta.namespace.as_ref().map_or(pid, |ns| ns.pid);
    let file = match dest {
        Destination::File(path) => path.to_path_buf(),
        Destination::ImageDirectory(dir) => {
            crate::checkpoint::set_aside(dir, namespace_pid).map_err(|message| EngineError::Io {
                path: crate::image::display_path(dir),
                source: std::io::Error::other(message),
            })?;
            dir.join(image_name(namespace_pid))
        }
    };
    let capture =
        image::write_atomically(&file, opts.durability, |out| cap.write(out, &opts.capture).map(|(_, r)| r))?;
    Ok(DumpReport { pid, namespace_pid, file, capture })
}

/// The name of the image of the task CRIU knows as `id` (its pid in the dumped tree's namespace).
pub fn image_name(id: u32) -> String {
    format!("cet-{id}.img")
}

/// What a restore did (`criu-cet restore --json` prints it).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreOutcome {
    /// The process, by host pid.
    pub pid: u32,
    /// Its pid in its own pid namespace (equal to `pid` outside any).
    pub namespace_pid: u32,
    /// The image restored, as the caller names it.
    pub file: PathBuf,
    /// What was written.
    pub report: RestoreReport,
}

impl fmt::Display for RestoreOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        write!(f, "process {}", self.pid)?;
        if self.namespace_pid != self.pid {
            write!(f, " (task {} in its pid namespace)", self.namespace_pid)?;
        }
        write!(
            f,
            ": restored {}: mapping {}, {} all-ones and {} data pages written and verified ({} of them \
             found in place), {} stray pages cleared; IBT state restored for {} threads, not restorable \
             for {}",
            self.file.display(),
            if r.created_mapping { "created" } else { "already present" },
            r.ones_pages,
            r.data_pages,
            r.unchanged_pages,
            r.cleared_pages,
            r.ibt_restored,
            r.ibt_not_restored
        )
    }
}

/// Restores the image `reader` (named `file` in messages) into process `pid`, known as
/// `namespace_pid` in its own pid namespace, after checking it against `host`: a refusal changes
/// nothing in the process.
pub fn restore<R: Read + Seek>(
    pid: u32,
    namespace_pid: u32,
    file: &Path,
    reader: &mut ImageReader<R>,
    host: &HostProfile,
    tracing: Tracing,
    recreated: restore::Recreated,
) -> Result<RestoreOutcome, EngineError> {
    let findings = check::check(
        &file.display().to_string(),
        reader.metadata(),
        reader.summary(),
        host,
        "this host",
        CoveragePolicy::Warn,
    );
    if check::has_errors(&findings) {
        let mut lines: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
        if let Some(b) = &reader.metadata().bitmap {
            lines.push(restore::occupants(pid, b.base.0, b.end()));
        }
        lines.push(format!("restore refused: nothing was changed in process {pid}"));
        return Err(EngineError::Refused { findings: lines });
    }
    let stopped = Stopped::new(pid, tracing)?;
    let report = restore::restore(&stopped, reader, recreated).map_err(|e| e.in_file(file))?;
    Ok(RestoreOutcome { pid, namespace_pid, file: file.to_path_buf(), report })
}
