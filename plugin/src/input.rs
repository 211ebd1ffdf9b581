//! Every file the tools and the plugin read (an image, an archive, a host profile, a JSON
//! document, CRIU's pstree.img) goes through here: opened once, checked on the opened file
//! (fstat, never the name again), and read with a cap. A check made on a name and a read made
//! through it later could be two different files (a symlink to /dev/zero passes a size check
//! made on the link).

use crate::error::EngineError;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The refusal of a name that is a symbolic link where the file itself must be.
pub const LINK_REFUSED: &str =
    "is a symbolic link; images are never read through links (nor pstree.img, nor a fleet's profiles)";

/// Whether the name may be a symbolic link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// A name the user typed: a link to a file is theirs to make; what it leads to is still
    /// checked on the opened file.
    Follow,
    /// A name found inside a directory (an image, pstree.img, a fleet's profile): it must be
    /// the regular file itself (O_NOFOLLOW).
    Refuse,
}

/// What an opened path turned out to be.
pub enum Opened {
    /// A regular file, and its metadata as opened.
    File(File, Metadata),
    /// A directory (only when the caller accepts one).
    Directory,
}

/// Opens `path` once and checks the opened file: a regular file, or with `dir_ok` a directory.
/// Never blocks (O_NONBLOCK: a FIFO opens and is then refused); a device, socket or FIFO is
/// refused naming its kind, a link under `Links::Refuse` as a link.
pub fn open(path: &Path, links: Links, dir_ok: bool) -> Result<Opened, EngineError> {
    let io_err = |source| EngineError::Io { path: crate::image::display_path(path), source };
    let nofollow = if links == Links::Refuse { libc::O_NOFOLLOW } else { 0 };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) if links == Links::Refuse => io_err(io::Error::other(LINK_REFUSED)),
            // A socket cannot be opened (ENXIO): say what it is, for the message only.
            Some(libc::ENXIO) => {
                match std::fs::symlink_metadata(path).ok().as_ref().and_then(crate::image::not_regular) {
                    Some(kind) => io_err(io::Error::other(format!("is not a regular file but a {kind}"))),
                    None => io_err(e),
                }
            }
            _ => io_err(e),
        })?;
    let md = file.metadata().map_err(io_err)?;
    if md.is_dir() && dir_ok {
        return Ok(Opened::Directory);
    }
    if let Some(kind) = crate::image::not_regular(&md) {
        return Err(io_err(io::Error::other(format!("is not a regular file but a {kind}"))));
    }
    Ok(Opened::File(file, md))
}

/// Opens a regular file as [`open`] does.
pub fn open_file(path: &Path, links: Links) -> Result<(File, Metadata), EngineError> {
    match open(path, links, false)? {
        Opened::File(f, md) => Ok((f, md)),
        Opened::Directory => unreachable!("open refuses a directory unless asked"),
    }
}

/// Reads a whole regular file of at most `cap` bytes (`what` says what it should be, for the
/// refusal). A larger file, sparse or not, is refused by its size before a byte is read; a file
/// that grows while it is read is refused at `cap + 1` bytes.
pub fn read_capped(path: &Path, links: Links, cap: u64, what: &str) -> Result<Vec<u8>, EngineError> {
    let (file, md) = open_file(path, links)?;
    let too_large = |size: u64| EngineError::Io {
        path: crate::image::display_path(path),
        source: io::Error::other(format!(
            "is {size} bytes, more than the {cap} bytes a {what} may have: not a {what}"
        )),
    };
    if md.len() > cap {
        return Err(too_large(md.len()));
    }
    let mut bytes = Vec::with_capacity(criu_cet_format::addr::usize_from(md.len()));
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| EngineError::Io { path: crate::image::display_path(path), source })?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_text(path: &Path, links: Links, cap: u64, what: &str) -> Result<String, EngineError> {
    let bytes = read_capped(path, links, cap, what)?;
    String::from_utf8(bytes).map_err(|e| EngineError::Io {
        path: crate::image::display_path(path),
        source: io::Error::other(format!(
            "is not UTF-8 text (byte {}): not a {what}",
            e.utf8_error().valid_up_to()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_to_a_device_is_refused_on_the_opened_file() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("pstree.img");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_capped(&link, Links::Follow, 1 << 20, "pstree image").unwrap_err().to_string();
        assert!(e.contains("not a regular file but a character device"), "{e}");
        let e = read_capped(&link, Links::Refuse, 1 << 20, "pstree image").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn a_sparse_file_over_the_cap_is_refused_by_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("host.json");
        File::create(&p).unwrap().set_len(3 << 30).unwrap();
        let e = read_capped(&p, Links::Refuse, 1 << 16, "host profile").unwrap_err().to_string();
        assert!(e.contains("3221225472 bytes, more than the 65536"), "{e}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_capped(&fifo, Links::Follow, 1 << 16, "host profile").unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
    }
}
