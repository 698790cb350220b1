#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_core::TraceParent;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(tp) = s.parse::<TraceParent>() {
            let again: TraceParent = tp.to_string().parse().expect("formatted traceparent parses");
            assert_eq!(again, tp);
        }
    }
});
