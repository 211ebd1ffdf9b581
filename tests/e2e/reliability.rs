//! Hostile images and faults (issue 7): nothing lost, nothing trusted, nothing stuck. Real
//! processes, the real CLI; docs/RELIABILITY.md tabulates what these cover.

mod support;

use criu_cet_format::forge;
use criu_cet_format::layout;
#[cfg(feature = "test-hooks")]
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use support::*;

fn dump_cmd(pid: u32, out: &Path) -> std::process::Command {
    let mut c = criu_cet();
    c.args(["dump", "--pid", &pid.to_string(), "--output"]).arg(out);
    c
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The fault injector exists only in builds with the `test-hooks` feature (the test command
/// enables it; release builds do not).
#[cfg(feature = "test-hooks")]
#[test]
fn a_dump_failing_or_killed_at_any_byte_leaves_no_image_or_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--ones", "2", "--mixed", "40"]);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (old, fresh) = (out.join("old.img"), out.join("fresh.img"));
    assert!(run(&mut dump_cmd(f.pid, &old)).status.success());
    let previous = std::fs::read(&old).unwrap();
    let len = previous.len() as u64;
    // The injection is exact: the whole image fits in `len` bytes, one fewer fails.
    assert!(run(dump_cmd(f.pid, &fresh).env("CRIU_CET_FAULT_AFTER_BYTES", len.to_string())).status.success());
    std::fs::remove_file(&fresh).unwrap();
    let mut cases = 0;
    for n in [0, 1, 63, 64, 65, 100, 200, len / 3, len / 2, len - 33, len - 32, len - 1] {
        for mode in ["error", "kill"] {
            for target in [&old, &fresh] {
                let o = run(dump_cmd(f.pid, target)
                    .env("CRIU_CET_FAULT_AFTER_BYTES", n.to_string())
                    .env("CRIU_CET_FAULT_MODE", mode));
                assert!(!o.status.success(), "fault at {n} ({mode}) did not fail the dump");
                if mode == "kill" {
                    assert_eq!(o.status.signal(), Some(9), "fault at {n}: {:?}", o.status);
                } else {
                    assert!(text(&o).contains("injected fault"), "{}", text(&o));
                }
                assert_eq!(
                    std::fs::read(&old).unwrap(),
                    previous,
                    "fault at {n} ({mode}) changed the old image"
                );
                assert!(!fresh.exists(), "fault at {n} ({mode}) left a partial image");
                cases += 1;
            }
        }
    }
    // A killed writer can leave its temporary file: never under an image's name, and never read.
    for name in files_in(&out) {
        assert!(name == "old.img" || (name.starts_with('.') && name.ends_with(".tmp")), "{name}");
    }
    assert_eq!(cases, 48);
    assert!(f.ask().unwrap().get("pid") == f.pid.to_string(), "the target was harmed");
}

/// Replaces the DATA section of a one-block image with `data`, block 0 taking its length.
fn replace_data(good: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = forge::splice(good, layout::SECTION_DATA, data).unwrap();
    let (blocks, _) = forge::find_section(&b, layout::SECTION_BLOCKS).unwrap();
    b[blocks + 8..blocks + 12].copy_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    forge::reseal(&mut b).unwrap();
    b
}

#[test]
fn hostile_claims_stay_within_a_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = vector("");
    let good = std::fs::read(vectors.join("typical-48.cetimg")).unwrap();
    let one_block = {
        let meta = criu_cet_format::ImageDoc {
            runs: vec![criu_cet_format::json::RunDoc {
                offset: criu_cet_format::Addr(0),
                pages: 1,
                kind: criu_cet_format::RunKind::Data,
                covers: String::new(),
                data: vec![criu_cet_format::json::hex(&[7u8; 4096])],
            }],
            ..serde_json::from_slice(&std::fs::read(vectors.join("empty-48.json")).unwrap()).unwrap()
        };
        meta.write_image(Vec::new(), criu_cet_format::WriterOptions::default()).unwrap().0
    };
    let forge = |at: usize, value: &[u8]| {
        let mut b = good.clone();
        b[at..at + value.len()].copy_from_slice(value);
        forge::reseal(&mut b).unwrap();
        b
    };
    // META field offsets of typical-48 (docs/FORMAT.md section 3): kernel_release is 14 bytes.
    let comm_len = 64 + 8 + 14 + 2 + 1 + 4 + 4;
    let threads_len = comm_len + 8 + "cet-fixture".len();
    // Small enough to pass the compress-bound check (4174 bytes for one page), so that the
    // decompression bound itself is what stops it.
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
    assert!(bomb.len() < 4174, "bomb of {} bytes", bomb.len());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("comm claims 2^62 bytes", forge(comm_len, &(1u64 << 62).to_le_bytes())),
        ("2^40 threads claimed", forge(threads_len, &(1u64 << 40).to_le_bytes())),
        ("run page count u64::MAX", {
            let (runs, _) = forge::find_section(&good, layout::SECTION_RUNS).unwrap();
            forge(runs + 8, &u64::MAX.to_le_bytes())
        }),
        ("section count 2^31", {
            let mut b = good.clone();
            let n = b.len();
            b[n - 16..n - 12].copy_from_slice(&(1u32 << 31).to_le_bytes());
            b
        }),
        ("a block inflating to 64 MiB", replace_data(&one_block, &bomb)),
    ];
    let expect =
        ["LimitExceeded", "metadata", "inside the bitmap", "section_count", "inflates past its size"];
    for ((what, bytes), needle) in cases.iter().zip(expect) {
        let p = dir.path().join("forged.img");
        std::fs::write(&p, bytes).unwrap();
        for cmd in ["show", "decode", "check"] {
            let o = run(std::process::Command::new("prlimit")
                .arg("--as=268435456")
                .arg("--")
                .arg(env!("CARGO_BIN_EXE_criu-cet"))
                .arg(cmd)
                .arg(&p));
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{what}, {cmd}: {:?} {err}", o.status);
            assert_eq!(err.lines().count(), 1, "{what}, {cmd}: {err}");
            assert!(err.contains("forged.img") && err.contains(needle), "{what}, {cmd}: {err}");
            if cmd == "show" {
                println!("{what}: {}", err.trim());
            }
        }
    }
}

fn tracer_of_every_thread(pid: u32) -> Vec<String> {
    criu_cet::proc::tasks(pid)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/task/{t}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("TracerPid:"))
                .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        })
        .collect()
}

#[test]
fn captures_race_with_threads_coming_and_going() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--churn", "--threads", "3", "--ones", "1"]);
    for i in 0..20 {
        let img = dir.path().join(format!("c{i}.img"));
        let o = run(&mut dump_cmd(f.pid, &img));
        assert!(o.status.success(), "dump {i}: {}", text(&o));
        let doc: criu_cet_format::ImageDoc =
            serde_json::from_slice(&run(criu_cet().arg("decode").arg(&img)).stdout).unwrap();
        assert!(doc.process.threads.iter().any(|t| t.tid == f.pid) && doc.process.threads.len() >= 4);
        assert!(doc.bitmap.is_some());
    }
    assert!(tracer_of_every_thread(f.pid).iter().all(|t| t == "0"), "a thread was left traced");
    assert_eq!(f.ask().unwrap().get("pid"), f.pid.to_string());
}

/// Dumps of `f` one after another until it is gone; every dump either writes a whole image or
/// fails with one line and leaves no file. Returns (succeeded, failed).
fn dump_until_gone(f: &mut Fixture, dir: &Path, tag: &str) -> (u32, u32) {
    let (mut ok, mut failed) = (0, 0);
    // Until the process is gone and reaped: on a loaded machine a killed process can take seconds
    // to finish exiting, so the bound is time (two minutes), not a number of dumps.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for i in 0.. {
        assert!(std::time::Instant::now() < deadline, "process {} still not gone after 2 minutes", f.pid);
        let img = dir.join(format!("{tag}{i}.img"));
        let o = run(&mut dump_cmd(f.pid, &img));
        if o.status.success() {
            ok += 1;
            criu_cet::image::open(&img).expect("a dump that succeeded wrote a whole image");
        } else {
            failed += 1;
            assert_eq!(o.status.code(), Some(1), "{:?}", o.status);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains(&f.pid.to_string()), "the error names the process: {err}");
            assert!(!err.contains("no permission"), "an ending process is not a permission problem: {err}");
            assert!(!img.exists(), "a failed dump left {}", img.display());
            println!("{tag}{i}: {}", err.trim_end());
        }
        if f.child.as_mut().unwrap().try_wait().unwrap().is_some() {
            break;
        }
    }
    // One more after it is gone: the plain "does not exist" case.
    let o = run(&mut dump_cmd(f.pid, &dir.join(format!("{tag}-gone.img"))));
    assert!(text(&o).contains("does not exist"), "{}", text(&o));
    for name in files_in(dir) {
        assert!(!name.ends_with(".tmp"), "{name} left behind");
    }
    (ok, failed)
}

#[test]
fn a_target_exiting_mid_dump_gives_clean_errors_and_no_file() {
    // The target ends itself (exit_group can only run between our seizes: stopped threads do
    // not exit), so most of these dumps succeed and the rest fail at seize or scan.
    let dir = tempfile::tempdir().unwrap();
    let mut f = start_fixture(dir.path(), "r", &["--exit-after", "150", "--churn", "--mixed", "20"]);
    let (ok, failed) = dump_until_gone(&mut f, dir.path(), "e");
    println!("exit_group: {ok} dumps succeeded, {failed} failed cleanly");
    assert!(ok > 0, "no dump succeeded before the exit ({failed} failed)");
}

#[test]
fn a_target_killed_mid_dump_gives_clean_errors_and_no_file() {
    // SIGKILL ends a process even while we hold its threads stopped, so with a bitmap whose
    // capture takes a while, the kill lands inside a dump: seizing, scanning or reading pages.
    let dir = tempfile::tempdir().unwrap();
    let mut killed_inside = 0;
    for round in 0..6 {
        let mut f = start_fixture(dir.path(), &format!("k{round}"), &["--mixed", "3000", "--threads", "4"]);
        let pid = f.pid;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(40 + 25 * round));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
                nix::sys::signal::SIGKILL,
            );
        });
        let (ok, failed) = dump_until_gone(&mut f, dir.path(), &format!("k{round}-"));
        killer.join().unwrap();
        println!("SIGKILL after {} ms: {ok} dumps succeeded, {failed} failed cleanly", 40 + 25 * round);
        killed_inside += failed;
    }
    assert!(killed_inside > 0, "no dump ran into the kill in 6 rounds");
}

#[test]
fn a_bitmap_unmapped_and_remapped_while_dumps_run() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--remap-loop", "--bits", "47", "--base", "0x600000000000"]);
    let (mut with, mut without) = (0, 0);
    for i in 0..30 {
        let img = dir.path().join(format!("m{i}.img"));
        let o = run(&mut dump_cmd(f.pid, &img));
        assert!(o.status.success(), "dump {i}: {}", text(&o));
        let r = criu_cet::image::open(&img).unwrap();
        match &r.metadata().bitmap {
            // Frozen between munmap and mmap: the process had no bitmap at that instant.
            None => without += 1,
            Some(b) => {
                assert_eq!((b.base.0, b.length), (0x6000_0000_0000, 4 << 30));
                with += 1;
            }
        }
    }
    println!("{with} captures with the bitmap, {without} between munmap and mmap");
    assert!(with > 0, "never caught the bitmap mapped ({without} without)");
    assert!(tracer_of_every_thread(f.pid).iter().all(|t| t == "0"));
}

#[test]
fn restore_writes_only_into_a_private_non_executable_bitmap_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let src = start_fixture(dir.path(), "src", &["--bits", "47", "--base", "0x600000000000", "--ones", "1"]);
    let img = dir.path().join("cet.img");
    assert!(run(&mut dump_cmd(src.pid, &img)).status.success());
    drop(src);
    // Same place and size, but executable: refused, nothing written.
    let dst = start_fixture(
        dir.path(),
        "dst",
        &["--bits", "47", "--base", "0x600000000000", "--exec-bitmap", "--mixed", "2"],
    );
    let before = dst.ask().unwrap();
    let o = run(criu_cet().args(["restore", "--pid", &dst.pid.to_string()]).arg(&img));
    assert!(
        !o.status.success() && text(&o).contains("occupied by 0x600000000000-0x600100000000 rwxp"),
        "{}",
        text(&o)
    );
    assert_eq!(dst.ask().unwrap(), before);
}

#[test]
fn the_check_fuzz_corpus_replays_without_a_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/check");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let Some((&bits, image)) = data.split_first() else { continue };
        let Ok(r) = criu_cet_format::ImageReader::open(std::io::Cursor::new(image)) else { continue };
        let mut target = criu_cet::host::four_level_example();
        target.user_address_bits = 40 + bits % 18;
        for c in [criu_cet::check::CoveragePolicy::Warn, criu_cet::check::CoveragePolicy::Strict] {
            let _ = criu_cet::check::check("f", r.metadata(), r.summary(), &target, "t", c);
        }
        n += 1;
    }
    assert!(n >= 4, "the check corpus lost its valid seeds");
}

/// An image forged as an attacker would (decode, edit, encode): the typical vector's process
/// with its bitmap moved to `base`/`length` and one all-ones page at its start.
fn forge(dir: &Path, name: &str, base: u64, length: u64) -> PathBuf {
    let json = std::fs::read_to_string(vector("typical-48.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["bitmap"]["base"] = format!("{base:#x}").into();
    doc["bitmap"]["length"] = length.into();
    doc["runs"] = serde_json::json!([{ "offset": "0x0", "pages": 1, "kind": "ones" }]);
    let json = dir.join(format!("{name}.json"));
    std::fs::write(&json, doc.to_string()).unwrap();
    let img = dir.join(format!("{name}.img"));
    let o = run(criu_cet().arg("encode").arg(&json).arg("--output").arg(&img));
    assert!(o.status.success(), "encode: {}", text(&o));
    img
}

/// `(start, end, perms, name)` of every mapping in /proc/PID/maps.
fn maps_of(pid: u32) -> Vec<(u64, u64, String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (s, e) = f[0].split_once('-').unwrap();
            let hex = |x| u64::from_str_radix(x, 16).unwrap();
            (hex(s), hex(e), f[1].to_string(), f.get(5).unwrap_or(&"").to_string())
        })
        .collect()
}

#[test]
fn forged_images_aimed_at_a_stack_heap_thread_stack_or_guard_page_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let victim = start_fixture(dir.path(), "v", &["--no-bitmap", "--threads", "2"]);
    let before = victim.ask().unwrap();
    let maps = maps_of(victim.pid);
    let named = |n: &str| maps.iter().find(|m| m.3 == n).map(|m| (m.0, m.1)).unwrap();
    // A thread stack: an anonymous rw-p mapping right after its ---p guard page.
    let (guard, tstack) = maps
        .windows(2)
        .find(|w| {
            w[0].2 == "---p" && w[0].3.is_empty() && w[1].2 == "rw-p" && w[1].3.is_empty() && w[0].1 == w[1].0
        })
        .map(|w| ((w[0].0, w[0].1), (w[1].0, w[1].1)))
        .expect("a thread stack and its guard page");
    let targets = [
        ("stack", named("[stack]"), "[stack]"),
        ("heap", named("[heap]"), "[heap]"),
        ("thread-stack", tstack, "no DONTDUMP"),
        ("guard", guard, "---p"),
    ];
    for (name, (start, end), what) in targets {
        let img = forge(dir.path(), name, start, end - start);
        let range = format!("{start:#x}-{end:#x}");
        let pow2 = (end - start).is_power_of_two();
        let c = run(criu_cet().arg("check").arg(&img));
        if pow2 {
            // A bitmap's length: only the target's mapping tells it is not one.
            assert!(c.status.success(), "{name}: {}", text(&c));
        } else {
            assert!(
                !c.status.success() && text(&c).contains("not a bitmap length") && text(&c).contains(&range),
                "{name}: {}",
                text(&c)
            );
        }
        let o = run(criu_cet().args(["restore", "--pid", &victim.pid.to_string()]).arg(&img));
        let msg = text(&o);
        assert!(!o.status.success(), "{name}: restored into the victim: {msg}");
        assert!(msg.contains(&range) && msg.contains("nothing was changed"), "{name}: {msg}");
        if pow2 {
            assert!(
                msg.contains("occupied by") && msg.contains(what) && msg.contains("a bitmap is"),
                "{name}: {msg}"
            );
        }
    }
    // A 63 TiB "bitmap": not a power of two, refused by check.
    let img = forge(dir.path(), "huge", 0x1000_0000_0000, 63 << 40);
    let c = run(criu_cet().arg("check").arg(&img));
    assert!(!c.status.success() && text(&c).contains("not a bitmap length"), "{}", text(&c));
    assert_eq!(victim.ask().unwrap(), before, "the victim's memory changed");
    // What a restore could have touched is each aimed-at range; elsewhere the victim's own
    // threads change its mappings (a malloc arena appears, a thread stack goes away).
    let after = maps_of(victim.pid);
    for (name, (start, end), _) in targets {
        assert_eq!(
            maps_within(&after, start, end),
            maps_within(&maps, start, end),
            "{name}: its mappings changed"
        );
    }
}

/// The mappings that meet `start..end`, clipped to it (a heap that grows past `end` by itself
/// still reads the same).
fn maps_within(maps: &[(u64, u64, String, String)], start: u64, end: u64) -> Vec<(u64, u64, String, String)> {
    maps.iter()
        .filter(|m| m.0 < end && m.1 > start)
        .map(|m| (m.0.max(start), m.1.min(end), m.2.clone(), m.3.clone()))
        .collect()
}

/// Starts the CLI with `args`, paused at the test hook `point` (feature `test-hooks`), and
/// returns it once it says it is there, with what it printed so far.
#[cfg(feature = "test-hooks")]
fn cli_paused_at(args: &[&str], point: &str) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = criu_cet()
        .args(args)
        .env("CRIU_CET_TEST_PAUSE", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "the CLI ended before {point}: {seen}");
        seen.push_str(&line);
        if line.contains(&format!("paused at {point}")) {
            break;
        }
    }
    // The rest of stderr, read to the end once it exits.
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let _ = rest.is_finished();
    child.stderr = None;
    STDERR_TAILS.lock().unwrap().insert(child.id(), rest);
    (child, seen)
}

#[cfg(feature = "test-hooks")]
type Tail = std::thread::JoinHandle<String>;
#[cfg(feature = "test-hooks")]
static STDERR_TAILS: std::sync::Mutex<std::collections::BTreeMap<u32, Tail>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Sends `sig` to the paused CLI and returns its exit status and everything it printed.
#[cfg(feature = "test-hooks")]
fn signal_and_wait(
    mut child: std::process::Child,
    seen: String,
    sig: nix::sys::signal::Signal,
) -> (std::process::ExitStatus, String) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()), sig).unwrap();
    let status = child.wait().unwrap();
    let tail = STDERR_TAILS.lock().unwrap().remove(&child.id()).unwrap().join().unwrap();
    (status, seen + &tail)
}

/// An image of a fixture's bitmap at BASE with some content, for the restore tests.
#[cfg(feature = "test-hooks")]
fn image_to_restore(dir: &Path) -> PathBuf {
    let src = start_fixture(dir, "src", &["--base", "0x600000000000", "--ones", "3", "--mixed", "20"]);
    let img = dir.join("cet.img");
    assert!(run(&mut dump_cmd(src.pid, &img)).status.success());
    img
}

#[cfg(feature = "test-hooks")]
#[test]
fn sigint_or_sigterm_during_restore_leaves_the_target_running_untraced() {
    use nix::sys::signal::Signal;
    let dir = tempfile::tempdir().unwrap();
    let img = image_to_restore(dir.path());
    let mut cases = 0;
    // Inside the remote mmap (the target's registers borrowed) and after it (pages being written).
    for point in ["remote-syscall", "restore-mapped"] {
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            let dst = start_fixture(dir.path(), &format!("d{cases}"), &["--no-bitmap", "--threads", "2"]);
            let pid = dst.pid.to_string();
            let (child, seen) = cli_paused_at(&["restore", "--pid", &pid, img.to_str().unwrap()], point);
            let (status, msg) = signal_and_wait(child, seen, sig);
            assert_eq!(status.code(), Some(128 + sig as i32), "{point} {sig}: {msg}");
            assert!(msg.contains(&format!("interrupted by {sig}")) && msg.contains("detached"), "{msg}");
            // Alive, answering, untraced; the mmap that was under way completed.
            let r = dst.ask().unwrap();
            assert_eq!(r.get("pid"), pid, "{point} {sig}: the target was harmed");
            assert!(r.get("bitmap").starts_with("0x600000000000:"), "{point} {sig}: {r:?}");
            assert!(tracer_of_every_thread(dst.pid).iter().all(|t| t == "0"), "{point} {sig}");
            cases += 1;
        }
    }
    assert_eq!(cases, 4);
}

#[cfg(feature = "test-hooks")]
#[test]
fn sigkill_of_the_cli_after_remote_syscalls_does_not_kill_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let img = image_to_restore(dir.path());
    for round in 0..10 {
        let dst = start_fixture(dir.path(), &format!("k{round}"), &["--no-bitmap", "--threads", "2"]);
        let pid = dst.pid.to_string();
        let (child, seen) =
            cli_paused_at(&["restore", "--pid", &pid, img.to_str().unwrap()], "restore-mapped");
        let (status, _) = signal_and_wait(child, seen, nix::sys::signal::Signal::SIGKILL);
        assert_eq!(status.signal(), Some(9));
        // With a single-stepped remote syscall the trap flag stayed set and the target died of
        // SIGTRAP as soon as its dead tracer let it go. It must live on, untraced.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let r = dst.ask().unwrap();
        assert_eq!(r.get("pid"), pid, "round {round}: the target died");
        assert!(tracer_of_every_thread(dst.pid).iter().all(|t| t == "0"));
    }
}

#[cfg(feature = "test-hooks")]
#[test]
fn sigint_or_sigterm_during_dump_removes_the_temporary_file() {
    use nix::sys::signal::Signal;
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--ones", "2", "--mixed", "40", "--threads", "2"]);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let img = out.join("cet.img");
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGINT, Signal::SIGTERM] {
        let pid = f.pid.to_string();
        let args = ["dump", "--pid", &pid, "--output", img.to_str().unwrap()];
        let (child, seen) = cli_paused_at(&args, "dump-writing");
        // The temporary file exists while it is paused...
        assert!(files_in(&out).iter().any(|n| n.ends_with(".tmp")), "{:?}", files_in(&out));
        let (status, msg) = signal_and_wait(child, seen, sig);
        assert_eq!(status.code(), Some(128 + sig as i32), "{msg}");
        assert!(msg.contains(&format!("interrupted by {sig}")), "{msg}");
        // ...and is gone after the signal; no image either.
        assert_eq!(files_in(&out), Vec::<String>::new(), "{msg}");
        assert!(tracer_of_every_thread(f.pid).iter().all(|t| t == "0"));
        assert_eq!(f.ask().unwrap().get("pid"), pid);
    }
}

/// An image of the empty-48 vector's process with `bitmap` and what `fill` pushes.
fn image_with(
    path: &Path,
    bitmap: Option<(u64, u64)>,
    fill: impl FnOnce(&mut criu_cet_format::ImageWriter<std::fs::File>),
) {
    let doc: criu_cet_format::ImageDoc =
        serde_json::from_slice(&std::fs::read(vector("empty-48.json")).unwrap()).unwrap();
    let mut meta = criu_cet_format::Metadata {
        host: doc.host,
        process: doc.process,
        bitmap: doc.bitmap,
        namespace: doc.namespace,
        criu_run_id: doc.criu_run_id,
    };
    if let (Some(b), Some((base, length))) = (meta.bitmap.as_mut(), bitmap) {
        b.base = criu_cet_format::Addr(base);
        b.length = length;
    }
    let file = std::fs::File::create(path).unwrap();
    let mut w = criu_cet_format::ImageWriter::new(file, &meta, Default::default()).unwrap();
    fill(&mut w);
    w.finish().unwrap();
}

#[test]
fn decode_streams_a_large_image_within_a_small_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("many.img");
    // 20,000 data pages that compress to almost nothing: 164 MB of JSON hex.
    let pages = 20_000u64;
    image_with(&img, None, |w| {
        let mut page = [0u8; 4096];
        for p in 0..pages {
            page[(p % 4096) as usize] = 0x5a;
            w.push_page(p, &page).unwrap();
            page[(p % 4096) as usize] = 0;
        }
    });
    let size = std::fs::metadata(&img).unwrap().len();
    assert!(size < 1 << 20, "{size} bytes");
    let mut child = std::process::Command::new("prlimit")
        .arg("--as=268435456")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_criu-cet"))
        .arg("decode")
        .arg(&img)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (mut total, mut lines, mut buf) = (0u64, 0u64, vec![0u8; 1 << 16]);
    loop {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Every page as 8192 hex digits on a line of its own.
    assert!(total > pages * 8192 && lines > pages, "{total} bytes, {lines} lines");
}

#[test]
fn a_restore_that_would_commit_more_than_the_machine_has_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ones.img");
    // A 4 TiB (57-bit) bitmap at 2^44 with one 64 GiB all-ones run: a few hundred bytes of image.
    let base = 0x1000_0000_0000u64;
    image_with(&img, Some((base, 1 << 42)), |w| w.push_ones(0x100, 16 << 20).unwrap());
    assert!(std::fs::metadata(&img).unwrap().len() < 4096);
    let c = run(criu_cet().arg("check").arg(&img));
    assert!(c.status.success(), "{}", text(&c));
    assert!(text(&c).contains("a restore commits up to 68853968896 bytes"), "{}", text(&c));
    let f = start_fixture(dir.path(), "t", &["--no-bitmap"]);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", f.pid)).unwrap();
    let o = run(criu_cet().args(["restore", "--pid", &f.pid.to_string()]).arg(&img));
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(
        msg.contains("restoring needs 68853968896 bytes")
            && msg.contains("MemAvailable is")
            && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(format!("/proc/{}/maps", f.pid)).unwrap(), maps);
    assert_eq!(f.ask().unwrap().get("bitmap"), "none");
}

/// Refused before anything changes, into a process without the mapping, and into one whose
/// bitmap mapping is in place but holds none of the image's pages (the check is skipped only
/// when every image page is present and the process's alone, as CRIU restores its own copy).
#[test]
fn a_restore_beyond_the_targets_memory_cgroup_limit_is_refused_naming_both_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("gig.img");
    // A 48-bit bitmap at BASE with one 1 GiB all-ones run: the target is limited to 512 MiB.
    image_with(&img, Some((0x6000_0000_0000, 1 << 33)), |w| w.push_ones(0x100, 1 << 18).unwrap());
    let present = ["--bits", "48", "--base", "0x600000000000", "--ones", "1"];
    for (name, args) in [("absent", &["--no-bitmap"][..]), ("present", &present[..])] {
        let cg = MemCgroup::new(&format!("-{name}"), 512 << 20);
        let f = start_fixture(dir.path(), name, args);
        let before = f.ask().unwrap();
        cg.add(f.pid);
        let o = run(criu_cet().args(["restore", "--pid", &f.pid.to_string()]).arg(&img));
        let msg = text(&o);
        assert!(!o.status.success(), "{name}: {msg}");
        assert!(
            msg.contains("memory cgroup")
                && msg.contains("limit 536870912")
                && msg.contains("nothing was changed"),
            "{name}: {msg}"
        );
        // Not OOM-killed, nothing mapped or written.
        let after = f.ask().unwrap();
        assert_eq!(
            (after.get("bitmap"), after.get("digest")),
            (before.get("bitmap"), before.get("digest")),
            "{name}"
        );
        if name == "present" {
            assert_eq!(before.get("bitmap"), "0x600000000000:0x200000000", "the image's own range");
        }
    }
}
