//! Policy loading: any bytes, as TOML and as JSON, must give a policy or a typed error, never a
//! panic; a loaded policy must decide, lint and match its declared limits without panicking.
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
                let req = Request::new(&s, &Verb::Read, &o).with_caller("spiffe://m/x");
                let d = policy.decide(&req);
                // The declared limits: which apply, and each counter's key.
                let mut key = String::new();
                for l in policy.limits() {
                    if l.applies(&req) {
                        l.key(&req, &mut key);
                        assert!(key.starts_with(l.id()));
                    }
                }
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
