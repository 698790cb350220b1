//! secmesh's spans to an OpenTelemetry collector over OTLP (gRPC).
//!
//! Two services on 127.0.0.1 (orders calls payments), each behind a `SecureLayer`; one request
//! with a minted token. Every span goes through `tracing-opentelemetry`, then
//! `secmesh_tower::otel::SecmeshIds` (spans exported under the ids secmesh propagates, so the
//! two services' spans are one trace), then the OTLP exporter.
//!
//! ```sh
//! # a collector listening on 127.0.0.1:4317 (Jaeger, the OpenTelemetry Collector, ...), then:
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 cargo run --example otlp
//! ```
//! Without a collector the spans are dropped after the exporter's timeout; the example still
//! runs and prints the trace id to look for.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use secmesh_core::ExpiryClass;
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::SecureLayer;
use secmesh_tower::otel::SecmeshIds;
use secmesh_tower::propagate::{Propagate, PropagateLayer};
use tower::{Layer, ServiceExt};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const POLICY: &str = r#"
[[rule]]
id = "users-pay"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["**"]
"#;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
struct Next {
    client: Propagate<Client<HttpConnector, Full<Bytes>>>,
    url: String,
}

/// orders' handler: calls payments (the token and the trace context go along).
async fn pay(State(n): State<Next>) -> String {
    let req = Request::get(&n.url).body(Full::new(Bytes::new()));
    match req {
        Ok(req) => match n.client.oneshot(req).await {
            Ok(res) => format!("payments answered {}", res.status()),
            Err(e) => format!("payments unreachable: {e}"),
        },
        Err(e) => e.to_string(),
    }
}

async fn serve(app: Router) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("server: {e}");
        }
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // tracing -> tracing-opentelemetry -> SecmeshIds -> batch -> OTLP/gRPC.
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4317".to_owned());
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("secmesh-demo")
                .build(),
        )
        .with_span_processor(SecmeshIds::new(
            BatchSpanProcessor::builder(exporter).build(),
        ))
        .build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("secmesh-example"))
        .with_filter(Targets::new().with_target("secmesh", LevelFilter::INFO));
    tracing_subscriber::registry().with(otel).try_init()?;

    // Two services sharing a verifier and a policy.
    let key = SigningKey::generate(Algorithm::EdDsa)?;
    let keys = KeySet::single(key.verifying_key(Some("k1".into())));
    let issuer = Issuer::new(key, "k1", "gateway").audience("shop");
    let secure = |name: &str| -> Result<SecureLayer, Error> {
        let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml)?);
        Ok(SecureLayer::builder(Verifier::new(keys.clone()), policy)
            .name(name)
            .build()?)
    };
    let payments = serve(
        Router::new()
            .route("/charge", get(|| async { "charged" }))
            .layer(secure("payments")?),
    )
    .await?;
    let client = PropagateLayer::new([format!("127.0.0.1:{}", payments.port())])
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let orders = serve(
        Router::new()
            .route("/orders/pay", get(pay))
            .with_state(Next {
                client,
                url: format!("http://{payments}/charge"),
            })
            .layer(secure("orders")?),
    )
    .await?;

    // One request from the edge, with a trace context of its own.
    let token = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .request(
            Request::get(format!("http://{orders}/orders/pay"))
                .header("txn-token", token.as_str())
                .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
                .body(Full::new(Bytes::new()))?,
        )
        .await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    println!("{status}: {}", String::from_utf8_lossy(&body));

    // Send what is buffered (the batch thread uses this runtime's reactor for gRPC).
    tokio::task::spawn_blocking(move || provider.shutdown()).await??;
    println!(
        "trace {trace_id}: spans handed to the OTLP exporter for {endpoint} (orders -> payments, one trace)"
    );
    Ok(())
}
