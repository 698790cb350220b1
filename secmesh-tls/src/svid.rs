//! From a certificate to a peer identity, enforcing the X.509-SVID leaf rules.
//!
//! A leaf X.509-SVID (SPIFFE X509-SVID §4, §5) has exactly one URI SAN, which is a valid SPIFFE
//! ID; it is not a CA (basicConstraints absent or `cA` false); its key usage is present and
//! marked critical, asserts `digitalSignature`, and asserts neither `keyCertSign` nor `cRLSign`.
//! [`peer_identity`] checks all of that on DER bytes (it does not check the chain or validity
//! dates: the TLS verifier does) and returns the [`PeerIdentity`]: the SPIFFE ID and the
//! base64url SHA-256 thumbprint of the certificate (`x5t#S256`, RFC 8705) that certificate-bound
//! tokens name.
//!
//! # Example
//! ```
//! use secmesh_tls::ca::Ca;
//! use secmesh_tls::svid::peer_identity;
//!
//! let dir = tempfile::tempdir()?;
//! let ca = Ca::init(dir.path(), "mesh.test".parse()?)?;
//! let issued = ca.issue(&"spiffe://mesh.test/orders".parse()?, 30)?;
//! let peer = peer_identity(&issued.cert_der)?;
//! assert_eq!(peer.spiffe_id.as_str(), "spiffe://mesh.test/orders");
//! assert_eq!(peer.x5t_s256.len(), 43);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secmesh_core::{PeerIdentity, SpiffeId};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate is not a usable X.509-SVID leaf.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// Not a DER X.509 certificate (or trailing bytes after it).
    #[error("not a DER X.509 certificate")]
    Malformed,
    /// No URI SAN, or more than one.
    #[error("an X.509-SVID has exactly one URI SAN (found {0})")]
    UriSanCount(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("the URI SAN is not a valid SPIFFE ID: {0}")]
    BadSpiffeId(String),
    /// The certificate is a CA certificate.
    #[error("a leaf SVID must not be a CA")]
    IsCa,
    /// Key usage missing, not critical, without digitalSignature, or with keyCertSign/cRLSign.
    #[error("key usage: {0}")]
    KeyUsage(&'static str),
}

/// base64url (no padding) SHA-256 of DER bytes: the `x5t#S256` thumbprint.
pub fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(secmesh_tokens::crypto::sha256(der))
}

/// The `x5t#S256` thumbprint of the first certificate in a PEM text (a certificate file, leaf
/// first): what `cnf` names to bind a token to that certificate (RFC 8705).
pub fn thumbprint_pem(pem: &str) -> Result<String, SvidError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| SvidError::Malformed)?;
    let (rest, _) = X509Certificate::from_der(&der).map_err(|_| SvidError::Malformed)?;
    if !rest.is_empty() {
        return Err(SvidError::Malformed);
    }
    Ok(thumbprint(&der))
}

/// The SPIFFE ID of a leaf X.509-SVID, after checking the leaf rules.
pub fn spiffe_id(der: &[u8]) -> Result<SpiffeId, SvidError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|_| SvidError::Malformed)?;
    if !rest.is_empty() {
        return Err(SvidError::Malformed);
    }
    let mut uris = Vec::new();
    let mut key_usage = None;
    let mut is_ca = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::URI(u) = name {
                        uris.push(*u);
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => key_usage = Some((ext.critical, *ku)),
            _ => {}
        }
    }
    if is_ca {
        return Err(SvidError::IsCa);
    }
    if uris.len() != 1 {
        return Err(SvidError::UriSanCount(uris.len()));
    }
    let id: SpiffeId = uris[0]
        .parse()
        .map_err(|e: secmesh_core::identity::SpiffeIdError| {
            SvidError::BadSpiffeId(e.to_string())
        })?;
    if is_ca {
        return Err(SvidError::IsCa);
    }
    let Some((critical, ku)) = key_usage else {
        return Err(SvidError::KeyUsage("missing"));
    };
    if !critical {
        return Err(SvidError::KeyUsage("not marked critical"));
    }
    if !ku.digital_signature() {
        return Err(SvidError::KeyUsage("digitalSignature not asserted"));
    }
    if ku.key_cert_sign() || ku.crl_sign() {
        return Err(SvidError::KeyUsage("keyCertSign or cRLSign asserted"));
    }
    Ok(id)
}

/// The peer identity of a leaf X.509-SVID: its SPIFFE ID and thumbprint.
pub fn peer_identity(der: &[u8]) -> Result<PeerIdentity, SvidError> {
    Ok(PeerIdentity {
        spiffe_id: spiffe_id(der)?,
        x5t_s256: thumbprint(der),
    })
}
