//! axum extractors (feature `axum`): the verified claims, the subject, the authorization
//! decision and the mutual-TLS [`Peer`], taken from what the layers put in the request
//! extensions.
//!
//! `Claims` and `Subject` reject with 401 when the request has no verified token (e.g. the
//! authenticate layer runs in optional mode and the request came anonymously);
//! `Option<Claims>` never rejects. `Decision` rejects with 500 when the authorize layer is not
//! installed: that is a server bug, not the caller's.
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
use http::StatusCode;
use http::request::Parts;
use secmesh_tokens::Verified;

use crate::authorize::Permitted;

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
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Verified<secmesh_core::Claims>>>()
            .cloned()
            .map(Claims)
            .ok_or(StatusCode::UNAUTHORIZED)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Claims {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts
            .extensions
            .get::<Arc<Verified<secmesh_core::Claims>>>()
            .cloned()
            .map(Claims))
    }
}

/// The token's subject (`sub`), e.g. `user:alice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Subject {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Verified<secmesh_core::Claims>>>()
            .map(|v| Subject(v.claims().sub.to_string()))
            .ok_or(StatusCode::UNAUTHORIZED)
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
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(permitted) = parts.extensions.get::<Permitted>().cloned() else {
            tracing::error!(target: "secmesh::authorize", "Decision extractor used without the authorize layer");
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        };
        Ok(Decision {
            permitted,
            policy: parts
                .extensions
                .get::<secmesh_core::policy::Decision>()
                .cloned(),
        })
    }
}

/// The mutual-TLS peer's verified identity (SPIFFE ID and certificate thumbprint), put in the
/// extensions by the TLS serving side. Rejects with 401 on a connection without a client
/// certificate; `Option<Peer>` never rejects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer(pub secmesh_core::PeerIdentity);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<secmesh_core::PeerIdentity>()
            .cloned()
            .map(Peer)
            .ok_or(StatusCode::UNAUTHORIZED)
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
