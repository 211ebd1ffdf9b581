//! `criu-cet show`, `decode` and `check` on CRIU image directories and checkpoint archives as
//! `podman container checkpoint --export` writes them (tar, gzip, zstd), fleet preflight with a
//! directory of host profiles, and hostile archives. Archives are built here with the tar crate
//! (forged headers where a well-behaved writer would refuse) and read by the real CLI.

mod support;

use serde_json::Value;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use support::*;

fn vector_bytes(name: &str) -> Vec<u8> {
    std::fs::read(vector(name)).expect("golden vector")
}

/// A 48-bit bitmap below 2^47: any host takes it.
fn low() -> Vec<u8> {
    vector_bytes("typical-48.cetimg")
}

/// A 57-bit bitmap at 2^52: needs a 5-level host.
fn high() -> Vec<u8> {
    vector_bytes("high-57.cetimg")
}

enum M {
    File(&'static str, Vec<u8>),
    /// A name given as raw bytes, written without the tar crate's checks.
    RawName(Vec<u8>, Vec<u8>),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    Dir(&'static str),
    /// A GNU sparse member (no holes).
    Sparse(&'static str, Vec<u8>),
    /// A pax extended header of this many bytes of comment, for the next member.
    Pax(usize),
}

fn header(name: &[u8], size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let gnu = h.as_gnu_mut().expect("gnu header");
    assert!(name.len() <= gnu.name.len(), "test names fit the header");
    gnu.name[..name.len()].copy_from_slice(name);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

/// A tar of `members`, in order, with the end-of-archive marker.
fn tar_of(members: &[M]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let (h, data): (tar::Header, &[u8]) = match m {
            M::File(name, data) => {
                (header(name.as_bytes(), data.len() as u64, tar::EntryType::Regular), data)
            }
            M::RawName(name, data) => (header(name, data.len() as u64, tar::EntryType::Regular), data),
            M::Dir(name) => (header(name.as_bytes(), 0, tar::EntryType::Directory), &[]),
            M::Sparse(name, data) => {
                let mut h = header(name.as_bytes(), data.len() as u64, tar::EntryType::GNUSparse);
                let gnu = h.as_gnu_mut().expect("gnu header");
                gnu.set_real_size(data.len() as u64);
                gnu.sparse[0].set_offset(0);
                gnu.sparse[0].set_length(data.len() as u64);
                h.set_cksum();
                (h, data)
            }
            M::Symlink(name, target) | M::Hardlink(name, target) => {
                let kind =
                    if matches!(m, M::Symlink(..)) { tar::EntryType::Symlink } else { tar::EntryType::Link };
                let mut h = header(name.as_bytes(), 0, kind);
                h.set_link_name_literal(target).expect("link name fits");
                h.set_cksum();
                (h, &[])
            }
            M::Pax(len) => {
                let body = format!("comment={}\n", "x".repeat(*len));
                // A pax record's length counts its own digits.
                let mut n = body.len() + 2;
                while format!("{n} {body}").len() != n {
                    n += 1;
                }
                let record = format!("{n} {body}").into_bytes();
                let h = header(b"PaxHeaders/member", record.len() as u64, tar::EntryType::XHeader);
                b.append(&h, record.as_slice()).expect("append");
                continue;
            }
        };
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("finish")
}

/// Podman's export layout: its own files beside the CRIU image directory under checkpoint/.
fn podman_export(images: &[(&'static str, Vec<u8>)]) -> Vec<u8> {
    let mut members = vec![
        M::File("config.dump", br#"{"id":"0123"}"#.to_vec()),
        M::File("spec.dump", br#"{"ociVersion":"1.0.2"}"#.to_vec()),
        M::Dir("checkpoint/"),
        M::File("checkpoint/inventory.img", vec![0x20; 40]),
        M::File("checkpoint/core-1.img", vec![7; 3000]),
        M::File("checkpoint/pages-1.img", vec![0; 8192]),
    ];
    members.extend(images.iter().map(|(n, d)| M::File(n, d.clone())));
    members.push(M::File("rootfs-diff.tar", vec![0x55; 100_000]));
    members.push(M::File("network.status", b"[]".to_vec()));
    tar_of(&members)
}

#[derive(Clone, Copy, Debug)]
enum Z {
    Plain,
    Gzip,
    Zstd,
}

fn compress(tar: &[u8], z: Z) -> Vec<u8> {
    use std::io::Write;
    match z {
        Z::Plain => tar.to_vec(),
        Z::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Z::Zstd => zstd::encode_all(tar, 3).unwrap(),
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    let out = criu_cet().args(args.iter().map(|a| a.as_ref())).output().expect("run criu-cet");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A host profile as `criu-cet host --json` writes it.
fn profile(bits: u8) -> String {
    serde_json::json!({
        "kernel_release": format!("test-{bits}"),
        "user_address_bits": bits,
        "cpu_virtual_bits": if bits > 47 { 57 } else { 48 },
        "la57": bits > 47,
        "cet": {"cpu_shstk": false, "cpu_ibt": false, "kernel_shstk": false, "kernel_ibt": false}
    })
    .to_string()
}

#[test]
fn podman_exports_in_every_compression_list_show_decode_and_check_each_image() {
    let dir = tempfile::tempdir().unwrap();
    let four = write(dir.path(), "four-level.json", profile(47).as_bytes());
    let five = write(dir.path(), "five-level.json", profile(56).as_bytes());
    let tar = podman_export(&[("checkpoint/cet-4242.img", low()), ("checkpoint/cet-7001.img", high())]);
    for z in [Z::Plain, Z::Gzip, Z::Zstd] {
        // A name that says nothing: the kind is told by the first bytes.
        let archive = write(dir.path(), &format!("export-{z:?}.bin"), &compress(&tar, z));
        let a = archive.display().to_string();

        let r = run(&[&"check", &archive, &"--target", &four]);
        assert_eq!(r.code, 1, "{z:?}: {}{}", r.stdout, r.stderr);
        assert!(r
            .stdout
            .contains(&format!("verdict: {a}:checkpoint/cet-4242.img can be restored on target")));
        assert!(r.stdout.contains(&format!("error: {a}:checkpoint/cet-7001.img: bitmap 0x10000000000000")));
        assert!(
            r.stdout.contains(&format!(
                "verdict: {a} cannot be restored on target {}: 1 of 2 cet image(s) refused: checkpoint/cet-7001.img",
                four.display()
            )),
            "{}",
            r.stdout
        );

        let r = run(&[&"check", &archive, &"--target", &five]);
        assert_eq!(r.code, 0, "{z:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains(&format!("verdict: {a}: all 2 cet image(s) can be restored on target")));

        let r = run(&[&"show", &archive]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let kind = match z {
            Z::Plain => "(tar)",
            Z::Gzip => "(gzip-compressed tar)",
            Z::Zstd => "(zstd-compressed tar)",
        };
        assert!(r.stdout.starts_with(&format!("{a}: checkpoint archive {kind}\n")), "{}", r.stdout);
        assert!(r.stdout.contains(&format!("image {a}:checkpoint/cet-4242.img: format 1.")));
        assert!(r.stdout.contains("process 7001 (cet-fixture)"));
        assert!(r
            .stdout
            .ends_with(&format!("{a}: 2 cet image(s): checkpoint/cet-4242.img, checkpoint/cet-7001.img\n")));

        let r = run(&[&"decode", &archive]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).expect("decode prints JSON");
        assert_eq!(v["kind"], "archive");
        let images = v["images"].as_array().unwrap();
        assert_eq!(images.len(), 2);
        for (img, golden) in images.iter().zip(["typical-48.json", "high-57.json"]) {
            let want: Value = serde_json::from_slice(&vector_bytes(golden)).unwrap();
            assert_eq!(img["document"], want, "{golden}");
        }
        assert_eq!(images[1]["image"], "checkpoint/cet-7001.img");
    }
}

#[test]
fn image_directories_are_read_like_archives() {
    let dir = tempfile::tempdir().unwrap();
    let four = write(dir.path(), "four.json", profile(47).as_bytes());
    let img = dir.path().join("img");
    std::fs::create_dir(&img).unwrap();
    write(&img, "inventory.img", b"x");
    write(&img, "cet-4242.img", &low());
    let r = run(&[&"check", &img, &"--target", &four]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("all 1 cet image(s) can be restored"), "{}", r.stdout);

    write(&img, "cet-7001.img", &high());
    let r = run(&[&"check", &img, &"--target", &four]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.ends_with("1 of 2 cet image(s) refused: cet-7001.img\n"), "{}", r.stdout);
    let r = run(&[&"show", &img]);
    assert!(r.stdout.ends_with("2 cet image(s): cet-4242.img, cet-7001.img\n"), "{}", r.stdout);

    std::os::unix::fs::symlink(img.join("cet-4242.img"), img.join("cet-3.img")).unwrap();
    let r = run(&[&"check", &img, &"--target", &four]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cet-3.img: is a symbolic link; images are never read through links"),
        "{}",
        r.stderr
    );
}

/// The plugin refuses, at restore, an image whose name does not carry the task id it records;
/// the preflight says so for every host instead of passing it.
#[test]
fn an_image_under_another_tasks_name_is_refused_on_every_host() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet");
    std::fs::create_dir(&fleet).unwrap();
    write(&fleet, "a.json", profile(47).as_bytes());
    write(&fleet, "b.json", profile(56).as_bytes());
    for (name, want) in [
        ("checkpoint/cet-1.img", "checkpoint/cet-1.img: the image records task 4242, not 1"),
        (
            "checkpoint/cet-04242.img",
            "checkpoint/cet-04242.img: not a name the plugin writes (it would be cet-4242.img)",
        ),
    ] {
        let ck = write(dir.path(), "ck.tar", &podman_export(&[(name, low())]));
        let r = run(&[&"check", &ck, &"--target", &fleet]);
        assert_eq!(r.code, 1, "{name}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains(&format!("a: error: {}:{want}", ck.display())), "{name}: {}", r.stdout);
        assert!(r.stdout.contains("verdict: no host can take every cet image"), "{name}: {}", r.stdout);
    }
    // A single image given by path keeps the user's name.
    let renamed = write(dir.path(), "app.cet", &low());
    assert_eq!(run(&[&"check", &renamed, &"--target", &fleet.join("a.json")]).code, 0);
}

#[test]
fn a_checkpoint_without_cet_images_says_what_that_means() {
    let dir = tempfile::tempdir().unwrap();
    let ck = write(dir.path(), "ck.tar.zst", &compress(&podman_export(&[]), Z::Zstd));
    for cmd in ["check", "show"] {
        let r = run(&[&cmd, &ck]);
        assert_eq!(r.code, 0, "{cmd}: {}", r.stderr);
        assert!(
            r.stdout.contains("no cet image (cet-<N>.img) in this checkpoint archive (zstd-compressed tar): the checkpoint was made without the cet plugin, or no process in it had an IBT legacy bitmap or CET state in use"),
            "{cmd}: {}",
            r.stdout
        );
    }
    let r = run(&[&"decode", &ck]);
    assert_eq!(r.code, 0);
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).unwrap()["images"], serde_json::json!([]));
    assert!(r.stderr.contains("made without the cet plugin"));

    // Not a checkpoint at all: no inventory.img either.
    let other = write(dir.path(), "other.tar", &tar_of(&[M::File("notes.txt", b"hello".to_vec())]));
    let r = run(&[&"check", &other]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no cet image and no CRIU inventory.img: this is not a CRIU image directory or checkpoint archive"), "{}", r.stderr);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(run(&[&"check", &empty]).code, 1);
}

#[test]
fn fleet_preflight_gives_one_verdict_per_host_as_a_table_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet");
    std::fs::create_dir(&fleet).unwrap();
    write(&fleet, "small-a.json", profile(47).as_bytes());
    write(&fleet, "big-b.json", profile(56).as_bytes());
    write(&fleet, "README", b"not a profile, and not *.json: ignored");
    let both = write(
        dir.path(),
        "both.tar.gz",
        &compress(
            &podman_export(&[("checkpoint/cet-4242.img", low()), ("checkpoint/cet-7001.img", high())]),
            Z::Gzip,
        ),
    );

    let r = run(&[&"check", &both, &"--target", &fleet]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let table: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("HOST "))
        .take_while(|l| !l.starts_with("verdict:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(table[0], ["HOST", "VERDICT", "IMAGES", "REFUSED", "WARNINGS", "PROFILE"]);
    assert_eq!(table[1][..4], ["big-b", "ok", "2", "0"]);
    assert_eq!(table[2][..4], ["small-a", "refused", "2", "1"]);
    assert_eq!(table.len(), 3);
    assert!(r.stdout.contains("small-a: error: "), "{}", r.stdout);
    assert!(
        r.stdout.ends_with(&format!(
            "verdict: 1 of 2 hosts can take every cet image of {} (2): big-b\n",
            both.display()
        )),
        "{}",
        r.stdout
    );

    assert_eq!(run(&[&"check", &both, &"--target", &fleet, &"--any"]).code, 0);

    let r = run(&[&"check", &both, &"--target", &fleet, &"--json"]);
    assert_eq!(r.code, 1);
    let v: Value = serde_json::from_str(&r.stdout).expect("--json prints JSON");
    assert_eq!((v["kind"].as_str(), v["compression"].as_str()), (Some("archive"), Some("gzip")));
    assert_eq!(v["pass"], false);
    assert_eq!(v["able"], serde_json::json!(["big-b"]));
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts[1]["host"], "small-a");
    assert_eq!((hosts[1]["can_take_all"].as_bool(), hosts[1]["refused"].as_u64()), (Some(false), Some(1)));
    let images = v["images"].as_array().unwrap();
    assert_eq!(images[1]["image"], "checkpoint/cet-7001.img");
    let verdicts = images[1]["verdicts"].as_array().unwrap();
    assert_eq!(
        (verdicts[0]["host"].as_str(), verdicts[0]["can_restore"].as_bool()),
        (Some("big-b"), Some(true))
    );
    assert_eq!(verdicts[1]["can_restore"], false);
    assert_eq!(verdicts[1]["findings"][0]["severity"], "error");
    let r = run(&[&"check", &both, &"--target", &fleet, &"--json", &"--any"]);
    assert_eq!(r.code, 0);
    assert_eq!(serde_json::from_str::<Value>(&r.stdout).unwrap()["pass"], true);

    // Every host can take the low image; no host of a 4-level fleet can take the high one.
    let low_only = write(dir.path(), "low.tar", &podman_export(&[("checkpoint/cet-4242.img", low())]));
    let r = run(&[&"check", &low_only, &"--target", &fleet]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("verdict: all 2 hosts can take every cet image"), "{}", r.stdout);
    let four_only = dir.path().join("four-only");
    std::fs::create_dir(&four_only).unwrap();
    write(&four_only, "a.json", profile(47).as_bytes());
    write(&four_only, "b.json", profile(47).as_bytes());
    let r = run(&[&"check", &both, &"--target", &four_only, &"--any"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("verdict: no host can take every cet image"), "{}", r.stdout);

    // A single image against the fleet, and the JSON of a single image.
    let r = run(&[&"check", &vector("high-57.cetimg"), &"--target", &fleet, &"--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["kind"].as_str(), v["images"].as_array().unwrap().len()), (Some("image"), 1));

    // A bad profile is an error naming the file, before the checkpoint is read.
    let bad = write(&fleet, "broken.json", b"{\"user_address_bits\": \"many\"}");
    let r = run(&[&"check", &both, &"--target", &fleet]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!("{}: not a host profile (criu-cet host --json)", bad.display())),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let none = dir.path().join("no-profiles");
    std::fs::create_dir(&none).unwrap();
    let r = run(&[&"check", &both, &"--target", &none]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("holds no host profile (*.json)"), "{}", r.stderr);
    // A FIFO among the profiles would block the reader: refused by its type.
    let pipe = none.join("pipe.json");
    nix::unistd::mkfifo(&pipe, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let r = run(&[&"check", &both, &"--target", &none]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&format!("{}: is not a regular file", pipe.display())), "{}", r.stderr);
}

/// Every hostile archive is refused by show, decode and check alike, with exit 1 and a message.
#[test]
fn hostile_archives_are_refused_with_a_message_naming_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let inv = || M::File("checkpoint/inventory.img", b"x".to_vec());
    let good = || M::File("checkpoint/cet-4242.img", low());
    let mut corrupt = low();
    corrupt[100] ^= 0x40;
    let full = podman_export(&[("checkpoint/cet-4242.img", low()), ("checkpoint/cet-7001.img", high())]);
    // Cut inside checkpoint/cet-7001.img's data.
    let high_at = full.windows(high().len()).position(|w| w == high()).expect("image in archive");
    let cut_in_member = high_at + 100;
    let cut_message = format!(
        "the archive ends inside member checkpoint/cet-7001.img (100 of {} bytes): it is truncated",
        high().len()
    );
    let no_end = tar_of(&[inv(), good()]);
    let no_end = no_end[..no_end.len() - 1024].to_vec();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", tar_of(&[inv(), M::File("checkpoint/../../cet-4242.img", low())]), "member \"checkpoint/../../cet-4242.img\": a name with a `..` component"),
        ("absolute", tar_of(&[M::File("/checkpoint/cet-4242.img", low())]), "member \"/checkpoint/cet-4242.img\": an absolute path"),
        ("symlink-image", tar_of(&[inv(), M::Symlink("checkpoint/cet-4242.img", "/etc/shadow")]), "member checkpoint/cet-4242.img is a symbolic link to \"/etc/shadow\" where a cet image belongs"),
        ("hardlink-image", tar_of(&[M::File("x", low()), M::Hardlink("checkpoint/cet-4242.img", "x")]), "member checkpoint/cet-4242.img is a hard link to \"x\" where a cet image belongs"),
        ("symlink-dir-first", tar_of(&[M::Symlink("checkpoint", "/etc"), inv(), good()]), "member checkpoint is a symbolic link where the directory holding checkpoint/cet-4242.img belongs"),
        ("symlink-dir-after", tar_of(&[inv(), good(), M::Symlink("checkpoint", "/etc")]), "member checkpoint is a symbolic link where the directory holding checkpoint/cet-4242.img belongs"),
        ("dir-image", tar_of(&[inv(), M::Dir("checkpoint/cet-4242.img/")]), "member checkpoint/cet-4242.img is a directory, not a regular file"),
        ("sparse", tar_of(&[inv(), M::Sparse("rootfs-diff.tar", vec![1; 512]), good()]), "member rootfs-diff.tar is a GNU sparse file, not a regular file"),
        ("twice", tar_of(&[inv(), good(), M::File("./checkpoint//cet-4242.img", high())]), "checkpoint/cet-4242.img is in the archive twice"),
        ("not-utf8", tar_of(&[inv(), M::RawName(b"checkpoint/cet-\xff.img".to_vec(), low())]), "its name is not UTF-8"),
        ("cut-in-member", full[..cut_in_member].to_vec(), &cut_message),
        ("no-end-marker", no_end, "the archive has no end-of-archive marker after member checkpoint/cet-4242.img: it is truncated"),
        ("cut-gzip", { let g = compress(&full, Z::Gzip); g[..g.len() - 100].to_vec() }, "truncated"),
        ("cut-zstd", { let g = compress(&full, Z::Zstd); g[..g.len() - 100].to_vec() }, "truncated"),
        ("zstd-window", {
            use std::io::Write;
            let mut e = zstd::Encoder::new(Vec::new(), 3).unwrap();
            e.window_log(27).unwrap();
            e.write_all(&full).unwrap();
            e.finish().unwrap()
        }, "the zstd frame needs a window over 16 MiB"),
        ("huge-pax", tar_of(&[inv(), M::Pax(2 << 20), good()]), "the tar headers after member checkpoint/inventory.img take more than 1048576 bytes"),
        ("corrupt-image", tar_of(&[inv(), M::File("checkpoint/cet-4242.img", corrupt)]), ":checkpoint/cet-4242.img: "),
        ("not-an-archive", vec![0x42; 4096], "not a cet image, a CRIU image directory or a checkpoint archive (tar, gzip or zstd): its first bytes are 42 42 42"),
    ];
    // A FIFO would block a reader that opened it: refused by its type, without opening it.
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for cmd in ["check", "show", "decode"] {
        let r = run(&[&cmd, &fifo]);
        assert_eq!(r.code, 1);
        assert!(r.stderr.contains("fifo: is not a regular file but a FIFO"), "{cmd}: {}", r.stderr);
    }
    for (name, bytes, want) in cases {
        let path = write(dir.path(), name, &bytes);
        for cmd in ["check", "show", "decode"] {
            let r = run(&[&cmd, &path]);
            assert_eq!(r.code, 1, "{name} {cmd}: {}{}", r.stdout, r.stderr);
            assert!(r.stderr.contains(want), "{name} {cmd}: wanted {want:?} in {}", r.stderr);
            assert!(r.stderr.contains(&path.display().to_string()), "{name} {cmd}: {}", r.stderr);
            assert!(!r.stderr.contains("panicked"), "{name} {cmd}: {}", r.stderr);
        }
    }
}

#[test]
fn an_image_member_larger_than_the_cap_is_refused_by_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 16u64 << 20;
    let path = dir.path().join("huge.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let h = header(b"checkpoint/inventory.img", 1, tar::EntryType::Regular);
        b.append(&h, &b"x"[..]).unwrap();
        let h = header(b"checkpoint/cet-4242.img", cap + 1, tar::EntryType::Regular);
        b.append(&h, std::io::repeat(0).take(cap + 1)).unwrap();
        b.into_inner().unwrap();
    }
    let r = run(&[&"check", &path]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "member checkpoint/cet-4242.img is {} bytes, more than the {cap} bytes (16 MiB) a cet image read from an archive may have",
            cap + 1
        )),
        "{}",
        r.stderr
    );
}

/// One header block of `kind` for `name` with `size` bytes of data after it.
fn raw_header(name: &[u8], size: u64, kind: tar::EntryType) -> Vec<u8> {
    header(name, size, kind).as_bytes().to_vec()
}

/// `data` padded to whole 512-byte blocks.
fn blocks(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}

/// pax records (`LEN KEY=VALUE\n`, LEN counting itself), in order, duplicates kept.
fn pax(records: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = format!(" {k}={v}\n");
        let mut len = rest.len() + 1;
        while format!("{len}{rest}").len() != len {
            len += 1;
        }
        out.extend(format!("{len}{rest}").as_bytes());
    }
    out
}

/// The member names GNU tar and Python's tarfile list for `path`.
fn reference_names(path: &Path) -> (Vec<String>, Vec<String>) {
    let gnu = std::process::Command::new("tar").arg("-tf").arg(path).output().unwrap();
    let py = std::process::Command::new("python3")
        .args(["-c", "import sys, tarfile; print('\\n'.join(tarfile.open(sys.argv[1]).getnames()))"])
        .arg(path)
        .output()
        .unwrap();
    let lines =
        |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect();
    (lines(&gnu), lines(&py))
}

/// Issue 19 finding 3: an archive the tar crate reads one way and GNU tar (which Podman's
/// restore uses to unpack it) another. A pax header with two `path=` records, the first a
/// harmless name and the second the image's: the tar crate took the first and `check` said
/// "no cet image" while GNU tar and tarfile extract checkpoint/cet-4242.img, an image needing
/// more address bits than this host has. Now refused, naming the member, as are the other
/// ways to give one member two readings.
#[test]
fn an_archive_with_two_readings_is_refused_naming_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let image = high();
    let inv = tar_of(&[M::File("checkpoint/inventory.img", b"x".to_vec())]);
    let inv = &inv[..inv.len() - 1024]; // without its end marker
    let end = [0u8; 1024];
    let member = |headers: Vec<u8>, name: &[u8]| -> Vec<u8> {
        [inv, &headers, &raw_header(name, image.len() as u64, tar::EntryType::Regular), &blocks(&image), &end]
            .concat()
    };
    let x = |records: &[(&str, &str)]| {
        let p = pax(records);
        [raw_header(b"PaxHeaders/x", p.len() as u64, tar::EntryType::XHeader), blocks(&p)].concat()
    };
    let long = "checkpoint/".to_string() + &"d/".repeat(50) + "cet-4242.img";
    let gnu_long = [
        raw_header(b"././@LongLink", long.len() as u64 + 1, tar::EntryType::GNULongName),
        blocks(format!("{long}\0").as_bytes()),
    ]
    .concat();
    let size = image.len().to_string();
    let global = {
        let p = pax(&[("path", "checkpoint/cet-4242.img")]);
        [raw_header(b"PaxHeaders/g", p.len() as u64, tar::EntryType::XGlobalHeader), blocks(&p)].concat()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "two-paths",
            member(
                x(&[("path", "checkpoint/notes.txt"), ("path", "checkpoint/cet-4242.img")]),
                b"checkpoint/notes.txt",
            ),
            "member checkpoint/notes.txt: two pax records for `path`",
        ),
        (
            "two-sizes",
            member(x(&[("size", &size), ("size", "0")]), b"checkpoint/cet-4242.img"),
            "member checkpoint/cet-4242.img: two pax records for `size`",
        ),
        (
            "long-name-and-pax-path",
            member([gnu_long, x(&[("path", "checkpoint/notes.txt")])].concat(), b"notes"),
            "a GNU long name and a pax path both name it",
        ),
        (
            "global-path",
            [
                inv,
                &global,
                &raw_header(b"checkpoint/notes.txt", image.len() as u64, tar::EntryType::Regular),
                &blocks(&image),
                &end,
            ]
            .concat(),
            "a pax global header sets `path` for every member after it",
        ),
        (
            "malformed-pax",
            member(
                [raw_header(b"PaxHeaders/x", 9, tar::EntryType::XHeader), blocks(b"8 path=a\n")].concat(),
                b"checkpoint/cet-4242.img",
            ),
            "a pax record of length 8 that does not end where its length says",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = write(dir.path(), &format!("{name}.tar"), &bytes);
        if name == "two-paths" {
            // The reference readers: both take the last path= record.
            let (gnu, py) = reference_names(&path);
            assert!(gnu.contains(&"checkpoint/cet-4242.img".to_string()), "GNU tar: {gnu:?}");
            assert!(py.contains(&"checkpoint/cet-4242.img".to_string()), "tarfile: {py:?}");
        }
        for cmd in ["check", "show", "decode"] {
            let r = run(&[&cmd, &path]);
            assert_eq!(r.code, 1, "{name} {cmd}: {}{}", r.stdout, r.stderr);
            assert!(r.stderr.contains(want), "{name} {cmd}: wanted {want:?} in {}", r.stderr);
            assert!(r.stderr.contains("refusing the archive"), "{name} {cmd}: {}", r.stderr);
        }
    }
}
