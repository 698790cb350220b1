//! Why an exchange with the Txn-Token Service did not yield a txn-token.

use std::error::Error;
use std::time::Duration;

use secmesh_core::exchange::{ExchangeError, ResponseError};

use crate::serve::BoxError;

/// Why [`StsClient::exchange`](super::StsClient::exchange) (or building the client) failed.
/// No variant carries or prints the subject token or an issued token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StsClientError {
    /// The service refused the request with a well-formed RFC 6749 section 5.2 error (a 4xx
    /// whose body names one of the [`ErrorCode`](secmesh_core::exchange::ErrorCode)s): the
    /// code is the contract, the description (printable ASCII, at most 256 bytes) is the
    /// service's.
    #[error("the token service refused the request: {0}")]
    Refused(ExchangeError),
    /// A 3xx answer: redirects are never followed.
    #[error("the token service answered with a redirect ({0}), which is not followed")]
    Redirect(u16),
    /// Any other answer than 200 or a well-formed refusal (a 5xx, a 4xx without an RFC 6749
    /// body, a 2xx other than 200).
    #[error("the token service answered with status {0}")]
    Status(u16),
    /// A 200 whose body is not a Txn-Token Response: too large, not strict JSON, a member
    /// missing or not what the profile says, or an `access_token` that is not visible ASCII
    /// (a txn-token is a JWS compact serialization).
    #[error("the token service's answer is malformed: {0}")]
    Malformed(#[from] ResponseError),
    /// The exchange took longer than the total timeout (the connection is dropped).
    #[error("the token service did not answer within {0:?}")]
    Timeout(Duration),
    /// The TCP connection or the TLS handshake failed, or took longer than the connect
    /// timeout (the server's certificate or SPIFFE ID refused, nothing listening, ...).
    #[error("cannot connect to the token service: {}", detail(.0.as_ref()))]
    Connect(#[source] BoxError),
    /// The HTTP exchange failed after connecting (a protocol error, the connection closed
    /// mid-answer).
    #[error("the HTTP exchange with the token service failed: {}", detail(.0.as_ref()))]
    Http(#[source] BoxError),
    /// The endpoint URL cannot be used: not an absolute `https` URL with a host (or `http`
    /// without [`allow_http`](super::StsClientBuilder::allow_http)).
    #[error("invalid token service endpoint: {0}")]
    Endpoint(&'static str),
}

impl StsClientError {
    /// Whether the service itself refused the request ([`StsClientError::Refused`]), as
    /// opposed to not being reached or not answering in the profile.
    pub fn is_refused(&self) -> bool {
        matches!(self, StsClientError::Refused(_))
    }
}

/// What went wrong, from the error's causes: hyper-util's own wrapper ("client error
/// (Connect)") says little, its causes (the I/O or TLS error, hyper's) say what happened.
fn detail(e: &(dyn Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        parts.push(cause.to_string());
        next = cause.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secmesh_core::exchange::ErrorCode;

    #[test]
    fn messages_name_the_outcome() {
        let refused =
            StsClientError::Refused(ExchangeError::new(ErrorCode::InvalidScope, "too wide"));
        assert!(refused.is_refused());
        assert_eq!(
            refused.to_string(),
            "the token service refused the request: invalid_scope: too wide"
        );
        assert!(!StsClientError::Status(500).is_refused());
        assert!(StsClientError::Redirect(307).to_string().contains("307"));
        assert!(
            StsClientError::Malformed(ResponseError::TooLarge)
                .to_string()
                .contains("larger than")
        );
    }
}
