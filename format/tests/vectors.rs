//! Golden vectors: the writer must reproduce tests/vectors/*.cetimg byte for byte, and each must
//! decode to its .json. A change to bytes on disk fails here until the vectors, docs/FORMAT.md and
//! the version change with it. Regenerate with CRIU_CET_BLESS=1 (then review the diff).

mod common;
use common::*;

#[test]
fn writer_reproduces_golden_vectors_and_they_decode_to_their_json() {
    let bless = std::env::var_os("CRIU_CET_BLESS").is_some();
    for (name, doc) in vectors() {
        let bytes = encode(&doc);
        let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = serde_json::to_string_pretty(&decoded).unwrap() + "\n";
        let img_path = vectors_dir().join(format!("{name}.cetimg"));
        let json_path = vectors_dir().join(format!("{name}.json"));
        if bless {
            std::fs::write(&img_path, &bytes).unwrap();
            std::fs::write(&json_path, &json).unwrap();
            continue;
        }
        let golden = std::fs::read(&img_path).unwrap_or_else(|e| panic!("{}: {e}", img_path.display()));
        assert!(
            bytes == golden,
            "{name}: the writer no longer reproduces {} byte for byte",
            img_path.display()
        );
        let golden_json = std::fs::read_to_string(&json_path).unwrap();
        assert_eq!(json, golden_json, "{name}: decoding differs from {}", json_path.display());
        // And the JSON encodes back to the same bytes (what `criu-cet encode` does).
        let from_json: criu_cet_format::ImageDoc = serde_json::from_str(&golden_json).unwrap();
        assert!(encode(&from_json) == golden, "{name}: encode(json) differs from the vector");
    }
}

#[test]
fn every_single_byte_flip_and_truncation_of_every_vector_is_rejected() {
    for (name, doc) in vectors() {
        let good = encode(&doc);
        for at in 0..good.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[at] ^= mask;
                assert!(decode(&bad).is_err(), "{name}: flipping byte {at} with {mask:#x} was accepted");
            }
        }
        for len in 0..good.len() {
            let err = decode(&good[..len]).expect_err("truncated image accepted");
            assert!(!err.to_string().is_empty(), "{name}: truncation to {len}");
        }
    }
}

#[test]
fn a_version_1_0_image_without_page_coding_still_reads() {
    // Written by the 1.0 writer (pages stored verbatim, no incompat flag), kept unchanged.
    let dir = vectors_dir().join("v1.0");
    let old = std::fs::read(dir.join("typical-48.cetimg")).unwrap();
    assert_eq!((old[10], old[16]), (0, 0), "minor 0, no incompatible flags");
    let decoded = decode(&old).unwrap();
    let json = serde_json::to_string_pretty(&decoded).unwrap() + "\n";
    assert_eq!(json, std::fs::read_to_string(dir.join("typical-48.json")).unwrap());
    // The same content as today's vector: only the version and the compressed size differ.
    let (_, doc) = vectors().into_iter().find(|(n, _)| *n == "typical-48").unwrap();
    let now = decode(&encode(&doc)).unwrap();
    assert_eq!((decoded.format_version.as_str(), now.format_version.as_str()), ("1.0", "1.3"));
    assert_eq!(decoded.namespace, None, "1.0 files carry no namespace ids");
    assert_eq!(serde_json::to_value(&decoded.runs).unwrap(), serde_json::to_value(&now.runs).unwrap());
    assert_eq!(decoded.process, now.process);
    assert_eq!(decoded.bitmap, now.bitmap);
    for at in 0..old.len() {
        let mut bad = old.clone();
        bad[at] ^= 0x01;
        assert!(decode(&bad).is_err(), "v1.0: flipping byte {at} was accepted");
    }
}

#[test]
fn a_version_1_2_image_without_a_criu_run_id_still_reads() {
    // Written by the 1.2 writer (no CRIU run id in META), kept unchanged.
    let dir = vectors_dir().join("v1.2");
    let old = std::fs::read(dir.join("typical-48.cetimg")).unwrap();
    assert_eq!((old[10], old[16]), (2, 1), "minor 2, PAGE_CODING");
    let decoded = decode(&old).unwrap();
    let json = serde_json::to_string_pretty(&decoded).unwrap() + "\n";
    assert_eq!(json, std::fs::read_to_string(dir.join("typical-48.json")).unwrap());
    assert_eq!(decoded.criu_run_id, None);
    let (_, doc) = vectors().into_iter().find(|(n, _)| *n == "typical-48").unwrap();
    let now = decode(&encode(&doc)).unwrap();
    assert!(now.criu_run_id.is_some());
    assert_eq!(serde_json::to_value(&decoded.runs).unwrap(), serde_json::to_value(&now.runs).unwrap());
    assert_eq!(
        (decoded.process, decoded.bitmap, decoded.namespace),
        (now.process, now.bitmap, now.namespace)
    );
    for at in 0..old.len() {
        let mut bad = old.clone();
        bad[at] ^= 0x01;
        assert!(decode(&bad).is_err(), "v1.2: flipping byte {at} was accepted");
    }
}

#[test]
fn a_version_1_1_image_without_namespace_ids_still_reads() {
    // Written by the 1.1 writer (no namespace ids in META), kept unchanged.
    let dir = vectors_dir().join("v1.1");
    let old = std::fs::read(dir.join("typical-48.cetimg")).unwrap();
    assert_eq!((old[10], old[16]), (1, 1), "minor 1, PAGE_CODING");
    let decoded = decode(&old).unwrap();
    let json = serde_json::to_string_pretty(&decoded).unwrap() + "\n";
    assert_eq!(json, std::fs::read_to_string(dir.join("typical-48.json")).unwrap());
    assert_eq!(decoded.namespace, None);
    let (_, doc) = vectors().into_iter().find(|(n, _)| *n == "typical-48").unwrap();
    let now = decode(&encode(&doc)).unwrap();
    assert_eq!(serde_json::to_value(&decoded.runs).unwrap(), serde_json::to_value(&now.runs).unwrap());
    assert_eq!((decoded.process, decoded.bitmap), (now.process, now.bitmap));
    for at in 0..old.len() {
        let mut bad = old.clone();
        bad[at] ^= 0x01;
        assert!(decode(&bad).is_err(), "v1.1: flipping byte {at} was accepted");
    }
}
