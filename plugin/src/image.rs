//! Image files on disk: opened without following symlinks, written atomically (temporary name,
//! fsync, rename, fsync of the directory), so no reader ever sees a partial image.

use crate::error::EngineError;
use criu_cet_format::ImageReader;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Environment variable for fault injection in tests: the image writer fails after this many
/// bytes, as a full disk would make it...
pub const FAULT_ENV: &str = "CRIU_CET_FAULT_AFTER_BYTES";
/// ...or, with this set to `kill`, the process kills itself with SIGKILL there, as a crash would.
pub const FAULT_MODE_ENV: &str = "CRIU_CET_FAULT_MODE";

/// Opens and fully validates an image (every checksum, every table, every block).
pub fn open(path: &Path) -> Result<ImageReader<BufReader<File>>, EngineError> {
    open_keeping_file(path).map(|(_, r)| r)
}

/// [`open`], also returning the open file (a second handle on it), so that a caller can read the
/// very file it checked again later, whatever happens to its name meanwhile.
pub fn open_keeping_file(path: &Path) -> Result<(File, ImageReader<BufReader<File>>), EngineError> {
    let io = |source| EngineError::Io { path: path.to_path_buf(), source };
    let file =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(
            |e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    io(std::io::Error::other("is a symbolic link; images are never read through links"))
                } else {
                    io(e)
                }
            },
        )?;
    let md = file.metadata().map_err(io)?;
    if !md.is_file() {
        return Err(io(std::io::Error::other("is not a regular file")));
    }
    let kept = file.try_clone().map_err(io)?;
    Ok((kept, read_verified(BufReader::with_capacity(1 << 16, file), path)?))
}

/// Reads and fully validates an image from `src`; errors name `path`.
pub fn read_verified<R: Read + Seek>(src: R, path: &Path) -> Result<ImageReader<R>, EngineError> {
    let with_name = |source| EngineError::Image { file: path.to_path_buf(), source };
    let mut r = ImageReader::open(src).map_err(with_name)?;
    r.verify_blocks().map_err(with_name)?;
    Ok(r)
}

struct Faulty<W> {
    inner: W,
    left: Option<u64>,
    kill: bool,
}

impl<W: Write> Write for Faulty<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.left {
            Some(0) => {
                if self.kill {
                    // Everything written so far reaches the file, as it would before a crash.
                    let _ = self.inner.flush();
                    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                }
                return Err(std::io::Error::other(format!("injected fault ({FAULT_ENV})")));
            }
            Some(left) => (buf.len() as u64).min(left) as usize,
            None => buf.len(),
        };
        let n = self.inner.write(&buf[..n])?;
        if let Some(left) = &mut self.left {
            *left -= n as u64;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Whether a written image is on stable storage when the write returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// File and directory fsynced (the CLI: a file a user asked for).
    Synced,
    /// Complete or absent, but left to the page cache like CRIU's own images, which CRIU does
    /// not fsync either (the plugin: two fsyncs per image were 90% of its dump time; whoever
    /// drives CRIU syncs the checkpoint as a whole).
    AsCriu,
}

/// Writes `path` atomically: `write` fills a temporary file in the same directory, which is
/// synced and renamed over `path` only if `write` succeeds. Renaming replaces a symlink at
/// `path`; it never writes through one.
pub fn write_atomically<T>(
    path: &Path,
    durability: Durability,
    write: impl FnOnce(&mut dyn Write) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    let io = |source| EngineError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp =
        tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir).map_err(io)?;
    let left = std::env::var(FAULT_ENV).ok().and_then(|v| v.parse().ok());
    let value = {
        let kill = std::env::var(FAULT_MODE_ENV).is_ok_and(|m| m == "kill");
        let mut out = Faulty { inner: BufWriter::with_capacity(1 << 16, tmp.as_file()), left, kill };
        let value = write(&mut out).map_err(|e| e.in_file(path))?;
        out.flush().map_err(io)?;
        value
    };
    if durability == Durability::Synced {
        tmp.as_file().sync_all().map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    if durability == Durability::Synced {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(value)
}
