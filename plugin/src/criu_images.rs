//! The CRIU images of a checkpoint that the plugin and `criu-cet check` read: `pstree.img` (the
//! tasks a restore creates, by their ids in the dumped tree's pid namespace), `inventory.img`
//! (the plugins the dump registered, and the id of the CRIU run that dumped) and `mm-<id>.img`
//! (every mapping a task had, its bitmap's included).
//!
//! CRIU's image framing: a u32 magic (IMG_COMMON_MAGIC, then the image's own; inventory.img has
//! its own alone), then entries, each a u32 little-endian length and a protobuf message, decoded
//! with prost from `proto/*.proto`. Each file is opened once without following a link, checked
//! on the opened descriptor (a regular file, at most [`MAX_FILE`] bytes) and read with that cap
//! (`input::read_capped`), so a name that leads to a device or a FIFO is refused rather than read
//! without end.

use crate::input::Links;
use crate::proc::{Backing, Vma};
use prost::Message;
use std::collections::BTreeMap;
use std::path::Path;

mod proto {
    include!(concat!(env!("OUT_DIR"), "/criu.rs"));
}

const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
const PSTREE_MAGIC: u32 = 0x5027_3030;
const INVENTORY_MAGIC: u32 = 0x5831_3116;
const MM_MAGIC: u32 = 0x5749_2820;
/// vma_entry.status: an anonymous private mapping (criu/include/image.h VMA_ANON_PRIVATE).
const VMA_ANON_PRIVATE: u32 = 1 << 9;
/// vma_entry.madv bit of MADV_DONTDUMP.
const MADV_DONTDUMP_BIT: u64 = 1 << libc::MADV_DONTDUMP;
/// Larger than any real tree's pstree.img (about 20 bytes a task, plus 6 a thread: 16 MiB is
/// over half a million tasks or two million threads), inventory.img or mm-<id>.img.
pub const MAX_FILE: u64 = 16 << 20;

/// A task of the tree: its pid and its threads' ids, in the dumped tree's pid namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// The task's pid.
    pub pid: u32,
    /// Its threads' ids, as pstree.img lists them.
    pub threads: Vec<u32>,
}

/// What a checkpoint's inventory.img says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    /// The plugins the dump registered (restore refuses to run without them); `None` when the
    /// inventory has no plugin list (CRIU before 3.18).
    pub plugins: Option<Vec<String>>,
    /// The id of the CRIU run that dumped (`dump_criu_run_id`); `None` when not recorded.
    pub dump_criu_run_id: Option<String>,
}

impl Inventory {
    /// Whether the dump registered the cet plugin, which it does when it wrote a cet image.
    pub fn names_cet(&self) -> bool {
        self.plugins.as_ref().is_some_and(|p| p.iter().any(|n| n == "cet"))
    }
}

/// Reads `dir/pstree.img`: every task, by pid.
pub fn read_pstree(dir: &Path) -> Result<BTreeMap<u32, Task>, String> {
    let name = "pstree.img";
    let bytes = read_capped(dir, name)?;
    parse_pstree(&bytes).map_err(|e| format!("{name}: {e}"))
}

/// Reads `dir/inventory.img`.
pub fn read_inventory(dir: &Path) -> Result<Inventory, String> {
    let name = "inventory.img";
    let bytes = read_capped(dir, name)?;
    parse_inventory(&bytes).map_err(|e| format!("{name}: {e}"))
}

/// Reads `dir/mm-<id>.img`: task `id`'s mappings, as the engine describes a process's (CRIU
/// records no name, so a mapping is anonymous or file-backed by its status).
pub fn read_mappings(dir: &Path, id: u32) -> Result<Vec<Vma>, String> {
    let name = format!("mm-{id}.img");
    let bytes = read_capped(dir, &name)?;
    parse_mappings(&bytes).map_err(|e| format!("{name}: {e}"))
}

/// Decodes mm-<id>.img bytes: exactly one entry.
pub fn parse_mappings(bytes: &[u8]) -> Result<Vec<Vma>, String> {
    let e = match entries(bytes, &[IMG_COMMON_MAGIC, MM_MAGIC], "mm")?.as_slice() {
        [(at, body)] => proto::MmEntry::decode(*body).map_err(|e| format!("entry at offset {at}: {e}"))?,
        many => return Err(format!("{} entries, expected one", many.len())),
    };
    Ok(e.vmas
        .iter()
        .map(|v| Vma {
            start: v.start,
            end: v.end.max(v.start),
            read: v.prot & libc::PROT_READ as u32 != 0,
            write: v.prot & libc::PROT_WRITE as u32 != 0,
            exec: v.prot & libc::PROT_EXEC as u32 != 0,
            private: v.flags & libc::MAP_PRIVATE as u32 != 0,
            backing: if v.status & VMA_ANON_PRIVATE != 0 {
                Backing::Anonymous
            } else {
                Backing::Named("(not anonymous private in CRIU's image)".into())
            },
            noreserve: v.flags & libc::MAP_NORESERVE as u32 != 0,
            dontdump: v.madv.unwrap_or(0) & MADV_DONTDUMP_BIT != 0,
            shares_pages: false,
        })
        .collect())
}

/// The bytes of `dir/name`, opened once and checked on the opened file.
fn read_capped(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    crate::input::read_capped(&dir.join(name), Links::Refuse, MAX_FILE, "CRIU image")
        .map_err(|e| e.to_string())
}

/// The entries of an image whose magic words are `magics`.
fn entries<'a>(bytes: &'a [u8], magics: &[u32], what: &str) -> Result<Vec<(usize, &'a [u8])>, String> {
    let u32_at = |at: usize| -> Option<u32> {
        bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let found: Vec<u32> = (0..magics.len()).map(|i| u32_at(4 * i).unwrap_or(0)).collect();
    if found != magics {
        return Err(format!("not a CRIU {what} image (magic {found:#x?}, expected {magics:#x?})"));
    }
    let mut out = Vec::new();
    let mut at = 4 * magics.len();
    while at < bytes.len() {
        let len = u32_at(at).ok_or_else(|| format!("truncated entry length at offset {at}"))? as usize;
        let body = bytes
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| format!("entry at offset {at} claims {len} bytes, past the end of the file"))?;
        out.push((at, body));
        at += 4 + len;
    }
    Ok(out)
}

/// Decodes pstree.img bytes.
pub fn parse_pstree(bytes: &[u8]) -> Result<BTreeMap<u32, Task>, String> {
    let mut tasks = BTreeMap::new();
    for (at, body) in entries(bytes, &[IMG_COMMON_MAGIC, PSTREE_MAGIC], "pstree")? {
        let e = proto::PstreeEntry::decode(body).map_err(|e| format!("entry at offset {at}: {e}"))?;
        if tasks.insert(e.pid, Task { pid: e.pid, threads: e.threads }).is_some() {
            return Err(format!("task {} is listed twice", e.pid));
        }
    }
    if tasks.is_empty() {
        return Err("lists no task".into());
    }
    Ok(tasks)
}

/// Decodes inventory.img bytes: exactly one entry.
pub fn parse_inventory(bytes: &[u8]) -> Result<Inventory, String> {
    match entries(bytes, &[INVENTORY_MAGIC], "inventory")?.as_slice() {
        [(at, body)] => {
            let e = proto::InventoryEntry::decode(*body).map_err(|e| format!("entry at offset {at}: {e}"))?;
            Ok(Inventory {
                plugins: e.plugins_entry.map(|p| p.plugins),
                dump_criu_run_id: e.dump_criu_run_id.filter(|id| !id.is_empty()),
            })
        }
        many => Err(format!("{} entries, expected one", many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(magics: &[u32], bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = magics.iter().flat_map(|m| m.to_le_bytes()).collect();
        for body in bodies {
            out.extend(u32::try_from(body.len()).unwrap().to_le_bytes());
            out.extend(body);
        }
        out
    }

    fn pstree(entries: &[(u32, Vec<u32>)]) -> Vec<u8> {
        let bodies: Vec<Vec<u8>> = entries
            .iter()
            .map(|(pid, threads)| {
                proto::PstreeEntry { pid: *pid, ppid: 0, pgid: *pid, sid: *pid, threads: threads.clone() }
                    .encode_to_vec()
            })
            .collect();
        image(&[IMG_COMMON_MAGIC, PSTREE_MAGIC], &bodies)
    }

    #[test]
    fn reads_every_task_and_its_threads() {
        let t = parse_pstree(&pstree(&[(1, vec![1, 4]), (2, vec![2])])).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[&1].threads, vec![1, 4]);
    }

    #[test]
    fn refuses_what_is_not_a_whole_pstree_image() {
        let good = pstree(&[(1, vec![1])]);
        assert!(parse_pstree(&good[..good.len() - 1]).unwrap_err().contains("past the end"));
        assert!(parse_pstree(&good[4..]).unwrap_err().contains("not a CRIU pstree image"));
        assert!(parse_pstree(&pstree(&[])).unwrap_err().contains("no task"));
        assert!(parse_pstree(&pstree(&[(1, vec![1]), (1, vec![1])])).unwrap_err().contains("twice"));
        let mut bad = good.clone();
        bad[8] = 3; // the entry now claims 3 bytes: a truncated message
        assert!(parse_pstree(&bad).is_err());
    }

    fn inventory(plugins: Option<Vec<&str>>, run_id: Option<&str>) -> Vec<u8> {
        let e = proto::InventoryEntry {
            img_version: 2,
            plugins_entry: plugins
                .map(|p| proto::PluginsEntry { plugins: p.into_iter().map(String::from).collect() }),
            dump_criu_run_id: run_id.map(String::from),
        };
        image(&[INVENTORY_MAGIC], &[e.encode_to_vec()])
    }

    #[test]
    fn reads_the_plugins_and_the_run_id_of_the_dump() {
        let i = parse_inventory(&inventory(Some(vec!["cet"]), Some("d3b0-1"))).unwrap();
        assert!(i.names_cet());
        assert_eq!(i.dump_criu_run_id.as_deref(), Some("d3b0-1"));
        let i = parse_inventory(&inventory(Some(vec!["amdgpu"]), None)).unwrap();
        assert!(!i.names_cet() && i.dump_criu_run_id.is_none());
        assert!(!parse_inventory(&inventory(None, Some(""))).unwrap().names_cet());
        let two = image(&[INVENTORY_MAGIC], &[vec![8, 2], vec![8, 2]]);
        assert!(parse_inventory(&two).unwrap_err().contains("2 entries"));
        assert!(parse_inventory(&pstree(&[(1, vec![1])])).unwrap_err().contains("not a CRIU inventory"));
    }

    #[test]
    fn a_bitmap_in_crius_mm_image_has_the_fingerprint() {
        let vma = |start: u64, len: u64, flags: u32, madv: Option<u64>| proto::VmaEntry {
            start,
            end: start + len,
            prot: 3,
            flags,
            status: VMA_AREA_REGULAR | VMA_ANON_PRIVATE,
            madv,
        };
        const VMA_AREA_REGULAR: u32 = 1;
        let (private, nr) =
            (libc::MAP_PRIVATE as u32 | libc::MAP_ANONYMOUS as u32, libc::MAP_NORESERVE as u32);
        let mm = proto::MmEntry {
            vmas: vec![
                vma(0x7f00_0000_0000, 8 << 30, private | nr, Some(MADV_DONTDUMP_BIT)),
                vma(0x1000, 8 << 30, private | nr, None),
                vma(0x2000_0000, 4096, private, Some(MADV_DONTDUMP_BIT)),
            ],
        };
        let v = parse_mappings(&image(&[IMG_COMMON_MAGIC, MM_MAGIC], &[mm.encode_to_vec()])).unwrap();
        let found: Vec<bool> = v.iter().map(crate::find::is_fingerprint).collect();
        assert_eq!(found, vec![true, false, false]);
        assert!(parse_mappings(&image(&[IMG_COMMON_MAGIC, PSTREE_MAGIC], &[])).is_err());
    }

    /// pstree.img is opened once, never through a link, and read with a cap: a link to a
    /// large file was size-checked on the link (a few bytes) and read whole through it.
    #[test]
    fn pstree_img_is_never_read_through_a_link_nor_past_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::File::create(&big).unwrap().set_len(MAX_FILE + 1).unwrap();
        std::os::unix::fs::symlink(&big, dir.path().join("pstree.img")).unwrap();
        let e = read_pstree(dir.path()).unwrap_err();
        assert!(e.contains("pstree.img: is a symbolic link; images are never read through links"), "{e}");
        std::fs::remove_file(dir.path().join("pstree.img")).unwrap();
        std::fs::rename(&big, dir.path().join("pstree.img")).unwrap();
        let e = read_pstree(dir.path()).unwrap_err();
        assert!(e.contains(&format!("is {} bytes, more than the {MAX_FILE} bytes", MAX_FILE + 1)), "{e}");
        std::fs::write(dir.path().join("pstree.img"), pstree(&[(1, vec![1])])).unwrap();
        assert_eq!(read_pstree(dir.path()).unwrap().len(), 1);
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("inventory.img")).unwrap();
        assert!(read_inventory(dir.path()).is_err());
    }

    /// The pstree fuzz corpus (fuzz/corpus/pstree) replays without a panic; its seeds of
    /// whole trees still parse.
    #[test]
    fn the_pstree_fuzz_corpus_replays_without_a_panic() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/pstree");
        let (mut n, mut parsed) = (0, 0);
        for e in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            n += 1;
            if let Ok(tasks) = parse_pstree(&data) {
                parsed += 1;
                assert!(tasks.iter().all(|(pid, t)| *pid == t.pid));
            }
        }
        assert!(n >= 8 && parsed >= 3, "the pstree corpus lost its seeds ({n} inputs, {parsed} parse)");
    }
}
