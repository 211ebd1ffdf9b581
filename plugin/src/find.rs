//! Finding the IBT legacy bitmap among a process's mappings, in the order of trust: the
//! IA32_U_CET bitmap base, a mapping named for it, the caller's address, and last a fingerprint.

use crate::error::EngineError;
use crate::proc::{Backing, Vma};
use criu_cet_format::{addr, FoundBy, Ibt, ThreadCet, UserCet};

const NAMES: [&str; 3] = ["[ibt_bitmap]", "[anon:ibt_bitmap]", "[anon:ibt-legacy-bitmap]"];

/// The bitmap mapping and how it was found; `None`: the process has no bitmap (not an error).
pub fn find_bitmap(
    pid: u32,
    vmas: &[Vma],
    threads: &[ThreadCet],
    caller_addr: Option<(u64, &'static str)>,
) -> Result<Option<(Vma, FoundBy)>, EngineError> {
    let starting_at = |a: u64| vmas.iter().find(|v| v.start == a).cloned();

    // (1) EB_LEG_BITMAP_BASE of a thread with legacy-bitmap lookups enabled.
    for t in threads {
        if let Ibt::Available { user_cet } = t.ibt {
            let base = user_cet.legacy_bitmap_base();
            if user_cet.has(UserCet::LEG_IW_EN) && base != 0 {
                if let Some(v) = starting_at(base) {
                    return Ok(Some((v, FoundBy::CetRegister)));
                }
            }
        }
    }
    // (2) A mapping named for it.
    if let Some(v) =
        vmas.iter().find(|v| matches!(&v.backing, Backing::Named(n) if NAMES.contains(&n.as_str())))
    {
        return Ok(Some((v.clone(), FoundBy::NamedMapping)));
    }
    // (3) The caller's address.
    if let Some((a, source_name)) = caller_addr {
        return match starting_at(a) {
            Some(v) if !could_be_bitmap(&v) => {
                Err(EngineError::NotABitmap { pid, source_name, mapping: v.describe(), length: v.len() })
            }
            Some(v) => Ok(Some((v, FoundBy::CallerAddress))),
            None => Err(EngineError::BitmapNotMapped { pid, addr: a, source_name }),
        };
    }
    // (4) The fingerprint: private anonymous read-write, NORESERVE and DONTDUMP, 2^(N-15) bytes.
    let candidates: Vec<&Vma> = vmas.iter().filter(|v| is_fingerprint(v)).collect();
    match candidates.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(((*one).clone(), FoundBy::Fingerprint))),
        many => Err(EngineError::AmbiguousBitmap {
            pid,
            candidates: many
                .iter()
                .map(|v| format!("{:#x} ({} bits)", v.start, addr::coverage_bits(v.len()).unwrap_or(0)))
                .collect(),
        }),
    }
}

/// Whether a mapping someone named as the bitmap can be one: private, not executable,
/// anonymous (or named for a bitmap), 2^(N-15) bytes. `[vvar]`, `[vdso]`, stacks, heaps and
/// files are not, and reading some of them fails with EIO.
pub fn could_be_bitmap(v: &Vma) -> bool {
    let anonymous = match &v.backing {
        Backing::Anonymous => true,
        Backing::Named(n) => NAMES.contains(&n.as_str()) || n.starts_with("[anon:"),
        Backing::File(_) => false,
    };
    anonymous && v.private && !v.exec && v.len().is_power_of_two() && v.len() <= 1 << 42
}

/// Whether any of `vmas` (read from maps, without smaps' flags) could be found as a bitmap when
/// no thread's IA32_U_CET names one and no caller gives its address: a mapping named for it, or
/// one with a fingerprint's traits that maps shows. `false` means the process has no bitmap.
pub fn might_hold_bitmap(vmas: &[Vma]) -> bool {
    vmas.iter().any(might_be_bitmap)
}

/// Whether mapping `v` (from maps, without smaps' flags) could be found as the bitmap by its name
/// or its fingerprint: the mappings whose flags a capture reads.
pub fn might_be_bitmap(v: &Vma) -> bool {
    matches!(&v.backing, Backing::Named(n) if NAMES.contains(&n.as_str()))
        || is_fingerprint(&Vma { noreserve: true, dontdump: true, ..v.clone() })
}

/// Whether a mapping has a bitmap's fingerprint (`FoundBy::Fingerprint`): private anonymous,
/// read-write, not executable, NORESERVE and DONTDUMP, exactly 2^(N-15) bytes for N in 47..=57.
pub fn is_fingerprint(v: &Vma) -> bool {
    let bits_ok = (47..=57).any(|n| addr::bitmap_length_for_bits(n) == Some(v.len()));
    v.backing == Backing::Anonymous
        && v.private
        && v.read
        && v.write
        && !v.exec
        && v.noreserve
        && v.dontdump
        && bits_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon(start: u64, len: u64) -> Vma {
        Vma {
            start,
            end: start + len,
            read: true,
            write: true,
            exec: false,
            private: true,
            backing: Backing::Anonymous,
            noreserve: true,
            dontdump: true,
            shares_pages: false,
        }
    }

    #[test]
    fn maps_without_a_named_or_fingerprint_sized_mapping_hold_no_bitmap() {
        let plain = |v: Vma| Vma { noreserve: false, dontdump: false, ..v };
        assert!(might_hold_bitmap(&[plain(anon(0x7f00_0000_0000, 8 << 30))]));
        assert!(might_hold_bitmap(&[Vma {
            backing: Backing::Named("[ibt_bitmap]".into()),
            ..anon(0, 4096)
        }]));
        assert!(!might_hold_bitmap(&[plain(anon(0x7f00_0000_0000, 1 << 30))]));
        assert!(!might_hold_bitmap(&[Vma { exec: true, ..anon(0x7f00_0000_0000, 8 << 30) }]));
        assert!(!might_hold_bitmap(&[]));
    }

    #[test]
    fn fingerprint_needs_every_trait() {
        assert!(is_fingerprint(&anon(0x7f00_0000_0000, 8 << 30)));
        assert!(!is_fingerprint(&anon(0x7f00_0000_0000, (8 << 30) + 4096)));
        assert!(!is_fingerprint(&Vma { dontdump: false, ..anon(0, 8 << 30) }));
        assert!(!is_fingerprint(&Vma { noreserve: false, ..anon(0, 8 << 30) }));
        assert!(!is_fingerprint(&anon(0, 1 << 30)));
    }

    #[test]
    fn order_of_trust_and_ambiguity() {
        let a = anon(0x7f00_0000_0000, 8 << 30);
        let b = anon(0x7e00_0000_0000, 4 << 30);
        let named = Vma { backing: Backing::Named("[ibt_bitmap]".into()), ..anon(0x1000_0000, 1 << 20) };
        let found = find_bitmap(1, std::slice::from_ref(&a), &[], None).unwrap().unwrap();
        assert_eq!((found.0.start, found.1), (a.start, FoundBy::Fingerprint));
        let err = find_bitmap(1, &[a.clone(), b.clone()], &[], None).unwrap_err().to_string();
        assert!(err.contains("0x7f0000000000 (48 bits)") && err.contains("--bitmap"), "{err}");
        let found =
            find_bitmap(1, &[a.clone(), b.clone()], &[], Some((b.start, "--bitmap"))).unwrap().unwrap();
        assert_eq!(found.1, FoundBy::CallerAddress);
        let found = find_bitmap(1, &[a.clone(), named.clone()], &[], None).unwrap().unwrap();
        assert_eq!(found.1, FoundBy::NamedMapping);
        let t = ThreadCet {
            tid: 1,
            shadow_stack: criu_cet_format::ShadowStack::NotAvailable,
            ibt: Ibt::Available { user_cet: UserCet(b.start | UserCet::LEG_IW_EN | UserCet::ENDBR_EN) },
        };
        let found = find_bitmap(1, &[a, b.clone(), named], &[t], None).unwrap().unwrap();
        assert_eq!((found.0.start, found.1), (b.start, FoundBy::CetRegister));
        assert!(find_bitmap(1, &[], &[], Some((0x1000, "--bitmap"))).is_err());
        assert!(find_bitmap(1, &[], &[], None).unwrap().is_none());
    }
}
