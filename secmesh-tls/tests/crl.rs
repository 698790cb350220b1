//! CRLs verified once at load, then consulted at every handshake: real TLS 1.3 handshakes over
//! 127.0.0.1 between workloads loaded from real files, with PKIs made per test (the internal
//! CA, and rcgen for roots with intermediates).
//!
//! What must hold: a CRL that the bundle's CA of its issuer name did not sign is refused at
//! load and on reload (the last good material stays); a CRL of another CA revokes nothing; a
//! revoked intermediate refuses its leaves and only them; an intermediate's own CRL still
//! revokes; a new CRL revokes at the next handshake; an expired CRL is enforced or ignored as
//! configured.
#![allow(clippy::unwrap_used)]

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SanType, SerialNumber,
};
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use secmesh_tls::ca::Ca;
use secmesh_tls::config::{ClientAuth, CrlExpiry, ServerId, TlsError, TlsFiles, Workload};
use time::OffsetDateTime;

/// Drive one side's handshake over `tcp`; the rustls error that ended it, if any.
fn drive<D>(
    conn: &mut rustls::ConnectionCommon<D>,
    tcp: &mut TcpStream,
) -> Result<(), rustls::Error> {
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(tcp) {
            if !conn.is_handshaking() {
                break;
            }
            return Err(rustls_error(e));
        }
    }
    Ok(())
}

fn rustls_error(e: io::Error) -> rustls::Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(e) => e.clone(),
        None => rustls::Error::General(e.to_string()),
    }
}

/// One mutual TLS handshake on 127.0.0.1: `(the server's result, the client's result)`. In TLS
/// 1.3 the server judges the client's certificate after the client is done, so a refused client
/// shows on the server's side, a refused server on the client's.
fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (Result<(), rustls::Error>, Result<(), rustls::Error>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bound = Some(Duration::from_secs(20)); // a bound on a hang, not a timing
    let server_side = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(bound).unwrap();
        let mut conn = ServerConnection::new(server).unwrap();
        drive(&mut conn, &mut tcp)
    });
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(bound).unwrap();
    let name = ServerName::try_from("orders.mesh.test").unwrap();
    let mut conn = ClientConnection::new(client, name).unwrap();
    let client_result = drive(&mut conn, &mut tcp);
    // The client's socket stays open until the server is done reading it.
    let server_result = server_side.join().unwrap();
    drop(tcp);
    (server_result, client_result)
}

fn configs(server: &Workload, client: &Workload) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    (
        server.server_config(ClientAuth::Required),
        client.client_config(ServerId::TrustDomain),
    )
}

fn refused_as(result: Result<(), rustls::Error>, want: CertificateError) {
    match result {
        Err(rustls::Error::InvalidCertificate(got)) => assert_eq!(got, want),
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

/// A CA made with rcgen: a root or an intermediate.
struct RcCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The certificate chain up to, not including, the root (PEM).
    chain_pem: String,
}

fn ca_params(cn: &str, serial: u8) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.serial_number = Some(SerialNumber::from_slice(&[0x40, serial]));
    p.use_authority_key_identifier_extension = true;
    p
}

fn root(cn: &str) -> RcCa {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    RcCa {
        issuer: CertifiedIssuer::self_signed(ca_params(cn, 1), key).unwrap(),
        chain_pem: String::new(),
    }
}

impl RcCa {
    fn intermediate(&self, cn: &str, serial: u8) -> RcCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let issuer = CertifiedIssuer::signed_by(ca_params(cn, serial), key, &self.issuer).unwrap();
        let chain_pem = format!("{}{}", issuer.pem(), self.chain_pem);
        RcCa { issuer, chain_pem }
    }

    /// An X.509-SVID for `spiffe://mesh.test/<name>`: `(chain PEM, key PEM)`.
    fn leaf(&self, name: &str, serial: u8) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "mesh.test");
        let uri = format!("spiffe://mesh.test/{name}");
        p.subject_alt_names = vec![SanType::URI(uri.as_str().try_into().unwrap())];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(SerialNumber::from_slice(&[0x20, serial]));
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (
            format!("{}{}", cert.pem(), self.chain_pem),
            key.serialize_pem(),
        )
    }

    /// A CRL revoking `serials` (as given to [`SerialNumber::from_slice`]), next update after
    /// `days` (negative: already past).
    fn crl(&self, serials: &[&[u8]], days: i64) -> String {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now + time::Duration::days(days.min(0) - 2),
            next_update: now + time::Duration::days(days),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now - time::Duration::days(3),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// Write a workload's files into `dir` under `name`; the bundle and CRL paths are shared.
fn files(dir: &Path, name: &str, (chain, key): &(String, String)) -> TlsFiles {
    let crt = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&crt, chain).unwrap();
    std::fs::write(&key_path, key).unwrap();
    TlsFiles::new(crt, key_path, dir.join("bundle.crt"))
}

fn write(path: PathBuf, text: &str) -> PathBuf {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Two internal CAs of the same trust domain: the same issuer name, different keys.
fn twin_cas(dir: &Path) -> (Ca, Ca) {
    let td = "mesh.test".parse().unwrap();
    (
        Ca::init(dir.join("ca"), td).unwrap(),
        Ca::init(dir.join("other"), "mesh.test".parse().unwrap()).unwrap(),
    )
}

fn issue(ca: &Ca, dir: &Path, name: &str) -> (TlsFiles, String) {
    let issued = ca
        .issue(&format!("spiffe://mesh.test/{name}").parse().unwrap(), 1)
        .unwrap();
    let files = files(dir, name, &(issued.cert_pem, issued.key_pem));
    (files, issued.serial)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_crl_the_named_ca_did_not_sign_is_refused_at_load_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = twin_cas(dir.path());
    std::fs::copy(dir.path().join("ca/ca.crt"), dir.path().join("bundle.crt")).unwrap();
    let (orders, _) = issue(&ca, dir.path(), "orders");
    let (gateway, gateway_serial) = issue(&ca, dir.path(), "gateway");
    // The other CA, named exactly like the bundle's, "revokes" the gateway: refused at load.
    other.revoke(&issue(&other, dir.path(), "decoy").1).unwrap();
    let forged = other.crl(1).unwrap();
    let crl = write(dir.path().join("ca.crl"), &forged);
    match Workload::load(orders.clone().crl(&crl)) {
        Err(TlsError::CrlNotVerified { index: 0, .. }) => {}
        other => panic!("expected CrlNotVerified, got {other:?}"),
    }

    // The real CRL revokes the gateway; the forged one swapped in later does not un-revoke it.
    ca.revoke(&gateway_serial).unwrap();
    write(dir.path().join("ca.crl"), &ca.crl(1).unwrap());
    let server = Workload::load(orders.crl(&crl)).unwrap();
    let client = Workload::load(gateway).unwrap();
    let (s, _) = handshake(server.server_config(ClientAuth::Required), {
        client.client_config(ServerId::TrustDomain)
    });
    refused_as(s, CertificateError::Revoked);
    write(dir.path().join("ca.crl"), &forged);
    assert!(matches!(
        server.reload(),
        Err(TlsError::CrlNotVerified { .. })
    ));
    let (s, _) = handshake(
        server.server_config(ClientAuth::Required),
        client.client_config(ServerId::TrustDomain),
    );
    refused_as(s, CertificateError::Revoked);
    // The forged CRL behind a good one is refused too: nothing is silently skipped.
    let both = format!("{}{}", ca.crl(1).unwrap(), forged);
    write(dir.path().join("ca.crl"), &both);
    assert!(matches!(
        server.reload(),
        Err(TlsError::CrlNotVerified { index: 1, .. })
    ));
}

#[test]
fn a_crl_of_a_ca_outside_the_bundle_revokes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse().unwrap()).unwrap();
    std::fs::copy(dir.path().join("ca/ca.crt"), dir.path().join("bundle.crt")).unwrap();
    let (orders, _) = issue(&ca, dir.path(), "orders");
    let (gateway, serial) = issue(&ca, dir.path(), "gateway");
    // A CA of another name lists the gateway's serial.
    let stranger = root("stranger");
    let crl = write(
        dir.path().join("ca.crl"),
        &stranger.crl(&[&hex(&serial)], 1),
    );
    let server = Workload::load(orders.crl(&crl)).unwrap();
    let client = Workload::load(gateway.crl(&crl)).unwrap();
    let (s, c) = handshake(
        server.server_config(ClientAuth::Required),
        client.client_config(ServerId::TrustDomain),
    );
    assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
}

/// A root (in the bundle) with two intermediates; the server's leaf directly under the root.
struct Tree {
    dir: tempfile::TempDir,
    root: RcCa,
    revoked_ca: RcCa,
    good_ca: RcCa,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = root("mesh root");
    std::fs::write(dir.path().join("bundle.crt"), root.issuer.pem()).unwrap();
    let revoked_ca = root.intermediate("mesh issuing 1", 2);
    let good_ca = root.intermediate("mesh issuing 2", 3);
    Tree {
        dir,
        root,
        revoked_ca,
        good_ca,
    }
}

#[test]
fn a_revoked_intermediate_refuses_its_leaves_and_only_them() {
    let t = tree();
    let d = t.dir.path();
    // The root revokes intermediate 1 (serial 40 02) and nothing else.
    let crl = write(d.join("root.crl"), &t.root.crl(&[&[0x40, 2]], 1));
    let server = Workload::load(files(d, "orders", &t.root.leaf("orders", 1)).crl(&crl)).unwrap();
    // A client loading the CRL would refuse its own certificate, so it loads none.
    let under_revoked = Workload::load(files(d, "a", &t.revoked_ca.leaf("a", 2))).unwrap();
    let under_good = Workload::load(files(d, "b", &t.good_ca.leaf("b", 3))).unwrap();
    assert!(matches!(
        Workload::load(files(d, "c", &t.revoked_ca.leaf("c", 4)).crl(&crl)),
        Err(TlsError::OwnCertificate { .. })
    ));

    let (s, _) = handshake(
        server.server_config(ClientAuth::Required),
        under_revoked.client_config(ServerId::TrustDomain),
    );
    refused_as(s, CertificateError::Revoked);
    let (s, c) = handshake(
        server.server_config(ClientAuth::Required),
        under_good.client_config(ServerId::TrustDomain),
    );
    assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
    // A client with the CRL refuses a server chained through the revoked intermediate.
    let client = Workload::load(files(d, "d", &t.good_ca.leaf("d", 5)).crl(&crl)).unwrap();
    let (_, c) = handshake(
        under_revoked.server_config(ClientAuth::Required),
        client.client_config(ServerId::TrustDomain),
    );
    refused_as(c, CertificateError::Revoked);
}

#[test]
fn an_intermediates_own_crl_revokes_its_leaves() {
    let t = tree();
    let d = t.dir.path();
    // Intermediate 2 revokes its leaf 20 07; its CRL is verified against the intermediate a
    // peer presents. A CRL of the root revoking nothing sits beside it.
    let both = format!("{}{}", t.root.crl(&[], 1), t.good_ca.crl(&[&[0x20, 7]], 1));
    let crl = write(d.join("all.crl"), &both);
    let server = Workload::load(files(d, "orders", &t.root.leaf("orders", 1)).crl(&crl)).unwrap();
    let revoked = Workload::load(files(d, "a", &t.good_ca.leaf("a", 7))).unwrap();
    let kept = Workload::load(files(d, "b", &t.good_ca.leaf("b", 8))).unwrap();
    let (s, _) = handshake(
        server.server_config(ClientAuth::Required),
        revoked.client_config(ServerId::TrustDomain),
    );
    refused_as(s, CertificateError::Revoked);
    let (s, c) = handshake(
        server.server_config(ClientAuth::Required),
        kept.client_config(ServerId::TrustDomain),
    );
    assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
}

#[test]
fn a_new_crl_revokes_a_certificate_at_the_next_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse().unwrap()).unwrap();
    std::fs::copy(dir.path().join("ca/ca.crt"), dir.path().join("bundle.crt")).unwrap();
    let crl = write(dir.path().join("ca.crl"), &ca.crl(1).unwrap());
    let (orders, orders_serial) = issue(&ca, dir.path(), "orders");
    let (gateway, gateway_serial) = issue(&ca, dir.path(), "gateway");
    let (other, _) = issue(&ca, dir.path(), "other");
    let server = Workload::load(orders.crl(&crl)).unwrap();
    let client = Workload::load(gateway.crl(&crl)).unwrap();
    let bystander = Workload::load(other.crl(&crl)).unwrap();
    let (server_config, client_config) = configs(&server, &client);
    let (s, c) = handshake(Arc::clone(&server_config), Arc::clone(&client_config));
    assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");

    ca.revoke(&gateway_serial).unwrap();
    write(dir.path().join("ca.crl"), &ca.crl(1).unwrap());
    server.reload().unwrap();
    // The configuration handed out before the reload sees the new CRL.
    let (s, _) = handshake(Arc::clone(&server_config), Arc::clone(&client_config));
    refused_as(s, CertificateError::Revoked);
    let (s, c) = handshake(
        Arc::clone(&server_config),
        bystander.client_config(ServerId::TrustDomain),
    );
    assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");

    // The client's side too: once it reloads, the revoked server is refused.
    ca.revoke(&orders_serial).unwrap();
    write(dir.path().join("ca.crl"), &ca.crl(1).unwrap());
    bystander.reload().unwrap();
    let (_, c) = handshake(
        server_config,
        bystander.client_config(ServerId::TrustDomain),
    );
    refused_as(c, CertificateError::Revoked);
}

#[test]
fn an_expired_crl_is_enforced_or_ignored_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Two roots: the server's, and the client's whose CRL is past its nextUpdate.
    let server_root = root("server root");
    let client_root = root("client root");
    std::fs::write(
        d.join("bundle.crt"),
        format!("{}{}", server_root.issuer.pem(), client_root.issuer.pem()),
    )
    .unwrap();
    let crl = write(d.join("stale.crl"), &client_root.crl(&[], -1));
    let client = Workload::load(files(d, "gateway", &client_root.leaf("gateway", 1))).unwrap();
    let orders = files(d, "orders", &server_root.leaf("orders", 1)).crl(&crl);
    let enforcing = Workload::load(orders.clone()).unwrap();
    let ignoring = Workload::load(orders.crl_expiry(CrlExpiry::Ignore)).unwrap();
    let (s, _) = handshake(
        enforcing.server_config(ClientAuth::Required),
        client.client_config(ServerId::TrustDomain),
    );
    refused_as(s, CertificateError::ExpiredRevocationList);
    let (s, c) = handshake(
        ignoring.server_config(ClientAuth::Required),
        client.client_config(ServerId::TrustDomain),
    );
    assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
}
