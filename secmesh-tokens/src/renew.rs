//! Renewal for long-running work: a [`Renewer`] hands out a valid token for a transaction and
//! re-mints it before it expires.
//!
//! The rules of DESIGN.md hold by construction: a renewed token keeps `sub`, `aud`, `txn`,
//! `act`, `req_wl`, `cnf` and the class of the one it renews; its scope may be narrowed
//! ([`Renewer::narrow`]) and never widened. Each renewal gets a new `jti`, `iat` and `exp`.
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
use std::sync::{Arc, Mutex};

use secmesh_core::claims::{Claims, Scope};
use secmesh_core::{Clock, SystemClock};

use crate::error::SignError;
use crate::issuer::{Issuer, MintRequest};

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
}

struct Current {
    token: String,
    claims: Claims,
}

/// Keeps a token of one transaction fresh. Share it in an `Arc`; `token()` is cheap while the
/// current token is fresh.
pub struct Renewer {
    issuer: Arc<Issuer>,
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
            issuer,
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

    /// A token valid for at least the margin, renewed if needed.
    pub fn token(&self) -> Result<String, RenewError> {
        let mut cur = self.lock();
        let now = self.clock.now_unix();
        if now.saturating_add(self.margin) >= cur.claims.exp {
            let claims = self.renewed(&cur.claims, cur.claims.scope.clone(), now);
            cur.token = self.issuer.sign_claims(&claims)?;
            cur.claims = claims;
        }
        Ok(cur.token.clone())
    }

    /// The claims of the current token.
    pub fn claims(&self) -> Claims {
        self.lock().claims.clone()
    }

    /// Re-mint now with a narrower scope (every grant must already be in the current scope).
    pub fn narrow(&self, scope: Scope) -> Result<(), RenewError> {
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
        cur.token = self.issuer.sign_claims(&claims)?;
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
