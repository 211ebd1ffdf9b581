//! The engine's error type: what went wrong, with the process, range and next step to take.

use criu_cet_format::FormatError;
use nix::errno::Errno;
use std::path::{Path, PathBuf};

/// What a bitmap looks like, for messages that refuse something that is not one (the error
/// type states it; `check` re-exports it).
pub const BITMAP_SHAPE: &str = "a private anonymous mapping of exactly 2^(N-15) bytes for N covered \
     address bits (4 GiB for 47, 8 GiB for 48, 4 TiB for 57), mapped MAP_NORESERVE and excluded from \
     core dumps (smaps VmFlags `nr` and `dd`), not executable; or a kernel `[ibt_bitmap]` mapping";

/// Everything the engine can refuse or fail at. Messages name the process, the address range,
/// the expected and actual values, and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("process {pid} does not exist (it may have exited)")]
    /// The process is gone (ESRCH or ENOENT).
    NoProcess {
        /// The process.
        pid: u32,
    },
    #[error(
        "process {pid} is exiting (every thread has ended or is ending); nothing was written: \
         checkpoint a process that is running"
    )]
    /// Every thread of the process has ended or is ending.
    Exiting {
        /// The process.
        pid: u32,
    },
    #[error(
        "no permission to {action} process {pid} ({errno}): run as root, or as its owner with \
         ptrace allowed (kernel.yama.ptrace_scope)"
    )]
    /// EPERM or EACCES on the process.
    Permission {
        /// The process.
        pid: u32,
        /// What was not allowed.
        action: Access,
        /// The errno.
        errno: Errno,
    },
    #[error("process {pid}: {action} failed: {errno}{hint}")]
    /// Any other failing system call on the process.
    Sys {
        /// The process.
        pid: u32,
        /// What failed, e.g. "PAGEMAP_SCAN".
        action: String,
        /// The errno.
        errno: Errno,
        /// More about the cause, starting with a space; often empty.
        hint: &'static str,
    },
    #[error("{}: {source}", path.display())]
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    #[error(
        "process {pid} has several IBT legacy bitmap candidates: {}; pass --bitmap ADDR \
         (or CRIU_CET_BITMAP_ADDR) to choose one",
        candidates.join(", ")
    )]
    /// More than one mapping could be the bitmap and nothing says which.
    AmbiguousBitmap {
        /// The process.
        pid: u32,
        /// Each candidate mapping, described.
        candidates: Vec<String>,
    },
    #[error(
        "process {pid} has no mapping that starts at the bitmap address {addr:#x} given by {source_name}"
    )]
    /// No mapping starts at the bitmap address the caller gave.
    BitmapNotMapped {
        /// The process.
        pid: u32,
        /// The address given.
        addr: u64,
        /// Where it came from: `--bitmap` or `CRIU_CET_BITMAP_ADDR`.
        source_name: &'static str,
    },
    #[error(
        "process {pid}: the mapping {mapping} given by {source_name} is not an IBT legacy bitmap \
         ({length:#x} bytes; a bitmap is {shape}); nothing was written: give the bitmap's start \
         address",
        shape = BITMAP_SHAPE
    )]
    /// The mapping at the address the caller gave cannot be a bitmap.
    NotABitmap {
        /// The process.
        pid: u32,
        /// Where the address came from: `--bitmap` or `CRIU_CET_BITMAP_ADDR`.
        source_name: &'static str,
        /// The mapping, described.
        mapping: String,
        /// Its length in bytes.
        length: u64,
    },
    #[error("process {pid} is criu-cet itself: a process cannot trace itself; name another pid")]
    /// The process named is criu-cet itself.
    OwnProcess {
        /// Its pid.
        pid: u32,
    },
    #[error(
        "process {pid} ({comm}) is a kernel thread: it has no user memory, bitmap or CET state to \
         checkpoint or restore"
    )]
    /// The process named is a kernel thread.
    KernelThread {
        /// The process.
        pid: u32,
        /// Its `comm`.
        comm: String,
    },
    #[error(
        "process {pid}: thread {tid} is already traced by process {tracer} ({tracer_comm}); a \
         thread has one tracer at a time: wait until it lets go (strace, gdb, CRIU or another \
         criu-cet), or stop that one"
    )]
    /// A thread already has another tracer.
    AlreadyTraced {
        /// The process.
        pid: u32,
        /// The thread.
        tid: u32,
        /// The tracer's pid.
        tracer: u32,
        /// The tracer's `comm`.
        tracer_comm: String,
    },
    #[error(
        "the bitmap {start:#x}-{end:#x} of process {pid} changed during capture ({what}); \
         nothing was written: take the checkpoint again"
    )]
    /// The bitmap mapping moved or vanished while it was being read.
    BitmapChanged {
        /// The process.
        pid: u32,
        /// The bitmap's start address.
        start: u64,
        /// Its end address (exclusive).
        end: u64,
        /// What was seen.
        what: String,
    },
    #[error("{}: {source}", file.display())]
    /// An image is invalid, or could not be written.
    Image {
        /// The image file (`<image>` until `in_file` names it).
        file: PathBuf,
        /// What is wrong.
        source: FormatError,
    },
    #[error("{}", findings.join("\n"))]
    /// The engine refuses to go on; nothing was changed.
    Refused {
        /// Every reason, one line each.
        findings: Vec<String>,
    },
    /// CRIU failed, or did not give the plugin what it needs: not a refusal of ours. The
    /// message says which, and where to look.
    #[error("{message}")]
    Criu {
        /// What CRIU did or did not do, and where its log is.
        message: String,
    },
    #[error(
        "process {pid}: no syscall instruction to run mmap with: it has no vDSO and no readable \
         executable mapping; nothing was changed"
    )]
    /// Creating the mapping needs a `syscall` instruction in the target, and it has none.
    NoSyscallInstruction {
        /// The process.
        pid: u32,
    },
    #[error(
        "process {pid}: thread {tid}: {doing}: the IBT interface (NT_X86_CET, or the test module) \
         went away while the plugin held the thread"
    )]
    /// The kernel interface that gave a thread's IA32_U_CET is gone when it is written.
    IbtInterfaceGone {
        /// The process.
        pid: u32,
        /// The thread.
        tid: u32,
        /// What was being done.
        doing: String,
    },
    #[error(
        "process {pid}: thread {tid}: IA32_U_CET {wanted:#x} was written, but the thread has {now:#x} \
         afterwards (its IBT bits differ)"
    )]
    /// A thread's IA32_U_CET did not take the value written.
    IbtNotTaken {
        /// The process.
        pid: u32,
        /// The thread.
        tid: u32,
        /// The value written.
        wanted: u64,
        /// What the thread has.
        now: u64,
    },
    #[error(
        "process {pid}: the bitmap range {start:#x}-{end:#x} is occupied by {by}; that is not a \
         bitmap (a bitmap is {shape}); nothing was changed: restore into a process where the range \
         is free or holds the bitmap mapping",
        shape = BITMAP_SHAPE
    )]
    /// Something other than the bitmap occupies the bitmap's range in the target.
    RangeOccupied {
        /// The process.
        pid: u32,
        /// The bitmap's start address.
        start: u64,
        /// Its end address (exclusive).
        end: u64,
        /// The mappings there, described.
        by: String,
    },
    #[error(
        "process {pid}: restoring needs {need} bytes but the process can get only {have}: {detail}; \
         nothing was changed: free memory or raise the limit, or check the image (criu-cet check)"
    )]
    /// The target cannot commit the memory the restore needs.
    NoMemory {
        /// The process.
        pid: u32,
        /// Bytes the restore commits.
        need: u64,
        /// Bytes the process can get.
        have: u64,
        /// The commitment and the limits in words.
        detail: String,
    },
    #[error("process {pid}: stopped by {signal} {step}")]
    /// SIGINT or SIGTERM reached the CLI; it stopped between steps.
    Interrupted {
        /// The process.
        pid: u32,
        /// The signal's name.
        signal: String,
        /// Where it stopped and what that left behind.
        step: &'static str,
    },
    #[error(
        "process {pid}: bitmap page at {addr:#x} reads back {actual} after restore, expected \
         {expected}"
    )]
    /// The restored bitmap does not read back as the image holds (one page, or the count of
    /// populated pages).
    Verify {
        /// The process.
        pid: u32,
        /// The page's address; the bitmap's start when the count is wrong.
        addr: u64,
        /// What the image holds.
        expected: String,
        /// What reads back.
        actual: String,
    },
    /// A directory or checkpoint archive that cannot be read (see `archive`).
    #[error(transparent)]
    Input(#[from] InputError),
}

/// Errors of reading a directory or an archive; each names the input and the member.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(
        "{}: not a cet image, a CRIU image directory or a checkpoint archive (tar, gzip or zstd): \
         its first bytes are {first}",
        path.display()
    )]
    /// The path is not a cet image, a directory or a tar.
    NotRecognized {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// Its first bytes in hex, or that it is empty.
        first: String,
    },
    #[error(
        "{}: no cet image and no CRIU inventory.img: this is not a CRIU image directory or \
         checkpoint archive{hint}",
        path.display()
    )]
    /// A directory or archive with neither a cet image nor a CRIU inventory.img.
    NotCheckpoint {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// What the input looks like instead, when that is known; may be empty.
        hint: &'static str,
    },
    #[error("{}: {what}: {source}; {next}", path.display())]
    /// Reading the directory or the archive stream failed.
    Read {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// What was being read.
        what: String,
        /// The error.
        source: std::io::Error,
        /// What to do about it.
        next: &'static str,
    },
    #[error(
        "{}: the archive ends inside {what} ({got} of {expected} bytes): it is truncated; copy it \
         again",
        path.display()
    )]
    /// The archive ends inside a member.
    Truncated {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The member (or header) cut short.
        what: String,
        /// Bytes it should have.
        expected: u64,
        /// Bytes there were.
        got: u64,
    },
    #[error(
        "{}: the archive has no end-of-archive marker after {last}: it is truncated; copy it again",
        path.display()
    )]
    /// The tar has no end-of-archive marker.
    NoEnd {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The last member read.
        last: String,
    },
    #[error("{}: member {member:?}: {why}; refusing the archive (forged or damaged)", path.display())]
    /// A member's name is absolute, has a `..` component, or is not UTF-8.
    BadName {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The member's name as stored.
        member: String,
        /// What is wrong with it.
        why: &'static str,
    },
    #[error(
        "{}: member {member} is a {kind}{target} where a cet image belongs; images are never read \
         through links: refusing the archive (forged or damaged)",
        path.display()
    )]
    /// A link stands where a cet image belongs.
    LinkedImage {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The member.
        member: String,
        /// Symbolic or hard link.
        kind: &'static str,
        /// ` to "TARGET"` when the link names its target, else empty.
        target: String,
    },
    #[error(
        "{}: member {link} is a {kind} where the directory holding {image} belongs; refusing the \
         archive (forged or damaged)",
        path.display()
    )]
    /// A link stands where the directory holding a cet image belongs.
    LinkedDirectory {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The link member.
        link: String,
        /// Symbolic or hard link.
        kind: &'static str,
        /// The image under it.
        image: String,
    },
    #[error("{}: member {member} is a {kind}, not a regular file", path.display())]
    /// A member that is not a regular file where one must be: a cet image, or any sparse member.
    NotRegular {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The member.
        member: String,
        /// What it is instead.
        kind: String,
    },
    #[error(
        "{}: member {member} is {size} bytes, more than the {cap} bytes ({} MiB) a cet image read \
         from an archive may have; extract it (tar -xf) and check the file, which has no such limit",
        path.display(), cap >> 20
    )]
    /// A cet image member larger than `MAX_ARCHIVED_IMAGE`.
    TooLarge {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The member.
        member: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        cap: u64,
    },
    #[error(
        "{}: {member} is in the archive twice; which copy a restore would use is unclear: \
         refusing the archive (forged or damaged)",
        path.display()
    )]
    /// A cet image member that appears twice.
    Duplicate {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The member.
        member: String,
    },
    #[error(
        "{}: the tar headers after {after} take more than {cap} bytes (GNU long names or pax \
         records); refusing the archive (forged or damaged)",
        path.display()
    )]
    /// Tar headers (long names, pax records) larger than `MAX_MEMBER_HEADERS` before one member.
    HugeHeaders {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The last member read before them.
        after: String,
        /// The limit in bytes.
        cap: u64,
    },
    #[error("{}: more than {cap} links: not a checkpoint archive", path.display())]
    /// More links than `MAX_LINKS`.
    TooManyLinks {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The limit.
        cap: usize,
    },
    #[error(
        "{}: member {member} has a {what} of {len} bytes, more than the {cap} (PATH_MAX) any tool \
         extracts; refusing the archive (forged or damaged)",
        path.display()
    )]
    /// A member's name or link target longer than `MAX_MEMBER_NAME`.
    LongName {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The member, its name cut to its first bytes when it is the long one.
        member: String,
        /// `name` or `link target`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        cap: usize,
    },
    #[error(
        "{}: member {member}: {why}; GNU tar and this reader could read it differently: refusing \
         the archive (forged or damaged)",
        path.display()
    )]
    /// Tar headers that tar implementations read differently (duplicate or malformed pax
    /// records, a GNU long name and a pax path for one member, a global header naming files).
    Ambiguous {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The member the headers describe (its name as this reader reads it).
        member: String,
        /// What is ambiguous.
        why: String,
    },
    #[error(
        "{}: more than {cap} {what}: not a checkpoint archive or image directory a restore would use",
        path.display()
    )]
    /// More cet images (or bytes of their names) than a reading keeps.
    TooManyImages {
        /// The input: an image directory or archive, as given.
        path: PathBuf,
        /// The limit.
        cap: usize,
        /// What it counts: `cet images` or `bytes of cet image names`.
        what: &'static str,
    },
    #[error("{display}: {source}")]
    /// A cet image in the input is invalid.
    Image {
        /// The image, named as `FoundImage::display`.
        display: String,
        /// What is wrong with it.
        source: FormatError,
    },
}

impl InputError {
    /// A read error of the archive stream, with what to do about it.
    pub fn read(path: &Path, what: String, source: std::io::Error) -> InputError {
        let next = if source.to_string().contains("too much memory") {
            "the zstd frame needs a window over 16 MiB (zstd --long or --ultra levels): recompress \
             the archive with an ordinary level"
        } else {
            "the archive is damaged or truncated: copy it again"
        };
        InputError::Read { path: path.to_path_buf(), what, source, next }
    }
}

/// Fails with `Interrupted` once SIGINT or SIGTERM has reached the CLI: called between steps,
/// never inside one, so that a target is always left whole (registers back, detached).
pub fn check_interrupt(pid: u32, step: &'static str) -> Result<(), EngineError> {
    match crate::sys::interrupted() {
        Some(sig) => Err(EngineError::Interrupted { pid, signal: sig.as_str().to_string(), step }),
        None => Ok(()),
    }
}

/// What a permission error denied, as `EngineError::Permission` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Tracing the process: ptrace itself, and what ptrace access gates (process_vm_readv,
    /// PAGEMAP_SCAN, register sets, system calls run in the target).
    Trace,
    /// Reading its /proc files: mem, pagemap, smaps and the like.
    ReadMemory,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Trace => "trace",
            Access::ReadMemory => "read the memory of",
        })
    }
}

impl EngineError {
    /// Maps an errno from `action`, an operation on process `pid` that needs ptrace access (see
    /// `Access::Trace`), to the error a user can act on: the process is gone, tracing it is not
    /// permitted, or the call failed.
    pub fn sys(pid: u32, action: impl Into<String>, errno: Errno) -> EngineError {
        match errno {
            Errno::ESRCH | Errno::ENOENT => EngineError::NoProcess { pid },
            Errno::EPERM | Errno::EACCES => EngineError::Permission { pid, action: Access::Trace, errno },
            _ => EngineError::Sys { pid, action: action.into(), errno, hint: "" },
        }
    }

    /// An I/O error on a /proc file of process `pid`, with ENOENT/ESRCH read as "it exited".
    pub fn proc_io(pid: u32, path: impl Into<PathBuf>, e: std::io::Error) -> EngineError {
        match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENOENT | Errno::ESRCH) => EngineError::NoProcess { pid },
            Some(errno @ (Errno::EPERM | Errno::EACCES)) => {
                EngineError::Permission { pid, action: Access::ReadMemory, errno }
            }
            _ => EngineError::Io { path: path.into(), source: e },
        }
    }
}

/// Format errors raised where the file is not known yet; `in_file` names it.
const UNNAMED: &str = "<image>";

impl From<FormatError> for EngineError {
    fn from(source: FormatError) -> Self {
        EngineError::Image { file: PathBuf::from(UNNAMED), source }
    }
}

impl EngineError {
    /// The same error naming the file it is about as `shown` (an image read through CRIU's
    /// directory descriptor is named by its plain name, not /proc/self/fd/N/NAME).
    pub fn named(self, shown: &std::path::Path) -> EngineError {
        match self {
            EngineError::Image { source, .. } => EngineError::Image { file: shown.to_path_buf(), source },
            EngineError::Io { source, .. } => EngineError::Io { path: shown.to_path_buf(), source },
            e => e,
        }
    }

    /// Names the image file in a format error raised without it.
    pub fn in_file(self, path: &std::path::Path) -> EngineError {
        match self {
            EngineError::Image { file, source } if file.as_os_str() == UNNAMED => {
                EngineError::Image { file: path.to_path_buf(), source }
            }
            e => e,
        }
    }
}
