//! `criu-cet bench`: each figure of docs/PERFORMANCE.md, measured in this process against a
//! baseline measured in this same process (these machines are shared and noisy, so ratios are
//! what compare), as medians of several runs.

use criu_cet::capture::{self, CaptureOptions};
use criu_cet::check::{self, CoveragePolicy};
use criu_cet::fixture::{self, Fixture};
use criu_cet::host;
use criu_cet::scan::{self, ScanMethod};
use criu_cet::trace::{Stopped, Tracing};
use criu_cet::{image, proc, restore, EngineError};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const MIB: f64 = (1 << 20) as f64;
/// Below the mmap area: fresh processes can take a bitmap back at the same place.
const BASE: &str = "0x600000000000";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timed<T>(
    runs: usize,
    mut f: impl FnMut() -> Result<T, EngineError>,
) -> Result<(Duration, T), EngineError> {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f()?);
        times.push(t.elapsed());
    }
    Ok((median(times), last.expect("at least one run")))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One capture into memory, as the plugin does it (already stopped: the CLI's seize is timed).
/// The host is probed once, as the plugin does at init.
fn capture_once(pid: u32, scan: ScanMethod) -> Result<(Vec<u8>, capture::CaptureReport), EngineError> {
    static HOST: std::sync::OnceLock<host::HostProfile> = std::sync::OnceLock::new();
    let opts = CaptureOptions { scan, ..Default::default() };
    let stopped = Stopped::new(pid, Tracing::Seize)?;
    let cap = capture::prepare(&stopped, None, HOST.get_or_init(host::probe), &opts)?;
    cap.write(Vec::new(), &opts)
}

fn bitmap_range(f: &Fixture) -> Result<(u64, u64), EngineError> {
    let r = f.ask()?;
    let (base, len) = r.get("bitmap").split_once(':').unwrap_or(("0", "0"));
    let p = |s: &str| criu_cet_format::meta::parse_number(s).unwrap_or(0);
    Ok((p(base), p(base) + p(len)))
}

/// How the raw baselines reach the target's memory: the two ways the engine has (`proc::Memory`).
#[derive(Clone, Copy)]
enum Raw {
    /// /proc/PID/mem: pread and pwrite.
    ProcMem,
    /// process_vm_readv and process_vm_writev, as capture and restore use them (faster here).
    VmCalls,
}

fn raw_memory(pid: u32, how: Raw, write: bool) -> Result<proc::Memory, EngineError> {
    Ok(match how {
        Raw::ProcMem => proc::Memory::File(proc::open_mem(pid, write)?),
        Raw::VmCalls => proc::Memory::for_mapping(pid, 3)?,
    })
}

/// Reads the populated pages of `[start, end)` straight from the process, 1 MiB a call: the
/// memory-speed baseline for capture.
fn raw_read(pid: u32, start: u64, end: u64, how: Raw) -> Result<u64, EngineError> {
    let mem = raw_memory(pid, how, false)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    for std::ops::Range { start: s, end: e } in scan::populated(pid, start, end, ScanMethod::Auto)? {
        let mut at = s;
        while at < e {
            let len = criu_cet_format::addr::usize_from((e - at).min(buf.len() as u64));
            mem.read_exact_at(&mut buf[..len], at)?;
            n += len as u64;
            at += len as u64;
        }
    }
    Ok(n)
}

/// Writes `bytes` of a fixed pattern into `[start, ..)` of a process, 1 MiB a call: the
/// baseline for restore.
fn raw_write(pid: u32, start: u64, bytes: u64, how: Raw) -> Result<(), EngineError> {
    let mem = raw_memory(pid, how, true)?;
    let buf = vec![0x5au8; 1 << 20];
    let mut at = 0;
    while at < bytes {
        let len = criu_cet_format::addr::usize_from((bytes - at).min(buf.len() as u64));
        mem.write_all_at(&buf[..len], start + at)?;
        at += len as u64;
    }
    Ok(())
}

/// CRIU: `--criu PATH`, else `criu` found in PATH.
fn criu_path(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join("criu"))
            .find(|p| p.is_file())
    })
}

/// Runs CRIU with `args`, logging to `dir/log`; an error names the log.
fn run_criu(criu: &Path, args: &[&str], dir: &Path, libdir: &Path, log: &str) -> Result<(), EngineError> {
    let out = Command::new(criu)
        .args(args)
        .arg("-D")
        .arg(dir)
        .arg("-L")
        .arg(libdir)
        .args(["-v4", "-o", log])
        .output()
        .map_err(|source| EngineError::Io { path: criu.into(), source })?;
    if out.status.success() {
        return Ok(());
    }
    Err(EngineError::Criu { message: format!("criu {} failed: see {}", args[0], dir.join(log).display()) })
}

/// What [`tree_overhead`] measured.
struct TreeRun {
    /// Median wall time of dump + restore with the plugin, and without.
    with: Duration,
    without: Duration,
    /// The tree came back whole with the same bitmaps every time.
    whole: bool,
    /// The plugin's own time per process by CRIU's log clock (its hooks' debug lines), the
    /// median of the runs with it: CHECKPOINT_DEVICES at dump plus RESUME_DEVICES_LATE at restore.
    plugin_ms_per_process: f64,
}

/// The plugin's hook times in a CRIU log (`cet: HOOK: T ms` at debug level), added up.
fn plugin_ms(log: &Path) -> f64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let rest = l
                .split_once("cet: CHECKPOINT_DEVICES: ")
                .or_else(|| l.split_once("cet: RESUME_DEVICES_LATE: "))?
                .1;
            rest.strip_suffix(" ms")?.parse::<f64>().ok()
        })
        .sum()
}

/// `criu dump` plus `criu restore` of a tree of `n` fixtures started with `args` in one pid
/// namespace (as a container runtime has them), alternately with and without the plugin, `runs`
/// times each.
#[allow(clippy::too_many_arguments)]
fn tree_overhead(
    criu: &Path,
    bin: &Path,
    d: &Path,
    n: u32,
    args: &[&str],
    runs: usize,
    withlib: &Path,
    nolib: &Path,
) -> Result<TreeRun, EngineError> {
    let d = &d.join(format!("tree{n}"));
    std::fs::create_dir_all(d).map_err(|source| EngineError::Io { path: d.clone(), source })?;
    let report = d.join("tree");
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "setsid"]).arg(bin).arg("--report").arg(&report).args(args);
    for _ in 1..n {
        cmd.arg("--fork");
    }
    let mut launcher = criu_cet::sys::spawn_detached(&mut cmd)
        .map_err(|source| EngineError::Io { path: "unshare".into(), source })?;
    let reports: Vec<PathBuf> = std::iter::once(report.clone())
        .chain((1..n).map(|k| {
            let name = if k == 1 { "tree.child".to_string() } else { format!("tree.child{k}") };
            d.join(name)
        }))
        .collect();
    let digests = |reports: &[PathBuf]| -> Result<Vec<String>, EngineError> {
        reports.iter().map(|r| fixture::ask(r).map(|t| t.get("digest").to_string())).collect()
    };
    for r in &reports {
        fixture::wait_for_report(r)?;
    }
    let before = digests(&reports)?;
    let mut root = proc::children(launcher.id()).first().copied().unwrap_or(0);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut whole = true;
    let mut plugin_totals = Vec::new();
    let imgs = d.join("tree-img");
    let mut result = Ok(());
    for i in 0..2 * runs {
        let (lib, times) = if i % 2 == 0 { (withlib, &mut with) } else { (nolib, &mut without) };
        let _ = std::fs::remove_dir_all(&imgs);
        if let Err(source) = std::fs::create_dir_all(&imgs) {
            result = Err(EngineError::Io { path: imgs.clone(), source });
            break;
        }
        let pidfile = imgs.join("restored.pid");
        let t = Instant::now();
        let step =
            run_criu(criu, &["dump", "-t", &root.to_string()], &imgs, lib, "dump.log").and_then(|_| {
                run_criu(
                    criu,
                    &["restore", "-d", "--pidfile", &pidfile.to_string_lossy()],
                    &imgs,
                    lib,
                    "restore.log",
                )
            });
        times.push(t.elapsed());
        if i == 0 {
            let _ = launcher.wait();
        }
        if let Err(e) = step {
            result = Err(e);
            break;
        }
        if lib == withlib {
            plugin_totals.push(plugin_ms(&imgs.join("dump.log")) + plugin_ms(&imgs.join("restore.log")));
        }
        root = std::fs::read_to_string(&pidfile).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
        whole &= proc::children(root).len() as u64 == u64::from(n) - 1;
    }
    whole &= result.is_ok() && digests(&reports)? == before;
    // The tree is ours (started or restored here): end it by its init's pid.
    if let Ok(root) = proc::kernel_pid(root) {
        let _ = nix::sys::signal::kill(root, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = launcher.kill();
    let _ = launcher.wait();
    result?;
    plugin_totals.sort_by(f64::total_cmp);
    let plugin_ms_per_process =
        plugin_totals.get(plugin_totals.len() / 2).copied().unwrap_or(0.0) / f64::from(n);
    Ok(TreeRun { with: median(with), without: median(without), whole, plugin_ms_per_process })
}

/// `criu dump --leave-running` of a process: its time and the size of its pages-*.img.
fn criu_dump(criu: &Path, pid: u32, libdir: &Path, dir: &Path) -> Result<(Duration, u64), EngineError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|source| EngineError::Io { path: dir.into(), source })?;
    let t = Instant::now();
    let out = Command::new(criu)
        .args(["dump", "--leave-running", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .arg("-L")
        .arg(libdir)
        .output()
        .map_err(|source| EngineError::Io { path: criu.into(), source })?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(EngineError::Criu { message: format!("criu dump failed: see {}", dir.display()) });
    }
    let pages = std::fs::read_dir(dir)
        .map_err(|source| EngineError::Io { path: dir.into(), source })?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    Ok((took, pages))
}

fn child_peak_rss_mib() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss() as f64 / 1024.0)
        .unwrap_or(0.0)
}

/// Runs every figure; `smoke`: one run each, and the naive pagemap baseline read over the 8 GiB
/// mapping instead of the 4 TiB one (which alone takes about a minute).
pub fn run(runs: usize, criu: Option<PathBuf>, smoke: bool) -> Result<ExitCode, EngineError> {
    let runs = if smoke { 1 } else { runs.max(1) };
    let dir = tempfile::tempdir()
        .map_err(|source| EngineError::Io { path: "temporary directory".into(), source })?;
    let d = dir.path();
    let exe =
        std::env::current_exe().map_err(|source| EngineError::Io { path: "criu-cet".into(), source })?;
    let bin = exe.with_file_name("cet-fixture");
    say!("criu-cet bench: medians of {runs} runs (the naive pagemap read: of {} runs)", runs.min(3));
    say!("{:<44} {:>14} {:>16} {:>10}", "figure", "value", "baseline", "ratio");
    let row = |name: &str, value: String, baseline: String, ratio: String| {
        say!("{name:<44} {value:>14} {baseline:>16} {ratio:>10}");
    };

    // Sparse bitmaps: a few hundred populated pages in a 4 TiB and an 8 GiB mapping.
    let sparse = ["--base", BASE, "--ones", "100", "--mixed", "200"];
    let f57 = Fixture::start(&bin, d, "s57", &[&["--bits", "57"], &sparse[..]].concat())?;
    let f48 = Fixture::start(&bin, d, "s48", &[&["--bits", "48"], &sparse[..]].concat())?;
    let (t57, (_, r57)) = timed(runs, || capture_once(f57.pid, ScanMethod::Auto))?;
    let (t48, _) = timed(runs, || capture_once(f48.pid, ScanMethod::Auto))?;
    let (naive_of, naive_bits, t_fast) = if smoke { (&f48, 48, t48) } else { (&f57, 57, t57) };
    let (s_naive, e_naive) = bitmap_range(naive_of)?;
    let (naive, _) =
        timed(runs.min(3), || scan::populated(naive_of.pid, s_naive, e_naive, ScanMethod::PagemapRead))?;
    let speedup = naive.as_secs_f64() / t_fast.as_secs_f64();
    row(
        &format!("sparse 57-bit capture ({} pages)", r57.populated_pages),
        format!("{:.2} ms", ms(t57)),
        format!("{:.0} ms naive {naive_bits}-bit", ms(naive)),
        format!("{speedup:.0}x"),
    );
    let scale = t57.as_secs_f64() / t48.as_secs_f64();
    row(
        "sparse 48-bit capture (same pages)",
        format!("{:.2} ms", ms(t48)),
        "57-bit above".into(),
        format!("{scale:.2}"),
    );

    // A typical bitmap: mostly all-ones runs, some mixed pages, plus the process's legacy code.
    let ft = Fixture::start(&bin, d, "typical", &["--bits", "48", "--ones", "200", "--mixed", "20"])?;
    let (_, (img, rt)) = timed(1, || capture_once(ft.pid, ScanMethod::Auto))?;
    let raw = (rt.written.ones_pages + rt.written.data_pages) * 4096;
    let typical_path = d.join("typical.cet");
    std::fs::write(&typical_path, &img)
        .map_err(|source| EngineError::Io { path: typical_path.clone(), source })?;
    let image_ratio = img.len() as f64 / raw as f64;
    row(
        "typical image vs raw populated bytes",
        format!("{} B", img.len()),
        format!("{raw} B"),
        format!("{:.2}%", image_ratio * 100.0),
    );
    let criu = criu_path(criu);
    let mut criu_note = "no criu (--criu PATH, or criu in PATH): CRIU rows skipped".to_string();
    let mut tree32 = None;
    let mut tree_nocet = None;
    if let Some(criu) = &criu {
        let (nolib, withlib) = (d.join("nolib"), d.join("lib"));
        for l in [&nolib, &withlib] {
            std::fs::create_dir_all(l).map_err(|source| EngineError::Io { path: l.clone(), source })?;
        }
        let so = exe.with_file_name("libcet_plugin.so");
        if so.exists() {
            let _ = std::fs::copy(&so, withlib.join("cet_plugin.so"));
        }
        let (t_plain, (_, pages_with)) =
            timed(runs.min(3), || criu_dump(criu, ft.pid, &nolib, &d.join("criu-a")))?;
        let (t_cet, _) = timed(runs.min(3), || criu_dump(criu, ft.pid, &withlib, &d.join("criu-b")))?;
        let fb = Fixture::start(&bin, d, "typical-nobitmap", &["--no-bitmap"])?;
        let (_, pages_without) = criu_dump(criu, fb.pid, &nolib, &d.join("criu-c"))?;
        let criu_bitmap = pages_with.saturating_sub(pages_without);
        row(
            "typical image vs CRIU's pages-*.img growth",
            format!("{} B", img.len()),
            format!("{criu_bitmap} B"),
            format!("{:.2}%", 100.0 * img.len() as f64 / criu_bitmap.max(1) as f64),
        );
        row(
            "criu dump with the cet plugin",
            format!("{:.1} ms", ms(t_cet)),
            format!("{:.1} ms without", ms(t_plain)),
            format!("{:.2}", t_cet.as_secs_f64() / t_plain.as_secs_f64()),
        );
        // A tree's two rows (wall ratio, the plugin's own time per process); its ratio back.
        let tree_rows = |name: &str, kind: &str, t: &TreeRun| {
            let ratio = t.with.as_secs_f64() / t.without.as_secs_f64();
            row(
                name,
                format!("{:.0} ms", ms(t.with)),
                format!("{:.0} ms without", ms(t.without)),
                format!("{ratio:.2}"),
            );
            row(
                &format!("  plugin per process, {kind} (log clock)"),
                format!("{:.3} ms", t.plugin_ms_per_process),
                "-".into(),
                "-".into(),
            );
            ratio
        };
        let bitmaps = ["--bits", "48", "--ones", "4", "--mixed", "4"];
        let t = tree_overhead(criu, &bin, d, 32, &bitmaps, runs.min(3), &withlib, &nolib)?;
        let ratio = tree_rows("tree32: criu dump+restore, 32 processes", "bitmap", &t);
        tree32 = Some((ratio, t.whole));
        let n = if smoke { 16 } else { 256 };
        let t = tree_overhead(criu, &bin, d, n, &["--no-bitmap"], runs.min(3), &withlib, &nolib)?;
        let ratio = tree_rows(&format!("tree{n}_nocet: dump+restore, no CET"), "no CET", &t);
        tree_nocet = Some((ratio, t.whole));
        criu_note = format!("criu: {}", criu.display());
    }

    // Dense: 64 MiB of populated mixed content (16 MiB in a smoke run: a debug build compresses
    // it at a few tens of MiB/s).
    let dense_pages = if smoke { 4096u64 } else { 16384 };
    let fd = Fixture::start(
        &bin,
        d,
        "dense",
        &["--bits", "47", "--base", BASE, "--dense", &dense_pages.to_string()],
    )?;
    let (sd, ed) = bitmap_range(&fd)?;
    let (t_read, bytes) = timed(runs, || raw_read(fd.pid, sd, ed, Raw::ProcMem))?;
    let (t_read_vm, _) = timed(runs, || raw_read(fd.pid, sd, ed, Raw::VmCalls))?;
    let (t_cap, (dense_img, _)) = timed(runs, || capture_once(fd.pid, ScanMethod::Auto))?;
    let mib = bytes as f64 / MIB;
    let (cap_mib_s, read_mib_s) = (mib / t_cap.as_secs_f64(), mib / t_read.as_secs_f64());
    let read_vm_mib_s = mib / t_read_vm.as_secs_f64();
    row(
        &format!("dense capture ({mib:.0} MiB -> {:.1} MiB)", dense_img.len() as f64 / MIB),
        format!("{cap_mib_s:.0} MiB/s"),
        format!("{read_mib_s:.0} MiB/s read"),
        format!("{:.2}", cap_mib_s / read_mib_s),
    );
    row(
        "  against process_vm_readv",
        "-".into(),
        format!("{read_vm_mib_s:.0} MiB/s read"),
        format!("{:.2}", cap_mib_s / read_vm_mib_s),
    );
    let img_path = d.join("dense.cet");
    std::fs::write(&img_path, &dense_img)
        .map_err(|source| EngineError::Io { path: img_path.clone(), source })?;
    let target = Fixture::start(&bin, d, "dense-target", &["--no-bitmap"])?;
    let (t_restore, _) = timed(runs, || {
        let mut r = image::open(&img_path)?;
        let stopped = Stopped::new(target.pid, Tracing::Seize)?;
        restore::restore(&stopped, &mut r, restore::Recreated::Unknown)
    })?;
    let (t_write, _) = timed(runs, || raw_write(target.pid, sd, bytes, Raw::ProcMem))?;
    let (t_write_vm, _) = timed(runs, || raw_write(target.pid, sd, bytes, Raw::VmCalls))?;
    // Put the real content back (the raw write overwrote it) and check it is what was dumped.
    crate::restore_file(target.pid, &img_path)?;
    let same = target.ask()?.get("digest") == fd.ask()?.get("digest");
    let (rst_mib_s, wr_mib_s) = (mib / t_restore.as_secs_f64(), mib / t_write.as_secs_f64());
    let wr_vm_mib_s = mib / t_write_vm.as_secs_f64();
    row(
        "dense restore (write, verify, clear strays)",
        format!("{rst_mib_s:.0} MiB/s"),
        format!("{wr_mib_s:.0} MiB/s write"),
        format!("{:.2}", rst_mib_s / wr_mib_s),
    );
    row(
        "  against process_vm_writev",
        "-".into(),
        format!("{wr_vm_mib_s:.0} MiB/s write"),
        format!("{:.2}", rst_mib_s / wr_vm_mib_s),
    );

    // Peak RSS of the CLI doing the dense capture and restore, as separate processes.
    let out = d.join("dense-cli.cet");
    let status = Command::new(&exe)
        .args(["dump", "--pid", &fd.pid.to_string(), "--output"])
        .arg(&out)
        .output()
        .map_err(|source| EngineError::Io { path: exe.clone(), source })?;
    let status2 = Command::new(&exe)
        .args(["restore", "--pid", &target.pid.to_string()])
        .arg(&out)
        .output()
        .map_err(|source| EngineError::Io { path: exe.clone(), source })?;
    let rss = child_peak_rss_mib();
    let rss_ok = status.status.success() && status2.status.success();
    row(
        "peak RSS, CLI dump and restore (dense)",
        format!("{rss:.1} MiB"),
        "64 MiB budget".into(),
        format!("{:.2}", rss / 64.0),
    );

    // Check: open (every checksum and block) and check against a profile.
    let profile = host::four_level_example();
    let check_time = |path: &Path| {
        timed(runs, || {
            let r = image::open(path)?;
            Ok(check::check("bench.cet", r.metadata(), r.summary(), &profile, "target", CoveragePolicy::Warn))
        })
        .map(|(t, _)| t)
    };
    let t_check = check_time(&typical_path)?;
    row(
        "open + verify + check (typical image)",
        format!("{:.2} ms", ms(t_check)),
        "10 ms budget".into(),
        format!("{:.2}", ms(t_check) / 10.0),
    );
    let t_dense_check = check_time(&img_path)?;
    row(
        "open + verify + check (dense 64 MiB image)",
        format!("{:.1} ms", ms(t_dense_check)),
        format!("{:.0} MiB/s", mib / t_dense_check.as_secs_f64()),
        "-".into(),
    );

    say!("{criu_note}");
    let tree_whole = tree32.is_none_or(|(_, w)| w) && tree_nocet.is_none_or(|(_, w)| w);
    say!(
        "restored dense bitmap identical to the source: {same}; CLI runs succeeded: {rss_ok}; \
         the trees restored whole with the same bitmaps: {tree_whole}"
    );
    let tree32_overhead = tree32.map_or("-".to_string(), |(r, _)| format!("{r:.2}"));
    let nocet_overhead = tree_nocet.map_or("-".to_string(), |(r, _)| format!("{r:.2}"));
    say!(
        "summary: sparse57_speedup={speedup:.0} sparse_scale={scale:.2} image_ratio={:.4} dense_mib_s={cap_mib_s:.0} \
         dense_read_ratio={:.2} dense_read_vm_ratio={:.2} restore_mib_s={rst_mib_s:.0} \
         restore_write_ratio={:.2} restore_write_vm_ratio={:.2} peak_rss_mib={rss:.1} check_ms={:.2} tree32_overhead={tree32_overhead} \
         tree_nocet_overhead={nocet_overhead}",
        image_ratio,
        cap_mib_s / read_mib_s,
        cap_mib_s / read_vm_mib_s,
        rst_mib_s / wr_mib_s,
        rst_mib_s / wr_vm_mib_s,
        ms(t_check)
    );
    Ok(if same && rss_ok && tree_whole { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
