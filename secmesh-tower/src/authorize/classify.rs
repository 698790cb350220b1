//! Classifiers: which (verb, object) a request is.
//!
//! A classifier follows the **route**, never a header the client chooses: an HTTP route is
//! classified by [`DefaultClassifier`] whatever its `content-type` says, and a gRPC-only
//! service by [`GrpcClassifier`], which answers a request that is not gRPC with 415.
//!
//! The object is the request's [canonical object](secmesh_core::svo#the-canonical-object-of-a-request-path):
//! each path segment percent-decoded once, with encoded separators, dot segments, double
//! encoding, `;` parameters, control and bidi characters refused (400). For an accepted path,
//! the object's segments are exactly what axum's `Path` extractor yields, so the object the
//! policy allowed is the object the handler acts on; handlers may also read it from the
//! [`Permitted`](super::Permitted) proof in the request extensions.
//!
//! Every method maps to a verb or is refused: GET, HEAD and OPTIONS are `read`, POST
//! `create`, PUT and PATCH `update`, DELETE `delete`; any other method (TRACE, CONNECT,
//! WebDAV and extension methods) is refused with 405, audited like every denial.
//!
//! # Example
//! ```
//! use secmesh_core::{Object, Verb};
//! use secmesh_tower::authorize::{Classify, ClassifyError, ClassifyFn, DefaultClassifier};
//!
//! let parts = |m: &str, uri: &str| http::Request::builder().method(m).uri(uri).body(()).unwrap().into_parts().0;
//! let (verb, object) = DefaultClassifier.classify(&parts("GET", "/orders/42")).unwrap();
//! assert_eq!((verb.as_str(), object.as_str()), ("read", "orders/42"));
//! assert!(matches!(
//!     DefaultClassifier.classify(&parts("GET", "/orders/x%2F..%2Fadmin")),
//!     Err(ClassifyError::BadPath(_))
//! ));
//!
//! // A route whose POST is an approval, not a creation.
//! let approve = ClassifyFn(|p: &http::request::Parts| {
//!     let object = Object::from_path(p.uri.path())?;
//!     Ok((Verb::Other("approve".into()), object))
//! });
//! let (verb, _) = approve.classify(&parts("POST", "/refunds/7")).unwrap();
//! assert_eq!(verb.as_str(), "approve");
//! ```

use std::fmt;

use http::Method;
use http::request::Parts;
use secmesh_core::svo::SvoError;
use secmesh_core::{Object, Verb};

use crate::deny::{Denial, is_grpc};

/// Why a request could not be classified. Each maps to one [`Denial`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifyError {
    /// The path (or gRPC method path) is not a canonical object: 400 / INVALID_ARGUMENT.
    #[error("path: {0}")]
    BadPath(#[from] SvoError),
    /// The method maps to no verb: 405.
    #[error("method not allowed: {0}")]
    Method(Method),
    /// A request that is not gRPC reached a gRPC-only service: 415.
    #[error("not a gRPC request")]
    NotGrpc,
    /// The classifier does not know this request: 403 (it cannot be classified, so it cannot
    /// be allowed).
    #[error("unclassified request")]
    Unclassified,
}

impl ClassifyError {
    /// The denial this error is answered with.
    pub fn denial(&self) -> Denial {
        match self {
            ClassifyError::BadPath(e) => Denial::bad_request(format!("path: {e}")),
            ClassifyError::Method(m) => Denial::MethodNotAllowed {
                method: m.as_str().to_owned(),
            },
            ClassifyError::NotGrpc => Denial::UnsupportedMediaType,
            ClassifyError::Unclassified => Denial::forbidden(None, "unclassified request"),
        }
    }
}

/// Turns a request into the (verb, object) the policy speaks of.
pub trait Classify: Send + Sync + 'static {
    /// Classify one request (its head; the body is never read).
    fn classify(&self, parts: &Parts) -> Result<(Verb, Object), ClassifyError>;
}

/// The verb of an HTTP method: GET, HEAD and OPTIONS `read`, POST `create`, PUT and PATCH
/// `update`, DELETE `delete`; every other method is refused.
pub fn verb_of(method: &Method) -> Result<Verb, ClassifyError> {
    Verb::from_http_method(method.as_str()).ok_or_else(|| ClassifyError::Method(method.clone()))
}

/// The classifier for HTTP routes: the [verb of the method](verb_of) and the canonical
/// object of the path (`/orders/42` is `orders/42`). The `content-type` plays no part: a
/// client cannot turn an HTTP route into a gRPC `call` by sending `application/grpc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl Classify for DefaultClassifier {
    fn classify(&self, parts: &Parts) -> Result<(Verb, Object), ClassifyError> {
        let verb = verb_of(&parts.method)?;
        let object = Object::from_path(parts.uri.path())?;
        Ok((verb, object))
    }
}

/// The classifier for gRPC-only services (tonic): every request is `call` on
/// `package.Service/Method` ([`Object::from_grpc_path`]). A request that is not gRPC (no
/// `application/grpc` content type, or not a POST) is refused with 415, answered as plain
/// HTTP.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcClassifier;

impl Classify for GrpcClassifier {
    fn classify(&self, parts: &Parts) -> Result<(Verb, Object), ClassifyError> {
        if !is_grpc(&parts.headers) || parts.method != Method::POST {
            return Err(ClassifyError::NotGrpc);
        }
        let object = Object::from_grpc_path(parts.uri.path())?;
        Ok((Verb::grpc_call(), object))
    }
}

/// A classifier from a closure.
pub struct ClassifyFn<F>(pub F);

impl<F> fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClassifyFn")
    }
}

impl<F> Classify for ClassifyFn<F>
where
    F: Fn(&Parts) -> Result<(Verb, Object), ClassifyError> + Send + Sync + 'static,
{
    fn classify(&self, parts: &Parts) -> Result<(Verb, Object), ClassifyError> {
        (self.0)(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, grpc: bool) -> Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        if grpc {
            b = b.header("content-type", "application/grpc");
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn default_mapping() {
        let c = DefaultClassifier;
        let (v, o) = c.classify(&parts("GET", "/orders/42?x=1", false)).unwrap();
        assert_eq!((v.as_str(), o.as_str()), ("read", "orders/42"));
        let (v, _) = c.classify(&parts("PATCH", "/orders/42", false)).unwrap();
        assert_eq!(v, Verb::Update);
        for m in ["HEAD", "OPTIONS"] {
            let (v, _) = c.classify(&parts(m, "/orders", false)).unwrap();
            assert_eq!(v, Verb::Read, "{m}");
        }
        for m in ["TRACE", "CONNECT", "PROPFIND", "FOO", "get"] {
            let e = c.classify(&parts(m, "/orders", false)).unwrap_err();
            assert!(matches!(e, ClassifyError::Method(_)), "{m}");
            assert_eq!(e.denial().status(), 405);
        }
        let e = c.classify(&parts("GET", "/a//b", false)).unwrap_err();
        assert_eq!(e.denial().status(), 400);
    }

    #[test]
    fn the_route_decides_not_the_content_type() {
        // An HTTP route stays HTTP even when the client claims gRPC.
        let (v, o) = DefaultClassifier
            .classify(&parts("POST", "/orders/42", true))
            .unwrap();
        assert_eq!((v.as_str(), o.as_str()), ("create", "orders/42"));
        // A gRPC service refuses what is not gRPC.
        let g = GrpcClassifier;
        let (v, o) = g
            .classify(&parts("POST", "/payments.v1.Payments/Charge", true))
            .unwrap();
        assert_eq!(
            (v.as_str(), o.as_str()),
            ("call", "payments.v1.Payments/Charge")
        );
        for (m, path, grpc) in [
            ("GET", "/payments.v1.Payments/Charge", false),
            ("POST", "/payments.v1.Payments/Charge", false),
            ("GET", "/payments.v1.Payments/Charge", true),
        ] {
            let e = g.classify(&parts(m, path, grpc)).unwrap_err();
            assert_eq!(e, ClassifyError::NotGrpc);
            assert_eq!(e.denial().status(), 415);
        }
        let e = g
            .classify(&parts("POST", "/payments.v1.Payments%2FCharge", true))
            .unwrap_err();
        assert_eq!(e.denial().status(), 400);
    }
}
