//! The exchange policy's down-scoping is sound: on random policies and asks, a granted scope
//! is within the request and within the grants of the rules that allow the class (both
//! directions of `Scope::is_within`), and a refused scope had no grant to give.
#![allow(clippy::unwrap_used, missing_docs)]

use proptest::prelude::*;
use secmesh_core::ExpiryClass;
use secmesh_core::claims::Scope;
use secmesh_core::exchange::SubjectTokenType;
use secmesh_core::exchange_policy::{ExchangeAsk, ExchangePolicy, ExchangeReason};
use secmesh_core::policy::Effect;

fn pattern() -> impl Strategy<Value = String> {
    let seg = prop::sample::select(vec!["a", "b", "*", "{sub}", "user:alice"]);
    (prop::collection::vec(seg, 1..4), any::<bool>()).prop_map(|(segs, rest)| {
        let mut p = segs.join("/");
        if rest {
            p.push_str("/**");
        }
        p
    })
}

fn grants() -> impl Strategy<Value = Vec<String>> {
    let verb = prop::sample::select(vec!["read", "create", "*"]);
    prop::collection::vec(
        (verb, prop_oneof![pattern(), Just("**".to_owned())]).prop_map(|(v, o)| format!("{v}:{o}")),
        1..5,
    )
}

fn class() -> impl Strategy<Value = ExpiryClass> {
    prop::sample::select(ExpiryClass::ALL.to_vec())
}

#[derive(Debug, Clone)]
struct RRule {
    allow: bool,
    workload: &'static str,
    subject: Option<&'static str>,
    scopes: Vec<String>,
    max_class: ExpiryClass,
}

fn rule() -> impl Strategy<Value = RRule> {
    (
        prop::bool::weighted(0.8),
        prop::sample::select(vec!["*", "spiffe://m/a", "spiffe://m/*"]),
        prop::option::of(prop::sample::select(vec!["user:*", "user:alice", "*a*"])),
        grants(),
        class(),
    )
        .prop_map(|(allow, workload, subject, scopes, max_class)| RRule {
            allow,
            workload,
            subject,
            scopes,
            max_class,
        })
}

fn to_toml(rules: &[RRule]) -> String {
    let mut t = String::new();
    for (i, r) in rules.iter().enumerate() {
        t.push_str(&format!(
            "[[exchange]]\nid = \"r{i}\"\neffect = \"{}\"\nworkloads = [\"{}\"]\n\
             subject_token_types = [\"*\"]\naudiences = [\"mesh.test\"]\n",
            if r.allow { "allow" } else { "deny" },
            r.workload
        ));
        if let Some(s) = r.subject {
            t.push_str(&format!("subjects = [\"{s}\"]\n"));
        }
        if r.allow {
            let list: Vec<String> = r.scopes.iter().map(|g| format!("\"{g}\"")).collect();
            t.push_str(&format!(
                "scopes = [{}]\nmax_class = \"{}\"\n",
                list.join(", "),
                r.max_class
            ));
        }
    }
    t
}

/// `is_within` for `subject` standing literally for `{sub}` (when it reads as no pattern), or
/// symbolically: what the authorizer will decide for a token of that subject.
fn within_for(narrow: &Scope, wide: &Scope, subject: &str) -> bool {
    if narrow.is_within(wide) {
        return true;
    }
    if subject.contains(['*', '/', '{', '}']) {
        return false;
    }
    // Each narrow grant within some wide grant, both with `{sub}` replaced.
    narrow.grants().iter().all(|n| {
        let n = Scope::new(n.to_string().replace("{sub}", subject)).unwrap();
        wide.grants().iter().any(|w| {
            let w = Scope::new(w.to_string().replace("{sub}", subject)).unwrap();
            n.is_within(&w)
        })
    })
}

fn glob(p: &str, s: &str) -> bool {
    p.parse::<secmesh_core::policy::Glob>().unwrap().matches(s)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn granted_is_within_request_and_policy(
        rules in prop::collection::vec(rule(), 1..5),
        asked in grants(),
        workload in prop::sample::select(vec!["spiffe://m/a", "spiffe://m/b"]),
        subject in prop::sample::select(vec!["user:alice", "user:*", "a/b", "svc:x"]),
        asked_class in prop::option::of(class()),
    ) {
        let policy = ExchangePolicy::from_toml(&to_toml(&rules)).unwrap();
        let request = Scope::new(asked.join(" ")).unwrap();
        let t = SubjectTokenType::AccessToken;
        let mut ask = ExchangeAsk::new(workload, &t, subject, "mesh.test", &request);
        if let Some(c) = asked_class {
            ask = ask.with_class(c);
        }
        let d = policy.decide(&ask);
        let class = asked_class.unwrap_or(ExpiryClass::Fast);
        let matching: Vec<&RRule> = rules
            .iter()
            .filter(|r| glob(r.workload, workload) && r.subject.is_none_or(|s| glob(s, subject)))
            .collect();
        let denied = matching.iter().any(|r| !r.allow);
        let eligible: Vec<String> = matching
            .iter()
            .filter(|r| r.allow && class.accepted_by(r.max_class))
            .flat_map(|r| r.scopes.iter().cloned())
            .collect();
        if denied {
            prop_assert_eq!(d.reason(), ExchangeReason::DenyRule);
        }
        match d.effect() {
            Effect::Allow => {
                prop_assert!(!denied);
                let granted = d.granted().unwrap();
                let policy_scope = Scope::new(eligible.join(" ")).unwrap();
                prop_assert!(within_for(granted, &request, subject), "{} not within {}", granted, request);
                prop_assert!(within_for(granted, &policy_scope, subject), "{} not within {}", granted, policy_scope);
                prop_assert_eq!(d.class(), Some(class));
                prop_assert_eq!(d.narrowed(), granted != &request);
                // Every requested grant within the policy is kept whole.
                for g in request.grants() {
                    let one = Scope::new(g.to_string()).unwrap();
                    if within_for(&one, &policy_scope, subject) {
                        prop_assert!(one.is_within(granted), "{} dropped", one);
                    }
                }
            }
            Effect::Deny => {
                prop_assert!(d.granted().is_none());
                if matches!(d.reason(), ExchangeReason::ScopeNotAllowed | ExchangeReason::ClassNotAllowed) {
                    // Nothing to give: no grant either way within the other.
                    for r in request.grants() {
                        let r = Scope::new(r.to_string()).unwrap();
                        for p in &eligible {
                            let p = Scope::new(p.clone()).unwrap();
                            prop_assert!(
                                !within_for(&r, &p, subject) && !within_for(&p, &r, subject),
                                "{} / {}", r, p
                            );
                        }
                    }
                }
            }
        }
    }
}
