//! Policy decisions per second: the secmesh engine against cedar-policy evaluating the
//! equivalent policies, at 10, 1,000 and 10,000 rules.
//!
//! The rules are ten per tenant (`t<N>/...`): allows and denies over subjects, verbs, objects,
//! callers and expiry classes. The translation to Cedar puts the request's subject, object,
//! caller and class in the context and the verb in the action:
//! - subject glob `g` -> `context.sub like "g"`;
//! - object `p/**` -> `context.object == "p" || context.object like "p/*"`, object `p/*` ->
//!   `context.object like "p/*"` (equivalent for the objects requested here: the bench checks
//!   that both engines agree on every request before measuring);
//! - verbs -> `action == Action::"v"` / `action in [...]`;
//! - callers -> `context has caller && context.caller like "g"`;
//! - `max_class` -> `context has class && context.class <= n` (fast 0, medium 1, slow 2);
//! - deny -> `forbid`, allow -> `permit`. Cedar's forbid-overrides-permit, default-deny
//!   semantics are the same decision as secmesh's.
//!
//! Each measured iteration decides one request, cycling through a fixed mix of allowed, denied
//! and unmatched requests across the tenants; requests are built before measuring for both.

#![allow(clippy::unwrap_used)] // setup of fixed, known-good inputs

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, EntityUid, PolicySet,
    Request as CedarRequest, RestrictedExpression,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use secmesh::core::ExpiryClass;
use secmesh::core::policy::{Policy, Request};
use secmesh::core::svo::{Object, Subject, Verb};

struct BenchRule {
    allow: bool,
    subject: &'static str,
    verbs: &'static [&'static str],
    object: String,
    caller: Option<&'static str>,
    max_class: Option<ExpiryClass>,
}

fn rules(n: usize) -> Vec<BenchRule> {
    (0..n)
        .map(|i| {
            let t = i / 10;
            let (allow, subject, verbs, object, caller, max_class): (
                bool,
                &'static str,
                &'static [&'static str],
                String,
                Option<&'static str>,
                Option<ExpiryClass>,
            ) = match i % 10 {
                0 => (
                    true,
                    "user:*",
                    &["read"],
                    format!("t{t}/orders/**"),
                    None,
                    None,
                ),
                1 => (
                    true,
                    "user:*",
                    &["update"],
                    format!("t{t}/orders/*"),
                    Some("spiffe://mesh.test/gateway"),
                    Some(ExpiryClass::Fast),
                ),
                2 => (
                    false,
                    "*",
                    &["delete"],
                    format!("t{t}/orders/**"),
                    None,
                    None,
                ),
                3 => (
                    true,
                    "svc:billing",
                    &["*"],
                    format!("t{t}/invoices/**"),
                    None,
                    None,
                ),
                4 => (
                    false,
                    "user:mallory",
                    &["*"],
                    format!("t{t}/**"),
                    None,
                    None,
                ),
                5 => (
                    true,
                    "user:*",
                    &["read", "update"],
                    format!("t{t}/profiles/*"),
                    None,
                    Some(ExpiryClass::Medium),
                ),
                6 => (
                    true,
                    "user:admin*",
                    &["*"],
                    format!("t{t}/admin/**"),
                    None,
                    None,
                ),
                7 => (
                    false,
                    "*",
                    &["*"],
                    format!("t{t}/admin/secrets/**"),
                    None,
                    None,
                ),
                8 => (true, "*", &["read"], format!("t{t}/public/**"), None, None),
                _ => (
                    true,
                    "svc:*",
                    &["create"],
                    format!("t{t}/events/*"),
                    Some("spiffe://mesh.test/*"),
                    None,
                ),
            };
            BenchRule {
                allow,
                subject,
                verbs,
                object,
                caller,
                max_class,
            }
        })
        .collect()
}

fn toml_policy(rules: &[BenchRule]) -> String {
    let mut out = String::new();
    for (i, r) in rules.iter().enumerate() {
        let verbs: Vec<String> = r.verbs.iter().map(|v| format!("{v:?}")).collect();
        out += &format!(
            "[[rule]]\nid = \"r{i}\"\neffect = \"{}\"\nsubjects = [{:?}]\nverbs = [{}]\nobjects = [{:?}]\n",
            if r.allow { "allow" } else { "deny" },
            r.subject,
            verbs.join(", "),
            r.object,
        );
        if let Some(c) = r.caller {
            out += &format!("callers = [{c:?}]\n");
        }
        if let Some(c) = r.max_class {
            out += &format!("max_class = \"{c}\"\n");
        }
        out += "\n";
    }
    out
}

fn cedar_object(pattern: &str) -> String {
    if let Some(p) = pattern.strip_suffix("/**") {
        format!("(context.object == {p:?} || context.object like \"{p}/*\")")
    } else {
        format!("context.object like {pattern:?}")
    }
}

fn cedar_policy(rules: &[BenchRule]) -> String {
    let mut out = String::new();
    for (i, r) in rules.iter().enumerate() {
        let action = match r.verbs {
            ["*"] => "action".to_owned(),
            [v] => format!("action == Action::{v:?}"),
            vs => {
                let list: Vec<String> = vs.iter().map(|v| format!("Action::{v:?}")).collect();
                format!("action in [{}]", list.join(", "))
            }
        };
        let mut conds = vec![
            format!("context.sub like {:?}", r.subject),
            cedar_object(&r.object),
        ];
        if let Some(c) = r.caller {
            conds.push(format!("context has caller && context.caller like {c:?}"));
        }
        if let Some(c) = r.max_class {
            conds.push(format!("context has class && context.class <= {}", c as u8));
        }
        out += &format!(
            "@id(\"r{i}\")\n{}(principal, {action}, resource) when {{ {} }};\n",
            if r.allow { "permit" } else { "forbid" },
            conds.join(" && ")
        );
    }
    out
}

struct Req {
    sub: Subject,
    verb: Verb,
    object: Object,
    caller: Option<&'static str>,
    class: Option<ExpiryClass>,
}

/// (subject, verb, object under the tenant, caller, class)
type Shape = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<ExpiryClass>,
);

fn requests(tenants: usize) -> Vec<Req> {
    let shapes: [Shape; 8] = [
        (
            "user:alice",
            "read",
            "orders/42",
            None,
            Some(ExpiryClass::Fast),
        ),
        (
            "user:alice",
            "update",
            "orders/42",
            Some("spiffe://mesh.test/gateway"),
            Some(ExpiryClass::Fast),
        ),
        ("user:alice", "delete", "orders/42", None, None),
        ("user:mallory", "read", "public/readme", None, None),
        ("svc:billing", "create", "invoices/7/lines", None, None),
        ("user:admin-root", "read", "admin/secrets/k1", None, None),
        ("user:bob", "read", "unknown/thing", None, None),
        (
            "user:bob",
            "update",
            "profiles/bob",
            None,
            Some(ExpiryClass::Slow),
        ),
    ];
    (0..64)
        .map(|i| {
            let t = (i * 7919) % tenants;
            let (sub, verb, obj, caller, class) = shapes[i % shapes.len()];
            Req {
                sub: sub.parse().unwrap(),
                verb: verb.parse().unwrap(),
                object: format!("t{t}/{obj}").parse().unwrap(),
                caller,
                class,
            }
        })
        .collect()
}

fn secmesh_request(r: &Req) -> Request<'_> {
    let mut q = Request::new(&r.sub, &r.verb, &r.object);
    if let Some(c) = r.caller {
        q = q.with_caller(c);
    }
    if let Some(c) = r.class {
        q = q.with_class(c);
    }
    q
}

fn cedar_request(r: &Req) -> CedarRequest {
    let mut ctx = vec![
        (
            "sub".to_owned(),
            RestrictedExpression::new_string(r.sub.as_str().to_owned()),
        ),
        (
            "object".to_owned(),
            RestrictedExpression::new_string(r.object.as_str().to_owned()),
        ),
    ];
    if let Some(c) = r.caller {
        ctx.push((
            "caller".to_owned(),
            RestrictedExpression::new_string(c.to_owned()),
        ));
    }
    if let Some(c) = r.class {
        ctx.push((
            "class".to_owned(),
            RestrictedExpression::new_long(i64::from(c as u8)),
        ));
    }
    CedarRequest::new(
        EntityUid::from_str("User::\"caller\"").unwrap(),
        EntityUid::from_str(&format!("Action::{:?}", r.verb.as_str())).unwrap(),
        EntityUid::from_str("Object::\"object\"").unwrap(),
        Context::from_pairs(ctx).unwrap(),
        None,
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_decision");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for n in [10usize, 1_000, 10_000] {
        let rules = rules(n);
        let policy = Policy::from_toml(&toml_policy(&rules)).unwrap();
        let cedar: PolicySet = cedar_policy(&rules).parse().unwrap();
        let reqs = requests(n.div_ceil(10));
        let cedar_reqs: Vec<CedarRequest> = reqs.iter().map(cedar_request).collect();
        let authorizer = Authorizer::new();
        let entities = Entities::empty();

        // Both engines must make the same decision on every request measured.
        let mut allowed = 0;
        for (r, cr) in reqs.iter().zip(&cedar_reqs) {
            let ours = policy.decide(&secmesh_request(r)).is_allowed();
            let theirs =
                authorizer.is_authorized(cr, &cedar, &entities).decision() == CedarDecision::Allow;
            assert_eq!(ours, theirs, "engines disagree on {}", r.object);
            allowed += usize::from(ours);
        }
        assert!(allowed > 0 && allowed < reqs.len());

        group.bench_with_input(BenchmarkId::new("secmesh", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(policy.decide(black_box(&secmesh_request(&reqs[i]))))
            });
        });
        group.bench_with_input(BenchmarkId::new("cedar", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % cedar_reqs.len();
                black_box(authorizer.is_authorized(black_box(&cedar_reqs[i]), &cedar, &entities))
            });
        });
    }
    group.finish();
}

/// Per-subject rules (`user:u<N>` owning `home/{sub}/**`, denied `home/{sub}/locked/**`):
/// the first object segment is the same for every rule, so the index falls back to its
/// by-subject lists. secmesh only: the shape the verb/object trie alone would scan linearly.
fn bench_per_subject(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_decision_per_subject");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for n in [10usize, 10_000] {
        let mut text = String::new();
        for i in 0..n {
            let effect = if i % 2 == 0 { "allow" } else { "deny" };
            let object = if i % 2 == 0 {
                "home/{sub}/**"
            } else {
                "home/{sub}/locked/**"
            };
            text += &format!(
                "[[rule]]\nid = \"r{i}\"\neffect = \"{effect}\"\nsubjects = [\"user:u{}\"]\nverbs = [\"*\"]\nobjects = [\"{object}\"]\n\n",
                i / 2
            );
        }
        let policy = Policy::from_toml(&text).unwrap();
        let reqs: Vec<Req> = (0..64)
            .map(|i| {
                let u = (i * 7919) % (n / 2);
                let obj = if i % 3 == 0 { "locked/x" } else { "docs/1" };
                Req {
                    sub: format!("user:u{u}").parse().unwrap(),
                    verb: Verb::Read,
                    object: format!("home/user:u{u}/{obj}").parse().unwrap(),
                    caller: None,
                    class: None,
                }
            })
            .collect();
        let allowed = reqs
            .iter()
            .filter(|r| policy.decide(&secmesh_request(r)).is_allowed())
            .count();
        assert!(allowed > 0 && allowed < reqs.len());
        group.bench_with_input(BenchmarkId::new("secmesh", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(policy.decide(black_box(&secmesh_request(&reqs[i]))))
            });
        });
    }
    group.finish();
}

/// `Policy::explain` on denied requests of the same mix (secmesh only): the price of a deny's
/// explanation, paid only when one is asked for; `decide` above never pays it.
fn bench_explain(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_explain");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for n in [10usize, 1_000, 10_000] {
        let policy = Policy::from_toml(&toml_policy(&rules(n))).unwrap();
        let denied: Vec<Req> = requests(n.div_ceil(10))
            .into_iter()
            .filter(|r| !policy.decide(&secmesh_request(r)).is_allowed())
            .collect();
        assert!(!denied.is_empty());
        group.bench_with_input(BenchmarkId::new("secmesh", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % denied.len();
                black_box(policy.explain(black_box(&secmesh_request(&denied[i]))))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_per_subject, bench_explain);
criterion_main!(benches);
