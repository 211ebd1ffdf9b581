//! Checking an image against a host profile before anything is restored.

use crate::host::{user_limit, HostProfile};
use criu_cet_format::{addr, BitmapMapping, Ibt, ImageSummary, Metadata, ShadowStack, UserCet};
use serde::Serialize;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The restore would fail or lose state: refuse.
    Error,
    /// The restore works, with a consequence the user should know.
    Warning,
}

/// Which rule a finding comes from: what callers and tests match on (the message is for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The mapping cannot be a bitmap (its length, coverage or protection).
    Geometry,
    /// The bitmap ends above the target's user address space.
    AddressBits {
        /// Address bits the bitmap's end needs.
        need: u8,
        /// The target's user address bits.
        have: u8,
    },
    /// Legacy bits are set for code above the target's address space.
    LegacyBitsBeyondTarget,
    /// The bitmap covers fewer address bits than the target maps code at.
    NarrowCoverage,
    /// A thread has shadow stack enabled; the target has none.
    NoShadowStack {
        /// The thread, by the id the image records.
        tid: u32,
    },
    /// A thread's IA32_U_CET is not a value the CPU takes.
    InvalidUserCet {
        /// The thread.
        tid: u32,
    },
    /// A thread has IBT enabled; the target has none.
    NoIbt {
        /// The thread.
        tid: u32,
    },
    /// A rule outside the host check (an image's name, its dump): see the message.
    Other,
}

/// One reason an image cannot, or can only partly, be restored on a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Whether it refuses the restore or only warns.
    pub severity: Severity,
    /// What is wrong, with the range, both hosts' widths and the next step.
    pub message: String,
    /// The rule it comes from.
    #[serde(skip)]
    pub rule: Rule,
}

impl Finding {
    /// A finding of a rule outside the host check.
    pub fn other(severity: Severity, message: String) -> Finding {
        Finding { severity, message, rule: Rule::Other }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{s}: {}", self.message)
    }
}

/// How strictly coverage narrower than the target's address space is judged
/// (`--strict-coverage`, `CRIU_CET_COVERAGE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CoveragePolicy {
    /// A bitmap narrower than the target's address space is a warning (the default).
    #[default]
    Warn,
    /// It is an error: the restore is refused.
    Strict,
}

/// Every reason the image `image` cannot, or can only partly, be restored on `target`.
pub fn check(
    image: &str,
    meta: &Metadata,
    summary: &ImageSummary,
    target: &HostProfile,
    target_name: &str,
    coverage: CoveragePolicy,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |rule, severity, message| out.push(Finding { severity, message, rule });
    let bits = target.user_address_bits;
    let source = &meta.host;
    if let Some(b) = &meta.bitmap {
        if let Some(why) = geometry_problem(b) {
            push(Rule::Geometry, Severity::Error, format!("{image}: {why}"));
        }
        let limit = user_limit(bits);
        let need = addr::address_bits_needed(b.end());
        if b.end() > limit {
            push(
                Rule::AddressBits { need, have: bits },
                Severity::Error,
                format!(
                    "{image}: bitmap {:#x}-{:#x} needs {need} address bits, but {target_name} has a \
                     {bits}-bit user address space (mappings end at or below {limit:#x}); the source \
                     host had {} bits. Restore on a host with 5-level paging (la57), or checkpoint a \
                     process whose bitmap lies below 2^{bits}",
                    b.base.0,
                    b.end(),
                    source.user_address_bits
                ),
            );
        }
        let code_end = addr::code_range_of_bitmap_page(summary.populated_end_page).0;
        if code_end > 1u64 << bits {
            push(
                Rule::LegacyBitsBeyondTarget,
                Severity::Warning,
                format!(
                    "{image}: legacy bits are populated for code up to {code_end:#x} ({} address bits), \
                     beyond {target_name}'s {bits}-bit address space; they are restored but no code \
                     can be mapped there",
                    addr::address_bits_needed(code_end)
                ),
            );
        }
        let cov = b.coverage_bits();
        if cov < bits {
            let severity =
                if coverage == CoveragePolicy::Strict { Severity::Error } else { Severity::Warning };
            push(
                Rule::NarrowCoverage,
                severity,
                format!(
                    "{image}: the bitmap covers {cov} address bits but {target_name} maps code up to \
                     {bits} bits: an indirect branch to legacy code above 2^{cov} would fault (#CP)"
                ),
            );
        }
    }
    let target_shstk = target.cet.cpu_shstk && target.cet.kernel_shstk;
    let target_ibt = target.cet.cpu_ibt && target.cet.kernel_ibt;
    for t in &meta.process.threads {
        if let ShadowStack::Available { features, .. } = t.shadow_stack {
            if features & 1 != 0 && !target_shstk {
                push(
                    Rule::NoShadowStack { tid: t.tid },
                    Severity::Error,
                    format!(
                        "{image}: thread {} has shadow stack enabled, but {target_name} lacks user \
                         shadow stack (CPU user_shstk: {}, kernel: {}); CRIU cannot restore it there",
                        t.tid, target.cet.cpu_shstk, target.cet.kernel_shstk
                    ),
                );
            }
        }
        if let Ibt::Available { user_cet } = t.ibt {
            if let Some(why) = user_cet.invalid_reason() {
                push(
                    Rule::InvalidUserCet { tid: t.tid },
                    Severity::Error,
                    format!("{image}: thread {}: IA32_U_CET {:#x} is invalid: {why}", t.tid, user_cet.0),
                );
            }
            if user_cet.has(UserCet::ENDBR_EN) && !target_ibt {
                push(
                    Rule::NoIbt { tid: t.tid },
                    Severity::Error,
                    format!(
                        "{image}: thread {} has IBT enabled (IA32_U_CET {:#x}), but {target_name} lacks \
                         user IBT (CPU ibt: {}, kernel: {}); the process would run unprotected",
                        t.tid, user_cet.0, target.cet.cpu_ibt, target.cet.kernel_ibt
                    ),
                );
            }
        }
    }
    out
}

/// Widest coverage a bitmap can have: 57 address bits (5-level paging), 4 TiB.
pub const MAX_COVERAGE_BITS: u8 = 57;

pub use crate::error::BITMAP_SHAPE;

/// Why `b` cannot be an IBT legacy bitmap, if it cannot: its length must be 2^(N-15) bytes for
/// the N address bits it covers, N at most 57, and it must not be executable.
pub fn geometry_problem(b: &BitmapMapping) -> Option<String> {
    let n = b.coverage_bits();
    let range = format!("bitmap {:#x}-{:#x}", b.base.0, b.end());
    if !b.length.is_power_of_two() {
        let (lo, hi) =
            (1u64 << (63 - b.length.leading_zeros()), (1u64 << (63 - b.length.leading_zeros())) << 1);
        return Some(format!(
            "{range} is {:#x} bytes long, not a bitmap length: a bitmap covering N address bits is \
             exactly 2^(N-15) bytes ({lo:#x} for {n} bits, {hi:#x} for {} bits); the image is damaged \
             or forged, and restoring it would write into whatever occupies that range",
            b.length,
            n + 1
        ));
    }
    if n > MAX_COVERAGE_BITS {
        return Some(format!(
            "{range} claims {n} covered address bits; x86-64 has at most {MAX_COVERAGE_BITS} \
             (a 4 TiB bitmap): the image is damaged or forged"
        ));
    }
    if b.prot & 4 != 0 {
        return Some(format!("{range} is recorded executable (prot {:#x}); a bitmap never is", b.prot));
    }
    None
}

/// The memory a restore of an image commits in the target, counted from its run table: every
/// all-ones and data page becomes a private anonymous page, plus the page tables that map them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Commit {
    /// All-ones pages the restore writes.
    pub ones_pages: u64,
    /// Data pages the restore writes.
    pub data_pages: u64,
    /// Upper bound on page-table pages: one per 2 MiB the runs touch (pages/512, plus two for
    /// each run's ends), plus one upper-level page per 1 GiB of those.
    pub page_table_pages: u64,
}

impl Commit {
    /// The commitment of an image with these totals.
    pub fn of(summary: &ImageSummary) -> Commit {
        let pages = summary.ones_pages.saturating_add(summary.data_pages);
        let pte = (pages / 512).saturating_add(summary.runs.saturating_mul(2));
        Commit {
            ones_pages: summary.ones_pages,
            data_pages: summary.data_pages,
            page_table_pages: pte.saturating_add(pte.div_ceil(512)),
        }
    }

    /// All of it in bytes: every page counted, 4 KiB each.
    pub fn bytes(&self) -> u64 {
        self.ones_pages
            .saturating_add(self.data_pages)
            .saturating_add(self.page_table_pages)
            .saturating_mul(addr::PAGE_SIZE)
    }
}

impl std::fmt::Display for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a restore commits up to {} bytes ({:.1} MiB) in the target: {} all-ones pages + {} data \
             pages + at most {} page-table pages, 4 KiB each (untouched bitmap pages cost nothing)",
            self.bytes(),
            self.bytes() as f64 / f64::from(1 << 20),
            self.ones_pages,
            self.data_pages,
            self.page_table_pages
        )
    }
}

/// Whether any finding refuses the restore.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use criu_cet_format::{CetSupport, ImageReader, SourceHost};

    fn vector(bytes: &[u8]) -> (Metadata, ImageSummary) {
        let r = ImageReader::open(std::io::Cursor::new(bytes.to_vec())).unwrap();
        (r.metadata().clone(), *r.summary())
    }

    fn host(bits: u8, cet: bool) -> HostProfile {
        let all = CetSupport { cpu_shstk: cet, cpu_ibt: cet, kernel_shstk: cet, kernel_ibt: cet };
        SourceHost {
            kernel_release: "t".into(),
            user_address_bits: bits,
            cpu_virtual_bits: 57,
            la57: bits > 48,
            cet: all,
        }
    }

    fn rules(
        meta: &Metadata,
        s: &ImageSummary,
        target: &HostProfile,
        c: CoveragePolicy,
    ) -> Vec<(Rule, Severity)> {
        check("i", meta, s, target, "t", c).into_iter().map(|f| (f.rule, f.severity)).collect()
    }

    #[test]
    fn a_bitmap_above_the_targets_address_space_is_refused_with_both_widths() {
        let (meta, s) = vector(include_bytes!("../../tests/vectors/high-57.cetimg"));
        let found = rules(&meta, &s, &host(47, false), CoveragePolicy::Warn);
        assert!(found.contains(&(Rule::AddressBits { need: 53, have: 47 }, Severity::Error)), "{found:?}");
        assert!(found.contains(&(Rule::LegacyBitsBeyondTarget, Severity::Warning)), "{found:?}");
        assert!(rules(&meta, &s, &host(56, false), CoveragePolicy::Warn)
            .iter()
            .all(|(_, sev)| *sev != Severity::Error));
    }

    #[test]
    fn narrow_coverage_warns_unless_strict() {
        let (meta, s) = vector(include_bytes!("../../tests/vectors/typical-48.cetimg"));
        assert_eq!(rules(&meta, &s, &host(47, false), CoveragePolicy::Strict), vec![]);
        assert_eq!(
            rules(&meta, &s, &host(56, false), CoveragePolicy::Warn),
            vec![(Rule::NarrowCoverage, Severity::Warning)]
        );
        assert_eq!(
            rules(&meta, &s, &host(56, false), CoveragePolicy::Strict),
            vec![(Rule::NarrowCoverage, Severity::Error)]
        );
    }

    #[test]
    fn cet_state_the_target_lacks_and_invalid_state_are_refused_per_thread() {
        let (mut meta, s) = vector(include_bytes!("../../tests/vectors/threads-cet.cetimg"));
        assert_eq!(rules(&meta, &s, &host(47, true), CoveragePolicy::Warn), vec![]);
        let found = rules(&meta, &s, &host(47, false), CoveragePolicy::Warn);
        assert!(found.contains(&(Rule::NoShadowStack { tid: 5150 }, Severity::Error)), "{found:?}");
        assert!(found.contains(&(Rule::NoIbt { tid: 5151 }, Severity::Error)), "{found:?}");
        meta.process.threads[0].ibt =
            Ibt::Available { user_cet: UserCet(UserCet::ENDBR_EN | UserCet::SUPPRESS | UserCet::TRACKER) };
        let found = rules(&meta, &s, &host(47, true), CoveragePolicy::Warn);
        assert_eq!(found, vec![(Rule::InvalidUserCet { tid: 5150 }, Severity::Error)]);
    }

    #[test]
    fn a_mapping_that_cannot_be_a_bitmap_is_refused() {
        let (mut meta, s) = vector(include_bytes!("../../tests/vectors/typical-48.cetimg"));
        meta.bitmap.as_mut().unwrap().length += 4096;
        assert!(rules(&meta, &s, &host(47, false), CoveragePolicy::Warn)
            .contains(&(Rule::Geometry, Severity::Error)));
    }
}
