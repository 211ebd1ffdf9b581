use criu_cet_format::FormatError;
use nix::errno::Errno;
use std::path::PathBuf;

/// Everything the engine can refuse or fail at. Messages name the process, the address range,
/// the expected and actual values, and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("process {pid} does not exist (it may have exited)")]
    NoProcess { pid: u32 },
    #[error(
        "process {pid} is exiting (its main thread has ended); nothing was written: checkpoint a \
         process whose main thread is running"
    )]
    Exiting { pid: u32 },
    #[error(
        "no permission to {action} process {pid} ({errno}): run as root, or as its owner with \
         ptrace allowed (kernel.yama.ptrace_scope)"
    )]
    Permission { pid: u32, action: &'static str, errno: Errno },
    #[error("process {pid}: {action} failed: {errno}{hint}")]
    Sys { pid: u32, action: String, errno: Errno, hint: &'static str },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "process {pid} has several IBT legacy bitmap candidates: {}; pass --bitmap ADDR \
         (or CRIU_CET_BITMAP_ADDR) to choose one",
        candidates.join(", ")
    )]
    AmbiguousBitmap { pid: u32, candidates: Vec<String> },
    #[error(
        "process {pid} has no mapping that starts at the bitmap address {addr:#x} given by {source_name}"
    )]
    BitmapNotMapped { pid: u32, addr: u64, source_name: &'static str },
    #[error(
        "the bitmap {start:#x}-{end:#x} of process {pid} changed during capture ({what}); \
         nothing was written: take the checkpoint again"
    )]
    BitmapChanged { pid: u32, start: u64, end: u64, what: String },
    #[error("{}: {source}", file.display())]
    Image { file: PathBuf, source: FormatError },
    #[error("{}", findings.join("\n"))]
    Refused { findings: Vec<String> },
    #[error(
        "process {pid}: the bitmap range {start:#x}-{end:#x} is occupied by {by}; nothing was \
         changed: restore into a process where the range is free or holds the bitmap mapping"
    )]
    RangeOccupied { pid: u32, start: u64, end: u64, by: String },
    #[error(
        "process {pid}: bitmap page at {addr:#x} reads back {actual} after restore, expected \
         {expected}"
    )]
    Verify { pid: u32, addr: u64, expected: String, actual: String },
    /// A directory or checkpoint archive that cannot be read (see `archive`).
    #[error(transparent)]
    Input(#[from] crate::archive::InputError),
}

impl EngineError {
    /// Maps an errno from touching process `pid` to the error a user can act on.
    pub fn sys(pid: u32, action: impl Into<String>, errno: Errno) -> EngineError {
        let action = action.into();
        match errno {
            Errno::ESRCH | Errno::ENOENT => EngineError::NoProcess { pid },
            Errno::EPERM | Errno::EACCES => EngineError::Permission {
                pid,
                action: if action.contains("write") { "write into" } else { "trace" },
                errno,
            },
            _ => EngineError::Sys { pid, action, errno, hint: "" },
        }
    }

    /// An I/O error on a /proc file of process `pid`, with ENOENT/ESRCH read as "it exited".
    pub fn proc_io(pid: u32, path: impl Into<PathBuf>, e: std::io::Error) -> EngineError {
        match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENOENT | Errno::ESRCH) => EngineError::NoProcess { pid },
            Some(errno @ (Errno::EPERM | Errno::EACCES)) => {
                EngineError::Permission { pid, action: "read the memory of", errno }
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
