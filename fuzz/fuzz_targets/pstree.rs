#![no_main]
//! CRIU's pstree.img as restore init reads it (`cet_plugin::pstree::parse`), from any bytes.
//! Never a panic; what it returns lists each task once.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tasks) = cet_plugin::pstree::parse(data) {
        assert!(!tasks.is_empty());
        assert!(tasks.iter().all(|(pid, t)| *pid == t.pid));
    }
});
