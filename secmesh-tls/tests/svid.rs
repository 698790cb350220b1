//! X.509-SVID leaf rules on certificates made by the CA and by hand (rcgen).
#![allow(clippy::unwrap_used)]

use rcgen::{CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};
use secmesh_tls::ca::{Ca, CaError};
use secmesh_tls::svid::{SvidError, peer_identity, spiffe_id, thumbprint};
use x509_parser::prelude::{FromDer, X509Certificate};

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn self_signed(sans: Vec<SanType>, usages: Vec<KeyUsagePurpose>, ca: bool) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.subject_alt_names = sans;
    p.key_usages = usages;
    if ca {
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    p.self_signed(&key).unwrap().der().to_vec()
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

#[test]
fn issued_svids_follow_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path(), "mesh.test".parse().unwrap()).unwrap();
    let issued = ca
        .issue(&"spiffe://mesh.test/ns/prod/sa/orders".parse().unwrap(), 30)
        .unwrap();
    assert_eq!(pem_der(&issued.cert_pem), issued.cert_der);
    let peer = peer_identity(&issued.cert_der).unwrap();
    assert_eq!(
        peer.spiffe_id.as_str(),
        "spiffe://mesh.test/ns/prod/sa/orders"
    );
    assert_eq!(peer.x5t_s256, thumbprint(&issued.cert_der));

    let (_, cert) = X509Certificate::from_der(&issued.cert_der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let validity = cert.validity();
    let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
    assert_eq!(days, 30);

    // The CA's own certificate is not a leaf SVID.
    assert_eq!(spiffe_id(&pem_der(ca.cert_pem())), Err(SvidError::IsCa));
    // Reopened from disk, the CA keeps issuing in its trust domain only.
    let again = Ca::open(dir.path()).unwrap();
    assert!(matches!(
        again.issue(&"spiffe://evil.test/x".parse().unwrap(), 30),
        Err(CaError::WrongTrustDomain { .. })
    ));
    assert!(matches!(
        Ca::init(dir.path(), "mesh.test".parse().unwrap()),
        Err(CaError::State(_))
    ));
}

#[test]
fn leaf_rules_are_enforced() {
    let sig = vec![KeyUsagePurpose::DigitalSignature];
    assert_eq!(
        spiffe_id(&self_signed(vec![], sig.clone(), false)),
        Err(SvidError::UriSanCount(0))
    );
    assert_eq!(
        spiffe_id(&self_signed(
            vec![uri("spiffe://a.test/x"), uri("spiffe://a.test/y")],
            sig.clone(),
            false
        )),
        Err(SvidError::UriSanCount(2))
    );
    assert!(matches!(
        spiffe_id(&self_signed(
            vec![uri("https://a.test/x")],
            sig.clone(),
            false
        )),
        Err(SvidError::BadSpiffeId(_))
    ));
    assert_eq!(
        spiffe_id(&self_signed(vec![uri("spiffe://a.test/x")], vec![], false)),
        Err(SvidError::KeyUsage("missing"))
    );
    assert_eq!(
        spiffe_id(&self_signed(
            vec![uri("spiffe://a.test/x")],
            vec![KeyUsagePurpose::KeyEncipherment],
            false
        )),
        Err(SvidError::KeyUsage("digitalSignature not asserted"))
    );
    assert_eq!(
        spiffe_id(&self_signed(
            vec![uri("spiffe://a.test/x")],
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign
            ],
            false
        )),
        Err(SvidError::KeyUsage("keyCertSign or cRLSign asserted"))
    );
    assert_eq!(
        spiffe_id(&self_signed(
            vec![uri("spiffe://a.test/x")],
            sig.clone(),
            true
        )),
        Err(SvidError::IsCa)
    );
    // DNS SANs beside the one URI SAN are allowed; garbage is not a certificate.
    let ok = self_signed(
        vec![
            uri("spiffe://a.test/x"),
            SanType::DnsName("x.a.test".try_into().unwrap()),
        ],
        sig,
        false,
    );
    assert_eq!(spiffe_id(&ok).unwrap().as_str(), "spiffe://a.test/x");
    let mut trailing = ok.clone();
    trailing.push(0);
    assert_eq!(spiffe_id(&trailing), Err(SvidError::Malformed));
    assert_eq!(spiffe_id(b"not a certificate"), Err(SvidError::Malformed));
}

#[test]
fn revocation_and_crl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path(), "mesh.test".parse().unwrap()).unwrap();
    let a = ca
        .issue(&"spiffe://mesh.test/a".parse().unwrap(), 1)
        .unwrap();
    let _b = ca
        .issue(&"spiffe://mesh.test/b".parse().unwrap(), 1)
        .unwrap();
    ca.revoke(&a.serial).unwrap();
    ca.revoke(&a.serial).unwrap();
    assert!(matches!(ca.revoke("00ff"), Err(CaError::UnknownSerial(_))));
    let crl_pem = ca.crl(7).unwrap();
    let der = pem_der(&crl_pem);
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
    let serials: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    assert_eq!(serials, vec![a.serial]);
}
