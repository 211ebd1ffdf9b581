//! Human-readable output of the CLI.

use criu_cet::host::HostProfile;
use criu_cet_format::addr::{self, PAGE_SIZE};
use criu_cet_format::{Ibt, ImageReader, RunKind, ShadowStack, UserCet};
use std::fmt::Write as _;
use std::io::{Read, Seek};
use std::path::Path;

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn host_line(p: &HostProfile) -> String {
    format!(
        "kernel {}, {}-bit user address space ({}-level paging), CPU {} bits virtual; CET: CPU shstk {} ibt {}, kernel shstk {} ibt {}",
        p.kernel_release,
        p.user_address_bits,
        if p.la57 { 5 } else { 4 },
        p.cpu_virtual_bits,
        yn(p.cet.cpu_shstk),
        yn(p.cet.cpu_ibt),
        yn(p.cet.kernel_shstk),
        yn(p.cet.kernel_ibt)
    )
}

pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 40 && b % (1 << 40) == 0 => format!("{} TiB", b >> 40),
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b => format!("{b} bytes"),
    }
}

fn cet_line(u: UserCet) -> String {
    let names = [
        (UserCet::SH_STK_EN, "SH_STK_EN"),
        (UserCet::WR_SHSTK_EN, "WR_SHSTK_EN"),
        (UserCet::ENDBR_EN, "ENDBR_EN"),
        (UserCet::LEG_IW_EN, "LEG_IW_EN"),
        (UserCet::NO_TRACK_EN, "NO_TRACK_EN"),
        (UserCet::SUPPRESS_DIS, "SUPPRESS_DIS"),
        (UserCet::SUPPRESS, "SUPPRESS"),
        (UserCet::TRACKER, "TRACKER"),
    ];
    let set: Vec<&str> = names.iter().filter(|(b, _)| u.has(*b)).map(|(_, n)| *n).collect();
    format!("IA32_U_CET {:#x} [{}] bitmap base {:#x}", u.0, set.join(" "), u.legacy_bitmap_base())
}

/// `criu-cet show`.
pub fn image<R: Read + Seek>(file: &Path, r: &mut ImageReader<R>) -> String {
    let mut o = String::new();
    let (h, meta, s) = (*r.header(), r.metadata().clone(), *r.summary());
    let _ = writeln!(o, "image {}: format {}.{}, {} bytes", file.display(), h.major, h.minor, s.file_bytes);
    let _ = writeln!(o, "source host: {}", host_line(&meta.host));
    let p = &meta.process;
    let _ = writeln!(o, "process {} ({}), {} threads", p.pid, p.comm, p.threads.len());
    match &meta.namespace {
        Some(ns) if ns.depth > 0 => {
            let tids: Vec<String> = ns.tids.iter().map(u32::to_string).collect();
            let _ = writeln!(
                o,
                "  in its pid namespace ({} below the dumper's): task {}, threads {}; CRIU restores it as task {}",
                ns.depth,
                ns.pid,
                tids.join(" "),
                ns.pid
            );
        }
        Some(_) => {}
        None => {
            let _ =
                writeln!(o, "  no pid-namespace ids (an image older than format 1.2): named by the host pid");
        }
    }
    let _ = match &meta.criu_run_id {
        Some(id) => {
            writeln!(o, "  dumped by CRIU run {id} (its checkpoint's inventory.img names the same run)")
        }
        None => writeln!(o, "  no CRIU run id (written outside CRIU, or older than format 1.3)"),
    };
    for t in &p.threads {
        let ss = match &t.shadow_stack {
            ShadowStack::NotAvailable => "shadow stack not available".to_string(),
            ShadowStack::Available { features, locked, ssp } => format!(
                "shadow stack features {features:#x} locked {locked:#x}{}",
                match ssp {
                    Some(a) => format!(" SSP {a}"),
                    // Enabled, yet the kernel gave no SSP: NT_X86_SHSTK said ENODEV. Seen on
                    // Bochs 3.0, whose XSAVES loses the CET_USER state (docs/PLUGIN.md).
                    None if features & 1 != 0 =>
                        " SSP unreadable (the kernel refused NT_X86_SHSTK)".to_string(),
                    None => String::new(),
                }
            ),
        };
        let ibt = match t.ibt {
            Ibt::NotAvailable => "IBT not available from this kernel".to_string(),
            Ibt::Available { user_cet } => cet_line(user_cet),
        };
        let _ = writeln!(o, "  thread {}: {ss}; {ibt}", t.tid);
    }
    let Some(b) = &meta.bitmap else {
        let _ = writeln!(o, "bitmap: none (CET state only)");
        return o;
    };
    let prot = format!(
        "{}{}{}",
        if b.prot & 1 != 0 { 'r' } else { '-' },
        if b.prot & 2 != 0 { 'w' } else { '-' },
        if b.prot & 4 != 0 { 'x' } else { '-' }
    );
    let _ = writeln!(
        o,
        "bitmap: {:#x}-{:#x} ({}, covers {} address bits; a host needs {} address bits to map it), {prot}{}{}, found by {}",
        b.base.0,
        b.end(),
        size(b.length),
        b.coverage_bits(),
        addr::address_bits_needed(b.end()),
        if b.noreserve { " noreserve" } else { "" },
        if b.dontdump { " dontdump" } else { "" },
        serde_json::to_value(b.found_by).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    );
    let raw = (s.ones_pages + s.data_pages) * PAGE_SIZE;
    let _ = writeln!(
        o,
        "populated: {} runs, {} all-ones pages (no data stored), {} data pages in {} block(s), {} bytes compressed ({} raw populated)",
        s.runs,
        s.ones_pages,
        s.data_pages,
        s.blocks,
        s.data_bytes,
        raw
    );
    let code_end = addr::code_range_of_bitmap_page(s.populated_end_page).0;
    let _ = writeln!(
        o,
        "legacy code bits reach {code_end:#x} ({} address bits)",
        addr::address_bits_needed(code_end)
    );
    const SHOWN: u64 = 20;
    for i in 0..s.runs.min(SHOWN) {
        let Ok(run) = r.run_at(i) else { break };
        let (cs, _) = addr::code_range_of_bitmap_page(run.page);
        let (_, ce) = addr::code_range_of_bitmap_page(run.end() - 1);
        let kind = if run.kind == RunKind::Ones { "ones" } else { "data" };
        let _ = writeln!(
            o,
            "  run {i}: bitmap {:#x} +{} pages {kind}, legacy bits for code {cs:#x}-{ce:#x}",
            b.base.0 + run.page * PAGE_SIZE,
            run.count
        );
    }
    if s.runs > SHOWN {
        let _ = writeln!(o, "  ... {} more runs (criu-cet decode lists all)", s.runs - SHOWN);
    }
    o
}
