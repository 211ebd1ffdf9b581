//! Replays the committed fuzz corpora (fuzz/corpus/*) on stable: every input that once found
//! a new path must still be handled without a panic, and images the encoder writes read back.

use criu_cet_format::{ImageDoc, ImageReader, WriterOptions};
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn decode_corpus_never_panics() {
    let inputs = corpus("decode");
    assert!(inputs.len() >= 10, "the decode corpus is missing");
    let mut opened = 0;
    for (_, data) in &inputs {
        if let Ok(mut r) = ImageReader::open(std::io::Cursor::new(data)) {
            opened += 1;
            let _ = r.verify_blocks();
            let _ = ImageDoc::from_image(&mut r);
            let _ = r.read_page(0);
        }
    }
    assert!(opened > 0, "no corpus input opens: the corpus lost its valid seeds");
}

#[test]
fn encode_json_corpus_reads_back() {
    let inputs = corpus("encode_json");
    assert!(!inputs.is_empty(), "the encode_json corpus is missing");
    for (path, data) in &inputs {
        let Ok(doc) = serde_json::from_slice::<ImageDoc>(data) else { continue };
        if let Ok((bytes, _)) = doc.write_image(Vec::new(), WriterOptions::default()) {
            let mut r = ImageReader::open(std::io::Cursor::new(bytes))
                .unwrap_or_else(|e| panic!("{}: written image does not read back: {e}", path.display()));
            r.verify_blocks().unwrap();
        }
    }
}

#[test]
fn coding_corpus_decodes_or_refuses_and_round_trips() {
    use criu_cet_format::coding::{decode_pages, encode_page};
    let inputs = corpus("coding");
    assert!(inputs.len() >= 4, "the coding corpus is missing");
    let mut decoded = 0;
    for (path, data) in &inputs {
        let Some((&n, coded)) = data.split_first() else { continue };
        let mut pages = vec![0u8; usize::from(n % 4 + 1) * 4096];
        if decode_pages(coded, &mut pages).is_ok() {
            decoded += 1;
            let mut again = Vec::new();
            pages.chunks(4096).for_each(|p| encode_page(p, &mut again));
            let mut back = vec![0u8; pages.len()];
            decode_pages(&again, &mut back).unwrap();
            assert!(back == pages, "{}: the writer's coding decodes to other pages", path.display());
        }
    }
    assert!(decoded > 0, "no corpus input decodes: the corpus lost its valid seeds");
}
