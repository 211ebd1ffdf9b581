//! criu-cet's live engine: host profiles, finding and capturing the IBT legacy bitmap and every
//! thread's CET state, checking images against hosts, and restoring into processes. The CLI
//! (`criu-cet`) and the CRIU plugin (`cet_plugin.so`, the `cet-plugin` crate) are thin layers
//! over it. `fixture` drives the test fixture for the demo, the benchmark and the tests.
//!
//! `unsafe` lives in `sys` (kernel interfaces) only: the compiler refuses it anywhere else.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod archive;
pub mod capture;
pub mod cet;
pub mod check;
pub mod checkpoint;
pub mod criu_images;
pub mod error;
pub mod find;
pub mod fixture;
pub mod fleet;
pub mod hooks;
pub mod host;
pub mod image;
pub mod input;
pub mod job;
pub mod proc;
pub mod restore;
pub mod scan;
pub mod sys;
pub mod trace;

pub use error::EngineError;
