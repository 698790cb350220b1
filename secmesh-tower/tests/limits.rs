//! The policy's declared limits in the server stack, without a server (`ServiceExt::oneshot`):
//! 429 with `Retry-After` and the RateLimit headers, gRPC RESOURCE_EXHAUSTED, the audit event
//! of the refusal, counters per subject / per caller / per route, shadow limits, a limit
//! added by a policy reload, and where the stage sits (after authentication, before the
//! policy).
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use secmesh_audit::Auditor;
use secmesh_audit::event::{AuditEvent, Decision};
use secmesh_audit::sink::Sink;
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::deny::DenyReason;
use secmesh_tower::limit::LocalLimiter;
use secmesh_tower::stack::SecureBody;
use secmesh_tower::{Outcome, SecureLayer};
use tower::{Layer, ServiceExt, service_fn};

const POLICY: &str = r#"
[[rule]]
id = "users-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read", "create"]
objects = ["orders/**"]

[[rule]]
id = "no-admin"
effect = "deny"
subjects = ["*"]
verbs = ["*"]
objects = ["admin/**"]

[[limit]]
id = "creates-per-user"
rate = "2/min"
verbs = ["create"]
objects = ["orders/**"]

[[limit]]
id = "admin-route"
rate = "3/min"
per = []
objects = ["admin/**"]

[[limit]]
id = "try-reads"
rate = "1/min"
verbs = ["read"]
mode = "shadow"
"#;

/// A sink that keeps events in memory.
#[derive(Clone, Default)]
struct Memory(Arc<Mutex<Vec<AuditEvent>>>);

impl Sink for Memory {
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> std::io::Result<()> {
        self.0.lock().unwrap().extend(events.iter().cloned());
        Ok(())
    }
}

type Svc = tower::util::BoxCloneService<Request<String>, Response<SecureBody<String>>, Infallible>;

struct Fixture {
    issuer: Issuer,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[9; 32]).unwrap();
    let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))));
    Fixture {
        issuer: Issuer::new(key, "k", "gw").audience("orders"),
        verifier,
    }
}

fn stack(layer: SecureLayer) -> Svc {
    tower::util::BoxCloneService::new(layer.layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    })))
}

fn request(method: &str, path: &str, token: Option<&str>, grpc: bool) -> Request<String> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("txn-token", t);
    }
    if grpc {
        b = b.header("content-type", "application/grpc");
    }
    b.body(String::new()).unwrap()
}

fn reason(res: &Response<SecureBody<String>>) -> Option<&DenyReason> {
    res.extensions()
        .get::<Outcome>()
        .and_then(Outcome::deny_reason)
}

async fn call(
    svc: &Svc,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Response<SecureBody<String>> {
    svc.clone()
        .oneshot(request(method, path, token, false))
        .await
        .unwrap()
}

#[tokio::test]
async fn over_the_limit_is_429_with_the_ratelimit_headers_and_audited() {
    let f = fixture();
    let memory = Memory::default();
    let auditor = Auditor::builder(memory.clone()).spawn();
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
    let svc = stack(
        SecureLayer::builder(f.verifier.clone(), policy)
            .audit(auditor.clone(), "orders")
            .build()
            .unwrap(),
    );
    let mint = |sub: &str| {
        f.issuer
            .mint(&MintRequest::new(sub, ExpiryClass::Fast))
            .unwrap()
    };
    let (alice, bob) = (mint("user:alice"), mint("user:bob"));
    for _ in 0..2 {
        assert_eq!(
            call(&svc, "POST", "/orders", Some(&alice)).await.status(),
            StatusCode::OK
        );
    }
    let res = call(&svc, "POST", "/orders", Some(&alice)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&res).map(DenyReason::kind), Some("rate_limited"));
    assert_eq!(
        reason(&res).and_then(DenyReason::rule),
        Some("creates-per-user")
    );
    // 2/min: one request every 30 s; the next is due within 30 s.
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(
        res.headers()["ratelimit-policy"],
        r#""creates-per-user";q=2;w=60"#
    );
    let state = res.headers()["ratelimit"].to_str().unwrap();
    assert!(state.starts_with(r#""creates-per-user";r=0;t="#), "{state}");
    assert_eq!(res.headers()["content-type"], "application/problem+json");

    // Other subjects have their own counter; reads are not limited (the shadow limit only
    // reports).
    assert_eq!(
        call(&svc, "POST", "/orders", Some(&bob)).await.status(),
        StatusCode::OK
    );
    for _ in 0..5 {
        assert_eq!(
            call(&svc, "GET", "/orders/1", Some(&alice)).await.status(),
            StatusCode::OK
        );
    }
    // gRPC callers get RESOURCE_EXHAUSTED.
    let res = svc
        .clone()
        .oneshot(request("POST", "/orders", Some(&alice), true))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "8");

    auditor.flush().unwrap();
    let events = memory.0.lock().unwrap().clone();
    let limited: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.reason_kind.as_deref() == Some("rate_limited"))
        .collect();
    assert_eq!(limited.len(), 2, "{events:#?}");
    // The HTTP refusal (429) and the gRPC one (HTTP 200, grpc-status 8).
    let statuses: Vec<Option<u16>> = limited.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Some(429), Some(200)]);
    for e in limited {
        assert_eq!(e.decision, Decision::Deny);
        assert_eq!(e.rule.as_deref(), Some("creates-per-user"));
        assert_eq!(e.sub.as_deref(), Some("user:alice"));
        assert_eq!(e.verb.as_deref(), Some("create"));
        assert_eq!(e.object.as_deref(), Some("orders"));
    }
    auditor.shutdown();
}

#[tokio::test]
async fn a_route_limit_counts_every_subject_and_runs_before_the_policy() {
    let f = fixture();
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
    let svc = stack(
        SecureLayer::builder(f.verifier.clone(), policy)
            .build()
            .unwrap(),
    );
    let mint = |sub: &str| {
        f.issuer
            .mint(&MintRequest::new(sub, ExpiryClass::Fast))
            .unwrap()
    };
    // `admin/**` is denied by the policy, and limited to 3/min for everyone together: the
    // limit is counted before the policy's work, so the 4th request of anyone is 429.
    let mut statuses = Vec::new();
    for sub in ["user:a", "user:b", "svc:c", "user:d", "user:e"] {
        statuses.push(
            call(&svc, "GET", "/admin/x", Some(&mint(sub)))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [403, 403, 403, 429, 429]);
    // No token, a bad token: refused before the limit (nothing to count it by), and they do
    // not use up anyone's quota.
    for _ in 0..10 {
        assert_eq!(
            call(&svc, "POST", "/orders", None).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&svc, "POST", "/orders", Some("a.b.c")).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let carol = mint("user:carol");
    assert_eq!(
        call(&svc, "POST", "/orders", Some(&carol)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn counters_per_caller_and_per_subject_and_caller() {
    let f = fixture();
    let policy = SharedPolicy::new(
        Policy::parse(
            r#"
[[rule]]
id = "all"
effect = "allow"
subjects = ["*"]
verbs = ["*"]
objects = ["**"]

[[limit]]
id = "per-caller"
rate = "2/h"
per = ["caller"]
objects = ["a/**"]

[[limit]]
id = "per-pair"
rate = "1/h"
per = ["subject", "caller"]
objects = ["b/**"]
"#,
            Format::Toml,
        )
        .unwrap(),
    );
    let svc = stack(
        SecureLayer::builder(f.verifier.clone(), policy)
            .build()
            .unwrap(),
    );
    // The caller is the token's current actor here (no mTLS peer).
    let mint = |sub: &str, actor: &str| {
        f.issuer
            .mint(&MintRequest::new(sub, ExpiryClass::Fast).actor(actor))
            .unwrap()
    };
    let (x1, x2, y1) = (
        mint("user:1", "spiffe://m/x"),
        mint("user:2", "spiffe://m/x"),
        mint("user:1", "spiffe://m/y"),
    );
    let s = |r: Response<SecureBody<String>>| r.status().as_u16();
    // per caller: x's two subjects share x's counter; y has its own.
    assert_eq!(s(call(&svc, "GET", "/a/1", Some(&x1)).await), 200);
    assert_eq!(s(call(&svc, "GET", "/a/1", Some(&x2)).await), 200);
    assert_eq!(s(call(&svc, "GET", "/a/1", Some(&x1)).await), 429);
    assert_eq!(s(call(&svc, "GET", "/a/1", Some(&y1)).await), 200);
    // per (subject, caller): each pair once.
    assert_eq!(s(call(&svc, "GET", "/b/1", Some(&x1)).await), 200);
    assert_eq!(s(call(&svc, "GET", "/b/1", Some(&x2)).await), 200);
    assert_eq!(s(call(&svc, "GET", "/b/1", Some(&y1)).await), 200);
    assert_eq!(s(call(&svc, "GET", "/b/1", Some(&x1)).await), 429);
}

#[tokio::test]
async fn a_limit_added_by_a_reload_applies_at_once() {
    let f = fixture();
    let policy = SharedPolicy::new(
        Policy::parse(
            "[[rule]]\nid = \"all\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"*\"]\nobjects = [\"**\"]\n",
            Format::Toml,
        )
        .unwrap(),
    );
    let svc = stack(
        SecureLayer::builder(f.verifier.clone(), policy.clone())
            .limit_store(LocalLimiter::for_limits())
            .build()
            .unwrap(),
    );
    let t = f
        .issuer
        .mint(&MintRequest::new("user:z", ExpiryClass::Fast))
        .unwrap();
    for _ in 0..20 {
        assert_eq!(
            call(&svc, "GET", "/x", Some(&t)).await.status(),
            StatusCode::OK
        );
    }
    policy
        .reload_from_str(
            "[[rule]]\nid = \"all\"\neffect = \"allow\"\nsubjects = [\"*\"]\nverbs = [\"*\"]\nobjects = [\"**\"]\n[[limit]]\nid = \"now\"\nrate = \"5/h\"\n",
            Format::Toml,
        )
        .unwrap();
    let ok = {
        let mut n = 0;
        for _ in 0..20 {
            if call(&svc, "GET", "/x", Some(&t)).await.status() == StatusCode::OK {
                n += 1;
            }
        }
        n
    };
    assert_eq!(ok, 5);
}
