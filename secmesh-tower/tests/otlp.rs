//! OpenTelemetry over OTLP: three real axum servers (orders -> payments -> inventory) with the
//! `tracing-opentelemetry` bridge, the OTLP exporter over gRPC and [`SecmeshIds`] in front of
//! it, exporting to a collector on 127.0.0.1 (a tonic `TraceService` that keeps what it
//! decodes). One request is one trace in the collector, under the trace id secmesh propagated;
//! each service's `secmesh.inbound` span is the child of its caller's `secmesh.outbound`
//! span, each outbound span the child of its service's inbound span (spans exported with the
//! ids secmesh put on the wire); a span of the handler's own sits inside its service's
//! inbound span in the same trace.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use secmesh_core::ExpiryClass;
use secmesh_tokens::MintRequest;
use secmesh_tower::otel::SecmeshIds;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::Registry;

/// A span as the collector received it (ids in hex).
#[derive(Clone, Debug)]
struct Received {
    name: String,
    trace: String,
    span: String,
    parent: String,
    service: Option<String>,
}

/// An OTLP trace collector that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut kept = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let service = s.attributes.iter().find_map(|kv| {
                        use opentelemetry_proto::tonic::common::v1::any_value::Value;
                        match kv.value.as_ref()?.value.as_ref()? {
                            Value::StringValue(v) if kv.key == "service" => Some(v.clone()),
                            _ => None,
                        }
                    });
                    kept.push(Received {
                        name: s.name,
                        trace: hex(&s.trace_id),
                        span: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        service,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test]
async fn one_request_through_three_services_is_one_otlp_trace() {
    // The collector.
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    let server = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });

    // The pipeline: tracing -> tracing-opentelemetry -> SecmeshIds -> batch -> OTLP/gRPC.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{collector_addr}"))
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(SecmeshIds::new(
            BatchSpanProcessor::builder(exporter).build(),
        ))
        .build();
    let tracer = provider.tracer("secmesh-otlp-test");
    // secmesh's spans and this test's (not the exporter's own: h2, tonic).
    let only = Targets::new()
        .with_target("secmesh", tracing::Level::TRACE)
        .with_target(support::HANDLER_TARGET, tracing::Level::TRACE);
    let _guard = tracing::subscriber::set_default(
        Registry::default().with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(only),
        ),
    );

    let (orders, issuer) = support::orders_payments_inventory().await;

    let token = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let edge_span = "00f067aa0ba902b7";
    let res = Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .request(
            Request::get(format!("http://{orders}/orders/pay"))
                .header("txn-token", &token)
                .header("traceparent", format!("00-{trace_id}-{edge_span}-01"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"200 OK 200 OK in stock");

    // Export everything (the batch processor's thread needs this runtime for tonic: flush
    // from a blocking thread while this one keeps driving it).
    tokio::task::spawn_blocking(move || provider.shutdown().unwrap())
        .await
        .unwrap();
    let spans = collector.0.lock().unwrap().clone();
    let named = |name: &str| -> Vec<Received> {
        spans.iter().filter(|s| s.name == name).cloned().collect()
    };
    let inbound: HashMap<String, Received> = named("secmesh.inbound")
        .into_iter()
        .map(|s| (s.service.clone().unwrap(), s))
        .collect();
    let outbound = named("secmesh.outbound");
    let handlers = named("handler.forward");
    assert_eq!(inbound.len(), 3, "{spans:#?}");
    assert_eq!(outbound.len(), 2, "{spans:#?}");
    assert_eq!(handlers.len(), 2, "{spans:#?}");
    // One trace: the one the edge started; no span of the request left outside it.
    for s in &spans {
        assert_eq!(s.trace, trace_id, "{s:?}");
    }
    let by_id: HashMap<&str, &Received> = spans.iter().map(|s| (s.span.as_str(), s)).collect();
    assert_eq!(by_id.len(), spans.len(), "span ids are unique: {spans:#?}");
    // orders' parent is the edge; each callee's parent is an outbound span of its caller.
    assert_eq!(inbound["orders"].parent, edge_span);
    for (caller, callee) in [("orders", "payments"), ("payments", "inventory")] {
        let out = by_id[inbound[callee].parent.as_str()];
        assert_eq!(out.name, "secmesh.outbound", "{callee}: {out:?}");
        // The outbound span sits in the caller's handler span, inside the caller's inbound.
        let handler = by_id[out.parent.as_str()];
        assert_eq!(handler.name, "handler.forward");
        assert_eq!(handler.parent, inbound[caller].span, "{caller}");
    }
    // Every parent named is a span the collector has, but the edge's.
    for s in &spans {
        assert!(
            s.parent == edge_span || by_id.contains_key(s.parent.as_str()),
            "dangling parent: {s:?}"
        );
    }
}
