//! Tracing spans across three real axum servers on 127.0.0.1 (orders -> payments ->
//! inventory, one tokio thread so that one in-process subscriber sees them all): one request
//! yields one trace: every `secmesh.inbound` / `secmesh.outbound` span carries the trace id
//! secmesh propagates, each callee's inbound span has the caller's outbound span as its
//! parent, each outbound span the calling service's inbound span; the decision and rule are
//! span fields, and a refusal's span says why.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secmesh_core::ExpiryClass;
use secmesh_tokens::MintRequest;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::Registry;

/// Every secmesh span: its name and fields.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<HashMap<u64, Span>>>);

/// A span's name and fields.
type Span = (String, HashMap<String, String>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if !attrs.metadata().name().starts_with("secmesh.") {
            return;
        }
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0
            .lock()
            .unwrap()
            .insert(id.into_u64(), (attrs.metadata().name().to_owned(), fields));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some((_, fields)) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

#[tokio::test]
async fn one_request_through_three_services_is_one_trace() {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(spans.clone()));

    let (orders, issuer) = support::orders_payments_inventory().await;

    let token = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = http
        .request(
            Request::get(format!("http://{orders}/orders/pay"))
                .header("txn-token", &token)
                .header("traceparent", traceparent)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"200 OK 200 OK in stock");

    let all: Vec<Span> = spans.0.lock().unwrap().values().cloned().collect();
    let find = |name: &str, service: Option<&str>| -> Vec<HashMap<String, String>> {
        all.iter()
            .filter(|(n, f)| {
                n == name && service.is_none_or(|s| f.get("service").map(String::as_str) == Some(s))
            })
            .map(|(_, f)| f.clone())
            .collect()
    };
    let inbound = |s: &str| {
        let v = find("secmesh.inbound", Some(s));
        assert_eq!(v.len(), 1, "{s}: {all:?}");
        v[0].clone()
    };
    let (o, p, i) = (inbound("orders"), inbound("payments"), inbound("inventory"));
    let outbound = find("secmesh.outbound", None);
    assert_eq!(outbound.len(), 2, "{all:?}");
    // One trace: the caller's.
    for f in [&o, &p, &i].into_iter().chain(outbound.iter()) {
        assert_eq!(f["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{f:?}");
    }
    // orders' parent is the edge's span; each hop's parent is the caller's outbound span,
    // whose parent is the caller's inbound span.
    assert_eq!(o["parent_span_id"], "00f067aa0ba902b7");
    for (caller, callee) in [(&o, &p), (&p, &i)] {
        let out = outbound
            .iter()
            .find(|f| f["parent_span_id"] == caller["span_id"])
            .expect("the caller's outbound span");
        assert_eq!(callee["parent_span_id"], out["span_id"]);
    }
    for f in [&o, &p, &i] {
        assert_eq!(f["decision"], "allow");
        assert_eq!(f["rule"], "users");
        assert_eq!(f["otel.kind"], "server");
    }

    // A refusal's span says why.
    spans.0.lock().unwrap().clear();
    let svc = issuer
        .mint(&MintRequest::new("svc:batch", ExpiryClass::Fast))
        .unwrap();
    let res = http
        .request(
            Request::get(format!("http://{orders}/orders/pay"))
                .header("txn-token", &svc)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let denied = spans
        .0
        .lock()
        .unwrap()
        .values()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0].1["decision"], "deny");
    assert_eq!(denied[0].1["reason"], "no_rule");
}
