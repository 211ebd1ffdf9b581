#![no_main]
//! CRIU's pstree.img as restore init reads it (`criu_cet::criu_images::parse_pstree`), from any bytes.
//! Never a panic; what it returns lists each task once.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tasks) = criu_cet::criu_images::parse_pstree(data) {
        assert!(!tasks.is_empty());
        assert!(tasks.iter().all(|(pid, t)| *pid == t.pid));
    }
});
