//! The object the policy decides on is the object the handler acts on (issue 11 §1).
//!
//! An axum router behind the authenticate and authorize layers, with an allow-everything
//! policy: for any path, either secmesh refuses the request (400), or axum does not route it
//! (404), or the handler runs, and then the segments axum's `Path` extractor yields, joined by
//! `/`, are exactly the segments of the object the policy decided on (the `Permitted` proof).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::routing::any;
use http::{Request, StatusCode};
use proptest::prelude::*;
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::{AuthenticateLayer, AuthorizeLayer, Outcome};
use tower::ServiceExt;

const ALLOW_ALL: &str = r#"
[[rule]]
id = "all"
effect = "allow"
subjects = ["*"]
verbs = ["*"]
objects = ["**"]
"#;

async fn handler(
    Path(segments): Path<Vec<String>>,
    req: Request<axum::body::Body>,
) -> (StatusCode, String) {
    // Segment by segment: joining would hide a decoded `/` inside one segment.
    let decided: Option<Vec<String>> = req
        .extensions()
        .get::<Outcome>()
        .and_then(Outcome::permitted)
        .map(|p| p.object().segments().map(str::to_owned).collect());
    let acted_on = segments;
    if decided.as_ref() == Some(&acted_on) {
        (StatusCode::OK, acted_on.join("/"))
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("decided {decided:?}, acted on {acted_on:?}"),
        )
    }
}

fn app() -> (Router, String) {
    let key = SigningKey::from_hmac_secret(Algorithm::Hs256, &[7; 32]).unwrap();
    let verifier = Verifier::new(Arc::new(KeySet::single(
        key.verifying_key(Some("k".into())),
    )));
    let token = Issuer::new(key, "k", "gw")
        .audience("a")
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let policy = SharedPolicy::new(Policy::parse(ALLOW_ALL, Format::Toml).unwrap());
    let router = Router::new()
        .route("/{a}", any(handler))
        .route("/{a}/{b}", any(handler))
        .route("/{a}/{b}/{c}", any(handler))
        .route("/{a}/{b}/{c}/{d}", any(handler))
        .layer(AuthorizeLayer::new(policy))
        .layer(AuthenticateLayer::from_verifier(verifier, 1000));
    (router, token)
}

async fn check(router: &Router, token: &str, method: &str, path: &str) -> Result<(), String> {
    let Ok(req) = Request::builder()
        .method(method)
        .uri(path)
        .header("txn-token", token)
        .body(axum::body::Body::empty())
    else {
        return Ok(()); // not a valid request target: no server would get this far
    };
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    match status {
        StatusCode::OK | StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => Ok(()),
        StatusCode::METHOD_NOT_ALLOWED if !["GET", "POST"].contains(&method) => Ok(()),
        other => Err(format!(
            "{method} {path}: {other} {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

/// Path pieces an attacker combines: encoded separators and dots in every case, double
/// encodings, backslashes, parameters, controls, bidi, invalid escapes and ordinary text.
const PIECES: &[&str] = &[
    "a",
    "orders",
    "user:bob",
    "7",
    ".",
    "..",
    "%2F",
    "%2f",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2E",
    "%252F",
    "%252e",
    "%25",
    "%",
    "%2",
    "%zz",
    "%5C",
    "%5c",
    ";",
    ";x=1",
    "%3B",
    "%00",
    "%0A",
    "%C3%A9",
    "%C3",
    "%ff",
    "%E2%80%AE",
    "%C2%9B",
    "%20",
    "+",
    "~",
    "%7E",
    "*",
    "%2A",
    "@",
    "!",
    "$",
    "'",
    "(",
    ")",
    ",",
    "=",
    "%3F",
    "%23",
    "-",
    "_",
];

fn segment() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..4).prop_map(|v| v.concat())
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(segment(), 1..5),
        proptest::arbitrary::any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut p = format!("/{}", segs.join("/"));
            if slash {
                p.push('/');
            }
            p
        })
}

#[test]
fn the_decided_object_is_what_the_handler_gets_or_the_request_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (router, token) = app();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 3000,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(
                path(),
                prop::sample::select(&["GET", "POST", "HEAD", "DELETE"][..]),
            ),
            |(p, m)| {
                rt.block_on(check(&router, &token, m, &p))
                    .map_err(TestCaseError::fail)
            },
        )
        .unwrap();
}

#[tokio::test]
async fn the_reported_attacks_are_refused_with_400() {
    let (router, token) = app();
    for path in [
        "/orders/x%2F..%2F..%2Fuser:bob/7",
        "/orders/x%2f..%2f..%2fuser:bob/7",
        "/orders/%2e%2e/%2E%2E/user:bob/7",
        "/orders/x%252F..%252F..%252Fuser:bob/7",
        "/orders/%252e%252e/user:bob",
        "/orders/x%5C..%5Cuser:bob",
        "/orders/x;/../user:bob",
        "/orders/x%00/7",
        "/orders/%E2%80%AEbob/7",
    ] {
        let req = Request::get(path)
            .header("txn-token", &token)
            .body(axum::body::Body::empty())
            .unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
    }
}
