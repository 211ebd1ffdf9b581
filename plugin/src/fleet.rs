//! Fleet preflight: every cet image of a checkpoint judged against every host profile of a
//! fleet (a directory of `criu-cet host --json` outputs), with one verdict per host and image
//! and one per host for the whole checkpoint. The judging itself is `check::check`.

use crate::check::{self, CoveragePolicy, Finding, Severity};
use crate::error::EngineError;
use crate::host::{self, HostProfile};
use crate::input::{self, Links};
use criu_cet_format::{ImageSummary, Metadata};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A host a checkpoint may be restored on.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its name: the profile's file name without `.json`, or `this host`.
    pub host: String,
    /// How messages name it: `target FILE` or `this host`.
    pub label: String,
    /// The profile file, unless the host was probed.
    pub profile_file: Option<PathBuf>,
    /// The host's profile.
    pub profile: HostProfile,
}

/// The hosts of a `--target` argument: none (this host), a profile file, or a directory.
#[derive(Clone, Debug)]
pub struct Targets {
    /// Every host to check against: this host, the one profile, or the directory's profiles
    /// sorted by file name.
    pub hosts: Vec<Target>,
    /// `--target` named a directory: a fleet, reported as a table.
    pub fleet: bool,
}

/// The largest host profile read: one is about 250 bytes; a kernel release is at most 256.
pub const MAX_PROFILE: u64 = 64 << 10;

/// The most host profiles a fleet directory may hold (memory grows with hosts).
pub const MAX_HOSTS: usize = 4096;

/// Loads a host profile written by `criu-cet host --json`: read with a cap of [`MAX_PROFILE`]
/// bytes and parsed by [`parse_profile`]. `links`: a profile found in a fleet directory is
/// never read through a link.
pub fn load_profile(path: &Path, links: Links) -> Result<HostProfile, EngineError> {
    let text = input::read_capped(path, links, MAX_PROFILE, "host profile (criu-cet host --json)")?;
    parse_profile(&text)
        .map_err(|why| EngineError::Io { path: path.into(), source: std::io::Error::other(why) })
}

/// A host profile from its JSON, every field validated (`SourceHost::validate`, docs/FORMAT.md
/// section 3): what is wrong names the field and what to do.
pub fn parse_profile(json: &[u8]) -> Result<HostProfile, String> {
    let profile: HostProfile = serde_json::from_slice(json)
        .map_err(|e| format!("not a host profile (criu-cet host --json): {e}"))?;
    profile.validate().map_err(|(field, why)| {
        format!(
            "field {field} is {why}: not a profile `criu-cet host --json` writes; collect it again on \
             that host"
        )
    })?;
    Ok(profile)
}

fn target_from_file(path: &Path, links: Links) -> Result<Target, EngineError> {
    let host = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Target {
        host,
        label: format!("target {}", path.display()),
        profile_file: Some(path.to_path_buf()),
        profile: load_profile(path, links)?,
    })
}

/// The hosts `--target` names: this host when absent, one profile file, or every `*.json` in a
/// directory (in name order). A file there that is not a profile is an error naming it.
pub fn targets(target: Option<&Path>) -> Result<Targets, EngineError> {
    let Some(path) = target else {
        let hosts = vec![Target {
            host: "this host".into(),
            label: "this host".into(),
            profile_file: None,
            profile: host::probe(),
        }];
        return Ok(Targets { hosts, fleet: false });
    };
    if !path.is_dir() {
        return Ok(Targets { hosts: vec![target_from_file(path, Links::Follow)?], fleet: false });
    }
    let io_err = |source| EngineError::Io { path: path.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_err)? {
        let p = entry.map_err(io_err)?.path();
        if p.extension().is_some_and(|e| e == "json") && !p.is_dir() {
            if files.len() == MAX_HOSTS {
                return Err(io_err(std::io::Error::other(format!(
                    "holds more than {MAX_HOSTS} host profiles (*.json): split the fleet into \
                     directories of fewer hosts"
                ))));
            }
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(io_err(std::io::Error::other(
            "holds no host profile (*.json): collect one per host with \
             `criu-cet host --json > DIR/$(hostname).json`",
        )));
    }
    files.sort();
    let hosts = files.iter().map(|f| target_from_file(f, Links::Refuse)).collect::<Result<_, _>>()?;
    Ok(Targets { hosts, fleet: true })
}

/// One host's verdict on one image.
#[derive(Clone, Debug, Serialize)]
pub struct HostVerdict {
    /// The host's name (`Target::host`).
    pub host: String,
    /// No finding is an error.
    pub can_restore: bool,
    /// Every finding for this image on this host.
    pub findings: Vec<Finding>,
}

/// Why the plugin would refuse an image found as `file_name` in an image directory (or a
/// checkpoint archive's) whatever the host: its name must be `cet-<id>.img` with the task id the
/// image records (the pid in the dumped tree's namespace, or the host pid before format 1.2).
pub fn name_findings(image: &str, file_name: &str, meta: &Metadata) -> Vec<Finding> {
    let recorded = meta.namespace.as_ref().map_or(meta.process.pid, |ns| ns.pid);
    let named = file_name.strip_prefix("cet-").and_then(|s| s.strip_suffix(".img"));
    let message = match named.and_then(|n| n.parse::<u32>().ok()) {
        Some(id) if format!("cet-{id}.img") != file_name => format!(
            "{image}: not a name the plugin writes (it would be cet-{id}.img); the plugin refuses it \
             at restore: is it a second image for task {id}?"
        ),
        Some(id) if id != recorded => format!(
            "{image}: the image records task {recorded}, not {id}; the plugin refuses an image under \
             another task's name at restore"
        ),
        Some(_) => return Vec::new(),
        None => format!("{image}: not a name the plugin writes (cet-<task id>.img)"),
    };
    vec![Finding::other(Severity::Error, message)]
}

/// Judges one image (named `image` in messages) against every host; `file_name`, for an image
/// found in a directory or archive, adds the checks of its name (`name_findings`).
pub fn judge(
    image: &str,
    file_name: Option<&str>,
    meta: &Metadata,
    summary: &ImageSummary,
    targets: &[Target],
    coverage: CoveragePolicy,
) -> Vec<HostVerdict> {
    let named = file_name.map(|f| name_findings(image, f, meta)).unwrap_or_default();
    targets
        .iter()
        .map(|t| {
            let mut findings = named.clone();
            findings.extend(check::check(image, meta, summary, &t.profile, &t.label, coverage));
            HostVerdict { host: t.host.clone(), can_restore: !check::has_errors(&findings), findings }
        })
        .collect()
}

/// One host's verdict on the whole checkpoint.
#[derive(Clone, Debug, Serialize)]
pub struct HostTally {
    /// The host's name (`Target::host`).
    pub host: String,
    /// The profile file, unless the host was probed.
    pub profile: Option<PathBuf>,
    /// It can take every image seen.
    pub can_take_all: bool,
    /// Images checked.
    pub images: u64,
    /// Images it cannot take.
    pub refused: u64,
    /// Warnings over all images.
    pub warnings: u64,
}

/// Per-host verdicts, added up image by image (memory grows with hosts, not images).
#[derive(Clone, Debug)]
pub struct Tallies(pub Vec<HostTally>);

impl Tallies {
    /// A clean tally for each target: nothing seen yet.
    pub fn new(targets: &[Target]) -> Tallies {
        Tallies(
            targets
                .iter()
                .map(|t| HostTally {
                    host: t.host.clone(),
                    profile: t.profile_file.clone(),
                    can_take_all: true,
                    images: 0,
                    refused: 0,
                    warnings: 0,
                })
                .collect(),
        )
    }

    /// Adds one image's verdicts, in the order of the targets given to `new`.
    pub fn add(&mut self, verdicts: &[HostVerdict]) {
        for (t, v) in self.0.iter_mut().zip(verdicts) {
            t.images += 1;
            if !v.can_restore {
                t.refused += 1;
                t.can_take_all = false;
            }
            t.warnings += v.findings.iter().filter(|f| f.severity == Severity::Warning).count() as u64;
        }
    }

    /// The hosts that can take every image.
    pub fn able(&self) -> Vec<&str> {
        self.0.iter().filter(|t| t.can_take_all).map(|t| t.host.as_str()).collect()
    }

    /// The preflight passes when every host can take every image, or with `any`, when at
    /// least one can.
    pub fn pass(&self, any: bool) -> bool {
        if any {
            self.0.iter().any(|t| t.can_take_all)
        } else {
            self.0.iter().all(|t| t.can_take_all)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(host: &str, ok: bool, warnings: usize) -> HostVerdict {
        let findings = (0..warnings)
            .map(|i| Finding::other(Severity::Warning, format!("w{i}")))
            .chain((!ok).then(|| Finding::other(Severity::Error, "e".into())))
            .collect();
        HostVerdict { host: host.into(), can_restore: ok, findings }
    }

    #[test]
    fn tallies_decide_all_and_any() {
        let t = |h: &str| Target {
            host: h.into(),
            label: h.into(),
            profile_file: None,
            profile: host::four_level_example(),
        };
        let mut tallies = Tallies::new(&[t("a"), t("b")]);
        assert!(tallies.pass(false), "no image: every host can take all of none");
        tallies.add(&[verdict("a", true, 1), verdict("b", true, 0)]);
        tallies.add(&[verdict("a", true, 0), verdict("b", false, 0)]);
        assert_eq!(tallies.able(), ["a"]);
        assert!(!tallies.pass(false));
        assert!(tallies.pass(true));
        assert_eq!((tallies.0[0].images, tallies.0[0].warnings, tallies.0[1].refused), (2, 1, 1));
        tallies.add(&[verdict("a", false, 0), verdict("b", true, 0)]);
        assert!(!tallies.pass(true));
    }

    /// The host-profile fuzz corpus (fuzz/corpus/host_profile) replays without a panic, and
    /// its seeds of valid profiles still parse.
    #[test]
    fn the_host_profile_fuzz_corpus_replays_without_a_panic() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/host_profile");
        let (mut n, mut valid) = (0, 0);
        for e in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            n += 1;
            if let Ok(p) = parse_profile(&data) {
                valid += 1;
                assert!(host::user_limit(p.user_address_bits) < 1 << 57);
            }
        }
        assert!(n >= 8 && valid >= 2, "the host_profile corpus lost its seeds ({n} inputs, {valid} valid)");
    }

    #[test]
    fn profiles_are_refused_naming_the_field() {
        let p = |bits: u8, la57: bool| {
            let mut h = host::four_level_example();
            h.user_address_bits = bits;
            h.la57 = la57;
            parse_profile(serde_json::to_string(&h).unwrap().as_bytes())
        };
        for (bits, la57) in [
            (0, false),
            (5, true),
            (11, true),
            (56, false),
            (58, true),
            (64, true),
            (100, true),
            (255, false),
        ] {
            let e = p(bits, la57).unwrap_err();
            assert!(e.contains("field host.user_address_bits is") && e.contains(&bits.to_string()), "{e}");
        }
        for (bits, la57) in [(47, false), (56, true), (1, false), (57, true)] {
            p(bits, la57).unwrap();
        }
    }
}
