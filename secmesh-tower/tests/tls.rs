//! Mutual TLS with real certificates (from the internal CA, generated per test) and real servers
//! on 127.0.0.1: who gets in, who does not, and what reaches the handler and the policy.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use secmesh_core::policy::{Format, Policy, SharedPolicy};
use secmesh_core::{ExpiryClass, PeerIdentity};
use secmesh_testkit::inventory::{InventoryClient, InventoryServer, ReserveReply};
use secmesh_tls::ca::Ca;
use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Workload};
use secmesh_tokens::{Algorithm, Issuer, KeySet, MintRequest, SigningKey, Verifier};
use secmesh_tower::extract::Peer;
use secmesh_tower::tls::{TlsConnector, TlsServer};
use secmesh_tower::{AuthenticateLayer, AuthorizeLayer};
use tonic::Status;
use tower::ServiceBuilder;

/// A trust domain's CA in a temporary directory, and workloads issued from it.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse().unwrap()).unwrap();
        Pki { dir, ca }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write an SVID for `spiffe://mesh.test/<name>` and return its files (with the CRL file
    /// when one exists). Returns the serial too.
    fn issue(&self, name: &str) -> (TlsFiles, String) {
        let issued = self
            .ca
            .issue(&format!("spiffe://mesh.test/{name}").parse().unwrap(), 1)
            .unwrap();
        self.write(name, &issued.cert_pem, &issued.key_pem);
        (self.files(name), issued.serial)
    }

    fn write(&self, name: &str, cert: &str, key: &str) {
        std::fs::write(self.path(&format!("{name}.crt")), cert).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key).unwrap();
    }

    fn files(&self, name: &str) -> TlsFiles {
        let files = TlsFiles::new(
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
            self.path("ca/ca.crt"),
        );
        if self.path("ca.crl").exists() {
            files.crl(self.path("ca.crl"))
        } else {
            files
        }
    }

    fn workload(&self, name: &str) -> Workload {
        Workload::load(self.issue(name).0).unwrap()
    }

    fn write_crl(&self) {
        std::fs::write(self.path("ca.crl"), self.ca.crl(1).unwrap()).unwrap();
    }
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A server answering `/whoami` with the peer's SPIFFE ID (or "anonymous"), and
/// `/thumbprint` with its thumbprint.
async fn whoami_server(server: &Workload, auth: ClientAuth) -> SocketAddr {
    let app = Router::new()
        .route(
            "/whoami",
            get(|peer: Option<Peer>| async move {
                peer.map_or("anonymous".to_owned(), |Peer(p)| p.spiffe_id.to_string())
            }),
        )
        .route(
            "/thumbprint",
            get(|Peer(p): Peer| async move { p.x5t_s256 }),
        );
    let (l, addr) = listener().await;
    let tls = TlsServer::new(server.server_config(auth));
    tokio::spawn(tls.serve(l, app));
    addr
}

type HttpsClient = Client<TlsConnector, Empty<Bytes>>;

fn client(config: Arc<rustls::ClientConfig>) -> HttpsClient {
    Client::builder(TokioExecutor::new()).build(TlsConnector::new(config))
}

async fn get_text(client: &HttpsClient, url: String) -> Result<(StatusCode, String), String> {
    get_with(client, url, None).await
}

async fn get_with(
    client: &HttpsClient,
    url: String,
    token: Option<&str>,
) -> Result<(StatusCode, String), String> {
    let mut req = http::Request::get(url);
    if let Some(t) = token {
        req = req.header("txn-token", t);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

/// A `GET /whoami` that must fail: the error, for the assertion to say why.
async fn whoami_refused(client: &HttpsClient, addr: SocketAddr) -> String {
    get_text(client, format!("https://{addr}/whoami"))
        .await
        .unwrap_err()
}

/// A client that trusts any server and presents no certificate: the client a strict server
/// must refuse.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn any_server() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
}

fn anonymous_client() -> Arc<rustls::ClientConfig> {
    Arc::new(any_server().with_no_client_auth())
}

/// A client that trusts any server and presents this certificate, whatever it is.
fn presenting(cert_pem: &str, key_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    Arc::new(any_server().with_client_auth_cert(certs, key).unwrap())
}

#[tokio::test]
async fn the_clients_spiffe_id_reaches_the_handler() {
    let pki = Pki::new();
    let orders = pki.workload("orders");
    let gateway = pki.workload("gateway");
    let addr = whoami_server(&orders, ClientAuth::Required).await;
    let c = client(gateway.client_config(ServerId::exact(
        "spiffe://mesh.test/orders".parse().unwrap(),
    )));
    let (status, body) = get_text(&c, format!("https://{addr}/whoami"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "spiffe://mesh.test/gateway");
    let (_, thumb) = get_text(&c, format!("https://{addr}/thumbprint"))
        .await
        .unwrap();
    assert_eq!(thumb, gateway.thumbprint());
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_in_strict_mode_only() {
    let pki = Pki::new();
    let orders = pki.workload("orders");
    let strict = whoami_server(&orders, ClientAuth::Required).await;
    let c = client(anonymous_client());
    let err = whoami_refused(&c, strict).await;
    assert!(err.contains("CertificateRequired"), "{err}");

    // Permissive: the same client gets in, without an identity.
    let permissive = whoami_server(&orders, ClientAuth::Optional).await;
    let (status, body) = get_text(&c, format!("https://{permissive}/whoami"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
    // And one with a certificate still has one there.
    let gateway = pki.workload("gateway");
    let c = client(gateway.client_config(ServerId::TrustDomain));
    let (_, body) = get_text(&c, format!("https://{permissive}/whoami"))
        .await
        .unwrap();
    assert_eq!(body, "spiffe://mesh.test/gateway");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let rogue = Pki::new(); // the same trust domain name, another CA key
    let orders = pki.workload("orders");
    rogue.workload("gateway");
    let addr = whoami_server(&orders, ClientAuth::Required).await;
    // The intruder's own client would refuse this server (it does not chain to the rogue CA);
    // present its certificate from a client that accepts any server, to show the server
    // refuses it.
    let c = client(presenting(
        &std::fs::read_to_string(rogue.path("gateway.crt")).unwrap(),
        &std::fs::read_to_string(rogue.path("gateway.key")).unwrap(),
    ));
    let err = whoami_refused(&c, addr).await;
    // Same CA name, another key: the anchor is found by name and the signature fails.
    assert!(
        err.contains("AlertReceived(DecryptError)") || err.contains("AlertReceived(UnknownCA)"),
        "{err}"
    );

    // And a legitimate client refuses a server of the other CA.
    let rogue_server = rogue.workload("orders");
    let addr = whoami_server(&rogue_server, ClientAuth::Optional).await;
    let c = client(pki.workload("gateway").client_config(ServerId::TrustDomain));
    let err = whoami_refused(&c, addr).await;
    assert!(
        err.contains("BadSignature") || err.contains("UnknownIssuer"),
        "{err}"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let pki = Pki::new();
    let orders = pki.workload("orders");
    let addr = whoami_server(&orders, ClientAuth::Required).await;
    let now = SystemTime::now();
    let expired = pki
        .ca
        .issue_between(
            &"spiffe://mesh.test/gateway".parse().unwrap(),
            now - Duration::from_secs(3 * 86_400),
            now - Duration::from_secs(86_400),
        )
        .unwrap();
    pki.write("gateway", &expired.cert_pem, &expired.key_pem);
    // The workload itself refuses to load an expired certificate...
    let err = Workload::load(pki.files("gateway")).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    // ...so present it with a hand-made client configuration: the server refuses it.
    let c = client(presenting(&expired.cert_pem, &expired.key_pem));
    let err = whoami_refused(&c, addr).await;
    assert!(err.contains("CertificateExpired"), "{err}");
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_after_the_crl_is_reloaded() {
    let pki = Pki::new();
    pki.write_crl(); // an empty CRL to start with
    let orders = pki.workload("orders");
    let (gateway_files, serial) = pki.issue("gateway");
    let gateway = Workload::load(gateway_files).unwrap();
    let addr = whoami_server(&orders, ClientAuth::Required).await;
    let c = client(gateway.client_config(ServerId::TrustDomain));
    let (status, _) = get_text(&c, format!("https://{addr}/whoami"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);

    pki.ca.revoke(&serial).unwrap();
    pki.write_crl();
    orders.reload().unwrap();
    // A new connection (the pooled one was authenticated before the revocation).
    let c = client(gateway.client_config(ServerId::TrustDomain));
    let err = whoami_refused(&c, addr).await;
    assert!(err.contains("CertificateRevoked"), "{err}");
}

#[tokio::test]
async fn the_client_checks_the_servers_spiffe_id() {
    let pki = Pki::new();
    let orders = pki.workload("orders");
    let gateway = pki.workload("gateway");
    let addr = whoami_server(&orders, ClientAuth::Required).await;
    let c = client(gateway.client_config(ServerId::exact(
        "spiffe://mesh.test/payments".parse().unwrap(),
    )));
    let err = whoami_refused(&c, addr).await;
    assert!(
        err.contains("UnexpectedServer") && err.contains("spiffe://mesh.test/payments"),
        "{err}"
    );
    let c = client(gateway.client_config(ServerId::AnyOf(vec![
        "spiffe://mesh.test/payments".parse().unwrap(),
        "spiffe://mesh.test/orders".parse().unwrap(),
    ])));
    assert!(get_text(&c, format!("https://{addr}/whoami")).await.is_ok());
}

#[tokio::test]
async fn a_renewed_certificate_is_served_after_a_reload_without_a_restart() {
    let pki = Pki::new();
    let orders = pki.workload("orders");
    let before = orders.thumbprint();
    let gateway = pki.workload("gateway");
    let addr = whoami_server(&orders, ClientAuth::Required).await;
    let connector = TlsConnector::new(gateway.client_config(ServerId::TrustDomain));
    let io = connector.connect("127.0.0.1", addr.port()).await.unwrap();
    assert_eq!(io.server_identity().unwrap().x5t_s256, before);

    // Renew on disk; a broken write is not swapped in.
    std::fs::write(pki.path("orders.crt"), "not a certificate").unwrap();
    assert!(orders.reload().is_err());
    let io = connector.connect("127.0.0.1", addr.port()).await.unwrap();
    assert_eq!(io.server_identity().unwrap().x5t_s256, before);

    let _watch = orders.watch(Duration::from_millis(20)).unwrap();
    pki.issue("orders");
    let mut renewed = false;
    for _ in 0..250 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let io = connector.connect("127.0.0.1", addr.port()).await.unwrap();
        if io.server_identity().unwrap().x5t_s256 != before {
            renewed = true;
            break;
        }
    }
    assert!(renewed, "the watcher swapped the renewed certificate in");
    assert_eq!(
        orders.thumbprint(),
        connector
            .connect("127.0.0.1", addr.port())
            .await
            .unwrap()
            .server_identity()
            .unwrap()
            .x5t_s256
    );
}

const POLICY: &str = r#"
[[rule]]
id = "gateway-reads-orders"
effect = "allow"
subjects = ["user:*"]
verbs = ["read"]
objects = ["orders/**"]
callers = ["spiffe://mesh.test/gateway"]
"#;

fn tokens() -> (Issuer, Arc<KeySet>) {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let keys = Arc::new(KeySet::single(key.verifying_key(Some("gw-1".into()))));
    (
        Issuer::new(key, "gw-1", "https://gw.mesh.test").audience("mesh.test"),
        keys,
    )
}

/// orders behind authenticate + authorize, over mutual TLS.
async fn orders_server(orders: &Workload, keys: Arc<KeySet>) -> SocketAddr {
    let verifier = Verifier::new(keys)
        .issuer("https://gw.mesh.test")
        .audience("mesh.test")
        .max_class(ExpiryClass::Fast);
    let policy = SharedPolicy::new(Policy::parse(POLICY, Format::Toml).unwrap());
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|Peer(p): Peer| async move { p.spiffe_id.to_string() }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(AuthenticateLayer::from_verifier(verifier, 100))
                .layer(AuthorizeLayer::new(policy)),
        );
    let (l, addr) = listener().await;
    tokio::spawn(TlsServer::new(orders.server_config(ClientAuth::Required)).serve(l, app));
    addr
}

#[tokio::test]
async fn the_peer_identity_is_the_caller_the_policy_sees() {
    let pki = Pki::new();
    let (issuer, keys) = tokens();
    let addr = orders_server(&pki.workload("orders"), keys).await;
    let token = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let url = format!("https://{addr}/orders/42");

    let gateway = client(pki.workload("gateway").client_config(ServerId::TrustDomain));
    let (status, body) = get_with(&gateway, url.clone(), Some(&token)).await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "spiffe://mesh.test/gateway")
    );

    // The same token from another workload: the rule names the gateway as the caller.
    let payments = client(
        pki.workload("payments")
            .client_config(ServerId::TrustDomain),
    );
    let (status, _) = get_with(&payments, url, Some(&token)).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_bound_token_replayed_from_another_workload_is_refused() {
    let pki = Pki::new();
    let (issuer, keys) = tokens();
    let addr = orders_server(&pki.workload("orders"), keys).await;
    let gateway = pki.workload("gateway");
    // Bound to the gateway's certificate (RFC 8705 cnf.x5t#S256).
    let bound = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast).cnf_x5t_s256(gateway.thumbprint()))
        .unwrap();
    let url = format!("https://{addr}/orders/42");
    let from_gateway = client(gateway.client_config(ServerId::TrustDomain));
    let (status, _) = get_with(&from_gateway, url.clone(), Some(&bound))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);

    // A second gateway replica with its own certificate (same SPIFFE ID): the policy would
    // allow it, the binding does not.
    let pki_dir2 = pki.path("replica");
    std::fs::create_dir_all(&pki_dir2).unwrap();
    let replica = pki
        .ca
        .issue(&"spiffe://mesh.test/gateway".parse().unwrap(), 1)
        .unwrap();
    pki.write("replica/gateway", &replica.cert_pem, &replica.key_pem);
    let replica = Workload::load(pki.files("replica/gateway")).unwrap();
    let from_replica = client(replica.client_config(ServerId::TrustDomain));
    let (status, _) = get_with(&from_replica, url.clone(), Some(&bound))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An unbound token from the replica is fine.
    let unbound = issuer
        .mint(&MintRequest::new("user:alice", ExpiryClass::Fast))
        .unwrap();
    let (status, _) = get_with(&from_replica, url, Some(&unbound)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

// ---- tonic over the same server -------------------------------------------------------------

#[tokio::test]
async fn a_tonic_handler_sees_the_peer_identity() {
    let pki = Pki::new();
    let inventory = pki.workload("inventory");
    let (l, addr) = listener().await;
    // The shared fixture, answering with the caller's SPIFFE ID from the request's extensions.
    let routes = tonic::service::Routes::new(InventoryServer::new(|req: tonic::Request<_>| {
        req.extensions()
            .get::<PeerIdentity>()
            .map(|p| ReserveReply {
                caller: p.spiffe_id.to_string(),
                ..ReserveReply::default()
            })
            .ok_or_else(|| Status::unauthenticated("no peer"))
    }));
    tokio::spawn(TlsServer::new(inventory.server_config(ClientAuth::Required)).serve(l, routes));

    let orders = pki.workload("orders");
    let connector = TlsConnector::new(orders.client_config(ServerId::exact(
        "spiffe://mesh.test/inventory".parse().unwrap(),
    )));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap();
    let reply = InventoryClient::with_origin(channel, format!("http://{addr}").parse().unwrap())
        .reserve("A-1")
        .await
        .unwrap();
    assert_eq!(reply.caller, "spiffe://mesh.test/orders");
}
