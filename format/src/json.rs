//! The JSON form of an image, printed by `criu-cet decode` and read by `criu-cet encode` (as
//! CRIU's crit does for its images). Fields marked "derived" are printed for people and ignored
//! by `encode`, which recomputes them.

use crate::addr::{self, PAGE_SIZE};
use crate::error::FormatError;
use crate::layout::RunKind;
use crate::meta::{Addr, BitmapMapping, Metadata, NamespaceIds, ProcessInfo, SourceHost};
use crate::read::{ImageReader, PageContent};
use crate::write::{ImageWriter, WriteSummary, WriterOptions};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};

/// An image as a JSON document: what `decode` prints and `encode` reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDoc {
    /// Derived: the format version of the file decoded.
    #[serde(skip_deserializing)]
    pub format_version: String,
    /// The host that wrote the image.
    pub host: SourceHost,
    /// The process and its threads' CET state.
    pub process: ProcessInfo,
    /// The bitmap mapping; `null` when the process had none.
    pub bitmap: Option<BitmapMapping>,
    /// Ids in the dumped tree's pid namespace (1.2); `null` for older files.
    #[serde(default)]
    pub namespace: Option<NamespaceIds>,
    /// The CRIU run that dumped the process (1.3); `null` for older files and CLI dumps.
    #[serde(default)]
    pub criu_run_id: Option<String>,
    /// Derived totals.
    #[serde(skip_deserializing)]
    pub summary: Option<DocSummary>,
    /// The populated bitmap pages, in ascending order.
    #[serde(default)]
    pub runs: Vec<RunDoc>,
}

/// Totals over an image, printed for people (derived: `encode` ignores them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DocSummary {
    /// Address bits the bitmap covers (a bit for every code page below 2^N); 0 without a bitmap.
    pub coverage_bits: u8,
    /// Address bits a host needs to map the bitmap (its end address).
    pub address_bits_needed: u8,
    /// One past the highest code address whose legacy bit lies in a populated page.
    pub populated_code_end: Addr,
    /// Run records.
    pub runs: u64,
    /// Bitmap pages in all-ones runs.
    pub ones_pages: u64,
    /// Bitmap pages in data runs.
    pub data_pages: u64,
    /// zstd blocks.
    pub blocks: u64,
    /// Compressed bytes of page data.
    pub data_bytes: u64,
}

/// One run of consecutive populated bitmap pages of one kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDoc {
    /// Byte offset of the run's first page in the bitmap.
    pub offset: Addr,
    /// Number of pages, at least 1.
    pub pages: u64,
    /// Whether the pages are all ones or listed in `data`.
    pub kind: RunKind,
    /// Derived: the code address range whose legacy bits the run holds.
    #[serde(skip_deserializing)]
    pub covers: String,
    /// Data runs: each page's 4096 bytes as 8192 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<String>,
}

impl ImageDoc {
    /// Reads a whole image into its JSON form (page data included: this is for inspection).
    pub fn from_image<R: Read + Seek>(r: &mut ImageReader<R>) -> Result<ImageDoc, FormatError> {
        let meta = r.metadata().clone();
        let s = *r.summary();
        let mut runs = Vec::new();
        for i in 0..s.runs {
            let run = r.run_at(i)?;
            let (code_start, _) = addr::code_range_of_bitmap_page(run.page);
            let (_, code_end) = addr::code_range_of_bitmap_page(run.end() - 1);
            let mut data = Vec::new();
            if run.kind == RunKind::Data {
                for p in run.page..run.end() {
                    match r.read_page(p)? {
                        PageContent::Data(bytes) => data.push(hex(&bytes)),
                        other => {
                            return Err(FormatError::invalid(
                                format!("run {i}"),
                                0,
                                "data pages in a data run",
                                format!("page {p:#x} read as {other:?}"),
                            ))
                        }
                    }
                }
            }
            runs.push(RunDoc {
                offset: Addr(run.page * PAGE_SIZE),
                pages: run.count,
                kind: run.kind,
                covers: format!("{code_start:#x}-{code_end:#x}"),
                data,
            });
        }
        let summary = Self::summary_of(r);
        let h = r.header();
        Ok(ImageDoc {
            format_version: format!("{}.{}", h.major, h.minor),
            host: meta.host,
            process: meta.process,
            bitmap: meta.bitmap,
            namespace: meta.namespace,
            criu_run_id: meta.criu_run_id,
            summary: Some(summary),
            runs,
        })
    }

    /// Writes the JSON form of the image read by `r` to `out`, as
    /// `serde_json::to_writer_pretty(out, &ImageDoc::from_image(r)?)` would, but page by page:
    /// memory stays bounded (one block and one page of hex) whatever the image holds.
    pub fn stream_json<R: Read + Seek, W: Write>(r: &mut ImageReader<R>, out: W) -> Result<(), FormatError> {
        let meta = r.metadata().clone();
        let summary = Self::summary_of(r);
        let h = r.header();
        let format_version = format!("{}.{}", h.major, h.minor);
        let runs = r.summary().runs;
        let reader = std::cell::RefCell::new(r);
        let failed = std::cell::RefCell::new(None);
        let doc = StreamDoc {
            format_version,
            host: &meta.host,
            process: &meta.process,
            bitmap: &meta.bitmap,
            namespace: &meta.namespace,
            criu_run_id: &meta.criu_run_id,
            summary: Some(summary),
            runs: StreamRuns { reader: &reader, runs, failed: &failed },
        };
        let result = serde_json::to_writer_pretty(out, &doc);
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        result.map_err(|e| FormatError::Io { doing: "writing JSON", source: e.into() })
    }

    fn summary_of<R: Read + Seek>(r: &ImageReader<R>) -> DocSummary {
        let (meta, s) = (r.metadata(), r.summary());
        DocSummary {
            coverage_bits: meta.bitmap.as_ref().map_or(0, |b| b.coverage_bits()),
            address_bits_needed: meta.bitmap.as_ref().map_or(0, |b| addr::address_bits_needed(b.end())),
            populated_code_end: Addr(addr::code_range_of_bitmap_page(s.populated_end_page).0),
            runs: s.runs,
            ones_pages: s.ones_pages,
            data_pages: s.data_pages,
            blocks: s.blocks,
            data_bytes: s.data_bytes,
        }
    }

    /// Writes the image this document describes, in the current format version.
    pub fn write_image<W: Write>(
        &self,
        out: W,
        opts: WriterOptions,
    ) -> Result<(W, WriteSummary), FormatError> {
        let meta = Metadata {
            host: self.host.clone(),
            process: self.process.clone(),
            bitmap: self.bitmap.clone(),
            namespace: self.namespace.clone(),
            criu_run_id: self.criu_run_id.clone(),
        };
        let mut w = ImageWriter::new(out, &meta, opts)?;
        for (i, run) in self.runs.iter().enumerate() {
            if run.offset.0 % PAGE_SIZE != 0 {
                return Err(FormatError::Json(format!(
                    "runs[{i}].offset {} is not 4 KiB aligned",
                    run.offset
                )));
            }
            let page = run.offset.0 / PAGE_SIZE;
            match run.kind {
                RunKind::Ones if run.data.is_empty() => w.push_ones(page, run.pages)?,
                RunKind::Ones => {
                    return Err(FormatError::Json(format!("runs[{i}] is a ones run but has data")))
                }
                RunKind::Data => {
                    if run.data.len() as u64 != run.pages {
                        return Err(FormatError::Json(format!(
                            "runs[{i}] has pages {} but {} data entries",
                            run.pages,
                            run.data.len()
                        )));
                    }
                    for (k, text) in run.data.iter().enumerate() {
                        let bytes = unhex(text)
                            .map_err(|e| FormatError::Json(format!("runs[{i}].data[{k}]: {e}")))?;
                        w.push_page(page + k as u64, &bytes)?;
                    }
                }
            }
        }
        w.finish()
    }
}

/// `ImageDoc` with its runs read from the image while they are serialized.
#[derive(Serialize)]
#[serde(bound = "R: Read + Seek")]
struct StreamDoc<'a, 'r, R> {
    format_version: String,
    host: &'a SourceHost,
    process: &'a ProcessInfo,
    bitmap: &'a Option<BitmapMapping>,
    namespace: &'a Option<NamespaceIds>,
    criu_run_id: &'a Option<String>,
    summary: Option<DocSummary>,
    runs: StreamRuns<'a, 'r, R>,
}

type Shared<'a, 'r, R> = &'a std::cell::RefCell<&'r mut ImageReader<R>>;

struct StreamRuns<'a, 'r, R> {
    reader: Shared<'a, 'r, R>,
    runs: u64,
    /// The reader's error, kept whole (serde would flatten it to text).
    failed: &'a std::cell::RefCell<Option<FormatError>>,
}

#[derive(Serialize)]
#[serde(bound = "R: Read + Seek")]
struct StreamRun<'a, 'r, R> {
    offset: Addr,
    pages: u64,
    kind: RunKind,
    covers: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<StreamPages<'a, 'r, R>>,
}

struct StreamPages<'a, 'r, R> {
    reader: Shared<'a, 'r, R>,
    index: u64,
    first: u64,
    count: u64,
    failed: &'a std::cell::RefCell<Option<FormatError>>,
}

fn keep<E: serde::ser::Error>(failed: &std::cell::RefCell<Option<FormatError>>, e: FormatError) -> E {
    let text = e.to_string();
    *failed.borrow_mut() = Some(e);
    E::custom(text)
}

impl<R: Read + Seek> Serialize for StreamRuns<'_, '_, R> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = ser.serialize_seq(Some(addr::usize_from(self.runs)))?;
        for i in 0..self.runs {
            let run = self.reader.borrow_mut().run_at(i).map_err(|e| keep(self.failed, e))?;
            let (code_start, _) = addr::code_range_of_bitmap_page(run.page);
            let (_, code_end) = addr::code_range_of_bitmap_page(run.end() - 1);
            seq.serialize_element(&StreamRun {
                offset: Addr(run.page * PAGE_SIZE),
                pages: run.count,
                kind: run.kind,
                covers: format!("{code_start:#x}-{code_end:#x}"),
                data: (run.kind == RunKind::Data).then_some(StreamPages {
                    reader: self.reader,
                    index: i,
                    first: run.page,
                    count: run.count,
                    failed: self.failed,
                }),
            })?;
        }
        seq.end()
    }
}

impl<R: Read + Seek> Serialize for StreamPages<'_, '_, R> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = ser.serialize_seq(Some(addr::usize_from(self.count)))?;
        for p in self.first..self.first + self.count {
            let page = self.reader.borrow_mut().read_page(p).map_err(|e| keep(self.failed, e))?;
            match page {
                PageContent::Data(bytes) => seq.serialize_element(&hex(&bytes))?,
                other => {
                    let e = FormatError::invalid(
                        format!("run {}", self.index),
                        0,
                        "data pages in a data run",
                        format!("page {p:#x} read as {other:?}"),
                    );
                    return Err(keep(self.failed, e));
                }
            }
        }
        seq.end()
    }
}

/// Lowercase hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The bytes of one page written as 8192 hex digits (either case); the error says what is wrong.
pub fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if text.len() != 2 * addr::PAGE_BYTES {
        return Err(format!(
            "expected {} hex digits (one 4096-byte page), found {}",
            2 * PAGE_SIZE,
            text.len()
        ));
    }
    let digit = |c: u8| {
        let d = (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
        d.ok_or_else(|| format!("{:?} is not a hex digit", c as char))
    };
    text.as_bytes().chunks_exact(2).map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?)).collect()
}
