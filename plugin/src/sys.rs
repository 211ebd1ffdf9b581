//! The kernel interfaces that need `unsafe`, and nothing else: ptrace register sets, the
//! PAGEMAP_SCAN and PROCMAP_QUERY ioctls, the address-width probe, tgkill, signal handlers and setsid before exec.
//! Everything above this module (the ptrace stop logic and remote system calls live in `trace`)
//! is safe Rust.
//!
//! # References
//! ptrace(2), proc_pid_pagemap(5) (PAGEMAP_SCAN, Linux 6.7+), proc_pid_maps(5) (PROCMAP_QUERY,
//! Linux 6.11+), arch_prctl(2), mmap(2).

#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Regset note of a thread's IBT state, IA32_U_CET (shared/FACTS.md section 1).
pub const NT_X86_CET: u32 = 0x203;
/// Regset note of a thread's shadow-stack pointer (shared/FACTS.md section 2).
pub const NT_X86_SHSTK: u32 = 0x204;

/// Reads a register set of a ptrace-stopped thread into `buf`; returns the bytes filled.
///
/// # References
/// PTRACE_GETREGSET in ptrace(2).
pub fn get_regset(tid: Pid, note: u32, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: `iov` describes `buf`, which is valid and writable for `buf.len()` bytes for the
    // duration of the call; the kernel writes at most `iov_len` bytes and updates `iov_len`.
    let r = unsafe {
        libc::ptrace(libc::PTRACE_GETREGSET, tid.as_raw(), note as usize as *mut libc::c_void, &mut iov)
    };
    Errno::result(r).map(|_| iov.iov_len)
}

/// Writes a register set of a ptrace-stopped thread from `buf`.
pub fn set_regset(tid: Pid, note: u32, buf: &[u8]) -> Result<(), Errno> {
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: `iov` describes `buf`, valid for reads of `buf.len()` bytes; PTRACE_SETREGSET only
    // reads through it.
    let r = unsafe {
        libc::ptrace(libc::PTRACE_SETREGSET, tid.as_raw(), note as usize as *mut libc::c_void, &mut iov)
    };
    Errno::result(r).map(drop)
}

/// One region PAGEMAP_SCAN reported: `[start, end)` with category bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRegion {
    /// Start address, page aligned.
    pub start: u64,
    /// End address (exclusive), page aligned.
    pub end: u64,
    /// The `PAGE_IS_*` bits (of those the scan asked for) that the region's pages share.
    pub categories: u64,
}

/// PAGEMAP_SCAN category: the page is in memory.
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
/// PAGEMAP_SCAN category: the page is in swap.
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
/// PAGEMAP_SCAN category: the page is the shared zero page.
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// PAGEMAP_SCAN category: the page is file-backed.
pub const PAGE_IS_FILE: u64 = 1 << 2;

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawRegion {
    start: u64,
    end: u64,
    categories: u64,
}

// The kernel's layouts (include/uapi/linux/fs.h; shared/FACTS.md section 6), checked by the
// compiler: pm_scan_arg is 12 u64 in this order, page_region 3.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<PmScanArg>() == 96);
    assert!(offset_of!(PmScanArg, size) == 0);
    assert!(offset_of!(PmScanArg, flags) == 8);
    assert!(offset_of!(PmScanArg, start) == 16);
    assert!(offset_of!(PmScanArg, end) == 24);
    assert!(offset_of!(PmScanArg, walk_end) == 32);
    assert!(offset_of!(PmScanArg, vec) == 40);
    assert!(offset_of!(PmScanArg, vec_len) == 48);
    assert!(offset_of!(PmScanArg, max_pages) == 56);
    assert!(offset_of!(PmScanArg, category_inverted) == 64);
    assert!(offset_of!(PmScanArg, category_mask) == 72);
    assert!(offset_of!(PmScanArg, category_anyof_mask) == 80);
    assert!(offset_of!(PmScanArg, return_mask) == 88);
    assert!(size_of::<RawRegion>() == 24);
    assert!(offset_of!(RawRegion, start) == 0);
    assert!(offset_of!(RawRegion, end) == 8);
    assert!(offset_of!(RawRegion, categories) == 16);
};

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: libc::c_ulong = nix::request_code_readwrite!(b'f', 16, std::mem::size_of::<PmScanArg>());

/// One PAGEMAP_SCAN call over `[start, end)` of the process whose pagemap `fd` is: the regions of
/// pages present or swapped, leaving out the shared zero page and file pages (as CRIU asks).
/// Fills at most `out.len()` regions; returns how many and where the walk stopped.
pub fn pagemap_scan(
    fd: BorrowedFd<'_>,
    start: u64,
    end: u64,
    out: &mut Vec<PageRegion>,
    capacity: usize,
) -> Result<u64, Errno> {
    let mut raw = vec![RawRegion::default(); capacity];
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        start,
        end,
        vec: raw.as_mut_ptr() as u64,
        vec_len: capacity as u64,
        category_inverted: PAGE_IS_PFNZERO | PAGE_IS_FILE,
        category_mask: PAGE_IS_PFNZERO | PAGE_IS_FILE,
        category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        ..Default::default()
    };
    // SAFETY: `arg` is a properly sized and initialized pm_scan_arg; `vec` points to `capacity`
    // writable page_region structs (`raw`), which outlive the call. The kernel writes at most
    // `vec_len` regions and updates `walk_end`.
    let n = unsafe { libc::ioctl(fd.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
    // The number of regions filled: never negative once Errno::result has taken the -1.
    let n = usize::try_from(Errno::result(n)?).map_err(|_| Errno::EINVAL)?;
    out.extend(raw[..n.min(capacity)].iter().map(|r| PageRegion {
        start: r.start,
        end: r.end,
        categories: r.categories,
    }));
    Ok(arg.walk_end)
}

/// `struct procmap_query` (include/uapi/linux/fs.h, Linux 6.11+).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<ProcmapQuery>() == 104);
    assert!(offset_of!(ProcmapQuery, inode) == 64);
    assert!(offset_of!(ProcmapQuery, vma_name_size) == 80);
    assert!(offset_of!(ProcmapQuery, vma_name_addr) == 88);
};

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: libc::c_ulong =
    nix::request_code_readwrite!(b'f', 17, std::mem::size_of::<ProcmapQuery>());

/// PROCMAP_QUERY's `vma_flags` bit: readable.
pub const PROCMAP_READABLE: u64 = 0x01;
/// Writable.
pub const PROCMAP_WRITABLE: u64 = 0x02;
/// Executable.
pub const PROCMAP_EXECUTABLE: u64 = 0x04;
/// Shared (maps' `s`).
pub const PROCMAP_SHARED: u64 = 0x08;

/// The mapping holding `addr` as PROCMAP_QUERY reports it.
pub struct QueriedMapping {
    /// Its first address.
    pub start: u64,
    /// Its end (exclusive).
    pub end: u64,
    /// `PROCMAP_*` bits.
    pub flags: u64,
    /// The inode of its file; 0 when it has none.
    pub inode: u64,
    /// As /proc/PID/maps shows it; empty for an anonymous mapping without a name.
    pub name: Vec<u8>,
}

/// Asks the kernel, through the process's open /proc/PID/maps `fd`, which mapping holds `addr`
/// (PROCMAP_QUERY, Linux 6.11+): one call instead of the whole maps text. `Ok(None)`: no
/// mapping holds it (ENOENT). ENOTTY: the kernel has no such ioctl.
pub fn procmap_query(fd: BorrowedFd<'_>, addr: u64) -> Result<Option<QueriedMapping>, Errno> {
    const NAME_BYTES: u32 = libc::PATH_MAX as u32 + 1;
    let mut name = vec![0u8; NAME_BYTES as usize];
    let mut q = ProcmapQuery {
        size: std::mem::size_of::<ProcmapQuery>() as u64,
        query_addr: addr,
        vma_name_size: NAME_BYTES,
        vma_name_addr: name.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `q` is a properly sized and initialized procmap_query; `vma_name_addr` points to
    // `name`, writable for `vma_name_size` bytes and alive across the call; no build id is asked
    // for (size and address 0). The kernel writes only into `q` and `name`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), PROCMAP_QUERY as _, &mut q) };
    match Errno::result(r) {
        Ok(_) => {}
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    }
    // The size the kernel reports counts the terminating NUL.
    name.truncate((q.vma_name_size as usize).saturating_sub(1).min(name.len()));
    Ok(Some(QueriedMapping { start: q.vma_start, end: q.vma_end, flags: q.vma_flags, inode: q.inode, name }))
}

/// Probes whether this process can map at `addr` (MAP_FIXED_NOREPLACE, PROT_NONE, one page),
/// unmapping again at once. ENOMEM at 2^47 means 4-level paging: the only probe that cannot be
/// fooled by the CPU's advertised width.
pub fn can_map_at(addr: u64) -> bool {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so this cannot disturb any
    // memory of this process; a successful mapping is unmapped before returning.
    unsafe {
        let p = libc::mmap(
            addr as *mut libc::c_void,
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        libc::munmap(p, 4096);
        p as u64 == addr
    }
}

/// Whether this kernel offers threads' IBT state: ARCH_X86_CET_STATUS (0x3001) of the CET series
/// succeeds, or (built with the `ibt-test-module` feature only) the test-only module's device is
/// there.
pub fn kernel_offers_ibt() -> bool {
    let mut buf = [0u64; 3];
    // SAFETY: arch_prctl with this code writes at most three u64 into `buf` on kernels that know
    // it, and fails with EINVAL (touching nothing) on kernels that do not.
    let r = unsafe { libc::syscall(libc::SYS_arch_prctl, 0x3001, buf.as_mut_ptr()) };
    r == 0 || test_module::present()
}

pub use test_module::user_cet as test_module_user_cet;

/// The interface of the TEST-ONLY kernel module of the emulated CET guest
/// (tests/emulated/cet_ibt_test), compiled only with the `ibt-test-module` cargo feature, which
/// only tests/emulated/run enables: it reads and writes a thread's IA32_U_CET as the NT_X86_CET
/// regset of the CET patch series would, on a kernel that has no user IBT. Without the feature
/// nothing here opens a device or sends an ioctl, and no build that ships contains it.
#[cfg(feature = "ibt-test-module")]
mod test_module {
    use nix::errno::Errno;
    use nix::unistd::Pid;
    use std::os::fd::AsRawFd;

    /// The module's device.
    const DEVICE: &str = "/dev/cet_ibt_test";

    /// The module's request: `struct cet_ibt_test_req` of tests/emulated/cet_ibt_test/cet_ibt_test.c.
    #[repr(C)]
    struct Request {
        tid: u32,
        pad: u32,
        user_cet: u64,
    }
    const _: () = assert!(std::mem::size_of::<Request>() == 16);

    /// `_IOWR('C', 1, struct cet_ibt_test_req)`: read a thread's IA32_U_CET.
    pub(super) const GET: libc::c_ulong =
        nix::request_code_readwrite!(b'C', 1, std::mem::size_of::<Request>());
    /// `_IOWR('C', 2, struct cet_ibt_test_req)`: write its IBT bits (the shadow-stack bits stay
    /// the kernel's); the module answers with the value the thread then has.
    pub(super) const SET: libc::c_ulong =
        nix::request_code_readwrite!(b'C', 2, std::mem::size_of::<Request>());

    /// Whether the module's device is there.
    pub fn present() -> bool {
        std::path::Path::new(DEVICE).exists()
    }

    /// IA32_U_CET of ptrace-stopped thread `tid` through the module; `Ok(None)` when it is not
    /// loaded. With `set`, writes it first and returns what the thread then has.
    pub fn user_cet(tid: Pid, set: Option<u64>) -> Result<Option<u64>, Errno> {
        let device = match std::fs::OpenOptions::new().read(true).write(true).open(DEVICE) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
        };
        let tid = u32::try_from(tid.as_raw()).map_err(|_| Errno::ESRCH)?;
        let mut req = Request { tid, pad: 0, user_cet: set.unwrap_or(0) };
        let request = if set.is_some() { SET } else { GET };
        // SAFETY: both requests read and write exactly one `Request`, a repr(C) struct of the
        // module's layout (16 bytes, asserted above) that lives for the duration of the call.
        let r = unsafe { libc::ioctl(device.as_raw_fd(), request, &mut req as *mut Request) };
        Errno::result(r)?;
        Ok(Some(req.user_cet))
    }
}

/// Builds without the `ibt-test-module` feature: no module, no device, no ioctl.
#[cfg(not(feature = "ibt-test-module"))]
mod test_module {
    use nix::errno::Errno;
    use nix::unistd::Pid;

    #[inline(always)]
    pub fn present() -> bool {
        false
    }

    /// Always `Ok(None)`: no build that ships reads IA32_U_CET through the test-only module.
    #[inline(always)]
    pub fn user_cet(_tid: Pid, _set: Option<u64>) -> Result<Option<u64>, Errno> {
        Ok(None)
    }
}

/// Sends `sig` to thread `tid` of process `tgid` (tgkill(2)).
pub fn tgkill(tgid: Pid, tid: Pid, sig: nix::sys::signal::Signal) -> Result<(), Errno> {
    // SAFETY: tgkill only sends a signal; it reads and writes no memory of this process.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, tgid.as_raw(), tid.as_raw(), sig as i32) };
    Errno::result(r).map(drop)
}

/// The signal (SIGINT or SIGTERM) that asked this process to stop, once one has arrived after
/// [`catch_interrupts`]; the CLI then finishes the step under way, puts the target back as it
/// was and exits. Always `None` in the plugin, which never installs the handlers (CRIU owns
/// its signals).
pub fn interrupted() -> Option<nix::sys::signal::Signal> {
    match INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        n => nix::sys::signal::Signal::try_from(n).ok(),
    }
}

static INTERRUPTED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn note_interrupt(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set the flag [`interrupted`] reads instead of ending the process,
/// so that the CLI never leaves a target stopped, traced or with borrowed registers.
pub fn catch_interrupts() -> Result<(), Errno> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(note_interrupt), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only performs an atomic store, which is async-signal-safe, and
        // touches no other state of this process.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// Spawns `cmd` in a new session (setsid) with stdio on /dev/null: a target that CRIU can dump
/// without --shell-job and that no terminal signal reaches.
pub fn spawn_detached(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the closure runs between fork and exec and calls only setsid(2), which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    /// The numbers the kernel's and the test module's headers give, as strace prints them.
    #[test]
    fn ioctl_numbers_match_the_headers() {
        assert_eq!(super::PAGEMAP_SCAN, 0xc060_6610);
        assert_eq!(super::PROCMAP_QUERY, 0xc068_6611);
        #[cfg(feature = "ibt-test-module")]
        assert_eq!((super::test_module::GET, super::test_module::SET), (0xc010_4301, 0xc010_4302));
    }
}
