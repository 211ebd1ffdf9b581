//! CRIU's `pstree.img`: the tasks a restore is about to create, by their ids in the dumped tree's
//! pid namespace. Restore init checks every cet image against it before any task is forked.
//!
//! The file is CRIU's image framing (u32 IMG_COMMON_MAGIC, u32 PSTREE_MAGIC, then entries, each
//! a u32 little-endian length and a `pstree_entry` protobuf message), decoded with prost from
//! `proto/pstree.proto`.

use criu_cet::input::{self, Links};
use prost::Message;
use std::collections::BTreeMap;
use std::path::Path;

mod proto {
    include!(concat!(env!("OUT_DIR"), "/criu.rs"));
}

const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
const PSTREE_MAGIC: u32 = 0x5027_3030;
/// Larger than any real tree's pstree.img (about 20 bytes a task, plus 6 a thread: 16 MiB is
/// over half a million tasks or two million threads).
pub const MAX_FILE: u64 = 16 << 20;

/// A task of the tree: its pid and its threads' ids, in the dumped tree's pid namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// The task's pid.
    pub pid: u32,
    /// Its threads' ids, as pstree.img lists them.
    pub threads: Vec<u32>,
}

/// Reads `dir/pstree.img`: every task, by pid. The file is opened once without following a
/// link, checked to be a regular file of at most [`MAX_FILE`] bytes on the opened descriptor,
/// and read with that cap.
pub fn read(dir: &Path) -> Result<BTreeMap<u32, Task>, String> {
    let path = dir.join("pstree.img");
    let bytes =
        input::read_capped(&path, Links::Refuse, MAX_FILE, "CRIU pstree image").map_err(|e| e.to_string())?;
    parse(&bytes).map_err(|e| format!("{}: {e}", criu_cet::image::display_path(&path).display()))
}

/// Decodes pstree.img bytes.
pub fn parse(bytes: &[u8]) -> Result<BTreeMap<u32, Task>, String> {
    let u32_at = |at: usize| -> Option<u32> {
        bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    match (u32_at(0), u32_at(4)) {
        (Some(IMG_COMMON_MAGIC), Some(PSTREE_MAGIC)) => {}
        (a, b) => {
            return Err(format!(
            "not a CRIU pstree image (magic {:#x} {:#x}, expected {IMG_COMMON_MAGIC:#x} {PSTREE_MAGIC:#x})",
            a.unwrap_or(0),
            b.unwrap_or(0)
        ))
        }
    }
    let mut tasks = BTreeMap::new();
    let mut at = 8;
    while at < bytes.len() {
        let len = u32_at(at).ok_or_else(|| format!("truncated entry length at offset {at}"))? as usize;
        let body = bytes
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| format!("entry at offset {at} claims {len} bytes, past the end of the file"))?;
        let e = proto::PstreeEntry::decode(body).map_err(|e| format!("entry at offset {at}: {e}"))?;
        if tasks.insert(e.pid, Task { pid: e.pid, threads: e.threads }).is_some() {
            return Err(format!("task {} is listed twice", e.pid));
        }
        at += 4 + len;
    }
    if tasks.is_empty() {
        return Err("lists no task".into());
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entries: &[proto::PstreeEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(IMG_COMMON_MAGIC.to_le_bytes());
        out.extend(PSTREE_MAGIC.to_le_bytes());
        for e in entries {
            let body = e.encode_to_vec();
            out.extend((body.len() as u32).to_le_bytes());
            out.extend(body);
        }
        out
    }

    fn entry(pid: u32, threads: Vec<u32>) -> proto::PstreeEntry {
        proto::PstreeEntry { pid, ppid: 0, pgid: pid, sid: pid, threads }
    }

    #[test]
    fn reads_every_task_and_its_threads() {
        let t = parse(&image(&[entry(1, vec![1, 4]), entry(2, vec![2])])).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[&1].threads, vec![1, 4]);
    }

    #[test]
    fn refuses_what_is_not_a_whole_pstree_image() {
        let good = image(&[entry(1, vec![1])]);
        assert!(parse(&good[..good.len() - 1]).unwrap_err().contains("past the end"));
        assert!(parse(&good[4..]).unwrap_err().contains("not a CRIU pstree image"));
        assert!(parse(&image(&[])).unwrap_err().contains("no task"));
        assert!(parse(&image(&[entry(1, vec![1]), entry(1, vec![1])])).unwrap_err().contains("twice"));
        let mut bad = good.clone();
        bad[8] = 3; // the entry now claims 3 bytes: a truncated message
        assert!(parse(&bad).is_err());
    }

    /// The pstree fuzz corpus (fuzz/corpus/pstree) replays without a panic; its seeds of
    /// whole trees still parse.
    #[test]
    fn the_pstree_fuzz_corpus_replays_without_a_panic() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pstree");
        let (mut n, mut parsed) = (0, 0);
        for e in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            n += 1;
            if let Ok(tasks) = parse(&data) {
                parsed += 1;
                assert!(tasks.iter().all(|(pid, t)| *pid == t.pid));
            }
        }
        assert!(n >= 8 && parsed >= 3, "the pstree corpus lost its seeds ({n} inputs, {parsed} parse)");
    }

    /// pstree.img is opened once, never through a link, and read with a cap: a link to a
    /// large file was size-checked on the link (a few bytes) and read whole through it.
    #[test]
    fn pstree_img_is_never_read_through_a_link_nor_past_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::File::create(&big).unwrap().set_len(MAX_FILE + 1).unwrap();
        std::os::unix::fs::symlink(&big, dir.path().join("pstree.img")).unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(e.contains("pstree.img: is a symbolic link; images are never read through links"), "{e}");
        std::fs::remove_file(dir.path().join("pstree.img")).unwrap();
        std::fs::rename(&big, dir.path().join("pstree.img")).unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(e.contains(&format!("is {} bytes, more than the {MAX_FILE} bytes", MAX_FILE + 1)), "{e}");
        std::fs::write(dir.path().join("pstree.img"), image(&[entry(1, vec![1])])).unwrap();
        assert_eq!(read(dir.path()).unwrap().len(), 1);
    }
}
