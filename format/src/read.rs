//! The image reader. `open` checks every checksum and every structural rule before it returns,
//! reading the file once with a bounded buffer; afterwards runs and pages are read lazily, one
//! block of page data in memory at a time. No allocation is sized by an unchecked field.

use crate::addr::{usize_from, PAGE_BYTES, PAGE_SIZE};
use crate::error::FormatError;
use crate::layout::{self, Block, Footer, Header, Run, RunKind, SectionEntry};
use crate::meta::Metadata;
use crate::pipeline::{default_threads, Ordered};
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};

/// Totals over an image, computed while `open` validates it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImageSummary {
    /// Run records in the RUNS section.
    pub runs: u64,
    /// Bitmap pages in all-ones runs.
    pub ones_pages: u64,
    /// Bitmap pages in data runs.
    pub data_pages: u64,
    /// zstd blocks in the BLOCKS section.
    pub blocks: u64,
    /// Compressed bytes of page data (the DATA section).
    pub data_bytes: u64,
    /// Bytes of the whole file.
    pub file_bytes: u64,
    /// One past the highest populated bitmap page, 0 when none is populated.
    pub populated_end_page: u64,
}

/// A piece of bitmap content, in ascending page order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// `count` all-ones pages from bitmap page `page`.
    Ones {
        /// First bitmap page (bitmap offset / 4096).
        page: u64,
        /// Number of pages, at least 1.
        count: u64,
    },
    /// Consecutive data pages from bitmap page `page`; `bytes.len()` is a multiple of 4096.
    Data {
        /// First bitmap page (bitmap offset / 4096).
        page: u64,
        /// The pages' contents, 4096 bytes a page.
        bytes: &'a [u8],
    },
}

/// The content of one bitmap page.
#[derive(Debug, PartialEq, Eq)]
pub enum PageContent {
    /// Not populated: every byte 0 (no code page it covers is legacy).
    Zero,
    /// In an all-ones run: every byte 0xff.
    Ones,
    /// Stored in the DATA section: the page's 4096 bytes.
    Data(Vec<u8>),
}

const IO_CHUNK: usize = 64 << 10;

/// A validated image over a seekable source (see `open`); runs and pages are read on demand.
pub struct ImageReader<R> {
    src: R,
    header: Header,
    meta: Metadata,
    data: SectionEntry,
    runs: SectionEntry,
    blocks: SectionEntry,
    summary: ImageSummary,
    /// For reading single pages, made at the first: most readers stream blocks through the
    /// pipeline's own contexts, and making one costs a CPUID, which a VM traps.
    dctx: Option<zstd::bulk::Decompressor<'static>>,
    run_table: Table,
    block_table: Table,
    compressed: Vec<u8>,
    /// A block's frame content when pages are coded (decoded from here into `block`).
    coded: Vec<u8>,
    block: Vec<u8>,
    block_index: Option<u64>,
    threads: usize,
}

fn read_at<R: Read + Seek>(
    src: &mut R,
    offset: u64,
    buf: &mut [u8],
    doing: &'static str,
) -> Result<(), FormatError> {
    src.seek(SeekFrom::Start(offset)).map_err(FormatError::io(doing))?;
    src.read_exact(buf).map_err(FormatError::io(doing))
}

impl<R: Read + Seek> ImageReader<R> {
    /// Opens and validates an image: header, footer, section table, every section's checksum,
    /// the metadata, and the run and block tables. Nothing is trusted before it is checked.
    pub fn open(mut src: R) -> Result<Self, FormatError> {
        let file_len = src.seek(SeekFrom::End(0)).map_err(FormatError::io("finding the image size"))?;
        let min = (layout::HEADER_SIZE + layout::FOOTER_SIZE) as u64;
        if file_len < min {
            return Err(FormatError::Truncated {
                what: "header and footer",
                offset: 0,
                needed: min,
                file_len,
            });
        }
        let mut hb = [0u8; layout::HEADER_SIZE];
        read_at(&mut src, 0, &mut hb, "reading the header")?;
        let header = Header::decode(&hb)?;

        let footer_at = file_len - layout::FOOTER_SIZE as u64;
        let mut fb = [0u8; layout::FOOTER_SIZE];
        read_at(&mut src, footer_at, &mut fb, "reading the footer")?;
        let (footer, footer_crc) = Footer::decode(&fb, footer_at).map_err(|e| match e {
            FormatError::BadMagic { offset, expected, found, .. } => FormatError::invalid(
                "footer magic",
                offset,
                expected,
                format!("{found}: the image is truncated or was never finished"),
            ),
            e => e,
        })?;
        if footer.section_count > layout::MAX_SECTIONS {
            return Err(FormatError::invalid(
                "footer section_count",
                footer_at + 16,
                format!("at most {}", layout::MAX_SECTIONS),
                footer.section_count.to_string(),
            ));
        }
        let table_len = u64::from(footer.section_count) * layout::SECTION_ENTRY_SIZE as u64;
        if footer.table_offset.checked_add(table_len) != Some(footer_at) {
            return Err(FormatError::invalid(
                "footer table_offset",
                footer_at + 8,
                match footer_at.checked_sub(table_len) {
                    Some(at) => format!("{at} (the section table ends where the footer starts)"),
                    None => {
                        format!("a table of {table_len} bytes that fits before the footer at {footer_at}")
                    }
                },
                footer.table_offset.to_string(),
            ));
        }
        let mut table = vec![0u8; usize_from(table_len)];
        read_at(&mut src, footer.table_offset, &mut table, "reading the section table")?;
        let computed = crc32c::crc32c_append(crc32c::crc32c(&table), &fb[..28]);
        if computed != footer_crc {
            return Err(FormatError::Checksum {
                what: "section table and footer".into(),
                offset: footer.table_offset,
                length: table_len + 28,
                stored: footer_crc,
                computed,
            });
        }

        let mut found: [Option<SectionEntry>; 4] = [None; 4];
        let mut expected_offset = layout::HEADER_SIZE as u64;
        for (i, raw) in table.chunks_exact(layout::SECTION_ENTRY_SIZE).enumerate() {
            let at = footer.table_offset + (i * layout::SECTION_ENTRY_SIZE) as u64;
            let entry = SectionEntry::decode(raw);
            if entry.offset != expected_offset {
                return Err(FormatError::invalid(
                    format!("section {i} offset"),
                    at + 8,
                    format!("{expected_offset} (sections are contiguous, in table order)"),
                    entry.offset.to_string(),
                ));
            }
            let end = entry.offset.checked_add(entry.length).filter(|&e| e <= footer.table_offset);
            let Some(end) = end else {
                return Err(FormatError::invalid(
                    format!("section {i} length"),
                    at + 16,
                    format!(
                        "at most {} (the section table starts there)",
                        footer.table_offset.saturating_sub(entry.offset)
                    ),
                    entry.length.to_string(),
                ));
            };
            expected_offset = end;
            let slot = match entry.kind {
                layout::SECTION_META..=layout::SECTION_BLOCKS => Some((entry.kind - 1) as usize),
                _ if entry.flags & layout::SECTION_REQUIRED != 0 => {
                    return Err(FormatError::invalid(
                        format!("section {i} kind"),
                        at,
                        "a kind this reader knows (1-4), or an optional section",
                        format!("required section kind {}: use a newer criu-cet", entry.kind),
                    ))
                }
                _ => None,
            };
            if let Some(slot) = slot {
                if found[slot].replace(entry).is_some() {
                    return Err(FormatError::invalid(
                        format!("section {i} kind"),
                        at,
                        "each section kind once",
                        format!("a second {}", layout::section_name(entry.kind)),
                    ));
                }
            }
            verify_section_crc(&mut src, &entry)?;
        }
        if expected_offset != footer.table_offset {
            return Err(FormatError::invalid(
                "section table",
                footer.table_offset,
                format!("sections covering bytes 64..{}", footer.table_offset),
                format!("sections ending at {expected_offset}"),
            ));
        }
        let [Some(meta_s), Some(data), Some(runs), Some(blocks)] = found else {
            let missing = (1..=4u32)
                .filter(|k| found[*k as usize - 1].is_none())
                .map(layout::section_name)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(FormatError::invalid(
                "section table",
                footer.table_offset,
                "META, DATA, RUNS and BLOCKS sections",
                format!("missing {missing}"),
            ));
        };

        if meta_s.length > layout::MAX_META_LEN {
            return Err(FormatError::invalid(
                "META section length",
                meta_s.offset,
                format!("at most {}", layout::MAX_META_LEN),
                meta_s.length.to_string(),
            ));
        }
        let mut meta_bytes = vec![0u8; usize_from(meta_s.length)];
        read_at(&mut src, meta_s.offset, &mut meta_bytes, "reading the metadata")?;
        let meta = crate::meta_codec::decode(&meta_bytes, meta_s.offset, header.minor)?;

        let block_bytes = header.block_pages as usize * PAGE_BYTES;
        let mut reader = ImageReader {
            src,
            header,
            meta,
            data,
            runs,
            blocks,
            summary: ImageSummary { data_bytes: data.length, file_bytes: file_len, ..Default::default() },
            dctx: None,
            run_table: Table::default(),
            block_table: Table::default(),
            compressed: Vec::with_capacity(layout::max_compressed_len(
                header.max_frame_content(header.block_pages as usize),
            )),
            coded: Vec::new(),
            block: vec![0u8; block_bytes],
            block_index: None,
            threads: default_threads(),
        };
        reader.validate_runs()?;
        reader.validate_blocks()?;
        Ok(reader)
    }

    fn validate_runs(&mut self) -> Result<(), FormatError> {
        let s = self.runs;
        if s.length % layout::RUN_RECORD_SIZE as u64 != 0 {
            return Err(FormatError::invalid(
                "RUNS section length",
                s.offset,
                "a multiple of 32",
                s.length.to_string(),
            ));
        }
        let bitmap_pages = self.meta.bitmap.as_ref().map_or(0, |b| b.pages());
        let count = s.length / layout::RUN_RECORD_SIZE as u64;
        let (mut prev_end, mut data_pages, mut ones_pages) = (0u64, 0u64, 0u64);
        for i in 0..count {
            let run = self.run_at(i)?;
            let at = s.offset + i * layout::RUN_RECORD_SIZE as u64;
            if run.count == 0 {
                return Err(FormatError::invalid(format!("run {i} page_count"), at + 8, "at least 1", "0"));
            }
            if run.page < prev_end {
                return Err(FormatError::invalid(
                    format!("run {i} first page"),
                    at,
                    format!("at least {prev_end:#x} (runs sorted and not overlapping)"),
                    format!("{:#x}", run.page),
                ));
            }
            let end = run.page.checked_add(run.count).filter(|&e| e <= bitmap_pages);
            let Some(end) = end else {
                return Err(FormatError::invalid(
                    format!("run {i} pages"),
                    at,
                    format!("pages inside the bitmap's {bitmap_pages:#x} pages"),
                    format!("{:#x}+{:#x}", run.page, run.count),
                ));
            };
            let expected_first = if run.kind == RunKind::Data { data_pages } else { 0 };
            if run.first_data_page != expected_first {
                return Err(FormatError::invalid(
                    format!("run {i} first_data_page"),
                    at + 24,
                    expected_first.to_string(),
                    run.first_data_page.to_string(),
                ));
            }
            match run.kind {
                RunKind::Data => data_pages += run.count,
                RunKind::Ones => ones_pages += run.count,
            }
            prev_end = end;
        }
        self.summary.runs = count;
        self.summary.data_pages = data_pages;
        self.summary.ones_pages = ones_pages;
        self.summary.populated_end_page = prev_end;
        Ok(())
    }

    fn validate_blocks(&mut self) -> Result<(), FormatError> {
        let s = self.blocks;
        let expected = self.summary.data_pages.div_ceil(u64::from(self.header.block_pages));
        if s.length != expected * layout::BLOCK_RECORD_SIZE as u64 {
            return Err(FormatError::invalid(
                "BLOCKS section length",
                s.offset,
                format!("{} ({expected} blocks for {} data pages)", expected * 16, self.summary.data_pages),
                s.length.to_string(),
            ));
        }
        let mut next = 0u64;
        for j in 0..expected {
            let b = self.block_at(j)?;
            let at = s.offset + j * layout::BLOCK_RECORD_SIZE as u64;
            if b.offset != next {
                return Err(FormatError::invalid(
                    format!("block {j} offset"),
                    at,
                    format!("{next} (blocks are contiguous)"),
                    b.offset.to_string(),
                ));
            }
            let max = layout::max_compressed_len(self.header.max_frame_content(self.block_pages(j)));
            if b.compressed_len == 0 || b.compressed_len as usize > max {
                return Err(FormatError::invalid(
                    format!("block {j} compressed_len"),
                    at + 8,
                    format!("1..={max}"),
                    b.compressed_len.to_string(),
                ));
            }
            next += u64::from(b.compressed_len);
        }
        if next != self.data.length {
            return Err(FormatError::invalid(
                "DATA section length",
                self.data.offset,
                format!("{next} (the blocks' compressed lengths)"),
                self.data.length.to_string(),
            ));
        }
        self.summary.blocks = expected;
        Ok(())
    }

    /// The image's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The image's metadata (META section).
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// Totals computed while the image was validated.
    pub fn summary(&self) -> &ImageSummary {
        &self.summary
    }

    /// Run `i` (0-based), read through a small buffer of records.
    pub fn run_at(&mut self, i: u64) -> Result<Run, FormatError> {
        let size = layout::RUN_RECORD_SIZE;
        let rec = self.run_table.record(&mut self.src, &self.runs, size, i, "run table")?;
        Run::decode(rec, self.runs.offset + i * size as u64)
    }

    fn block_at(&mut self, j: u64) -> Result<Block, FormatError> {
        let size = layout::BLOCK_RECORD_SIZE;
        Ok(Block::decode(self.block_table.record(&mut self.src, &self.blocks, size, j, "block table")?))
    }

    fn block_pages(&self, j: u64) -> usize {
        let bp = u64::from(self.header.block_pages);
        usize_from(bp.min(self.summary.data_pages - j * bp))
    }

    fn block_raw_len(&self, j: u64) -> usize {
        self.block_pages(j) * PAGE_BYTES
    }

    /// Reads block `j`'s compressed bytes and what checking it needs.
    fn block_job(&mut self, j: u64) -> Result<BlockJob, FormatError> {
        let b = self.block_at(j)?;
        let at = self.data.offset + b.offset;
        let mut compressed = std::mem::take(&mut self.compressed);
        compressed.resize(b.compressed_len as usize, 0);
        read_at(&mut self.src, at, &mut compressed, "reading page data")?;
        let content_max = if self.header.page_coding() {
            Some(self.header.max_frame_content(self.block_pages(j)))
        } else {
            None
        };
        Ok(BlockJob {
            j,
            at,
            block: b,
            compressed,
            raw_len: self.block_raw_len(j),
            content_max,
            out: Vec::new(),
        })
    }

    /// Decompresses block `j` into the block buffer (kept for the next call) and checks it.
    fn load_block(&mut self, j: u64) -> Result<&[u8], FormatError> {
        let raw_len = self.block_raw_len(j);
        if self.block_index != Some(j) {
            self.block_index = None;
            let job = self.block_job(j)?;
            let dctx = match &mut self.dctx {
                Some(d) => d,
                None => self.dctx.insert(
                    zstd::bulk::Decompressor::new().map_err(FormatError::io("creating a zstd context"))?,
                ),
            };
            let result = decode_block(dctx, &job, &mut self.coded, &mut self.block[..raw_len]);
            self.compressed = job.compressed;
            result?;
            self.block_index = Some(j);
        }
        Ok(&self.block[..raw_len])
    }

    /// Every block in order, decompressed and checked ahead by worker threads.
    fn blocks_in_order(&mut self) -> BlockStream {
        let pool = Ordered::new(self.threads, || {
            let mut dctx = zstd::bulk::Decompressor::new();
            let mut coded = Vec::new();
            move |jobs: Vec<BlockJob>| -> Vec<Result<Vec<u8>, FormatError>> {
                let mut one = |mut job: BlockJob| {
                    let dctx = dctx.as_mut().map_err(|e| FormatError::Io {
                        doing: "creating a zstd context",
                        source: std::io::Error::other(e.to_string()),
                    })?;
                    // Every byte is written by the decoding (or the block is refused).
                    let mut out = std::mem::take(&mut job.out);
                    out.resize(job.raw_len, 0);
                    decode_block(dctx, &job, &mut coded, &mut out)?;
                    Ok(out)
                };
                jobs.into_iter().map(&mut one).collect()
            }
        });
        BlockStream {
            pool,
            next_submit: 0,
            total: self.summary.blocks,
            ready: VecDeque::new(),
            current: None,
            spare: Vec::new(),
        }
    }

    /// Calls `f` with the image's content in ascending page order: ones runs whole, data pages in
    /// pieces of at most one block. Zero pages are not reported.
    pub fn for_each_chunk<E: From<FormatError>>(
        &mut self,
        mut f: impl FnMut(Chunk<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let bp = u64::from(self.header.block_pages);
        let mut stream = self.blocks_in_order();
        for i in 0..self.summary.runs {
            let run = self.run_at(i)?;
            match run.kind {
                RunKind::Ones => f(Chunk::Ones { page: run.page, count: run.count })?,
                RunKind::Data => {
                    let mut done = 0;
                    while done < run.count {
                        let d = run.first_data_page + done;
                        let (j, within) = (d / bp, d % bp);
                        let n = (bp - within).min(run.count - done);
                        let block = stream.get(self, j)?;
                        let bytes =
                            &block[usize_from(within * PAGE_SIZE)..usize_from((within + n) * PAGE_SIZE)];
                        f(Chunk::Data { page: run.page + done, bytes })?;
                        done += n;
                    }
                }
            }
        }
        Ok(())
    }

    /// Decompresses and checks every block: after this, reading pages cannot fail on content.
    pub fn verify_blocks(&mut self) -> Result<(), FormatError> {
        let mut stream = self.blocks_in_order();
        for j in 0..self.summary.blocks {
            stream.get(self, j)?;
        }
        Ok(())
    }

    /// Reads one bitmap page, decompressing only the block that holds it.
    pub fn read_page(&mut self, page: u64) -> Result<PageContent, FormatError> {
        // Binary search for the last run starting at or before `page`.
        let (mut lo, mut hi) = (0, self.summary.runs);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.run_at(mid)?.page <= page {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return Ok(PageContent::Zero);
        }
        let run = self.run_at(lo - 1)?;
        if page >= run.end() {
            return Ok(PageContent::Zero);
        }
        match run.kind {
            RunKind::Ones => Ok(PageContent::Ones),
            RunKind::Data => {
                let bp = u64::from(self.header.block_pages);
                let d = run.first_data_page + (page - run.page);
                let at = usize_from((d % bp) * PAGE_SIZE);
                let block = self.load_block(d / bp)?;
                Ok(PageContent::Data(block[at..at + PAGE_BYTES].to_vec()))
            }
        }
    }
}

/// A table section (runs, blocks) read lazily in chunks of `RECORDS_PER_READ` records. `open`
/// reads every chunk once and keeps its CRC; a chunk read again later must match it, so a file
/// rewritten while it is in use (a restore in progress) is refused, never trusted unchecked.
#[derive(Default)]
struct Table {
    buf: Vec<u8>,
    first: u64,
    crcs: Vec<u32>,
}

const RECORDS_PER_READ: u64 = 128;

impl Table {
    fn record<R: Read + Seek>(
        &mut self,
        src: &mut R,
        s: &SectionEntry,
        size: usize,
        i: u64,
        name: &'static str,
    ) -> Result<&[u8], FormatError> {
        let total = s.length / size as u64;
        if i >= total {
            return Err(FormatError::Input(format!("record {i} asked of a {name} of {total} records")));
        }
        let buffered = self.buf.len() as u64 / size as u64;
        if buffered == 0 || i < self.first || i >= self.first + buffered {
            let first = i - i % RECORDS_PER_READ;
            let n = RECORDS_PER_READ.min(total - first);
            self.buf.resize(usize_from(n) * size, 0);
            let at = s.offset + first * size as u64;
            read_at(src, at, &mut self.buf, "reading a table")?;
            let chunk = (first / RECORDS_PER_READ) as usize;
            let crc = layout::crc(&self.buf);
            match self.crcs.get(chunk) {
                Some(&known) if known != crc => {
                    self.buf.clear();
                    return Err(FormatError::Checksum {
                        what: format!(
                            "{name} records {first}..{} (the file changed after it was checked)",
                            first + n
                        ),
                        offset: at,
                        length: n * size as u64,
                        stored: known,
                        computed: crc,
                    });
                }
                Some(_) => {}
                None if chunk == self.crcs.len() => self.crcs.push(crc),
                None => {
                    return Err(FormatError::Input(format!(
                        "{name} chunk {chunk} read before it was checked"
                    )))
                }
            }
            self.first = first;
        }
        let at = usize_from(i - self.first) * size;
        Ok(&self.buf[at..at + size])
    }
}

/// One block to decompress: where it is and what it must inflate to.
struct BlockJob {
    j: u64,
    at: u64,
    block: Block,
    compressed: Vec<u8>,
    raw_len: usize,
    /// With page coding: the most bytes the frame may inflate to (its coded pages).
    content_max: Option<usize>,
    /// A buffer a consumed block left, for the decoded pages (a fresh zeroed one per block cost
    /// a restore page faults and memset).
    out: Vec<u8>,
}

/// Decompresses one block into `out` (exactly its raw size), decoding its pages through `coded`
/// when they are coded, and checks frame, sizes, coding and CRC.
fn decode_block(
    dctx: &mut zstd::bulk::Decompressor<'static>,
    job: &BlockJob,
    coded: &mut Vec<u8>,
    out: &mut [u8],
) -> Result<(), FormatError> {
    let (j, raw_len, b) = (job.j, job.raw_len, &job.block);
    let bad = |found: String| {
        let inflated = job
            .content_max
            .map_or(format!("{raw_len} bytes"), |max| format!("at most {max} bytes of coded pages"));
        FormatError::invalid(
            format!("block {j}"),
            job.at,
            format!("one zstd frame of {} bytes inflating to {inflated}", b.compressed_len),
            found,
        )
    };
    // Skippable frames (magic 0x184D2A50..=0x184D2A5F) carry no pages: FORMAT.md section 5
    // refuses them, alone or in front of the block's frame.
    if job.compressed.len() >= 4
        && u32::from_le_bytes(job.compressed[..4].try_into().expect("4 bytes")) & 0xffff_fff0 == 0x184d_2a50
    {
        return Err(bad("a skippable frame".into()));
    }
    match zstd::zstd_safe::find_frame_compressed_size(&job.compressed) {
        Ok(n) if n == job.compressed.len() => {}
        Ok(n) => return Err(bad(format!("a first frame of {n} bytes"))),
        Err(code) => return Err(bad(zstd::zstd_safe::get_error_name(code).to_string())),
    }
    if let Err(why) = frame_rules(&job.compressed) {
        return Err(bad(why));
    }
    let inflate = |dctx: &mut zstd::bulk::Decompressor<'static>, dst: &mut [u8]| {
        dctx.decompress_to_buffer(&job.compressed, dst)
            .map_err(|e| bad(format!("{e} (it inflates past its size or is damaged)")))
    };
    match job.content_max {
        None => {
            let n = inflate(dctx, out)?;
            if n != raw_len {
                return Err(bad(format!("{n} bytes")));
            }
        }
        Some(max) => {
            coded.resize(max, 0);
            let n = inflate(dctx, coded)?;
            crate::coding::decode_pages(&coded[..n], out).map_err(|e| {
                FormatError::invalid(format!("block {j}"), job.at, "pages coded as FORMAT.md 5.1 says", e)
            })?;
        }
    }
    let computed = layout::crc(out);
    if computed != b.raw_crc {
        return Err(FormatError::Checksum {
            what: format!("block {j} after decompression"),
            offset: job.at,
            length: u64::from(b.compressed_len),
            stored: b.raw_crc,
            computed,
        });
    }
    Ok(())
}

/// The largest zstd window a block's frame may declare (FORMAT.md section 5): 2^27 bytes.
pub const MAX_FRAME_WINDOW: u64 = 1 << 27;

/// FORMAT.md section 5's rules on a block's frame header (one whole frame was found already):
/// the window it declares (`Window_Descriptor`, or `Frame_Content_Size` for a single-segment
/// frame) at most [`MAX_FRAME_WINDOW`], and no dictionary (a `Dictionary_ID` field, when
/// present, is 0). Single-pass decompression does not check the window itself.
fn frame_rules(frame: &[u8]) -> Result<(), String> {
    let short = || "a frame header cut short".to_string();
    let fhd = *frame.get(4).ok_or_else(short)?;
    let single_segment = fhd & 0x20 != 0;
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = match fhd >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut at = 5;
    let window = if single_segment {
        None
    } else {
        let wd = *frame.get(at).ok_or_else(short)?;
        at += 1;
        let log = 10 + u32::from(wd >> 3);
        let base = 1u64 << log;
        Some(base + (base / 8) * u64::from(wd & 7))
    };
    let field = |at: usize, len: usize| -> Result<u64, String> {
        let b = frame.get(at..at + len).ok_or_else(short)?;
        Ok(b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    };
    let dict = field(at, dict_len)?;
    if dict != 0 {
        return Err(format!("a frame naming dictionary {dict} (dictionaries are not used)"));
    }
    at += dict_len;
    let window = match window {
        Some(w) => w,
        None => field(at, fcs_len)? + if fcs_len == 2 { 256 } else { 0 },
    };
    if window > MAX_FRAME_WINDOW {
        return Err(format!("a frame declaring a {window}-byte window, more than 2^27"));
    }
    Ok(())
}

/// Blocks consumed in ascending order, read ahead and decompressed by the pipeline.
struct BlockStream {
    pool: Ordered<Vec<BlockJob>, Vec<Result<Vec<u8>, FormatError>>>,
    next_submit: u64,
    total: u64,
    ready: VecDeque<Result<Vec<u8>, FormatError>>,
    current: Option<(u64, Vec<u8>)>,
    /// Buffers of consumed blocks, handed to the next jobs.
    spare: Vec<Vec<u8>>,
}

impl BlockStream {
    /// Block `j`, which must be the current block or a later one.
    fn get<R: Read + Seek>(&mut self, r: &mut ImageReader<R>, j: u64) -> Result<&[u8], FormatError> {
        while self.current.as_ref().is_none_or(|(c, _)| *c < j) {
            let next = self.current.as_ref().map_or(0, |(c, _)| c + 1);
            while self.ready.is_empty() {
                if self.next_submit < self.total {
                    let end = self.total.min(self.next_submit + self.pool.blocks_per_item() as u64);
                    let jobs = (self.next_submit..end)
                        .map(|j| {
                            let out = self.spare.pop().unwrap_or_default();
                            r.block_job(j).map(|job| BlockJob { out, ..job })
                        })
                        .collect::<Result<_, _>>()?;
                    self.next_submit = end;
                    self.ready.extend(self.pool.push(jobs).flatten());
                } else {
                    self.ready.extend(self.pool.drain().into_iter().flatten());
                    if self.ready.is_empty() {
                        return Err(FormatError::Input(format!(
                            "block {j} asked of an image with {} blocks",
                            self.total
                        )));
                    }
                }
            }
            let block = self.ready.pop_front().expect("not empty")?;
            if let Some((_, used)) = self.current.replace((next, block)) {
                self.spare.push(used);
            }
        }
        match &self.current {
            Some((c, b)) if *c == j => Ok(b),
            _ => Err(FormatError::Input(format!("block {j} asked after a later block"))),
        }
    }
}

fn verify_section_crc<R: Read + Seek>(src: &mut R, s: &SectionEntry) -> Result<(), FormatError> {
    src.seek(SeekFrom::Start(s.offset)).map_err(FormatError::io("checking a section"))?;
    let mut buf = vec![0u8; IO_CHUNK.min(usize_from(s.length))];
    let (mut left, mut h) = (s.length, 0u32);
    while left > 0 {
        let n = usize_from(left).min(buf.len());
        src.read_exact(&mut buf[..n]).map_err(FormatError::io("checking a section"))?;
        h = crc32c::crc32c_append(h, &buf[..n]);
        left -= n as u64;
    }
    if h != s.crc {
        return Err(FormatError::Checksum {
            what: layout::section_name(s.kind).to_string(),
            offset: s.offset,
            length: s.length,
            stored: s.crc,
            computed: h,
        });
    }
    Ok(())
}
