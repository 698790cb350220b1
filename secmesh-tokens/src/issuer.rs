//! The [`Issuer`]: mints transaction tokens for an expiry class.
//!
//! `iat` and `nbf` are now, `exp` is now plus the class bound (or a shorter lifetime asked
//! for), `jti` is 128 random bits, `txn` is the given transaction id or a new random one, and
//! the header is `{"alg", "kid", "typ": "txntoken+jwt"}`.
//!
//! # Example
//! ```
//! use secmesh_tokens::{Algorithm, Issuer, MintRequest, SigningKey};
//! use secmesh_core::ExpiryClass;
//!
//! let issuer = Issuer::new(SigningKey::generate(Algorithm::Es256)?, "k1", "https://gw.mesh.test")
//!     .audience("mesh.test");
//! let token = issuer.mint(
//!     &MintRequest::new("user:alice", ExpiryClass::Medium)
//!         .grant("read", "orders/*")
//!         .actor("spiffe://mesh.test/gateway"),
//! )?;
//! assert_eq!(token.split('.').count(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use arc_swap::ArcSwap;
use secmesh_core::claims::{Actor, Audience, Claims, Confirmation, JsonMap, Scope};
use secmesh_core::{ClassBounds, Clock, ExpiryClass, Subject, SystemClock, TxnId};

use crate::b64;
use crate::backend::rand::{SecureRandom, SystemRandom};
use crate::error::SignError;
use crate::jws;
use crate::key::SigningKey;
use crate::verifier::TXN_TOKEN_TYP;

/// What to put in one token.
#[derive(Clone, Debug)]
#[must_use]
pub struct MintRequest {
    sub: String,
    class: ExpiryClass,
    audience: Option<Audience>,
    grants: Vec<String>,
    scope: Option<Scope>,
    txn: Option<TxnId>,
    act: Option<Actor>,
    req_wl: Option<String>,
    cnf: Option<Confirmation>,
    lifetime: Option<u64>,
    tctx: Option<JsonMap>,
    rctx: Option<JsonMap>,
    extra: Vec<(String, serde_json::Value)>,
}

impl MintRequest {
    /// A token for `sub` in `class`.
    pub fn new(sub: impl Into<String>, class: ExpiryClass) -> Self {
        MintRequest {
            sub: sub.into(),
            class,
            audience: None,
            grants: Vec::new(),
            scope: None,
            txn: None,
            act: None,
            req_wl: None,
            cnf: None,
            lifetime: None,
            tctx: None,
            rctx: None,
            extra: Vec::new(),
        }
    }

    /// The expiry class (instead of the one given to [`new`](Self::new)).
    pub fn class(mut self, class: ExpiryClass) -> Self {
        self.class = class;
        self
    }

    /// The audience (instead of the issuer's default).
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = Some(Audience::One(aud.into()));
        self
    }

    /// Several audiences.
    pub fn audiences(mut self, aud: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.audience = Some(Audience::Many(aud.into_iter().map(Into::into).collect()));
        self
    }

    /// Add one grant `verb:object` to `scope` (one grant: a space in either part is refused
    /// when minting).
    pub fn grant(mut self, verb: &str, object: &str) -> Self {
        self.grants.push(format!("{verb}:{object}"));
        self
    }

    /// Set the whole scope (grants added with [`grant`](Self::grant) come after it).
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Continue this transaction instead of starting a new one.
    pub fn txn(mut self, txn: TxnId) -> Self {
        self.txn = Some(txn);
        self
    }

    /// The actor chain.
    pub fn act(mut self, act: Actor) -> Self {
        self.act = Some(act);
        self
    }

    /// A current actor with no history.
    pub fn actor(self, sub: impl Into<String>) -> Self {
        self.act(Actor::new(sub))
    }

    /// The requesting workload.
    pub fn req_wl(mut self, wl: impl Into<String>) -> Self {
        self.req_wl = Some(wl.into());
        self
    }

    /// Bind the token to a certificate thumbprint (`x5t#S256`, base64url SHA-256 of the DER).
    pub fn cnf_x5t_s256(mut self, thumbprint: impl Into<String>) -> Self {
        self.cnf = Some(Confirmation {
            x5t_s256: thumbprint.into(),
        });
        self
    }

    /// A lifetime shorter than the class bound, in seconds.
    pub fn lifetime(mut self, secs: u64) -> Self {
        self.lifetime = Some(secs);
        self
    }

    /// The transaction context object.
    pub fn tctx(mut self, tctx: JsonMap) -> Self {
        self.tctx = Some(tctx);
        self
    }

    /// The requester context object.
    pub fn rctx(mut self, rctx: JsonMap) -> Self {
        self.rctx = Some(rctx);
        self
    }

    /// Any other claim. Registered names are refused at mint time.
    pub fn claim(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.extra.push((name.into(), value));
        self
    }
}

/// A signing key and the `kid` its tokens carry.
#[derive(Debug)]
pub struct ActiveKey {
    key: Arc<SigningKey>,
    kid: String,
}

impl ActiveKey {
    /// `key` under `kid`.
    pub fn new(key: impl Into<Arc<SigningKey>>, kid: impl Into<String>) -> ActiveKey {
        ActiveKey {
            key: key.into(),
            kid: kid.into(),
        }
    }

    /// The key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The signing key an [`Issuer`] signs with, replaceable while it runs (a
/// [`KeyRing`](crate::keyring::KeyRing) replaces it at each rotation). Reading it is one
/// atomic load (no lock); clones share the same slot.
#[derive(Clone, Debug)]
pub struct LiveKey(Arc<ArcSwap<ActiveKey>>);

impl LiveKey {
    /// A slot holding `key` under `kid`.
    pub fn new(key: impl Into<Arc<SigningKey>>, kid: impl Into<String>) -> LiveKey {
        LiveKey::from_active(ActiveKey::new(key, kid))
    }

    pub(crate) fn from_active(active: ActiveKey) -> LiveKey {
        LiveKey(Arc::new(ArcSwap::from_pointee(active)))
    }

    /// The key now.
    pub fn load(&self) -> Arc<ActiveKey> {
        self.0.load_full()
    }

    /// Sign with `key` under `kid` from now on (tokens already signed keep their key).
    pub fn replace(&self, active: ActiveKey) {
        self.0.store(Arc::new(active));
    }
}

/// Mints tokens with one signing key (or the live key of a
/// [`KeyRing`](crate::keyring::KeyRing)), its `kid`, and `iss`.
#[derive(Clone, Debug)]
pub struct Issuer {
    live: LiveKey,
    iss: String,
    audience: Option<Audience>,
    bounds: ClassBounds,
    clock: Arc<dyn Clock>,
}

const REGISTERED: [&str; 15] = [
    "iss", "sub", "aud", "iat", "exp", "nbf", "jti", "txn", "cls", "scope", "req_wl", "act", "cnf",
    "tctx", "rctx",
];

impl Issuer {
    /// An issuer signing with `key` under `kid`, as `iss`.
    pub fn new(
        key: impl Into<Arc<SigningKey>>,
        kid: impl Into<String>,
        iss: impl Into<String>,
    ) -> Self {
        Issuer::live(LiveKey::new(key, kid), iss)
    }

    /// An issuer signing with whatever key `live` holds when it signs.
    pub fn live(live: LiveKey, iss: impl Into<String>) -> Self {
        Issuer {
            live,
            iss: iss.into(),
            audience: None,
            bounds: ClassBounds::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The default audience.
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = Some(Audience::One(aud.into()));
        self
    }

    /// Class bounds (the lifetime of a token of each class).
    pub fn bounds(mut self, bounds: ClassBounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// The clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// An issuer signing with the current key of `ring`, as `iss`; it follows the ring's
    /// rotations (and reloads) from its next token on.
    pub fn from_ring(ring: &crate::keyring::KeyRing, iss: impl Into<String>) -> Self {
        Issuer::live(ring.live_key(), iss)
    }

    /// The `kid` tokens are signed under now.
    pub fn kid(&self) -> String {
        self.live.load().kid.clone()
    }

    /// The class lifetime bounds it mints within.
    pub fn class_bounds(&self) -> ClassBounds {
        self.bounds
    }

    /// The issuer name.
    pub fn iss(&self) -> &str {
        &self.iss
    }

    /// Build the claims for a request (without signing).
    pub fn claims_for(&self, req: &MintRequest) -> Result<Claims, SignError> {
        let bound = self.bounds.bound(req.class);
        let lifetime = req.lifetime.unwrap_or(bound);
        if lifetime == 0 || lifetime > bound {
            return Err(SignError::Claims(format!(
                "lifetime {lifetime} s is outside 1..={bound} s for class {}",
                req.class
            )));
        }
        let aud = req
            .audience
            .clone()
            .or_else(|| self.audience.clone())
            .ok_or_else(|| SignError::Claims("no audience".into()))?;
        let rng = SystemRandom::new();
        let jti = new_jti()?;
        let txn = match req.txn {
            Some(t) => t,
            None => new_txn(&rng)?,
        };
        let sub = Subject::new(req.sub.clone())
            .map_err(|e| SignError::Claims(format!("invalid sub: {e}")))?;
        let now = self.clock.now_unix();
        let mut c = Claims::new(
            self.iss.clone(),
            sub,
            aud,
            now,
            now + lifetime,
            jti,
            req.class,
        );
        c.nbf = Some(now);
        c.txn = Some(txn);
        c.scope = scope_of(req)?;
        c.act = req.act.clone();
        c.req_wl = req.req_wl.clone();
        c.cnf = req.cnf.clone();
        c.tctx = req.tctx.clone();
        c.rctx = req.rctx.clone();
        for (k, v) in &req.extra {
            if REGISTERED.contains(&k.as_str()) {
                return Err(SignError::Claims(format!(
                    "`{k}` is a registered claim; use its own setter"
                )));
            }
            c.extra.insert(k.clone(), v.clone());
        }
        Ok(c)
    }

    /// Mint a token.
    pub fn mint(&self, req: &MintRequest) -> Result<String, SignError> {
        self.sign_claims(&self.claims_for(req)?)
    }

    /// Sign claims as they are (for renewal and tests). The claims are not checked against the
    /// class bounds here; a [`Verifier`](crate::Verifier) will.
    pub fn sign_claims(&self, claims: &Claims) -> Result<String, SignError> {
        let payload = serde_json::to_vec(claims).map_err(|e| SignError::Claims(e.to_string()))?;
        let active = self.live.0.load();
        jws::sign_compact(
            &active.key,
            Some(&active.kid),
            Some(TXN_TOKEN_TYP),
            &payload,
        )
    }
}

fn scope_of(req: &MintRequest) -> Result<Option<Scope>, SignError> {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(s) = &req.scope {
        parts.push(s.as_str());
    }
    for (i, g) in req.grants.iter().enumerate() {
        // One `grant()` call is one grant: `grant("read", "a *:**")` must not add a second.
        g.parse::<secmesh_core::policy::Grant>()
            .map_err(|e| SignError::Claims(format!("grant {}: {e}", i + 1)))?;
        parts.push(g);
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Scope::new(parts.join(" "))
        .map(Some)
        .map_err(|e| SignError::Claims(e.to_string()))
}

/// 128 random bits, base64url.
pub(crate) fn new_jti() -> Result<String, SignError> {
    let mut jti = [0u8; 16];
    SystemRandom::new()
        .fill(&mut jti)
        .map_err(|_| SignError::Random)?;
    Ok(b64::encode(&jti))
}

fn new_txn(rng: &SystemRandom) -> Result<TxnId, SignError> {
    loop {
        let mut b = [0u8; 16];
        rng.fill(&mut b).map_err(|_| SignError::Random)?;
        // All-zero is not a valid id; draw again (probability 2^-128).
        if let Ok(t) = TxnId::from_bytes(b) {
            return Ok(t);
        }
    }
}
