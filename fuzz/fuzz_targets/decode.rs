#![no_main]
//! Any bytes: open, verify, decode to JSON and read pages at random. Must never panic.
use criu_cet_format::{ImageDoc, ImageReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = ImageReader::open(std::io::Cursor::new(data)) {
        let _ = r.verify_blocks();
        let _ = ImageDoc::from_image(&mut r);
        for page in [0, 1, 0x2000, u64::MAX / 4096] {
            let _ = r.read_page(page);
        }
    }
});
