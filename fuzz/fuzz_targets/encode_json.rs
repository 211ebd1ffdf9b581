#![no_main]
//! Any JSON: what `criu-cet encode` would write must read back, or be refused. Never a panic.
use criu_cet_format::{ImageDoc, ImageReader, WriterOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<ImageDoc>(data) else { return };
    if let Ok((bytes, _)) = doc.write_image(Vec::new(), WriterOptions::default()) {
        let mut r = ImageReader::open(std::io::Cursor::new(bytes)).expect("written images read back");
        r.verify_blocks().expect("written blocks verify");
    }
});
