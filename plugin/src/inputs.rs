//! `show`, `decode` and `check` over every kind of input: one cet image, a CRIU image
//! directory, or a checkpoint archive (the engine's `archive` module reads them). A single
//! image prints as it always did; a directory or archive prints every cet image it holds and a
//! summary line. `check --target DIR` judges every image against every host profile in DIR.

use crate::show;
use criu_cet::archive::{self, FoundImage, ImageVisitor, InputKind, Listing};
use criu_cet::check::{CoveragePolicy, Finding, Severity};
use criu_cet::checkpoint::{self, Belonging};
use criu_cet::fleet::{self, HostTally, HostVerdict, Tallies, Targets};
use criu_cet::EngineError;
use criu_cet_format::{ImageDoc, ImageReader};
use serde::Serialize;
use serde_json::json;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What an input without any cet image means, when it is a checkpoint.
fn no_images(input: &Path, listing: &Listing) -> String {
    format!(
        "{}: no cet image (cet-<N>.img) in this {}: the checkpoint was made without the cet plugin, or \
         no process in it had an IBT legacy bitmap or CET state in use; there is nothing for the \
         plugin to check or restore",
        input.display(),
        listing.kind.describe()
    )
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

struct Show {
    count: usize,
}

impl ImageVisitor for Show {
    fn begin(&mut self, input: &Path, kind: InputKind) {
        if kind != InputKind::Image {
            say!("{}: {}", input.display(), kind.describe());
        }
    }

    fn image<R: Read + Seek>(
        &mut self,
        found: &FoundImage,
        r: &mut ImageReader<R>,
    ) -> Result<(), EngineError> {
        if self.count > 0 {
            say!();
        }
        self.count += 1;
        say_raw!("{}", show::image(Path::new(&found.display), r));
        Ok(())
    }
}

/// `criu-cet show INPUT`.
pub fn show(input: &Path) -> Result<ExitCode, EngineError> {
    let listing = archive::for_each_image(input, &mut Show { count: 0 })?;
    match listing.kind {
        InputKind::Image => {}
        _ if listing.images.is_empty() => say!("{}", no_images(input, &listing)),
        _ => say!(
            "\n{}: {} cet image(s): {}",
            input.display(),
            listing.images.len(),
            listing.images.join(", ")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Streams `{"input":..,"kind":..,"images":[...]}`, opening it at the first image so that an
/// input refused before any image prints nothing on stdout.
struct Decode {
    head: Option<String>,
    count: usize,
}

impl ImageVisitor for Decode {
    fn begin(&mut self, input: &Path, kind: InputKind) {
        if kind != InputKind::Image {
            self.head = Some(format!(
                "{{\n  \"input\": {},\n  \"kind\": \"{}\",\n  \"images\": [",
                json_str(&input.display().to_string()),
                kind.name()
            ));
        }
    }

    fn image<R: Read + Seek>(
        &mut self,
        found: &FoundImage,
        r: &mut ImageReader<R>,
    ) -> Result<(), EngineError> {
        // Streamed page by page: memory stays bounded whatever the image holds.
        let stdout = std::io::stdout().lock();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout);
        let prefix = match &self.head {
            None => String::new(),
            Some(head) => {
                let sep = if self.count == 0 { format!("{head}\n") } else { ",\n".to_string() };
                format!("{sep}{{\"image\": {}, \"document\": ", json_str(&found.name))
            }
        };
        let suffix = if self.head.is_some() { "}" } else { "\n" };
        let write = |out: &mut std::io::BufWriter<_>, text: &str| {
            out.write_all(text.as_bytes())
                .map_err(|source| criu_cet_format::FormatError::Io { doing: "writing JSON", source })
        };
        write(&mut out, &prefix)
            .and_then(|()| ImageDoc::stream_json(r, &mut out))
            .and_then(|()| write(&mut out, suffix))
            .and_then(|()| {
                out.flush()
                    .map_err(|source| criu_cet_format::FormatError::Io { doing: "writing JSON", source })
            })
            .map_err(|source| EngineError::Image { file: PathBuf::from(&found.display), source })?;
        self.count += 1;
        Ok(())
    }
}

/// `criu-cet decode INPUT`: one image's document as before; for a directory or archive, every
/// image's document in `{"input", "kind", "images": [{"image", "document"}]}`.
pub fn decode(input: &Path) -> Result<ExitCode, EngineError> {
    let mut d = Decode { head: None, count: 0 };
    let listing = archive::for_each_image(input, &mut d)?;
    if let Some(head) = &d.head {
        if d.count == 0 {
            say_raw!("{head}");
            eprintln!("criu-cet: {}", no_images(input, &listing));
        }
        say!("\n  ]\n}}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One element of `images` in `check --json`.
#[derive(Serialize)]
struct ImageEntry<'a> {
    image: &'a str,
    bytes: u64,
    verdicts: &'a [HostVerdict],
}

/// The fields of `check --json` after `images`.
#[derive(Serialize)]
struct Tail<'a> {
    hosts: &'a [HostTally],
    able: Vec<&'a str>,
    pass: bool,
    note: Option<String>,
}

struct Check<'a> {
    targets: &'a Targets,
    coverage: CoveragePolicy,
    json: bool,
    tallies: Tallies,
    /// Images some host refused (for the one-host summary line).
    refused: Vec<String>,
    head: Option<String>,
    count: usize,
    /// A CRIU image directory's inventory.img: the dump its cet images must come from (the
    /// plugin's rule, `criu_cet::checkpoint`).
    inventory: Option<criu_cet::criu_images::Inventory>,
}

impl Check<'_> {
    fn print_text(&self, found: &FoundImage, verdicts: &[HostVerdict]) {
        if self.targets.fleet {
            for v in verdicts {
                for f in &v.findings {
                    say!("{}: {f}", v.host);
                }
            }
            return;
        }
        let (v, t) = (&verdicts[0], &self.targets.hosts[0]);
        for f in &v.findings {
            say!("{f}");
        }
        let can = if v.can_restore { "can" } else { "cannot" };
        say!("verdict: {} {can} be restored on {}", found.display, t.label);
    }
}

impl ImageVisitor for Check<'_> {
    fn begin(&mut self, input: &Path, kind: InputKind) {
        if kind == InputKind::Directory {
            self.inventory = criu_cet::criu_images::read_inventory(input).ok();
        }
        let compression = match kind {
            InputKind::Archive(c) => json!(c),
            _ => json!(null),
        };
        self.head = Some(format!(
            "{{\"input\": {}, \"kind\": \"{}\", \"compression\": {compression},\n \"images\": [",
            json_str(&input.display().to_string()),
            kind.name()
        ));
    }

    fn image<R: Read + Seek>(
        &mut self,
        found: &FoundImage,
        r: &mut ImageReader<R>,
    ) -> Result<(), EngineError> {
        let file_name = found.file_name();
        let mut verdicts = fleet::judge(
            &found.display,
            file_name,
            r.metadata(),
            r.summary(),
            &self.targets.hosts,
            self.coverage,
        );
        let name = file_name.unwrap_or(&found.name);
        let belonging = self.inventory.as_ref().map(|inv| checkpoint::belonging(name, r.metadata(), inv));
        let finding = match belonging {
            Some(Belonging::Foreign(message)) => Some(Finding::other(Severity::Error, message)),
            Some(Belonging::Unknown(message)) => Some(Finding::other(Severity::Warning, message)),
            Some(Belonging::Same) | None => None,
        };
        for v in verdicts.iter_mut().filter(|_| finding.is_some()) {
            let f = finding.clone().expect("filtered");
            v.can_restore &= f.severity != Severity::Error;
            v.findings.push(f);
        }
        self.tallies.add(&verdicts);
        if verdicts.iter().any(|v| !v.can_restore) {
            self.refused.push(found.name.clone());
        }
        if self.json {
            let head = self.head.take().unwrap_or_default();
            let sep = if self.count == 0 { "\n" } else { ",\n" };
            let entry = ImageEntry { image: &found.name, bytes: found.bytes, verdicts: &verdicts };
            let entry = serde_json::to_string(&entry).expect("verdicts serialize");
            say_raw!("{head}{sep}  {entry}");
        } else {
            if r.metadata().bitmap.is_some() {
                say!("{}: memory: {}", found.display, criu_cet::check::Commit::of(r.summary()));
            }
            self.print_text(found, &verdicts);
        }
        self.count += 1;
        Ok(())
    }
}

/// `criu-cet check INPUT [--target FILE|DIR] [--strict-coverage] [--json] [--any]`.
pub fn check(
    input: &Path,
    target: Option<&Path>,
    strict_coverage: bool,
    json: bool,
    any: bool,
) -> Result<ExitCode, EngineError> {
    // Profiles first: a bad one is reported before the checkpoint is read.
    let targets = fleet::targets(target)?;
    let coverage = if strict_coverage { CoveragePolicy::Strict } else { CoveragePolicy::Warn };
    let mut c = Check {
        targets: &targets,
        coverage,
        json,
        tallies: Tallies::new(&targets.hosts),
        refused: Vec::new(),
        head: None,
        count: 0,
        inventory: None,
    };
    let listing = archive::for_each_image(input, &mut c)?;
    // The plugin's rule: a dump that registered the cet plugin wrote cet images.
    let found: Vec<u32> = listing
        .images
        .iter()
        .filter_map(|n| Path::new(n).file_name()?.to_str().and_then(checkpoint::image_id))
        .collect();
    let missing = match &c.inventory {
        Some(inv) if inv.names_cet() => {
            let tasks: Vec<u32> = criu_cet::criu_images::read_pstree(input)
                .map(|t| t.into_keys().collect())
                .unwrap_or_default();
            checkpoint::missing_images(input, &input.display().to_string(), &tasks, &found)
        }
        _ => None,
    };
    if let Some(m) = &missing {
        say!("error: {m}");
        if !json {
            say!("verdict: {} cannot be restored: cet images are missing", input.display());
        }
    }
    let missing = missing.is_some();
    let pass = c.tallies.pass(any) && !missing;
    let note =
        (listing.images.is_empty() && listing.kind != InputKind::Image).then(|| no_images(input, &listing));
    let code = if pass { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    if json {
        let tail = Tail { hosts: &c.tallies.0, able: c.tallies.able(), pass, note };
        // The tail's fields continue the object the head opened.
        let tail = serde_json::to_string(&tail).expect("tallies serialize");
        let head = c.head.take().unwrap_or_default();
        say!("{head}\n ],\n {}", &tail[1..]);
        return Ok(code);
    }
    if let Some(note) = note {
        say!("{note}");
    }
    if targets.fleet {
        print_table(&c.tallies);
        let able = c.tallies.able();
        let total = c.tallies.0.len();
        let what = format!("every cet image of {} ({})", input.display(), listing.images.len());
        if able.len() == total {
            say!("verdict: all {total} hosts can take {what}");
        } else if able.is_empty() {
            say!("verdict: no host can take {what}");
        } else {
            say!("verdict: {} of {total} hosts can take {what}: {}", able.len(), able.join(" "));
        }
    } else if listing.kind != InputKind::Image && !listing.images.is_empty() {
        let label = &targets.hosts[0].label;
        let n = listing.images.len();
        if c.refused.is_empty() {
            say!("verdict: {}: all {n} cet image(s) can be restored on {label}", input.display());
        } else {
            say!(
                "verdict: {} cannot be restored on {label}: {} of {n} cet image(s) refused: {}",
                input.display(),
                c.refused.len(),
                c.refused.join(", ")
            );
        }
    }
    Ok(code)
}

/// The fleet table: one row per host, whitespace-separated columns, the profile path last.
fn print_table(tallies: &Tallies) {
    let w = tallies.0.iter().map(|t| t.host.len()).max().unwrap_or(0).max(4);
    say!("{:<w$}  {:<7}  {:>6}  {:>7}  {:>8}  PROFILE", "HOST", "VERDICT", "IMAGES", "REFUSED", "WARNINGS");
    for t in &tallies.0 {
        say!(
            "{:<w$}  {:<7}  {:>6}  {:>7}  {:>8}  {}",
            t.host,
            if t.can_take_all { "ok" } else { "refused" },
            t.images,
            t.refused,
            t.warnings,
            t.profile.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into())
        );
    }
}
