//! What can go wrong: loading the files ([`TlsError`]) and a peer's certificate
//! ([`PeerRejected`]).

use std::path::PathBuf;

use crate::svid::SvidError;

/// Loading a workload's files failed. The previous material, if any, stays in use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file holds no PEM object of the kind expected, or a malformed one.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The private key is unusable, or does not belong to the certificate.
    #[error("{path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The workload's own certificate is not an X.509-SVID leaf.
    #[error("{path}: not an X.509-SVID: {source}")]
    NotAnSvid {
        /// The certificate file.
        path: PathBuf,
        /// The rule it breaks.
        source: SvidError,
    },
    /// A CA certificate cannot serve as a trust anchor, or a CRL does not parse.
    #[error("{path}: {reason}")]
    Trust {
        /// The CA bundle or CRL file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A CRL names a CA of the bundle as its issuer, but no CA of the bundle of that name
    /// signed it: refused when loaded (a CRL signed by another CA must not revoke anything).
    #[error("{path}: CRL #{index} refused: {reason}")]
    CrlNotVerified {
        /// The CRL file.
        path: PathBuf,
        /// The CRL's position in the file, from 0.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The workload's own certificate does not chain to the bundle (or is expired or revoked).
    #[error("{path}: the workload certificate does not verify against the CA bundle: {reason}")]
    OwnCertificate {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Why a peer's certificate was refused, beyond the chain checks rustls reports itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRejected {
    /// The leaf is not an X.509-SVID.
    #[error("peer certificate is not an X.509-SVID: {0}")]
    NotAnSvid(SvidError),
    /// The peer's SPIFFE ID is in another trust domain.
    #[error("peer {id} is not in the trust domain {expected}")]
    ForeignTrustDomain {
        /// The peer's ID.
        id: String,
        /// This workload's trust domain.
        expected: String,
    },
    /// The server's SPIFFE ID is not the one the client expects.
    #[error("server is {id}, expected {expected}")]
    UnexpectedServer {
        /// The server's ID.
        id: String,
        /// What the client accepts.
        expected: String,
    },
}
