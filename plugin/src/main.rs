//! `criu-cet`: read images, capture and restore the CET state and IBT legacy bitmap of live
//! processes, check images against hosts, and run the demo. Thin glue over the `criu_cet`
//! engine and the `criu_cet_format` crate.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use criu_cet::capture::CaptureOptions;
use criu_cet::host;
use criu_cet::input::{self, Links};
use criu_cet::trace::Tracing;
use criu_cet::{image, job, EngineError};
use criu_cet_format::meta::parse_number;
use criu_cet_format::{ImageDoc, WriterOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Prints a line to stdout, ignoring a closed pipe (`criu-cet demo | head` must still end the
/// fixtures it started, so output errors never stop a command).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `say!` without the newline.
macro_rules! say_raw {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}

/// The largest image document `encode` reads. `decode` of a 20,000-data-page image writes
/// 164 MB; encode holds the document in memory (docs/RELIABILITY.md states the bound).
const MAX_DOCUMENT: u64 = 256 << 20;

mod bench;
mod demo;
mod inputs;
mod show;

#[derive(Parser)]
#[command(
    name = "criu-cet",
    version,
    about = "Checkpoint/restore of x86 CET state and the IBT legacy code bitmap"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print this host's profile (address width, CET support); --json gives the profile format.
    Host {
        #[arg(long)]
        json: bool,
    },
    /// Capture the bitmap and CET state of a running process into an image.
    Dump {
        #[arg(long)]
        pid: u32,
        #[arg(long, short)]
        output: PathBuf,
        /// The bitmap's start address, when it cannot be found otherwise.
        #[arg(long, value_parser = parse_addr)]
        bitmap: Option<u64>,
        /// Leave out legacy bits of code pages no executable mapping covers.
        #[arg(long)]
        prune_stale: bool,
        /// Print the report as JSON (the counts the line gives, by name).
        #[arg(long)]
        json: bool,
    },
    /// A readable summary of an image, or of every cet image in a CRIU image directory or a
    /// checkpoint archive (tar, tar.gz, tar.zst, as `podman container checkpoint --export` writes).
    Show { file: PathBuf },
    /// An image as JSON on stdout (like CRIU's crit decode); a directory or archive gives every
    /// image's document.
    Decode { file: PathBuf },
    /// Write an image from its JSON form.
    Encode {
        json: PathBuf,
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Check an image, image directory or checkpoint archive against this host, a host profile
    /// (from `criu-cet host --json`), or a directory of profiles (one verdict per host).
    Check {
        /// An image, a CRIU image directory, or a checkpoint archive (tar, tar.gz, tar.zst).
        file: PathBuf,
        /// A host profile (`criu-cet host --json`), or a directory of them (a fleet).
        #[arg(long)]
        target: Option<PathBuf>,
        /// Treat coverage narrower than the target's address space as an error.
        #[arg(long)]
        strict_coverage: bool,
        /// Machine-readable verdicts (schema in README's command table).
        #[arg(long)]
        json: bool,
        /// Exit 0 when at least one host can take every image (default: every host must).
        #[arg(long)]
        any: bool,
    },
    /// Restore an image's bitmap (and IBT state, where the kernel allows) into a process.
    Restore {
        #[arg(long)]
        pid: u32,
        file: PathBuf,
        /// Print the report as JSON (the counts the line gives, by name).
        #[arg(long)]
        json: bool,
    },
    /// The built-in demo: dump, show, check and restore a fixture process.
    Demo,
    /// Measure capture, restore, image size, memory and check time (docs/PERFORMANCE.md).
    Bench {
        /// Runs per figure (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The criu binary for the CRIU figures (default: criu in PATH).
        #[arg(long)]
        criu: Option<PathBuf>,
        /// One run of each figure, skipping the slow naive 4 TiB pagemap baseline (the test
        /// command's smoke run).
        #[arg(long)]
        smoke: bool,
    },
}

fn parse_addr(s: &str) -> Result<u64, String> {
    parse_number(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Dump { .. } | Command::Restore { .. } | Command::Encode { .. }) {
        // SIGINT and SIGTERM end these at the next step boundary, never inside a remote system
        // call or with a target still stopped, and never leave a temporary file behind.
        if let Err(e) = criu_cet::sys::catch_interrupts() {
            eprintln!("criu-cet: cannot catch SIGINT and SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => match criu_cet::sys::interrupted() {
            Some(sig) => {
                eprintln!(
                    "criu-cet: interrupted by {sig}: {e}; every traced thread was detached and left \
                     running with its registers as they were; no temporary file is left"
                );
                ExitCode::from(128 + sig as u8)
            }
            None => {
                eprintln!("criu-cet: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(command: Command) -> Result<ExitCode, EngineError> {
    if let Command::Show { file }
    | Command::Decode { file }
    | Command::Check { file, .. }
    | Command::Restore { file, .. } = &command
    {
        if let Some(w) = image::writable_by_others(file) {
            eprintln!("criu-cet: {w}");
        }
    }
    match command {
        Command::Host { json } => {
            let p = host::probe();
            if json {
                say!("{}", serde_json::to_string_pretty(&p).expect("profile serializes"));
            } else {
                say!("{}", show::host_line(&p));
            }
        }
        Command::Dump { pid, output, bitmap, prune_stale, json } => {
            let opts = CaptureOptions {
                bitmap_addr: bitmap.map(|a| (a, "--bitmap")),
                prune_stale,
                ..Default::default()
            };
            let report = dump(pid, &output, &opts)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&report).expect("a report serializes"));
            } else {
                say!("{report}");
            }
        }
        Command::Show { file } => return inputs::show(&file),
        Command::Decode { file } => return inputs::decode(&file),
        Command::Encode { json, output } => {
            let text =
                input::read_text(&json, Links::Follow, MAX_DOCUMENT, "image document (criu-cet decode)")?;
            let doc: ImageDoc = serde_json::from_str(&text).map_err(|e| EngineError::Io {
                path: json.clone(),
                source: std::io::Error::other(format!("not an image document (criu-cet decode): {e}")),
            })?;
            let summary = image::write_atomically(&output, image::Durability::Synced, |out| {
                doc.write_image(out, WriterOptions::default())
                    .map(|(_, s)| s)
                    .map_err(|source| EngineError::Image { file: json.clone(), source })
            })?;
            say!("{}: {} runs, {} bytes", output.display(), summary.runs, summary.file_bytes);
        }
        Command::Check { file, target, strict_coverage, json, any } => {
            return inputs::check(&file, target.as_deref(), strict_coverage, json, any)
        }
        Command::Restore { pid, file, json } => {
            let report = restore_file(pid, &file)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&report).expect("a report serializes"));
            } else {
                say!("{report}");
            }
        }
        Command::Demo => return demo::run(),
        Command::Bench { runs, criu, smoke } => return bench::run(runs, criu, smoke),
    }
    Ok(ExitCode::SUCCESS)
}

/// The CLI's dump: seize the process, capture it into `output` (fsynced), let it go.
pub fn dump(pid: u32, output: &Path, opts: &CaptureOptions) -> Result<job::DumpReport, EngineError> {
    let host = host::probe();
    let opts = job::DumpOptions {
        criu_run_id: None,
        host: &host,
        tracing: Tracing::Seize,
        durability: image::Durability::Synced,
        capture: opts.clone(),
    };
    job::dump(pid, job::Destination::File(output), &opts)
}

/// The CLI's restore: check `file` against this host, seize the process, restore, let it go.
pub fn restore_file(pid: u32, file: &Path) -> Result<job::RestoreOutcome, EngineError> {
    let mut r = image::open(file)?;
    job::restore(pid, file, &mut r, &host::probe(), Tracing::Seize)
}
