#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_core::TraceParent;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(tp) = s.parse::<TraceParent>() {
            // secmesh always writes version 00; the ids and flags survive the round trip.
            let again: TraceParent = tp.to_string().parse().expect("formatted traceparent parses");
            assert_eq!(again.trace_id(), tp.trace_id());
            assert_eq!(again.parent_id(), tp.parent_id());
            assert_eq!(again.flags(), tp.flags());
            if s.starts_with("00-") {
                assert_eq!(tp.to_string(), s.to_ascii_lowercase());
            }
        }
    }
});
