#![no_main]
//! The host check on any image against any profile width. Never a panic.
use criu_cet::check::{check, CoveragePolicy};
use criu_cet_format::ImageReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&bits, image)) = data.split_first() else { return };
    let Ok(r) = ImageReader::open(std::io::Cursor::new(image)) else { return };
    let mut target = criu_cet::host::four_level_example();
    target.user_address_bits = 40 + bits % 18;
    for coverage in [CoveragePolicy::Warn, CoveragePolicy::Strict] {
        let _ = check("fuzz.img", r.metadata(), r.summary(), &target, "fuzz target", coverage);
    }
});
