//! Mutual TLS: what secmesh's SVID verification and identity extraction cost over plain rustls,
//! in one run.
//!
//! - `handshake`: a full TLS 1.3 mutual handshake in memory (P-256 certificates on both sides,
//!   no resumption): `rustls_webpki`, rustls with its stock webpki verifiers (DNS name check, no
//!   CRL); `mtls`, secmesh's `Workload` configurations without CRLs (chain + X.509-SVID leaf
//!   rules + SPIFFE ID checks on both sides, plus reading the client's `PeerIdentity` out of the
//!   connection); `mtls-crl`, the same with a CRL on both sides (verified once at load, an index
//!   consulted per handshake); `mtls-crl-webpki`, the per-handshake path secmesh had before:
//!   rustls' `WebPkiClientVerifier` with the same CRL (webpki verifies the CRL's signature at
//!   every handshake, with the revocation options secmesh used: whole chain, unknown status
//!   allowed, expiry enforced) and the same SVID checks, on both sides; `mtls-webpki`, that
//!   wrapper without CRLs (it costs what `mtls` costs, so the CRL rows compare like with like).
//! - `request`: one HTTP/1.1 request on a kept-alive mutual-TLS connection over 127.0.0.1 to the
//!   same axum router, served by tokio-rustls + hyper-util directly, and by secmesh's
//!   `TlsServer` (which puts the peer identity into every request).
//!
//! ```text
//! cargo bench -p secmesh --bench tls
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
    UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme,
};
use secmesh_tls::ca::Ca;
use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Workload};
use secmesh_tower::tls::{TlsConnector, TlsServer};

/// Drive both ends to the end of the handshake through memory.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> ServerConnection {
    let mut s = ServerConnection::new(Arc::clone(server)).unwrap();
    let mut c = ClientConnection::new(
        Arc::clone(client),
        ServerName::try_from("orders.mesh.test").unwrap(),
    )
    .unwrap();
    let mut buf = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        c.write_tls(&mut buf).unwrap();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets().unwrap();
        }
        buf.clear();
        s.write_tls(&mut buf).unwrap();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets().unwrap();
        }
    }
    s
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The plain-rustls side: a P-256 CA and two leaves with DNS names, stock verifiers.
fn plain_configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf = |dns: &str| {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec![dns.to_owned()]).unwrap();
        p.subject_alt_names
            .push(SanType::DnsName(dns.try_into().unwrap()));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &ca).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    };
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let roots = Arc::new(roots);
    let (server_chain, server_key) = leaf("orders.mesh.test");
    let (client_chain, client_key) = leaf("gateway.mesh.test");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
        .build()
        .unwrap();
    let server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server_chain, server_key)
        .unwrap();
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(client_chain, client_key)
        .unwrap();
    client.resumption = Resumption::disabled();
    (Arc::new(server), Arc::new(client))
}

/// The secmesh side: the internal CA, a CRL (or none), two workloads.
fn secmesh_workloads(dir: &std::path::Path, with_crl: bool) -> (Workload, Workload) {
    let ca = Ca::init(dir.join("ca"), "mesh.test".parse().unwrap()).unwrap();
    // A CRL with an entry, so the lookup is not of an empty list.
    let revoked = ca
        .issue(&"spiffe://mesh.test/revoked".parse().unwrap(), 1)
        .unwrap();
    ca.revoke(&revoked.serial).unwrap();
    std::fs::write(dir.join("ca.crl"), ca.crl(1).unwrap()).unwrap();
    let load = |name: &str| {
        let svid = ca
            .issue(&format!("spiffe://mesh.test/{name}").parse().unwrap(), 1)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), &svid.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), &svid.key_pem).unwrap();
        let files = TlsFiles::new(
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
            dir.join("ca/ca.crt"),
        );
        let files = if with_crl {
            files.crl(dir.join("ca.crl"))
        } else {
            files
        };
        Workload::load(files).unwrap()
    };
    (load("orders"), load("gateway"))
}

fn secmesh_configs(
    orders: &Workload,
    gateway: &Workload,
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let server = orders.server_config(ClientAuth::Required);
    let mut client = (*gateway.client_config(ServerId::exact(
        "spiffe://mesh.test/orders".parse().unwrap(),
    )))
    .clone();
    client.resumption = Resumption::disabled();
    (server, Arc::new(client))
}

/// The per-handshake CRL path kept for comparison: rustls' webpki client verifier (with or
/// without the CRLs) on both sides, then the SVID checks secmesh makes (SPIFFE ID in the trust
/// domain, the server's ID the one expected). The server's certificate goes through the client
/// verifier too (clientAuth instead of serverAuth usage: the SVIDs carry both; the same work).
#[derive(Debug)]
struct WebpkiCrl {
    inner: Arc<dyn ClientCertVerifier>,
    expected: Option<&'static str>,
}

impl WebpkiCrl {
    fn new(dir: &std::path::Path, with_crl: bool, expected: Option<&'static str>) -> Self {
        let mut roots = RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(dir.join("ca/ca.crt")).unwrap() {
            roots.add(der.unwrap()).unwrap();
        }
        let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
        let builder = if with_crl {
            let crls = CertificateRevocationListDer::pem_file_iter(dir.join("ca.crl"))
                .unwrap()
                .map(Result::unwrap);
            builder
                .with_crls(crls)
                .allow_unknown_revocation_status()
                .enforce_revocation_expiration()
        } else {
            builder
        };
        WebpkiCrl {
            inner: builder.build().unwrap(),
            expected,
        }
    }

    fn svid(&self, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let id = secmesh_tls::svid::spiffe_id(leaf)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let member = id.trust_domain().as_str() == "mesh.test";
        if !member || self.expected.is_some_and(|want| want != id.as_str()) {
            return Err(rustls::Error::General("unexpected peer".into()));
        }
        Ok(())
    }
}

impl ClientCertVerifier for WebpkiCrl {
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[] // as secmesh's server: no hints
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.svid(end_entity)?;
        Ok(verified)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl ServerCertVerifier for WebpkiCrl {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        ClientCertVerifier::verify_client_cert(self, end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Configurations over the files of [`secmesh_workloads`] with the [`WebpkiCrl`] verifiers.
fn webpki_crl_configs(
    dir: &std::path::Path,
    with_crl: bool,
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let chain = |name: &str| -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(dir.join(format!("{name}.crt")))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let key = |name: &str| PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
    let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(Arc::new(WebpkiCrl::new(dir, with_crl, None)))
        .with_single_cert(chain("orders"), key("orders"))
        .unwrap();
    server.alpn_protocols = alpn.clone();
    let expected = Some("spiffe://mesh.test/orders");
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(WebpkiCrl::new(dir, with_crl, expected)))
        .with_client_auth_cert(chain("gateway"), key("gateway"))
        .unwrap();
    client.alpn_protocols = alpn;
    client.resumption = Resumption::disabled();
    (Arc::new(server), Arc::new(client))
}

fn bench_handshake(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (orders, gateway) = secmesh_workloads(dir.path(), true);
    let no_crl_dir = tempfile::tempdir().unwrap();
    let (orders_nc, gateway_nc) = secmesh_workloads(no_crl_dir.path(), false);
    let (plain_server, plain_client) = plain_configs();
    let (svid_server, svid_client) = secmesh_configs(&orders, &gateway);
    let (nc_server, nc_client) = secmesh_configs(&orders_nc, &gateway_nc);
    let (wc_server, wc_client) = webpki_crl_configs(dir.path(), true);
    let (wn_server, wn_client) = webpki_crl_configs(no_crl_dir.path(), false);

    let mut g = c.benchmark_group("tls/handshake");
    g.bench_function("rustls_webpki", |b| {
        b.iter(|| black_box(handshake(&plain_server, &plain_client)))
    });
    // What a secmesh server does per connection: the handshake, then the client's identity.
    let svid_handshake = |server: &Arc<ServerConfig>, client: &Arc<ClientConfig>| {
        let conn = handshake(server, client);
        let leaf = &conn.peer_certificates().unwrap()[0];
        secmesh_tls::svid::peer_identity(leaf).unwrap()
    };
    g.bench_function("mtls", |b| {
        b.iter(|| black_box(svid_handshake(&nc_server, &nc_client)))
    });
    g.bench_function("mtls-crl", |b| {
        b.iter(|| black_box(svid_handshake(&svid_server, &svid_client)))
    });
    g.bench_function("mtls-crl-webpki", |b| {
        b.iter(|| black_box(svid_handshake(&wc_server, &wc_client)))
    });
    g.bench_function("mtls-webpki", |b| {
        b.iter(|| black_box(svid_handshake(&wn_server, &wn_client)))
    });
    g.finish();

    let conn = handshake(&svid_server, &svid_client);
    let leaf = conn.peer_certificates().unwrap()[0].clone();
    let mut g = c.benchmark_group("tls/identity");
    g.bench_function("peer_identity_per_connection", |b| {
        b.iter(|| black_box(secmesh_tls::svid::peer_identity(black_box(&leaf)).unwrap()))
    });
    g.finish();
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// tokio-rustls + hyper-util, nothing else: the baseline server.
async fn plain_server(config: Arc<ServerConfig>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app());
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn bench_request(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (orders, gateway) = secmesh_workloads(dir.path(), true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (plain_addr, svid_addr) = rt.block_on(async {
        let plain = plain_server(orders.server_config(ClientAuth::Required)).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            TlsServer::new(orders.server_config(ClientAuth::Required)).serve(listener, app()),
        );
        (plain, addr)
    });
    let client: Client<TlsConnector, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(false)
        .build(TlsConnector::new(
            gateway.client_config(ServerId::TrustDomain),
        ));
    let get = |addr: std::net::SocketAddr| {
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("https://{addr}/").parse().unwrap())
                .await
                .unwrap();
            resp.into_body().collect().await.unwrap().to_bytes()
        }
    };

    let mut g = c.benchmark_group("tls/request");
    g.bench_function("tokio_rustls_hyper", |b| {
        b.iter(|| black_box(rt.block_on(get(plain_addr))))
    });
    g.bench_function("secmesh_tls_server", |b| {
        b.iter(|| black_box(rt.block_on(get(svid_addr))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench_handshake, bench_request
}
criterion_main!(benches);
