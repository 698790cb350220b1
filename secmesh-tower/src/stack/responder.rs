//! The stack's response body, and how a denial becomes one.
//!
//! The stack answers any inner body type: its responses have the body [`SecureBody`], either
//! the inner service's body, untouched, or the bytes a [`Responder`](crate::deny::Responder)
//! made for a denial. So one [`SecureLayer`](super::SecureLayer) protects an axum router and a
//! tonic server alike, and the responder chooses problem+json or a gRPC status from the
//! request itself.
//!
//! # Example
//! ```
//! use bytes::Bytes;
//! use http_body::Body as _;
//! use secmesh_tower::deny::DenyBody;
//! use secmesh_tower::stack::SecureBody;
//!
//! let denial: SecureBody<String> = SecureBody::from_bytes(Bytes::from_static(b"{}"));
//! assert_eq!(denial.size_hint().exact(), Some(2));
//! let inner = SecureBody::Inner { body: String::from("ok") };
//! assert!(!inner.is_end_stream());
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use crate::deny::{DenyBody, Responder};
use crate::outcome::{Denied, Outcome};

/// The body of a [`SecureLayer`](super::SecureLayer) response: the inner service's, or a
/// denial's.
#[pin_project(project = SecureBodyProj)]
#[derive(Debug)]
pub enum SecureBody<B> {
    /// The inner service's body.
    Inner {
        /// The body.
        #[pin]
        body: B,
    },
    /// A denial's body (empty for gRPC).
    Denial {
        /// The bytes not yet sent.
        data: Option<Bytes>,
    },
}

impl<B> DenyBody for SecureBody<B> {
    fn from_bytes(bytes: Bytes) -> Self {
        SecureBody::Denial {
            data: (!bytes.is_empty()).then_some(bytes),
        }
    }
}

impl<B> Body for SecureBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project() {
            SecureBodyProj::Inner { body } => body.poll_frame(cx),
            SecureBodyProj::Denial { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SecureBody::Inner { body } => body.is_end_stream(),
            SecureBody::Denial { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SecureBody::Inner { body } => body.size_hint(),
            SecureBody::Denial { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// The response for a refusal: logged at INFO, answered by `responder`, with the
/// [`Outcome`] in its extensions.
pub(crate) fn deny<B, R: Responder>(
    responder: &R,
    request_headers: &HeaderMap,
    denied: Denied,
) -> Response<SecureBody<B>> {
    denied.log();
    let mut res = responder
        .respond(request_headers, &denied.reason)
        .map(SecureBody::from_bytes);
    res.extensions_mut().insert(Outcome::denied(denied));
    res
}
