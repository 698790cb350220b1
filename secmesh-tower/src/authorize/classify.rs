//! Classifiers: which (verb, object) a request is.
//!
//! # Example
//! ```
//! use secmesh_core::{Object, Verb};
//! use secmesh_tower::authorize::{Classify, ClassifyFn, DefaultClassifier};
//!
//! let parts = |m: &str, uri: &str| http::Request::builder().method(m).uri(uri).body(()).unwrap().into_parts().0;
//! let (verb, object) = DefaultClassifier.classify(&parts("GET", "/orders/42")).unwrap();
//! assert_eq!((verb.as_str(), object.as_str()), ("read", "orders/42"));
//!
//! // A route whose POST is an approval, not a creation.
//! let approve = ClassifyFn(|p: &http::request::Parts| {
//!     let object = Object::from_path(p.uri.path()).ok()?;
//!     Some((Verb::Other("approve".into()), object))
//! });
//! let (verb, _) = approve.classify(&parts("POST", "/refunds/7")).unwrap();
//! assert_eq!(verb.as_str(), "approve");
//! ```

use std::fmt;

use http::request::Parts;
use secmesh_core::{Object, Verb};

use crate::deny::is_grpc;

/// Turns a request into the (verb, object) the policy speaks of. `None` refuses the request
/// (403: it cannot be classified, so it cannot be allowed).
pub trait Classify: Send + Sync + 'static {
    /// Classify one request (its head; the body is never read).
    fn classify(&self, parts: &Parts) -> Option<(Verb, Object)>;
}

/// The default: gRPC requests are `call` on `pkg.Service/Method`; HTTP requests map GET/HEAD to
/// read, POST to create, PUT/PATCH to update, DELETE to delete, and the path to the object
/// (`/orders/42` is `orders/42`). Other methods are not classified.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl Classify for DefaultClassifier {
    fn classify(&self, parts: &Parts) -> Option<(Verb, Object)> {
        let object = Object::from_path(parts.uri.path()).ok()?;
        if is_grpc(&parts.headers) {
            return Some((Verb::Other("call".into()), object));
        }
        Some((Verb::from_method(parts.method.as_str())?, object))
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
    F: Fn(&Parts) -> Option<(Verb, Object)> + Send + Sync + 'static,
{
    fn classify(&self, parts: &Parts) -> Option<(Verb, Object)> {
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
        assert!(c.classify(&parts("OPTIONS", "/orders", false)).is_none());
        assert!(c.classify(&parts("GET", "/a//b", false)).is_none());
        let (v, o) = c
            .classify(&parts("POST", "/payments.v1.Payments/Charge", true))
            .unwrap();
        assert_eq!(
            (v.as_str(), o.as_str()),
            ("call", "payments.v1.Payments/Charge")
        );
    }
}
