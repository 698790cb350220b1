//! Explanations of each failure kind, ranking and display.

use super::*;
use crate::class::ExpiryClass;
use crate::policy::grant::parse_scope;
use crate::policy::model::Effect;
use crate::svo::{Object, Subject, Verb};

const POLICY: &str = r#"
[[rule]]
id = "gateway-updates-profiles"
effect = "allow"
subjects = ["user:*"]
verbs = ["update"]
objects = ["profiles/{sub}"]
callers = ["spiffe://mesh.test/gateway"]

[[rule]]
id = "ops"
effect = "allow"
subjects = ["user:*"]
verbs = ["*"]
objects = ["ops/**"]
attributes = { role = ["ops*"] }

[[rule]]
id = "no-archive"
effect = "deny"
subjects = ["*"]
verbs = ["*"]
objects = ["archive/**"]

[[rule]]
id = "batch"
effect = "allow"
subjects = ["svc:*"]
verbs = ["read"]
objects = ["ledger/**"]
max_class = "fast"
"#;

fn parts(sub: &str, verb: &str, obj: &str) -> (Subject, Verb, Object) {
    (
        sub.parse().unwrap(),
        verb.parse().unwrap(),
        obj.parse().unwrap(),
    )
}

#[test]
fn names_the_first_failed_condition() {
    let p = Policy::from_toml(POLICY).unwrap();
    let (s, v, o) = parts("user:alice", "update", "profiles/user:alice");
    let req = Request::new(&s, &v, &o);
    let why = p.explain(&req);
    assert_eq!(why.reason(), Reason::NoRule);
    let c = &why.closest()[0];
    assert_eq!(c.rule(), "gateway-updates-profiles");
    assert_eq!(
        c.failure(),
        &Failure::Caller {
            caller: None,
            callers: vec!["spiffe://mesh.test/gateway".parse().unwrap()],
        }
    );
    assert_eq!((c.matched(), c.conditions()), (3, 4));
    let other = p.explain(&req.with_caller("spiffe://mesh.test/evil"));
    assert!(matches!(
        other.closest()[0].failure(),
        Failure::Caller { caller: Some(c), .. } if &**c == "spiffe://mesh.test/evil"
    ));
    assert!(
        other.to_string().contains(
            "rule `gateway-updates-profiles` (#1, allow, 3 of 4 conditions met): caller: \
             `spiffe://mesh.test/evil` matches none of [spiffe://mesh.test/gateway]"
        ),
        "{other}"
    );

    let (s, v, o) = parts("user:bob", "read", "ops/x");
    let attrs = [("role", "dev")];
    let why = p.explain(&Request::new(&s, &v, &o).with_attributes(&attrs));
    let c = &why.closest()[0];
    assert_eq!(c.rule(), "ops");
    assert!(
        matches!(c.failure(), Failure::Attribute { name, values, .. }
        if &**name == "role" && values.len() == 1)
    );
    assert!(
        c.to_string()
            .contains("`role` = [dev] matches none of [ops*]"),
        "{c}"
    );

    let (s, v, o) = parts("svc:batch", "read", "ledger/2026");
    let why = p.explain(&Request::new(&s, &v, &o).with_class(ExpiryClass::Slow));
    assert_eq!(
        why.closest()[0].failure(),
        &Failure::Class {
            class: Some(ExpiryClass::Slow),
            max_class: ExpiryClass::Fast
        }
    );
    // At most MAX_CLOSEST, ranked.
    assert_eq!(why.closest().len(), MAX_CLOSEST);
    assert_eq!(why.closest()[0].rule(), "batch");
}

#[test]
fn allow_deny_rule_and_missing_grant() {
    let p = Policy::from_toml(POLICY).unwrap();
    let (s, v, o) = parts("user:bob", "read", "ops/x");
    let attrs = [("role", "ops-lead")];
    let req = Request::new(&s, &v, &o).with_attributes(&attrs);
    let why = p.explain(&req);
    assert_eq!((why.effect(), why.rule()), (Effect::Allow, Some("ops")));
    assert!(why.closest().is_empty());

    let g = parse_scope("read:orders/**").unwrap();
    let why = p.explain(&req.with_grants(&g));
    assert_eq!(why.reason(), Reason::MissingGrant);
    assert_eq!(why.closest()[0].rule(), "ops");
    assert_eq!(why.closest()[0].failure().condition(), Condition::Grant);
    assert!(
        why.to_string()
            .contains("no grant of the token covers `read` on `ops/x`")
    );

    let (s, v, o) = parts("user:bob", "read", "archive/1");
    let why = p.explain(&Request::new(&s, &v, &o));
    assert_eq!(
        (why.reason(), why.rule()),
        (Reason::DenyRule, Some("no-archive"))
    );
    assert_eq!(why.to_string(), "deny: deny rule (rule `no-archive`)");

    let why = Policy::empty().explain(&Request::new(&s, &v, &o));
    assert_eq!(
        why.to_string(),
        "deny: no rule; the policy has no allow rule"
    );
}

#[test]
fn long_lists_are_cut_in_display() {
    let subjects: Vec<String> = (0..8).map(|i| format!("\"u{i}\"")).collect();
    let p = Policy::from_toml(&format!(
        "[[rule]]\nid = \"r\"\neffect = \"allow\"\nsubjects = [{}]\nverbs = [\"read\"]\nobjects = [\"a\"]\n",
        subjects.join(",")
    ))
    .unwrap();
    let (s, v, o) = parts("x", "read", "a");
    let why = p.explain(&Request::new(&s, &v, &o));
    assert!(
        why.to_string()
            .contains("`x` matches none of [u0, u1, u2, u3, u4, … and 3 more]"),
        "{why}"
    );
}
