//! The inputs that hold cet images: one image file, a CRIU image directory, or a checkpoint
//! archive as `podman container checkpoint --export` writes it (and the kubelet's checkpoint
//! API returns): a tar, plain or compressed with gzip or zstd, holding the CRIU image directory
//! under `checkpoint/` beside Podman's own files (config.dump, spec.dump, rootfs-diff.tar...).
//!
//! Archives are read as one stream and never unpacked: every member that is not a cet image is
//! read through and dropped, and a cet image member (`cet-<N>.img`) is read into memory only
//! up to [`MAX_ARCHIVED_IMAGE`] bytes, then validated from there like a file. The kind of input
//! is told by its first bytes, never by its name. Three parts: the walk (this module) reads the
//! stream with the tar crate; `headers` reads each member's headers again as GNU tar does and
//! refuses the archive where the two readings differ; `policy` decides on each member (pure).
//! A hostile archive (names with `..` or a leading `/`, names longer than PATH_MAX, links where
//! an image or its directory belongs, huge or truncated members, an image twice, names that are
//! not UTF-8, pax records said twice) gets an [`InputError`] naming the member.

mod headers;
pub mod policy;

use crate::error::EngineError;
pub use crate::error::InputError;
use crate::image;
use crate::input::{self, Links, Opened};
use criu_cet_format::addr::usize_from;
use criu_cet_format::ImageReader;
use policy::{Admit, Member, MemberKind, MemberPolicy};
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek};
use std::path::Path;
use std::rc::Rc;

/// The largest cet image read from an archive (into memory). Typical images are a few KiB; a
/// dense 64 MiB bitmap codes to about 5 MiB. A larger member is refused with its size: extract
/// it and check the file, which is read from disk without this limit. With the zstd window
/// below, this keeps a reading of any archive under 64 MiB (docs/RELIABILITY.md).
pub const MAX_ARCHIVED_IMAGE: u64 = 16 << 20;

/// The most bytes the tar headers in front of one member may take (its header, GNU long-name
/// and pax records), so that a hostile archive cannot make the tar reader buffer a huge one.
pub const MAX_MEMBER_HEADERS: u64 = 1 << 20;

/// The largest zstd window accepted (2^24 = 16 MiB): the decoder allocates it. Podman writes
/// 8 MiB windows, the zstd tool at most 8 MiB below `--ultra` levels.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// The longest member name or link target read (Linux's PATH_MAX, with its NUL): no tool
/// extracts a longer one.
pub const MAX_MEMBER_NAME: usize = 4095;

/// The most cet images a directory may hold (each is listed by name).
pub const MAX_DIRECTORY_IMAGES: usize = 1 << 16;

pub use policy::MAX_LINKS;

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

fn hex_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "none (the file is empty)".into();
    }
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// What an input turned out to be, opened once.
enum Input {
    Image(File),
    Directory,
    Archive(File, Compression),
}

/// Opens `path` once (never through a link: a name given must be the file or directory
/// itself) and tells what it holds by its first bytes, read from the opened file.
fn open_input(path: &Path) -> Result<Input, EngineError> {
    let io_err = |source| EngineError::Io { path: path.to_path_buf(), source };
    let mut file = match input::open(path, Links::Refuse, true)? {
        Opened::Directory => return Ok(Input::Directory),
        Opened::File(f, _) => f,
    };
    let mut head = Vec::with_capacity(512);
    (&mut file).take(512).read_to_end(&mut head).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    if head.starts_with(IMAGE_MAGIC) {
        Ok(Input::Image(file))
    } else if head.starts_with(GZIP_MAGIC) {
        Ok(Input::Archive(file, Compression::Gzip))
    } else if head.starts_with(ZSTD_MAGIC) {
        Ok(Input::Archive(file, Compression::Zstd))
    } else if is_tar_header(&head) {
        Ok(Input::Archive(file, Compression::None))
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
    match open_input(path)? {
        Input::Image(file) => {
            visitor.begin(path, InputKind::Image);
            let mut r = image::read_verified(BufReader::with_capacity(1 << 16, file), path)?;
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
        Input::Directory => {
            visitor.begin(path, InputKind::Directory);
            directory(path, visitor)
        }
        Input::Archive(file, c) => {
            visitor.begin(path, InputKind::Archive(c));
            archive(path, file, c, visitor)
        }
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
            if names.len() == MAX_DIRECTORY_IMAGES {
                return Err(InputError::TooManyImages {
                    path: dir.to_path_buf(),
                    cap: MAX_DIRECTORY_IMAGES,
                    what: "cet images",
                }
                .into());
            }
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

/// What the tar reader reads of the stream while it looks for the next member: its header
/// blocks, kept (at most `MAX_MEMBER_HEADERS` bytes, then reads fail) for `headers` to read
/// them again.
#[derive(Default)]
struct HeaderBytes {
    /// Whether the tar reader is between members (reading headers).
    active: bool,
    bytes: Vec<u8>,
}

/// The archive stream as the tar reader sees it.
struct Recorded<R> {
    inner: R,
    headers: Rc<RefCell<HeaderBytes>>,
}

impl<R: Read> Read for Recorded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut h = self.headers.borrow_mut();
        if !h.active {
            return self.inner.read(buf);
        }
        let left = usize_from(MAX_MEMBER_HEADERS).saturating_sub(h.bytes.len());
        if left == 0 {
            return Err(io::Error::other("tar headers exceed the limit"));
        }
        let want = buf.len().min(left);
        let n = self.inner.read(&mut buf[..want])?;
        h.bytes.extend_from_slice(&buf[..n]);
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

/// A name for messages: at most 120 bytes of it.
fn shown(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(&raw[..raw.len().min(120)]).into_owned();
    if raw.len() > 120 {
        format!("{s}...")
    } else {
        s
    }
}

/// A member's name, normalized (no `.` components, no repeated or trailing `/`), or why it is
/// refused.
fn member_name(raw: &[u8]) -> Result<String, (String, &'static str)> {
    let Ok(s) = std::str::from_utf8(raw) else {
        return Err((shown(raw), "its name is not UTF-8"));
    };
    if s.starts_with('/') {
        return Err((shown(raw), "an absolute path"));
    }
    let mut out = String::with_capacity(s.len());
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err((shown(raw), "a name with a `..` component, pointing outside the archive")),
            c => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    Ok(out)
}

fn member_kind(t: tar::EntryType) -> MemberKind {
    match t {
        t if t.is_file() || t == tar::EntryType::Continuous => MemberKind::Regular,
        t if t.is_symlink() => MemberKind::Symlink,
        t if t.is_hard_link() => MemberKind::HardLink,
        t if t.is_dir() => MemberKind::Directory,
        t if t.is_gnu_sparse() => MemberKind::Sparse,
        t if t.is_fifo() => MemberKind::Other("FIFO"),
        t if t.is_character_special() => MemberKind::Other("character device"),
        t if t.is_block_special() => MemberKind::Other("block device"),
        t if t.is_pax_global_extensions() => MemberKind::Other("pax global header"),
        _ => MemberKind::Other("member of an unknown type"),
    }
}

/// Reads `entry` to its end, keeping nothing; fails if the stream ends early.
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

/// A pax global header applies to every member after it: one that names files, gives sizes or
/// makes them sparse is read differently by different tools, so it is refused.
fn global_header(body: &[u8], path: &Path, member: &str) -> Result<(), InputError> {
    let ambiguous = |why: String| InputError::Ambiguous { path: path.into(), member: member.into(), why };
    for r in headers::pax_records(body).map_err(ambiguous)? {
        if matches!(r.key.as_str(), "path" | "linkpath" | "size") || r.key.starts_with("GNU.sparse.") {
            return Err(ambiguous(format!("a pax global header sets `{}` for every member after it", r.key)));
        }
    }
    Ok(())
}

fn archive<V: ImageVisitor>(
    path: &Path,
    file: File,
    c: Compression,
    visitor: &mut V,
) -> Result<Listing, EngineError> {
    let io_err = |source| EngineError::Io { path: path.to_path_buf(), source };
    let stream = decompressor(file, c).map_err(io_err)?;
    let recorded = Rc::new(RefCell::new(HeaderBytes::default()));
    let mut tar = tar::Archive::new(Recorded { inner: stream, headers: recorded.clone() });
    let read_err = |what: String, source| InputError::read(path, what, source);
    let mut entries = tar.entries().map_err(|e| read_err("reading the archive".into(), e))?;

    let mut policy = MemberPolicy::new(path);
    let mut last = "the start of the archive".to_string();
    // Bytes of the previous member's padding in front of the next header.
    let mut padding = 0usize;
    loop {
        *recorded.borrow_mut() = HeaderBytes { active: true, bytes: Vec::new() };
        let next = entries.next();
        let chain = std::mem::take(&mut *recorded.borrow_mut());
        let mut entry = match next {
            None => {
                // A proper end is a zero block (512 bytes, after the last member's padding);
                // a stream that just stops is a truncated archive.
                if chain.bytes.len() < padding + 512 {
                    return Err(InputError::NoEnd { path: path.into(), last }.into());
                }
                break;
            }
            Some(Err(_)) if chain.bytes.len() as u64 >= MAX_MEMBER_HEADERS => {
                return Err(InputError::HugeHeaders {
                    path: path.into(),
                    after: last,
                    cap: MAX_MEMBER_HEADERS,
                }
                .into());
            }
            Some(Err(e)) => {
                let what = if last == "the start of the archive" {
                    "reading the first tar header".to_string()
                } else {
                    format!("reading the tar header after {last}")
                };
                return Err(read_err(what, e).into());
            }
            Some(Ok(e)) => e,
        };
        let raw_name = entry.path_bytes().into_owned();
        if raw_name.len() > MAX_MEMBER_NAME {
            return Err(InputError::LongName {
                path: path.into(),
                member: shown(&raw_name),
                what: "name",
                len: raw_name.len(),
                cap: MAX_MEMBER_NAME,
            }
            .into());
        }
        let name = member_name(&raw_name).map_err(|(member, why)| InputError::BadName {
            path: path.into(),
            member,
            why,
        })?;
        let size = entry.size();
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        if let Some(l) = link.as_ref().filter(|l| l.len() > MAX_MEMBER_NAME) {
            return Err(InputError::LongName {
                path: path.into(),
                member: name,
                what: "link target",
                len: l.len(),
                cap: MAX_MEMBER_NAME,
            }
            .into());
        }
        // The same headers as GNU tar reads them must give the same member.
        let ambiguous = |why: String| InputError::Ambiguous { path: path.into(), member: name.clone(), why };
        let gnu = headers::read_chain(chain.bytes.get(padding..).unwrap_or_default()).map_err(ambiguous)?;
        let type_flag = entry.header().entry_type().as_byte();
        let link_here = matches!(type_flag, b'1' | b'2');
        if gnu.name != *raw_name
            || gnu.size != size
            || gnu.type_flag != type_flag
            || (link_here && gnu.link != link.clone().unwrap_or_default())
        {
            return Err(ambiguous(format!(
                "GNU tar reads its headers as {:?} ({} bytes){}",
                shown(&gnu.name),
                gnu.size,
                if link_here { format!(" linking to {:?}", shown(&gnu.link)) } else { String::new() }
            ))
            .into());
        }
        padding = usize_from(size.next_multiple_of(512) - size);
        last = format!("member {name}");
        let kind = member_kind(entry.header().entry_type());
        if entry.header().entry_type().is_pax_global_extensions() {
            if size > MAX_MEMBER_HEADERS {
                return Err(InputError::HugeHeaders {
                    path: path.into(),
                    after: last,
                    cap: MAX_MEMBER_HEADERS,
                }
                .into());
            }
            let mut body = Vec::new();
            (&mut entry)
                .take(size)
                .read_to_end(&mut body)
                .map_err(|e| read_err(format!("reading {last}"), e))?;
            global_header(&body, path, &name)?;
            drain(&mut entry, size - body.len() as u64, path, &name)?;
            continue;
        }
        let member = Member { name, kind, size, link_target: link.as_deref().map(shown) };
        if policy.admit(&member)? == Admit::Skip {
            drain(&mut entry, size, path, &member.name)?;
            continue;
        }
        let name = member.name;
        let mut bytes = Vec::with_capacity(usize_from(size));
        (&mut entry)
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
        let found = FoundImage { name, display: display.clone(), bytes: size, in_checkpoint: true };
        visitor.image(&found, &mut r)?;
    }
    let listing = Listing { kind: InputKind::Archive(c), images: policy.images, inventory: policy.inventory };
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
    }
}
