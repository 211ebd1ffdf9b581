//! Restore: put the image's bitmap into a stopped process. Creates the mapping if it is absent
//! (by system calls run inside the target), writes ones and data pages, clears any other
//! non-zero page of the mapping, verifies by reading back, and writes IBT state where the kernel
//! allows. Nothing outside the image's bitmap range is ever written.

use crate::cet;
use crate::check;
use crate::error::{check_interrupt, EngineError};
use crate::proc::{self, Backing, Memory, Vma};
use crate::scan::{self, ScanMethod};
use crate::trace::{self, Stopped};
use criu_cet_format::addr::{usize_from, PAGE_BYTES, PAGE_SIZE};
use criu_cet_format::{BitmapMapping, Chunk, Ibt, ImageReader, Metadata, PageKind};
use nix::errno::Errno;
use std::io::{Read, Seek};
use std::ops::Range;

/// What a restore did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreReport {
    /// The mapping was absent and was created.
    pub created_mapping: bool,
    /// All-ones pages restored (written, or found in place).
    pub ones_pages: u64,
    /// Data pages restored (written, or found in place).
    pub data_pages: u64,
    /// Of those, pages the target held already with the image's content, shared copy-on-write,
    /// and which were therefore compared and left as they were instead of written.
    pub unchanged_pages: u64,
    /// Pages of the mapping that held non-zero data the image does not have, now zero.
    pub cleared_pages: u64,
    /// Threads whose IA32_U_CET was written back.
    pub ibt_restored: u64,
    /// Threads with IBT state in the image that this kernel (or target) cannot take.
    pub ibt_not_restored: u64,
}

/// Where an interrupted restore leaves the target's bitmap.
const PARTIAL: &str = "with the bitmap mapping in place but its content only partly restored: run the \
                       restore again";

static ONES: [u8; 1 << 16] = [0xff; 1 << 16];
const ZERO: [u8; PAGE_BYTES] = [0; PAGE_BYTES];

/// Writes into the target's memory, refusing anything outside `[start, end)`.
struct BitmapWindow {
    pid: u32,
    mem: Memory,
    /// /proc/PID/mem for [`BitmapWindow::peek`], opened at the first peek.
    peek_mem: std::cell::OnceCell<proc::ProcFile>,
    start: u64,
    end: u64,
}

impl BitmapWindow {
    fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), EngineError> {
        let end = addr.checked_add(bytes.len() as u64);
        if addr < self.start || end.is_none_or(|e| e > self.end) {
            // Unreachable with a validated image; kept as the last line of defence.
            return Err(EngineError::Refused {
                findings: vec![format!(
                    "refusing to write {:#x}+{:#x}: outside the bitmap {:#x}-{:#x}",
                    addr,
                    bytes.len(),
                    self.start,
                    self.end
                )],
            });
        }
        self.mem.write_all_at(bytes, addr)
    }

    /// Writes `bytes` and reads them back: the restore verifies each piece as it goes.
    fn write_verified(&self, addr: u64, bytes: &[u8], back: &mut Vec<u8>) -> Result<(), EngineError> {
        self.write(addr, bytes)?;
        back.resize(bytes.len(), 0);
        self.read(addr, back)?;
        if back[..] != bytes[..] {
            let i = back.iter().zip(bytes).position(|(a, b)| a != b).unwrap_or(0) as u64;
            let page = i / PAGE_SIZE * PAGE_SIZE;
            let got = &back[usize_from(page)..usize_from(page + PAGE_SIZE)];
            return Err(EngineError::Verify {
                pid: self.pid,
                addr: addr + page,
                expected: "what the image holds".into(),
                actual: format!("{:?} content", PageKind::of(got)).to_lowercase(),
            });
        }
        Ok(())
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), EngineError> {
        self.mem.read_exact_at(buf, addr)
    }

    /// Reads pages that may be shared copy-on-write, leaving them shared: through /proc/PID/mem,
    /// as process_vm_readv pins the pages it reads and the kernel gives the target its own copy
    /// of each shared page pinned (measured here).
    fn peek(&self, addr: u64, buf: &mut [u8]) -> Result<(), EngineError> {
        if self.peek_mem.get().is_none() {
            let _ = self.peek_mem.set(proc::open_mem(self.pid, false)?);
        }
        self.peek_mem.get().expect("opened above").read_exact_at(buf, addr)
    }
}

/// What the caller knows of how the target's bitmap mapping was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recreated {
    /// Nothing: the mappings in the range are read from maps, their flags from smaps.
    Unknown,
    /// CRIU recreates a mapping of exactly the bitmap's range, private anonymous, with the
    /// NORESERVE and DONTDUMP the image recorded (its mm-<id>.img says so; CRIU passes
    /// MAP_NORESERVE to mmap and applies MADV_DONTDUMP): one PROCMAP_QUERY (or the maps text on
    /// older kernels) tells whether it is there, and the flags are taken as recorded. (Under
    /// vm.overcommit_memory=2 the kernel drops NORESERVE, which smaps would show; the mapping is
    /// still CRIU's, of the bitmap's exact range.) Anything else found there is looked at through
    /// maps and smaps' flags as with `Unknown`.
    ByCriu,
}

/// Restores the image read by `reader` into the stopped process.
pub fn restore<R: Read + Seek>(
    stopped: &Stopped,
    reader: &mut ImageReader<R>,
    recreated: Recreated,
) -> Result<RestoreReport, EngineError> {
    let pid = stopped.pid;
    let meta = reader.metadata().clone();
    let mut report = RestoreReport::default();
    if let Some(b) = &meta.bitmap {
        let place = place(pid, b, recreated)?;
        // The pages populated before the restore (one scan, whatever the mapping's size): those
        // the image does not have are cleared after its pages are written. (Under post-copy,
        // pages CRIU's lazy-pages daemon brings in during the writes hold the same dump's
        // content as the image, so none of them can be a stray.)
        let pagemap = match place {
            Place::Present => Some(proc::open_pagemap(pid)?),
            Place::Free(_) => None,
        };
        let populated = match &pagemap {
            Some(pm) => scan::populated_in(pm, b.base.0, b.end(), ScanMethod::Auto)?,
            None => Vec::new(),
        };
        let win = BitmapWindow {
            pid,
            mem: Memory::for_mapping(pid, b.prot)?,
            peek_mem: Default::default(),
            start: b.base.0,
            end: b.end(),
        };
        // What the mapping in place holds of the image already: CRIU restores its own copy of a
        // bitmap below 2^47, so in a CRIU restore its pages are there, often shared copy-on-write
        // between a parent and its children, and are not written again.
        let held = match &pagemap {
            Some(pm) => held_already(pm, &win, reader)?,
            None => Held::default(),
        };
        // Memory is asked for only when the writes may need more.
        if !held.commits_nothing {
            check_memory(pid, reader.summary())?;
        }
        check_interrupt(pid, "before anything was changed")?;
        report.created_mapping = match place {
            Place::Present => false,
            Place::Free(vmas) => {
                create_mapping(stopped, b, &vmas)?;
                true
            }
        };
        crate::hooks::pause("restore-mapped");
        check_interrupt(pid, PARTIAL)?;
        let base = b.base.0;
        let (mut back, mut next_same) = (Vec::new(), 0);
        reader.for_each_chunk(|c| -> Result<(), EngineError> {
            check_interrupt(pid, PARTIAL)?;
            let (page, count) = match c {
                Chunk::Ones { page, count } => (page, count),
                Chunk::Data { page, bytes } => (page, bytes.len() as u64 / PAGE_SIZE),
            };
            let chunk = base + page * PAGE_SIZE..base + (page + count) * PAGE_SIZE;
            for Range { start, end } in not_held(chunk.clone(), &held.same, &mut next_same) {
                match c {
                    Chunk::Ones { .. } => {
                        let mut at = start;
                        while at < end {
                            let n = usize_from((ONES.len() as u64).min(end - at));
                            win.write_verified(at, &ONES[..n], &mut back)?;
                            at += n as u64;
                        }
                    }
                    Chunk::Data { bytes, .. } => {
                        let at = usize_from(start - chunk.start);
                        win.write_verified(start, &bytes[at..at + usize_from(end - start)], &mut back)?;
                    }
                }
            }
            match c {
                Chunk::Ones { .. } => report.ones_pages += count,
                Chunk::Data { .. } => report.data_pages += count,
            }
            Ok(())
        })?;
        report.unchanged_pages = held.same.iter().map(|r| (r.end - r.start) / PAGE_SIZE).sum();
        report.cleared_pages = clear_strays(&win, reader, &populated)?;
    }
    // Threads are matched (which reads /proc for each) only when some thread has IBT state to put back.
    if meta
        .process
        .threads
        .iter()
        .any(|t| matches!(t.ibt, Ibt::Available { user_cet } if user_cet.uses_ibt()))
    {
        for (t, tid) in meta.process.threads.iter().zip(restored_tids(pid, &stopped.tids, &meta)?) {
            let Ibt::Available { user_cet } = t.ibt else { continue };
            if !user_cet.uses_ibt() {
                continue; // IBT was off: a restored thread starts so
            }
            let written = match tid {
                Some(tid) => cet::write_user_cet(pid, tid, user_cet)?,
                None => false,
            };
            if written {
                report.ibt_restored += 1;
            } else {
                report.ibt_not_restored += 1;
            }
        }
    }
    Ok(report)
}

/// For each thread of the image, the held thread of restored process `pid` that it became: in
/// images that record the tree's pid namespace, the thread whose innermost NSpid is the id recorded
/// there (CRIU gives restored threads their ids in the namespace back, not their host tids); in
/// older images, the same tid. `None` where no held thread matches.
fn restored_tids(pid: u32, held: &[u32], meta: &Metadata) -> Result<Vec<Option<u32>>, EngineError> {
    let (held_ids, image_ids): (Vec<u32>, Vec<Option<u32>>) = match &meta.namespace {
        Some(ns) => (
            held.iter().map(|&tid| proc::namespace_id(pid, tid)).collect::<Result<_, _>>()?,
            (0..meta.process.threads.len()).map(|i| ns.tids.get(i).copied()).collect(),
        ),
        None => (held.to_vec(), meta.process.threads.iter().map(|t| Some(t.tid)).collect()),
    };
    Ok(image_ids
        .into_iter()
        .map(|id| id.and_then(|id| held_ids.iter().position(|&h| h == id).map(|k| held[k])))
        .collect())
}

/// Zeroes every page of `populated` (the mapping's populated regions before the restore,
/// ascending) that the image does not have and that is not zero already: the run table is merged
/// with the regions. Returns how many pages were cleared.
fn clear_strays<R: Read + Seek>(
    win: &BitmapWindow,
    reader: &mut ImageReader<R>,
    populated: &[Range<u64>],
) -> Result<u64, EngineError> {
    let mut cleared = 0u64;
    let mut buf = vec![0u8; PAGE_BYTES];
    let runs = reader.summary().runs;
    let mut i = 0;
    let mut run = if runs > 0 { Some(reader.run_at(0)?) } else { None };
    for &Range { start, end } in populated {
        check_interrupt(win.pid, PARTIAL)?;
        let (mut p, last) = ((start - win.start) / PAGE_SIZE, (end - win.start) / PAGE_SIZE);
        while p < last {
            while run.is_some_and(|r| r.end() <= p) {
                i += 1;
                run = if i < runs { Some(reader.run_at(i)?) } else { None };
            }
            match run {
                Some(r) if r.page <= p => p = r.end().min(last),
                _ => {
                    let upto = run.map_or(last, |r| r.page.min(last));
                    for q in p..upto {
                        let addr = win.start + q * PAGE_SIZE;
                        win.peek(addr, &mut buf)?;
                        if PageKind::of(&buf) != PageKind::Zero {
                            win.write(addr, &ZERO)?;
                            cleared += 1;
                        }
                    }
                    p = upto;
                }
            }
        }
    }
    Ok(cleared)
}

/// What the bitmap's range holds in the target.
enum Place {
    /// The bitmap mapping, as the image recorded it.
    Present,
    /// Nothing: the mapping must be created. The target's mappings, to find a `syscall` in.
    Free(Vec<Vma>),
}

/// Whether the bitmap mapping is in place or its range is free. Refuses, changing nothing, when
/// anything else occupies the range.
fn place(pid: u32, b: &BitmapMapping, recreated: Recreated) -> Result<Place, EngineError> {
    let (start, end) = (b.base.0, b.end());
    if recreated == Recreated::ByCriu {
        // A mapping of exactly the range leaves room for no other.
        if let Some(v) = proc::mapping_at(pid, start)? {
            let with_flags = Vma { noreserve: b.noreserve, dontdump: b.dontdump, ..v };
            if with_flags.start == start
                && with_flags.end == end
                && with_flags.backing == Backing::Anonymous
                && is_bitmap(&with_flags, b)
            {
                return Ok(Place::Present);
            }
        }
    }
    let mut vmas = proc::read_maps(pid)?;
    proc::read_flags(pid, &mut vmas, |v| v.overlaps(start, end))?;
    let overlapping: Vec<&Vma> = vmas.iter().filter(|v| v.overlaps(start, end)).collect();
    let occupied = |by: String| EngineError::RangeOccupied { pid, start, end, by };
    if let Some(why) = check::geometry_problem(b) {
        return Err(EngineError::Refused {
            findings: vec![format!("process {pid}: {why}; nothing was changed")],
        });
    }
    match overlapping.as_slice() {
        [] => {}
        [v] if v.start == start && v.end == end && is_bitmap(v, b) => return Ok(Place::Present),
        many => {
            let mut by: Vec<String> = many.iter().take(5).map(|v| describe_for_bitmap(v, b)).collect();
            if many.len() > 5 {
                by.push(format!("and {} more mappings", many.len() - 5));
            }
            return Err(occupied(by.join(", ")));
        }
    }
    Ok(Place::Free(vmas))
}

/// What a mapping in place holds of the image already.
#[derive(Default)]
struct Held {
    /// The image's pages the target holds with the image's content and shares copy-on-write,
    /// ascending address ranges: writing them would give each process its own copy of the same
    /// bytes (CRIU keeps a forked tree's identical pages shared between parent and child).
    same: Vec<Range<u64>>,
    /// Writing the image's other pages takes no new page: each is present, not swapped out, and
    /// mapped by this process alone (pagemap bits 63, 62 and 56). The shared zero page and a
    /// swapped-out page take a new page when written, as does a shared page whose content differs.
    commits_nothing: bool,
}

/// Finds, from the pagemap entries of the image's pages, those shared copy-on-write, and compares
/// them with the image (the image is decoded for it only when there are some).
fn held_already<R: Read + Seek>(
    pagemap: &proc::ProcFile,
    win: &BitmapWindow,
    reader: &mut ImageReader<R>,
) -> Result<Held, EngineError> {
    use scan::{PAGEMAP_EXCLUSIVE, PAGEMAP_PRESENT, PAGEMAP_SWAPPED};
    let (mut shared, mut missing) = (Vec::new(), false);
    for i in 0..reader.summary().runs {
        let run = reader.run_at(i)?;
        let (start, end) = (win.start + run.page * PAGE_SIZE, win.start + run.end() * PAGE_SIZE);
        scan::each_entry(pagemap, start, end, |a, e| {
            if e & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) != PAGEMAP_PRESENT {
                missing = true;
            } else if e & PAGEMAP_EXCLUSIVE == 0 {
                push_page(&mut shared, a);
            }
            true
        })?;
    }
    let (mut same, mut differs) = (Vec::new(), false);
    if !shared.is_empty() {
        let (mut have, mut next) = (Vec::new(), 0);
        reader.for_each_chunk(|c| -> Result<(), EngineError> {
            let (page, image) = match c {
                Chunk::Ones { page, count } => (page, Err(count)),
                Chunk::Data { page, bytes } => (page, Ok(bytes)),
            };
            let count = image.map_or_else(|n| n, |b| b.len() as u64 / PAGE_SIZE);
            let chunk = win.start + page * PAGE_SIZE..win.start + (page + count) * PAGE_SIZE;
            while next < shared.len() && shared[next].end <= chunk.start {
                next += 1;
            }
            for r in shared[next..].iter().take_while(|r| r.start < chunk.end) {
                let (mut start, end) = (r.start.max(chunk.start), r.end.min(chunk.end));
                // In pieces of at most 64 KiB: an all-ones run comes as one chunk, of any size.
                while start < end {
                    let n = (ONES.len() as u64).min(end - start);
                    have.resize(usize_from(n), 0);
                    win.peek(start, &mut have)?;
                    for (i, got) in (0u64..).zip(have.chunks_exact(PAGE_BYTES)) {
                        let at = start + i * PAGE_SIZE;
                        let want = match image {
                            Err(_) => &ONES[..PAGE_BYTES],
                            Ok(bytes) => &bytes[usize_from(at - chunk.start)..][..PAGE_BYTES],
                        };
                        if got == want {
                            push_page(&mut same, at);
                        } else {
                            differs = true;
                        }
                    }
                    start += n;
                }
            }
            Ok(())
        })?;
    }
    Ok(Held { same, commits_nothing: !missing && !differs })
}

/// Adds the page at `addr` to ascending ranges, joining it to the last where adjacent.
fn push_page(ranges: &mut Vec<Range<u64>>, addr: u64) {
    match ranges.last_mut() {
        Some(last) if last.end == addr => last.end += PAGE_SIZE,
        _ => ranges.push(addr..addr + PAGE_SIZE),
    }
}

/// The parts of `chunk` outside `held` (ascending ranges), in order; `next` is where the
/// previous chunk, lower in the mapping, left off in `held`.
fn not_held(chunk: Range<u64>, held: &[Range<u64>], next: &mut usize) -> Vec<Range<u64>> {
    while *next < held.len() && held[*next].end <= chunk.start {
        *next += 1;
    }
    let (mut out, mut at) = (Vec::new(), chunk.start);
    for h in held[*next..].iter().take_while(|h| h.start < chunk.end) {
        if h.start > at {
            out.push(at..h.start);
        }
        at = at.max(h.end);
    }
    if at < chunk.end {
        out.push(at..chunk.end);
    }
    out
}

/// Creates the bitmap mapping in the target (whose range is free) by running mmap, and madvise
/// for DONTDUMP, in one of its stopped threads.
fn create_mapping(stopped: &Stopped, b: &BitmapMapping, vmas: &[Vma]) -> Result<(), EngineError> {
    let pid = stopped.pid;
    let (start, end) = (b.base.0, b.end());
    let insn = find_syscall_insn(pid, vmas)?;
    let t = stopped.any_thread().map_err(|e| EngineError::sys(pid, "choosing a thread to run mmap in", e))?;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED_NOREPLACE;
    let prot = u64::from(b.prot & 3);
    let flags = u64::try_from(flags).expect("mmap flags are positive");
    let r = trace::remote_syscall(t, insn, libc::SYS_mmap, [start, b.length, prot, flags, u64::MAX, 0])
        .map_err(|e| EngineError::sys(pid, "running mmap in the target", e))?;
    if r != Ok(start) {
        let errno = match r {
            Err(errno) => errno,
            Ok(elsewhere) => {
                // The kernel placed it elsewhere (old kernel ignoring MAP_FIXED_NOREPLACE): undo.
                let _ = trace::remote_syscall(t, insn, libc::SYS_munmap, [elsewhere, b.length, 0, 0, 0, 0]);
                Errno::EEXIST
            }
        };
        let hint = if errno == Errno::ENOMEM {
            " (the target's address space does not reach this range: is the host 4-level?)"
        } else {
            ""
        };
        return Err(EngineError::Sys {
            pid,
            action: format!("mapping the bitmap at {start:#x}-{end:#x} in the target"),
            errno,
            hint,
        });
    }
    if b.dontdump {
        let r = trace::remote_syscall(
            t,
            insn,
            libc::SYS_madvise,
            [start, b.length, libc::MADV_DONTDUMP as u64, 0, 0, 0],
        )
        .map_err(|e| EngineError::sys(pid, "running madvise in the target", e))?;
        r.map_err(|e| EngineError::sys(pid, "MADV_DONTDUMP on the new bitmap", e))?;
    }
    Ok(())
}

/// Whether an existing mapping of exactly the bitmap's range is a bitmap we may write into: a
/// kernel `[ibt_bitmap]`, or a private, non-executable anonymous mapping with NORESERVE and
/// DONTDUMP (smaps `nr`, `dd`) as the image recorded them. A stack, a heap, a thread stack, a
/// malloc arena or a guard page is none of these.
fn is_bitmap(v: &Vma, b: &BitmapMapping) -> bool {
    let anonymous = match &v.backing {
        Backing::Anonymous => true,
        Backing::Named(n) if n == "[ibt_bitmap]" => return true,
        Backing::Named(n) => n.starts_with("[anon:"),
        Backing::File(_) => false,
    };
    anonymous
        && v.private
        && !v.exec
        && v.noreserve
        && v.dontdump
        && v.noreserve == b.noreserve
        && v.dontdump == b.dontdump
}

/// A mapping in the way, with what tells it from a bitmap.
fn describe_for_bitmap(v: &Vma, b: &BitmapMapping) -> String {
    let mut why = Vec::new();
    if v.start != b.base.0 || v.end != b.end() {
        why.push(format!("its range is not the bitmap's {:#x}-{:#x}", b.base.0, b.end()));
    }
    match &v.backing {
        Backing::File(_) => why.push("file-backed".into()),
        Backing::Named(n) if !n.starts_with("[anon:") && n != "[ibt_bitmap]" => {
            why.push(format!("it is {n}"))
        }
        _ => {}
    }
    if v.exec {
        why.push("executable".into());
    }
    if !v.private {
        why.push("shared".into());
    }
    if !v.noreserve {
        why.push("no NORESERVE (`nr`)".into());
    }
    if !v.dontdump {
        why.push("no DONTDUMP (`dd`)".into());
    }
    if v.noreserve != b.noreserve || v.dontdump != b.dontdump {
        why.push(format!("the image recorded nr={} dd={}", b.noreserve, b.dontdump));
    }
    format!("{} ({})", v.describe(), why.join(", "))
}

/// What process `pid` has in `[start, end)`, for a refusal: each mapping, and what a bitmap
/// would look like.
pub fn occupants(pid: u32, start: u64, end: u64) -> String {
    let held = match proc::read_maps(pid) {
        Ok(vmas) => {
            let v: Vec<String> =
                vmas.iter().filter(|v| v.overlaps(start, end)).take(5).map(|v| v.describe()).collect();
            if v.is_empty() {
                "nothing".to_string()
            } else {
                v.join(", ")
            }
        }
        Err(e) => format!("(unreadable: {e})"),
    };
    format!("in process {pid}, {start:#x}-{end:#x} holds {held}; a bitmap is {}", check::BITMAP_SHAPE)
}

/// Refuses, before anything is changed, a restore whose pages the target cannot get.
fn check_memory(pid: u32, summary: &criu_cet_format::ImageSummary) -> Result<(), EngineError> {
    let commit = check::Commit::of(summary);
    let room = proc::headroom(pid);
    if commit.bytes() > room.bytes() {
        let cg = match &room.cgroup {
            Some((dir, limit, usage)) => format!(
                "its memory cgroup {} allows {} more bytes (limit {limit}, usage {usage})",
                dir.display(),
                limit.saturating_sub(*usage)
            ),
            None => "it is in no memory cgroup with a limit".into(),
        };
        return Err(EngineError::NoMemory {
            pid,
            need: commit.bytes(),
            have: room.bytes(),
            detail: format!("{commit}; MemAvailable is {} bytes, {cg}", room.mem_available),
        });
    }
    Ok(())
}

/// Address of a `syscall` instruction (0f 05) in the target's vDSO or, failing that, in one of
/// its executable mappings.
pub fn find_syscall_insn(pid: u32, vmas: &[Vma]) -> Result<u64, EngineError> {
    let mem = proc::open_mem(pid, false)?;
    let mut order: Vec<&Vma> = vmas.iter().filter(|v| v.exec).collect();
    order.sort_by_key(|v| v.backing != Backing::Named("[vdso]".into()));
    let mut buf = vec![0u8; 1 << 20];
    for v in order {
        let n = usize_from(v.len()).min(buf.len());
        if mem.read_exact_at(&mut buf[..n], v.start).is_err() {
            continue;
        }
        if let Some(i) = buf[..n].windows(2).position(|w| w == [0x0f, 0x05]) {
            return Ok(v.start + i as u64);
        }
    }
    Err(EngineError::NoSyscallInstruction { pid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one range expected, not a range of elements
    fn chunks_are_written_around_the_pages_held_already() {
        const P: u64 = PAGE_SIZE;
        let held = [2 * P..4 * P, 6 * P..7 * P, 9 * P..12 * P];
        let mut next = 0;
        assert_eq!(not_held(0..P, &held, &mut next), [0..P]);
        assert_eq!(not_held(P..8 * P, &held, &mut next), [P..2 * P, 4 * P..6 * P, 7 * P..8 * P]);
        assert_eq!(not_held(9 * P..11 * P, &held, &mut next), []);
        assert_eq!(not_held(11 * P..13 * P, &held, &mut next), [12 * P..13 * P]);
        assert_eq!(not_held(20 * P..21 * P, &held, &mut next), [20 * P..21 * P]);
        let mut pages = Vec::new();
        for a in [0, P, 2 * P, 5 * P] {
            push_page(&mut pages, a);
        }
        assert_eq!(pages, [0..3 * P, 5 * P..6 * P]);
    }
}
