//! Forged images: each test changes one field and then reseals every checksum, so that what
//! rejects the file is the structural rule under test, not a CRC.

mod common;
use common::*;
use criu_cet_format::layout::{self, SectionEntry};
use criu_cet_format::*;

fn reseal(b: &mut [u8]) {
    forge::reseal(b).expect("a footer that locates the table");
}

fn section(b: &[u8], kind: u32) -> (usize, usize) {
    forge::find_section(b, kind).expect("the section")
}

fn splice(b: &[u8], kind: u32, content: &[u8]) -> Vec<u8> {
    forge::splice(b, kind, content).expect("a spliceable image")
}

fn typical() -> Vec<u8> {
    encode(&vectors().into_iter().find(|(n, _)| *n == "typical-48").unwrap().1)
}

fn rejected(b: &[u8]) -> String {
    decode(b).expect_err("forged image accepted").to_string()
}

#[test]
fn resealing_an_unchanged_image_keeps_it_valid() {
    let mut b = typical();
    reseal(&mut b);
    decode(&b).unwrap();
}

#[test]
fn newer_major_version_is_named_in_the_error() {
    let mut b = typical();
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    b[10..12].copy_from_slice(&7u16.to_le_bytes());
    reseal(&mut b);
    let e = rejected(&b);
    assert!(e.contains("version 2.7") && e.contains("reads 1.x"), "{e}");
}

#[test]
fn unknown_incompatible_flags_are_refused_and_compatible_ones_ignored() {
    let mut b = typical();
    b[16] = 0x04;
    reseal(&mut b);
    assert!(rejected(&b).contains("incompatible features 0x4"));
    let mut b = typical();
    b[24] = 0x04;
    reseal(&mut b);
    decode(&b).expect("unknown compat flag ignored");
}

#[test]
fn newer_minor_with_appended_metadata_reads_and_same_minor_refuses() {
    // Append 3 bytes to META (as a newer minor's writer adding a field would).
    let good = typical();
    let (moff, mlen) = section(&good, layout::SECTION_META);
    let mut b = splice(&good, layout::SECTION_META, &[&good[moff..moff + mlen], &[1, 2, 3][..]].concat());
    assert!(rejected(&b).contains("trailing bytes"));
    b[10..12].copy_from_slice(&(layout::MINOR + 1).to_le_bytes());
    reseal(&mut b);
    let doc = decode(&b).expect("a newer-minor file with an appended field reads");
    assert_eq!(doc.format_version, format!("1.{}", layout::MINOR + 1));
}

fn forge_run(field_at: usize, value: u64, width: usize) -> String {
    let mut b = typical();
    let (roff, _) = section(&b, layout::SECTION_RUNS);
    b[roff + field_at..roff + field_at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    reseal(&mut b);
    rejected(&b)
}

#[test]
fn bad_runs_are_refused_with_their_index_and_offset() {
    // Run 1 starts at page 0x20; make it overlap run 0 (page 0, one page) by moving it to page 0.
    assert!(forge_run(32, 0, 8).contains("sorted and not overlapping"));
    // A count reaching past the 48-bit bitmap's 0x200000 pages.
    assert!(forge_run(32 + 8, 0x1f_ffff, 8).contains("inside the bitmap"));
    assert!(forge_run(8, 0, 8).contains("page_count"));
    assert!(forge_run(16, 9, 4).contains("run kind"));
    assert!(forge_run(20, 1, 4).contains("reserved"));
    assert!(forge_run(24, 5, 8).contains("first_data_page"));
    // Huge counts do not make anything allocate: the check is arithmetic.
    assert!(forge_run(8, u64::MAX, 8).contains("inside the bitmap"));
}

#[test]
fn block_table_must_match_the_data() {
    let mut b = typical();
    let (boff, _) = section(&b, layout::SECTION_BLOCKS);
    b[boff + 8..boff + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut b);
    assert!(rejected(&b).contains("compressed_len"));
}

/// A one-data-page image whose only block is replaced by `frame` (a raw CRC of `raw_crc`), with
/// every table and checksum made consistent again, so only the block's content can be refused.
fn with_block(frame: &[u8], raw_crc: Option<u32>) -> Vec<u8> {
    let meta = doc(host(47, false), 1, vec![thread(1)], Some(bitmap(0x7f00_0000_0000, 48)), vec![]);
    let one = ImageDoc { runs: vec![data_run(0, vec![marked_page(&[(1, 9)])])], ..meta };
    let mut forged = splice(&encode(&one), layout::SECTION_DATA, frame);
    let (boff, _) = section(&forged, layout::SECTION_BLOCKS);
    forged[boff + 8..boff + 12].copy_from_slice(&u32::try_from(frame.len()).unwrap().to_le_bytes());
    if let Some(c) = raw_crc {
        forged[boff + 12..boff + 16].copy_from_slice(&c.to_le_bytes());
    }
    reseal(&mut forged);
    forged
}

#[test]
fn a_block_that_inflates_past_its_size_is_refused() {
    let big = zstd::bulk::compress(&vec![7u8; 8192], 3).unwrap();
    let e = rejected(&with_block(&big, None));
    assert!(e.contains("block 0") && e.contains("inflating to at most 4097 bytes"), "{e}");
}

#[test]
fn badly_coded_pages_are_refused_naming_the_block_and_page() {
    let page = marked_page(&[(1, 9)]);
    let crc = Some(layout::crc(&page));
    let frame = |content: &[u8]| zstd::bulk::compress(content, 3).unwrap();
    // The same page coded correctly, as runs and verbatim: both read.
    for content in [vec![1u8, 1, 8, 0xf7, 0xff, 0x01], [&[0u8][..], &page].concat()] {
        assert_eq!(decode(&with_block(&frame(&content), crc)).unwrap().runs[0].data[0], json::hex(&page));
    }
    let cases: [(&[u8], &str); 5] = [
        (&[1, 1, 8, 0xf7, 0xff, 0x02], "passes the page's 32768 bits"),
        (&[1, 1, 8, 0xf6, 0xff, 0x01], "the block ends inside a run length"),
        (&[1, 1, 8, 0, 0xf7, 0xff, 0x01], "a run of length 0 at bit 9"),
        (&[2, 1, 8, 0xf7, 0xff, 0x01], "tag 2"),
        (&[1, 1, 8, 0xf7, 0xff, 0x01, 0], "1 bytes after the block's last page"),
    ];
    for (content, want) in cases {
        let e = rejected(&with_block(&frame(content), crc));
        assert!(e.contains("block 0") && e.contains("page") && e.contains(want), "{content:?}: {e}");
    }
    // Right coding, wrong page: the CRC of the decoded page catches it.
    let e = rejected(&with_block(&frame(&[1, 1, 9, 0xf6, 0xff, 0x01]), crc));
    assert!(e.contains("block 0 after decompression"), "{e}");
}

#[test]
fn a_coded_image_with_its_page_coding_flag_cleared_is_refused() {
    let mut b = typical();
    assert_eq!(u64::from(b[16]), layout::INCOMPAT_PAGE_CODING);
    b[16] = 0;
    reseal(&mut b);
    let e = rejected(&b);
    assert!(e.contains("block 0"), "{e}");
}

#[test]
fn unknown_sections_required_refused_optional_skipped() {
    for (flags, ok) in [(0u32, true), (layout::SECTION_REQUIRED, false)] {
        let good = typical();
        let n = good.len();
        let table_offset =
            usize::try_from(u64::from_le_bytes(good[n - 24..n - 16].try_into().unwrap())).unwrap();
        let extra = [0xabu8; 5];
        let mut b = good[..table_offset].to_vec();
        b.extend_from_slice(&extra);
        b.extend_from_slice(&good[table_offset..n - 32]);
        let e = SectionEntry { kind: 99, flags, offset: table_offset as u64, length: 5, crc: 0 };
        b.extend_from_slice(&e.encode());
        let footer = layout::Footer { table_offset: table_offset as u64 + 5, section_count: 5 };
        b.extend_from_slice(&[0u8; 32]);
        let nn = b.len();
        let f = footer.encode(&b[table_offset + 5..nn - 32]);
        b[nn - 32..].copy_from_slice(&f);
        reseal(&mut b);
        assert_eq!(decode(&b).is_ok(), ok, "flags {flags}");
    }
}

#[test]
fn writer_refuses_pages_out_of_order_or_outside_the_bitmap() {
    let meta = Metadata {
        host: host(47, false),
        process: ProcessInfo { pid: 1, comm: "x".into(), threads: vec![thread(1)] },
        bitmap: Some(bitmap(0x7f00_0000_0000, 28)),
        namespace: None,
        criu_run_id: None,
    };
    let mut w = ImageWriter::new(Vec::new(), &meta, WriterOptions::default()).unwrap();
    w.push_page(1, &[0xff; 4096]).unwrap();
    assert!(w.push_page(1, &[0xff; 4096]).unwrap_err().to_string().contains("ascending"));
    assert!(w.push_page(2, &[0xff; 4096]).unwrap_err().to_string().contains("outside the bitmap"));
    assert!(w.push_page(0, &[0xff; 100]).unwrap_err().to_string().contains("4096"));
}

#[test]
fn random_access_and_streaming_agree_with_what_was_written() {
    // A 28-bit bitmap (2 pages) is too small; use 40 bits: 8192 pages, with a pseudo-random mix.
    let meta = Metadata {
        host: host(47, false),
        process: ProcessInfo { pid: 1, comm: "x".into(), threads: vec![thread(1)] },
        bitmap: Some(bitmap(0x7f00_0000_0000, 40)),
        namespace: None,
        criu_run_id: None,
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut expected = std::collections::BTreeMap::new();
    for page in 0..8192u64 {
        let content = match next() % 10 {
            0..=5 => continue,
            6 => vec![0u8; 4096],
            7 => vec![0xffu8; 4096],
            // Pages stored as runs (a byte, or runs up to 300 bits long) and verbatim (noise).
            8 => {
                let mut p = vec![0u8; 4096];
                p[usize::try_from(next() % 4096).unwrap()] = (next() | 1).to_le_bytes()[0];
                p
            }
            _ if page % 2 == 0 => {
                let (mut p, mut bit, mut one) = (vec![0u8; 4096], 0u64, false);
                while bit < 32768 {
                    let n = (1 + next() % 300).min(32768 - bit);
                    if one {
                        (bit..bit + n).for_each(|b| p[(b / 8) as usize] |= 1 << (b % 8));
                    }
                    (bit, one) = (bit + n, !one);
                }
                p
            }
            _ => (0..4096).map(|_| next().to_le_bytes()[0]).collect(),
        };
        expected.insert(page, content);
    }
    // Written inline (1 thread) and by 3 threads in batched jobs: the same bytes.
    let write = |threads| {
        let opts = WriterOptions { block_pages: 5, zstd_level: 1, threads };
        let mut w = ImageWriter::new(Vec::new(), &meta, opts).unwrap();
        expected.iter().for_each(|(&page, content)| w.push_page(page, content).unwrap());
        w.finish().unwrap()
    };
    let (bytes, summary) = write(3);
    assert!(bytes == write(1).0, "the image depends on the thread count");
    let mut r = ImageReader::open(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(r.summary().data_pages, summary.data_pages);
    r.verify_blocks().unwrap();
    let mut seen = std::collections::BTreeMap::new();
    r.for_each_chunk(|c| -> Result<(), FormatError> {
        match c {
            Chunk::Ones { page, count } => (page..page + count).for_each(|p| {
                seen.insert(p, vec![0xff; 4096]);
            }),
            Chunk::Data { page, bytes } => bytes.chunks(4096).enumerate().for_each(|(i, b)| {
                seen.insert(page + i as u64, b.to_vec());
            }),
        }
        Ok(())
    })
    .unwrap();
    expected.retain(|_, v| v.iter().any(|&b| b != 0));
    assert_eq!(seen, expected);
    for page in (0..8192u64).step_by(7) {
        let got = match r.read_page(page).unwrap() {
            PageContent::Zero => None,
            PageContent::Ones => Some(vec![0xff; 4096]),
            PageContent::Data(d) => Some(d),
        };
        assert_eq!(got.as_ref(), expected.get(&page), "page {page}");
    }
}

#[test]
fn a_run_table_rewritten_after_open_is_refused_not_used() {
    // 300 one-page runs: more than one chunk of the reader's run buffer, so run 0 is read again.
    let runs = (0..300).map(|i| ones_run(2 * i, 1)).collect();
    let d = doc(host(47, false), 1, vec![thread(1)], Some(bitmap(0x6000_0000_0000, 48)), runs);
    let bytes = encode(&d);
    let dir = std::env::temp_dir().join(format!("cet-rewrite-{}", std::process::id()));
    std::fs::write(&dir, &bytes).unwrap();
    let mut r = ImageReader::open(std::fs::File::open(&dir).unwrap()).unwrap();
    assert_eq!(r.run_at(0).unwrap().count, 1);
    assert_eq!(r.run_at(299).unwrap().page, 598);
    // Rewritten in place, as by someone with write access while a restore runs: run 0 now
    // claims 2 pages (still inside the bitmap, still sorted).
    let (runs_at, _) = section(&bytes, layout::SECTION_RUNS);
    let mut forged = bytes.clone();
    forged[runs_at + 8..runs_at + 16].copy_from_slice(&2u64.to_le_bytes());
    std::fs::write(&dir, &forged).unwrap();
    let e = r.run_at(0).unwrap_err().to_string();
    std::fs::remove_file(&dir).unwrap();
    assert!(e.contains("run table records 0..128") && e.contains("changed after it was checked"), "{e}");
}

#[test]
fn an_address_bit_field_past_57_is_refused_at_its_own_offset() {
    let good = std::fs::read(vectors_dir().join("typical-48.cetimg")).unwrap();
    // kernel_release "6.18.44-vector" (14 bytes) after its u64 length: user_address_bits at
    // 64 + 8 + 14 = 86, cpu_virtual_bits at 87.
    for (at, field) in [(86usize, "user_address_bits"), (87, "cpu_virtual_bits")] {
        let mut b = good.clone();
        b[at] = 58;
        reseal(&mut b);
        let e = decode(&b).unwrap_err().to_string();
        assert!(e.contains(field) && e.contains(&format!("offset {at}")) && e.contains("at most 57"), "{e}");
    }
}

/// `good` with block 0's frame replaced by `content`, every table and checksum fixed up.
fn with_first_frame(good: &[u8], content: &[u8]) -> Vec<u8> {
    let (off, len) = section(good, layout::SECTION_DATA);
    let (blocks_at, _) = section(good, layout::SECTION_BLOCKS);
    let first_len = u32::from_le_bytes(good[blocks_at + 8..blocks_at + 12].try_into().unwrap()) as usize;
    let mut data = content.to_vec();
    data.extend_from_slice(&good[off + first_len..off + len]);
    let mut b = splice(good, layout::SECTION_DATA, &data);
    // Block 0 takes the new length; later blocks move by the difference.
    let (bt, bl) = section(&b, layout::SECTION_BLOCKS);
    b[bt + 8..bt + 12].copy_from_slice(&u32::try_from(content.len()).unwrap().to_le_bytes());
    for j in 1..bl / 16 {
        let at = bt + 16 * j;
        let o =
            u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) + content.len() as u64 - first_len as u64;
        b[at..at + 8].copy_from_slice(&o.to_le_bytes());
    }
    reseal(&mut b);
    b
}

/// Block 0's frame of `good`.
fn first_frame(good: &[u8]) -> &[u8] {
    let (off, _) = section(good, layout::SECTION_DATA);
    let (blocks_at, _) = section(good, layout::SECTION_BLOCKS);
    let first_len = u32::from_le_bytes(good[blocks_at + 8..blocks_at + 12].try_into().unwrap()) as usize;
    &good[off..off + first_len]
}

#[test]
fn skippable_zstd_frames_are_refused_alone_and_before_a_block() {
    let good = std::fs::read(vectors_dir().join("typical-48.cetimg")).unwrap();
    // A skippable frame (magic 0x184D2A50, length 4) of 12 bytes.
    let skippable = [0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
    let frame = first_frame(&good);
    for content in [[&skippable[..], frame].concat(), skippable.to_vec()] {
        let e = decode(&with_first_frame(&good, &content)).unwrap_err().to_string();
        assert!(e.contains("block 0") && e.contains("one zstd frame"), "{e}");
    }
}

/// A zstd frame of raw blocks holding `content`, with the frame header descriptor `fhd`, then
/// `after_fhd` (window descriptor, dictionary id, content size as `fhd` says).
fn raw_frame(fhd: u8, after_fhd: &[u8], content: &[u8]) -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, fhd];
    f.extend_from_slice(after_fhd);
    let chunks: Vec<&[u8]> = content.chunks(1 << 17).collect();
    for (i, c) in chunks.iter().enumerate() {
        let last = u32::from(i + 1 == chunks.len());
        f.extend_from_slice(&(u32::try_from(c.len()).unwrap() << 3 | last).to_le_bytes()[..3]);
        f.extend_from_slice(c);
    }
    f
}

/// FORMAT.md section 5: the window a frame declares is at most 2^27 bytes (a single-segment
/// frame's window is its content size), and a frame names no dictionary. Single-pass
/// decompression checks neither: a 2^28 window was accepted before.
#[test]
fn zstd_frames_declaring_a_window_over_2_27_or_a_dictionary_are_refused() {
    let good = std::fs::read(vectors_dir().join("typical-48.cetimg")).unwrap();
    let content = zstd::bulk::decompress(first_frame(&good), 8 << 20).unwrap();
    // Window descriptor: exponent e gives 2^(10+e); mantissa adds eighths.
    let window = |exp: u8, mantissa: u8| raw_frame(0x00, &[exp << 3 | mantissa], &content);
    decode(&with_first_frame(&good, &window(17, 0))).expect("a 2^27 window is accepted");
    for (frame, want) in [
        (window(17, 1), "a 150994944-byte window"),
        (window(21, 0), "a 2147483648-byte window"),
        (raw_frame(0x01, &[17 << 3, 7], &content), "dictionary 7"),
    ] {
        let e = decode(&with_first_frame(&good, &frame)).unwrap_err().to_string();
        assert!(e.contains("block 0") && e.contains(want), "{want}: {e}");
    }
    // Single segment (0x20) with a 4-byte content size (0x80): the window is the content size.
    let n = u32::try_from(content.len()).unwrap();
    let single = raw_frame(0xa0, &n.to_le_bytes(), &content);
    decode(&with_first_frame(&good, &single)).expect("a single-segment frame of its content size");
}

/// FORMAT.md section 3's host record: user address bits 1 to 48 without la57, 49 to 57 with it.
#[test]
fn user_address_bits_must_agree_with_la57() {
    let good = std::fs::read(vectors_dir().join("typical-48.cetimg")).unwrap();
    // typical-48: user_address_bits at 86, la57 false at 88 (see the test above).
    for (bits, la57, ok) in [
        (0u8, 0u8, false),
        (1, 0, true),
        (48, 0, true),
        (56, 0, false),
        (48, 1, false),
        (56, 1, true),
        (57, 1, true),
    ] {
        let mut b = good.clone();
        b[86] = bits;
        b[88] = la57;
        reseal(&mut b);
        match decode(&b) {
            Ok(_) => assert!(ok, "{bits} bits, la57 {la57} accepted"),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    !ok && e.contains("user_address_bits") && e.contains("offset 86"),
                    "{bits}/{la57}: {e}"
                );
            }
        }
    }
}

/// `namespace.depth` at most 32 (the kernel's MAX_PID_NS_LEVEL), `bitmap.prot` bits 0 to 2 only:
/// the writer refuses them, and so does the reader (the same `Metadata::validate`).
#[test]
fn namespace_depth_past_32_and_prot_bits_above_2_are_refused() {
    let good = std::fs::read(vectors_dir().join("threads-cet.cetimg")).unwrap();
    let doc = ImageDoc::from_image(&mut ImageReader::open(std::io::Cursor::new(&good)).unwrap()).unwrap();
    let mut deep = doc.clone();
    deep.namespace.as_mut().expect("threads-cet has namespace ids").depth = 33;
    let mut prot = doc.clone();
    prot.bitmap.as_mut().expect("a bitmap").prot = 8;
    for (d, want) in [(deep, "namespace.depth"), (prot, "bitmap.prot")] {
        let e = d.write_image(&mut Vec::new(), WriterOptions::default()).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
}

/// The forged files of tests/rejects/, each breaking one rule of FORMAT.md that a bit flip
/// cannot reach (the Python reader refuses them too: `cetimg.py --check-rejects`). Built here
/// from the golden vectors; CRIU_CET_BLESS=1 writes them.
fn rejects() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let typical = std::fs::read(vectors_dir().join("typical-48.cetimg")).unwrap();
    let threads = std::fs::read(vectors_dir().join("threads-cet.cetimg")).unwrap();
    let run_id_len = decode(&threads).unwrap().criu_run_id.expect("threads-cet records a CRIU run").len();
    // empty-48 has no namespace ids nor CRIU run id: its META ends with the two options' 0 bytes.
    let empty = std::fs::read(vectors_dir().join("empty-48.cetimg")).unwrap();
    let content = zstd::bulk::decompress(first_frame(&typical), 8 << 20).unwrap();
    let byte = |b: &[u8], at: usize, v: u8| {
        let mut b = b.to_vec();
        b[at] = v;
        reseal(&mut b);
        b
    };
    let meta = |b: &[u8], edit: &dyn Fn(&mut Vec<u8>)| {
        let (off, len) = section(b, layout::SECTION_META);
        let mut m = b[off..off + len].to_vec();
        edit(&mut m);
        let mut out = splice(b, layout::SECTION_META, &m);
        reseal(&mut out);
        out
    };
    let doc = decode(&typical).unwrap();
    let bm = doc.bitmap.clone().unwrap();
    let bitmap_at = |m: &[u8]| {
        let key = [bm.base.0.to_le_bytes(), bm.length.to_le_bytes()].concat();
        m.windows(16).position(|w| w == key).expect("the bitmap's base and length in META")
    };
    vec![
        (
            "window-2-31",
            with_first_frame(&typical, &raw_frame(0x00, &[21 << 3], &content)),
            "2147483648-byte window",
        ),
        (
            "dictionary-7",
            with_first_frame(&typical, &raw_frame(0x01, &[17 << 3, 7], &content)),
            "dictionary 7",
        ),
        ("user-bits-56-without-la57", byte(&typical, 86, 56), "user_address_bits"),
        ("user-bits-0", byte(&typical, 86, 0), "user_address_bits"),
        ("la57-with-47-bits", byte(&typical, 88, 1), "user_address_bits"),
        (
            "namespace-depth-33",
            meta(&threads, &|m| {
                // The depth is the namespace's last field, before the CRIU run id (1.3): its
                // option byte, u64 length and bytes.
                let n = m.len() - (1 + 8 + run_id_len);
                m[n - 4..n].copy_from_slice(&33u32.to_le_bytes());
            }),
            "namespace.depth",
        ),
        (
            "prot-8",
            meta(&typical, &|m| {
                let at = bitmap_at(m) + 16;
                m[at..at + 4].copy_from_slice(&8u32.to_le_bytes());
            }),
            "bitmap.prot",
        ),
        (
            "meta-without-namespace-byte",
            meta(&empty, &|m| {
                assert_eq!((m.pop(), m.pop()), (Some(0), Some(0)));
            }),
            "metadata",
        ),
        ("meta-without-criu-run-id-byte", meta(&empty, &|m| assert_eq!(m.pop(), Some(0))), "metadata"),
    ]
}

#[test]
fn every_file_of_tests_rejects_is_refused_for_its_rule() {
    let dir = vectors_dir().join("../rejects");
    let bless = std::env::var_os("CRIU_CET_BLESS").is_some();
    for (name, bytes, want) in rejects() {
        let e = decode(&bytes).expect_err(name).to_string();
        assert!(e.contains(want), "{name}: wanted {want:?} in {e}");
        let path = dir.join(format!("{name}.cetimg"));
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(committed == bytes, "{name}: {} differs from what this test forges", path.display());
        }
    }
}
