#![no_main]
//! Any bytes as a block's coded pages (docs/FORMAT.md 5.1): decoding never panics, and what
//! decodes, coded again by the writer, decodes to the same pages.
use criu_cet_format::coding::{decode_pages, encode_page};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, coded)) = data.split_first() else { return };
    let mut pages = vec![0u8; usize::from(n % 4 + 1) * 4096];
    if decode_pages(coded, &mut pages).is_ok() {
        let mut again = Vec::new();
        pages.chunks(4096).for_each(|p| encode_page(p, &mut again));
        let mut back = vec![0u8; pages.len()];
        decode_pages(&again, &mut back).expect("the writer's coding decodes");
        assert!(back == pages, "the writer's coding decodes to other pages");
    }
});
