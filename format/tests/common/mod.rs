//! Images shared by the format tests: the golden vectors' definitions and helpers.
#![allow(dead_code)]

use criu_cet_format::*;
use std::path::PathBuf;

pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

pub fn host(bits: u8, la57: bool) -> SourceHost {
    SourceHost {
        kernel_release: "6.18.44-vector".into(),
        user_address_bits: bits,
        cpu_virtual_bits: 57,
        la57,
        cet: CetSupport { cpu_shstk: true, cpu_ibt: true, kernel_shstk: true, kernel_ibt: false },
    }
}

pub fn thread(tid: u32) -> ThreadCet {
    ThreadCet { tid, shadow_stack: ShadowStack::NotAvailable, ibt: Ibt::NotAvailable }
}

pub fn bitmap(base: u64, bits: u8) -> BitmapMapping {
    BitmapMapping {
        base: Addr(base),
        length: addr::bitmap_length_for_bits(bits).unwrap(),
        prot: 3,
        noreserve: true,
        dontdump: true,
        found_by: FoundBy::Fingerprint,
    }
}

/// A bitmap page whose bits mark the code pages `[from, to)` (code page = address / 4096,
/// relative to the page's first covered code page) as legacy.
pub fn marked_page(ranges: &[(u32, u32)]) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    for &(from, to) in ranges {
        for bit in from..to {
            page[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    page
}

pub fn data_run(page: u64, pages: Vec<Vec<u8>>) -> RunDoc {
    RunDoc {
        offset: Addr(page * 4096),
        pages: pages.len() as u64,
        kind: RunKind::Data,
        covers: String::new(),
        data: pages.iter().map(|p| json::hex(p)).collect(),
    }
}

pub fn ones_run(page: u64, pages: u64) -> RunDoc {
    RunDoc { offset: Addr(page * 4096), pages, kind: RunKind::Ones, covers: String::new(), data: vec![] }
}

pub use criu_cet_format::json::RunDoc;

pub fn doc(
    host: SourceHost,
    pid: u32,
    threads: Vec<ThreadCet>,
    bitmap: Option<BitmapMapping>,
    runs: Vec<RunDoc>,
) -> ImageDoc {
    let tids = threads.iter().map(|t| t.tid).collect();
    ImageDoc {
        format_version: String::new(),
        host,
        process: ProcessInfo { pid, comm: "cet-fixture".into(), threads },
        bitmap,
        namespace: Some(NamespaceIds { pid, tids, depth: 0 }),
        // As the plugin records it: the CRIU run that dumped (a UUID).
        criu_run_id: Some("2f0c8e4a-6d1b-4c3e-9a57-0b1e2d3c4f5a".into()),
        summary: None,
        runs,
    }
}

/// The golden vectors: name and the document it encodes.
pub fn vectors() -> Vec<(&'static str, ImageDoc)> {
    // A 48-bit bitmap: legacy pages of an executable at 0x400000 and a library near the top.
    let typical = doc(
        host(47, false),
        4242,
        vec![thread(4242)],
        Some(bitmap(0x7f00_0000_0000, 48)),
        vec![
            data_run(0, vec![marked_page(&[(0x400, 0x42c)])]),
            ones_run(0x20, 3),
            data_run(0x23, vec![marked_page(&[(0, 0x100), (0x7f00, 0x8000)])]),
            data_run(
                addr::bitmap_page_for(0x7ff0_0000_0000),
                vec![marked_page(&[(0x3f00, 0x3f40)]), marked_page(&[(0x10, 0x18)])],
            ),
        ],
    );
    // A 57-bit bitmap (4 TiB) placed above 2^48, with code marked above 2^47.
    let high = doc(
        host(56, true),
        7001,
        vec![thread(7001)],
        Some(bitmap(1 << 52, 57)),
        vec![
            data_run(addr::bitmap_page_for(0x40_0000), vec![marked_page(&[(0x400, 0x480)])]),
            ones_run(addr::bitmap_page_for(1 << 50), 2),
            data_run(addr::bitmap_page_for(0xff_0000_0000_0000), vec![marked_page(&[(1, 2), (4000, 4100)])]),
        ],
    );
    // Four threads with shadow stacks and IBT state; a data run spanning two zstd blocks, one page
    // of it verbatim.
    let cet = |tid, user_cet: u64, ssp: u64| ThreadCet {
        tid,
        shadow_stack: ShadowStack::Available { features: 1, locked: 1, ssp: Some(Addr(ssp)) },
        ibt: Ibt::Available { user_cet: UserCet(user_cet) },
    };
    let base = 0x7e00_0000_0000u64;
    let ucet = base | UserCet::SH_STK_EN | UserCet::ENDBR_EN | UserCet::LEG_IW_EN;
    let mut many: Vec<Vec<u8>> = (0..20u32).map(|i| marked_page(&[(i * 7, i * 7 + 3 + i)])).collect();
    // Every other code page legacy: its runs would take more than 4096 bytes, so it is stored
    // verbatim (FORMAT.md 5.1); the other pages are stored as runs.
    many.push(vec![0x55; 4096]);
    let threads = doc(
        SourceHost { cet: CetSupport { kernel_ibt: true, ..host(47, false).cet }, ..host(47, false) },
        5150,
        vec![
            cet(5150, ucet, 0x7fff_f7ff_fff8),
            cet(5151, ucet | UserCet::TRACKER, 0x7fff_f6ff_fff8),
            cet(5152, ucet | UserCet::SUPPRESS | UserCet::NO_TRACK_EN, 0x7fff_f5ff_fff0),
            ThreadCet {
                tid: 5153,
                shadow_stack: ShadowStack::Available { features: 0, locked: 0, ssp: None },
                ibt: Ibt::Available { user_cet: UserCet(0) },
            },
        ],
        Some(BitmapMapping { found_by: FoundBy::CetRegister, ..bitmap(base, 48) }),
        vec![data_run(0x10, many), ones_run(0x30, 1)],
    );
    // Dumped inside a pid namespace one level down: CRIU knows these tasks as 1..4.
    let threads =
        ImageDoc { namespace: Some(NamespaceIds { pid: 1, tids: vec![1, 2, 3, 4], depth: 1 }), ..threads };
    // Written from the JSON of an older image, which has no namespace ids nor CRIU run id.
    let empty = ImageDoc {
        namespace: None,
        criu_run_id: None,
        ..doc(host(47, false), 100, vec![thread(100)], Some(bitmap(0x7f80_0000_0000, 48)), vec![])
    };
    vec![("empty-48", empty), ("typical-48", typical), ("high-57", high), ("threads-cet", threads)]
}

pub fn encode(doc: &ImageDoc) -> Vec<u8> {
    doc.write_image(Vec::new(), WriterOptions::default()).expect("vector encodes").0
}

pub fn decode(bytes: &[u8]) -> Result<ImageDoc, FormatError> {
    let mut r = ImageReader::open(std::io::Cursor::new(bytes))?;
    ImageDoc::from_image(&mut r)
}
