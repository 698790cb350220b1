//! The server stack without a server (`ServiceExt::oneshot`): every deny reason over HTTP and
//! gRPC, the audit event it leaves, the expiry class in its three places, policy attributes,
//! and the configurations the builder refuses.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use secmesh_audit::event::{AuditEvent, Decision};
use secmesh_audit::sink::Sink;
use secmesh_audit::{Auditor, FullPolicy};
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::authorize::{Attributes, GrpcClassifier};
use secmesh_tower::deny::{DenyReason, Responder};
use secmesh_tower::stack::SecureBody;
use secmesh_tower::{ConfigError, Outcome, SecureLayer};
use tower::{Layer, ServiceExt, service_fn};

const POLICY: &str = r#"
[[rule]]
id = "deny-admin"
effect = "deny"
subjects = ["*"]
verbs = ["*"]
objects = ["admin/**"]

[[rule]]
id = "users-read-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read", "create"]
objects = ["orders/**", "admin/**"]

[[rule]]
id = "fast-only-reports"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["reports/**"]
max_class = "fast"

[[rule]]
id = "users-reserve"
effect = "allow"
subjects = ["user:*"]
verbs = ["call"]
objects = ["inventory.v1.Inventory/Reserve"]
"#;

const TIERED: &str = r#"
[[rule]]
id = "gold-reads-vault"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["vault/**"]
attributes = { tier = ["gold"] }
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

struct Fixture {
    issuer: Issuer,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[7; 32]).unwrap();
    let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k".into()))));
    Fixture {
        issuer: Issuer::new(key, "k", "gw").audience("orders"),
        verifier,
    }
}

fn policy(text: &str) -> SharedPolicy {
    SharedPolicy::new(Policy::parse(text, Format::Toml).unwrap())
}

/// (method, path, token, HTTP status, gRPC status, reason kind, rule)
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    u16,
    &'a str,
    &'a str,
    Option<&'a str>,
);

type Svc = tower::util::BoxCloneService<Request<String>, Response<SecureBody<String>>, Infallible>;

fn ok_service() -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send {
    service_fn(|req: Request<String>| async move {
        let outcome = req.extensions().get::<Outcome>().unwrap();
        let p = outcome
            .permitted()
            .expect("the inner service runs only when permitted");
        Ok::<_, Infallible>(Response::new(format!("{} {}", p.verb(), p.object())))
    })
}

fn stack(layer: SecureLayer) -> Svc {
    tower::util::BoxCloneService::new(layer.layer(ok_service()))
}

async fn body(res: Response<SecureBody<String>>) -> String {
    let bytes: Bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
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

fn reason(res: &Response<SecureBody<String>>) -> Option<&'static str> {
    res.extensions()
        .get::<Outcome>()
        .and_then(Outcome::deny_reason)
        .map(DenyReason::kind)
}

#[tokio::test]
async fn every_deny_reason_over_http_and_grpc() {
    let f = fixture();
    let memory = Memory::default();
    let auditor = Auditor::builder(memory.clone()).spawn();
    let svc = stack(
        SecureLayer::builder(f.verifier.clone(), policy(POLICY))
            .audit(auditor.clone(), "orders")
            .max_class(ExpiryClass::Medium)
            .cache_capacity(100)
            .build()
            .unwrap(),
    );
    let alice = f
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let medium = f
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Medium))
        .unwrap();
    let slow = f
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Slow))
        .unwrap();
    let narrow = f
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast).grant("read", "orders/2"))
        .unwrap();
    let bob = f
        .issuer
        .mint(&MintRequest::new("svc:batch", ExpiryClass::Fast))
        .unwrap();

    let cases: Vec<Case> = vec![
        ("GET", "/orders/1", None, 401, "16", "missing_token", None),
        (
            "GET",
            "/orders/1",
            Some("x.y.z"),
            401,
            "16",
            "invalid_token",
            None,
        ),
        (
            "GET",
            "/admin/x",
            Some(&alice),
            403,
            "7",
            "policy_deny",
            Some("deny-admin"),
        ),
        ("GET", "/orders/1", Some(&bob), 403, "7", "no_rule", None),
        (
            "GET",
            "/orders/1",
            Some(&slow),
            403,
            "7",
            "class_not_allowed",
            None,
        ),
        (
            "GET",
            "/reports/1",
            Some(&medium),
            403,
            "7",
            "no_rule",
            None,
        ),
        (
            "GET",
            "/orders/1",
            Some(&narrow),
            403,
            "7",
            "missing_grant",
            // The allow rule that matched, whose grant the token lacks.
            Some("users-read-orders"),
        ),
        (
            "GET",
            "/orders/%2e%2e/admin",
            Some(&alice),
            400,
            "3",
            "bad_request",
            None,
        ),
        (
            "TRACE",
            "/orders/1",
            Some(&alice),
            405,
            "12",
            "method_not_allowed",
            None,
        ),
    ];
    for (method, path, token, status, grpc, kind, _) in &cases {
        let res = svc
            .clone()
            .oneshot(request(method, path, *token, false))
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), *status, "{method} {path}");
        assert_eq!(reason(&res), Some(*kind), "{method} {path}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert_eq!(
            res.headers().contains_key("www-authenticate"),
            *status == 401 || *kind == "missing_grant"
        );
        let text = body(res).await;
        let problem: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["status"], *status);
        assert!(!text.contains("deny-admin") && !text.contains("alice"));

        let res = svc
            .clone()
            .oneshot(request(method, path, *token, true))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "gRPC {method} {path}");
        assert_eq!(res.headers()["grpc-status"], *grpc, "gRPC {method} {path}");
        assert_eq!(reason(&res), Some(*kind));
        assert!(body(res).await.is_empty());
    }
    // The allowed request reaches the handler with the outcome.
    let res = svc
        .clone()
        .oneshot(request("GET", "/orders/7", Some(&alice), false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.extensions()
            .get::<Outcome>()
            .unwrap()
            .permitted()
            .is_some()
    );
    assert_eq!(body(res).await, "read orders/7");
    drop(svc);
    auditor.shutdown();

    // The audit events: one per request, built from the outcome alone.
    let events = memory.0.lock().unwrap().clone();
    let denials: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.decision == Decision::Deny)
        .collect();
    // Two unauthenticated refusals from the same (unknown) source in one window are counted,
    // not written one by one.
    assert!(denials.len() >= 2 * cases.len() - 4, "{}", denials.len());
    for (method, path, _, status, _, kind, rule) in &cases[2..] {
        let ev = denials
            .iter()
            .find(|e| {
                e.path.as_deref() == Some(*path)
                    && e.method.as_deref() == Some(*method)
                    && e.reason_kind.as_deref() == Some(*kind)
            })
            .unwrap_or_else(|| panic!("no event for {method} {path}"));
        assert_eq!(ev.status, Some(*status));
        assert_eq!(ev.reason_kind.as_deref(), Some(*kind));
        assert_eq!(ev.rule.as_deref(), *rule, "{path}");
        assert_eq!(ev.service, "orders");
        if *status == 403 && *kind != "class_not_allowed" {
            // Policy vocabulary, apart from HTTP's.
            assert_eq!(ev.verb.as_deref(), Some("read"));
            assert_eq!(ev.object.as_deref(), Some(&path[1..]));
            assert!(ev.sub.is_some());
        }
    }
    let allowed = events
        .iter()
        .find(|e| e.decision == Decision::Allow)
        .unwrap();
    assert_eq!(allowed.rule.as_deref(), Some("users-read-orders"));
    assert_eq!(
        (allowed.verb.as_deref(), allowed.object.as_deref()),
        (Some("read"), Some("orders/7"))
    );
    assert_eq!(
        (allowed.method.as_deref(), allowed.path.as_deref()),
        (Some("GET"), Some("/orders/7"))
    );
    assert_eq!(allowed.sub.as_deref(), Some("user:alice"));
    assert!(allowed.token_sha256.is_some() && allowed.txn.is_some());
}

#[tokio::test]
async fn grpc_classifier_and_not_grpc() {
    let f = fixture();
    let layer = SecureLayer::builder(f.verifier.clone(), policy(POLICY))
        .classifier(GrpcClassifier)
        .build()
        .unwrap();
    let svc = layer.layer(ok_service());
    let alice = f
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let call = |path: &str, grpc: bool| request("POST", path, Some(&alice), grpc);
    let res = svc
        .clone()
        .oneshot(call("/inventory.v1.Inventory/Reserve", true))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("grpc-status").is_none());
    let res = svc
        .clone()
        .oneshot(call("/inventory.v1.Inventory/Cancel", true))
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "7");
    // Plain HTTP to the gRPC service: 415, answered in HTTP.
    let res = svc
        .oneshot(call("/inventory.v1.Inventory/Reserve", false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(reason(&res), Some("not_grpc"));
}

#[tokio::test]
async fn audit_unavailable_is_503_or_grpc_unavailable() {
    // A sink that never finishes its first write, a queue of one, fail-closed.
    #[derive(Clone)]
    struct Stuck(Arc<Mutex<std::sync::mpsc::Receiver<()>>>);
    impl Sink for Stuck {
        fn write_batch(&mut self, _: &mut [AuditEvent]) -> std::io::Result<()> {
            let _ = self.0.lock().unwrap().recv();
            Ok(())
        }
    }
    let (gate, rx) = std::sync::mpsc::channel();
    let auditor = Auditor::builder(Stuck(Arc::new(Mutex::new(rx))))
        .capacity(1)
        .batch_size(1)
        .full_policy(FullPolicy::FailClosed)
        .spawn();
    let f = fixture();
    let svc = stack(
        SecureLayer::builder(f.verifier.clone(), policy(POLICY))
            .audit(auditor.clone(), "orders")
            .build()
            .unwrap(),
    );
    let alice = f
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let mut seen = (false, false);
    for i in 0..20 {
        let grpc = i % 2 == 1;
        let res = svc
            .clone()
            .oneshot(request("GET", "/orders/1", Some(&alice), grpc))
            .await
            .unwrap();
        if reason(&res) == Some("audit_unavailable") {
            if grpc {
                assert_eq!(res.headers()["grpc-status"], "14");
                seen.1 = true;
            } else {
                assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
                seen.0 = true;
            }
        }
    }
    assert_eq!(seen, (true, true));
    drop(gate);
    auditor.shutdown();
}

#[tokio::test]
async fn the_class_in_its_three_places() {
    let f = fixture();
    let svc = stack(
        SecureLayer::builder(f.verifier.clone(), policy(POLICY))
            .max_class(ExpiryClass::Medium)
            .build()
            .unwrap(),
    );
    let get = |token: &str, path: &str| request("GET", path, Some(token), false);
    // 1. The verifier: the lifetime bound of the class the token claims (401).
    let mut claims = f
        .issuer
        .claims_for(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    claims.exp = claims.iat + 3600;
    let overlong = f.issuer.sign_claims(&claims).unwrap();
    let res = svc
        .clone()
        .oneshot(get(&overlong, "/orders/1"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let outcome = res.extensions().get::<Outcome>().unwrap();
    assert_eq!(
        outcome
            .deny_reason()
            .unwrap()
            .token_error()
            .unwrap()
            .kind()
            .as_str(),
        "lifetime_exceeds_class"
    );
    // 2. The stack: the route's slowest class (403 class_not_allowed).
    let slow = f
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Slow))
        .unwrap();
    let res = svc.clone().oneshot(get(&slow, "/orders/1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(matches!(
        res.extensions().get::<Outcome>().unwrap().deny_reason(),
        Some(DenyReason::ClassNotAllowed {
            class: ExpiryClass::Slow,
            max: ExpiryClass::Medium
        })
    ));
    // 3. A rule's max_class: a condition of that rule (a medium token matches no rule).
    let medium = f
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Medium))
        .unwrap();
    let fast = f
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let res = svc
        .clone()
        .oneshot(get(&medium, "/reports/1"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(reason(&res), Some("no_rule"));
    let res = svc.clone().oneshot(get(&fast, "/reports/1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc.oneshot(get(&medium, "/orders/1")).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "medium is accepted on a medium route"
    );
}

#[tokio::test]
async fn attributes_from_tctx_or_a_source() {
    let f = fixture();
    let mint = |tier: Option<&str>| {
        let mut m = MintRequest::new("user:alice", ExpiryClass::Fast);
        if let Some(t) = tier {
            m = m.tctx(
                serde_json::json!({ "tier": t })
                    .as_object()
                    .cloned()
                    .unwrap(),
            );
        }
        f.issuer.mint(&m).unwrap()
    };
    let get = |token: &str| request("GET", "/vault/1", Some(token), false);
    let svc = stack(
        SecureLayer::builder(f.verifier.clone(), policy(TIERED))
            .build()
            .unwrap(),
    );
    let res = svc.clone().oneshot(get(&mint(Some("gold")))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc.clone().oneshot(get(&mint(Some("tin")))).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = svc.oneshot(get(&mint(None))).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // A source of the user's: the tier from a header a trusted proxy sets.
    let from_header =
        |_: &secmesh_core::Claims, req: &http::request::Parts, out: &mut Attributes| {
            if let Some(t) = req.headers.get("x-tier").and_then(|v| v.to_str().ok()) {
                out.push("tier", t);
            }
        };
    let svc = stack(
        SecureLayer::builder(f.verifier.clone(), policy(TIERED))
            .attributes(from_header)
            .build()
            .unwrap(),
    );
    let mut req = get(&mint(Some("tin")));
    req.headers_mut().insert("x-tier", "gold".parse().unwrap());
    assert_eq!(
        svc.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );
    let res = svc.oneshot(get(&mint(Some("gold")))).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "the source replaces tctx"
    );
}

#[tokio::test]
async fn configurations_that_cannot_work_are_refused() {
    let f = fixture();
    let err = SecureLayer::builder(f.verifier.clone(), policy(TIERED))
        .no_attributes()
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::AttributesWithoutSource { rule } if rule == "gold-reads-vault"),
        "{err}"
    );
    let err = SecureLayer::builder(f.verifier.clone(), policy(POLICY))
        .cache_capacity(0)
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::ZeroCacheCapacity));
    let auditor = Auditor::builder(Memory::default()).spawn();
    let err = SecureLayer::builder(f.verifier.clone(), policy(POLICY))
        .audit(auditor.clone(), "")
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::EmptyServiceName));
    auditor.shutdown();

    // Loaded without attribute rules, then reloaded with one: refused, not silently unmatched.
    let shared = policy(POLICY);
    let svc = stack(
        SecureLayer::builder(f.verifier.clone(), shared.clone())
            .no_attributes()
            .build()
            .unwrap(),
    );
    let alice = f
        .issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let get = || request("GET", "/orders/1", Some(&alice), false);
    assert_eq!(
        svc.clone().oneshot(get()).await.unwrap().status(),
        StatusCode::OK
    );
    shared.reload_from_str(TIERED, Format::Toml).unwrap();
    let res = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reason(&res), Some("policy_needs_attributes"));
    shared.reload_from_str(POLICY, Format::Toml).unwrap();
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_responder_of_ones_own() {
    #[derive(Clone)]
    struct Teapot;
    impl Responder for Teapot {
        fn respond(&self, _: &http::HeaderMap, reason: &DenyReason) -> Response<Bytes> {
            let mut res = Response::new(Bytes::from(reason.kind()));
            *res.status_mut() = StatusCode::IM_A_TEAPOT;
            res
        }
    }
    let f = fixture();
    let svc = SecureLayer::builder(f.verifier.clone(), policy(POLICY))
        .responder(Teapot)
        .build()
        .unwrap()
        .layer(ok_service());
    let res = svc
        .oneshot(request("GET", "/orders/1", None, false))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(reason(&res), Some("missing_token"));
    assert_eq!(body(res).await, "missing_token");
}
