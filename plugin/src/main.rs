//! `criu-cet`: read images, capture and restore the CET state and IBT legacy bitmap of live
//! processes, check images against hosts, and run the demo. Thin glue over the `criu_cet`
//! engine and the `criu_cet_format` crate.

#![forbid(unsafe_code)]

use clap::Parser;
use cli::{Cli, Command};
use criu_cet::capture::CaptureOptions;
use criu_cet::host;
use criu_cet::input::{self, Links};
use criu_cet::restore::Recreated;
use criu_cet::trace::Tracing;
use criu_cet::{image, job, EngineError};
use criu_cet_format::{ImageDoc, WriterOptions};
use std::path::Path;
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
mod cli;
mod demo;
mod inputs;
mod show;

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
        Command::Completions { shell } => say_raw!("{}", String::from_utf8_lossy(&cli::completions(shell))),
        Command::Man { dir: None } => say_raw!("{}", String::from_utf8_lossy(&cli::man_page())),
        Command::Man { dir: Some(dir) } => {
            cli::write_man_pages(&dir).map_err(|source| EngineError::Io { path: dir.clone(), source })?;
            say!("{}: criu-cet.1 and a page per subcommand", dir.display());
        }
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
    let namespace_pid = criu_cet::proc::namespace_id(pid, pid).unwrap_or(pid);
    job::restore(pid, namespace_pid, file, &mut r, &host::probe(), Tracing::Seize, Recreated::Unknown)
}
