//! What every node of the mesh has: an X.509-SVID from the internal CA, a chained and signed
//! audit log, the inbound layers, mTLS clients that carry the token and audit `out` calls, and
//! the token service's keys, fetched from its JWKS over mutual TLS.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::PrometheusHandle;
use secmesh::audit::Auditor;
use secmesh::audit::chain::AuditKey;
use secmesh::audit::sink::{JsonLinesConfig, JsonLinesSink};
use secmesh::core::ExpiryClass;
use secmesh::core::policy::SharedPolicy;
use secmesh::tls::ca::Ca;
use secmesh::tls::config::{ServerId, TlsFiles, Watch, Workload};
use secmesh::tokens::Verifier;
use secmesh::tokens::source::{KeySource, SourceError};
use secmesh::tower::SecureLayer;
use secmesh::tower::audit::AuditOutLayer;
use secmesh::tower::authorize::{Classify, DefaultClassifier};
use secmesh::tower::metrics::Collector;
use secmesh::tower::propagate::PropagateLayer;
use secmesh::tower::sts::{StsClient, StsClientError};
use secmesh::tower::tls::TlsConnector;
use secmesh_fs::Overwrite;
use tower::{ServiceBuilder, ServiceExt};

use crate::{MESH_AUD, STS_ID, STS_ISS, TRUST_DOMAIN};

/// An HTTPS client of one node to one other node.
pub(crate) type HttpsClient = tower::util::BoxCloneSyncService<
    Request<Full<Bytes>>,
    http::Response<hyper::body::Incoming>,
    hyper_util::client::legacy::Error,
>;

/// One service's identity and audit log.
pub(crate) struct Node {
    pub(crate) name: &'static str,
    pub(crate) workload: Workload,
    pub(crate) auditor: Auditor,
    pub(crate) log: PathBuf,
    /// What the node reports at `/metrics`: its stacks' caches and its audit log.
    pub(crate) collector: std::sync::Mutex<Collector>,
    /// Reloads the SVID and the CRL when their files change: a revocation takes effect
    /// within a second, without a restart.
    _watch: Watch,
}

impl Node {
    /// The node `name`: its SVID from `pki` and its log `audit_dir/NAME.jsonl`, signed with `key`.
    pub(crate) fn new(pki: &Pki, audit_dir: &Path, key: &AuditKey, name: &'static str) -> Node {
        let log = audit_dir.join(format!("{name}.jsonl"));
        let config =
            JsonLinesConfig::default().with_key(AuditKey::from_pem(&key.to_pem()).unwrap());
        let sink = JsonLinesSink::open(&log, config).unwrap();
        let workload = pki.workload(name);
        let watch = workload
            .watch(Duration::from_secs(1))
            .expect("start the TLS watch thread");
        let auditor = Auditor::builder(sink).spawn();
        Node {
            name,
            _watch: watch,
            workload,
            collector: std::sync::Mutex::new(Collector::new(name).auditor(auditor.clone())),
            auditor,
            log,
        }
    }

    /// An mTLS HTTP client that carries the token and writes `out` events, to `dest` only.
    pub(crate) fn client_to(&self, dest: SocketAddr, server: &str) -> HttpsClient {
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

    /// The server stack (audit -> authenticate -> authorize) for routes that accept internal
    /// tokens up to `max_class`, classified by `classifier`; `verifier` is the node's
    /// [`mesh_verifier`].
    pub(crate) fn stack<C: Classify>(
        &self,
        verifier: &Verifier,
        policy: &SharedPolicy,
        max_class: ExpiryClass,
        classifier: C,
    ) -> SecureLayer<C> {
        let layer = SecureLayer::builder(verifier.clone(), policy.clone())
            .audit(self.auditor.clone(), self.name)
            .max_class(max_class)
            .classifier(classifier)
            .build()
            .expect("the mesh's stack configuration");
        let mut c = self.collector.lock().unwrap_or_else(|p| p.into_inner());
        *c = c.clone().cache(layer.cache().clone());
        layer
    }

    /// Serve this node's `/metrics` (Prometheus text, plain HTTP on 127.0.0.1: the demo's
    /// scrape endpoint) from the process's exporter; its address. The five nodes share one
    /// process and so one registry: each endpoint keeps its own `service`'s series (a real
    /// deployment has one process, one exporter per service).
    pub(crate) async fn serve_metrics(
        &self,
        prometheus: PrometheusHandle,
    ) -> std::io::Result<SocketAddr> {
        let collector = self
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let name = self.name;
        let app = Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                collector.collect();
                let tag = format!("service=\"{name}\"");
                let mut text: String = prometheus
                    .render()
                    .lines()
                    .filter(|l| l.starts_with('#') || l.contains(&tag))
                    .collect::<Vec<_>>()
                    .join("\n");
                text.push('\n');
                std::future::ready(text)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }

    /// [`stack`](Self::stack) around an HTTP router.
    pub(crate) fn secure(
        &self,
        app: Router,
        verifier: &Verifier,
        policy: &SharedPolicy,
        max_class: ExpiryClass,
    ) -> Router {
        app.layer(self.stack(verifier, policy, max_class, DefaultClassifier))
    }
}

/// The verifier of the mesh's txn-tokens for `workload`: the token service's keys, fetched
/// from its JWKS at `sts` over mutual TLS (the service's identity pinned) and refreshed, also
/// on a `kid` it does not know yet; its issuer, the trust domain as the audience.
pub(crate) async fn mesh_verifier(
    workload: &Workload,
    sts: SocketAddr,
) -> Result<Verifier, SourceError> {
    let keys = KeySource::jwks_url(format!("https://{sts}/.well-known/jwks.json"))
        .tls(workload.client_config(sts_id()))
        .build()
        .await?;
    Ok(Verifier::with_source(keys)
        .issuer(STS_ISS)
        .audience(MESH_AUD))
}

/// `workload`'s client of the token service's endpoint at `sts` (mutual TLS, the service's
/// identity pinned), renewing tokens of the mesh's trust domain.
pub(crate) fn sts_client(
    workload: &Workload,
    sts: SocketAddr,
) -> Result<StsClient, StsClientError> {
    StsClient::builder(workload, sts_id(), format!("https://{sts}/token"))
        .trust_domain(MESH_AUD)
        .build()
}

/// Only the token service's SVID is accepted when connecting to it.
fn sts_id() -> ServerId {
    ServerId::exact(STS_ID.parse().unwrap())
}

/// Sends a request without a body; a transport error comes back as text.
pub(crate) async fn send(
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

/// A reply, or 502 with the transport error.
pub(crate) fn reply(r: Result<(StatusCode, String), String>) -> (StatusCode, String) {
    r.unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e))
}

/// The internal CA and the workloads' SVIDs, in the work directory's `pki/`.
pub(crate) struct Pki {
    ca: Ca,
    dir: PathBuf,
}

impl Pki {
    /// A new CA in `work_dir/pki` (0700; every private key 0600), replaced on every run: no key
    /// is left world-readable anywhere.
    pub(crate) fn create(work_dir: &Path) -> Result<Pki, Box<dyn std::error::Error>> {
        let dir = work_dir.join("pki");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let ca = Ca::init(dir.join("ca"), TRUST_DOMAIN.parse()?)?;
        std::fs::write(dir.join("ca.crl"), ca.crl(1)?)?;
        Ok(Pki { ca, dir })
    }

    /// The workload `name`: an SVID for `spiffe://mesh.test/NAME`, loaded with the CA and CRL.
    pub(crate) fn workload(&self, name: &str) -> Workload {
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
