//! The demo mesh: four services on 127.0.0.1 with mutual TLS between them, a scenario, a tree
//! of every transaction from the audit logs, and the logs' chains verified at the end.
//!
//! ```text
//! cargo run --example mesh [-- --audit-dir DIR] [-- --serve]
//! ```
//!
//! - an identity provider (simulated: its own Ed25519 key, published as a JWKS) issues
//!   external bearer tokens to users;
//! - the gateway (axum, plain HTTP on 127.0.0.1 for the outside) verifies them and exchanges
//!   each for an internal fast transaction token, narrowed to the request, that travels through
//!   the mesh in the `Txn-Token` header without any handler touching it;
//! - orders and payments (axum) and inventory (tonic) talk over mutual TLS with X.509-SVIDs from
//!   the internal CA; each authenticates, authorizes with the mesh policy (the caller is the
//!   peer's SPIFFE ID), and writes a chained, signed audit log to `DIR/<service>.jsonl`
//!   (default `target/secmesh-demo/`).
//!
//! The scenario: a call allowed through three hops; a call denied with its reason; a
//! confused-deputy attempt (payments, holding a user's token, asks orders for a refund) denied;
//! a slow batch token accepted on a batch route and refused on an API route; a tampered token
//! and an expired one refused. With `--serve` the mesh then keeps running, and the ports and a
//! curl command are printed.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secmesh::audit::chain::AuditKey;
use secmesh::audit::sink::{JsonLinesConfig, JsonLinesSink};
use secmesh::audit::verify::{read_events, verify_files};
use secmesh::audit::{Auditor, trace};
use secmesh::core::policy::{Format, Policy, SharedPolicy};
use secmesh::core::{ExpiryClass, ManualClock, TxnId};
use secmesh::tokens::cache::TokenHash;
use secmesh::tokens::{Algorithm, Issuer, JwkSet, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_fs::Overwrite;
use secmesh_tls::ca::Ca;
use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Watch, Workload};
use secmesh_tower::audit::{AuditLayer, AuditOutLayer};
use secmesh_tower::authorize::GrpcClassifier;
use secmesh_tower::authorize::{Classify, DefaultClassifier};
use secmesh_tower::context::RequestContext;
use secmesh_tower::deny::{DenialResponse, GrpcStatus, ProblemJson};
use secmesh_tower::extract::{Claims, Peer};
use secmesh_tower::propagate::PropagateLayer;
use secmesh_tower::serve::{PlainServer, ServerLimits};
use secmesh_tower::tls::{TlsConnector, TlsServer};
use secmesh_tower::{AuthenticateLayer, AuthorizeLayer};
use std::os::unix::fs::DirBuilderExt;
use tonic::Status;
use tower::{ServiceBuilder, ServiceExt};

const TRUST_DOMAIN: &str = "mesh.test";
const IDP: &str = "https://idp.example.test";
const MESH_ISS: &str = "https://gateway.mesh.test";
const MESH_AUD: &str = "mesh.test";

/// The mesh policy: one shared store, rules per service (by object) and per caller.
const POLICY: &str = r#"
[[rule]]
id = "users-read-own-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/{sub}/*"]
callers = ["spiffe://mesh.test/gateway"]
max_class = "fast"

[[rule]]
id = "users-dispute-and-refund-own-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["create"]
objects = ["orders/{sub}/*/dispute", "orders/{sub}/*/refund"]
callers = ["spiffe://mesh.test/gateway"]

[[rule]]
id = "orders-reads-and-disputes-payments"
effect = "allow"
subjects = ["user:*"]
verbs = ["read", "create"]
objects = ["payments/{sub}/**"]
callers = ["spiffe://mesh.test/orders"]

[[rule]]
id = "orders-reserves-stock"
effect = "allow"
subjects = ["user:*"]
verbs = ["call"]
objects = ["inventory.v1.Inventory/Reserve"]
callers = ["spiffe://mesh.test/orders"]

[[rule]]
id = "refunds-only-through-the-gateway"
effect = "deny"
subjects = ["*"]
verbs = ["*"]
objects = ["orders/*/*/refund"]
callers = ["spiffe://mesh.test/payments", "spiffe://mesh.test/inventory"]

[[rule]]
id = "reconciler-runs-batches"
effect = "allow"
subjects = ["svc:reconciler"]
verbs = ["create"]
objects = ["orders/batch/**"]
callers = ["spiffe://mesh.test/reconciler"]
max_class = "slow"
"#;

type HttpsClient = tower::util::BoxCloneSyncService<
    Request<Full<Bytes>>,
    http::Response<hyper::body::Incoming>,
    hyper_util::client::legacy::Error,
>;

/// One service's identity and audit log.
struct Node {
    name: &'static str,
    workload: Workload,
    auditor: Auditor,
    log: PathBuf,
    /// Reloads the SVID and the CRL when their files change: a revocation takes effect
    /// within a second, without a restart.
    _watch: Watch,
}

impl Node {
    /// An mTLS HTTP client that carries the token and writes `out` events, to `dest` only.
    fn client_to(&self, dest: SocketAddr, server: &str) -> HttpsClient {
        let config = self
            .workload
            .client_config(ServerId::exact(server.parse().unwrap()));
        let client = Client::builder(TokioExecutor::new())
            .build::<_, Full<Bytes>>(TlsConnector::new(config));
        let svc = ServiceBuilder::new()
            .layer(PropagateLayer::new([format!("127.0.0.1:{}", dest.port())]))
            .layer(AuditOutLayer::new(self.auditor.clone(), self.name))
            .service(client);
        tower::util::BoxCloneSyncService::new(svc)
    }

    /// authenticate (internal tokens up to `max_class`) + audit around `app`.
    fn secure(&self, app: Router, keys: &Arc<KeySet>, max_class: ExpiryClass) -> Router {
        let verifier = Verifier::new(keys.clone())
            .issuer(MESH_ISS)
            .audience(MESH_AUD)
            .max_class(max_class);
        app.layer(AuthenticateLayer::from_verifier(verifier, 10_000))
            .layer(AuditLayer::new(self.auditor.clone(), self.name))
    }
}

async fn send(
    client: &HttpsClient,
    method: Method,
    url: String,
) -> Result<(StatusCode, String), String> {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client
        .clone()
        .oneshot(req)
        .await
        .map_err(|e| format!("{e}"))?;
    let status = res.status();
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

fn reply(r: Result<(StatusCode, String), String>) -> (StatusCode, String) {
    r.unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e))
}

// ---- payments (axum) -------------------------------------------------------------------------

#[derive(Clone)]
struct Payments {
    orders: HttpsClient,
    orders_addr: SocketAddr,
}

async fn payment_status(UrlPath((user, order)): UrlPath<(String, String)>) -> String {
    format!("{user} paid for order {order}")
}

/// A dispute: payments then asks orders for the refund itself, with the user's token (the
/// layers carry it) — a confused deputy: the policy only takes refunds from the gateway.
async fn dispute(
    State(p): State<Payments>,
    UrlPath((user, order)): UrlPath<(String, String)>,
) -> (StatusCode, String) {
    let url = format!("https://{}/orders/{user}/{order}/refund", p.orders_addr);
    let (status, body) = reply(send(&p.orders, Method::POST, url).await);
    (status, format!("refund through orders: {status} {body}"))
}

// ---- inventory (tonic) -----------------------------------------------------------------------

#[derive(Clone, PartialEq, prost::Message)]
struct ReserveRequest {
    #[prost(string, tag = "1")]
    sku: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReserveReply {
    #[prost(string, tag = "1")]
    reserved_for: String,
    #[prost(string, tag = "2")]
    caller: String,
}

/// `inventory.v1.Inventory/Reserve`, written against tonic's server API (no protoc).
#[derive(Clone)]
struct Inventory;

impl tonic::server::NamedService for Inventory {
    const NAME: &'static str = "inventory.v1.Inventory";
}

struct Reserve;

impl tonic::server::UnaryService<ReserveRequest> for Reserve {
    type Response = ReserveReply;
    type Future = std::future::Ready<Result<tonic::Response<ReserveReply>, Status>>;

    fn call(&mut self, req: tonic::Request<ReserveRequest>) -> Self::Future {
        let caller = req
            .extensions()
            .get::<secmesh::core::PeerIdentity>()
            .map(|p| p.spiffe_id.to_string())
            .unwrap_or_default();
        let reply = RequestContext::current()
            .and_then(|ctx| ctx.claims().map(|c| c.sub.clone()))
            .map(|sub| ReserveReply {
                reserved_for: sub,
                caller,
            })
            .ok_or_else(|| Status::internal("no request context"));
        std::future::ready(reply.map(tonic::Response::new))
    }
}

impl tower::Service<Request<tonic::body::Body>> for Inventory {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() == "/inventory.v1.Inventory/Reserve" {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(Reserve, req).await)
            } else {
                Ok(Status::unimplemented("no such method").into_http())
            }
        })
    }
}

type GrpcChannel = tower::util::BoxCloneSyncService<
    Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    tonic::transport::Error,
>;

// ---- orders (axum) ---------------------------------------------------------------------------

#[derive(Clone)]
struct Orders {
    payments: HttpsClient,
    payments_addr: SocketAddr,
    inventory: GrpcChannel,
    inventory_addr: SocketAddr,
}

async fn reserve(o: &Orders) -> Result<ReserveReply, Status> {
    let mut grpc = tonic::client::Grpc::with_origin(
        o.inventory.clone(),
        format!("https://{}", o.inventory_addr).parse().unwrap(),
    );
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(ReserveRequest { sku: "A-1".into() }),
        PathAndQuery::from_static("/inventory.v1.Inventory/Reserve"),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Reads the order: asks payments (HTTP) and inventory (gRPC). The token travels by itself.
async fn get_order(
    State(o): State<Orders>,
    UrlPath((user, order)): UrlPath<(String, String)>,
) -> (StatusCode, String) {
    let url = format!("https://{}/payments/{user}/{order}", o.payments_addr);
    let (paid, reserved) = tokio::join!(send(&o.payments, Method::GET, url), reserve(&o));
    let (status, paid) = reply(paid);
    let reserved = match reserved {
        Ok(r) => format!(
            "stock reserved for {} (asked by {})",
            r.reserved_for, r.caller
        ),
        Err(s) => format!("inventory said {:?}", s.code()),
    };
    (status, format!("order {order}: {paid}; {reserved}"))
}

async fn dispute_order(
    State(o): State<Orders>,
    UrlPath((user, order)): UrlPath<(String, String)>,
) -> (StatusCode, String) {
    let url = format!(
        "https://{}/payments/{user}/{order}/dispute",
        o.payments_addr
    );
    reply(send(&o.payments, Method::POST, url).await)
}

async fn refund(UrlPath((_user, order)): UrlPath<(String, String)>) -> String {
    format!("order {order} refunded")
}

async fn reconcile(claims: Claims, Peer(peer): Peer) -> String {
    format!(
        "batch reconciled by {} ({}) with a {} token",
        claims.sub, peer.spiffe_id, claims.cls
    )
}

// ---- gateway (axum, the edge) ----------------------------------------------------------------

#[derive(Clone)]
struct Gateway {
    orders: HttpsClient,
    orders_addr: SocketAddr,
    mesh: Arc<Issuer>,
    mesh_verifier: Arc<Verifier>,
}

/// Exchange the caller's external token for an internal fast token narrowed to this request
/// (never wider than the subject's own objects), then forward to orders inside its context.
async fn edge(
    State(gw): State<Gateway>,
    external: Claims,
    req: Request<axum::body::Body>,
) -> Response {
    // The library's classification: the same verb mapping and canonical object as every
    // service (a refused path or method is answered, and audited, as a denial).
    let (parts, _body) = req.into_parts();
    let (verb, object) = match DefaultClassifier.classify(&parts) {
        Ok(c) => c,
        Err(e) => return ProblemJson.response(&parts.headers, &e.denial()),
    };
    let path = parts.uri.path().to_owned();
    let (verb, object) = (verb.as_str(), object.as_str());
    let mut mint = MintRequest::new(external.sub.clone(), ExpiryClass::Fast)
        .grant(verb, object)
        .req_wl(format!("spiffe://{TRUST_DOMAIN}/gateway"));
    // What orders will ask downstream for this request, and nothing else.
    if let [_, user, order, rest @ ..] = object.split('/').collect::<Vec<_>>().as_slice() {
        match rest {
            [] => {
                mint = mint
                    .grant("read", &format!("payments/{user}/{order}"))
                    .grant("call", "inventory.v1.Inventory/Reserve");
            }
            ["dispute"] => {
                mint = mint
                    .grant("create", &format!("payments/{user}/{order}/dispute"))
                    .grant("create", &format!("orders/{user}/{order}/refund"));
            }
            _ => {}
        }
    }
    let minted = gw
        .mesh
        .mint(&mint)
        .map_err(|e| e.to_string())
        .and_then(|token| {
            let verified = gw.mesh_verifier.verify(&token).map_err(|e| e.to_string())?;
            Ok((token, Arc::new(verified)))
        });
    let (internal, verified) = match minted {
        Ok(m) => m,
        Err(e) => {
            // The reason goes to the log; the caller gets the status only.
            eprintln!("gateway: token exchange failed: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let txn = verified
        .claims()
        .txn
        .map(|t| t.to_string())
        .unwrap_or_default();
    let ctx = RequestContext::authenticated(&internal, TokenHash::of(&internal), verified, None);
    let url = format!("https://{}{path}", gw.orders_addr);
    let (status, body) = reply(ctx.clone().scope(send(&gw.orders, parts.method, url)).await);
    // The audit layer records the exchanged context (the transaction the calls continue).
    let mut res = (status, [("txn-id", txn)], body).into_response();
    res.extensions_mut().insert(ctx);
    res
}

// ---- the identity provider -------------------------------------------------------------------

struct Idp {
    issuer: Issuer,
    key_pem: zeroize::Zeroizing<String>,
    jwks: String,
}

impl Idp {
    fn new() -> Idp {
        let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
        let jwks = JwkSet {
            keys: vec![key.verifying_key(Some("idp-1".into())).to_jwk()],
        }
        .to_json();
        let key_pem = key.to_pkcs8_pem().unwrap();
        Idp {
            issuer: Issuer::new(key, "idp-1", IDP).audience("gateway"),
            key_pem,
            jwks,
        }
    }

    /// A bearer token for `user`, a medium-class session token.
    fn token(&self, user: &str) -> String {
        self.issuer
            .mint(&MintRequest::new(
                format!("user:{user}"),
                ExpiryClass::Medium,
            ))
            .unwrap()
    }

    /// A token minted three hours ago (expired an hour and a half ago).
    fn expired_token(&self, user: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let key = SigningKey::from_pkcs8_pem(Algorithm::EdDsa, &self.key_pem).unwrap();
        Issuer::new(key, "idp-1", IDP)
            .audience("gateway")
            .clock(Arc::new(ManualClock::new(now - 3 * 3600)))
            .mint(&MintRequest::new(
                format!("user:{user}"),
                ExpiryClass::Medium,
            ))
            .unwrap()
    }
}

// ---- the mesh --------------------------------------------------------------------------------

struct Options {
    audit_dir: PathBuf,
    serve: bool,
}

fn options() -> Result<Options, String> {
    let mut audit_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/secmesh-demo");
    let mut serve = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--audit-dir" => {
                audit_dir = args.next().ok_or("--audit-dir needs a directory")?.into();
            }
            "--serve" => serve = true,
            "-h" | "--help" => {
                return Err(
                    "usage: cargo run --example mesh [-- [--audit-dir DIR] [--serve]]".into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Options { audit_dir, serve })
}

struct Pki {
    ca: Ca,
    dir: PathBuf,
}

impl Pki {
    fn workload(&self, name: &str) -> Workload {
        let svid = self
            .ca
            .issue(
                &format!("spiffe://{TRUST_DOMAIN}/{name}").parse().unwrap(),
                1,
            )
            .unwrap();
        let (crt, key) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, &svid.cert_pem).unwrap();
        // Readable by its owner only: created 0600, never widened.
        secmesh_fs::write_private(&key, svid.key_pem.as_bytes(), Overwrite::No).unwrap();
        Workload::load(
            TlsFiles::new(crt, key, self.dir.join("ca/ca.crt")).crl(self.dir.join("ca.crl")),
        )
        .unwrap()
    }
}

/// A service's log files: the live `NAME.jsonl` and every rotated `NAME.jsonl.*` beside it
/// (files set aside after a crash, `*.torn-*`, are not part of the chain).
fn log_set(live: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = live.parent().unwrap_or(Path::new("."));
    let name = live.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut set = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let f = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if (f == name || f.starts_with(&format!("{name}."))) && !f.contains(".torn") {
            set.push(path);
        }
    }
    Ok(set)
}

fn node(pki: &Pki, audit_dir: &Path, key: &AuditKey, name: &'static str) -> Node {
    let log = audit_dir.join(format!("{name}.jsonl"));
    let config = JsonLinesConfig::default().with_key(AuditKey::from_pem(&key.to_pem()).unwrap());
    let sink = JsonLinesSink::open(&log, config).unwrap();
    let workload = pki.workload(name);
    let watch = workload
        .watch(Duration::from_secs(1))
        .expect("start the TLS watch thread");
    Node {
        name,
        _watch: watch,
        workload,
        auditor: Auditor::builder(sink).spawn(),
        log,
    }
}

/// Print what the service's log says of its last request (for refusals before any txn).
fn print_last(node: &Node) {
    node.auditor.flush().unwrap();
    let (events, _) = read_events(&[&node.log]).unwrap();
    if let Some(e) = events.last() {
        println!(
            "    {} logged: {} {} -> {} ({}) {}",
            node.name,
            e.verb.as_deref().unwrap_or("-"),
            e.object.as_deref().unwrap_or("-"),
            format!("{:?}", e.decision).to_lowercase(),
            e.reason.as_deref().or(e.rule.as_deref()).unwrap_or("-"),
            e.status.map_or(String::new(), |s| s.to_string()),
        );
    }
}

/// Print the tree of `txn` from every service's log.
fn print_tree(nodes: &[&Node], txn: &str) {
    for n in nodes {
        n.auditor.flush().unwrap();
    }
    let logs: Vec<&PathBuf> = nodes.iter().map(|n| &n.log).collect();
    let (events, _) = read_events(&logs).unwrap();
    let Ok(txn) = txn.parse::<TxnId>() else {
        println!("    (no transaction: refused before one was started)");
        return;
    };
    for line in trace::build(txn, events).render().lines() {
        println!("    {line}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&opts.audit_dir)?;
    // A fresh run starts fresh logs (rotated ones included).
    let services = ["gateway", "orders", "payments", "inventory"];
    for entry in std::fs::read_dir(&opts.audit_dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if services
            .iter()
            .any(|s| name.starts_with(&format!("{s}.jsonl")))
        {
            std::fs::remove_file(&path)?;
        }
    }

    // The internal CA and the workloads' SVIDs, in the work directory's `pki/` (0700; every
    // private key 0600), replaced on every run: no key is left world-readable anywhere.
    let pki_dir = opts.audit_dir.join("pki");
    if pki_dir.exists() {
        std::fs::remove_dir_all(&pki_dir)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&pki_dir)?;
    let ca = Ca::init(pki_dir.join("ca"), TRUST_DOMAIN.parse()?)?;
    std::fs::write(pki_dir.join("ca.crl"), ca.crl(1)?)?;
    let pki = Pki { ca, dir: pki_dir };
    let audit_key = AuditKey::generate()?;
    std::fs::write(
        opts.audit_dir.join("audit-key.pub"),
        audit_key.public_key_b64(),
    )?;

    // Token keys: the IdP's (external) and the mesh's (the gateway's token service).
    let idp = Idp::new();
    let mesh_key = SigningKey::generate(Algorithm::EdDsa)?;
    let mesh_keys = Arc::new(KeySet::single(
        mesh_key.verifying_key(Some("mesh-1".into())),
    ));
    let mesh = Arc::new(Issuer::new(mesh_key, "mesh-1", MESH_ISS).audience(MESH_AUD));
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml)?);
    let fast = || AuthorizeLayer::new(policy.clone()).max_class(ExpiryClass::Fast);

    let gateway = node(&pki, &opts.audit_dir, &audit_key, "gateway");
    let orders = node(&pki, &opts.audit_dir, &audit_key, "orders");
    let payments = node(&pki, &opts.audit_dir, &audit_key, "payments");
    let inventory = node(&pki, &opts.audit_dir, &audit_key, "inventory");

    // inventory: tonic routes behind the same layers, gRPC statuses for refusals.
    let inventory_verifier = Verifier::new(mesh_keys.clone())
        .issuer(MESH_ISS)
        .audience(MESH_AUD)
        .max_class(ExpiryClass::Fast);
    let inventory_svc = ServiceBuilder::new()
        .layer(AuditLayer::new(inventory.auditor.clone(), inventory.name))
        .layer(AuthenticateLayer::from_verifier(inventory_verifier, 10_000).denial(GrpcStatus))
        .layer(fast().classifier(GrpcClassifier).denial(GrpcStatus))
        .service(tonic::service::Routes::new(Inventory));
    let inventory_addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = TlsServer::from_workload(&inventory.workload, ClientAuth::Required);
        tokio::spawn(server.serve(listener, inventory_svc));
        addr
    };

    // payments and orders need each other's address (the deputy calls back): bind first.
    let payments_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let payments_addr = payments_listener.local_addr()?;
    let orders_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let orders_addr = orders_listener.local_addr()?;

    let payments_app = payments.secure(
        Router::new()
            .route("/payments/{user}/{order}", get(payment_status))
            .route("/payments/{user}/{order}/dispute", post(dispute))
            .with_state(Payments {
                orders: payments.client_to(orders_addr, "spiffe://mesh.test/orders"),
                orders_addr,
            })
            .layer(fast()),
        &mesh_keys,
        ExpiryClass::Fast,
    );
    tokio::spawn(
        TlsServer::from_workload(&payments.workload, ClientAuth::Required)
            .serve(payments_listener, payments_app),
    );

    let inventory_channel = {
        let connector = TlsConnector::new(
            orders
                .workload
                .client_config(ServerId::exact("spiffe://mesh.test/inventory".parse()?)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{inventory_addr}"))?
            .connect_with_connector_lazy(connector);
        tower::util::BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(PropagateLayer::new([format!(
                    "127.0.0.1:{}",
                    inventory_addr.port()
                )]))
                .layer(AuditOutLayer::new(orders.auditor.clone(), orders.name))
                .service(channel),
        )
    };
    let state = Orders {
        payments: orders.client_to(payments_addr, "spiffe://mesh.test/payments"),
        payments_addr,
        inventory: inventory_channel,
        inventory_addr,
    };
    let api = Router::new()
        .route("/orders/{user}/{order}", get(get_order))
        .route("/orders/{user}/{order}/dispute", post(dispute_order))
        .route("/orders/{user}/{order}/refund", post(refund))
        .with_state(state)
        .layer(fast());
    // The batch route is the one that accepts slow tokens.
    let batch = Router::new()
        .route("/orders/batch/reconcile", post(reconcile))
        .layer(AuthorizeLayer::new(policy.clone()).max_class(ExpiryClass::Slow));
    let orders_app = orders.secure(api.merge(batch), &mesh_keys, ExpiryClass::Slow);
    tokio::spawn(
        TlsServer::from_workload(&orders.workload, ClientAuth::Required)
            .serve(orders_listener, orders_app),
    );

    // gateway: the public side is plain HTTP on 127.0.0.1; it accepts the IdP's bearer tokens.
    let idp_verifier = Verifier::new(KeySet::from_jwks_json(&idp.jwks)?)
        .issuer(IDP)
        .audience("gateway")
        .max_class(ExpiryClass::Medium);
    let gateway_state = Gateway {
        orders: gateway.client_to(orders_addr, "spiffe://mesh.test/orders"),
        orders_addr,
        mesh: mesh.clone(),
        mesh_verifier: Arc::new(Verifier::new(mesh_keys.clone())),
    };
    let gateway_app = Router::new()
        .route("/orders/{*rest}", any(edge))
        .with_state(gateway_state)
        .layer(AuthenticateLayer::from_verifier(idp_verifier, 10_000).accept_bearer())
        .layer(AuditLayer::new(gateway.auditor.clone(), gateway.name));
    let gateway_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway_addr = gateway_listener.local_addr()?;
    // The library's plain-HTTP server: header-read, idle and connection limits (the demo's
    // edge listens on loopback; a real edge sits behind a TLS-terminating proxy).
    tokio::spawn(
        PlainServer::new()
            .limits(ServerLimits::default())
            .serve(gateway_listener, gateway_app),
    );

    println!("secmesh demo mesh on 127.0.0.1 (trust domain {TRUST_DOMAIN}, mutual TLS inside)");
    println!("  gateway   http://{gateway_addr}   (edge: IdP bearer tokens)");
    println!("  orders    https://{orders_addr}  (axum)");
    println!("  payments  https://{payments_addr}  (axum)");
    println!("  inventory https://{inventory_addr}  (tonic)");
    println!("  audit logs in {}", opts.audit_dir.display());
    println!();

    let nodes = [&gateway, &orders, &payments, &inventory];
    let edge_client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let call_gateway = |method: Method, path: &str, token: String| {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{gateway_addr}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let client = edge_client.clone();
        async move {
            let res = client.request(req).await.unwrap();
            let status = res.status();
            let txn = res
                .headers()
                .get("txn-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let challenge = res
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body).into_owned();
            (status, txn, challenge.unwrap_or(body))
        }
    };

    let mut failures = 0;
    let mut check = |step: &str, got: StatusCode, want: StatusCode, detail: &str| {
        let mark = if got == want { "ok " } else { "FAIL" };
        if got != want {
            failures += 1;
        }
        println!("[{mark}] {step}\n       -> {got} {detail}");
    };

    let alice = idp.token("alice");
    for (step, method, path, want) in [
        (
            "1. alice reads her order: gateway -> orders -> payments + inventory",
            Method::GET,
            "/orders/user:alice/42",
            StatusCode::OK,
        ),
        (
            "2. alice reads bob's order: denied by the policy at orders",
            Method::GET,
            "/orders/user:bob/7",
            StatusCode::FORBIDDEN,
        ),
        (
            "3. confused deputy: payments asks orders to refund on alice's behalf",
            Method::POST,
            "/orders/user:alice/42/dispute",
            StatusCode::FORBIDDEN,
        ),
        (
            "3b. an encoded separator smuggles bob's order into alice's: refused at the edge",
            Method::GET,
            "/orders/user:alice/x%2F..%2F..%2Fuser:bob%2F7",
            StatusCode::BAD_REQUEST,
        ),
        (
            "3c. HEAD is a read, through the library's verb mapping",
            Method::HEAD,
            "/orders/user:alice/42",
            StatusCode::OK,
        ),
    ] {
        let (s, txn, body) = call_gateway(method, path, alice.clone()).await;
        check(step, s, want, &body);
        print_tree(&nodes, &txn);
    }

    // 4. A batch job (its own workload) with a slow token: accepted on the batch route only.
    let reconciler = pki.workload("reconciler");
    let batch_token = mesh.mint(&MintRequest::new("svc:reconciler", ExpiryClass::Slow))?;
    let batch_client =
        Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(TlsConnector::new(
            reconciler.client_config(ServerId::exact("spiffe://mesh.test/orders".parse()?)),
        ));
    for (step, method, path, want) in [
        (
            "4a. a slow batch token on the batch route",
            Method::POST,
            "/orders/batch/reconcile",
            StatusCode::OK,
        ),
        (
            "4b. the same slow token on an API route",
            Method::GET,
            "/orders/user:alice/42",
            StatusCode::FORBIDDEN,
        ),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(format!("https://{orders_addr}{path}"))
            .header("txn-token", &batch_token)
            .body(Full::new(Bytes::new()))?;
        let res = batch_client.request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        check(step, status, want, &String::from_utf8_lossy(&body));
    }
    let batch_txn = Verifier::new(mesh_keys.clone())
        .verify(&batch_token)?
        .claims()
        .txn
        .map(|t| t.to_string())
        .unwrap_or_default();
    print_tree(&nodes, &batch_txn);

    // 5. A tampered token and an expired one, at the edge.
    let mut tampered = alice.clone().into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered)?;
    for (step, token) in [
        ("5a. a tampered token", tampered),
        ("5b. an expired token", idp.expired_token("alice")),
    ] {
        let (s, _, challenge) = call_gateway(Method::GET, "/orders/user:alice/42", token).await;
        check(step, s, StatusCode::UNAUTHORIZED, &challenge);
        print_last(&gateway);
    }

    if opts.serve {
        println!();
        println!("The mesh keeps running; Ctrl-C to stop. Try, as alice:");
        println!(
            "  curl -i -H 'Authorization: Bearer {}' http://{gateway_addr}/orders/user:alice/42",
            idp.token("alice")
        );
        println!(
            "and follow the log: cargo run -p secmesh-cli -- audit tail {}",
            orders.log.display()
        );
        tokio::signal::ctrl_c().await?;
    }

    // Close the logs (a final checkpoint each) and verify every chain with the audit key.
    println!();
    let mut bad_chain = false;
    for n in [gateway, orders, payments, inventory] {
        n.auditor.shutdown();
        // The whole set: the live file and every file rotated out of it.
        match verify_files(&log_set(&n.log)?, Some(audit_key.public_key())) {
            Ok(r) => println!(
                "audit log {:<42} {} events, {} signed checkpoints: chain ok",
                n.log.display().to_string(),
                r.events,
                r.checkpoints
            ),
            Err(e) => {
                bad_chain = true;
                println!("audit log {}: {e}", n.log.display());
            }
        }
    }
    println!(
        "verify again with: cargo run -p secmesh-cli -- audit verify --key {} {}*",
        opts.audit_dir.join("audit-key.pub").display(),
        opts.audit_dir.join("orders.jsonl").display()
    );
    if failures > 0 || bad_chain {
        eprintln!("{failures} step(s) did not go as expected");
        std::process::exit(1);
    }
    Ok(())
}
