//! The live engine and the CLI on real processes on this machine: real /proc, real ptrace,
//! real PAGEMAP_SCAN. No CRIU here (tests/e2e/criu.rs has that).

mod support;

use criu_cet::capture::{self, CaptureOptions};
use criu_cet::scan::ScanMethod;
use criu_cet::trace::{Stopped, Tracing};
use criu_cet_format::{ImageDoc, ImageReader, RunKind};
use support::*;

fn dump(pid: u32, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    run(criu_cet().args(["dump", "--pid", &pid.to_string(), "--output"]).arg(out).args(extra))
}

fn restore(pid: u32, img: &std::path::Path) -> std::process::Output {
    run(criu_cet().args(["restore", "--pid", &pid.to_string()]).arg(img))
}

fn decode(img: &std::path::Path) -> ImageDoc {
    let out = run(criu_cet().arg("decode").arg(img));
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Where the round trips place the source's bitmap: below the mmap area, so that a fresh
/// process's libraries (placed near the top with ASLR) cannot already occupy the range.
const BASE: &str = "0x600000000000";

/// Dump a fixture, restore into a fresh bitmap-less fixture, and compare what both see.
fn round_trip(args: &[&str]) -> (Report, Report, ImageDoc, String) {
    let dir = tempfile::tempdir().unwrap();
    let src = start_fixture(dir.path(), "src", &[args, &["--base", BASE]].concat());
    let before = src.ask().unwrap();
    let img = dir.path().join("cet.img");
    let out = dump(src.pid, &img, &[]);
    assert!(out.status.success(), "dump: {}", text(&out));
    assert_eq!(src.ask().unwrap(), before, "dump changed the source's bitmap");
    let doc = decode(&img);
    let dst = start_fixture(dir.path(), "dst", &["--no-bitmap", "--threads", "2"]);
    assert_eq!(dst.ask().unwrap().get("bitmap"), "none");
    let out = restore(dst.pid, &img);
    assert!(out.status.success(), "restore: {}", text(&out));
    (before, dst.ask().unwrap(), doc, text(&out))
}

#[test]
fn dump_and_restore_a_48_bit_bitmap_with_three_threads() {
    let (before, after, doc, msg) =
        round_trip(&["--bits", "48", "--threads", "3", "--ones", "5", "--mixed", "7"]);
    assert_eq!(after.bitmap_view(), before.bitmap_view());
    assert!(before.num("ones") == 5 && before.num("mixed") >= 7, "{before:?}");
    assert_eq!(doc.process.threads.len(), 3);
    assert_eq!(doc.bitmap.as_ref().unwrap().coverage_bits(), 48);
    assert!(msg.contains("mapping created"), "{msg}");
}

#[test]
fn dump_and_restore_a_57_bit_4_tib_bitmap() {
    let (before, after, doc, _) = round_trip(&["--bits", "57", "--ones", "3", "--mixed", "4"]);
    assert_eq!(after.bitmap_view(), before.bitmap_view());
    let b = doc.bitmap.unwrap();
    assert_eq!(b.length, 4 << 40);
    assert_eq!(b.coverage_bits(), 57);
}

#[test]
fn many_threads_are_all_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--threads", "9"]);
    let img = dir.path().join("cet.img");
    assert!(dump(f.pid, &img, &[]).status.success());
    let doc = decode(&img);
    let tids: Vec<u32> = doc.process.threads.iter().map(|t| t.tid).collect();
    let mut live: Vec<u32> = std::fs::read_dir(format!("/proc/{}/task", f.pid))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    live.sort();
    assert_eq!(tids, live);
    // This kernel has neither user shadow stack nor IBT regsets: recorded as not available.
    assert!(doc.process.threads.iter().all(|t| t.shadow_stack == criu_cet_format::ShadowStack::NotAvailable));
}

#[test]
fn pagemap_scan_and_the_pagemap_read_capture_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--bits", "47", "--ones", "3", "--mixed", "5"]);
    let host = criu_cet::host::probe();
    let image_with = |scan| {
        let opts = CaptureOptions { scan, ..Default::default() };
        let stopped = Stopped::new(f.pid, Tracing::Seize).unwrap();
        let cap = capture::prepare(&stopped, None, &host, &opts).unwrap();
        let (bytes, report) = cap.write(Vec::new(), &opts).unwrap();
        (bytes, report.populated_pages)
    };
    let (fast, fast_pages) = image_with(ScanMethod::Auto);
    let (slow, slow_pages) = image_with(ScanMethod::PagemapRead);
    assert_eq!(fast_pages, slow_pages);
    assert!(fast_pages >= 8);
    assert!(fast == slow, "the two scans produced different images");
}

#[test]
fn stale_bits_are_counted_and_pruned_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--ones", "2", "--mixed", "3"]);
    let (full, pruned) = (dir.path().join("full.img"), dir.path().join("pruned.img"));
    let out = dump(f.pid, &full, &["--json"]);
    let msg = text(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect(&msg);
    let stale = report["capture"]["stale_bits"].as_u64().expect(&msg);
    // The patterns mark code ranges where nothing is mapped: 2 ones pages alone are 65536 bits.
    assert!(stale >= 65536, "{msg}");
    assert!(dump(f.pid, &pruned, &["--prune-stale"]).status.success());
    let bits = |p: &std::path::Path| -> u64 {
        let mut r = ImageReader::open(std::fs::File::open(p).unwrap()).unwrap();
        let mut n = 0u64;
        r.for_each_chunk(|c| -> Result<(), criu_cet_format::FormatError> {
            n += match c {
                criu_cet_format::Chunk::Ones { count, .. } => count * 32768,
                criu_cet_format::Chunk::Data { bytes, .. } => {
                    bytes.iter().map(|b| b.count_ones() as u64).sum()
                }
            };
            Ok(())
        })
        .unwrap();
        n
    };
    assert_eq!(bits(&full) - bits(&pruned), stale);
    // What is left marks executable code only: the fixture's own non-IBT binary and libraries.
    let doc = decode(&pruned);
    assert!(doc.runs.iter().all(|r| r.kind == RunKind::Data) && !doc.runs.is_empty());
}

#[test]
fn restore_replaces_content_of_an_existing_mapping_and_clears_stray_pages() {
    let dir = tempfile::tempdir().unwrap();
    // At BASE, far from where a fresh process's libraries land: the second fixture maps the
    // same range.
    let src =
        start_fixture(dir.path(), "src", &["--base", BASE, "--ones", "2", "--mixed", "2", "--seed", "7"]);
    let img = dir.path().join("cet.img");
    assert!(dump(src.pid, &img, &[]).status.success());
    let base = src.ask().unwrap().get("bitmap").split(':').next().unwrap().to_string();
    let want = src.ask().unwrap();
    drop(src);
    // Same place and size, other content (other seed, more mixed pages).
    let dst =
        start_fixture(dir.path(), "dst", &["--base", &base, "--ones", "1", "--mixed", "6", "--seed", "99"]);
    assert_ne!(dst.ask().unwrap().get("digest"), want.get("digest"));
    let out = run(criu_cet().args(["restore", "--json", "--pid", &dst.pid.to_string()]).arg(&img));
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect(&msg);
    assert_eq!(report["report"]["created_mapping"], false, "{msg}");
    let cleared = report["report"]["cleared_pages"].as_u64().expect(&msg);
    assert!(cleared >= 4, "{msg}");
    assert_eq!(dst.ask().unwrap().bitmap_view(), want.bitmap_view());
}

#[test]
fn restore_leaves_shared_copy_on_write_pages_that_hold_the_image_shared() {
    let dir = tempfile::tempdir().unwrap();
    // Children forked after their parent set its bitmap up hold the same pages copy-on-write
    // (as CRIU restores a forked tree's identical pages). The image is taken of the first, which
    // keeps sharing them (process_vm_readv would have given it copies); it is restored into the
    // second, which must keep sharing them too. A third takes an image of other content at the
    // same place, and must end up with it.
    let shared = ["--fork-shared", "--fork-shared", "--fork-shared"];
    let parent = start_fixture(
        dir.path(),
        "p",
        &[&["--base", BASE, "--ones", "2", "--mixed", "3"][..], &shared].concat(),
    );
    // The children are the parent's, which never reaps them: they are killed without waiting
    // (ending the parent afterwards lets them go).
    struct Child {
        pid: u32,
        report: std::path::PathBuf,
    }
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                criu_cet::proc::kernel_pid(self.pid).unwrap(),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let adopt = |name: &str| {
        let report = suffixed(&parent.report, name);
        Child { pid: wait_for_report(&report).unwrap().pid(), report }
    };
    let (first, child, third) = (adopt("shared"), adopt("shared2"), adopt("shared3"));
    let want = parent.ask().unwrap();
    let (base, len) = want.get("bitmap").split_once(':').expect("a bitmap");
    let parse = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let (base, end) = (parse(base), parse(base) + parse(len));
    // Populated pages of a child's bitmap that are its own (pagemap bit 56).
    let own = |child: &Child| {
        let pagemap = criu_cet::proc::open_pagemap(child.pid).unwrap();
        let mut own = 0u64;
        for r in criu_cet::scan::populated(child.pid, base, end, ScanMethod::Auto).unwrap() {
            criu_cet::scan::each_entry(&pagemap, r.start, r.end, |_, e| {
                own += u64::from(e & criu_cet::scan::PAGEMAP_EXCLUSIVE != 0);
                true
            })
            .unwrap();
        }
        own
    };
    assert_eq!(own(&first) + own(&child), 0, "the children's bitmap pages should start shared");
    let img = dir.path().join("cet.img");
    let out = dump(first.pid, &img, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(own(&first), 0, "the dump gave the process its own copies of shared pages");
    let restore_json = |pid: u32, img: &std::path::Path| {
        let out = run(criu_cet().args(["restore", "--json", "--pid", &pid.to_string()]).arg(img));
        let msg = text(&out);
        assert!(out.status.success(), "{msg}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect(&msg);
        let r = &report["report"];
        let pages = r["ones_pages"].as_u64().unwrap() + r["data_pages"].as_u64().unwrap();
        (pages, r["unchanged_pages"].as_u64().unwrap(), msg)
    };
    let (pages, unchanged, msg) = restore_json(child.pid, &img);
    assert!(pages >= 5, "{msg}");
    assert_eq!(unchanged, pages, "every page was in place: {msg}");
    assert_eq!(own(&child), 0, "a page was written, and copied: {msg}");
    assert_eq!(ask(&child.report).unwrap().bitmap_view(), want.bitmap_view());
    // Other content at the same place (other seed, more pages): the pages that differ are
    // written, and are the third child's own from then on.
    let other =
        start_fixture(dir.path(), "o", &["--base", BASE, "--ones", "1", "--mixed", "6", "--seed", "99"]);
    let other_img = dir.path().join("other.img");
    assert!(dump(other.pid, &other_img, &[]).status.success());
    let wanted = other.ask().unwrap();
    assert_ne!(wanted.get("digest"), want.get("digest"));
    let (pages, unchanged, msg) = restore_json(third.pid, &other_img);
    assert!(unchanged < pages, "{msg}");
    assert!(own(&third) >= pages - unchanged, "{msg}");
    assert_eq!(ask(&third.report).unwrap().bitmap_view(), wanted.bitmap_view());
}

#[test]
fn restore_refuses_an_occupied_range_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = start_fixture(dir.path(), "src", &["--bits", "48", "--base", BASE, "--ones", "1"]);
    let img = dir.path().join("cet.img");
    assert!(dump(src.pid, &img, &[]).status.success());
    let base = src.ask().unwrap().get("bitmap").split(':').next().unwrap().to_string();
    drop(src);
    // A 47-bit bitmap at the same base: the range is occupied by a mapping of another size.
    let dst = start_fixture(dir.path(), "dst", &["--bits", "47", "--base", &base, "--mixed", "3"]);
    let before = dst.ask().unwrap();
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", dst.pid)).unwrap();
    let out = restore(dst.pid, &img);
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains("occupied by") && msg.contains(&base) && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert_eq!(dst.ask().unwrap(), before);
    assert_eq!(std::fs::read_to_string(format!("/proc/{}/maps", dst.pid)).unwrap(), maps_before);
}

/// A `syscall` instruction in the target, found as restore finds it (its vDSO first).
fn syscall_insn(pid: u32) -> u64 {
    let vmas = criu_cet::proc::read_maps(pid).unwrap();
    criu_cet::restore::find_syscall_insn(pid, &vmas).unwrap()
}

#[test]
fn remote_syscalls_leave_every_register_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--no-bitmap"]);
    let stopped = Stopped::new(f.pid, Tracing::Seize).unwrap();
    let t = stopped.any_thread().unwrap();
    let before = nix::sys::ptrace::getregs(t).unwrap();
    let at = syscall_insn(f.pid);
    let got = criu_cet::trace::remote_syscall(t, at, libc::SYS_getpid, [0; 6]).unwrap().unwrap();
    assert_eq!(u32::try_from(got).unwrap(), f.pid, "getpid ran inside the target");
    let after = nix::sys::ptrace::getregs(t).unwrap();
    assert_eq!(format!("{before:?}"), format!("{after:?}"));
    drop(stopped);
    // Detached and alive: it still answers.
    assert_eq!(f.ask().unwrap().get("bitmap"), "none");
}

#[test]
fn check_against_a_target_profile_names_range_and_widths() {
    let dir = tempfile::tempdir().unwrap();
    // Forge an image whose bitmap lies above 2^47, as a 5-level host would write it.
    let vec = vector("high-57.cetimg");
    let out = run(criu_cet().arg("check").arg(&vec));
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains("0x10000000000000-0x10040000000000") && msg.contains("needs 53 address bits"),
        "{msg}"
    );
    assert!(msg.contains("47-bit user address space") && msg.contains("source host had 56 bits"), "{msg}");
    // A profile of a 5-level host accepts it; --target reads what `criu-cet host --json` prints.
    let out = run(criu_cet().args(["host", "--json"]));
    let mut profile: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    profile["user_address_bits"] = 56.into();
    profile["la57"] = true.into();
    let p = dir.path().join("five.json");
    std::fs::write(&p, profile.to_string()).unwrap();
    let out = run(criu_cet().arg("check").arg(&vec).arg("--target").arg(&p));
    assert!(out.status.success(), "{}", text(&out));
    let low = vector("typical-48.cetimg");
    let out = run(criu_cet().arg("check").arg(&low).arg("--target").arg(&p).arg("--strict-coverage"));
    assert!(!out.status.success() && text(&out).contains("covers 48 address bits"), "{}", text(&out));
}

#[test]
fn restore_of_an_image_for_another_host_is_refused_and_the_target_unharmed() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--no-bitmap"]);
    let vec = vector("high-57.cetimg");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", f.pid)).unwrap();
    let out = restore(f.pid, &vec);
    assert!(!out.status.success() && text(&out).contains("needs 53 address bits"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(format!("/proc/{}/maps", f.pid)).unwrap(), maps);
    assert_eq!(f.ask().unwrap().get("bitmap"), "none");
}

#[test]
fn bad_pids_and_permissions_give_clear_errors_and_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("cet.img");
    let out = dump(999_999_999, &img, &[]);
    assert!(
        !out.status.success() && text(&out).contains("process 999999999 does not exist"),
        "{}",
        text(&out)
    );
    let f = start_fixture(dir.path(), "r", &[]);
    // As nobody, from a copy nobody can execute wherever this checkout lives.
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = open.path().join("criu-cet");
    std::fs::copy(env!("CARGO_BIN_EXE_criu-cet"), &exe).unwrap();
    // Another test thread forking while the copy was open for writing can hold it open in a
    // child until that child execs: ETXTBSY for a moment, not an error of ours.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let out = loop {
        let mut cmd = std::process::Command::new(&exe);
        cmd.uid(65534).gid(65534).args([
            "dump",
            "--pid",
            &f.pid.to_string(),
            "--output",
            "/tmp/criu-cet-nobody.img",
        ]);
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => break r.expect("run the copy of criu-cet as nobody"),
        }
    };
    assert!(!out.status.success() && text(&out).contains("no permission"), "{}", text(&out));
    assert!(!std::path::Path::new("/tmp/criu-cet-nobody.img").exists());
    assert!(!img.exists());
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp"))
            .count(),
        0
    );
}

#[test]
fn cli_reads_vectors_and_rejects_bad_files_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let v = vector("threads-cet.cetimg");
    let out = run(criu_cet().arg("show").arg(&v));
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("process 5150 (cet-fixture), 4 threads") && s.contains("ENDBR_EN LEG_IW_EN"), "{s}");
    assert!(s.contains("21 data pages in 2 block(s)"), "{s}");
    // decode | encode reproduces the bytes.
    let json = dir.path().join("v.json");
    std::fs::write(&json, run(criu_cet().arg("decode").arg(&v)).stdout).unwrap();
    let again = dir.path().join("v.img");
    assert!(run(criu_cet().arg("encode").arg(&json).arg("--output").arg(&again)).status.success());
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&v).unwrap());
    // A corrupt file: non-zero exit, one line on stderr naming the file.
    let mut bytes = std::fs::read(&v).unwrap();
    bytes[200] ^= 0x10;
    let bad = dir.path().join("bad.img");
    std::fs::write(&bad, &bytes).unwrap();
    for cmd in ["show", "decode", "check"] {
        let out = run(criu_cet().arg(cmd).arg(&bad));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd}");
        assert_eq!(err.lines().count(), 1, "{cmd}: {err}");
        assert!(err.contains("bad.img") && err.contains("checksum mismatch"), "{cmd}: {err}");
    }
    // A symlinked image is never followed.
    let link = dir.path().join("link.img");
    std::os::unix::fs::symlink(&v, &link).unwrap();
    let out = run(criu_cet().arg("show").arg(&link));
    assert!(!out.status.success() && text(&out).contains("symbolic link"), "{}", text(&out));
}

/// Another thread of the tracer's process waiting for the tracee (as CRIU's or a test harness's
/// wait for any child may) consumes its ptrace-stop notifications; seizing and single-stepping
/// must still finish. With a blocking waitpid, this test hangs.
#[test]
fn seize_and_remote_syscalls_survive_a_thread_stealing_wait_notifications() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--no-bitmap", "--threads", "2"]);
    let stop = Arc::new(AtomicBool::new(false));
    // It waits for the fixture only (a wait for any child would also take other tests' children).
    let target = nix::unistd::Pid::from_raw(i32::try_from(f.pid).unwrap());
    let thief = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut stolen = 0;
            while !stop.load(Ordering::Relaxed) {
                use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
                if let Ok(s) = waitpid(target, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                    if s != WaitStatus::StillAlive {
                        stolen += 1;
                    }
                }
            }
            stolen
        })
    };
    let at = syscall_insn(f.pid);
    for _ in 0..30 {
        let stopped = Stopped::new(f.pid, Tracing::Seize).expect("seized despite the thief");
        let got =
            criu_cet::trace::remote_syscall(stopped.any_thread().unwrap(), at, libc::SYS_getpid, [0; 6])
                .unwrap()
                .unwrap();
        assert_eq!(u32::try_from(got).unwrap(), f.pid);
    }
    stop.store(true, Ordering::Relaxed);
    let stolen = thief.join().unwrap();
    println!("{stolen} notifications consumed by the other thread");
    assert_eq!(f.ask().unwrap().get("bitmap"), "none", "the target is alive and untraced");
}

fn encode_to(out: &std::path::Path) -> std::process::Output {
    run(criu_cet().arg("encode").arg(vector("typical-48.json")).arg("--output").arg(out))
}

#[test]
fn outputs_are_never_written_over_anything_but_a_regular_file() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A character device (a private /dev/null: 1,3), a FIFO, a symlink, a directory.
    let dev = d.join("null");
    nix::sys::stat::mknod(
        &dev,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let fifo = d.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let victim = d.join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    let link = d.join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let sub = d.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let f = start_fixture(d, "r", &["--ones", "1"]);
    for (path, kind) in
        [(&dev, "character device"), (&fifo, "FIFO"), (&link, "symbolic link"), (&sub, "directory")]
    {
        for out in [encode_to(path), dump(f.pid, path, &[])] {
            let msg = text(&out);
            assert!(!out.status.success(), "{}: {msg}", path.display());
            assert!(
                msg.contains(&format!("exists and is a {kind}")) && msg.contains(&path.display().to_string()),
                "{msg}"
            );
        }
    }
    assert!(std::fs::symlink_metadata(&dev).unwrap().file_type().is_char_device());
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    assert!(sub.is_dir() && std::fs::read_dir(&sub).unwrap().next().is_none());
    // An existing image of another owner, mode 0644: replaced, owner and mode kept.
    let img = d.join("theirs.img");
    std::fs::write(&img, b"old").unwrap();
    std::os::unix::fs::chown(&img, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).unwrap();
    for out in [encode_to(&img), dump(f.pid, &img, &[])] {
        assert!(out.status.success(), "{}", text(&out));
        let md = std::fs::metadata(&img).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (65534, 65534, 0o644));
        assert!(std::fs::read(&img).unwrap().len() > 100);
    }
    // The longest valid file name: the temporary name is short, whatever the target's.
    let long = d.join("a".repeat(251) + ".img");
    assert_eq!(long.file_name().unwrap().len(), 255);
    for out in [encode_to(&long), dump(f.pid, &long, &[])] {
        assert!(out.status.success(), "{}", text(&out));
    }
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn clearer_errors_for_targets_and_files_that_are_not_what_they_seem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = d.join("cet.img");
    let dump_text = |pid: &str, extra: &[&str]| {
        let o = run(criu_cet().args(["dump", "--pid", pid, "--output"]).arg(&img).args(extra));
        assert!(!o.status.success(), "{}", text(&o));
        text(&o)
    };
    // A kernel thread (kthreadd is pid 2 in every pid namespace that has kernel threads).
    if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
        let m = dump_text("2", &[]);
        assert!(m.contains("is a kernel thread") && !m.contains("no permission"), "{m}");
    }
    // Its own pid: bash execs the CLI, which keeps bash's pid.
    let o = run(std::process::Command::new("bash").arg("-c").arg(format!(
        "exec {} dump --pid $$ --output {}",
        env!("CARGO_BIN_EXE_criu-cet"),
        img.display()
    )));
    assert!(!o.status.success() && text(&o).contains("is criu-cet itself"), "{}", text(&o));
    // Held by another tracer (this test process): named, with its pid.
    let f = start_fixture(d, "r", &["--ones", "1"]);
    {
        let _held = Stopped::new(f.pid, Tracing::Seize).unwrap();
        let m = dump_text(&f.pid.to_string(), &[]);
        let me = std::process::id().to_string();
        assert!(
            m.contains("already traced by process") && m.contains(&me) && !m.contains("run as root"),
            "{m}"
        );
    }
    // --bitmap naming the [vvar] page: not a bitmap, said so (it used to be "Input/output error").
    let vvar = std::fs::read_to_string(format!("/proc/{}/maps", f.pid))
        .unwrap()
        .lines()
        .find(|l| l.ends_with("[vvar]"))
        .map(|l| l.split('-').next().unwrap().to_string())
        .unwrap();
    let m = dump_text(&f.pid.to_string(), &["--bitmap", &format!("0x{vvar}")]);
    assert!(m.contains("[vvar]") && m.contains("is not an IBT legacy bitmap"), "{m}");
    assert!(!img.exists());
    // A socket where an image should be.
    let sock = d.join(format!("cet-{}.img", f.pid));
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for cmd in ["show", "check"] {
        let o = run(criu_cet().arg(cmd).arg(&sock));
        assert!(
            !o.status.success() && text(&o).contains("is not a regular file but a socket"),
            "{}",
            text(&o)
        );
    }
    // An image others can write: accepted, with a warning.
    use std::os::unix::fs::PermissionsExt;
    let open = d.join("open.img");
    std::fs::copy(vector("typical-48.cetimg"), &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = run(criu_cet().arg("check").arg(&open));
    assert!(
        o.status.success() && text(&o).contains("writable by users other than its owner"),
        "{}",
        text(&o)
    );
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(criu_cet().arg("check").arg(&open));
    assert!(!text(&o).contains("warning: ") || !text(&o).contains("writable"), "{}", text(&o));
}

#[test]
fn a_full_disk_names_the_image_directory_not_a_descriptor_path() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let m =
        run(std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"]).arg(&mnt));
    assert!(m.status.success(), "mount: {}", text(&m));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.clone());
    // Fill it.
    let mut fill = std::fs::File::create(mnt.join("fill")).unwrap();
    while std::io::Write::write_all(&mut fill, &[1u8; 4096]).is_ok() {}
    drop(fill);
    let f = start_fixture(dir.path(), "r", &["--ones", "2", "--mixed", "30"]);
    // As CRIU hands the plugin its image directory: /proc/self/fd/N.
    let o = run(std::process::Command::new("bash").arg("-c").arg(format!(
        "exec 3<{} && exec {} dump --pid {} --output /proc/self/fd/3/cet-{}.img",
        mnt.display(),
        env!("CARGO_BIN_EXE_criu-cet"),
        f.pid,
        f.pid
    )));
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(msg.contains(&mnt.display().to_string()) && !msg.contains("/proc/self/fd"), "{msg}");
    assert!(msg.contains("No space left on device"), "{msg}");
    let names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["fill".to_string()]);
}

#[test]
fn a_process_whose_main_thread_exited_is_captured_and_restored_through_its_other_threads() {
    let dir = tempfile::tempdir().unwrap();
    // The fixture's serving thread may report before its main thread has exited (a busy machine
    // showed it): wait for the zombie leader, two minutes at most.
    let leader_exited = |pid: u32| {
        let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while criu_cet::proc::parse_stat_state(&stat()) != Some('Z') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let stat = stat();
        assert_eq!(criu_cet::proc::parse_stat_state(&stat), Some('Z'), "the leader has not exited: {stat}");
    };
    let src =
        start_fixture(dir.path(), "src", &["--base", BASE, "--ones", "2", "--mixed", "5", "--leader-exits"]);
    leader_exited(src.pid);
    let before = src.ask().unwrap();
    assert_eq!(before.num("threads"), 2, "{before:?}");
    let img = dir.path().join("cet.img");
    let out = dump(src.pid, &img, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let doc = decode(&img);
    assert!(doc.bitmap.is_some() && !doc.runs.is_empty());
    assert_eq!(doc.process.threads.len(), 1, "the live thread, not the zombie leader");
    drop(src);
    let dst = start_fixture(dir.path(), "dst", &["--no-bitmap", "--leader-exits"]);
    leader_exited(dst.pid);
    let out = restore(dst.pid, &img);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dst.ask().unwrap().bitmap_view(), before.bitmap_view());
}
