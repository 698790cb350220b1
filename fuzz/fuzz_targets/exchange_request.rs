#![no_main]

//! The Txn-Token Request parser: never panics; every refusal carries a 400/401 status and a
//! JSON body that does not echo the request; what it accepts, written back by the client side
//! (`to_form`), reads as the same request.

use libfuzzer_sys::fuzz_target;
use secmesh_core::exchange::TxnTokenRequest;

fuzz_target!(|data: &[u8]| {
    match TxnTokenRequest::from_form(data) {
        Ok(request) => {
            let again = TxnTokenRequest::from_form(request.to_form().as_bytes())
                .expect("a request written back reads again");
            assert_eq!(again, request);
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 401));
            let json: serde_json::Value = serde_json::from_str(&e.to_json()).expect("JSON");
            assert!(json["error"].is_string());
        }
    }
});
