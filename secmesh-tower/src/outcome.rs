//! The request's outcome: one typed value, in the extensions.
//!
//! Each piece of the server stack moves the request's [`Outcome`] forward: authenticate makes
//! it [`Anonymous`](Outcome::Anonymous) or [`Authenticated`](Outcome::Authenticated) (with the
//! [`RequestContext`], which holds the verified claims), authorize makes it
//! [`Permitted`](Outcome::Permitted) (with the [`Permitted`] proof and the policy decision),
//! and any piece may end it as [`Denied`](Outcome::Denied) (with the typed [`DenyReason`]).
//! An allowed request carries it in its **request** extensions, for handlers and extractors;
//! every response carries it in its **response** extensions, where the audit layer builds the
//! event from it alone. No slot, no lock, and no piece imports the one outside it.
//!
//! # Example
//! ```
//! use http::{Request, Response, StatusCode};
//! use secmesh_tower::{Outcome, SecureLayer};
//! use secmesh_core::policy::SharedPolicy;
//! use secmesh_tokens::{Algorithm, KeySet, SigningKey, Verifier};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::generate(Algorithm::EdDsa)?;
//! let verifier = Verifier::new(KeySet::single(key.verifying_key(Some("k1".into()))));
//! let secure = SecureLayer::builder(verifier, SharedPolicy::default()).build()?;
//! let svc = secure.layer(service_fn(|_: Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//! }));
//! let res = svc.oneshot(Request::new(String::new())).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! let outcome = res.extensions().get::<Outcome>().unwrap();
//! assert_eq!(outcome.deny_reason().map(|r| r.kind()), Some("missing_token"));
//! # Ok(()) }
//! ```

use std::sync::Arc;

use secmesh_core::claims::Claims;
use secmesh_core::{Object, Verb};
use secmesh_tokens::Verified;

use crate::authorize::Permitted;
use crate::context::RequestContext;
use crate::deny::DenyReason;

/// Where a request stands: anonymous, authenticated, permitted, or denied.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// No token, and authentication is optional.
    Anonymous(RequestContext),
    /// A verified token; not (yet) authorized.
    Authenticated(RequestContext),
    /// Authorized: the proof, with the context it was decided for.
    Permitted(RequestContext, Permitted),
    /// Refused.
    Denied(Box<Denied>),
}

/// A refusal, with what was known of the request when it was refused.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Denied {
    /// Why.
    pub reason: DenyReason,
    /// The request's context, when the token was verified.
    pub ctx: Option<RequestContext>,
    /// The verb, when the request was classified.
    pub verb: Option<Verb>,
    /// The object, when the request was classified.
    pub object: Option<Object>,
    /// The calling workload (mTLS peer, else the token's current actor), when known.
    pub caller: Option<String>,
    /// What shadow (dry-run) rules decided, when a policy decided.
    pub shadow: Option<secmesh_core::policy::ShadowDecision>,
}

impl Denied {
    /// A refusal known only by its reason.
    pub fn new(reason: DenyReason) -> Denied {
        Denied {
            reason,
            ctx: None,
            verb: None,
            object: None,
            caller: None,
            shadow: None,
        }
    }

    /// With the request's context.
    #[must_use]
    pub fn with_ctx(mut self, ctx: Option<RequestContext>) -> Denied {
        self.ctx = ctx;
        self
    }

    /// Log the refusal at INFO: verb, object, subject, caller, reason kind and rule (never
    /// the token).
    pub(crate) fn log(&self) {
        crate::deny::log_denial(
            &self.reason,
            self.ctx
                .as_ref()
                .and_then(RequestContext::claims)
                .map(|c| c.sub.as_str()),
            self.verb.as_ref().map(Verb::as_str),
            self.object.as_ref().map(Object::as_str),
            self.caller.as_deref().or_else(|| {
                self.ctx
                    .as_ref()
                    .and_then(RequestContext::claims)
                    .and_then(Claims::current_actor)
            }),
        );
    }
}

impl From<DenyReason> for Denied {
    fn from(reason: DenyReason) -> Denied {
        Denied::new(reason)
    }
}

impl Outcome {
    /// A refusal.
    pub fn denied(denied: impl Into<Denied>) -> Outcome {
        Outcome::Denied(Box::new(denied.into()))
    }

    /// The request context, unless the request was refused before authentication.
    pub fn ctx(&self) -> Option<&RequestContext> {
        match self {
            Outcome::Anonymous(c) | Outcome::Authenticated(c) | Outcome::Permitted(c, _) => Some(c),
            Outcome::Denied(d) => d.ctx.as_ref(),
        }
    }

    /// The verified claims, when the request carried a valid token.
    pub fn claims(&self) -> Option<&Claims> {
        self.ctx().and_then(RequestContext::claims)
    }

    /// The verification proof, when the request carried a valid token.
    pub fn verified(&self) -> Option<&Arc<Verified<Claims>>> {
        self.ctx().and_then(RequestContext::verified)
    }

    /// The authorization proof, when the request was permitted.
    pub fn permitted(&self) -> Option<&Permitted> {
        match self {
            Outcome::Permitted(_, p) => Some(p),
            _ => None,
        }
    }

    /// The refusal, when the request was refused.
    pub fn denial(&self) -> Option<&Denied> {
        match self {
            Outcome::Denied(d) => Some(d),
            _ => None,
        }
    }

    /// Why the request was refused, when it was.
    pub fn deny_reason(&self) -> Option<&DenyReason> {
        self.denial().map(|d| &d.reason)
    }
}
