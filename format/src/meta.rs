//! The image's metadata: the source host, the process and its threads' CET state, the bitmap
//! mapping. Stored in the META section in bincode 1's layout (docs/FORMAT.md spells out every
//! byte); printed as JSON by `criu-cet decode`.
//!
//! The same types serve both encodings: values that people read as addresses (`Addr`) and the
//! IA32_U_CET MSR (`UserCet`) print as hex strings and decoded fields in JSON, and as plain
//! integers in the binary form (serde's `is_human_readable`).

use crate::addr;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A 64-bit address or register value: a `0x…` string in JSON, a u64 on disk.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Addr(pub u64);

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl Serialize for Addr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            parse_number(&text).map(Addr).map_err(de::Error::custom)
        } else {
            u64::deserialize(d).map(Addr)
        }
    }
}

/// Parses a 64-bit number written as `0x…` hex (the only form `decode` prints) or as plain
/// decimal: addresses in JSON, `--bitmap` and `CRIU_CET_BITMAP_ADDR`.
pub fn parse_number(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("{text:?} is not a 64-bit number (write hex as 0x…): {e}"))
}

/// What the source host offered: the facts a restore target is checked against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHost {
    /// `uname -r` of the host that wrote the image.
    pub kernel_release: String,
    /// User address bits in use: 47 with 4-level paging, 56 with 5-level paging.
    pub user_address_bits: u8,
    /// The CPU's virtual address bits (`/proc/cpuinfo` "address sizes"): capability, not mode.
    pub cpu_virtual_bits: u8,
    /// Whether 5-level paging (LA57) was in use.
    pub la57: bool,
    /// CET capabilities of CPU and kernel.
    pub cet: CetSupport,
}

impl SourceHost {
    /// The rules of docs/FORMAT.md section 3 for a host record, in an image or in a host profile:
    /// `kernel_release` at most 256 bytes; `cpu_virtual_bits` at most 57 (0: unknown);
    /// `user_address_bits` 1 to 48 without `la57` (4-level paging translates 48 bits) and 49 to
    /// 57 with it. Returns the field (as `host.FIELD`) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.kernel_release.len() > MAX_KERNEL_RELEASE {
            return Err((
                "host.kernel_release",
                format!("{} bytes, at most {MAX_KERNEL_RELEASE}", self.kernel_release.len()),
            ));
        }
        for (field, bits) in [
            ("host.user_address_bits", self.user_address_bits),
            ("host.cpu_virtual_bits", self.cpu_virtual_bits),
        ] {
            if bits > addr::MAX_ADDRESS_BITS {
                return Err((field, format!("{bits}, at most {}", addr::MAX_ADDRESS_BITS)));
            }
        }
        let bits = self.user_address_bits;
        let (range, paging) = if self.la57 {
            (FIVE_LEVEL_USER_BITS, "5-level paging (la57 true)")
        } else {
            (FOUR_LEVEL_USER_BITS, "4-level paging (la57 false)")
        };
        if !range.contains(&bits) {
            return Err((
                "host.user_address_bits",
                format!(
                    "{bits}, but {paging} gives user space {} to {} bits (Linux: 47 with 4-level, 56 \
                     with 5-level paging)",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(())
    }
}

/// User address bits a host record may state without la57: 4-level paging translates 48 bits.
pub const FOUR_LEVEL_USER_BITS: std::ops::RangeInclusive<u8> = 1..=48;
/// User address bits a host record may state with la57: 5-level paging translates 57 bits.
pub const FIVE_LEVEL_USER_BITS: std::ops::RangeInclusive<u8> = 49..=57;

/// CET support of a CPU and a kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CetSupport {
    /// CPU flag `user_shstk`.
    pub cpu_shstk: bool,
    /// CPU flag `ibt`.
    pub cpu_ibt: bool,
    /// The kernel offers user shadow stacks (ARCH_SHSTK_* and `x86_Thread_features`).
    pub kernel_shstk: bool,
    /// The kernel offers user IBT state (the NT_X86_CET regset).
    pub kernel_ibt: bool,
}

/// The checkpointed process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The process id on the host that dumped it (see `Metadata::namespace` for the tree's ids).
    pub pid: u32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// Every thread, in ascending TID order.
    pub threads: Vec<ThreadCet>,
}

/// One thread's CET state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadCet {
    /// The thread id on the host that dumped it.
    pub tid: u32,
    /// The thread's shadow-stack state.
    pub shadow_stack: ShadowStack,
    /// The thread's IBT state.
    pub ibt: Ibt,
}

/// Shadow-stack state, from `x86_Thread_features` and the NT_X86_SHSTK regset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowStack {
    /// The kernel reports no shadow-stack state (no `x86_Thread_features` line).
    NotAvailable,
    /// The kernel reports the thread's shadow-stack features.
    Available {
        /// Enabled features: bit 0 SHSTK, bit 1 WRSS.
        features: u64,
        /// Locked features, same bits.
        locked: u64,
        /// The shadow-stack pointer, when shadow stack is enabled.
        ssp: Option<Addr>,
    },
}

/// IBT state: the thread's IA32_U_CET MSR where the kernel exposes it (NT_X86_CET).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ibt {
    /// No upstream kernel exposes IBT state: recorded as such.
    NotAvailable,
    /// The kernel exposes the thread's IA32_U_CET.
    Available {
        /// The MSR's value.
        user_cet: UserCet,
    },
}

/// The IA32_U_CET MSR (0x6A0). On disk the raw u64; in JSON the raw value and its decoded fields
/// (the decoded fields are for reading: `encode` takes `raw` alone).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct UserCet(pub u64);

impl UserCet {
    /// Bit 0: shadow stack enabled.
    pub const SH_STK_EN: u64 = 1 << 0;
    /// Bit 1: WRSS instructions enabled.
    pub const WR_SHSTK_EN: u64 = 1 << 1;
    /// Bit 2: indirect branch tracking (ENDBR checks) enabled.
    pub const ENDBR_EN: u64 = 1 << 2;
    /// Bit 3: the legacy code bitmap is consulted on a missing ENDBR.
    pub const LEG_IW_EN: u64 = 1 << 3;
    /// Bit 4: the NOTRACK prefix is honoured.
    pub const NO_TRACK_EN: u64 = 1 << 4;
    /// Bit 5: suppression disabled.
    pub const SUPPRESS_DIS: u64 = 1 << 5;
    /// Bits 9:6, reserved: the CPU rejects a value with any of them set.
    pub const RESERVED: u64 = 0xf << 6;
    /// Bit 10: IBT tracking suppressed.
    pub const SUPPRESS: u64 = 1 << 10;
    /// Bit 11: the tracker is waiting for an ENDBR (WAIT_FOR_ENDBRANCH).
    pub const TRACKER: u64 = 1 << 11;
    /// Bits 63:12, EB_LEG_BITMAP_BASE: the legacy bitmap's address.
    pub const BITMAP_BASE_MASK: u64 = !0xfff;

    /// Whether the bit (or any of the bits) in `bit` is set.
    pub fn has(self, bit: u64) -> bool {
        self.0 & bit != 0
    }

    /// The shadow stack's bits, SH_STK_EN and WR_SHSTK_EN: the kernel's arch_prctl interface and
    /// CRIU own them; every other bit is IBT's.
    pub const SHADOW_STACK_BITS: u64 = Self::SH_STK_EN | Self::WR_SHSTK_EN;

    /// The IBT bits: every bit but [`Self::SHADOW_STACK_BITS`].
    pub fn ibt_bits(self) -> u64 {
        self.0 & !Self::SHADOW_STACK_BITS
    }

    /// Whether any IBT bit is set.
    pub fn uses_ibt(self) -> bool {
        self.ibt_bits() != 0
    }

    /// EB_LEG_BITMAP_BASE, bits 63:12.
    pub fn legacy_bitmap_base(self) -> u64 {
        self.0 & Self::BITMAP_BASE_MASK
    }

    /// Why the CPU would reject this value (reserved bits, SUPPRESS with TRACKER), if it would.
    pub fn invalid_reason(self) -> Option<&'static str> {
        if self.0 & Self::RESERVED != 0 {
            Some("reserved bits 9:6 are set")
        } else if self.has(Self::SUPPRESS) && self.has(Self::TRACKER) {
            Some("SUPPRESS and TRACKER are both set")
        } else {
            None
        }
    }
}

impl fmt::Debug for UserCet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserCet({:#x})", self.0)
    }
}

#[derive(Serialize)]
struct UserCetDecoded {
    raw: Addr,
    sh_stk_en: bool,
    wr_shstk_en: bool,
    endbr_en: bool,
    leg_iw_en: bool,
    no_track_en: bool,
    suppress_dis: bool,
    suppress: bool,
    tracker: bool,
    legacy_bitmap_base: Addr,
}

#[derive(Deserialize)]
struct UserCetRaw {
    raw: Addr,
}

impl Serialize for UserCet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_u64(self.0);
        }
        UserCetDecoded {
            raw: Addr(self.0),
            sh_stk_en: self.has(Self::SH_STK_EN),
            wr_shstk_en: self.has(Self::WR_SHSTK_EN),
            endbr_en: self.has(Self::ENDBR_EN),
            leg_iw_en: self.has(Self::LEG_IW_EN),
            no_track_en: self.has(Self::NO_TRACK_EN),
            suppress_dis: self.has(Self::SUPPRESS_DIS),
            suppress: self.has(Self::SUPPRESS),
            tracker: self.has(Self::TRACKER),
            legacy_bitmap_base: Addr(self.legacy_bitmap_base()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for UserCet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            UserCetRaw::deserialize(d).map(|r| UserCet(r.raw.0))
        } else {
            u64::deserialize(d).map(UserCet)
        }
    }
}

/// How the capture found the bitmap mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// EB_LEG_BITMAP_BASE of a thread's IA32_U_CET (NT_X86_CET regset).
    CetRegister,
    /// A mapping named `[ibt_bitmap]` (or an anonymous mapping named for it).
    NamedMapping,
    /// The address the caller gave (`--bitmap`, `CRIU_CET_BITMAP_ADDR`).
    CallerAddress,
    /// A private anonymous NORESERVE+DONTDUMP mapping of exactly 2^(N-15) bytes.
    Fingerprint,
}

/// The bitmap mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitmapMapping {
    /// Start address, 4 KiB aligned.
    pub base: Addr,
    /// Length in bytes, a multiple of 4 KiB; it covers `coverage_bits(length)` address bits.
    pub length: u64,
    /// PROT_* bits of the mapping (1 read, 2 write, 4 exec).
    pub prot: u32,
    /// Mapped MAP_NORESERVE (smaps `nr`).
    pub noreserve: bool,
    /// Excluded from core dumps (smaps `dd`).
    pub dontdump: bool,
    /// How the capture found the mapping.
    pub found_by: FoundBy,
}

impl BitmapMapping {
    /// End address (exclusive); saturates on absurd input, which validation rejects.
    pub fn end(&self) -> u64 {
        self.base.0.saturating_add(self.length)
    }

    /// Number of 4 KiB pages the mapping spans.
    pub fn pages(&self) -> u64 {
        self.length / addr::PAGE_SIZE
    }

    /// Address bits the bitmap covers (bit for every code page below 2^N).
    pub fn coverage_bits(&self) -> u8 {
        addr::coverage_bits(self.length).unwrap_or(0)
    }
}

/// Everything in the META section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The host that wrote the image.
    pub host: SourceHost,
    /// The process and its threads' CET state.
    pub process: ProcessInfo,
    /// `None`: the process has no bitmap (the image then records CET state only, and has no runs).
    pub bitmap: Option<BitmapMapping>,
    /// Since 1.2: the ids of the process and its threads in the dumped tree's pid namespace, which
    /// CRIU names its images by and restores them under. `None` in 1.0 and 1.1 files, whose ids
    /// are the dumping host's.
    pub namespace: Option<NamespaceIds>,
    /// Since 1.3: the id of the CRIU run that dumped the process (CRIU's `criu_run_id`, which it
    /// records in that dump's inventory.img as `dump_criu_run_id`): ties the image to that dump.
    /// `None` in older files and in images not written inside CRIU (`criu-cet dump`).
    pub criu_run_id: Option<String>,
}

/// Ids in the pid namespace of the dumped tree (the last `NSpid` entry of /proc/PID/status), the
/// ids CRIU uses for `core-<pid>.img` and gives the tasks again at restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceIds {
    /// The process's pid there; the image is named `cet-<pid>.img`.
    pub pid: u32,
    /// Each thread's id there, in the order of `process.threads`.
    pub tids: Vec<u32>,
    /// Pid namespaces between the dumper's and the tree's (`NSpid` entries seen by the dumper,
    /// less one): 0 when the tree ran in the dumper's own pid namespace.
    pub depth: u32,
}

impl Metadata {
    /// Where `field` (a name `validate` reports) sits in the encoded META section, from its
    /// start, for the fields at a fixed place after the kernel release string; `None` for the
    /// others (their error names the section's start).
    pub fn field_offset(&self, field: &str) -> Option<u64> {
        let kr = self.host.kernel_release.len() as u64;
        match field {
            "host.kernel_release" => Some(0),
            "host.user_address_bits" => Some(8 + kr),
            "host.cpu_virtual_bits" => Some(9 + kr),
            "process.comm" => Some(20 + kr),
            "process.threads" => Some(28 + kr + self.process.comm.len() as u64),
            _ => None,
        }
    }

    /// Checks the invariants a reader relies on; the writer checks them too, so a bad image is
    /// never written. Returns the field and the problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.process.comm.len() > MAX_COMM {
            return Err(("process.comm", format!("{} bytes, at most {MAX_COMM}", self.process.comm.len())));
        }
        self.host.validate()?;
        if !self.process.threads.windows(2).all(|w| w[0].tid < w[1].tid) {
            return Err(("process.threads", "thread ids must be unique and ascending".into()));
        }
        if let Some(ns) = &self.namespace {
            if ns.pid == 0 || ns.tids.contains(&0) {
                return Err(("namespace", "ids must be non-zero".into()));
            }
            if ns.tids.len() != self.process.threads.len() {
                return Err((
                    "namespace.tids",
                    format!("{} ids for {} threads", ns.tids.len(), self.process.threads.len()),
                ));
            }
            if ns.depth > MAX_NAMESPACE_DEPTH {
                return Err((
                    "namespace.depth",
                    format!(
                        "{}, at most {MAX_NAMESPACE_DEPTH} (Linux nests pid namespaces 32 deep)",
                        ns.depth
                    ),
                ));
            }
            let mut sorted = ns.tids.clone();
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                return Err(("namespace.tids", "thread ids must be unique".into()));
            }
        }
        if let Some(id) = &self.criu_run_id {
            if id.is_empty() || id.len() > MAX_CRIU_RUN_ID || !id.bytes().all(|c| c.is_ascii_graphic()) {
                return Err((
                    "criu_run_id",
                    format!("{id:?}: 1 to {MAX_CRIU_RUN_ID} printable ASCII characters without spaces"),
                ));
            }
        }
        if let Some(b) = &self.bitmap {
            if !addr::is_page_aligned(b.base.0) || !addr::is_page_aligned(b.length) || b.length == 0 {
                return Err((
                    "bitmap",
                    format!("base {} and length {:#x} must be non-empty and 4 KiB aligned", b.base, b.length),
                ));
            }
            if b.prot > 7 {
                return Err((
                    "bitmap.prot",
                    format!("{:#x}: only PROT_READ, PROT_WRITE and PROT_EXEC (bits 0 to 2)", b.prot),
                ));
            }
            let limit = 1u64 << addr::MAX_ADDRESS_BITS;
            if b.base.0 >= limit || b.length > limit - b.base.0 {
                return Err((
                    "bitmap",
                    format!("range {}..{:#x} reaches past the 57-bit address space", b.base, b.end()),
                ));
            }
        }
        Ok(())
    }
}

/// Deepest pid-namespace nesting `NamespaceIds::depth` may state (the kernel's
/// MAX_PID_NS_LEVEL).
pub const MAX_NAMESPACE_DEPTH: u32 = 32;
/// Longest `comm` the format accepts (the kernel's is 16 bytes; room for future use).
pub const MAX_COMM: usize = 256;
/// Longest kernel release string the format accepts.
pub const MAX_KERNEL_RELEASE: usize = 256;
/// Longest CRIU run id the format accepts (CRIU's is a 36-character UUID).
pub const MAX_CRIU_RUN_ID: usize = 64;
