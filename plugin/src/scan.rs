//! Which pages of a mapping are populated. PAGEMAP_SCAN (Linux 6.7+) answers in one call per
//! batch of regions, so the cost follows populated pages, not the mapping's size; kernels
//! without it fall back to reading /proc/PID/pagemap, 8 bytes per page of the range.

use crate::error::EngineError;
use crate::proc::{self, ProcFile};
use crate::sys::{self, PageRegion};
use criu_cet_format::addr::usize_from;
use nix::errno::Errno;
use std::ops::Range;
use std::os::fd::AsFd;

/// How to find populated pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScanMethod {
    /// PAGEMAP_SCAN, falling back to the pagemap read where the kernel lacks it.
    #[default]
    Auto,
    /// Always read /proc/PID/pagemap (the fallback, and the baseline the benchmark measures).
    PagemapRead,
}

const REGIONS_PER_CALL: usize = 4096;
const FIRST_CALL_REGIONS: usize = 256;

/// Populated (present or swapped) address ranges of `[start, end)` in process `pid`, page
/// aligned, ascending and merged where adjacent.
pub fn populated(pid: u32, start: u64, end: u64, method: ScanMethod) -> Result<Vec<Range<u64>>, EngineError> {
    populated_in(&proc::open_pagemap(pid)?, start, end, method)
}

/// [`populated`], through the process's pagemap already open.
pub fn populated_in(
    pagemap: &ProcFile,
    start: u64,
    end: u64,
    method: ScanMethod,
) -> Result<Vec<Range<u64>>, EngineError> {
    if method == ScanMethod::Auto {
        match scan(pagemap, start, end) {
            Ok(r) => return Ok(r),
            Err(Errno::ENOTTY | Errno::EINVAL | Errno::EOPNOTSUPP) => {}
            Err(e) => return Err(EngineError::sys(pagemap.pid(), "PAGEMAP_SCAN", e)),
        }
    }
    read_pagemap(pagemap, start, end)
}

fn scan(file: &ProcFile, start: u64, end: u64) -> Result<Vec<Range<u64>>, Errno> {
    let mut regions: Vec<PageRegion> = Vec::new();
    let mut at = start;
    // A first call with room for a typical bitmap's regions: the buffer of a full one (96 KiB)
    // cost more to clear than the walk of a small bitmap.
    let mut per_call = FIRST_CALL_REGIONS;
    while at < end {
        let before = regions.len();
        let walk_end = sys::pagemap_scan(file.as_fd(), at, end, &mut regions, per_call)?;
        if walk_end <= at && regions.len() == before {
            break;
        }
        at = walk_end;
        if regions.len() - before < per_call {
            break;
        }
        per_call = REGIONS_PER_CALL;
    }
    Ok(merge(regions.into_iter().map(|r| r.start..r.end)))
}

/// /proc/PID/pagemap entry bits: the page is present in memory.
pub const PAGEMAP_PRESENT: u64 = 1 << 63;
/// The page is swapped out.
pub const PAGEMAP_SWAPPED: u64 = 1 << 62;
/// The page is mapped by this process alone.
pub const PAGEMAP_EXCLUSIVE: u64 = 1 << 56;

/// Hands each pagemap entry of the pages of `[start, end)` to `f` with the page's address, read
/// in 1 MiB batches, until `f` says to stop (returns false). Returns whether it went to the end.
pub fn each_entry(
    file: &ProcFile,
    start: u64,
    end: u64,
    mut f: impl FnMut(u64, u64) -> bool,
) -> Result<bool, EngineError> {
    const BATCH: u64 = 128 * 1024;
    let mut buf = vec![0u8; usize_from(BATCH.min((end - start) / 4096) * 8)];
    let mut page = start / 4096;
    let last = end / 4096;
    while page < last {
        let n = BATCH.min(last - page);
        let bytes = &mut buf[..usize_from(n * 8)];
        file.read_exact_at(bytes, page * 8)?;
        for (i, e) in (0u64..).zip(bytes.chunks_exact(8)) {
            if !f((page + i) * 4096, u64::from_le_bytes(e.try_into().expect("8 bytes"))) {
                return Ok(false);
            }
        }
        page += n;
    }
    Ok(true)
}

/// The present or swapped pages of `[start, end)`, from their pagemap entries.
fn read_pagemap(file: &ProcFile, start: u64, end: u64) -> Result<Vec<Range<u64>>, EngineError> {
    let mut out = Vec::new();
    each_entry(file, start, end, |a, entry| {
        if entry & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) != 0 {
            out.push(a..a + 4096);
        }
        true
    })?;
    Ok(merge(out.into_iter()))
}

fn merge(ranges: impl Iterator<Item = Range<u64>>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn merge_joins_adjacent_ranges_only() {
        let v = super::merge([0..4096, 4096..8192, 12288..16384].into_iter());
        assert_eq!(v, vec![0..8192, 12288..16384]);
    }
}
