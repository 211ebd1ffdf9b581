//! The criu-cet image format: one file per process, holding the source host's profile, every
//! thread's CET state and the IBT legacy code bitmap's populated pages. Bytes only: this crate
//! reads from `Read` and writes to `Write` and knows nothing of processes.
//!
//! docs/FORMAT.md is the specification; this crate implements it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod coding;
mod error;
#[cfg(feature = "forge")]
pub mod forge;
pub mod json;
pub mod layout;
pub mod meta;
mod meta_codec;
mod page;
mod pipeline;
pub mod read;
pub mod write;

pub use error::FormatError;
pub use json::ImageDoc;
pub use layout::{Run, RunKind};
pub use meta::{
    Addr, BitmapMapping, CetSupport, FoundBy, Ibt, Metadata, NamespaceIds, ProcessInfo, ShadowStack,
    SourceHost, ThreadCet, UserCet,
};
pub use page::PageKind;
pub use read::{Chunk, ImageReader, ImageSummary, PageContent};
pub use write::{ImageWriter, WriteSummary, WriterOptions};
