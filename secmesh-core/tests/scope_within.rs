//! `Scope::is_within` is sound: when it says a scope is within another, every request the
//! first allows, the second allows too (a replacement token can never widen what it carries).
#![allow(clippy::unwrap_used, missing_docs)]

use proptest::prelude::*;
use secmesh_core::claims::Scope;
use secmesh_core::svo::{Object, Subject, Verb};

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

fn scope() -> impl Strategy<Value = Scope> {
    let verb = prop::sample::select(vec!["read", "create", "*"]);
    prop::collection::vec((verb, pattern()), 1..4).prop_map(|grants| {
        let s: Vec<String> = grants.iter().map(|(v, o)| format!("{v}:{o}")).collect();
        Scope::new(s.join(" ")).unwrap()
    })
}

fn requests() -> Vec<(Verb, Object)> {
    let segs = ["a", "b", "user:alice", "user:bob"];
    let mut objects = vec![String::new()];
    let mut layer = vec![String::new()];
    for _ in 0..5 {
        let mut next = Vec::new();
        for o in &layer {
            for s in segs {
                next.push(if o.is_empty() {
                    s.to_owned()
                } else {
                    format!("{o}/{s}")
                });
            }
        }
        objects.extend(next.iter().cloned());
        layer = next;
    }
    let mut out = Vec::new();
    for v in ["read", "create", "delete"] {
        for o in &objects {
            out.push((v.parse().unwrap(), o.parse().unwrap()));
        }
    }
    out
}

fn allows(scope: &Scope, verb: &Verb, object: &Object, sub: &Subject) -> bool {
    scope.grants().iter().any(|g| g.covers(verb, object, sub))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn within_is_never_wrong(narrow in scope(), wide in scope()) {
        let sub: Subject = "user:alice".parse().unwrap();
        let requests = requests();
        if narrow.is_within(&wide) {
            for (verb, object) in &requests {
                if allows(&narrow, verb, object, &sub) {
                    prop_assert!(
                        allows(&wide, verb, object, &sub),
                        "{} within {} but {verb} {object} is only allowed by the first",
                        narrow.as_str(),
                        wide.as_str()
                    );
                }
            }
        }
        // Every scope is within itself.
        prop_assert!(narrow.is_within(&narrow));
    }
}

/// A grant narrowed by hand: a `*` verb made `read`, a `*` segment made `a`, a trailing `**`
/// made `b/**` or `b`.
fn narrowed(grant: &str, choice: u8) -> String {
    let (verb, object) = grant.split_once(':').unwrap();
    let verb = if verb == "*" && choice & 1 == 1 {
        "read"
    } else {
        verb
    };
    let mut segs: Vec<String> = object
        .split('/')
        .map(|s| {
            if s == "*" && choice & 2 == 2 {
                "a".to_owned()
            } else {
                s.to_owned()
            }
        })
        .collect();
    if segs.last().map(String::as_str) == Some("**") && choice & 4 == 4 {
        segs.pop();
        segs.push("b".to_owned());
        if choice & 8 == 8 {
            segs.push("**".to_owned());
        }
    }
    format!("{verb}:{}", segs.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn a_narrowed_scope_is_within_and_allows_no_more(wide in scope(), choices in prop::collection::vec(any::<u8>(), 1..4)) {
        let grants: Vec<&str> = wide.as_str().split(' ').collect();
        let narrow: Vec<String> = choices
            .iter()
            .enumerate()
            .map(|(i, &c)| narrowed(grants[i % grants.len()], c))
            .collect();
        let narrow = Scope::new(narrow.join(" ")).unwrap();
        prop_assert!(narrow.is_within(&wide), "{} not within {}", narrow.as_str(), wide.as_str());
        let sub: Subject = "user:alice".parse().unwrap();
        for (verb, object) in &requests() {
            if allows(&narrow, verb, object, &sub) {
                prop_assert!(allows(&wide, verb, object, &sub), "{verb} {object}");
            }
        }
    }
}
