//! The CLI's definition, shared by `criu-cet` (main.rs) and the build script, which renders the
//! manual pages and shell completions the Debian package ships from it (build.rs).

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use criu_cet_format::meta::parse_number;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// `criu-cet --version`: the program's version and the image format version it writes.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    use criu_cet_format::layout::{MAJOR, MINOR};
    format!("{} (writes cet image format {MAJOR}.{MINOR})", env!("CARGO_PKG_VERSION"))
});

#[derive(Parser)]
#[command(
    name = "criu-cet",
    version = VERSION.as_str(),
    about = "Checkpoint/restore of x86 CET state and the IBT legacy code bitmap"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Print a shell completion script (bash: source it; zsh: save it as _criu-cet in $fpath;
    /// fish: save it as criu-cet.fish in a completions directory).
    Completions { shell: Shell },
    /// Write the manual pages (criu-cet.1 and one per subcommand) into DIR, or print criu-cet(1)
    /// to stdout when no DIR is given (`criu-cet man | man -l -`).
    Man { dir: Option<PathBuf> },
}

fn parse_addr(s: &str) -> Result<u64, String> {
    parse_number(s)
}

/// The manual pages: criu-cet.1 and criu-cet-SUBCOMMAND.1 for each subcommand, into `dir`.
pub fn write_man_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}

/// criu-cet(1), the page of the command and its list of subcommands.
pub fn man_page() -> Vec<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page).expect("writing to memory cannot fail");
    page
}

/// The completion script for `shell` (rendered in memory: clap_complete panics on a write error,
/// and `criu-cet completions bash | head` must not).
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "criu-cet", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent() {
        // clap's own checks of the definition (conflicting names, bad defaults), which the man
        // pages and completions are rendered from as well.
        Cli::command().debug_assert();
    }

    #[test]
    fn version_names_the_image_format_written() {
        let v = Cli::command().render_version();
        let want = format!("{}.{}", criu_cet_format::layout::MAJOR, criu_cet_format::layout::MINOR);
        assert!(v.contains(&format!("writes cet image format {want}")), "{v}");
    }

    #[test]
    fn man_page_and_completions_name_every_subcommand() {
        let page = String::from_utf8(man_page()).expect("roff is UTF-8");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(completions(shell)).expect("scripts are UTF-8");
            for sub in Cli::command().get_subcommands() {
                assert!(script.contains(sub.get_name()), "{shell} completion lacks {}", sub.get_name());
                assert!(
                    page.contains(&sub.get_name().replace('-', "\\-")),
                    "man page lacks {}",
                    sub.get_name()
                );
            }
        }
    }
}
