//! The body of the responses the JWKS endpoint builds itself.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::deny::DenyBody;

/// A whole body in one frame (or none): the standalone endpoint's body.
#[derive(Clone, Debug, Default)]
pub struct JwksBody(Option<Bytes>);

impl JwksBody {
    /// A body holding `bytes`.
    pub fn new(bytes: Bytes) -> JwksBody {
        JwksBody((!bytes.is_empty()).then_some(bytes))
    }
}

impl DenyBody for JwksBody {
    fn from_bytes(bytes: Bytes) -> Self {
        JwksBody::new(bytes)
    }
}

impl Body for JwksBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}
