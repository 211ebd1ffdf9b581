//! The streaming image writer: pages come in address order, one block of page data is held at a
//! time (per compressing thread), each page coded (`coding`) and the block compressed, and the
//! tables (32 bytes a run, 16 a block) are written after the data.

use crate::addr::{PAGE_BYTES, PAGE_SIZE};
use crate::coding;
use crate::error::FormatError;
use crate::layout::{self, Block, Footer, Header, Run, RunKind, SectionEntry};
use crate::meta::Metadata;
use crate::page::PageKind;
use crate::pipeline::{default_threads, Ordered};
use std::io::Write;

/// Layout choices that do not change what the image means (any reader reads any of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// Pages per zstd block: the unit a reader decompresses to read one page.
    pub block_pages: u32,
    /// zstd compression level.
    pub zstd_level: i32,
    /// Threads compressing blocks (blocks are independent; the bytes do not depend on this).
    pub threads: usize,
}

impl Default for WriterOptions {
    /// Chosen by measurement (docs/PERFORMANCE.md); the golden vectors are written with these.
    fn default() -> Self {
        WriterOptions { block_pages: 16, zstd_level: 1, threads: default_threads() }
    }
}

/// A job's compressed blocks (each its bytes and the CRC of its pages), and the raw buffer for reuse.
type Compressed = std::io::Result<(Vec<(Vec<u8>, u32)>, Vec<u8>)>;

/// What a finished image holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteSummary {
    /// Run records written.
    pub runs: u64,
    /// Bitmap pages stored as all-ones runs.
    pub ones_pages: u64,
    /// Bitmap pages stored as data.
    pub data_pages: u64,
    /// All-zero pages pushed and not stored (a reader reads any unlisted page as zero).
    pub zero_pages_skipped: u64,
    /// zstd blocks written.
    pub blocks: u64,
    /// Compressed bytes of page data (the DATA section).
    pub data_bytes: u64,
    /// Bytes of the whole file.
    pub file_bytes: u64,
}

struct Counting<W> {
    inner: W,
    pos: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, bytes: &[u8], doing: &'static str) -> Result<(), FormatError> {
        self.inner.write_all(bytes).map_err(FormatError::io(doing))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

/// Writes one image. Create it with the metadata, push pages in ascending order, then `finish`.
/// Dropping it without `finish` leaves an incomplete file that every reader rejects (no footer);
/// callers write to a temporary name and rename after `finish`.
pub struct ImageWriter<W: Write> {
    out: Counting<W>,
    bitmap_pages: u64,
    sections: Vec<SectionEntry>,
    data_offset: u64,
    data_crc: u32,
    pool: Ordered<Vec<u8>, Compressed>,
    /// Pages waiting for the next job: one or a few blocks (`Ordered::blocks_per_item`).
    block: Vec<u8>,
    spare: Vec<Vec<u8>>,
    block_bytes: usize,
    runs: Vec<Run>,
    blocks: Vec<Block>,
    next_page: u64,
    summary: WriteSummary,
}

impl<W: Write> ImageWriter<W> {
    /// Starts an image on `out`: checks the options and the metadata (`Metadata::validate`), then
    /// writes the header and the META section. Pages follow with `push_page`/`push_ones`.
    pub fn new(out: W, meta: &Metadata, opts: WriterOptions) -> Result<Self, FormatError> {
        if !(1..=layout::MAX_BLOCK_PAGES).contains(&opts.block_pages) {
            return Err(FormatError::Input(format!(
                "block_pages {} is outside 1..={}",
                opts.block_pages,
                layout::MAX_BLOCK_PAGES
            )));
        }
        meta.validate().map_err(|(field, problem)| FormatError::Input(format!("{field}: {problem}")))?;
        let levels = zstd::compression_level_range();
        if !levels.contains(&opts.zstd_level) {
            return Err(FormatError::Input(format!(
                "zstd level {} is outside {}..={}",
                opts.zstd_level,
                levels.start(),
                levels.end()
            )));
        }
        let level = opts.zstd_level;
        let block_bytes = opts.block_pages as usize * PAGE_BYTES;
        let pool = Ordered::new(opts.threads, move || {
            let mut c = zstd::bulk::Compressor::new(level);
            let mut coded = Vec::new();
            move |raw: Vec<u8>| -> Compressed {
                let c = c.as_mut().map_err(|e| std::io::Error::other(e.to_string()))?;
                let mut blocks = Vec::new();
                for block in raw.chunks(block_bytes) {
                    coded.clear();
                    block.chunks_exact(PAGE_BYTES).for_each(|page| coding::encode_page(page, &mut coded));
                    blocks.push((c.compress(&coded)?, layout::crc(block)));
                }
                Ok((blocks, raw))
            }
        });
        let header = Header {
            major: layout::MAJOR,
            minor: layout::MINOR,
            incompat_flags: layout::INCOMPAT_PAGE_CODING,
            compat_flags: 0,
            block_pages: opts.block_pages,
        };
        let mut out = Counting { inner: out, pos: 0 };
        out.put(&header.encode(), "writing the header")?;
        let meta_bytes = crate::meta_codec::encode(meta)?;
        let meta_entry = SectionEntry {
            kind: layout::SECTION_META,
            flags: layout::SECTION_REQUIRED,
            offset: out.pos,
            length: meta_bytes.len() as u64,
            crc: layout::crc(&meta_bytes),
        };
        out.put(&meta_bytes, "writing the metadata")?;
        Ok(ImageWriter {
            data_offset: out.pos,
            out,
            bitmap_pages: meta.bitmap.as_ref().map_or(0, |b| b.pages()),
            sections: vec![meta_entry],
            data_crc: 0,
            pool,
            block: Vec::with_capacity(block_bytes),
            spare: Vec::new(),
            block_bytes,
            runs: Vec::new(),
            blocks: Vec::new(),
            next_page: 0,
            summary: WriteSummary::default(),
        })
    }

    fn claim(&mut self, page: u64, count: u64) -> Result<(), FormatError> {
        if page < self.next_page {
            return Err(FormatError::Input(format!(
                "bitmap page {page:#x} pushed after page {:#x}: pages must come in ascending order, once each",
                self.next_page.saturating_sub(1)
            )));
        }
        let end = page.checked_add(count).filter(|&e| e <= self.bitmap_pages && count > 0);
        match end {
            Some(end) => {
                self.next_page = end;
                Ok(())
            }
            None => Err(FormatError::Input(format!(
                "bitmap pages {page:#x}+{count} lie outside the bitmap's {:#x} pages",
                self.bitmap_pages
            ))),
        }
    }

    fn extend_run(&mut self, page: u64, count: u64, kind: RunKind) {
        match self.runs.last_mut() {
            Some(last) if last.kind == kind && last.end() == page => last.count += count,
            _ => self.runs.push(Run {
                page,
                count,
                kind,
                first_data_page: if kind == RunKind::Data { self.summary.data_pages } else { 0 },
            }),
        }
        match kind {
            RunKind::Ones => self.summary.ones_pages += count,
            RunKind::Data => self.summary.data_pages += count,
        }
    }

    /// Adds one bitmap page (`page` = bitmap offset / 4096) with its 4096 bytes. Zero pages are
    /// skipped, all-ones pages join a ones run, anything else is stored.
    pub fn push_page(&mut self, page: u64, bytes: &[u8]) -> Result<(), FormatError> {
        if bytes.len() as u64 != PAGE_SIZE {
            return Err(FormatError::Input(format!(
                "page {page:#x} has {} bytes, expected 4096",
                bytes.len()
            )));
        }
        self.claim(page, 1)?;
        match PageKind::of(bytes) {
            PageKind::Zero => self.summary.zero_pages_skipped += 1,
            PageKind::Ones => self.extend_run(page, 1, RunKind::Ones),
            PageKind::Data => {
                self.extend_run(page, 1, RunKind::Data);
                self.block.extend_from_slice(bytes);
                if self.block.len() == self.block_bytes * self.pool.blocks_per_item() {
                    self.flush_job()?;
                }
            }
        }
        Ok(())
    }

    /// Adds `count` all-ones pages starting at `page`, without their bytes.
    pub fn push_ones(&mut self, page: u64, count: u64) -> Result<(), FormatError> {
        self.claim(page, count)?;
        self.extend_run(page, count, RunKind::Ones);
        Ok(())
    }

    /// Hands the full (or, at the end, last) job of blocks to the compressing workers and writes
    /// the blocks that come back, in order.
    fn flush_job(&mut self) -> Result<(), FormatError> {
        if self.block.is_empty() {
            return Ok(());
        }
        let size = self.block_bytes * self.pool.blocks_per_item();
        let next = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(size));
        let raw = std::mem::replace(&mut self.block, next);
        let done: Vec<Compressed> = self.pool.push(raw).collect();
        done.into_iter().try_for_each(|c| self.emit(c))
    }

    fn emit(&mut self, c: Compressed) -> Result<(), FormatError> {
        let (blocks, mut raw) = c.map_err(FormatError::io("compressing a block"))?;
        for (bytes, raw_crc) in blocks {
            let block = Block {
                offset: self.out.pos - self.data_offset,
                compressed_len: u32::try_from(bytes.len())
                    .expect("a block of at most MAX_BLOCK_PAGES pages compresses to well under 4 GiB"),
                raw_crc,
            };
            self.data_crc = crc32c::crc32c_append(self.data_crc, &bytes);
            self.out.put(&bytes, "writing page data")?;
            self.blocks.push(block);
        }
        raw.clear();
        self.spare.push(raw);
        Ok(())
    }

    /// Writes the tables, the section table and the footer; returns the sink and what was written.
    pub fn finish(mut self) -> Result<(W, WriteSummary), FormatError> {
        self.flush_job()?;
        for c in self.pool.drain() {
            self.emit(c)?;
        }
        self.sections.push(SectionEntry {
            kind: layout::SECTION_DATA,
            flags: layout::SECTION_REQUIRED,
            offset: self.data_offset,
            length: self.out.pos - self.data_offset,
            crc: self.data_crc,
        });
        let runs: Vec<u8> = self.runs.iter().flat_map(|r| r.encode()).collect();
        let blocks: Vec<u8> = self.blocks.iter().flat_map(|b| b.encode()).collect();
        for (kind, bytes) in [(layout::SECTION_RUNS, runs), (layout::SECTION_BLOCKS, blocks)] {
            self.sections.push(SectionEntry {
                kind,
                flags: layout::SECTION_REQUIRED,
                offset: self.out.pos,
                length: bytes.len() as u64,
                crc: layout::crc(&bytes),
            });
            self.out.put(&bytes, "writing the tables")?;
        }
        let table: Vec<u8> = self.sections.iter().flat_map(|s| s.encode()).collect();
        let footer = Footer {
            table_offset: self.out.pos,
            section_count: u32::try_from(self.sections.len()).expect("4 sections"),
        };
        self.out.put(&table, "writing the section table")?;
        self.out.put(&footer.encode(&table), "writing the footer")?;
        self.out.inner.flush().map_err(FormatError::io("flushing the image"))?;
        let summary = WriteSummary {
            runs: self.runs.len() as u64,
            blocks: self.blocks.len() as u64,
            data_bytes: self.sections[1].length,
            file_bytes: self.out.pos,
            ..self.summary
        };
        Ok((self.out.inner, summary))
    }
}
