//! Policy loading: any bytes, as TOML and as JSON, must give a policy or a typed error, never a
//! panic; a loaded policy must decide and lint without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secmesh_core::policy::{Format, Policy, Request};
use secmesh_core::svo::{Object, Subject, Verb};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Toml, Format::Json] {
        match Policy::parse_bytes(data, format) {
            Ok(policy) => {
                let (Ok(s), Ok(o)) = ("user:a".parse::<Subject>(), "orders/1".parse::<Object>())
                else {
                    return;
                };
                let d = policy.decide(&Request::new(&s, &Verb::Read, &o));
                if let Some(id) = d.rule() {
                    assert!(policy.rule(id).is_some());
                }
                if policy.rules().len() <= 64 {
                    let _ = policy.lint();
                }
            }
            Err(e) => {
                let _ = e.to_string();
                let _ = e.position();
            }
        }
    }
});
