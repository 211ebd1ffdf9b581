//! Image files on disk: opened without following symlinks, written atomically (temporary name,
//! fsync, rename, fsync of the directory), so no reader ever sees a partial image, and never
//! over anything but a regular file.

use crate::error::EngineError;
use criu_cet_format::ImageReader;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Opens and fully validates an image (every checksum, every table, every block).
pub fn open(path: &Path) -> Result<ImageReader<BufReader<File>>, EngineError> {
    open_keeping_file(path).map(|(_, _, r)| r)
}

/// [`open`], also returning the open file (a second handle on it), so that a caller can read the
/// very file it checked again later, whatever happens to its name meanwhile.
pub fn open_keeping_file(
    path: &Path,
) -> Result<(File, std::fs::Metadata, ImageReader<BufReader<File>>), EngineError> {
    let io = |source| EngineError::Io { path: display_path(path), source };
    let (file, md) = crate::input::open_file(path, crate::input::Links::Refuse)?;
    let kept = file.try_clone().map_err(io)?;
    Ok((kept, md, read_verified(BufReader::with_capacity(1 << 16, file), path)?))
}

/// Reads and fully validates an image from `src`; errors name `path`.
pub fn read_verified<R: Read + Seek>(src: R, path: &Path) -> Result<ImageReader<R>, EngineError> {
    let with_name = |source| EngineError::Image { file: path.to_path_buf(), source };
    let mut r = ImageReader::open(src).map_err(with_name)?;
    r.verify_blocks().map_err(with_name)?;
    Ok(r)
}

/// The image writer's sink: stops at the first write after SIGINT or SIGTERM (the temporary
/// file is then removed), and with the `test-hooks` feature injects faults.
struct Guarded<W> {
    inner: W,
    #[cfg(feature = "test-hooks")]
    fault: crate::hooks::Fault,
}

impl<W: Write> Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(sig) = crate::sys::interrupted() {
            return Err(std::io::Error::other(format!("interrupted by {sig}")));
        }
        #[cfg(feature = "test-hooks")]
        let buf = &buf[..self.fault.allow(buf.len(), &mut self.inner)?];
        let n = self.inner.write(buf)?;
        #[cfg(feature = "test-hooks")]
        self.fault.wrote(n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A path as a person knows it: `/proc/self/fd/N/...` (how CRIU hands plugins the image
/// directory) becomes the directory that descriptor is open on.
pub fn display_path(path: &Path) -> PathBuf {
    let mut parts = path.components();
    let prefix: Vec<_> = parts.by_ref().take(5).collect();
    let is_fd = prefix.len() == 5
        && prefix[1].as_os_str() == "proc"
        && prefix[2].as_os_str() == "self"
        && prefix[3].as_os_str() == "fd";
    if is_fd {
        let fd_path: PathBuf = prefix.iter().collect();
        if let Ok(dir) = std::fs::read_link(&fd_path) {
            return dir.join(parts.as_path());
        }
    }
    path.to_path_buf()
}

/// A warning when an image (or its directory, without the sticky bit) can be written by users
/// other than its owner: whoever can write it can make a restore write what they like into
/// the bitmap range.
pub fn writable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(path).ok()?.permissions().mode();
    if mode & 0o022 != 0 {
        return Some(format!(
            "warning: {} is writable by users other than its owner (mode {:o}): anyone who can \
             write it decides what a restore writes; chmod go-w it",
            display_path(path).display(),
            mode & 0o7777
        ));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dmode = std::fs::metadata(dir).ok()?.permissions().mode();
    (dmode & 0o002 != 0 && dmode & 0o1000 == 0).then(|| {
        format!(
            "warning: the directory {} of {} is writable by every user and not sticky (mode {:o}): \
             anyone can replace the image",
            display_path(dir).display(),
            path.display(),
            dmode & 0o7777
        )
    })
}

/// What kind of file is at `path` when it is not a regular file, for a refusal.
pub(crate) fn not_regular(md: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = md.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    })
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

/// Writes `path` atomically: `write` fills a temporary file (`.cet.XXXXXX.tmp`, short so that
/// any valid file name can be the target) in the same directory, which is synced and renamed
/// over `path` only if `write` succeeds; on failure or interruption it is removed.
///
/// An existing `path` must be a regular file: a symlink, directory, FIFO, device or socket
/// there is refused, never replaced nor written through. An existing file keeps its owner,
/// group and mode; a new one is created 0600.
pub fn write_atomically<T>(
    path: &Path,
    durability: Durability,
    write: impl FnOnce(&mut dyn Write) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let shown = display_path(path);
    let io = |source| EngineError::Io { path: shown.clone(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let existing = match std::fs::symlink_metadata(path) {
        Ok(md) => {
            if let Some(kind) = not_regular(&md) {
                return Err(io(std::io::Error::other(format!(
                    "exists and is a {kind}; criu-cet writes images only as regular files, which it \
                     replaces atomically: remove it or name another path"
                ))));
            }
            Some(md)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let tmp =
        tempfile::Builder::new().prefix(".cet.").suffix(".tmp").rand_bytes(6).tempfile_in(dir).map_err(
            |e| EngineError::Io {
                path: display_path(dir),
                source: std::io::Error::new(e.kind(), format!("creating a temporary image file there: {e}")),
            },
        )?;
    crate::hooks::pause("dump-writing");
    let full = |e: std::io::Error| {
        if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
            EngineError::Io {
                path: display_path(dir),
                source: std::io::Error::new(
                    e.kind(),
                    format!("{e} while writing {}: free space there and dump again", shown.display()),
                ),
            }
        } else {
            io(e)
        }
    };
    let value = {
        let mut out = Guarded {
            inner: BufWriter::with_capacity(1 << 16, tmp.as_file()),
            #[cfg(feature = "test-hooks")]
            fault: crate::hooks::Fault::from_env(),
        };
        let value = write(&mut out).map_err(|e| match e {
            EngineError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => full(source),
            e => e.in_file(&shown),
        })?;
        out.flush().map_err(full)?;
        value
    };
    if let Some(md) = &existing {
        let f = tmp.as_file();
        std::os::unix::fs::fchown(f, Some(md.uid()), Some(md.gid())).map_err(io)?;
        f.set_permissions(std::fs::Permissions::from_mode(md.mode() & 0o7777)).map_err(io)?;
    }
    if durability == Durability::Synced {
        tmp.as_file().sync_all().map_err(full)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    if durability == Durability::Synced {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(value)
}
