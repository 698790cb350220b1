#![no_main]

//! The exchange policy reader: any bytes, as TOML and as JSON, give a policy or a typed error,
//! never a panic. A policy that loads lints and decides a few asks; an allowed ask's granted
//! scope is within the request and within the grants of the rules that allow its class, and a
//! deny names a rule of the policy or none.

use libfuzzer_sys::fuzz_target;
use secmesh_core::ExpiryClass;
use secmesh_core::claims::Scope;
use secmesh_core::exchange::SubjectTokenType;
use secmesh_core::exchange_policy::{ExchangeAsk, ExchangePolicy};
use secmesh_core::policy::{Effect, Format};

const SCOPES: [&str; 4] = [
    "read:orders/{sub}/**",
    "*:** read:a/b",
    "create:orders/{sub}/*/dispute read:orders/1",
    "read:user:alice/** delete:*",
];

fuzz_target!(|data: &[u8]| {
    for format in [Format::Toml, Format::Json] {
        let policy = match ExchangePolicy::parse_bytes(data, format) {
            Ok(policy) => policy,
            Err(e) => {
                let _ = (e.to_string(), e.position(), e.rule_index(), e.rule_id());
                continue;
            }
        };
        if policy.len() <= 256 {
            let _ = policy.lint();
        }
        let types = [
            SubjectTokenType::AccessToken,
            SubjectTokenType::TxnToken,
            SubjectTokenType::Other("urn:example:t".into()),
        ];
        let workloads: Vec<&str> = policy
            .rules()
            .iter()
            .filter_map(|r| r.workloads().first().map(|g| g.as_str()))
            .take(2)
            .chain(["spiffe://mesh.test/gateway"])
            .collect();
        for (i, text) in SCOPES.iter().enumerate() {
            let Ok(scope) = Scope::new(*text) else {
                continue;
            };
            let t = &types[i % types.len()];
            let workload = workloads[i % workloads.len()];
            let class = ExpiryClass::ALL[i % 3];
            for subject in ["user:alice", "*"] {
                let ask = ExchangeAsk::new(workload, t, subject, "mesh.test", &scope)
                    .with_issuer("https://idp.mesh.test")
                    .with_class(class);
                let d = policy.decide(&ask);
                if let Some(id) = d.rule() {
                    assert!(policy.rule(id).is_some());
                }
                let _ = d.to_string();
                if d.effect() != Effect::Allow {
                    assert!(d.granted().is_none() && d.error().is_some());
                    continue;
                }
                let granted = d.granted().expect("an allow grants");
                assert!(granted.is_within(&scope), "{granted} not within {scope}");
                // Within the union of the grants of every allow rule allowing this class.
                let allowed: Vec<String> = policy
                    .rules()
                    .iter()
                    .filter(|r| r.effect() == Effect::Allow && class.accepted_by(r.max_class()))
                    .flat_map(|r| r.scopes().iter().map(|g| g.to_string()))
                    .collect();
                for g in granted.grants() {
                    let one = Scope::new(g.to_string()).expect("a grant is a scope");
                    assert!(
                        allowed
                            .iter()
                            .any(|p| Scope::new(p.clone()).is_ok_and(|p| one.is_within(&p))),
                        "{g} is within no allowed grant"
                    );
                }
                assert_eq!(d.class(), Some(class));
            }
        }
    }
});
