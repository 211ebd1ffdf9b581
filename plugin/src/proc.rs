//! Reading /proc: mappings (through procfs's maps parser, and smaps' flags), threads and their shadow-stack
//! features, CPU facts. This module owns the /proc paths: what reads or writes a process's files
//! returns the engine's error, already naming the process and the file. Every parser takes text,
//! so tests feed recorded kernel output through the same code that reads the live files.

use crate::error::EngineError;
use criu_cet_format::addr::usize_from;
use nix::errno::Errno;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use procfs::process::{MMPermissions, MMapPath, MemoryMaps};
use procfs::FromRead;
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// The kernel's [`nix::unistd::Pid`] for a process or thread id held as u32 (read from /proc, an
/// image, CRIU or a pid file). 0 and ids past i32::MAX name no task: a cast would turn them into
/// 0 or a negative pid, which kill(2) and waitpid(2) read as a process group or every process,
/// so they are refused as the kernel refuses a task that does not exist, with ESRCH.
pub fn kernel_pid(id: u32) -> Result<nix::unistd::Pid, nix::errno::Errno> {
    i32::try_from(id).ok().filter(|&p| p > 0).map(nix::unistd::Pid::from_raw).ok_or(nix::errno::Errno::ESRCH)
}

/// Reads a /proc file of process `pid`; an error names the process and the file.
fn read(pid: u32, path: &str) -> Result<Vec<u8>, EngineError> {
    std::fs::read(path).map_err(|e| EngineError::proc_io(pid, path, e))
}

/// [`read`] as text.
fn read_text(pid: u32, path: &str) -> Result<String, EngineError> {
    read(pid, path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// What a mapping is backed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// No file and no name.
    Anonymous,
    /// A file, by the path smaps shows.
    File(PathBuf),
    /// A kernel-named or pseudo mapping: `[heap]`, `[vdso]`, `[ibt_bitmap]`, `[anon:NAME]`, ...
    Named(String),
}

/// One line of /proc/PID/smaps with what the engine needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    /// Start address, page aligned.
    pub start: u64,
    /// End address (exclusive), page aligned.
    pub end: u64,
    /// Readable (`r`).
    pub read: bool,
    /// Writable (`w`).
    pub write: bool,
    /// Executable (`x`).
    pub exec: bool,
    /// Private (`p`), not shared (`s`).
    pub private: bool,
    /// What the mapping is backed by.
    pub backing: Backing,
    /// smaps VmFlags `nr`: MAP_NORESERVE.
    pub noreserve: bool,
    /// smaps VmFlags `dd`: excluded from core dumps.
    pub dontdump: bool,
    /// smaps `Shared_Clean` or `Shared_Dirty` above 0: some of its pages are mapped by another
    /// process too (copy-on-write since a fork).
    pub shares_pages: bool,
}

impl Vma {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the mapping spans no byte.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// PROT_* bits: 1 read, 2 write, 4 exec.
    pub fn prot(&self) -> u32 {
        u32::from(self.read) | u32::from(self.write) << 1 | u32::from(self.exec) << 2
    }

    /// The mapping as messages show it: `START-END rwxp BACKING`.
    pub fn describe(&self) -> String {
        let perms = format!(
            "{}{}{}{}",
            if self.read { 'r' } else { '-' },
            if self.write { 'w' } else { '-' },
            if self.exec { 'x' } else { '-' },
            if self.private { 'p' } else { 's' }
        );
        let what = match &self.backing {
            Backing::Anonymous => "anonymous".to_string(),
            Backing::File(p) => p.display().to_string(),
            Backing::Named(n) => n.clone(),
        };
        format!("{:#x}-{:#x} {perms} {what}", self.start, self.end)
    }

    /// Whether the mapping shares a byte with `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

/// Every mapping of process `pid` from its maps, without smaps' flags (`noreserve` and
/// `dontdump` read false): a tenth of smaps' cost, for deciding whether a process can hold a
/// bitmap at all.
pub fn read_maps(pid: u32) -> Result<Vec<Vma>, EngineError> {
    let (path, text) = read_mm(pid, "maps")?;
    parse_maps(&text).map_err(|e| EngineError::Io { path: path.into(), source: std::io::Error::other(e) })
}

/// The mapping of process `pid` that holds `addr`, or `None`: its range and permissions as
/// [`read_maps`] lists them, and whether it is anonymous (flags false; the names of SysV and
/// named shared memory may read otherwise than in maps). One PROCMAP_QUERY where the kernel has it (Linux 6.11+) instead of the whole maps
/// text: the restore's confirmation that CRIU put the bitmap back costs a sixth.
pub fn mapping_at(pid: u32, addr: u64) -> Result<Option<Vma>, EngineError> {
    use crate::sys::{PROCMAP_EXECUTABLE, PROCMAP_READABLE, PROCMAP_SHARED, PROCMAP_WRITABLE};
    let path = format!("/proc/{pid}/maps");
    let maps = File::open(&path).map_err(|e| EngineError::proc_io(pid, &path, e))?;
    // Any failure (no such ioctl, or a main thread that has exited) leaves it to maps.
    if let Ok(found) = crate::sys::procmap_query(maps.as_fd(), addr) {
        return Ok(found.map(|q| {
            let name = String::from_utf8_lossy(&q.name).into_owned();
            let backing = if q.inode != 0 || name.starts_with('/') {
                Backing::File(name.into())
            } else if name.is_empty() {
                Backing::Anonymous
            } else {
                Backing::Named(name)
            };
            Vma {
                start: q.start,
                end: q.end,
                read: q.flags & PROCMAP_READABLE != 0,
                write: q.flags & PROCMAP_WRITABLE != 0,
                exec: q.flags & PROCMAP_EXECUTABLE != 0,
                private: q.flags & PROCMAP_SHARED == 0,
                backing,
                noreserve: false,
                dontdump: false,
                shares_pages: false,
            }
        }));
    }
    Ok(read_maps(pid)?.into_iter().find(|v| v.start <= addr && addr < v.end))
}

/// Parses /proc/PID/maps text. `noreserve` and `dontdump` read false: [`read_flags`] sets them
/// where they matter.
pub fn parse_maps(text: &[u8]) -> Result<Vec<Vma>, String> {
    let maps = MemoryMaps::from_read(text).map_err(|e| format!("unparseable maps: {e}"))?;
    Ok(maps
        .into_iter()
        .map(|m| {
            let backing = match m.pathname {
                MMapPath::Anonymous => Backing::Anonymous,
                MMapPath::Path(p) => Backing::File(p),
                MMapPath::Heap => Backing::Named("[heap]".into()),
                MMapPath::Stack => Backing::Named("[stack]".into()),
                MMapPath::TStack(t) => Backing::Named(format!("[stack:{t}]")),
                MMapPath::Vdso => Backing::Named("[vdso]".into()),
                MMapPath::Vvar => Backing::Named("[vvar]".into()),
                MMapPath::Vsyscall => Backing::Named("[vsyscall]".into()),
                MMapPath::Rollup => Backing::Named("[rollup]".into()),
                MMapPath::Vsys(k) => Backing::Named(format!("/SYSV{k:08x}")),
                // procfs strips the brackets of pseudo names; put them back as the kernel prints them.
                MMapPath::Other(s) => Backing::Named(format!("[{s}]")),
            };
            Vma {
                start: m.address.0,
                end: m.address.1,
                read: m.perms.contains(MMPermissions::READ),
                write: m.perms.contains(MMPermissions::WRITE),
                exec: m.perms.contains(MMPermissions::EXECUTE),
                private: m.perms.contains(MMPermissions::PRIVATE),
                backing,
                noreserve: false,
                dontdump: false,
                shares_pages: false,
            }
        })
        .collect())
}

/// The thread whose /proc files show the process's memory: the main thread, or, when it has
/// exited while other threads run (a zombie leader, whose /proc/PID/maps, mem and pagemap are
/// empty), the first live thread.
pub fn mm_tid(pid: u32) -> u32 {
    if !thread_is_exiting(pid, pid) {
        return pid;
    }
    tasks(pid)
        .unwrap_or_default()
        .into_iter()
        .find(|&t| t != pid && !thread_is_exiting(pid, t))
        .unwrap_or(pid)
}

/// `/proc/PID/FILE` for a memory file (maps, smaps, mem, pagemap), through a live thread when
/// the main thread has exited.
fn mm_path(pid: u32, file: &str) -> String {
    match mm_tid(pid) {
        t if t == pid => format!("/proc/{pid}/{file}"),
        t => format!("/proc/{pid}/task/{t}/{file}"),
    }
}

/// Reads memory file `file` (maps, smaps) of process `pid`: its path and its text. Read through
/// the main thread first, and through a live thread (see `mm_path`) only when that shows no
/// mapping at all, as an exited main thread's does: every process has at least its vDSO. Saves
/// the dump and the restore a read of the main thread's stat for each file.
fn read_mm(pid: u32, file: &str) -> Result<(String, Vec<u8>), EngineError> {
    let path = format!("/proc/{pid}/{file}");
    let text = read(pid, &path)?;
    if !text.is_empty() {
        return Ok((path, text));
    }
    let path = mm_path(pid, file);
    let text = read(pid, &path)?;
    Ok((path, text))
}

/// An open /proc file of a process (its mem or pagemap), read and written at offsets; errors
/// name the process and the file.
#[derive(Debug)]
pub struct ProcFile {
    pid: u32,
    path: String,
    file: File,
}

impl ProcFile {
    /// The process whose file this is.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Opens `FILE` (see [`mm_path`]) of process `pid`, for writing too when `write`.
    fn open_mm(pid: u32, file: &str, write: bool) -> Result<ProcFile, EngineError> {
        let path = mm_path(pid, file);
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(&path)
            .map_err(|e| EngineError::proc_io(pid, &path, e))?;
        Ok(ProcFile { pid, path, file })
    }

    /// Fills `buf` from `offset`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), EngineError> {
        self.file.read_exact_at(buf, offset).map_err(|e| EngineError::proc_io(self.pid, &self.path, e))
    }

    /// Writes all of `bytes` at `offset`.
    pub fn write_all_at(&self, bytes: &[u8], offset: u64) -> Result<(), EngineError> {
        self.file.write_all_at(bytes, offset).map_err(|e| EngineError::proc_io(self.pid, &self.path, e))
    }
}

impl AsFd for ProcFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The memory of process `pid` (/proc/PID/mem, through a live thread when the main thread has
/// exited), addressed by virtual address; writable too when `write`.
pub fn open_mem(pid: u32, write: bool) -> Result<ProcFile, EngineError> {
    ProcFile::open_mm(pid, "mem", write)
}

/// A process's memory as a restore or a capture reaches it: for a restore, chosen by what the
/// target itself may do with the range (`for_mapping`).
pub enum Memory {
    /// `process_vm_readv`/`process_vm_writev`, for a range the target can read and write: where
    /// userfaultfd serves a page that has not arrived yet (CRIU's post-copy restore), the call
    /// waits for the fault handler to fill it, then writes.
    Vm {
        /// The target.
        pid: u32,
        /// The thread whose address space the calls name: a live one when the main thread has
        /// exited (the calls answer ESRCH for a zombie leader).
        tid: u32,
    },
    /// /proc/PID/mem, for a range the target cannot write (a read-only bitmap): it overrides
    /// protections, but answers EIO at once for a page userfaultfd has not filled.
    File(ProcFile),
}

impl Memory {
    /// The way to reach `pid`'s memory in a mapping with protection bits `prot` (PROT_READ 1,
    /// PROT_WRITE 2).
    pub fn for_mapping(pid: u32, prot: u32) -> Result<Memory, EngineError> {
        Ok(if prot & 3 == 3 {
            Memory::Vm { pid, tid: mm_tid(pid) }
        } else {
            Memory::File(open_mem(pid, true)?)
        })
    }

    /// Fills `buf` from address `addr`.
    pub fn read_exact_at(&self, buf: &mut [u8], addr: u64) -> Result<(), EngineError> {
        let (pid, tid) = match self {
            Memory::File(f) => return f.read_exact_at(buf, addr),
            Memory::Vm { pid, tid } => (*pid, *tid),
        };
        vm_all(pid, tid, "process_vm_readv", addr, buf.len(), |t, done, remote| {
            process_vm_readv(t, &mut [IoSliceMut::new(&mut buf[done..])], remote)
        })
    }

    /// Writes all of `bytes` at address `addr`.
    pub fn write_all_at(&self, bytes: &[u8], addr: u64) -> Result<(), EngineError> {
        let (pid, tid) = match self {
            Memory::File(f) => return f.write_all_at(bytes, addr),
            Memory::Vm { pid, tid } => (*pid, *tid),
        };
        vm_all(pid, tid, "process_vm_writev", addr, bytes.len(), |t, done, remote| {
            process_vm_writev(t, &[IoSlice::new(&bytes[done..])], remote)
        })
    }
}

/// Moves all `len` bytes at `addr` of process `pid` (through its thread `tid`) with `call`, given
/// the bytes done so far and the remote range left, until done or a call moves nothing.
fn vm_all(
    pid: u32,
    tid: u32,
    name: &str,
    addr: u64,
    len: usize,
    mut call: impl FnMut(nix::unistd::Pid, usize, &[RemoteIoVec]) -> nix::Result<usize>,
) -> Result<(), EngineError> {
    let mut done = 0;
    while done < len {
        let at = addr + done as u64;
        let remote = [RemoteIoVec { base: usize_from(at), len: len - done }];
        let t = kernel_pid(tid).map_err(|e| vm_error(pid, name, at, remote[0].len, e))?;
        let n = call(t, done, &remote);
        done += vm_moved(pid, name, at, remote[0].len, n)?;
    }
    Ok(())
}

/// What one vector call moved: the kernel stops at the first page it cannot reach and reports
/// what it did, so a call moving nothing is that page's failure.
fn vm_moved(pid: u32, call: &str, at: u64, len: usize, n: nix::Result<usize>) -> Result<usize, EngineError> {
    match n {
        Ok(0) => Err(vm_error(pid, call, at, len, Errno::EFAULT)),
        Ok(n) => Ok(n),
        Err(e) => Err(vm_error(pid, call, at, len, e)),
    }
}

fn vm_error(pid: u32, call: &str, at: u64, len: usize, errno: Errno) -> EngineError {
    EngineError::sys(pid, format!("{call} of {at:#x}-{:#x}", at + len as u64), errno)
}

/// The page table entries of process `pid` (/proc/PID/pagemap, through a live thread when the
/// main thread has exited), 8 bytes per page.
pub fn open_pagemap(pid: u32) -> Result<ProcFile, EngineError> {
    ProcFile::open_mm(pid, "pagemap", false)
}

/// Sets `noreserve`, `dontdump` and `shares_pages` of the mappings of `vmas` (read from maps,
/// ascending) that `wanted` picks, from their smaps entries. smaps is read only as far as the last of them: the
/// kernel walks the page tables of every mapping it lists there, and reading it whole was the
/// largest cost of a dump (docs/PERFORMANCE.md). The other mappings keep the flags they had.
pub fn read_flags(pid: u32, vmas: &mut [Vma], wanted: impl Fn(&Vma) -> bool) -> Result<(), EngineError> {
    let pending: Vec<usize> = (0..vmas.len()).filter(|&i| wanted(&vmas[i])).collect();
    if pending.is_empty() {
        return Ok(());
    }
    // Through the main thread first; an exited one lists no mapping (see `read_mm`).
    let read = |path: &str, vmas: &mut [Vma]| {
        let io = |e| EngineError::proc_io(pid, path, e);
        flags_until(File::open(path).map_err(io)?, vmas, &pending).map_err(io)
    };
    let mut path = format!("/proc/{pid}/smaps");
    let mut found = read(&path, vmas)?;
    if found.is_none() {
        path = mm_path(pid, "smaps");
        found = read(&path, vmas)?;
    }
    match found {
        Some(n) if n == pending.len() => Ok(()),
        n => {
            let v = &vmas[pending[n.unwrap_or(0)]];
            let why =
                format!("mapping {:#x}-{:#x} of maps is not in smaps: the mappings changed", v.start, v.end);
            Err(EngineError::Io { path: path.into(), source: std::io::Error::other(why) })
        }
    }
}

/// Reads smaps text from `src` up to the `VmFlags` line of the last mapping of `pending` (indices
/// into `vmas`, ascending), setting their flags. Returns how many were found, or `None` when the
/// text lists no mapping at all.
fn flags_until(
    mut src: impl std::io::Read,
    vmas: &mut [Vma],
    pending: &[usize],
) -> std::io::Result<Option<usize>> {
    let (mut text, mut chunk) = (Vec::new(), vec![0u8; 1 << 16]);
    let (mut current, mut found, mut any, mut shared) = (None, 0, false, false);
    loop {
        let n = src.read(&mut chunk)?;
        if n == 0 {
            return Ok(any.then_some(found));
        }
        text.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Some(len) = text[used..].iter().position(|&b| b == b'\n') {
            let line = &text[used..used + len];
            used += len + 1;
            // A mapping line starts with its start address in lowercase hex; counters with a
            // capitalised name.
            if line.first().is_some_and(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
                let hex = line.split(|&b| b == b'-').next().unwrap_or_default();
                current = std::str::from_utf8(hex).ok().and_then(|h| u64::from_str_radix(h, 16).ok());
                (any, shared) = (true, false);
            } else if line.starts_with(b"Shared_Clean:") || line.starts_with(b"Shared_Dirty:") {
                // "Shared_Dirty:         12 kB": any count but 0.
                let count = |w: &&[u8]| !w.is_empty() && w.iter().all(u8::is_ascii_digit);
                shared |= line.split(|&b| b == b' ').find(count).is_some_and(|w| w != b"0");
            } else if let Some(flags) = line.strip_prefix(b"VmFlags:") {
                let v = &mut vmas[pending[found]];
                if current == Some(v.start) {
                    let has = |f: &[u8]| flags.split(|&b| b == b' ').any(|w| w == f);
                    (v.noreserve, v.dontdump, v.shares_pages) = (has(b"nr"), has(b"dd"), shared);
                    found += 1;
                    if found == pending.len() {
                        return Ok(Some(found));
                    }
                }
            }
        }
        text.drain(..used);
    }
}

/// Thread ids of a process, ascending.
pub fn tasks(pid: u32) -> Result<Vec<u32>, EngineError> {
    let path = format!("/proc/{pid}/task");
    let mut tids: Vec<u32> = std::fs::read_dir(&path)
        .map_err(|e| EngineError::proc_io(pid, &path, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// The children of process `pid` (of its main thread) by host pid, as the kernel lists them; none
/// when they cannot be read.
pub fn children(pid: u32) -> Vec<u32> {
    read_text(pid, &format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// The state letter of a `/proc/PID/task/TID/stat` line (the field after the parenthesised comm,
/// which may itself hold spaces and parentheses).
pub fn parse_stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether thread `tid` of `pid` has exited or is exiting (zombie or dead, or already gone). The
/// kernel refuses PTRACE_SEIZE of such a thread with EPERM, not ESRCH.
pub fn thread_is_exiting(pid: u32, tid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) {
        Ok(stat) => matches!(parse_stat_state(&stat), Some('Z' | 'X' | 'x') | None),
        Err(_) => true,
    }
}

/// How much more memory a process can commit: the machine's MemAvailable and, when the process
/// is in a memory cgroup with a limit, that cgroup's (or an ancestor's) limit minus its usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headroom {
    /// /proc/meminfo MemAvailable, in bytes.
    pub mem_available: u64,
    /// The tightest limit on the way to the root: (cgroup directory, limit, usage).
    pub cgroup: Option<(PathBuf, u64, u64)>,
}

impl Headroom {
    /// The smaller of the two, in bytes.
    pub fn bytes(&self) -> u64 {
        let cg = self.cgroup.as_ref().map_or(u64::MAX, |(_, limit, usage)| limit.saturating_sub(*usage));
        self.mem_available.min(cg)
    }
}

/// MemAvailable from /proc/meminfo text, in bytes.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok()?.checked_mul(1024)
}

/// The memory cgroup path of a process from /proc/PID/cgroup text: the v1 `memory` controller's
/// line, else the v2 (`0::`) line; `(v2, path)`.
pub fn parse_memory_cgroup(text: &str) -> Option<(bool, String)> {
    let mut v2 = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        if ctrl.split(',').any(|c| c == "memory") {
            return Some((false, path.to_string()));
        }
        if ctrl.is_empty() {
            v2 = Some((true, path.to_string()));
        }
    }
    v2
}

fn read_u64(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// This machine's /proc/cpuinfo and this process's /proc/self/status, as text (empty when
/// unreadable: the host probe then records the facts as absent).
pub fn cpuinfo_and_self_status() -> (String, String) {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    (read("/proc/cpuinfo"), read("/proc/self/status"))
}

/// The headroom of process `pid` (see [`Headroom`]). Limits that cannot be read are not counted.
pub fn headroom(pid: u32) -> Headroom {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_available = parse_mem_available(&meminfo).unwrap_or(u64::MAX);
    let mut best: Option<(PathBuf, u64, u64)> = None;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    if let Some((v2, path)) = parse_memory_cgroup(&text) {
        let roots: &[&str] =
            if v2 { &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] } else { &["/sys/fs/cgroup/memory"] };
        let (limit_file, usage_file) = if v2 {
            ("memory.max", "memory.current")
        } else {
            ("memory.limit_in_bytes", "memory.usage_in_bytes")
        };
        for root in roots {
            let mut dir = PathBuf::from(root).join(path.trim_start_matches('/'));
            loop {
                // v1's "no limit" is a huge number, v2's is "max" (which does not parse).
                let limit = cgroup_limit(&dir.join(limit_file)).filter(|&l| l < 1 << 60);
                if let Some((limit, usage)) = limit.and_then(|l| Some((l, read_u64(&dir.join(usage_file))?)))
                {
                    if best
                        .as_ref()
                        .is_none_or(|(_, l, u)| limit.saturating_sub(usage) < l.saturating_sub(*u))
                    {
                        best = Some((dir.clone(), limit, usage));
                    }
                }
                if dir.as_os_str().len() <= root.len() || !dir.pop() {
                    break;
                }
            }
        }
    }
    Headroom { mem_available, cgroup: best }
}

/// A memory cgroup's limit file, read once per command (`None`: no limit, or unreadable). The
/// plugin asks for every process of a tree it restores, each time walking the cgroup's ancestors;
/// a limit does not move under a restore as the usage does, which is read each time.
fn cgroup_limit(file: &std::path::Path) -> Option<u64> {
    static LIMITS: std::sync::Mutex<std::collections::BTreeMap<PathBuf, Option<u64>>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let mut limits = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
    *limits.entry(file.to_path_buf()).or_insert_with(|| read_u64(file))
}

/// TracerPid of thread `tid` of `pid` (0: not traced); `None` when it cannot be read.
pub fn tracer_of(pid: u32, tid: u32) -> Option<u32> {
    let status = thread_status(pid, tid).ok()?;
    status.lines().find_map(|l| l.strip_prefix("TracerPid:"))?.trim().parse().ok()
}

/// The process (thread group) of thread `tid`.
pub fn tgid_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:"))?.trim().parse().ok()
}

/// Whether `pid` is a kernel thread (PF_KTHREAD in the flags field of /proc/PID/stat).
pub fn is_kernel_thread(pid: u32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
        let flags =
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(6)?.parse::<u64>().ok());
        flags.is_some_and(|f| f & PF_KTHREAD != 0)
    })
}

/// Shadow-stack feature words of a `x86_Thread_features:` line: bit 0 `shstk`, bit 1 `wrss`.
fn feature_bits(words: &str) -> u64 {
    words.split_whitespace().fold(0, |acc, w| match w {
        "shstk" => acc | 1,
        "wrss" => acc | 2,
        _ => acc,
    })
}

/// `(enabled, locked)` shadow-stack features from /proc/PID/task/TID/status text; `None` when
/// the kernel prints no `x86_Thread_features` line (built without user shadow stack).
pub fn parse_thread_features(status: &str) -> Option<(u64, u64)> {
    let mut enabled = None;
    let mut locked = 0;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("x86_Thread_features:") {
            enabled = Some(feature_bits(rest));
        } else if let Some(rest) = line.strip_prefix("x86_Thread_features_locked:") {
            locked = feature_bits(rest);
        }
    }
    enabled.map(|e| (e, locked))
}

/// The ids of a task in each pid namespace it belongs to, the dumper's first and the task's own
/// (innermost) last: the `NSpid:` line of its status. `None` when the line is missing (kernels
/// before 4.1) or malformed.
pub fn parse_nspid(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let ids: Option<Vec<u32>> = line.split_whitespace().map(|w| w.parse().ok()).collect();
    ids.filter(|v| !v.is_empty())
}

/// `NSpid` of thread `tid` of `pid` (see [`parse_nspid`]); a kernel without the line gives the
/// plain id, as if there were one pid namespace.
pub fn nspid(pid: u32, tid: u32) -> Result<Vec<u32>, EngineError> {
    Ok(nspid_in(&thread_status(pid, tid)?, tid))
}

/// `NSpid` of thread `tid` from its status text (see [`nspid`]).
pub fn nspid_in(status: &str, tid: u32) -> Vec<u32> {
    parse_nspid(status).unwrap_or_else(|| vec![tid])
}

/// The text of /proc/PID/task/TID/status of thread `tid` of `pid`.
pub fn thread_status(pid: u32, tid: u32) -> Result<String, EngineError> {
    read_text(pid, &format!("/proc/{pid}/task/{tid}/status"))
}

/// The id of thread `tid` of `pid` in its own (innermost) pid namespace: what CRIU calls it.
pub fn namespace_id(pid: u32, tid: u32) -> Result<u32, EngineError> {
    Ok(nspid(pid, tid)?.last().copied().unwrap_or(tid))
}

/// `comm` of a process.
pub fn comm(pid: u32) -> Result<String, EngineError> {
    Ok(read_text(pid, &format!("/proc/{pid}/comm"))?.trim_end().to_string())
}

/// CPU facts from /proc/cpuinfo text: virtual address bits and the flags that matter here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuFacts {
    /// Virtual address bits ("address sizes: ... bits virtual").
    pub virtual_bits: u8,
    /// CPU flag `la57`: 5-level paging supported.
    pub la57: bool,
    /// CPU flag `user_shstk`.
    pub user_shstk: bool,
    /// CPU flag `ibt`.
    pub ibt: bool,
}

/// Reads `CpuFacts` from the first processor's block of /proc/cpuinfo text; missing facts stay
/// 0 or false.
pub fn parse_cpuinfo(text: &str) -> CpuFacts {
    let mut facts = CpuFacts::default();
    // The first processor's block describes them all on the machines this targets.
    for line in text.lines().take_while(|l| !l.trim().is_empty()) {
        let Some((key, value)) = line.split_once(':') else { continue };
        match key.trim() {
            "flags" => {
                let flags: Vec<&str> = value.split_whitespace().collect();
                facts.la57 = flags.contains(&"la57");
                facts.user_shstk = flags.contains(&"user_shstk");
                facts.ibt = flags.contains(&"ibt");
            }
            "address sizes" => {
                // "46 bits physical, 48 bits virtual"
                facts.virtual_bits = value
                    .split(',')
                    .find(|p| p.contains("virtual"))
                    .and_then(|p| p.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
            }
            _ => {}
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_name_no_task_are_no_pid() {
        assert_eq!(kernel_pid(7).unwrap().as_raw(), 7);
        for id in [0, 1 << 31, u32::MAX] {
            assert_eq!(kernel_pid(id), Err(nix::errno::Errno::ESRCH), "{id}");
        }
    }

    #[test]
    fn nspid_lists_every_namespace_innermost_last() {
        let status = "Name:\tcat\nTgid:\t4321\nNSpid:\t4321\t57\t1\nNSpgid:\t4321\n";
        assert_eq!(parse_nspid(status), Some(vec![4321, 57, 1]));
        assert_eq!(parse_nspid("NSpid:\t812\n"), Some(vec![812]));
        assert_eq!(parse_nspid("Name:\tx\n"), None);
        assert_eq!(parse_nspid("NSpid:\t12 x\n"), None);
        assert_eq!(parse_nspid("NSpid:\n"), None);
    }

    #[test]
    fn thread_features_lines_from_a_shadow_stack_kernel() {
        let status = "Name:\tcet\nx86_Thread_features:\tshstk wrss\nx86_Thread_features_locked:\tshstk\n";
        assert_eq!(parse_thread_features(status), Some((3, 1)));
        assert_eq!(
            parse_thread_features("x86_Thread_features:\t\nx86_Thread_features_locked:\t\n"),
            Some((0, 0))
        );
        assert_eq!(parse_thread_features("Name:\tcat\nState:\tR\n"), None);
    }

    #[test]
    fn thread_features_as_linux_6_12_prints_them() {
        // Recorded in the emulated CET guest (Bochs 3.0, tigerlake; Debian 6.12.117): each
        // feature word is followed by a space, and an empty locked set is an empty line.
        let status = "Name:\tshstk\nx86_Thread_features:\tshstk \nx86_Thread_features_locked:\t\n";
        assert_eq!(parse_thread_features(status), Some((1, 0)));
    }

    #[test]
    fn stat_state_after_a_comm_with_parentheses_and_spaces() {
        assert_eq!(parse_stat_state("4242 (a) b) ) Z 1 4242 4242 0 -1"), Some('Z'));
        assert_eq!(parse_stat_state("7 (cet-fixture) S 1 7"), Some('S'));
        assert_eq!(parse_stat_state("7 (truncated"), None);
        assert!(!thread_is_exiting(std::process::id(), std::process::id()));
        assert!(thread_is_exiting(std::process::id(), u32::MAX));
    }

    #[test]
    fn cpuinfo_of_a_cet_machine_and_of_this_one() {
        let cet = "processor\t: 0\nflags\t\t: fpu la57 user_shstk ibt\naddress sizes\t: 52 bits physical, 57 bits virtual\n\nprocessor\t: 1\n";
        assert_eq!(
            parse_cpuinfo(cet),
            CpuFacts { virtual_bits: 57, la57: true, user_shstk: true, ibt: true }
        );
        let plain = "flags\t\t: fpu sse2\naddress sizes\t: 46 bits physical, 48 bits virtual\n";
        assert_eq!(parse_cpuinfo(plain), CpuFacts { virtual_bits: 48, ..Default::default() });
    }

    #[test]
    fn meminfo_and_cgroup_lines() {
        assert_eq!(parse_mem_available("MemTotal: 10 kB\nMemAvailable:   2048 kB\n"), Some(2 << 20));
        let v1 = "9:name=systemd:/\n4:memory:/a/b\n0::/\n";
        assert_eq!(parse_memory_cgroup(v1), Some((false, "/a/b".into())));
        assert_eq!(parse_memory_cgroup("0::/user.slice/x\n"), Some((true, "/user.slice/x".into())));
        let h = Headroom { mem_available: 100, cgroup: Some(("/c".into(), 50, 20)) };
        assert_eq!(h.bytes(), 30);
    }

    #[test]
    fn mapping_at_answers_as_maps_lists() {
        // A process whose mappings hold still (this one's threads map and unmap as tests run).
        let mut sleeper = std::process::Command::new("sleep")
            .arg("600")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let me = sleeper.id();
        while std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap_or_default().trim() != "sleep" {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let maps = read_maps(me).unwrap();
        assert!(maps.len() > 5);
        for v in &maps {
            if v.backing == Backing::Named("[vsyscall]".into()) {
                continue; // outside the process's address space proper: the query skips it
            }
            for addr in [v.start, v.end - 1] {
                assert_eq!(mapping_at(me, addr).unwrap().as_ref(), Some(v), "at {addr:#x}");
            }
        }
        let first = maps[0].start;
        assert!(first >= 4096);
        assert_eq!(mapping_at(me, first - 4096).unwrap(), None, "nothing below the first mapping");
        // The answers above came from the ioctl itself where the kernel has it (6.11+), not from
        // the maps text mapping_at falls back to.
        let release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
        let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
        let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        let file = File::open(format!("/proc/{me}/maps")).unwrap();
        match crate::sys::procmap_query(file.as_fd(), maps[0].start) {
            Ok(Some(q)) => assert_eq!((q.start, q.end), (maps[0].start, maps[0].end)),
            Ok(None) => panic!("PROCMAP_QUERY found nothing at {:#x}", maps[0].start),
            Err(e) => assert!(
                e == Errno::ENOTTY && (major, minor) < (6, 11),
                "PROCMAP_QUERY failed with {e} on Linux {release}"
            ),
        }
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }

    #[test]
    fn maps_names_and_smaps_flags_read_only_as_far_as_needed() {
        let maps = b"555555554000-555555556000 r-xp 00001000 08:01 1234                       /usr/bin/cat\n\
7f0000000000-7f0200000000 rw-p 00000000 00:00 0 \n\
7fff00000000-7fff00001000 r--p 00000000 00:00 0                          [ibt_bitmap]\n";
        let mut v = parse_maps(maps).unwrap();
        assert_eq!(v.len(), 3);
        assert!(v[0].exec && matches!(&v[0].backing, Backing::File(p) if p.ends_with("cat")));
        assert!(v[1].write && v[1].private && !v[1].noreserve && !v[1].dontdump);
        assert_eq!(v[1].backing, Backing::Anonymous);
        assert_eq!(v[2].backing, Backing::Named("[ibt_bitmap]".into()));
        // The flags of the second mapping only: smaps is not read past its VmFlags line (a read
        // beyond fails here).
        struct Unreadable;
        impl std::io::Read for Unreadable {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("read past the wanted mapping"))
            }
        }
        let smaps =
            b"555555554000-555555556000 r-xp 00001000 08:01 1234                       /usr/bin/cat\n\
Size: 8 kB\nShared_Clean:          8 kB\nVmFlags: rd ex mr mw me dd \n\
7f0000000000-7f0200000000 rw-p 00000000 00:00 0 \nSize: 8388608 kB\nShared_Clean:          0 kB\n\
Shared_Dirty:         12 kB\nPrivate_Dirty:        40 kB\nVmFlags: rd wr mr mw me nr dd \n";
        let found = flags_until(std::io::Read::chain(&smaps[..], Unreadable), &mut v, &[1]).unwrap();
        assert_eq!(found, Some(1));
        assert!(v[1].noreserve && v[1].dontdump && v[1].shares_pages);
        let alone = String::from_utf8_lossy(smaps).replace("12 kB", "0 kB");
        let mut w = parse_maps(maps).unwrap();
        assert_eq!(flags_until(alone.as_bytes(), &mut w, &[1]).unwrap(), Some(1));
        assert!(w[1].noreserve && !w[1].shares_pages, "no page shared");
        assert!(!v[0].dontdump, "a mapping not asked for keeps its flags");
        // A mapping that smaps does not list is not found.
        let mut w = parse_maps(maps).unwrap();
        assert_eq!(flags_until(&smaps[..], &mut w, &[2]).unwrap(), Some(0));
        assert_eq!(flags_until(&b""[..], &mut w, &[2]).unwrap(), None);
    }
}
