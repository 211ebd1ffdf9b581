//! Capture: the bitmap's populated pages and every thread's CET state, streamed into an image.
//! The process must be held still (see `trace::Stopped`) for the whole capture.

use crate::cet;
use crate::error::EngineError;
use crate::find::find_bitmap;
use crate::host::HostProfile;
use crate::proc::{self, Vma};
use crate::scan::{self, ScanMethod};
use crate::trace::Stopped;
use criu_cet_format::addr::{self, PAGE_SIZE};
use criu_cet_format::{
    Addr, BitmapMapping, FoundBy, ImageWriter, Metadata, ProcessInfo, WriteSummary, WriterOptions,
};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

#[derive(Clone, Debug, Default)]
pub struct CaptureOptions {
    /// An explicit bitmap address and where it came from (`--bitmap`, `CRIU_CET_BITMAP_ADDR`).
    pub bitmap_addr: Option<(u64, &'static str)>,
    /// Leave out legacy bits of code pages that no executable mapping covers.
    pub prune_stale: bool,
    pub scan: ScanMethod,
    pub writer: WriterOptions,
}

/// What a capture found before writing anything.
pub struct Capture {
    pub pid: u32,
    pub meta: Metadata,
    bitmap: Option<Vma>,
    /// Executable mappings' ranges, ascending: code whose legacy bits are live.
    exec: Vec<(u64, u64)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureReport {
    pub written: WriteSummary,
    /// Pages the scan reported populated (present or swapped).
    pub populated_pages: u64,
    /// Legacy bits set for code pages that no executable mapping covers.
    pub stale_bits: u64,
    /// Whether those bits were left out of the image.
    pub pruned: bool,
}

/// Reads mappings, thread CET state and finds the bitmap of a stopped process.
pub fn prepare(stopped: &Stopped, host: &HostProfile, opts: &CaptureOptions) -> Result<Capture, EngineError> {
    let pid = stopped.pid;
    let vmas =
        proc::read_smaps(pid).map_err(|e| EngineError::proc_io(pid, format!("/proc/{pid}/smaps"), e))?;
    let threads =
        stopped.tids.iter().map(|&tid| cet::read_thread(pid, tid)).collect::<Result<Vec<_>, _>>()?;
    let found = find_bitmap(pid, &vmas, &threads, opts.bitmap_addr)?;
    let comm = proc::comm(pid).map_err(|e| EngineError::proc_io(pid, format!("/proc/{pid}/comm"), e))?;
    let bitmap = found.as_ref().map(|(v, how): &(Vma, FoundBy)| BitmapMapping {
        base: Addr(v.start),
        length: v.len(),
        prot: v.prot(),
        noreserve: v.noreserve,
        dontdump: v.dontdump,
        found_by: *how,
    });
    Ok(Capture {
        pid,
        meta: Metadata { host: host.clone(), process: ProcessInfo { pid, comm, threads }, bitmap },
        bitmap: found.map(|(v, _)| v),
        exec: vmas.iter().filter(|v| v.exec).map(|v| (v.start, v.end)).collect(),
    })
}

/// Largest read from /proc/PID/mem at once.
const READ_CHUNK: u64 = 1 << 20;

impl Capture {
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
            let path = format!("/proc/{pid}/mem");
            let mem = File::open(&path).map_err(|e| EngineError::proc_io(pid, &path, e))?;
            let mut buf = vec![0u8; READ_CHUNK as usize];
            let mut mask = vec![0u8; PAGE_SIZE as usize];
            for (start, end) in regions {
                let mut at = start;
                while at < end {
                    let n = READ_CHUNK.min(end - at);
                    let chunk = &mut buf[..n as usize];
                    mem.read_exact_at(chunk, at).map_err(|e| {
                        if e.kind() == std::io::ErrorKind::UnexpectedEof
                            || e.raw_os_error() == Some(libc::EIO)
                        {
                            self.changed(v, format!("reading {at:#x}+{n:#x} failed: {e}"))
                        } else {
                            EngineError::proc_io(pid, &path, e)
                        }
                    })?;
                    for (i, page) in chunk.chunks_exact_mut(PAGE_SIZE as usize).enumerate() {
                        let index = (at - v.start) / PAGE_SIZE + i as u64;
                        report.populated_pages += 1;
                        match live_mask(&self.exec, index, &mut mask) {
                            Coverage::Full => {}
                            Coverage::None => {
                                report.stale_bits += popcount(page);
                                if opts.prune_stale {
                                    page.fill(0);
                                }
                            }
                            Coverage::Partial => {
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
                    at += n;
                }
            }
            // The process was held still; if the mapping moved anyway, say so and write nothing.
            let now = proc::read_smaps(pid)
                .map_err(|e| EngineError::proc_io(pid, format!("/proc/{pid}/smaps"), e))?;
            if !now.iter().any(|x| x.start == v.start && x.end == v.end) {
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

enum Coverage {
    Full,
    None,
    Partial,
}

fn popcount(bytes: &[u8]) -> u64 {
    bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8")).count_ones() as u64).sum()
}

/// Which legacy bits of bitmap page `index` belong to code an executable mapping covers; fills
/// `mask` (bit set = live) when coverage is partial.
fn live_mask(exec: &[(u64, u64)], index: u64, mask: &mut [u8]) -> Coverage {
    let (lo, hi) = addr::code_range_of_bitmap_page(index);
    let first = exec.partition_point(|&(_, e)| e <= lo);
    let overlapping = exec[first..].iter().take_while(|&&(s, _)| s < hi);
    let mut any = false;
    mask.fill(0);
    let mut covered = 0u64;
    for &(s, e) in overlapping {
        any = true;
        let (from, to) = ((s.max(lo) - lo) >> 12, (e.min(hi) - lo) >> 12);
        covered += to - from;
        for bit in from..to {
            mask[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    if !any {
        Coverage::None
    } else if covered == PAGE_SIZE * 8 {
        Coverage::Full
    } else {
        Coverage::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_mask_marks_exactly_the_executable_code_pages() {
        let mut mask = vec![0u8; 4096];
        assert!(matches!(live_mask(&[], 0, &mut mask), Coverage::None));
        // Code 0x400000-0x402000 (two pages: bits 0x400 and 0x401) in bitmap page 0.
        assert!(matches!(live_mask(&[(0x40_0000, 0x40_2000)], 0, &mut mask), Coverage::Partial));
        assert_eq!(popcount(&mask), 2);
        assert_eq!(mask[0x400 / 8], 0b11);
        // Bitmap page 1 covers 128 MiB..256 MiB: untouched by that mapping.
        assert!(matches!(live_mask(&[(0x40_0000, 0x40_2000)], 1, &mut mask), Coverage::None));
        assert!(matches!(live_mask(&[(0, 1 << 28)], 1, &mut mask), Coverage::Full));
    }
}
