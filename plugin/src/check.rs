//! Checking an image against a host profile before anything is restored.

use crate::host::{user_limit, HostProfile};
use criu_cet_format::{addr, Ibt, ImageSummary, Metadata, ShadowStack, UserCet};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The restore would fail or lose state: refuse.
    Error,
    /// The restore works, with a consequence the user should know.
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
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

/// How strictly coverage narrower than the target's address space is judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Coverage {
    #[default]
    Warn,
    Strict,
}

/// Every reason the image `image` cannot, or can only partly, be restored on `target`.
pub fn check(
    image: &str,
    meta: &Metadata,
    summary: &ImageSummary,
    target: &HostProfile,
    target_name: &str,
    coverage: Coverage,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |severity, message| out.push(Finding { severity, message });
    let bits = target.user_address_bits;
    let source = &meta.host;
    if let Some(b) = &meta.bitmap {
        let limit = user_limit(bits);
        let need = addr::address_bits_needed(b.end());
        if b.end() > limit {
            push(
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
            let severity = if coverage == Coverage::Strict { Severity::Error } else { Severity::Warning };
            push(
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
                    Severity::Error,
                    format!("{image}: thread {}: IA32_U_CET {:#x} is invalid: {why}", t.tid, user_cet.0),
                );
            }
            if user_cet.has(UserCet::ENDBR_EN) && !target_ibt {
                push(
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

pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}
