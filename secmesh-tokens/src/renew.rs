//! Renewal for long-running work: a [`Renewer`] hands out a valid token for a transaction and
//! re-mints it before it expires.
//!
//! The rules of DESIGN.md hold by construction: a renewed token keeps `sub`, `aud`, `txn`,
//! `act`, `req_wl`, `cnf` and the class of the one it renews; its scope may be narrowed
//! ([`Renewer::narrow`]) and never widened. Each renewal gets a new `jti`, `iat` and `exp`.
//!
//! Two modes:
//!
//! - with the signing key ([`Renewer::start`]): the renewer re-mints the token itself;
//! - through the Txn-Token Service ([`Renewer::through`]): the process holds no key; each
//!   renewal asks the service for a replacement txn-token ([`Replace`]; the service keeps
//!   `txn`, `sub` and `aud`, only narrows the scope and never makes the class slower) and the
//!   renewer checks the answer against the same rules before it uses it (a service that
//!   broke them is refused: [`RenewError::Broken`]). Use [`token_async`](Renewer::token_async)
//!   and [`narrow_async`](Renewer::narrow_async); the synchronous [`token`](Renewer::token)
//!   returns the current token while it is valid.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use secmesh_core::{ExpiryClass, ManualClock};
//! use secmesh_core::claims::Scope;
//! use secmesh_tokens::renew::Renewer;
//! use secmesh_tokens::{Algorithm, Issuer, MintRequest, SigningKey};
//!
//! let clock = Arc::new(ManualClock::new(1_800_000_000));
//! let issuer = Arc::new(
//!     Issuer::new(SigningKey::generate(Algorithm::EdDsa)?, "k1", "batch")
//!         .audience("mesh.test")
//!         .clock(clock.clone()),
//! );
//! let renewer = Renewer::start(
//!     issuer,
//!     &MintRequest::new("svc:reconcile", ExpiryClass::Fast).grant("read", "ledger/**").grant("write", "ledger/2026"),
//! )?
//! .margin(30)
//! .clock(clock.clone());
//! let first = renewer.token()?;
//! clock.advance(100);
//! assert_eq!(renewer.token()?, first, "still fresh");
//! clock.advance(60);
//! let second = renewer.token()?;
//! assert_ne!(second, first, "renewed 30 s before expiry");
//! assert_eq!(renewer.claims().txn, renewer.claims().txn);
//!
//! renewer.narrow(Scope::new("read:ledger/**")?)?;
//! assert!(renewer.narrow(Scope::new("delete:ledger/**")?).is_err(), "never widened");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use secmesh_core::ExpiryClass;
use secmesh_core::claims::{Claims, Scope};
use secmesh_core::{Clock, SystemClock};

use crate::error::{SignError, VerifyError};
use crate::issuer::{Issuer, MintRequest};
use crate::verifier::Verifier;

/// The future of a [`Replace`].
pub type ReplaceFuture<'a> = Pin<Box<dyn Future<Output = Result<String, RenewError>> + Send + 'a>>;

/// Something that replaces a txn-token: the Txn-Token Service (its client, or the service
/// embedded in this process).
pub trait Replace: Send + Sync + 'static {
    /// A replacement of `token` with `scope` (within the token's), in `class` (never slower
    /// than the token's).
    fn replace<'a>(
        &'a self,
        token: &'a str,
        scope: &'a Scope,
        class: ExpiryClass,
    ) -> ReplaceFuture<'a>;
}

/// Why a renewal was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenewError {
    /// Minting failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The new scope is not within the current one.
    #[error("renewal may narrow a scope, never widen it")]
    Widening,
    /// The Txn-Token Service refused the replacement (its RFC 6749 error).
    #[error("the Txn-Token Service refused the replacement: {0}")]
    Refused(String),
    /// The Txn-Token Service could not be asked.
    #[error("the Txn-Token Service is unavailable: {0}")]
    Unavailable(String),
    /// A token from the service does not verify.
    #[error("the replacement does not verify: {0}")]
    Invalid(#[from] VerifyError),
    /// A replacement broke a renewal rule (another `txn`, `sub` or audience, a wider scope, a
    /// slower class): refused, the current token stays.
    #[error("the replacement breaks a renewal rule: {0}")]
    Broken(&'static str),
    /// The current token expired and the renewal mode needs [`Renewer::token_async`].
    #[error("the token expired; renew with token_async")]
    Expired,
    /// The renewer renews through the Txn-Token Service: use the async methods.
    #[error("this renewer renews through the Txn-Token Service: use narrow_async")]
    NeedsAsync,
}

enum Mode {
    Local(Arc<Issuer>),
    Remote {
        replace: Arc<dyn Replace>,
        verifier: Arc<Verifier>,
        renewing: AtomicBool,
    },
}

struct Current {
    token: String,
    claims: Claims,
}

/// Keeps a token of one transaction fresh. Share it in an `Arc`; `token()` is cheap while the
/// current token is fresh.
pub struct Renewer {
    mode: Mode,
    current: Mutex<Current>,
    margin: u64,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Renewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renewer")
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl Renewer {
    /// Mint the first token for `req` and keep it fresh. The default margin renews when less
    /// than a fifth of the lifetime is left.
    pub fn start(issuer: Arc<Issuer>, req: &MintRequest) -> Result<Renewer, RenewError> {
        let claims = issuer.claims_for(req)?;
        let token = issuer.sign_claims(&claims)?;
        let margin = claims.lifetime() / 5;
        Ok(Renewer {
            mode: Mode::Local(issuer),
            current: Mutex::new(Current { token, claims }),
            margin,
            clock: Arc::new(SystemClock),
        })
    }

    /// Keep a txn-token obtained from the Txn-Token Service fresh through the service: this
    /// process holds no signing key. `token` is verified with `verifier` (the mesh's keys)
    /// first; every replacement is verified and checked against the renewal rules.
    pub async fn through(
        replace: Arc<dyn Replace>,
        verifier: Arc<Verifier>,
        token: String,
    ) -> Result<Renewer, RenewError> {
        let claims = verifier.verify_async(&token).await?.into_inner();
        let margin = claims.lifetime() / 5;
        Ok(Renewer {
            mode: Mode::Remote {
                replace,
                verifier,
                renewing: AtomicBool::new(false),
            },
            current: Mutex::new(Current { token, claims }),
            margin,
            clock: Arc::new(SystemClock),
        })
    }

    /// Renew when fewer than `secs` seconds are left.
    pub fn margin(mut self, secs: u64) -> Self {
        self.margin = secs;
        self
    }

    /// The clock deciding when to renew.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        // A panic while holding the lock leaves a consistent value (a token and its claims are
        // replaced together), so a poisoned lock is still usable.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token valid for at least the margin, renewed if needed. Through the Txn-Token
    /// Service ([`through`](Self::through)) this cannot wait for a renewal: it returns the
    /// current token while it is valid and [`RenewError::Expired`] after; use
    /// [`token_async`](Self::token_async).
    pub fn token(&self) -> Result<String, RenewError> {
        let mut cur = self.lock();
        let now = self.clock.now_unix();
        match &self.mode {
            Mode::Local(issuer) => {
                if now.saturating_add(self.margin) >= cur.claims.exp {
                    let claims = self.renewed(&cur.claims, cur.claims.scope.clone(), now);
                    cur.token = issuer.sign_claims(&claims)?;
                    cur.claims = claims;
                }
                Ok(cur.token.clone())
            }
            Mode::Remote { .. } if now < cur.claims.exp => Ok(cur.token.clone()),
            Mode::Remote { .. } => Err(RenewError::Expired),
        }
    }

    /// A token valid for at least the margin, renewed if needed, in either mode. Through the
    /// service, one caller renews while the others keep using the current token (while it is
    /// valid); a failed renewal leaves the current token in place and is returned once it no
    /// longer serves.
    pub async fn token_async(&self) -> Result<String, RenewError> {
        let Mode::Remote { renewing, .. } = &self.mode else {
            return self.token();
        };
        let (token, scope, class, exp) = {
            let cur = self.lock();
            let now = self.clock.now_unix();
            if now.saturating_add(self.margin) < cur.claims.exp {
                return Ok(cur.token.clone());
            }
            (
                cur.token.clone(),
                cur.claims.scope.clone(),
                cur.claims.cls,
                cur.claims.exp,
            )
        };
        // Single flight: another caller renews; use the current token while it is valid.
        if renewing.swap(true, Ordering::AcqRel) && self.clock.now_unix() < exp {
            return Ok(token);
        }
        let result = self.replace_remote(&token, scope, class).await;
        renewing.store(false, Ordering::Release);
        match result {
            Ok(t) => Ok(t),
            Err(_) if self.clock.now_unix() < exp => Ok(token),
            Err(e) => Err(e),
        }
    }

    /// Ask the service for a replacement, check it, and make it current.
    async fn replace_remote(
        &self,
        token: &str,
        scope: Option<Scope>,
        class: ExpiryClass,
    ) -> Result<String, RenewError> {
        let Mode::Remote {
            replace, verifier, ..
        } = &self.mode
        else {
            return Err(RenewError::Broken("not a renewal through the service"));
        };
        let Some(scope) = scope else {
            return Err(RenewError::Broken(
                "a token without scope cannot be replaced",
            ));
        };
        let new = replace.replace(token, &scope, class).await?;
        let claims = verifier.verify_async(&new).await?.into_inner();
        let mut cur = self.lock();
        let old = &cur.claims;
        if claims.txn != old.txn {
            return Err(RenewError::Broken("another txn"));
        }
        if claims.sub != old.sub {
            return Err(RenewError::Broken("another sub"));
        }
        if claims.aud != old.aud {
            return Err(RenewError::Broken("another audience"));
        }
        if claims.cls > old.cls {
            return Err(RenewError::Broken("a slower class"));
        }
        let within = match (&claims.scope, &old.scope) {
            (Some(new), Some(old)) => new.is_within(old),
            _ => false,
        };
        if !within {
            return Err(RenewError::Broken("a wider scope"));
        }
        cur.token = new.clone();
        cur.claims = claims;
        Ok(new)
    }

    /// [`narrow`](Self::narrow) in either mode: through the service, a replacement with
    /// `scope` (which must be within the current scope).
    pub async fn narrow_async(&self, scope: Scope) -> Result<(), RenewError> {
        let (token, class, within) = {
            let cur = self.lock();
            let within = cur
                .claims
                .scope
                .as_ref()
                .is_some_and(|current| scope.is_within(current));
            (cur.token.clone(), cur.claims.cls, within)
        };
        match &self.mode {
            Mode::Local(_) => self.narrow(scope),
            Mode::Remote { .. } if !within => Err(RenewError::Widening),
            Mode::Remote { .. } => self
                .replace_remote(&token, Some(scope), class)
                .await
                .map(drop),
        }
    }

    /// The claims of the current token.
    pub fn claims(&self) -> Claims {
        self.lock().claims.clone()
    }

    /// Re-mint now with a narrower scope (every grant must already be in the current scope).
    /// With the signing key only ([`RenewError::NeedsAsync`] through the service: use
    /// [`narrow_async`](Self::narrow_async)).
    pub fn narrow(&self, scope: Scope) -> Result<(), RenewError> {
        let Mode::Local(issuer) = &self.mode else {
            return Err(RenewError::NeedsAsync);
        };
        let mut cur = self.lock();
        let within = cur
            .claims
            .scope
            .as_ref()
            .is_some_and(|current| scope.is_subset_of(current));
        if !within {
            return Err(RenewError::Widening);
        }
        let claims = self.renewed(&cur.claims, Some(scope), self.clock.now_unix());
        cur.token = issuer.sign_claims(&claims)?;
        cur.claims = claims;
        Ok(())
    }

    fn renewed(&self, old: &Claims, scope: Option<Scope>, now: u64) -> Claims {
        let mut c = old.clone();
        let lifetime = old.lifetime();
        c.iat = now;
        c.nbf = Some(now);
        c.exp = now + lifetime;
        c.jti = crate::issuer::new_jti().unwrap_or_else(|_| format!("{}-r{now}", old.jti));
        c.scope = scope;
        c
    }
}
