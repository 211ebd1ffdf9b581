//! The plugin inside real CRIU 4.1.1 (provisioned by tests/provision/criu.sh), on real
//! processes. One CRIU run at a time: restores need the dumped PIDs free.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use support::*;

static SERIAL: Mutex<()> = Mutex::new(());

struct Session {
    _dir: tempfile::TempDir,
    root: PathBuf,
    imgs: PathBuf,
    lib: PathBuf,
    empty_lib: PathBuf,
}

fn session() -> Session {
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let (imgs, lib, empty_lib) = (root.join("img"), root.join("lib"), root.join("nolib"));
    for d in [&imgs, &lib, &empty_lib] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::copy(plugin_so(), lib.join("cet_plugin.so")).unwrap();
    Session { _dir: dir, root, imgs, lib, empty_lib }
}

impl Session {
    fn criu(&self, lib: &Path, args: &[&str], log: &str) -> Output {
        self.criu_env(lib, args, log, &[])
    }

    /// CRIU with extra environment variables (for the plugins it loads): never set in this
    /// process, whose environment every test shares.
    fn criu_env(&self, lib: &Path, args: &[&str], log: &str, env: &[(&str, &std::ffi::OsStr)]) -> Output {
        run(Command::new(criu())
            .envs(env.iter().copied())
            .args(args)
            .arg("-D")
            .arg(&self.imgs)
            .arg("-L")
            .arg(lib)
            .args(["-v4", "-o", log]))
    }

    fn dump(&self, pid: u32) -> Output {
        let out = self.criu(&self.lib, &["dump", "-t", &pid.to_string()], "dump.log");
        assert!(out.status.success(), "criu dump failed:\n{}", self.log("dump.log"));
        out
    }

    fn restore_with(&self, lib: &Path) -> Output {
        self.criu(lib, &["restore", "-d"], "restore.log")
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.imgs.join(name)).unwrap_or_default()
    }

    fn image(&self, pid: u32) -> PathBuf {
        self.imgs.join(format!("cet-{pid}.img"))
    }
}

#[test]
fn dump_kill_restore_keeps_the_bitmap_of_a_three_thread_process() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let mut f =
        start_fixture(&s.root, "r", &["--bits", "48", "--threads", "3", "--ones", "4", "--mixed", "6"]);
    let before = f.ask().unwrap();
    s.dump(f.pid);
    f.reap_after_dump();
    assert!(s.image(f.pid).exists(), "no cet image");
    let inventory = std::fs::read(s.imgs.join("inventory.img")).unwrap();
    assert!(inventory.windows(3).any(|w| w == b"cet"), "the inventory does not name the cet plugin");
    assert!(s.log("dump.log").contains(&format!("cet: process {}: wrote cet-{}.img", f.pid, f.pid)));
    let out = s.restore_with(&s.lib);
    assert!(out.status.success(), "restore failed:\n{}", s.log("restore.log"));
    let restored = Fixture::adopt(f.pid, f.report.clone());
    let after = restored.ask().unwrap();
    assert_eq!(after.bitmap_view(), before.bitmap_view());
    assert_eq!(after.num("threads"), 3);
    let log = s.log("restore.log");
    assert!(log.contains("cet image(s) checked against this host"), "{log}");
    assert!(log.contains(&format!("cet: process {}: restored cet-{}.img", f.pid, f.pid)), "{log}");
}

#[test]
fn restore_without_the_plugin_is_refused_by_criu() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let mut f = start_fixture(&s.root, "r", &["--ones", "1"]);
    s.dump(f.pid);
    f.reap_after_dump();
    let out = s.restore_with(&s.empty_lib);
    assert!(!out.status.success());
    assert!(s.log("restore.log").contains("Missing required plugin"), "{}", s.log("restore.log"));
    assert!(!Path::new(&format!("/proc/{}", f.pid)).exists(), "a task was restored without the plugin");
}

#[test]
fn an_image_needing_more_address_bits_aborts_in_init_before_any_fork() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let mut f = start_fixture(&s.root, "r", &["--ones", "2", "--mixed", "2"]);
    s.dump(f.pid);
    f.reap_after_dump();
    // Forge the cet image as a 5-level host would have written it: the bitmap at 2^50.
    let img = s.image(f.pid);
    let json = run(criu_cet().arg("decode").arg(&img));
    let mut doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    doc["bitmap"]["base"] = "0x4000000000000".into();
    doc["host"]["user_address_bits"] = 56.into();
    doc["host"]["la57"] = true.into();
    let forged = s.root.join("forged.json");
    std::fs::write(&forged, doc.to_string()).unwrap();
    let out = run(criu_cet().arg("encode").arg(&forged).arg("--output").arg(&img));
    assert!(out.status.success(), "{}", text(&out));
    let out = s.restore_with(&s.lib);
    let log = s.log("restore.log");
    assert!(!out.status.success(), "{log}");
    let needle = format!("cet: cet-{}.img: bitmap 0x4000000000000-0x4000200000000 needs 51 address bits, but this host has a 47-bit user address space", f.pid);
    assert!(log.contains(&needle), "{log}");
    assert!(log.contains("restore refused before any task was forked"), "{log}");
    assert!(!log.contains("Forking task"), "CRIU forked before the plugin refused:\n{log}");
    assert!(!Path::new(&format!("/proc/{}", f.pid)).exists());
}

#[test]
fn a_process_tree_with_and_without_bitmaps() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let mut f = start_fixture(&s.root, "r", &["--fork", "--fork-plain", "--ones", "2", "--mixed", "3"]);
    let child = Fixture::adopt(
        wait_for_report(&suffixed(&f.report, "child")).unwrap().pid(),
        suffixed(&f.report, "child"),
    );
    let plain = Fixture::adopt(
        wait_for_report(&suffixed(&f.report, "plain")).unwrap().pid(),
        suffixed(&f.report, "plain"),
    );
    let (p0, c0, q0) = (f.ask().unwrap(), child.ask().unwrap(), plain.ask().unwrap());
    assert_ne!(p0.get("digest"), c0.get("digest"), "parent and child should differ");
    assert_eq!(q0.get("bitmap"), "none");
    s.dump(f.pid);
    f.reap_after_dump();
    wait_gone(child.pid);
    wait_gone(plain.pid);
    assert!(s.image(f.pid).exists() && s.image(child.pid).exists());
    assert!(!s.image(plain.pid).exists(), "a process without a bitmap got an image");
    let out = s.restore_with(&s.lib);
    assert!(out.status.success(), "{}", s.log("restore.log"));
    let parent = Fixture::adopt(f.pid, f.report.clone());
    assert_eq!(parent.ask().unwrap().bitmap_view(), p0.bitmap_view());
    assert_eq!(child.ask().unwrap().bitmap_view(), c0.bitmap_view());
    assert_eq!(plain.ask().unwrap().bitmap_view(), q0.bitmap_view());
}

#[test]
fn a_corrupted_cet_image_aborts_restore_cleanly_naming_the_file() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let mut f = start_fixture(&s.root, "r", &["--ones", "1", "--mixed", "2"]);
    s.dump(f.pid);
    f.reap_after_dump();
    let img = s.image(f.pid);
    let mut bytes = std::fs::read(&img).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&img, bytes).unwrap();
    let out = s.restore_with(&s.lib);
    let log = s.log("restore.log");
    assert!(out.status.code().is_some(), "criu died of a signal: {:?}", out.status);
    assert_ne!(out.status.code(), Some(0));
    assert!(log.contains(&format!("cet: cet-{}.img: ", f.pid)) && log.contains("checksum mismatch"), "{log}");
    assert!(!Path::new(&format!("/proc/{}", f.pid)).exists());
}

#[test]
fn a_second_plugin_in_the_same_directory_sees_every_pid() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let witness = s.lib.join("witness_plugin.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/witness_plugin.c");
    let out = run(Command::new("cc").args(["-shared", "-fPIC", "-O2", "-o"]).arg(&witness).arg(&src));
    assert!(out.status.success(), "building the witness plugin: {}", text(&out));
    let log = s.root.join("witness.log");
    let env = [("CET_WITNESS_LOG", log.as_os_str())];
    let mut f = start_fixture(&s.root, "r", &["--fork", "--ones", "1"]);
    let child = Fixture::adopt(
        wait_for_report(&suffixed(&f.report, "child")).unwrap().pid(),
        suffixed(&f.report, "child"),
    );
    let (p0, c0) = (f.ask().unwrap(), child.ask().unwrap());
    let out = s.criu_env(&s.lib, &["dump", "-t", &f.pid.to_string()], "dump.log", &env);
    assert!(out.status.success(), "criu dump failed:\n{}", s.log("dump.log"));
    f.reap_after_dump();
    wait_gone(child.pid);
    assert!(s.image(f.pid).exists() && s.image(child.pid).exists(), "the cet plugin missed a pid");
    let out = s.criu_env(&s.lib, &["restore", "-d"], "restore.log", &env);
    assert!(out.status.success(), "{}", s.log("restore.log"));
    let parent = Fixture::adopt(f.pid, f.report.clone());
    assert_eq!(parent.ask().unwrap().bitmap_view(), p0.bitmap_view());
    assert_eq!(child.ask().unwrap().bitmap_view(), c0.bitmap_view());
    let seen = std::fs::read_to_string(&log).unwrap();
    for what in ["checkpoint", "resume"] {
        for pid in [f.pid, child.pid] {
            assert!(seen.contains(&format!("{what} {pid}\n")), "witness missed {what} {pid}:\n{seen}");
        }
    }
}

/// The descriptor as CRIU reads it, and pre-dump, driven through the real C ABI of the built
/// library (dlopen + the descriptor's function pointers). CRIU's own pre-dump cannot run on this
/// machine: its kernel lacks CONFIG_MEM_SOFT_DIRTY, and criu 4.1.1 pre-dump then stops with
/// "BUG at criu/mem.c:45" even for `sleep` with no plugin loaded.
#[test]
fn the_descriptor_and_pre_dump_through_the_c_abi() {
    #[repr(C)]
    struct Desc {
        name: *const std::ffi::c_char,
        init: extern "C" fn(i32) -> i32,
        exit: extern "C" fn(i32, i32),
        version: u32,
        max_hooks: u32,
        hooks: [*const std::ffi::c_void; 12],
    }
    let so = std::ffi::CString::new(plugin_so().to_str().unwrap()).unwrap();
    // SAFETY: loading our own plugin library, whose initializers have no side effects.
    let handle = unsafe { libc::dlopen(so.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!handle.is_null());
    // SAFETY: CR_PLUGIN_DESC is the descriptor static laid out as `Desc` (criu-plugin.h).
    let desc = unsafe { &*(libc::dlsym(handle, c"CR_PLUGIN_DESC".as_ptr()) as *const Desc) };
    // SAFETY: `name` points at a static NUL-terminated string.
    assert_eq!(unsafe { std::ffi::CStr::from_ptr(desc.name) }, c"cet");
    assert_eq!((desc.version, desc.max_hooks), (0x200, 12));
    let set: Vec<usize> = (0..12).filter(|&i| !desc.hooks[i].is_null()).collect();
    assert_eq!(set, vec![9, 11], "RESUME_DEVICES_LATE, CHECKPOINT_DEVICES (CRIU skips the empty slots)");
    // SAFETY: hook 11 is `int checkpoint_devices(int pid)`.
    let checkpoint: extern "C" fn(i32) -> i32 = unsafe { std::mem::transmute(desc.hooks[11]) };
    let dir = tempfile::tempdir().unwrap();
    let f = start_fixture(dir.path(), "r", &["--ones", "1"]);
    let before = f.ask().unwrap();
    assert_eq!((desc.init)(1), 0, "init(PRE_DUMP)");
    assert_eq!(
        checkpoint(i32::try_from(f.pid).unwrap()),
        -libc::ENOTSUP,
        "pre-dump leaves the pid to others"
    );
    (desc.exit)(1, 0);
    assert_eq!(f.ask().unwrap(), before);
    // Outside CRIU, restore init finds no image directory: an error return, not a crash.
    assert_eq!((desc.init)(2), -1);
    (desc.exit)(2, -1);
}

/// A cet image whose bitmap range CRIU has filled with something else: the restore fails late,
/// in RESUME_DEVICES_LATE, whose result CRIU ignores; the plugin then kills the task, or with
/// CRIU_CET_ON_ERROR=warn leaves it running.
#[test]
fn a_late_restore_failure_kills_the_task_unless_told_to_warn() {
    for policy in ["kill", "warn"] {
        let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let s = session();
        let mut f = start_fixture(&s.root, "r", &["--ones", "1"]);
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", f.pid)).unwrap();
        let text_start =
            maps.lines().find(|l| l.contains("cet-fixture")).unwrap().split('-').next().unwrap().to_string();
        s.dump(f.pid);
        f.reap_after_dump();
        let img = s.image(f.pid);
        let mut doc: serde_json::Value =
            serde_json::from_slice(&run(criu_cet().arg("decode").arg(&img)).stdout).unwrap();
        doc["bitmap"]["base"] = format!("0x{text_start}").into();
        let forged = s.root.join("forged.json");
        std::fs::write(&forged, doc.to_string()).unwrap();
        assert!(run(criu_cet().arg("encode").arg(&forged).arg("--output").arg(&img)).status.success());
        let env = [("CRIU_CET_ON_ERROR", std::ffi::OsStr::new(policy))];
        let _ = s.criu_env(&s.lib, &["restore", "-d"], "restore.log", &env);
        let log = s.log("restore.log");
        assert!(log.contains("is occupied by"), "{policy}: {log}");
        match policy {
            "kill" => {
                // The plugin sent SIGKILL before CRIU returned: the task goes away.
                wait_gone(f.pid);
                assert!(log.contains("killed so that it does not run with a wrong IBT bitmap"), "{log}");
            }
            _ => {
                reap(f.pid);
                assert!(
                    Path::new(&format!("/proc/{}", f.pid)).exists(),
                    "warn policy killed the task:\n{log}"
                );
                end(f.pid);
            }
        }
    }
}

/// Dumps a fixture with the plugin and returns the session, the fixture (reaped) and the image.
fn dumped(args: &[&str]) -> (Session, Fixture, Vec<u8>) {
    let s = session();
    let mut f = start_fixture(&s.root, "r", args);
    s.dump(f.pid);
    f.reap_after_dump();
    let img = std::fs::read(s.image(f.pid)).unwrap();
    (s, f, img)
}

#[test]
fn hostile_image_directories_are_refused_with_a_message_and_never_followed() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (s, f, good) = dumped(&["--ones", "1", "--mixed", "2"]);
    let img = s.image(f.pid);
    let elsewhere = s.root.join("elsewhere.img");
    std::fs::write(&elsewhere, &good).unwrap();
    let refused = |what: &str, needle: &str| {
        let out = s.restore_with(&s.lib);
        let log = s.log("restore.log");
        assert!(out.status.code().is_some_and(|c| c != 0), "{what}: {:?}\n{log}", out.status);
        assert!(log.contains(needle), "{what}: no {needle:?} in\n{log}");
        assert!(
            log.contains("restore refused before any task was forked") && !log.contains("Forking task"),
            "{what}"
        );
        assert!(!Path::new(&format!("/proc/{}", f.pid)).exists(), "{what}: a task was restored");
    };
    std::fs::remove_file(&img).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &img).unwrap();
    refused("symlink", "is a symbolic link; images are never read through links");
    std::fs::remove_file(&img).unwrap();
    std::fs::create_dir(&img).unwrap();
    refused("directory", "is not a regular file");
    std::fs::remove_dir(&img).unwrap();
    std::fs::write(&img, &good).unwrap();
    let second = s.imgs.join(format!("cet-0{}.img", f.pid));
    std::fs::write(&second, &good).unwrap();
    refused("two images for one pid", &format!("cet-0{}.img: not a name this plugin writes", f.pid));
    std::fs::remove_file(&second).unwrap();
    // An intact image of a task that is not in the tree would never be used: refused in init.
    std::fs::copy(vector("typical-48.cetimg"), s.imgs.join("cet-4242.img")).unwrap();
    refused(
        "an image of a task CRIU does not restore",
        &format!("cet-4242.img: CRIU's pstree.img has no task 4242 (it restores tasks {})", f.pid),
    );
}

/// Issue 19, finding 5: CRIU formats each log line into an 8 KiB buffer and then writes as many
/// bytes as the whole line would take, so a longer plugin message put CRIU's memory past the
/// buffer into restore.log (a task with 2,001 threads in pstree.img but 1 in the image listed
/// every thread). The plugin now lists at most 8 ids, and cuts every line at 1 KiB.
#[test]
fn a_message_about_thousands_of_threads_stays_one_short_line_of_restore_log() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (s, f, _) = dumped(&["--ones", "1"]);
    let threads = support::criu_images::add_threads(&s.imgs, f.pid, 2000);
    assert!(threads >= 2001, "{threads}");
    let out = s.restore_with(&s.lib);
    let raw = std::fs::read(s.imgs.join("restore.log")).unwrap();
    assert!(out.status.code().is_some_and(|c| c != 0), "{:?}", out.status);
    // Nothing but CRIU's and the plugin's text: no bytes from past CRIU's buffer.
    assert!(!raw.contains(&0), "restore.log holds NUL bytes");
    let log = String::from_utf8(raw).expect("restore.log is text");
    // The plugin's bound (criu::MAX_LINE), plus CRIU's "(ss.uuuuuu) " timestamp.
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest <= 1024 + 12, "a restore.log line of {longest} bytes:\n{log}");
    let line = log.lines().find(|l| l.contains(&format!("task {} has threads", f.pid))).expect(&log);
    assert!(line.contains(&format!("100006, and {} more] in CRIU's pstree.img", threads - 8)), "{line}");
    assert!(
        log.contains("restore refused before any task was forked") && !log.contains("Forking task"),
        "{log}"
    );
    assert!(!Path::new(&format!("/proc/{}", f.pid)).exists(), "a task was restored");
}

#[test]
fn criu_exits_cleanly_on_every_kind_of_broken_cet_image() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (s, f, good) = dumped(&["--ones", "1", "--mixed", "3"]);
    let mut flipped_magic = good.clone();
    flipped_magic[0] ^= 0xff;
    let mut huge_table = good.clone();
    let n = huge_table.len();
    huge_table[n - 16..n - 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut newer = good.clone();
    newer[8] = 9;
    criu_cet_format::forge::reseal(&mut newer).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", vec![], "image truncated"),
        ("truncated to half", good[..good.len() / 2].to_vec(), "truncated or was never finished"),
        (
            "garbage",
            (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0]).collect(),
            "not a criu-cet image",
        ),
        ("magic flipped", flipped_magic, "not a criu-cet image"),
        ("section count u32::MAX", huge_table, "section_count"),
        ("a newer major version", newer, "use a criu-cet release that reads format 9.x"),
    ];
    for (what, bytes, needle) in cases {
        std::fs::write(s.image(f.pid), &bytes).unwrap();
        let out = s.restore_with(&s.lib);
        let log = s.log("restore.log");
        assert!(out.status.code().is_some_and(|c| c != 0), "{what}: criu ended by {:?}", out.status);
        assert!(log.contains(&format!("cet: cet-{}.img: ", f.pid)) && log.contains(needle), "{what}:\n{log}");
        let twice = format!("cet-{0}.img: cet-{0}.img", f.pid);
        assert!(!log.contains(&twice), "{what}: the file is named twice:\n{log}");
        assert!(!Path::new(&format!("/proc/{}", f.pid)).exists(), "{what}: a task was restored");
    }
}

// --- pid namespaces: how runc, crun, Podman and Kubernetes run every process ----------------

impl Session {
    /// `criu restore -d --pidfile`: returns the restored root task's host pid.
    fn restore_tree(&self) -> u32 {
        let pidfile = self.root.join("restored.pid");
        let _ = std::fs::remove_file(&pidfile);
        let out =
            self.criu(&self.lib, &["restore", "-d", "--pidfile", pidfile.to_str().unwrap()], "restore.log");
        assert!(out.status.success(), "restore failed:\n{}", self.log("restore.log"));
        std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap()
    }

    /// Starts a fixture as the init of a new pid namespace (a container's first process) and
    /// dumps it into the images directory, which CRIU's dump ends.
    fn dump_container(&self, name: &str, args: &[&str]) {
        let mut ns = PidNamespace::start(&self.root, name, args);
        self.dump(ns.init.pid);
        ns.reap_after_dump();
    }

    /// Destroys CRIU's own copy of the bitmap of task `id` (whose report says where it is), so
    /// that only the plugin can bring it back; returns how many non-zero pages were destroyed.
    fn zero_criu_copy(&self, id: u32, report: &Report) -> usize {
        let (base, len) = report.get("bitmap").split_once(':').expect("a bitmap");
        let parse = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        let (base, len) = (parse(base), parse(len));
        support::criu_images::zero_pages(&self.imgs, id, base, base + len)
    }
}

/// Dumps a tree started in its own pid namespace, destroys CRIU's copy of every bitmap, restores
/// it (CRIU creates a new pid namespace, so every task gets a new host pid) and returns the
/// restored init's host pid. `reports` are the tasks' report files by their namespace pid.
fn dump_zero_restore(
    s: &Session,
    ns: &mut PidNamespace,
    reports: &[(u32, PathBuf)],
) -> (Vec<Report>, Fixture) {
    let before: Vec<Report> = reports.iter().map(|(_, r)| ask(r).unwrap()).collect();
    s.dump(ns.init.pid);
    ns.reap_after_dump();
    let dump_log = s.log("dump.log");
    for ((id, _), report) in reports.iter().zip(&before) {
        assert!(
            s.image(*id).exists(),
            "no cet-{id}.img: images must be named by the namespace pid\n{dump_log}"
        );
        assert!(
            dump_log.contains(&format!("(task {id} in its pid namespace): wrote cet-{id}.img")),
            "{dump_log}"
        );
        let zeroed = s.zero_criu_copy(*id, report);
        assert_eq!(
            zeroed as u64,
            report.num("pages"),
            "task {id}: CRIU's copy of the bitmap was not destroyed"
        );
    }
    assert!(!s.image(ns.init.pid).exists(), "an image named by the host pid");
    // Adopted at once, so that a failed assertion below still ends the restored tree.
    let restored = Fixture::adopt(s.restore_tree(), reports[0].1.clone());
    let log = s.log("restore.log");
    for (id, _) in reports {
        assert!(
            log.contains(&format!("(task {id} in its pid namespace): restored cet-{id}.img")),
            "the plugin did not restore task {id}:\n{log}"
        );
    }
    assert!(
        !log.contains("NOT restored") && !log.contains("failed:"),
        "plugin errors in the restore log:\n{log}"
    );
    (before, restored)
}

#[test]
fn a_process_in_its_own_pid_namespace_gets_its_bitmap_back_from_the_plugin() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let mut ns = PidNamespace::start(&s.root, "r", &["--bits", "48", "--ones", "3", "--mixed", "5"]);
    let report = ns.init.report.clone();
    let (before, restored) = dump_zero_restore(&s, &mut ns, &[(1, report)]);
    let after = restored.ask().unwrap();
    assert_eq!(after.get("pid"), "1");
    assert_eq!(after.bitmap_view(), before[0].bitmap_view());
}

#[test]
fn a_namespace_init_and_two_children_all_with_bitmaps() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let mut ns = PidNamespace::start(&s.root, "r", &["--fork", "--fork", "--ones", "2", "--mixed", "4"]);
    let r = ns.init.report.clone();
    let kids: Vec<(u32, PathBuf)> = ["child", "child2"]
        .iter()
        .map(|k| {
            let path = suffixed(&r, k);
            (wait_for_report(&path).unwrap().pid(), path)
        })
        .collect();
    let mut tasks = vec![(1, r.clone())];
    tasks.extend(kids.iter().cloned());
    let (before, restored) = dump_zero_restore(&s, &mut ns, &tasks);
    let host_kids = children(restored.pid);
    assert_eq!(host_kids.len(), 2, "the restored init should have two children");
    // Ending the restored init ends its whole pid namespace, the children with it.
    let digests: std::collections::BTreeSet<String> =
        before.iter().map(|b| b.get("digest").to_string()).collect();
    assert_eq!(digests.len(), 3, "the three bitmaps should differ");
    assert_eq!(restored.ask().unwrap().bitmap_view(), before[0].bitmap_view());
    for ((_, path), b) in kids.iter().zip(&before[1..]) {
        assert_eq!(ask(path).unwrap().bitmap_view(), b.bitmap_view());
    }
}

#[test]
fn a_multi_threaded_process_in_its_own_pid_namespace() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let mut ns = PidNamespace::start(&s.root, "r", &["--threads", "4", "--ones", "1", "--mixed", "6"]);
    let report = ns.init.report.clone();
    let (before, restored) = dump_zero_restore(&s, &mut ns, &[(1, report)]);
    let img = run(criu_cet().arg("decode").arg(s.image(1)));
    let doc: serde_json::Value = serde_json::from_slice(&img.stdout).unwrap();
    assert_eq!(doc["namespace"]["pid"], 1);
    assert_eq!(doc["namespace"]["depth"], 1);
    assert_eq!(doc["namespace"]["tids"].as_array().unwrap().len(), 4);
    let after = restored.ask().unwrap();
    assert_eq!(after.num("threads"), 4);
    assert_eq!(after.bitmap_view(), before[0].bitmap_view());
}

/// Runs `act` from a thread as soon as something reads `file` in `dir` (inotify IN_ACCESS),
/// as an attacker watching the image directory would; gives up after two minutes.
fn on_first_read(
    dir: &Path,
    file: &Path,
    act: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let ino = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    ino.add_watch(dir, AddWatchFlags::IN_ACCESS).unwrap();
    let name = file.file_name().unwrap().to_os_string();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            let events = ino.read_events().unwrap_or_default();
            if events.iter().any(|e| e.name.as_deref() == Some(name.as_os_str())) {
                return act();
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    })
}

#[test]
fn an_image_renamed_over_the_checked_one_during_restore_is_never_used() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let mut f = start_fixture(&s.root, "r", &["--ones", "2", "--mixed", "3"]);
    let before = f.ask().unwrap();
    s.dump(f.pid);
    f.reap_after_dump();
    let img = s.image(f.pid);
    let good = std::fs::read(&img).unwrap();
    // The forged image: valid, but with no populated pages; used, it would empty the bitmap.
    let json = run(criu_cet().arg("decode").arg(&img));
    let mut doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    doc["runs"] = serde_json::json!([]);
    let forged_json = s.root.join("forged.json");
    std::fs::write(&forged_json, doc.to_string()).unwrap();
    let forged = s.root.join("forged.img");
    assert!(run(criu_cet().arg("encode").arg(&forged_json).arg("--output").arg(&forged)).status.success());
    // As soon as restore init reads the image, rename the forged one over it (an attacker
    // watching with inotify would): init goes on checking what it opened, and the hook must use
    // that, not whatever the name holds later.
    let target = img.clone();
    let racer = on_first_read(&s.imgs, &img, move || std::fs::rename(&forged, &target).unwrap());
    let out = s.restore_with(&s.lib);
    racer.join().unwrap();
    let log = s.log("restore.log");
    assert!(out.status.success(), "{log}");
    assert_ne!(std::fs::read(&img).unwrap(), good, "the racer did not replace the image");
    let restored = Fixture::adopt(f.pid, f.report.clone());
    assert_eq!(
        restored.ask().unwrap().bitmap_view(),
        before.bitmap_view(),
        "the replaced file was used:\n{log}"
    );
    assert!(log.contains(&format!("restored cet-{}.img", f.pid)), "{log}");
}

#[test]
fn an_image_swapped_for_one_whose_bitmap_is_not_a_bitmap_is_refused_in_init() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (s, f, good) = dumped(&["--ones", "1", "--mixed", "2"]);
    // The attacker's edit: the bitmap moved onto a stack-sized range (0x21000 bytes, not 2^(N-15)).
    let mut r = criu_cet_format::ImageReader::open(std::io::Cursor::new(&good)).unwrap();
    let mut doc = criu_cet_format::ImageDoc::from_image(&mut r).unwrap();
    let b = doc.bitmap.as_mut().unwrap();
    b.base = criu_cet_format::Addr(0x7ffc_0000_0000);
    b.length = 0x21000;
    doc.runs = vec![criu_cet_format::json::RunDoc {
        offset: criu_cet_format::Addr(0),
        pages: 1,
        kind: criu_cet_format::RunKind::Ones,
        covers: String::new(),
        data: Vec::new(),
    }];
    let forged = doc.write_image(Vec::new(), Default::default()).unwrap().0;
    std::fs::write(s.image(f.pid), &forged).unwrap();
    let out = s.restore_with(&s.lib);
    let log = s.log("restore.log");
    assert!(out.status.code().is_some_and(|c| c != 0), "criu ended by {:?}\n{log}", out.status);
    assert!(
        log.contains("0x7ffc00000000-0x7ffc00021000 is 0x21000 bytes long, not a bitmap length"),
        "{log}"
    );
    assert!(
        log.contains("restore refused before any task was forked") && !log.contains("Forking task"),
        "{log}"
    );
    assert!(!Path::new(&format!("/proc/{}", f.pid)).exists(), "a task was restored");
}

#[test]
fn an_image_rewritten_in_place_during_restore_is_refused_and_its_task_killed() {
    use std::io::Write as _;
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    let mut f = start_fixture(&s.root, "r", &["--ones", "2", "--mixed", "3"]);
    s.dump(f.pid);
    f.reap_after_dump();
    let img = s.image(f.pid);
    // As soon as restore init reads the image, append to the very file it holds open.
    let target = img.clone();
    let racer = on_first_read(&s.imgs, &img, move || {
        let mut file = std::fs::OpenOptions::new().append(true).open(&target).unwrap();
        file.write_all(b"tampered").unwrap();
    });
    let _ = s.restore_with(&s.lib);
    racer.join().unwrap();
    let log = s.log("restore.log");
    assert!(
        log.contains("the file changed between the check in restore init and its use"),
        "the rewritten image was not refused:\n{log}"
    );
    // The default policy kills the task rather than let it run with an unchecked bitmap.
    wait_gone(f.pid);
    assert!(log.contains("killed so that it does not run with a wrong IBT bitmap"), "{log}");
}

/// Issue 18, finding 4: another container's task 1 (no bitmap) dumped into a directory that holds
/// an earlier container's cet-1.img. The dump that succeeds removes the earlier image, so restore
/// never applies a foreign bitmap to the new task.
#[test]
fn a_reused_directory_never_applies_an_earlier_containers_bitmap() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    s.dump_container("a", &["--bits", "48", "--ones", "2", "--mixed", "3"]);
    assert!(s.image(1).exists(), "{}", s.log("dump.log"));
    let mut second = PidNamespace::start(&s.root, "b", &["--no-bitmap"]);
    let before = second.init.ask().unwrap();
    s.dump(second.init.pid);
    second.reap_after_dump();
    let log = s.log("dump.log");
    assert!(!s.image(1).exists(), "the earlier container's cet-1.img is still there:\n{log}");
    assert!(log.contains("removed 1 cet image(s) of an earlier dump: cet-1.img"), "{log}");
    let pid = s.restore_tree();
    let restore = s.log("restore.log");
    assert!(!restore.contains("restored cet-"), "a cet image was applied:\n{restore}");
    let restored = Fixture::adopt(pid, s.root.join("b"));
    assert_eq!(restored.ask().unwrap().get("bitmap"), before.get("bitmap"));
}

/// Issue 18: an image the plugin wrote, then a dump of another process into the same directory
/// without the plugin: the old image stays, and restore refuses it before any task is forked.
#[test]
fn an_image_left_by_a_dump_with_the_plugin_is_refused_after_a_dump_without_it() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    s.dump_container("a", &["--bits", "48", "--ones", "2", "--mixed", "3"]);
    let mut second = PidNamespace::start(&s.root, "b", &["--bits", "48", "--ones", "1", "--mixed", "1"]);
    let out = s.criu(&s.empty_lib, &["dump", "-t", &second.init.pid.to_string()], "dump.log");
    assert!(out.status.success(), "{}", s.log("dump.log"));
    second.reap_after_dump();
    assert!(s.image(1).exists());
    let out = s.restore_with(&s.lib);
    let log = s.log("restore.log");
    assert!(!out.status.success(), "restored with a foreign image:\n{log}");
    assert!(
        log.contains("cet-1.img is from another dump") && log.contains("does not name the cet plugin"),
        "{log}"
    );
    assert!(log.contains("restore refused before any task was forked"), "{log}");
    let check = run(criu_cet().arg("check").arg(&s.imgs));
    assert!(!check.status.success() && text(&check).contains("from another dump"), "{}", text(&check));
}

/// Issue 18, finding 5: a dump that CRIU fails after the plugin captured (CRIU_FAULT=3: its page
/// dump fails) leaves the directory's earlier checkpoint exactly as it was.
#[test]
fn a_failed_dump_leaves_the_earlier_cet_image_as_it_was() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    s.dump_container("a", &["--bits", "48", "--ones", "2", "--mixed", "3"]);
    let earlier = std::fs::read(s.image(1)).unwrap();
    let second = PidNamespace::start(&s.root, "b", &["--bits", "48", "--ones", "5", "--mixed", "1"]);
    let pid = second.init.pid.to_string();
    let out = s.criu_env(&s.lib, &["dump", "-t", &pid], "dump.log", &[("CRIU_FAULT", "3".as_ref())]);
    let log = s.log("dump.log");
    assert!(!out.status.success(), "the injected fault did not fail the dump:\n{log}");
    assert!(log.contains("wrote cet-1.img"), "the plugin did not capture before the failure:\n{log}");
    assert!(log.contains("the dump failed: its 1 cet image(s) were discarded"), "{log}");
    assert!(std::fs::read(s.image(1)).unwrap() == earlier, "the earlier cet-1.img changed");
    let left: Vec<String> = std::fs::read_dir(&s.imgs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cet-"))
        .collect();
    assert!(left.is_empty(), "images set aside left behind: {left:?}");
}

/// Issue 18, finding 2: CRIU's images moved without the plugin's (a page server receives only
/// pages; a transport that copies CRIU's files by name): restore init names the missing image,
/// and so does `criu-cet check`.
#[test]
fn a_checkpoint_whose_cet_image_did_not_travel_is_refused_naming_it() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = session();
    s.dump_container("a", &["--bits", "48", "--ones", "2", "--mixed", "3"]);
    std::fs::remove_file(s.image(1)).unwrap();
    let out = s.restore_with(&s.lib);
    let log = s.log("restore.log");
    assert!(!out.status.success(), "restored without its bitmap:\n{log}");
    assert!(log.contains("cet-1.img missing") && log.contains("must travel with CRIU's images"), "{log}");
    assert!(log.contains("restore refused before any task was forked"), "{log}");
    let check = run(criu_cet().arg("check").arg(&s.imgs));
    assert!(!check.status.success() && text(&check).contains("cet-1.img missing"), "{}", text(&check));
}
