#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_audit::verify::{parse_line, verify_bytes};

const KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    for line in data.split(|b| *b == b'\n') {
        let _ = parse_line(line);
    }
    if let Ok(report) = verify_bytes(data, None) {
        // A sound log has as many records as whole lines.
        let lines = data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
        assert_eq!(report.events + report.checkpoints, lines);
    }
    let _ = verify_bytes(data, Some(&KEY));
});
