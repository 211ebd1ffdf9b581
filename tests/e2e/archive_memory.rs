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
