//! The peer checks: the chain (bundle, validity, CRLs verified at load, usage), the X.509-SVID leaf rules and
//! the SPIFFE ID, as rustls verifiers for servers and clients, and the resolver that hands out
//! the current certificate.

use std::fmt;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use secmesh_core::SpiffeId;
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy, VerifiedPath,
};

use super::material::Material;
use super::{ClientAuth, CrlExpiry, Inner, PeerRejected, ServerId};
use crate::svid;

/// A check of each path webpki finds.
type PathCheck<'a> = dyn Fn(&VerifiedPath<'_>) -> Result<(), webpki::Error> + 'a;

pub(super) fn check_chain(
    m: &Material,
    crl_expiry: CrlExpiry,
    provider: &CryptoProvider,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: KeyUsage,
) -> Result<(), rustls::Error> {
    let cert = EndEntityCert::try_from(end_entity).map_err(pki_error)?;
    let algs = provider.signature_verification_algorithms.all;
    let Some(list) = m.crls.per_handshake() else {
        // The CRLs were verified at load: the chain is built without them, and each path found
        // is checked against their index (a revoked path lets webpki try another, as with CRLs).
        let check = |path: &VerifiedPath<'_>| m.crls.check_path(path, now, crl_expiry);
        let check: Option<&PathCheck<'_>> = if m.crls.is_empty_index() {
            None
        } else {
            Some(&check)
        };
        return cert
            .verify_for_usage(algs, &m.roots, intermediates, now, usage, None, check)
            .map(|_| ())
            .map_err(pki_error);
    };
    let crls: Vec<&CertRevocationList<'_>> = list.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::Chain)
            // A CRL speaks for the CA that signed it; certificates of other CAs in the bundle
            // have no CRL to consult.
            .with_status_policy(UnknownStatusPolicy::Allow)
            .with_expiration_policy(match crl_expiry {
                CrlExpiry::Enforce => ExpirationPolicy::Enforce,
                CrlExpiry::Ignore => ExpirationPolicy::Ignore,
            })
            .build()
    });
    cert.verify_for_usage(algs, &m.roots, intermediates, now, usage, revocation, None)
        .map(|_| ())
        .map_err(pki_error)
}

/// The peer's SPIFFE ID after the chain and leaf checks.
pub(super) fn verify_peer(
    inner: &Inner,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: KeyUsage,
) -> Result<SpiffeId, rustls::Error> {
    let m = inner.material.load();
    check_chain(
        &m,
        inner.files.crl_expiry,
        &inner.provider,
        end_entity,
        intermediates,
        now,
        usage,
    )?;
    let id = svid::spiffe_id(end_entity).map_err(|e| rejected(PeerRejected::NotAnSvid(e)))?;
    if !id.is_member_of(&m.trust_domain) {
        return Err(rejected(PeerRejected::ForeignTrustDomain {
            id: id.to_string(),
            expected: m.trust_domain.as_str().to_owned(),
        }));
    }
    Ok(id)
}

fn rejected(e: PeerRejected) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The rustls error for a webpki one (rustls's own mapping is private).
fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let ce = match e {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::CertRevoked => CertificateError::Revoked,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        E::CrlExpired { .. } => CertificateError::ExpiredRevocationList,
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => CertificateError::BadSignature,
        E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(ce)
}

/// Hands out the current certificate and key, to servers and to clients.
pub(super) struct Resolver(pub(super) Arc<Inner>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("secmesh_tls::Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.material.load().key))
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.material.load().key))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn verify_tls13(
    inner: &Inner,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &inner.provider.signature_verification_algorithms,
    )
}

fn schemes(inner: &Inner) -> Vec<SignatureScheme> {
    inner
        .provider
        .signature_verification_algorithms
        .supported_schemes()
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("secmesh offers TLS 1.3 only".into())
}

/// Servers check clients with this.
pub(super) struct SvidClientVerifier {
    pub(super) inner: Arc<Inner>,
    pub(super) auth: ClientAuth,
}

impl fmt::Debug for SvidClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidClientVerifier")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for SvidClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.auth == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints are optional and borrowed from `self`; the bundle may change on reload, so
        // send none (clients of a mesh have one certificate anyway).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        verify_peer(
            &self.inner,
            end_entity,
            intermediates,
            now,
            KeyUsage::client_auth(),
        )
        .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(&self.inner, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes(&self.inner)
    }
}

/// Clients check servers with this.
pub(super) struct SvidServerVerifier {
    pub(super) inner: Arc<Inner>,
    pub(super) expected: ServerId,
}

impl fmt::Debug for SvidServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidServerVerifier")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for SvidServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = verify_peer(
            &self.inner,
            end_entity,
            intermediates,
            now,
            KeyUsage::server_auth(),
        )?;
        if !self.expected.accepts(&id) {
            return Err(rejected(PeerRejected::UnexpectedServer {
                id: id.to_string(),
                expected: self.expected.to_string(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(&self.inner, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes(&self.inner)
    }
}
