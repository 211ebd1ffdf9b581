//! Memory bound of reading a checkpoint archive (a binary of its own: see below).

mod support;

use std::io::Read as _;
use support::*;

fn header(name: &[u8], size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().expect("gnu header").name[..name.len()].copy_from_slice(name);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

/// Incompressible bytes (xorshift), generated as they are read so that this test process stays
/// small: a child's peak RSS as getrusage reports it includes the parent's at spawn time.
struct Noise(u64);

impl std::io::Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for chunk in buf.chunks_mut(8) {
            let x = &mut self.0;
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        Ok(buf.len())
    }
}

/// Reading a large archive keeps memory bounded: a 160 MiB member that is not an image streams
/// through `criu-cet check`. getrusage's peak for children also counts this process's own size
/// when it spawned them, so this test has a binary of its own: no other test's memory counts.
#[test]
fn a_large_archive_is_streamed_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.tar.zst");
    {
        let out = std::fs::File::create(&path).unwrap();
        let mut z = zstd::Encoder::new(out, 1).unwrap();
        {
            let mut b = tar::Builder::new(&mut z);
            let h = header(b"checkpoint/inventory.img", 1, tar::EntryType::Regular);
            b.append(&h, &b"x"[..]).unwrap();
            let size = 160u64 << 20;
            let h = header(b"rootfs-diff.tar", size, tar::EntryType::Regular);
            b.append(&h, Noise(0x9e37_79b9_7f4a_7c15).take(size)).unwrap();
            let img = std::fs::read(vector("typical-48.cetimg")).unwrap();
            let h = header(b"checkpoint/cet-4242.img", img.len() as u64, tar::EntryType::Regular);
            b.append(&h, img.as_slice()).unwrap();
            b.finish().unwrap();
        }
        z.finish().unwrap();
    }
    let out = criu_cet().arg("check").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("all 1 cet image(s) can be restored"), "{stdout}");
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let peak_kib = usage.max_rss();
    eprintln!("peak RSS of the criu-cet children of this test: {peak_kib} KiB");
    assert!(peak_kib < 48 << 10, "a child of this test used {peak_kib} KiB at its peak");
}

/// Runs `criu-cet ARGS` in a fresh memory cgroup limited to 512 MiB (so that a bomb harms
/// nothing), returning its output and its peak RSS in KiB as GNU time measures it (time's own
/// few hundred KiB before the exec count too).
fn measured(case: &str, args: &[std::ffi::OsString]) -> (std::process::Output, u64) {
    let cg = MemCgroup::new(&format!("-{case}"), 512 << 20);
    let join = format!("echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"", cg.0.display());
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.args(["-f", "peak-rss-kib %M", "sh", "-c", &join]).arg(criu_cet().get_program());
    for a in args {
        cmd.arg(a);
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{case}: no peak from time: {stderr}"));
    eprintln!("{case}: peak RSS {peak} KiB");
    (out, peak)
}

/// Writes a zstd-compressed tar of the members `fill` appends.
fn tar_zst(
    path: &std::path::Path,
    fill: impl FnOnce(&mut tar::Builder<&mut zstd::Encoder<'static, std::fs::File>>),
) {
    let mut z = zstd::Encoder::new(std::fs::File::create(path).unwrap(), 3).unwrap();
    {
        let mut b = tar::Builder::new(&mut z);
        b.append(&header(b"checkpoint/inventory.img", 1, tar::EntryType::Regular), &b"x"[..]).unwrap();
        fill(&mut b);
        b.finish().unwrap();
    }
    z.finish().unwrap();
}

/// A GNU long-name member (type L) giving the next header `name`.
fn long_name(b: &mut tar::Builder<impl std::io::Write>, kind: u8, name: &[u8]) {
    let mut data = name.to_vec();
    data.push(0);
    b.append(&header(b"././@LongLink", data.len() as u64, tar::EntryType::new(kind)), data.as_slice())
        .unwrap();
}

const CAP_KIB: u64 = 64 << 10;

/// Issue 19 finding 2: memory grew with what an archive names. One member named `a/` x 32,768
/// (a 66 KB name) took 1 GB, quadratic in the name (every ancestor kept as a string); 2,500
/// links with 1 MB names were kept whole (OOM at 2 GiB). Now names over PATH_MAX are refused,
/// names up to it cost hashes only, and every reading stays under 64 MiB RSS: measured here
/// in a 512 MiB memory cgroup, with the largest names and the most links allowed, a directory
/// with more images than read, and a 3 GiB sparse host profile.
#[test]
fn names_links_and_members_never_make_memory_grow_past_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let img = std::fs::read(vector("typical-48.cetimg")).unwrap();
    let d = |n: &str| dir.path().join(n);

    tar_zst(&d("quadratic.tar.zst"), |b| {
        let name = "a/".repeat(32 << 10) + "cet-1.img";
        long_name(b, b'L', name.as_bytes());
        b.append(&header(b"cet-1.img", img.len() as u64, tar::EntryType::Regular), img.as_slice()).unwrap();
    });
    tar_zst(&d("links-1mb.tar.zst"), |b| {
        for i in 0..2500 {
            long_name(b, b'L', format!("{i}/{}", "l".repeat(1_000_000)).as_bytes());
            b.append(&header(b"link", 0, tar::EntryType::Symlink), &[][..]).unwrap();
        }
    });
    // The most an archive may name: 200 images 4,000 bytes deep (809,600 name bytes, 400,000
    // directories above them) and 20,000 links with 4,000-byte names and targets.
    tar_zst(&d("deep-allowed.tar.zst"), |b| {
        for i in 0..200 {
            let name = format!("{i}/{}cet-4242.img", "a/".repeat(1995));
            long_name(b, b'L', name.as_bytes());
            b.append(&header(b"cet-4242.img", img.len() as u64, tar::EntryType::Regular), img.as_slice())
                .unwrap();
        }
        for i in 0..20_000 {
            long_name(b, b'L', format!("links/{i}/{}", "n".repeat(3980)).as_bytes());
            long_name(b, b'K', "t".repeat(4000).as_bytes());
            b.append(&header(b"link", 0, tar::EntryType::Symlink), &[][..]).unwrap();
        }
    });
    std::fs::create_dir(d("many-images")).unwrap();
    for i in 0..=criu_cet::archive::MAX_DIRECTORY_IMAGES {
        std::fs::File::create(d("many-images").join(format!("cet-{i}.img"))).unwrap();
    }
    std::fs::File::create(d("sparse-profile.json")).unwrap().set_len(3 << 30).unwrap();
    let vec48 = vector("typical-48.cetimg");

    let os = |s: &str| std::ffi::OsString::from(s);
    let cases: Vec<(&str, Vec<std::ffi::OsString>, i32, &str)> = vec![
        (
            "quadratic",
            vec![os("check"), d("quadratic.tar.zst").into()],
            1,
            "has a name of 65545 bytes, more than the 4095 (PATH_MAX)",
        ),
        (
            "links-1mb",
            vec![os("show"), d("links-1mb.tar.zst").into()],
            1,
            "bytes, more than the 4095 (PATH_MAX)",
        ),
        ("deep-allowed", vec![os("show"), d("deep-allowed.tar.zst").into()], 0, "200 cet image(s)"),
        ("many-images", vec![os("decode"), d("many-images").into()], 1, "more than 65536 cet images"),
        (
            "sparse-profile",
            vec![os("check"), vec48.clone().into(), os("--target"), d("sparse-profile.json").into()],
            1,
            "is 3221225472 bytes, more than the 65536 bytes a host profile",
        ),
    ];
    let mut worst = 0;
    for (case, args, code, want) in cases {
        let (out, peak) = measured(case, &args);
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "{case}: {}", &all[all.len().saturating_sub(2000)..]);
        assert!(all.contains(want), "{case}: wanted {want:?} in {}", &all[all.len().saturating_sub(2000)..]);
        assert!(peak < CAP_KIB, "{case}: peak RSS {peak} KiB, over {CAP_KIB}");
        worst = worst.max(peak);
    }
    eprintln!("largest peak RSS of the cases: {worst} KiB");
}
