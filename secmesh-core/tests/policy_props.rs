//! Property tests: the indexed policy engine against a simple reference evaluator written
//! here, over random policies and requests.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use proptest::prelude::*;
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{
    Condition, Effect, Failure, Format, Grant, Policy, Reason, Request, parse_scope,
};
use secmesh_core::svo::{Object, Subject, Verb};

#[derive(Clone, Debug)]
struct RRule {
    allow: bool,
    subjects: Vec<String>,
    verbs: Vec<String>,
    objects: Vec<String>,
    callers: Option<Vec<String>>,
    max_class: Option<ExpiryClass>,
    attributes: Vec<(String, Vec<String>)>,
    shadow: bool,
}

#[derive(Clone, Debug)]
struct RReq {
    subject: String,
    verb: String,
    object: String,
    caller: Option<String>,
    class: Option<ExpiryClass>,
    scope: Option<String>,
    attributes: Vec<(String, String)>,
}

/// `*` matches any run of characters.
fn ref_glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => ref_glob(rest, s) || (!s.is_empty() && ref_glob(p, &s[1..])),
        Some((c, rest)) => s.first() == Some(c) && ref_glob(rest, &s[1..]),
    }
}

/// Segment matching; `{sub}` replaced by the subject taken literally (it may span segments).
fn ref_object(pattern: &str, object: &str, sub: &str) -> bool {
    fn go(p: &[&str], o: &[&str], sub: &str) -> bool {
        match p.split_first() {
            None => o.is_empty(),
            Some((&"**", _)) => true,
            Some((&"*", rest)) => !o.is_empty() && go(rest, &o[1..], sub),
            Some((seg, rest)) => {
                let lit = seg.replace("{sub}", sub);
                let k = lit.split('/').count();
                o.len() >= k && o[..k].join("/") == lit && go(rest, &o[k..], sub)
            }
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let o: Vec<&str> = if object.is_empty() {
        Vec::new()
    } else {
        object.split('/').collect()
    };
    go(&p, &o, sub)
}

fn ref_matches(r: &RRule, q: &RReq) -> bool {
    let class_ok = match r.max_class {
        None => true,
        Some(m) => q.class.is_some_and(|c| c <= m),
    };
    let caller_ok = match &r.callers {
        None => true,
        Some(cs) => q
            .caller
            .as_ref()
            .is_some_and(|c| cs.iter().any(|g| ref_glob(g.as_bytes(), c.as_bytes()))),
    };
    let attributes_ok = r.attributes.iter().all(|(name, globs)| {
        q.attributes
            .iter()
            .any(|(n, v)| n == name && globs.iter().any(|g| ref_glob(g.as_bytes(), v.as_bytes())))
    });
    class_ok
        && caller_ok
        && attributes_ok
        && r.subjects
            .iter()
            .any(|g| ref_glob(g.as_bytes(), q.subject.as_bytes()))
        && r.verbs.iter().any(|v| v == "*" || *v == q.verb)
        && r.objects
            .iter()
            .any(|o| ref_object(o, &q.object, &q.subject))
}

/// Each condition of `r` for `q`, in the order an explanation checks them: subject, verb,
/// object, caller, class, then one per attribute (with its name).
fn ref_conditions<'a>(r: &'a RRule, q: &RReq) -> Vec<(Condition, Option<&'a str>, bool)> {
    let mut out = vec![
        (
            Condition::Subject,
            None,
            r.subjects
                .iter()
                .any(|g| ref_glob(g.as_bytes(), q.subject.as_bytes())),
        ),
        (
            Condition::Verb,
            None,
            r.verbs.iter().any(|v| v == "*" || *v == q.verb),
        ),
        (
            Condition::Object,
            None,
            r.objects
                .iter()
                .any(|o| ref_object(o, &q.object, &q.subject)),
        ),
    ];
    if let Some(cs) = &r.callers {
        let ok = q
            .caller
            .as_ref()
            .is_some_and(|c| cs.iter().any(|g| ref_glob(g.as_bytes(), c.as_bytes())));
        out.push((Condition::Caller, None, ok));
    }
    if let Some(m) = r.max_class {
        out.push((Condition::Class, None, q.class.is_some_and(|c| c <= m)));
    }
    for (name, globs) in &r.attributes {
        let ok = q
            .attributes
            .iter()
            .any(|(n, v)| n == name && globs.iter().any(|g| ref_glob(g.as_bytes(), v.as_bytes())));
        out.push((Condition::Attribute, Some(name.as_str()), ok));
    }
    out
}

/// The explanation agrees with the decision and with the reference: the closest rules are
/// the enforce-mode allow rules with the fewest failed conditions (then most met, then file
/// order), each naming its first failed condition.
fn check_explanation(
    policy: &Policy,
    req: &Request<'_>,
    rules: &[RRule],
    q: &RReq,
) -> Result<(), TestCaseError> {
    let d = policy.decide(req);
    let why = policy.explain(req);
    prop_assert_eq!(
        (why.effect(), why.reason(), why.rule()),
        (d.effect(), d.reason(), d.rule())
    );
    let allow_rules: Vec<usize> = (0..rules.len())
        .filter(|&i| rules[i].allow && !rules[i].shadow)
        .collect();
    match d.reason() {
        Reason::AllowRule | Reason::DenyRule => {
            prop_assert!(why.closest().is_empty());
            prop_assert_eq!(d.matched_rule(), d.rule_id());
        }
        Reason::MissingGrant => {
            prop_assert_eq!(why.closest().len(), 1);
            let c = &why.closest()[0];
            let first = allow_rules
                .iter()
                .copied()
                .find(|&i| ref_matches(&rules[i], q));
            prop_assert_eq!(Some(c.index()), first);
            prop_assert_eq!(
                d.matched_rule().map(|r| r.as_str().to_owned()),
                first.map(|i| format!("r{i}"))
            );
            prop_assert_eq!(c.failure().condition(), Condition::Grant);
            prop_assert_eq!(c.matched(), c.conditions());
        }
        Reason::NoRule => {
            let key = |i: usize| {
                let cs = ref_conditions(&rules[i], q);
                let failed = cs.iter().filter(|c| !c.2).count();
                (failed, cs.len() - failed, i)
            };
            let mut ranked: Vec<(usize, usize, usize)> =
                allow_rules.iter().map(|&i| key(i)).collect();
            ranked.sort_by(|a, b| {
                (a.0, std::cmp::Reverse(a.1), a.2).cmp(&(b.0, std::cmp::Reverse(b.1), b.2))
            });
            ranked.truncate(3);
            let got: Vec<(usize, usize, usize)> = why
                .closest()
                .iter()
                .map(|c| (c.conditions() - c.matched(), c.matched(), c.index()))
                .collect();
            prop_assert_eq!(got, ranked);
            for c in why.closest() {
                let cs = ref_conditions(&rules[c.index()], q);
                let first = cs.iter().find(|c| !c.2).unwrap();
                prop_assert_eq!(c.failure().condition(), first.0);
                if let Failure::Attribute { name, .. } = c.failure() {
                    let failing = cs.iter().any(|x| x.1 == Some(&**name) && !x.2);
                    prop_assert!(failing, "{name} does not fail");
                }
                prop_assert!(!c.to_string().is_empty());
            }
        }
        _ => {}
    }
    Ok(())
}

fn ref_grant(scope: &str, q: &RReq) -> bool {
    scope.split(' ').filter(|g| !g.is_empty()).any(|g| {
        let (v, o) = g.split_once(':').unwrap();
        (v == "*" || v == q.verb) && ref_object(o, &q.object, &q.subject)
    })
}

/// (allowed, rule index, reason)
fn ref_decide(rules: &[RRule], shadow: bool, q: &RReq) -> (bool, Option<usize>, Reason) {
    let live = |r: &&RRule| r.shadow == shadow && ref_matches(r, q);
    if let Some(i) = rules.iter().position(|r| !r.allow && live(&r)) {
        return (false, Some(i), Reason::DenyRule);
    }
    match rules.iter().position(|r| r.allow && live(&r)) {
        None => (false, None, Reason::NoRule),
        Some(i) => match &q.scope {
            Some(s) if !ref_grant(s, q) => (false, None, Reason::MissingGrant),
            _ => (true, Some(i), Reason::AllowRule),
        },
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn to_toml(rules: &[RRule]) -> String {
    let mut out = String::new();
    for (i, r) in rules.iter().enumerate() {
        out += &format!(
            "[[rule]]\nid = \"r{i}\"\neffect = \"{}\"\nsubjects = {}\nverbs = {}\nobjects = {}\n",
            if r.allow { "allow" } else { "deny" },
            list(&r.subjects),
            list(&r.verbs),
            list(&r.objects)
        );
        if let Some(c) = &r.callers {
            out += &format!("callers = {}\n", list(c));
        }
        if let Some(c) = r.max_class {
            out += &format!("max_class = \"{c}\"\n");
        }
        if !r.attributes.is_empty() {
            let attrs: Vec<String> = r
                .attributes
                .iter()
                .map(|(n, g)| format!("{n} = {}", list(g)))
                .collect();
            out += &format!("attributes = {{ {} }}\n", attrs.join(", "));
        }
        if r.shadow {
            out += "mode = \"shadow\"\n";
        }
        out += "\n";
    }
    out
}

fn to_json(rules: &[RRule]) -> String {
    let rules: Vec<serde_json::Value> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut v = serde_json::json!({
                "id": format!("r{i}"),
                "effect": if r.allow { "allow" } else { "deny" },
                "subjects": r.subjects,
                "verbs": r.verbs,
                "objects": r.objects,
                "mode": if r.shadow { "shadow" } else { "enforce" },
            });
            if let Some(c) = &r.callers {
                v["callers"] = serde_json::json!(c);
            }
            if let Some(c) = r.max_class {
                v["max_class"] = serde_json::json!(c.as_str());
            }
            if !r.attributes.is_empty() {
                let attrs: serde_json::Map<String, serde_json::Value> = r
                    .attributes
                    .iter()
                    .map(|(n, g)| (n.clone(), serde_json::json!(g)))
                    .collect();
                v["attributes"] = serde_json::Value::Object(attrs);
            }
            v
        })
        .collect();
    serde_json::json!({ "rule": rules }).to_string()
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(options).prop_map(str::to_owned)
}

const SUBJECTS: &[&str] = &["u:a", "u:b", "a", "a/b", "*", "svc:x"];
const SUBJECT_GLOBS: &[&str] = &["*", "u:*", "*a", "u:a", "a*b", "*/*", "svc:x", "u:*a*"];
const VERBS: &[&str] = &["read", "update", "approve"];
const VERB_PATTERNS: &[&str] = &["read", "update", "approve", "*"];
const SEGMENTS: &[&str] = &["a", "b", "u:a", "*"];
const PATTERN_SEGMENTS: &[&str] = &["a", "b", "*", "{sub}", "x{sub}", "u:a"];
const ATTRIBUTE_NAMES: &[&str] = &["role", "team"];
const ATTRIBUTE_VALUES: &[&str] = &["admin", "ops", "dev"];
const ATTRIBUTE_GLOBS: &[&str] = &["admin", "ops", "*", "o*"];
const CALLERS: &[&str] = &["spiffe://t/x", "spiffe://t/y"];
const CALLER_GLOBS: &[&str] = &["*", "spiffe://t/*", "spiffe://t/x", "*y"];

fn class() -> impl Strategy<Value = Option<ExpiryClass>> {
    prop::option::of(prop::sample::select(ExpiryClass::ALL.to_vec()))
}

fn object_pattern() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(pick(PATTERN_SEGMENTS), 0..4),
        any::<bool>(),
    )
        .prop_filter_map("empty pattern", |(mut segs, rest)| {
            if rest {
                segs.push("**".to_owned());
            }
            (!segs.is_empty()).then(|| segs.join("/"))
        })
}

fn object() -> impl Strategy<Value = String> {
    prop::collection::vec(pick(SEGMENTS), 0..5).prop_map(|s| s.join("/"))
}

fn rule_attributes() -> impl Strategy<Value = Vec<(String, Vec<String>)>> {
    prop::sample::subsequence(ATTRIBUTE_NAMES, 0..=2).prop_flat_map(|names| {
        names
            .into_iter()
            .map(|n| {
                prop::collection::vec(pick(ATTRIBUTE_GLOBS), 0..3)
                    .prop_map(move |g| (n.to_owned(), g))
            })
            .collect::<Vec<_>>()
    })
}

fn rule() -> impl Strategy<Value = RRule> {
    (
        rule_attributes(),
        any::<bool>(),
        prop::collection::vec(pick(SUBJECT_GLOBS), 0..3),
        prop::collection::vec(pick(VERB_PATTERNS), 0..3),
        prop::collection::vec(object_pattern(), 0..3),
        prop::option::weighted(0.3, prop::collection::vec(pick(CALLER_GLOBS), 0..3)),
        prop::option::weighted(0.3, prop::sample::select(ExpiryClass::ALL.to_vec())),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(attributes, allow, subjects, verbs, objects, callers, max_class, shadow)| RRule {
                attributes,
                allow,
                subjects,
                verbs,
                objects,
                callers,
                max_class,
                shadow,
            },
        )
}

fn grant() -> impl Strategy<Value = String> {
    (pick(VERB_PATTERNS), object_pattern()).prop_map(|(v, o)| format!("{v}:{o}"))
}

fn request() -> impl Strategy<Value = RReq> {
    (
        pick(SUBJECTS),
        pick(VERBS),
        object(),
        prop::option::of(pick(CALLERS)),
        class(),
        prop::option::weighted(0.3, prop::collection::vec(grant(), 0..3)),
        prop::collection::vec((pick(ATTRIBUTE_NAMES), pick(ATTRIBUTE_VALUES)), 0..3),
    )
        .prop_map(
            |(subject, verb, object, caller, class, scope, attributes)| RReq {
                attributes,
                subject,
                verb,
                object,
                caller,
                class,
                scope: scope.map(|g| g.join(" ")),
            },
        )
}

fn check(policy: &Policy, rules: &[RRule], q: &RReq) -> Result<(), TestCaseError> {
    let s: Subject = q.subject.parse().unwrap();
    let v: Verb = q.verb.parse().unwrap();
    let o: Object = q.object.parse().unwrap();
    let grants: Option<Vec<Grant>> = q.scope.as_deref().map(|s| parse_scope(s).unwrap());
    let mut req = Request::new(&s, &v, &o);
    if let Some(c) = &q.caller {
        req = req.with_caller(c);
    }
    if let Some(c) = q.class {
        req = req.with_class(c);
    }
    if let Some(g) = &grants {
        req = req.with_grants(g);
    }
    let attrs: Vec<(&str, &str)> = q
        .attributes
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let req = req.with_attributes(&attrs);
    check_explanation(policy, &req, rules, q)?;
    let d = policy.decide(&req);
    let (allowed, rule, reason) = ref_decide(rules, false, q);
    prop_assert_eq!(d.is_allowed(), allowed);
    prop_assert_eq!(d.effect() == Effect::Allow, allowed);
    prop_assert_eq!(d.rule().map(str::to_owned), rule.map(|i| format!("r{i}")));
    prop_assert_eq!(d.reason(), reason);
    if rules.iter().any(|r| r.shadow) {
        let (allowed, rule, reason) = ref_decide(rules, true, q);
        let sd = d.shadow().unwrap();
        prop_assert_eq!(sd.effect() == Effect::Allow, allowed);
        prop_assert_eq!(sd.rule().map(str::to_owned), rule.map(|i| format!("r{i}")));
        prop_assert_eq!(sd.reason(), reason);
    } else {
        prop_assert!(d.shadow().is_none());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn engine_agrees_with_reference(
        rules in prop::collection::vec(rule(), 0..12),
        reqs in prop::collection::vec(request(), 1..16),
    ) {
        let toml = Policy::from_toml(&to_toml(&rules)).unwrap();
        let json = Policy::parse(&to_json(&rules), Format::Json).unwrap();
        prop_assert_eq!(toml.rules(), json.rules());
        for q in &reqs {
            check(&toml, &rules, q)?;
        }
    }

    #[test]
    fn object_patterns_agree_with_reference(
        p in object_pattern(),
        o in object(),
        sub in pick(SUBJECTS),
    ) {
        let pat: secmesh_core::policy::ObjectPattern = p.parse().unwrap();
        prop_assert_eq!(pat.matches(&o, &sub), ref_object(&p, &o, &sub));
    }

    #[test]
    fn globs_agree_with_reference(g in "[ab*]{1,8}", s in "[ab]{0,8}") {
        let glob: secmesh_core::policy::Glob = g.parse().unwrap();
        prop_assert_eq!(glob.matches(&s), ref_glob(g.as_bytes(), s.as_bytes()));
    }

    #[test]
    fn lint_never_claims_a_live_rule_is_shadowed(
        rules in prop::collection::vec(rule(), 0..8),
        reqs in prop::collection::vec(request(), 1..24),
    ) {
        use secmesh_core::policy::FindingKind;
        let policy = Policy::from_toml(&to_toml(&rules)).unwrap();
        for f in policy.lint() {
            let i = f.index();
            for q in &reqs {
                let m = ref_matches(&rules[i], q);
                match f.kind() {
                    FindingKind::NeverMatches { .. } => prop_assert!(!m),
                    FindingKind::ShadowedByDeny { by } | FindingKind::NeverDecides { by } => {
                        let j: usize = by.as_str()[1..].parse().unwrap();
                        prop_assert!(!m || ref_matches(&rules[j], q));
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn parser_never_panics(text in ".{0,300}") {
        let _ = Policy::from_toml(&text);
        let _ = Policy::from_json(&text);
    }
}
