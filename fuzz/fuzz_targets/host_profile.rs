#![no_main]
//! A host profile (`check --target FILE`) from any bytes: parsed and validated, then, when
//! valid, used to judge the golden vectors. Never a panic (no overflow in debug builds).
use criu_cet::check::{check, CoveragePolicy};
use criu_cet::fleet::parse_profile;
use criu_cet_format::ImageReader;
use libfuzzer_sys::fuzz_target;

const IMAGES: [&[u8]; 2] =
    [include_bytes!("../../tests/vectors/typical-48.cetimg"), include_bytes!("../../tests/vectors/high-57.cetimg")];

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = parse_profile(data) else { return };
    let _ = criu_cet::host::user_limit(profile.user_address_bits);
    for image in IMAGES {
        let r = ImageReader::open(std::io::Cursor::new(image)).expect("a golden vector");
        for coverage in [CoveragePolicy::Warn, CoveragePolicy::Strict] {
            let _ = check("fuzz.img", r.metadata(), r.summary(), &profile, "fuzz target", coverage);
        }
    }
});
