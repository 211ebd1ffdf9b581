//! The host profile: what a host offers a restored process. The same structure is recorded in
//! every image (as its source host) and printed by `criu-cet host --json` for `check --target`.

use crate::proc::{self, parse_cpuinfo, parse_thread_features};
use crate::sys;
use criu_cet_format::{CetSupport, SourceHost};

/// The profile format is the image's source-host record.
pub type HostProfile = SourceHost;

/// Probes this host.
pub fn probe() -> HostProfile {
    let (cpuinfo, status) = proc::cpuinfo_and_self_status();
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    from_facts(&cpuinfo, &status, release, user_address_bits(), sys::kernel_offers_ibt())
}

/// User address bits in use: 56 when this process can map at 2^47 (5-level paging), else 47.
/// A probe rather than cpuinfo, which shows the CPU's capability, not the mode in use.
pub fn user_address_bits() -> u8 {
    if sys::can_map_at(1 << 47) {
        56
    } else {
        47
    }
}

/// Builds a profile from recorded kernel output (tests feed other hosts' output through here).
pub fn from_facts(
    cpuinfo: &str,
    self_status: &str,
    release: String,
    user_bits: u8,
    kernel_ibt: bool,
) -> HostProfile {
    let cpu = parse_cpuinfo(cpuinfo);
    SourceHost {
        kernel_release: release,
        user_address_bits: user_bits,
        cpu_virtual_bits: cpu.virtual_bits,
        la57: user_bits > 47,
        cet: CetSupport {
            cpu_shstk: cpu.user_shstk,
            cpu_ibt: cpu.ibt,
            kernel_shstk: parse_thread_features(self_status).is_some(),
            kernel_ibt,
        },
    }
}

/// Highest end address a user mapping may have on a host with `bits` user address bits: the
/// kernel's TASK_SIZE, 2^bits minus one guard page (0 below 13 bits: no room for a mapping).
/// `bits` is at most 57 in any validated record (`SourceHost::validate`); more saturates.
pub fn user_limit(bits: u8) -> u64 {
    1u64.checked_shl(u32::from(bits)).unwrap_or(u64::MAX).saturating_sub(4096)
}

/// A built-in profile of a host that has only a 47-bit user address space: the demo and the
/// tests check images against it.
pub fn four_level_example() -> HostProfile {
    SourceHost {
        kernel_release: "example-4-level".into(),
        user_address_bits: 47,
        cpu_virtual_bits: 48,
        la57: false,
        cet: CetSupport::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_probes_consistently() {
        let p = probe();
        assert!(p.user_address_bits == 47 || p.user_address_bits == 56);
        assert_eq!(p.la57, p.user_address_bits == 56);
        // cpuinfo's width is capability: it can exceed the mode in use, never fall below 47+1.
        assert!(p.cpu_virtual_bits >= 48, "{p:?}");
    }

    #[test]
    fn recorded_five_level_cet_host() {
        let cpuinfo = "flags\t: la57 user_shstk ibt\naddress sizes\t: 52 bits physical, 57 bits virtual\n";
        let p = from_facts(cpuinfo, "x86_Thread_features:\tshstk\n", "6.6.0".into(), 56, false);
        assert_eq!(p.user_address_bits, 56);
        assert!(p.la57 && p.cet.cpu_shstk && p.cet.cpu_ibt && p.cet.kernel_shstk && !p.cet.kernel_ibt);
        assert_eq!(user_limit(47), 0x7fff_ffff_f000);
    }
}
