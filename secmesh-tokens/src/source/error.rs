//! Why a key source could not load or refresh its keys.

/// Why a key source could not fetch, read or accept a key set; the last good set stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The URL or issuer is not an absolute `http(s)` URL with a host.
    #[error("invalid URL: {0}")]
    Url(String),
    /// A plain `http` URL where `allow_http` is off.
    #[error("plain http is not allowed (only https, unless allow_http is set)")]
    InsecureScheme,
    /// An `https` URL and no rustls client configuration was given.
    #[error("an https URL needs a rustls client configuration")]
    NoTlsConfig,
    /// The TCP connection or the TLS handshake failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The fetch took longer than the connect or total timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The HTTP exchange failed (protocol error, connection closed).
    #[error("HTTP: {0}")]
    Http(String),
    /// A 3xx answer: redirects are never followed.
    #[error("redirect ({status}) refused")]
    Redirect {
        /// The status code.
        status: u16,
    },
    /// Any other answer than 200.
    #[error("unexpected status {status}")]
    Status {
        /// The status code.
        status: u16,
    },
    /// The body is larger than the limit.
    #[error("the body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The JWKS was refused by the strict key-set parser.
    #[error("invalid JWKS: {0}")]
    Keys(#[from] crate::error::KeyError),
    /// The metadata document is malformed or lacks `issuer` / `jwks_uri`.
    #[error("invalid metadata: {0}")]
    Metadata(String),
    /// The metadata names another issuer than the one configured (compared byte for byte).
    #[error("the metadata names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The metadata's `issuer`.
        found: String,
    },
    /// The key file could not be read.
    #[error("cannot read the key file: {0}")]
    Read(String),
    /// A background task was needed outside a tokio runtime.
    #[error("the key source needs a tokio runtime")]
    NoRuntime,
}
