//! The fixed-layout records around the serialized metadata: header, section table, footer, run
//! and block records. All integers little-endian. docs/FORMAT.md section 2 is the authority.

use crate::error::FormatError;

/// The 8 bytes every image starts with.
pub const MAGIC: [u8; 8] = *b"\x89CET\r\n\x1a\n";
/// The 8 bytes the footer (the last 32 bytes of an image) starts with.
pub const FOOTER_MAGIC: [u8; 8] = *b"\x89CETEND\n";
/// The major format version this crate reads and writes; a different major is refused.
pub const MAJOR: u16 = 1;
/// The minor format version this crate writes; a reader accepts any minor of `MAJOR`.
pub const MINOR: u16 = 3;
/// Size in bytes of the header.
pub const HEADER_SIZE: usize = 64;
/// The header's size as its own field holds it.
const HEADER_SIZE_U32: u32 = 64;
const _: () = assert!(HEADER_SIZE_U32 as usize == HEADER_SIZE);
/// Size in bytes of the footer.
pub const FOOTER_SIZE: usize = 32;
/// Size in bytes of one section table entry.
pub const SECTION_ENTRY_SIZE: usize = 32;
/// Size in bytes of one run record in the RUNS section.
pub const RUN_RECORD_SIZE: usize = 32;
/// Size in bytes of one block record in the BLOCKS section.
pub const BLOCK_RECORD_SIZE: usize = 16;
/// Incompatible flag (1.1): each data page in a block is coded (`coding`: a tag, then its bit
/// runs or its bytes) rather than stored as its 4096 bytes. Writers of 1.1 always set it.
pub const INCOMPAT_PAGE_CODING: u64 = 1;
/// Incompatible feature flags this reader understands.
pub const KNOWN_INCOMPAT: u64 = INCOMPAT_PAGE_CODING;
/// Most sections a file may list.
pub const MAX_SECTIONS: u32 = 64;
/// Bounds on pages per zstd block: one block is the unit of memory a reader or writer holds.
pub const MAX_BLOCK_PAGES: u32 = 256;
/// Largest META section a reader accepts (bincode decodes with this allocation limit too).
pub const MAX_META_LEN: u64 = 16 << 20;

/// Section kind: the serialized metadata.
pub const SECTION_META: u32 = 1;
/// Section kind: the zstd blocks of page data.
pub const SECTION_DATA: u32 = 2;
/// Section kind: the run table.
pub const SECTION_RUNS: u32 = 3;
/// Section kind: the block table.
pub const SECTION_BLOCKS: u32 = 4;
/// Section flag: a reader that does not know this kind must refuse the file.
pub const SECTION_REQUIRED: u32 = 1;

/// The name of a section kind for messages, e.g. "RUNS section".
pub fn section_name(kind: u32) -> &'static str {
    match kind {
        SECTION_META => "META section",
        SECTION_DATA => "DATA section",
        SECTION_RUNS => "RUNS section",
        SECTION_BLOCKS => "BLOCKS section",
        _ => "unknown section",
    }
}

/// CRC-32C (Castagnoli), the checksum every part of an image carries.
pub fn crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The first 64 bytes of every image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Major format version.
    pub major: u16,
    /// Minor format version.
    pub minor: u16,
    /// Features a reader must know to read the file (`KNOWN_INCOMPAT`).
    pub incompat_flags: u64,
    /// Features a reader may ignore.
    pub compat_flags: u64,
    /// Data pages per zstd block, 1..=`MAX_BLOCK_PAGES`.
    pub block_pages: u32,
}

impl Header {
    /// Whether data pages are coded (`INCOMPAT_PAGE_CODING`) rather than stored verbatim.
    pub fn page_coding(&self) -> bool {
        self.incompat_flags & INCOMPAT_PAGE_CODING != 0
    }

    /// Most bytes a block of `pages` data pages may inflate to: its frame content.
    pub fn max_frame_content(&self, pages: usize) -> usize {
        let verbatim = crate::addr::PAGE_BYTES;
        let per_page = if self.page_coding() { crate::coding::MAX_CODED_PAGE } else { verbatim };
        pages * per_page
    }

    /// The header's 64 bytes, its checksum included.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&HEADER_SIZE_U32.to_le_bytes());
        b[16..24].copy_from_slice(&self.incompat_flags.to_le_bytes());
        b[24..32].copy_from_slice(&self.compat_flags.to_le_bytes());
        b[32..36].copy_from_slice(&(crate::coding::PAGE_BITS / 8).to_le_bytes());
        b[36..40].copy_from_slice(&self.block_pages.to_le_bytes());
        let c = crc(&b[..60]);
        b[60..64].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Decodes and checks a header: magic first, then the checksum, then the version (so that a
    /// newer file is named as such), then the fields this major version fixes.
    pub fn decode(b: &[u8; HEADER_SIZE]) -> Result<Header, FormatError> {
        if b[0..8] != MAGIC {
            return Err(FormatError::BadMagic {
                what: "header",
                offset: 0,
                expected: hex(&MAGIC),
                found: hex(&b[0..8]),
            });
        }
        let stored = u32_at(b, 60);
        let computed = crc(&b[..60]);
        if stored != computed {
            return Err(FormatError::Checksum {
                what: "header".into(),
                offset: 0,
                length: 60,
                stored,
                computed,
            });
        }
        let h = Header {
            major: u16_at(b, 8),
            minor: u16_at(b, 10),
            incompat_flags: u64_at(b, 16),
            compat_flags: u64_at(b, 24),
            block_pages: u32_at(b, 36),
        };
        if h.major != MAJOR {
            return Err(FormatError::UnsupportedVersion { major: h.major, minor: h.minor, supported: MAJOR });
        }
        if h.incompat_flags & !KNOWN_INCOMPAT != 0 {
            return Err(FormatError::UnknownIncompatFlags { flags: h.incompat_flags, known: KNOWN_INCOMPAT });
        }
        let header_size = u32_at(b, 12);
        if header_size as usize != HEADER_SIZE {
            return Err(FormatError::invalid(
                "header_size",
                12,
                HEADER_SIZE.to_string(),
                header_size.to_string(),
            ));
        }
        let page_size = u32_at(b, 32);
        if u64::from(page_size) != crate::addr::PAGE_SIZE {
            return Err(FormatError::invalid("page_size", 32, "4096", page_size.to_string()));
        }
        if !(1..=MAX_BLOCK_PAGES).contains(&h.block_pages) {
            return Err(FormatError::invalid(
                "block_pages",
                36,
                format!("1..={MAX_BLOCK_PAGES}"),
                h.block_pages.to_string(),
            ));
        }
        Ok(h)
    }
}

/// One entry of the section table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionEntry {
    /// `SECTION_META`, `SECTION_DATA`, `SECTION_RUNS` or `SECTION_BLOCKS`.
    pub kind: u32,
    /// `SECTION_REQUIRED` or 0.
    pub flags: u32,
    /// File offset of the section's first byte.
    pub offset: u64,
    /// Length of the section in bytes.
    pub length: u64,
    /// CRC-32C of the section's bytes.
    pub crc: u32,
}

impl SectionEntry {
    /// The entry's 32 bytes.
    pub fn encode(&self) -> [u8; SECTION_ENTRY_SIZE] {
        let mut b = [0u8; SECTION_ENTRY_SIZE];
        b[0..4].copy_from_slice(&self.kind.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.length.to_le_bytes());
        b[24..28].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Reads an entry from its 32 bytes; checking it against the file is the reader's job.
    pub fn decode(b: &[u8]) -> SectionEntry {
        SectionEntry {
            kind: u32_at(b, 0),
            flags: u32_at(b, 4),
            offset: u64_at(b, 8),
            length: u64_at(b, 16),
            crc: u32_at(b, 24),
        }
    }
}

/// The last 32 bytes of every image: where the section table is, and a checksum over the table
/// and the footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// File offset of the section table.
    pub table_offset: u64,
    /// Number of entries in the section table.
    pub section_count: u32,
}

impl Footer {
    /// Encodes the footer; `table` is the encoded section table it describes.
    pub fn encode(&self, table: &[u8]) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[0..8].copy_from_slice(&FOOTER_MAGIC);
        b[8..16].copy_from_slice(&self.table_offset.to_le_bytes());
        b[16..20].copy_from_slice(&self.section_count.to_le_bytes());
        let mut h = crc32c::crc32c(table);
        h = crc32c::crc32c_append(h, &b[..28]);
        b[28..32].copy_from_slice(&h.to_le_bytes());
        b
    }

    /// Decodes the footer's fixed fields (its checksum is checked once the table is read).
    pub fn decode(b: &[u8; FOOTER_SIZE], offset: u64) -> Result<(Footer, u32), FormatError> {
        if b[0..8] != FOOTER_MAGIC {
            return Err(FormatError::BadMagic {
                what: "footer",
                offset,
                expected: hex(&FOOTER_MAGIC),
                found: hex(&b[0..8]),
            });
        }
        Ok((Footer { table_offset: u64_at(b, 8), section_count: u32_at(b, 16) }, u32_at(b, 28)))
    }
}

/// What a run of bitmap pages holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Every byte 0xff: every code page it covers is legacy. No data stored.
    Ones,
    /// Page contents stored in the DATA section.
    Data,
}

impl RunKind {
    fn code(self) -> u32 {
        match self {
            RunKind::Ones => 1,
            RunKind::Data => 2,
        }
    }
}

/// One run of consecutive populated bitmap pages of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First bitmap page (bitmap offset / 4096).
    pub page: u64,
    /// Number of pages, at least 1.
    pub count: u64,
    /// Whether the pages are all ones or stored in the DATA section.
    pub kind: RunKind,
    /// For data runs, the index of its first page in the DATA page stream; 0 for ones runs.
    pub first_data_page: u64,
}

impl Run {
    /// One past the run's last bitmap page.
    pub fn end(&self) -> u64 {
        self.page.saturating_add(self.count)
    }

    /// The run's 32-byte record.
    pub fn encode(&self) -> [u8; RUN_RECORD_SIZE] {
        let mut b = [0u8; RUN_RECORD_SIZE];
        b[0..8].copy_from_slice(&self.page.to_le_bytes());
        b[8..16].copy_from_slice(&self.count.to_le_bytes());
        b[16..20].copy_from_slice(&self.kind.code().to_le_bytes());
        b[24..32].copy_from_slice(&self.first_data_page.to_le_bytes());
        b
    }

    /// Reads a run record found at file `offset`, refusing an unknown kind or a nonzero reserved
    /// field; whether the run fits the table is the reader's check.
    pub fn decode(b: &[u8], offset: u64) -> Result<Run, FormatError> {
        let kind = match u32_at(b, 16) {
            1 => RunKind::Ones,
            2 => RunKind::Data,
            k => {
                return Err(FormatError::invalid(
                    "run kind",
                    offset + 16,
                    "1 (ones) or 2 (data)",
                    k.to_string(),
                ))
            }
        };
        let reserved = u32_at(b, 20);
        if reserved != 0 {
            return Err(FormatError::invalid("run reserved field", offset + 20, "0", reserved.to_string()));
        }
        Ok(Run { page: u64_at(b, 0), count: u64_at(b, 8), kind, first_data_page: u64_at(b, 24) })
    }
}

/// Where one zstd block lives in the DATA section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Offset from the start of the DATA section.
    pub offset: u64,
    /// Length in bytes of the block's zstd frame.
    pub compressed_len: u32,
    /// CRC-32C of the block's pages (`n * 4096` bytes, after decoding).
    pub raw_crc: u32,
}

impl Block {
    /// The block's 16-byte record.
    pub fn encode(&self) -> [u8; BLOCK_RECORD_SIZE] {
        let mut b = [0u8; BLOCK_RECORD_SIZE];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.compressed_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.raw_crc.to_le_bytes());
        b
    }

    /// Reads a block record from its 16 bytes; checking it is the reader's job.
    pub fn decode(b: &[u8]) -> Block {
        Block { offset: u64_at(b, 0), compressed_len: u32_at(b, 8), raw_crc: u32_at(b, 12) }
    }
}

/// Largest compressed size a block of `raw_len` bytes may have (zstd's worst-case bound).
pub fn max_compressed_len(raw_len: usize) -> usize {
    zstd::zstd_safe::compress_bound(raw_len)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
