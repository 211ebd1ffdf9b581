//! The inputs that hold cet images: one image file, a CRIU image directory, or a checkpoint
//! archive as `podman container checkpoint --export` writes it (and the kubelet's checkpoint
//! API returns): a tar, plain or compressed with gzip or zstd, holding the CRIU image directory
//! under `checkpoint/` beside Podman's own files (config.dump, spec.dump, rootfs-diff.tar...).
//!
//! Archives are read as one stream and never unpacked: every member that is not a cet image is
//! read through and dropped, and a cet image member (`cet-<N>.img`) is read into memory only
//! up to [`MAX_ARCHIVED_IMAGE`] bytes, then validated from there like a file. The kind of input
//! is told by its first bytes, never by its name. A hostile archive (names with `..` or a
//! leading `/`, links where an image or its directory belongs, huge or truncated members, an
//! image twice, names that are not UTF-8) gets an [`InputError`] naming the member.

use crate::error::EngineError;
use crate::image;
use criu_cet_format::{FormatError, ImageReader};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The largest cet image read from an archive (into memory). Typical images are a few KiB; a
/// dense 64 MiB bitmap codes to about 5 MiB. A larger member is refused with its size: extract
/// it and check the file, which is read from disk without this limit.
pub const MAX_ARCHIVED_IMAGE: u64 = 64 << 20;

/// The most bytes the tar headers in front of one member may take (its header, GNU long-name
/// and pax records), so that a hostile archive cannot make the tar reader buffer a huge one.
pub const MAX_MEMBER_HEADERS: u64 = 1 << 20;

/// The largest zstd window accepted (2^25 = 32 MiB): the decoder allocates it. Podman writes
/// 8 MiB windows, the zstd tool at most 8 MiB below `--ultra` levels.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// The most links an archive may hold (their names are kept, to refuse a link where a directory
/// holding images belongs). A checkpoint archive has none outside its nested tars.
pub const MAX_LINKS: usize = 1 << 16;

/// The magic of a cet image (docs/FORMAT.md 2.1).
const IMAGE_MAGIC: &[u8; 8] = b"\x89CET\r\n\x1a\n";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// "ustar" at offset 257 of a tar header (POSIX "ustar\0", GNU "ustar ").
const TAR_MAGIC_AT: usize = 257;

/// How a checkpoint archive's tar is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// What the path given on the command line holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// One cet image file.
    Image,
    /// A CRIU image directory (its `cet-<N>.img` files).
    Directory,
    /// A checkpoint archive (a tar, possibly compressed).
    Archive(Compression),
}

impl InputKind {
    /// One word for it: `image`, `directory` or `archive`.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Image => "image",
            InputKind::Directory => "directory",
            InputKind::Archive(_) => "archive",
        }
    }

    /// What it is in words for messages, e.g. "checkpoint archive (zstd-compressed tar)".
    pub fn describe(self) -> &'static str {
        match self {
            InputKind::Image => "cet image",
            InputKind::Directory => "CRIU image directory",
            InputKind::Archive(Compression::None) => "checkpoint archive (tar)",
            InputKind::Archive(Compression::Gzip) => "checkpoint archive (gzip-compressed tar)",
            InputKind::Archive(Compression::Zstd) => "checkpoint archive (zstd-compressed tar)",
        }
    }
}

/// One cet image found in an input.
#[derive(Clone, Debug)]
pub struct FoundImage {
    /// Its name within the input: the member path in an archive, the file name in a
    /// directory, the path as given for a single image.
    pub name: String,
    /// Its name for messages: `ARCHIVE:MEMBER`, `DIR/FILE` or the path as given.
    pub display: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Found in a directory or archive (named as CRIU's plugin names it), not given by path.
    pub in_checkpoint: bool,
}

impl FoundImage {
    /// The file name of an image found in a directory or archive (`cet-<N>.img`); none for an
    /// image given by its path, whose name is the user's.
    pub fn file_name(&self) -> Option<&str> {
        self.in_checkpoint.then(|| self.name.rsplit('/').next().unwrap_or(&self.name))
    }
}

/// What reading an input found.
#[derive(Clone, Debug)]
pub struct Listing {
    /// What the input is.
    pub kind: InputKind,
    /// Every cet image, in the order visited.
    pub images: Vec<String>,
    /// Whether a CRIU `inventory.img` was seen: the input is a checkpoint, with or without
    /// cet images.
    pub inventory: bool,
}

/// Receives every cet image of an input, validated (every checksum, table and block).
pub trait ImageVisitor {
    /// Called once, before any image, with what the input was found to be.
    fn begin(&mut self, _input: &Path, _kind: InputKind) {}
    /// Called for each image, validated, in the order found; an error stops the walk.
    fn image<R: Read + Seek>(
        &mut self,
        found: &FoundImage,
        r: &mut ImageReader<R>,
    ) -> Result<(), EngineError>;
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
        source: io::Error,
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
    fn read(path: &Path, what: String, source: io::Error) -> InputError {
        let next = if source.to_string().contains("too much memory") {
            "the zstd frame needs a window over 32 MiB (zstd --long or --ultra levels): recompress \
             the archive with an ordinary level"
        } else {
            "the archive is damaged or truncated: copy it again"
        };
        InputError::Read { path: path.to_path_buf(), what, source, next }
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "none (the file is empty)".into();
    }
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// Tells what `path` holds by its first bytes (a directory by its metadata).
pub fn kind_of(path: &Path) -> Result<InputKind, EngineError> {
    let io_err = |source| EngineError::Io { path: path.to_path_buf(), source };
    let md = std::fs::metadata(path).map_err(io_err)?;
    if md.is_dir() {
        return Ok(InputKind::Directory);
    }
    if !md.is_file() {
        // A FIFO or device would block or never end: only files are read.
        let kind = crate::image::not_regular(&md).unwrap_or("special file");
        return Err(io_err(io::Error::other(format!(
            "is not a regular file but a {kind}: give an image, a CRIU image directory or a checkpoint archive"
        ))));
    }
    let mut head = Vec::with_capacity(512);
    File::open(path).map_err(io_err)?.take(512).read_to_end(&mut head).map_err(io_err)?;
    if head.starts_with(IMAGE_MAGIC) {
        Ok(InputKind::Image)
    } else if head.starts_with(GZIP_MAGIC) {
        Ok(InputKind::Archive(Compression::Gzip))
    } else if head.starts_with(ZSTD_MAGIC) {
        Ok(InputKind::Archive(Compression::Zstd))
    } else if is_tar_header(&head) {
        Ok(InputKind::Archive(Compression::None))
    } else {
        Err(InputError::NotRecognized { path: path.to_path_buf(), first: hex_prefix(&head) }.into())
    }
}

fn is_tar_header(block: &[u8]) -> bool {
    block.len() >= TAR_MAGIC_AT + 5 && &block[TAR_MAGIC_AT..TAR_MAGIC_AT + 5] == b"ustar"
}

/// `cet-<N>.img`, N decimal.
pub fn is_image_name(file_name: &str) -> bool {
    file_name
        .strip_prefix("cet-")
        .and_then(|s| s.strip_suffix(".img"))
        .is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Visits every cet image in `path` (an image, a directory or an archive), in order: by pid in
/// a directory, as stored in an archive.
pub fn for_each_image<V: ImageVisitor>(path: &Path, visitor: &mut V) -> Result<Listing, EngineError> {
    let kind = kind_of(path)?;
    visitor.begin(path, kind);
    match kind {
        InputKind::Image => {
            let mut r = image::open(path)?;
            let display = path.display().to_string();
            let found = FoundImage {
                name: display.clone(),
                display,
                bytes: r.summary().file_bytes,
                in_checkpoint: false,
            };
            visitor.image(&found, &mut r)?;
            Ok(Listing { kind: InputKind::Image, images: vec![found.name], inventory: false })
        }
        InputKind::Directory => directory(path, visitor),
        InputKind::Archive(c) => archive(path, c, visitor),
    }
}

fn directory<V: ImageVisitor>(dir: &Path, visitor: &mut V) -> Result<Listing, EngineError> {
    let io_err = |source| EngineError::Io { path: dir.to_path_buf(), source };
    let mut names = Vec::new();
    let mut inventory = false;
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        // A name that is not UTF-8 cannot be `cet-<N>.img`.
        let Ok(name) = entry.file_name().into_string() else { continue };
        inventory |= name == "inventory.img";
        if is_image_name(&name) {
            names.push(name);
        }
    }
    names.sort_by_key(|n| (n.len(), n.clone()));
    for name in &names {
        let path = dir.join(name);
        // Opened without following links, checked to be a regular file, fully validated.
        let mut r = image::open(&path)?;
        let found = FoundImage {
            name: name.clone(),
            display: path.display().to_string(),
            bytes: r.summary().file_bytes,
            in_checkpoint: true,
        };
        visitor.image(&found, &mut r)?;
    }
    if names.is_empty() && !inventory {
        let hint = if dir.join("checkpoint").is_dir() {
            " (an unpacked checkpoint archive keeps its images in checkpoint/: give that directory)"
        } else {
            ""
        };
        return Err(InputError::NotCheckpoint { path: dir.to_path_buf(), hint }.into());
    }
    Ok(Listing { kind: InputKind::Directory, images: names, inventory })
}

/// The archive stream as the tar reader sees it. While `limit` holds a budget, reads past it
/// fail: that bounds what the tar reader buffers for one member's headers.
struct Budgeted<R> {
    inner: R,
    limit: Rc<Cell<Option<u64>>>,
    /// Bytes read since the counter was last reset.
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.limit.get() {
            Some(0) => {
                return Err(io::Error::other("tar headers exceed the limit"));
            }
            Some(left) => buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..want])?;
        if let Some(left) = self.limit.get() {
            self.limit.set(Some(left - n as u64));
        }
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

fn decompressor(file: File, c: Compression) -> io::Result<Box<dyn Read>> {
    let file = BufReader::with_capacity(1 << 16, file);
    Ok(match c {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(file)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
    })
}

/// A member's name, normalized (no `.` components, no repeated or trailing `/`), or why it is
/// refused.
fn member_name(raw: &[u8]) -> Result<String, (String, &'static str)> {
    let Ok(s) = std::str::from_utf8(raw) else {
        return Err((String::from_utf8_lossy(raw).into_owned(), "its name is not UTF-8"));
    };
    if s.starts_with('/') {
        return Err((s.into(), "an absolute path"));
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err((s.into(), "a name with a `..` component, pointing outside the archive")),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// The directories above `name` (`a/b/c` gives `a/b` and `a`).
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('/').map(move |(i, _)| &name[..i])
}

fn entry_kind(t: tar::EntryType) -> &'static str {
    match t {
        t if t.is_symlink() => "symbolic link",
        t if t.is_hard_link() => "hard link",
        t if t.is_dir() => "directory",
        t if t.is_fifo() => "FIFO",
        t if t.is_character_special() => "character device",
        t if t.is_block_special() => "block device",
        t if t.is_gnu_sparse() => "GNU sparse file",
        _ => "member of an unknown type",
    }
}

/// Reads `entry` to its end without keeping it; fails if the stream ends early.
fn drain(entry: &mut impl Read, size: u64, path: &Path, member: &str) -> Result<(), InputError> {
    let got = io::copy(entry, &mut io::sink())
        .map_err(|source| InputError::read(path, format!("reading member {member}"), source))?;
    if got != size {
        return Err(InputError::Truncated {
            path: path.into(),
            what: format!("member {member}"),
            expected: size,
            got,
        });
    }
    Ok(())
}

fn archive<V: ImageVisitor>(path: &Path, c: Compression, visitor: &mut V) -> Result<Listing, EngineError> {
    let io_err = |source| EngineError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_err)?;
    let stream = decompressor(file, c).map_err(io_err)?;
    let limit = Rc::new(Cell::new(None));
    let read = Rc::new(Cell::new(0u64));
    let mut tar = tar::Archive::new(Budgeted { inner: stream, limit: limit.clone(), read: read.clone() });
    let read_err = |what: String, source| InputError::read(path, what, source);
    let mut entries = tar.entries().map_err(|e| read_err("reading the archive".into(), e))?;

    let mut listing = Listing { kind: InputKind::Archive(c), images: Vec::new(), inventory: false };
    let mut seen_images = HashSet::new();
    // Directories that hold cet images, and links, to refuse a link where such a directory is.
    let mut image_dirs: HashSet<String> = HashSet::new();
    let mut links: HashMap<String, &'static str> = HashMap::new();
    let mut last = "the start of the archive".to_string();
    let mut first = true;
    loop {
        limit.set(Some(MAX_MEMBER_HEADERS));
        read.set(0);
        let next = entries.next();
        let budget_left = limit.replace(None);
        let mut entry = match next {
            None => {
                // A proper end is a zero block (512 bytes, after the last member's padding);
                // a stream that just stops is a truncated archive.
                if read.get() < 512 {
                    return Err(InputError::NoEnd { path: path.into(), last }.into());
                }
                break;
            }
            Some(Err(_)) if budget_left == Some(0) => {
                return Err(InputError::HugeHeaders {
                    path: path.into(),
                    after: last,
                    cap: MAX_MEMBER_HEADERS,
                }
                .into());
            }
            Some(Err(e)) => {
                let what = if first {
                    "reading the first tar header".to_string()
                } else {
                    format!("reading the tar header after {last}")
                };
                return Err(read_err(what, e).into());
            }
            Some(Ok(e)) => e,
        };
        first = false;
        let name = member_name(&entry.path_bytes()).map_err(|(member, why)| InputError::BadName {
            path: path.into(),
            member,
            why,
        })?;
        let etype = entry.header().entry_type();
        let size = entry.size();
        let file_name = name.rsplit('/').next().unwrap_or("");
        last = format!("member {name}");
        listing.inventory |= file_name == "inventory.img";
        if etype.is_gnu_sparse() {
            // Sparse members can claim holes far beyond their stored bytes; no checkpoint
            // writer produces them.
            return Err(InputError::NotRegular {
                path: path.into(),
                member: name,
                kind: entry_kind(etype).into(),
            }
            .into());
        }
        if etype.is_symlink() || etype.is_hard_link() {
            let kind = entry_kind(etype);
            if is_image_name(file_name) {
                let target = entry
                    .link_name_bytes()
                    .map(|t| format!(" to {:?}", String::from_utf8_lossy(&t)))
                    .unwrap_or_default();
                return Err(InputError::LinkedImage { path: path.into(), member: name, kind, target }.into());
            }
            if image_dirs.contains(&name) {
                let image = listing
                    .images
                    .iter()
                    .find(|i| ancestors(i).any(|a| a == name))
                    .cloned()
                    .unwrap_or_default();
                return Err(InputError::LinkedDirectory { path: path.into(), link: name, kind, image }.into());
            }
            if links.len() >= MAX_LINKS {
                return Err(InputError::TooManyLinks { path: path.into(), cap: MAX_LINKS }.into());
            }
            links.insert(name.clone(), kind);
        }
        if !is_image_name(file_name) {
            drain(&mut entry, size, path, &name)?;
            continue;
        }
        if !etype.is_file() && etype != tar::EntryType::Continuous {
            return Err(InputError::NotRegular {
                path: path.into(),
                member: name,
                kind: entry_kind(etype).into(),
            }
            .into());
        }
        if let Some((link, kind)) = ancestors(&name).find_map(|a| links.get_key_value(a)) {
            let (link, kind) = (link.clone(), *kind);
            return Err(
                InputError::LinkedDirectory { path: path.into(), link, kind, image: name.clone() }.into()
            );
        }
        if size > MAX_ARCHIVED_IMAGE {
            return Err(InputError::TooLarge {
                path: path.into(),
                member: name,
                size,
                cap: MAX_ARCHIVED_IMAGE,
            }
            .into());
        }
        if !seen_images.insert(name.clone()) {
            return Err(InputError::Duplicate { path: path.into(), member: name }.into());
        }
        image_dirs.extend(ancestors(&name).map(str::to_owned));
        let mut bytes = Vec::with_capacity(criu_cet_format::addr::usize_from(size));
        entry
            .by_ref()
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| read_err(format!("reading member {name}"), e))?;
        if bytes.len() as u64 != size {
            let got = bytes.len() as u64;
            return Err(InputError::Truncated {
                path: path.into(),
                what: format!("member {name}"),
                expected: size,
                got,
            }
            .into());
        }
        let display = format!("{}:{name}", path.display());
        let image_err = |source| InputError::Image { display: display.clone(), source };
        let mut r = ImageReader::open(Cursor::new(bytes)).map_err(image_err)?;
        r.verify_blocks().map_err(image_err)?;
        let found =
            FoundImage { name: name.clone(), display: display.clone(), bytes: size, in_checkpoint: true };
        visitor.image(&found, &mut r)?;
        listing.images.push(name);
    }
    if listing.images.is_empty() && !listing.inventory {
        return Err(InputError::NotCheckpoint { path: path.into(), hint: "" }.into());
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        assert!(is_image_name("cet-1.img"));
        assert!(is_image_name("cet-4194304.img"));
        for bad in ["cet-.img", "cet-1.img.tmp", ".cet-1.img.x.tmp", "cet-x.img", "cet--1.img", "pages-1.img"]
        {
            assert!(!is_image_name(bad), "{bad}");
        }
    }

    #[test]
    fn member_names_are_normalized_or_refused() {
        assert_eq!(member_name(b"./checkpoint//cet-1.img").unwrap(), "checkpoint/cet-1.img");
        assert_eq!(member_name(b"checkpoint/./cet-1.img").unwrap(), "checkpoint/cet-1.img");
        assert!(member_name(b"/etc/passwd").is_err());
        assert!(member_name(b"checkpoint/../../cet-1.img").is_err());
        assert!(member_name(b"checkpoint/\xffcet-1.img").is_err());
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
    }
}
