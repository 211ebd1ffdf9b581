//! Capture: the bitmap's populated pages and every thread's CET state, streamed into an image.
//! The process must be held still (see `trace::Stopped`) for the whole capture.

use crate::cet;
use crate::error::EngineError;
use crate::find::find_bitmap;
use crate::host::HostProfile;
use crate::proc::{self, Vma};
use crate::scan::{self, ScanMethod};
use crate::trace::Stopped;
use criu_cet_format::addr::{self, usize_from, PAGE_BYTES, PAGE_SIZE};
use criu_cet_format::{
    Addr, BitmapMapping, FoundBy, Ibt, ImageWriter, Metadata, NamespaceIds, ProcessInfo, WriteSummary,
    WriterOptions,
};
use std::io::Write;
use std::ops::Range;

/// What a capture looks for and how it writes the image.
#[derive(Clone, Debug, Default)]
pub struct CaptureOptions {
    /// An explicit bitmap address and where it came from (`--bitmap`, `CRIU_CET_BITMAP_ADDR`).
    pub bitmap_addr: Option<(u64, &'static str)>,
    /// Leave out legacy bits of code pages that no executable mapping covers.
    pub prune_stale: bool,
    /// How the populated pages of the bitmap are found.
    pub scan: ScanMethod,
    /// Layout choices for the image written.
    pub writer: WriterOptions,
}

/// What a capture found before writing anything.
pub struct Capture {
    /// The process captured.
    pub pid: u32,
    /// The image's metadata: host, threads' CET state and the bitmap mapping.
    pub meta: Metadata,
    bitmap: Option<Vma>,
    /// Executable mappings' ranges, ascending: code whose legacy bits are live.
    exec: Vec<Range<u64>>,
}

/// What a capture wrote and what it saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureReport {
    /// The image writer's totals.
    pub written: WriteSummary,
    /// Pages the scan reported populated (present or swapped).
    pub populated_pages: u64,
    /// Legacy bits set for code pages that no executable mapping covers.
    pub stale_bits: u64,
    /// Whether those bits were left out of the image.
    pub pruned: bool,
}

/// Reads mappings, thread CET state and finds the bitmap of a stopped process. `maps` are its
/// mappings if they were read while it was held already (from maps: smaps' flags are read here,
/// for the mappings that may be the bitmap).
pub fn prepare(
    stopped: &Stopped,
    maps: Option<Vec<Vma>>,
    host: &HostProfile,
    opts: &CaptureOptions,
) -> Result<Capture, EngineError> {
    let pid = stopped.pid;
    let mut vmas = match maps {
        Some(maps) => maps,
        None => proc::read_maps(pid)?,
    };
    // Each thread's status is read once: its shadow-stack features and its ids in each pid
    // namespace come from it.
    let statuses =
        stopped.tids.iter().map(|&tid| proc::thread_status(pid, tid)).collect::<Result<Vec<_>, _>>()?;
    let threads = stopped
        .tids
        .iter()
        .zip(&statuses)
        .map(|(&tid, status)| cet::read_thread(pid, tid, status))
        .collect::<Result<Vec<_>, _>>()?;
    // The flags of every mapping find_bitmap may take: named by a thread's register or the
    // caller, or named for a bitmap or shaped like one.
    let named: Vec<u64> = threads
        .iter()
        .filter_map(|t| match t.ibt {
            Ibt::Available { user_cet } => Some(user_cet.legacy_bitmap_base()),
            Ibt::NotAvailable => None,
        })
        .chain(opts.bitmap_addr.map(|(a, _)| a))
        .collect();
    proc::read_flags(pid, &mut vmas, |v| named.contains(&v.start) || crate::find::might_be_bitmap(v))?;
    let found = find_bitmap(pid, &vmas, &threads, opts.bitmap_addr)?;
    let comm = proc::comm(pid)?;
    let bitmap = found.as_ref().map(|(v, how): &(Vma, FoundBy)| BitmapMapping {
        base: Addr(v.start),
        length: v.len(),
        prot: v.prot(),
        noreserve: v.noreserve,
        dontdump: v.dontdump,
        found_by: *how,
    });
    let namespace = namespace_ids(pid, &stopped.tids, &statuses)?;
    Ok(Capture {
        pid,
        meta: Metadata {
            host: host.clone(),
            process: ProcessInfo { pid, comm, threads },
            bitmap,
            namespace,
            criu_run_id: None,
        },
        bitmap: found.map(|(v, _)| v),
        exec: vmas.iter().filter(|v| v.exec).map(|v| v.start..v.end).collect(),
    })
}

/// The ids of the process and its threads in their own (innermost) pid namespace: the ids CRIU
/// names its images by and restores the tasks under. `statuses` are the threads' status texts.
fn namespace_ids(pid: u32, tids: &[u32], statuses: &[String]) -> Result<Option<NamespaceIds>, EngineError> {
    let own = match tids.iter().position(|&t| t == pid) {
        Some(i) => proc::nspid_in(&statuses[i], pid),
        None => proc::nspid(pid, pid)?,
    };
    // More levels than a u32 counts cannot be; the image's validation refuses a depth over 32.
    let depth = u32::try_from(own.len().saturating_sub(1)).unwrap_or(u32::MAX);
    let ns_tids = tids
        .iter()
        .zip(statuses)
        .map(|(&tid, s)| proc::nspid_in(s, tid).last().copied().unwrap_or(tid))
        .collect();
    Ok(Some(NamespaceIds { pid: own.last().copied().unwrap_or(pid), tids: ns_tids, depth }))
}

/// Most bytes read from the target in one system call.
const READ_CHUNK: u64 = 1 << 20;
/// Most regions in one process_vm_readv (the kernel's IOV_MAX).
const MAX_IOVECS: usize = 1024;

/// A piece of the target's memory that one read takes: `len` bytes from `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    addr: u64,
    len: u64,
}

/// Cuts populated regions into batches of at most `max_bytes` and `max_pieces` pieces, each in
/// ascending order: one system call reads a batch.
fn batches(regions: &[Range<u64>], max_bytes: u64, max_pieces: usize) -> Vec<Vec<Piece>> {
    let mut out = vec![Vec::new()];
    let mut size = 0;
    for &Range { start, end } in regions {
        let mut at = start;
        while at < end {
            let cur = out.last_mut().expect("never empty");
            if size == max_bytes || cur.len() == max_pieces {
                out.push(Vec::new());
                size = 0;
                continue;
            }
            let n = (end - at).min(max_bytes - size);
            cur.push(Piece { addr: at, len: n });
            size += n;
            at += n;
        }
    }
    out.retain(|b| !b.is_empty());
    out
}

/// Why a batch of bitmap pages could not be read.
enum ReadFailure {
    /// The kernel reached fewer bytes than the scan reported populated (an error at the first
    /// page, or a short read): the mapping changed under the capture.
    Changed(String),
    /// Anything else (the process went away, no permission).
    Engine(EngineError),
}

/// Reads the pieces of `batch` from process `pid` into `buf`, back to back: with
/// process_vm_readv, every piece in one call; through /proc/PID/mem, a read a piece.
fn read_remote(pid: u32, mem: &proc::Memory, batch: &[Piece], buf: &mut [u8]) -> Result<(), ReadFailure> {
    use nix::sys::uio::{process_vm_readv, RemoteIoVec};
    let tid = match mem {
        proc::Memory::Vm { tid, .. } => *tid,
        proc::Memory::File(mem) => {
            let mut at = 0;
            for p in batch {
                let len = usize_from(p.len);
                mem.read_exact_at(&mut buf[at..at + len], p.addr).map_err(ReadFailure::Engine)?;
                at += len;
            }
            return Ok(());
        }
    };
    let remote: Vec<RemoteIoVec> =
        batch.iter().map(|p| RemoteIoVec { base: usize_from(p.addr), len: usize_from(p.len) }).collect();
    let want = buf.len();
    let mut local = [std::io::IoSliceMut::new(buf)];
    let tid = proc::kernel_pid(tid)
        .map_err(|e| ReadFailure::Engine(EngineError::sys(pid, "process_vm_readv", e)))?;
    match process_vm_readv(tid, &mut local, &remote) {
        Ok(got) if got == want => Ok(()),
        Ok(got) => Err(ReadFailure::Changed(format!("process_vm_readv read {got} of {want} bytes"))),
        Err(e @ nix::errno::Errno::EFAULT) => Err(ReadFailure::Changed(format!("process_vm_readv: {e}"))),
        Err(e) => Err(ReadFailure::Engine(EngineError::sys(pid, "process_vm_readv", e))),
    }
}

impl Capture {
    /// The bitmap mapping found, if the process has one.
    pub fn bitmap(&self) -> Option<&Vma> {
        self.bitmap.as_ref()
    }

    /// Streams the image into `out`. Reads only pages the scan reported populated, so no page
    /// of the target is faulted in.
    pub fn write<W: Write>(&self, out: W, opts: &CaptureOptions) -> Result<(W, CaptureReport), EngineError> {
        let pid = self.pid;
        let mut w = ImageWriter::new(out, &self.meta, opts.writer)?;
        let mut report = CaptureReport { pruned: opts.prune_stale, ..Default::default() };
        if let Some(v) = &self.bitmap {
            let regions = scan::populated(pid, v.start, v.end, opts.scan)?;
            let total: u64 = regions.iter().map(|r| r.end - r.start).sum();
            let mut buf = vec![0u8; usize_from(READ_CHUNK.min(total))];
            let mut mask = vec![0u8; PAGE_BYTES];
            // Where smaps shows the mapping sharing pages, /proc/PID/mem: process_vm_readv pins
            // what it reads, and the kernel gives the target its own copy of each shared
            // copy-on-write page pinned (measured), which a dumped process that keeps running
            // would keep; it reads 1.4-1.7x slower. The thread the reads name is chosen once:
            // the process is held.
            let mem = if v.shares_pages {
                proc::Memory::File(proc::open_mem(pid, false)?)
            } else {
                proc::Memory::Vm { pid, tid: proc::mm_tid(pid) }
            };
            for batch in batches(&regions, READ_CHUNK, MAX_IOVECS) {
                crate::error::check_interrupt(pid, "while reading the bitmap; no image was written")?;
                let len = usize_from(batch.iter().map(|p| p.len).sum::<u64>());
                read_remote(pid, &mem, &batch, &mut buf[..len]).map_err(|e| match e {
                    ReadFailure::Changed(why) => {
                        self.changed(v, format!("reading {:#x}+{len:#x} failed: {why}", batch[0].addr))
                    }
                    ReadFailure::Engine(e) => e,
                })?;
                let mut pages = buf[..len].chunks_exact_mut(PAGE_BYTES);
                for piece in &batch {
                    for (i, page) in pages.by_ref().take(usize_from(piece.len / PAGE_SIZE)).enumerate() {
                        let index = (piece.addr - v.start) / PAGE_SIZE + i as u64;
                        report.populated_pages += 1;
                        match live_mask(&self.exec, index, &mut mask) {
                            LiveCode::Full => {}
                            LiveCode::None => {
                                report.stale_bits += popcount(page);
                                if opts.prune_stale {
                                    page.fill(0);
                                }
                            }
                            LiveCode::Partial => {
                                report.stale_bits += page
                                    .iter()
                                    .zip(&mask)
                                    .map(|(b, m)| (b & !m).count_ones() as u64)
                                    .sum::<u64>();
                                if opts.prune_stale {
                                    page.iter_mut().zip(&mask).for_each(|(b, m)| *b &= m);
                                }
                            }
                        }
                        w.push_page(index, page)?;
                    }
                }
            }
            // The process was held still; if the mapping moved anyway, say so and write nothing.
            let still = proc::mapping_at(pid, v.start)?.is_some_and(|m| m.start == v.start && m.end == v.end);
            if !still {
                return Err(self.changed(v, "the mapping is no longer there with the same range".into()));
            }
        }
        let (out, written) = w.finish()?;
        report.written = written;
        Ok((out, report))
    }

    fn changed(&self, v: &Vma, what: String) -> EngineError {
        EngineError::BitmapChanged { pid: self.pid, start: v.start, end: v.end, what }
    }
}

/// How much of the code whose legacy bits one bitmap page holds (128 MiB of addresses) lies in
/// executable mappings, i.e. is live.
enum LiveCode {
    Full,
    None,
    Partial,
}

fn popcount(bytes: &[u8]) -> u64 {
    bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8")).count_ones() as u64).sum()
}

/// Which legacy bits of bitmap page `index` belong to code an executable mapping covers; fills
/// `mask` (bit set = live) when coverage is partial.
fn live_mask(exec: &[Range<u64>], index: u64, mask: &mut [u8]) -> LiveCode {
    let (lo, hi) = addr::code_range_of_bitmap_page(index);
    let first = exec.partition_point(|r| r.end <= lo);
    let overlapping = exec[first..].iter().take_while(|r| r.start < hi);
    if exec.get(first).is_none_or(|r| r.start >= hi) {
        // Most pages of a large bitmap: the mask is not needed, nor cleared (a 4 KiB memset a
        // page was 4% of a dense capture's CPU time).
        return LiveCode::None;
    }
    let mut any = false;
    mask.fill(0);
    let mut covered = 0u64;
    for &Range { start: s, end: e } in overlapping {
        any = true;
        let (from, to) = ((s.max(lo) - lo) >> 12, (e.min(hi) - lo) >> 12);
        covered += to - from;
        for bit in from..to {
            mask[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    if !any {
        LiveCode::None
    } else if covered == PAGE_SIZE * 8 {
        LiveCode::Full
    } else {
        LiveCode::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_both_limits_and_keep_order() {
        let regions = [0x1000..0x3000, 0x10000..0x11000, 0x20000..0x25000];
        let b = batches(&regions, 0x4000, 2);
        let p = |addr, len| Piece { addr, len };
        assert_eq!(
            b,
            vec![
                vec![p(0x1000, 0x2000), p(0x10000, 0x1000)],
                vec![p(0x20000, 0x4000)],
                vec![p(0x24000, 0x1000)]
            ]
        );
        assert!(batches(&[], 0x4000, 2).is_empty());
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // a list of one executable range, meant as such
    fn live_mask_marks_exactly_the_executable_code_pages() {
        let mut mask = vec![0u8; 4096];
        assert!(matches!(live_mask(&[], 0, &mut mask), LiveCode::None));
        // Code 0x400000-0x402000 (two pages: bits 0x400 and 0x401) in bitmap page 0.
        assert!(matches!(live_mask(&[0x40_0000..0x40_2000], 0, &mut mask), LiveCode::Partial));
        assert_eq!(popcount(&mask), 2);
        assert_eq!(mask[0x400 / 8], 0b11);
        // Bitmap page 1 covers 128 MiB..256 MiB: untouched by that mapping.
        assert!(matches!(live_mask(&[0x40_0000..0x40_2000], 1, &mut mask), LiveCode::None));
        assert!(matches!(live_mask(&[0..1 << 28], 1, &mut mask), LiveCode::Full));
    }
}
