//! Just enough of CRIU's own image files for the tests to destroy CRIU's copy of a bitmap's
//! pages between dump and restore, so that only the plugin can bring them back, and to make
//! pstree.img disagree with a cet image. Messages as CRIU defines them in images/pagemap.proto
//! and images/pstree.proto (4.1 and 4.2), decoded with prost.

use prost::Message;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
const PAGEMAP_MAGIC: u32 = 0x5608_4025;
const PSTREE_MAGIC: u32 = 0x5027_3030;
const PE_PARENT: u32 = 1 << 0;
const PE_PRESENT: u32 = 1 << 2;

#[derive(Clone, PartialEq, Message)]
struct PagemapHead {
    #[prost(uint32, required, tag = "1")]
    pages_id: u32,
}

#[derive(Clone, PartialEq, Message)]
struct PagemapEntry {
    #[prost(uint64, required, tag = "1")]
    vaddr: u64,
    /// CRIU 4.1; 4.2 writes 0 here and the count in `nr_pages_64`.
    #[prost(uint32, required, tag = "2")]
    nr_pages: u32,
    #[prost(bool, optional, tag = "3")]
    in_parent: Option<bool>,
    #[prost(uint32, optional, tag = "4")]
    flags: Option<u32>,
    /// CRIU 4.2 (`nr_pages`, field 5, where 4.1's field 2 is now `compat_nr_pages`).
    #[prost(uint64, optional, tag = "5")]
    nr_pages_64: Option<u64>,
}

#[derive(Clone, PartialEq, Message)]
struct PstreeEntry {
    #[prost(uint32, required, tag = "1")]
    pid: u32,
    #[prost(uint32, required, tag = "2")]
    ppid: u32,
    #[prost(uint32, required, tag = "3")]
    pgid: u32,
    #[prost(uint32, required, tag = "4")]
    sid: u32,
    #[prost(uint32, repeated, packed = "false", tag = "5")]
    threads: Vec<u32>,
}

/// The size-prefixed messages of a CRIU image file, after its two magics (the second `magic`).
fn messages(bytes: &[u8], magic: u32) -> Vec<&[u8]> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((u32_at(0), u32_at(4)), (IMG_COMMON_MAGIC, magic), "not the image expected");
    let (mut out, mut at) = (Vec::new(), 8);
    while at < bytes.len() {
        let len = u32_at(at) as usize;
        out.push(&bytes[at + 4..at + 4 + len]);
        at += 4 + len;
    }
    out
}

/// Zeroes, in CRIU's `pages-*.img`, every page that task `id`'s `pagemap-<id>.img` stores for
/// addresses in `[start, end)`. Returns how many of those pages held anything but zeros.
pub fn zero_pages(imgs: &Path, id: u32, start: u64, end: u64) -> usize {
    let pagemap = std::fs::read(imgs.join(format!("pagemap-{id}.img"))).expect("pagemap image");
    let msgs = messages(&pagemap, PAGEMAP_MAGIC);
    let head = PagemapHead::decode(msgs[0]).expect("pagemap head");
    let pages_path = imgs.join(format!("pages-{}.img", head.pages_id));
    let mut pages =
        std::fs::OpenOptions::new().read(true).write(true).open(&pages_path).expect("pages image");
    let data = std::fs::read(&pages_path).unwrap();
    let (mut offset, mut nonzero) = (0u64, 0);
    for m in &msgs[1..] {
        let e = PagemapEntry::decode(*m).expect("pagemap entry");
        let flags = e.flags.unwrap_or(if e.in_parent == Some(true) { PE_PARENT } else { PE_PRESENT });
        // Pages in the parent image are not here; PE_LAZY pages are (lazy restore aside).
        if flags & PE_PRESENT == 0 || flags & PE_PARENT != 0 {
            continue;
        }
        let count = e.nr_pages_64.unwrap_or(u64::from(e.nr_pages));
        for i in 0..count {
            let addr = e.vaddr + i * 4096;
            if (start..end).contains(&addr) {
                let at = usize::try_from(offset + i * 4096).unwrap();
                if data[at..at + 4096].iter().any(|&b| b != 0) {
                    nonzero += 1;
                }
                pages.seek(SeekFrom::Start(at as u64)).unwrap();
                pages.write_all(&[0u8; 4096]).unwrap();
            }
        }
        offset += count * 4096;
    }
    assert_eq!(
        usize::try_from(offset).unwrap(),
        data.len(),
        "{}: the pagemap does not account for every page",
        pages_path.display()
    );
    nonzero
}

/// Rewrites pstree.img so that task `pid` lists `extra` more threads (ids from 100000 on), as a
/// checkpoint whose image came from another dump would. Returns the task's thread count now.
pub fn add_threads(imgs: &Path, pid: u32, extra: u32) -> usize {
    let path = imgs.join("pstree.img");
    let bytes = std::fs::read(&path).expect("pstree image");
    let mut out = bytes[..8].to_vec();
    let mut count = 0;
    for m in messages(&bytes, PSTREE_MAGIC) {
        let mut e = PstreeEntry::decode(m).expect("pstree entry");
        if e.pid == pid {
            e.threads.extend(100_000..100_000 + extra);
            count = e.threads.len();
        }
        let m = e.encode_to_vec();
        out.extend_from_slice(&u32::try_from(m.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&m);
    }
    assert!(count > 0, "pstree.img has no task {pid}");
    std::fs::write(&path, out).unwrap();
    count
}
