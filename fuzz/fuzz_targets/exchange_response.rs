#![no_main]

//! The client side of the Txn-Token Service reads hostile answers: `TxnTokenResponse::from_json`
//! and `ExchangeError::from_json` never panic; what they accept is what the profile says (a
//! non-empty token, a scope in the grant grammar, a known error code, a printable description
//! of at most 256 bytes) and writes back to the same value.

use libfuzzer_sys::fuzz_target;
use secmesh_core::exchange::{ExchangeError, TxnTokenResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = TxnTokenResponse::from_json(data) {
        assert!(!r.access_token().is_empty());
        let again = TxnTokenResponse::from_json(r.to_json().as_bytes()).expect("reads again");
        assert_eq!(again, r);
    }
    if let Ok(e) = ExchangeError::from_json(data) {
        let d = e.description();
        assert!(d.len() <= 256 && d.bytes().all(|b| (0x20..0x7f).contains(&b)));
        let again = ExchangeError::from_json(e.to_json().as_bytes()).expect("reads again");
        assert_eq!(again, e);
    }
});
