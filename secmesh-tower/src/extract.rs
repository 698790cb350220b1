//! axum extractors (feature `axum`): the verified claims, the subject, the authorization
//! decision and the mutual-TLS [`Peer`], taken from what the layers put in the request
//! extensions.
//!
//! They read the request's [`Outcome`]. `Claims` and `Subject` reject when the request has no
//! verified token (e.g. the authenticate layer runs in optional mode and the request came
//! anonymously), and `Peer` when the connection has no client certificate, with
//! [`DenyReason::MissingToken`] answered by the default [`Responder`] ([`ProblemJson`]: 401
//! problem+json with `WWW-Authenticate`, or gRPC UNAUTHENTICATED for a gRPC request), like
//! any other denial; `Option<Claims>` and `Option<Peer>` never reject. `Decision` rejects with
//! a 500 problem when the authorize layer is not installed: that is a server bug, not the
//! caller's.
//!
//! # Example
//! ```
//! use axum::{Router, routing::get};
//! use secmesh_tower::extract::{Claims, Decision, Subject};
//!
//! async fn order(Subject(sub): Subject, claims: Claims, decision: Decision) -> String {
//!     format!("{sub} may {} {} (txn {:?})", decision.permitted.verb(), decision.permitted.object(), claims.txn)
//! }
//! let app: Router = Router::new().route("/orders/{id}", get(order));
//! ```

use std::convert::Infallible;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use secmesh_tokens::Verified;

use crate::authorize::Permitted;
use crate::deny::{DenyReason, ProblemJson, Responder};
use crate::outcome::{Denied, Outcome};

/// Why an extractor refused: a denial answered by the [`Responder`], or a server bug (500).
#[derive(Debug)]
pub struct Rejection {
    kind: RejectionKind,
    /// The request's content type, to answer gRPC in gRPC.
    content_type: Option<http::HeaderValue>,
}

#[derive(Debug)]
enum RejectionKind {
    Denied(DenyReason),
    ServerBug(&'static str),
}

impl Rejection {
    fn denied(parts: &Parts, reason: DenyReason) -> Rejection {
        Rejection {
            kind: RejectionKind::Denied(reason),
            content_type: parts.headers.get(CONTENT_TYPE).cloned(),
        }
    }

    /// The denial, when it is one.
    pub fn reason(&self) -> Option<&DenyReason> {
        match &self.kind {
            RejectionKind::Denied(r) => Some(r),
            RejectionKind::ServerBug(_) => None,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self.kind {
            RejectionKind::Denied(reason) => {
                let mut headers = HeaderMap::new();
                if let Some(ct) = self.content_type {
                    headers.insert(CONTENT_TYPE, ct);
                }
                let denied = Denied::new(reason);
                denied.log();
                let mut res = ProblemJson
                    .respond(&headers, &denied.reason)
                    .map(axum::body::Body::from);
                res.extensions_mut().insert(Outcome::denied(denied));
                res
            }
            RejectionKind::ServerBug(what) => {
                tracing::error!(target: "secmesh::extract", "{what}");
                let body = serde_json::json!({
                    "type": "about:blank",
                    "title": "Internal Server Error",
                    "status": 500,
                })
                .to_string();
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(CONTENT_TYPE, "application/problem+json")],
                    body,
                )
                    .into_response()
            }
        }
    }
}

fn verified(parts: &Parts) -> Option<&Arc<Verified<secmesh_core::Claims>>> {
    parts
        .extensions
        .get::<Outcome>()
        .and_then(Outcome::verified)
}

/// The verified claims of the request's token. Derefs to [`secmesh_core::Claims`].
#[derive(Clone, Debug)]
pub struct Claims(pub Arc<Verified<secmesh_core::Claims>>);

impl Deref for Claims {
    type Target = secmesh_core::Claims;
    fn deref(&self) -> &Self::Target {
        self.0.claims()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match verified(parts) {
            Some(v) => Ok(Claims(v.clone())),
            None => Err(Rejection::denied(parts, DenyReason::MissingToken)),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Claims {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Infallible> {
        Ok(verified(parts).cloned().map(Claims))
    }
}

/// The token's subject (`sub`), e.g. `user:alice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Subject {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match verified(parts) {
            Some(v) => Ok(Subject(v.claims().sub.to_string())),
            None => Err(Rejection::denied(parts, DenyReason::MissingToken)),
        }
    }
}

/// The authorization outcome: the proof, and the policy decision when a policy decided.
#[derive(Clone, Debug)]
pub struct Decision {
    /// What was permitted.
    pub permitted: Permitted,
    /// The policy decision (rule, reason, shadow outcome).
    pub policy: Option<secmesh_core::policy::Decision>,
}

impl<S: Send + Sync> FromRequestParts<S> for Decision {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(permitted) = parts
            .extensions
            .get::<Outcome>()
            .and_then(Outcome::permitted)
            .cloned()
        else {
            return Err(Rejection {
                kind: RejectionKind::ServerBug(
                    "Decision extractor used without the authorize layer",
                ),
                content_type: None,
            });
        };
        let policy = permitted.decision().cloned();
        Ok(Decision { permitted, policy })
    }
}

/// The mutual-TLS peer's verified identity (SPIFFE ID and certificate thumbprint), put in the
/// extensions by the TLS serving side. Rejects with 401 on a connection without a client
/// certificate; `Option<Peer>` never rejects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer(pub secmesh_core::PeerIdentity);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<secmesh_core::PeerIdentity>() {
            Some(p) => Ok(Peer(p.clone())),
            None => Err(Rejection::denied(parts, DenyReason::MissingToken)),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts
            .extensions
            .get::<secmesh_core::PeerIdentity>()
            .cloned()
            .map(Peer))
    }
}
