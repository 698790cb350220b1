//! The rotating key ring of an issuer: keys that move from `next` to `current` to `retired`,
//! persisted in a directory, published as a JWKS that verifiers fetch.
//!
//! # The timing rules
//!
//! - A key is published as **`next`** at least one **max-cache period** (the `max-age` the key
//!   set is served with) before it starts signing, so every verifier that caches the published
//!   set has it before the first token it signs. [`KeyRing::rotate`] refuses with
//!   [`KeyRingError::TooEarly`] to promote a `next` key published more recently, unless forced.
//! - The **`current`** key signs; an [`Issuer`](crate::Issuer) built with
//!   [`Issuer::from_ring`](crate::Issuer::from_ring) picks up a rotation at its next token,
//!   lock-free.
//! - A **`retired`** key stays published until every token it signed can have expired: the
//!   ring's `retain` period, by default the slowest class bound plus the verifiers' skew
//!   (86 400 s + 60 s). Then it leaves the published set, and the next rotation (or
//!   [`KeyRing::prune`]) removes it and its file.
//!
//! A rotation retires the current key, promotes the next one and makes a new next one, in one
//! atomic write of the state file. [`KeyRing::maintain`] is the schedule helper: prune, and
//! rotate once the current key has signed for a given period (and the next key is ready).
//!
//! # The directory
//!
//! `keyring.json` (the [state], strict and bounded) and one `key-<kid>.pem` per key
//! (PKCS#8, mode 0600; a key file readable by others is refused on load), all written
//! atomically (temporary file, sync, rename, sync of the directory), created in a directory of
//! mode 0700. A restart ([`KeyRing::open`]) finds the same keys in the same states. Kids are
//! the keys' RFC 7638 thumbprints (SHA-256), checked against the key files on load. Another
//! process (`secmesh keys serve`) follows rotations with [`KeyRing::reload`]; operations that
//! change the ring re-read the state first, so two processes that take turns never undo each
//! other's rotation (run one rotating process at a time).
//!
//! Only asymmetric algorithms (EdDSA, the default, ES256, ES384, and RSA where the backend can
//! make keys): a published HMAC key would publish the secret.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use secmesh_core::{ExpiryClass, ManualClock};
//! use secmesh_tokens::keyring::{KeyRing, KeyRingError, RingConfig};
//! use secmesh_tokens::{Issuer, MintRequest, Verifier};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let clock = ManualClock::new(1_700_000_000);
//! let config = RingConfig::default().issuer("https://sts.mesh.test").max_cache(600);
//! let ring = KeyRing::init(dir.path(), config, Arc::new(clock.clone()))?;
//! let issuer = Issuer::from_ring(&ring, "https://sts.mesh.test").audience("mesh.test");
//! let first = issuer.kid();
//!
//! // The next key was published just now: too early to sign with it.
//! assert!(matches!(ring.rotate(false), Err(KeyRingError::TooEarly { .. })));
//! clock.advance(600);
//! let rotation = ring.rotate(false)?;
//! assert_eq!(rotation.retired.as_deref(), Some(first.as_str()));
//! assert_eq!(issuer.kid(), rotation.current, "the issuer follows the ring");
//!
//! // The published set (current, next, retired) verifies tokens of both keys.
//! let token = issuer.mint(&MintRequest::new("user:alice", ExpiryClass::Fast))?;
//! let verifier = Verifier::new(ring.key_set()?).issuer("https://sts.mesh.test").audience("mesh.test");
//! assert!(verifier.verify(&token).is_ok());
//! assert_eq!(KeyRing::open(dir.path(), Arc::new(clock))?.current_kid(), rotation.current);
//! # Ok(())
//! # }
//! ```

mod error;
pub mod state;
mod store;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use secmesh_core::{ClassBounds, Clock, ExpiryClass};

pub use error::KeyRingError;
pub use state::{KeyRecord, KeyState, RingState, StateError};

use crate::alg::{Algorithm, Family};
use crate::b64;
use crate::error::KeyError;
use crate::issuer::{ActiveKey, LiveKey};
use crate::key::{Jwk, JwkSet, KeySet, SigningKey};

/// The state file's name in the ring's directory.
pub const STATE_FILE: &str = "keyring.json";

/// The default max-cache period: 600 s (above the 300 s minimum refresh verifiers default to,
/// well under their 1 h maximum).
pub const DEFAULT_MAX_CACHE: u64 = 600;

/// The default skew added to the slowest class bound for the retention of retired keys.
pub const DEFAULT_SKEW: u64 = 60;

/// The settings a ring is created with (recorded in its state file).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct RingConfig {
    alg: Algorithm,
    issuer: Option<String>,
    max_cache: u64,
    retain: u64,
}

impl Default for RingConfig {
    /// EdDSA keys, no issuer recorded, [`DEFAULT_MAX_CACHE`], and retired keys kept for the
    /// default slow bound plus [`DEFAULT_SKEW`].
    fn default() -> Self {
        RingConfig {
            alg: Algorithm::EdDsa,
            issuer: None,
            max_cache: DEFAULT_MAX_CACHE,
            retain: ClassBounds::default().bound(ExpiryClass::Slow) + DEFAULT_SKEW,
        }
    }
}

impl RingConfig {
    /// Make keys for `alg` (asymmetric only).
    pub fn alg(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }

    /// Record the issuer (`iss`) the ring signs for.
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuer = Some(iss.into());
        self
    }

    /// How long verifiers may cache the published set, in seconds: the `max-age` it is served
    /// with and how long a next key is published before it signs (1 s ..= 7 days).
    pub fn max_cache(mut self, secs: u64) -> Self {
        self.max_cache = secs;
        self
    }

    /// Keep retired keys published for the slowest bound of `bounds` plus `skew` seconds.
    pub fn retain_for(mut self, bounds: &ClassBounds, skew: u64) -> Self {
        self.retain = bounds.bound(ExpiryClass::Slow).saturating_add(skew);
        self
    }

    /// Keep retired keys published for `secs` seconds (1 s ..= 400 days).
    pub fn retain(mut self, secs: u64) -> Self {
        self.retain = secs;
        self
    }
}

/// What a rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rotation {
    /// The key that stopped signing (none when a forced rotation found no current key).
    pub retired: Option<String>,
    /// The key that signs now.
    pub current: String,
    /// The new next key.
    pub next: String,
    /// Retired keys whose retention ended, removed with their files.
    pub removed: Vec<String>,
}

/// The published key set at one moment: the JWKS document and what an HTTP server needs to
/// serve it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Publication {
    /// The JWKS JSON (current key first, then next, then retired keys, newest first).
    pub jwks: String,
    /// A strong entity tag of the document (quoted, from its SHA-256).
    pub etag: String,
    /// The `Cache-Control: max-age` to serve it with: the ring's max-cache period.
    pub max_age: u64,
    /// The published kids and their states, in the document's order.
    pub kids: Vec<(String, KeyState)>,
    /// Until when (Unix seconds, exclusive) the document is valid without a rotation: when the
    /// next retired key leaves it (`u64::MAX` if none will).
    pub valid_until: u64,
}

struct Inner {
    state: RingState,
    keys: HashMap<String, Arc<SigningKey>>,
}

/// An issuer's rotating signing keys; see the [module docs](self).
pub struct KeyRing {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    live: LiveKey,
    publication: ArcSwap<Publication>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .field("current", &self.current_kid())
            .finish_non_exhaustive()
    }
}

/// The RFC 7638 thumbprint of a public JWK (base64url SHA-256 of its required members in
/// lexicographic order): `OKP`, `EC` and `RSA` keys; `None` for others or a JWK missing a
/// member.
pub fn jwk_thumbprint(jwk: &Jwk) -> Option<String> {
    // The members are base64url and curve names: nothing to escape. Refuse anything else
    // rather than hash a different canonical form.
    fn m(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }
    let canon = match jwk.kty.as_deref()? {
        "OKP" => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            m(&jwk.crv)?,
            m(&jwk.x)?
        ),
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            m(&jwk.crv)?,
            m(&jwk.x)?,
            m(&jwk.y)?
        ),
        "RSA" => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            m(&jwk.e)?,
            m(&jwk.n)?
        ),
        _ => return None,
    };
    Some(b64::encode(&crate::crypto::sha256(canon.as_bytes())))
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn generate(alg: Algorithm) -> Result<(String, SigningKey), KeyRingError> {
    if alg.family() == Family::Hmac {
        return Err(KeyRingError::Algorithm {
            alg,
            why: "a published HMAC key would publish the secret".into(),
        });
    }
    let key = SigningKey::generate(alg).map_err(|e| KeyRingError::Algorithm {
        alg,
        why: e.to_string(),
    })?;
    let kid = store::kid_of(&key).map_err(|source| KeyRingError::Key {
        kid: String::new(),
        source,
    })?;
    Ok((kid, key))
}

fn active_of(inner: &Inner) -> Option<ActiveKey> {
    let cur = inner.state.current()?;
    let key = inner.keys.get(&cur.kid)?;
    Some(ActiveKey::new(key.clone(), cur.kid.clone()))
}

fn publish(inner: &Inner, now: u64) -> Publication {
    let st = &inner.state;
    let mut recs: Vec<&KeyRecord> = st.keys.iter().filter(|k| st.is_published(k, now)).collect();
    let rank = |s: KeyState| match s {
        KeyState::Current => 0,
        KeyState::Next => 1,
        KeyState::Retired => 2,
    };
    recs.sort_by(|a, b| {
        rank(a.state)
            .cmp(&rank(b.state))
            .then(b.retired.cmp(&a.retired))
            .then(a.kid.cmp(&b.kid))
    });
    let keys: Vec<Jwk> = recs
        .iter()
        .filter_map(|r| {
            let key = inner.keys.get(&r.kid)?;
            Some(key.verifying_key(Some(r.kid.clone())).to_jwk())
        })
        .collect();
    let jwks = JwkSet { keys }.to_json();
    let digest = crate::crypto::sha256(jwks.as_bytes());
    let valid_until = st
        .keys
        .iter()
        .filter(|k| k.state == KeyState::Retired && st.is_published(k, now))
        .filter_map(|k| k.retired.map(|r| r.saturating_add(st.retain)))
        .min()
        .unwrap_or(u64::MAX);
    Publication {
        etag: format!("\"{}\"", b64::encode(&digest[..18])),
        jwks,
        max_age: st.max_cache,
        kids: recs.iter().map(|r| (r.kid.clone(), r.state)).collect(),
        valid_until,
    }
}

impl KeyRing {
    /// Create a ring in `dir` (created with mode 0700 if absent): a current key and a next
    /// key, both published from now. Refused if `dir` holds a ring already.
    pub fn init(
        dir: impl AsRef<Path>,
        config: RingConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<KeyRing, KeyRingError> {
        let (kid, key) = generate(config.alg)?;
        KeyRing::init_with_key(dir, config, clock, key, kid)
    }

    /// Create a ring in `dir` whose current key is `key` (an existing key, e.g. one written by
    /// `secmesh keygen`; it keeps signing under `kid`), with a new next key.
    pub fn import(
        dir: impl AsRef<Path>,
        config: RingConfig,
        clock: Arc<dyn Clock>,
        key: SigningKey,
    ) -> Result<KeyRing, KeyRingError> {
        if key.alg().family() == Family::Hmac {
            return Err(KeyRingError::Algorithm {
                alg: key.alg(),
                why: "a published HMAC key would publish the secret".into(),
            });
        }
        let kid = store::kid_of(&key).map_err(|source| KeyRingError::Key {
            kid: String::new(),
            source,
        })?;
        let config = config.alg(key.alg());
        KeyRing::init_with_key(dir, config, clock, key, kid)
    }

    fn init_with_key(
        dir: impl AsRef<Path>,
        config: RingConfig,
        clock: Arc<dyn Clock>,
        key: SigningKey,
        kid: String,
    ) -> Result<KeyRing, KeyRingError> {
        let dir = dir.as_ref().to_path_buf();
        let now = clock.now_unix();
        let (next_kid, next_key) = generate(config.alg)?;
        let state = RingState {
            format: state::FORMAT.into(),
            issuer: config.issuer,
            alg: config.alg,
            max_cache: config.max_cache,
            retain: config.retain,
            keys: vec![
                KeyRecord {
                    kid: kid.clone(),
                    alg: key.alg(),
                    state: KeyState::Current,
                    created: now,
                    published: now,
                    activated: Some(now),
                    retired: None,
                },
                KeyRecord {
                    kid: next_kid.clone(),
                    alg: config.alg,
                    state: KeyState::Next,
                    created: now,
                    published: now,
                    activated: None,
                    retired: None,
                },
            ],
        };
        state.check().map_err(KeyRingError::Config)?;
        let path = store::state_path(&dir);
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(KeyRingError::Exists { path });
        }
        store::create_dir(&dir)?;
        store::write_key(&dir, &kid, &key)?;
        store::write_key(&dir, &next_kid, &next_key)?;
        store::write_state(&dir, &state)?;
        let keys = HashMap::from([(kid, Arc::new(key)), (next_kid, Arc::new(next_key))]);
        KeyRing::assemble(dir, clock, Inner { state, keys })
    }

    /// Load the ring in `dir` (after a restart, or in another process).
    pub fn open(dir: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<KeyRing, KeyRingError> {
        let dir = dir.as_ref().to_path_buf();
        let (state, keys) = store::load(&dir)?;
        KeyRing::assemble(dir, clock, Inner { state, keys })
    }

    fn assemble(
        dir: PathBuf,
        clock: Arc<dyn Clock>,
        inner: Inner,
    ) -> Result<KeyRing, KeyRingError> {
        let active = active_of(&inner).ok_or(KeyRingError::Config(StateError::States(
            "a key ring has exactly one current key",
        )))?;
        let publication = publish(&inner, clock.now_unix());
        Ok(KeyRing {
            dir,
            clock,
            inner: Mutex::new(inner),
            live: LiveKey::from_active(active),
            publication: ArcSwap::from_pointee(publication),
        })
    }

    /// The ring's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state as it is now (a copy).
    pub fn state(&self) -> RingState {
        lock(&self.inner).state.clone()
    }

    /// The issuer recorded in the ring, if any.
    pub fn issuer(&self) -> Option<String> {
        lock(&self.inner).state.issuer.clone()
    }

    /// The max-cache period (seconds).
    pub fn max_cache(&self) -> u64 {
        lock(&self.inner).state.max_cache
    }

    /// The kid of the key that signs now.
    pub fn current_kid(&self) -> String {
        self.live.load().kid().to_owned()
    }

    /// The live signing key: what [`Issuer::from_ring`](crate::Issuer::from_ring) signs
    /// through; it follows every rotation and reload of this ring.
    pub fn live_key(&self) -> LiveKey {
        self.live.clone()
    }

    /// The published key set now (cached; rebuilt when a rotation or reload changes it, or a
    /// retired key's retention ends). Lock-free unless it has to be rebuilt.
    pub fn publication(&self) -> Arc<Publication> {
        let now = self.clock.now_unix();
        let p = self.publication.load_full();
        if now < p.valid_until {
            return p;
        }
        let inner = lock(&self.inner);
        let fresh = Arc::new(publish(&inner, now));
        self.publication.store(fresh.clone());
        fresh
    }

    /// The published keys as a [`KeySet`] (for a verifier in the same process).
    pub fn key_set(&self) -> Result<KeySet, KeyError> {
        KeySet::from_jwks_json(&self.publication().jwks)
    }

    fn install(&self, inner: &mut Inner, new: Inner) {
        *inner = new;
        if let Some(active) = active_of(inner) {
            self.live.replace(active);
        }
        self.publication
            .store(Arc::new(publish(inner, self.clock.now_unix())));
    }

    /// Re-read the directory (after another process rotated the ring). Returns whether
    /// anything changed; on an error the ring in memory stays as it was.
    pub fn reload(&self) -> Result<bool, KeyRingError> {
        let (state, keys) = store::load(&self.dir)?;
        let mut inner = lock(&self.inner);
        if inner.state == state {
            return Ok(false);
        }
        if state.current().is_none() {
            return Err(KeyRingError::Config(StateError::States(
                "a key ring has exactly one current key",
            )));
        }
        self.install(&mut inner, Inner { state, keys });
        Ok(true)
    }

    /// The inner state after picking up what another process wrote.
    fn fresh(&self) -> Result<MutexGuard<'_, Inner>, KeyRingError> {
        let (state, keys) = store::load(&self.dir)?;
        let mut inner = lock(&self.inner);
        if inner.state != state {
            self.install(&mut inner, Inner { state, keys });
        }
        Ok(inner)
    }

    /// Rotate: retire the current key, promote the next one, publish a new next one, and
    /// remove retired keys whose retention has ended. Refused with
    /// [`KeyRingError::TooEarly`] while the next key has been published for less than one
    /// max-cache period, unless `force` (then verifiers that cached the set before the next key
    /// was published refuse the new key's tokens until they refresh). With no next key, one is
    /// published first (and, unless forced, the rotation is then too early).
    pub fn rotate(&self, force: bool) -> Result<Rotation, KeyRingError> {
        let mut inner = self.fresh()?;
        let now = self.clock.now_unix();
        let mut st = inner.state.clone();
        let mut keys = inner.keys.clone();
        let mut made = Vec::new();
        if st.next().is_none() {
            let (kid, key) = generate(st.alg)?;
            st.keys.push(new_next(&kid, st.alg, now));
            made.push((kid.clone(), key));
            if !force {
                self.commit(&mut inner, st, keys, made, &[])?;
                return Err(too_early(&kid, 0, &inner.state, now));
            }
        }
        let next = st
            .next()
            .cloned()
            .ok_or(KeyRingError::Config(StateError::States(
                "a key ring has at most one next key",
            )))?;
        let ready_at = next.published.saturating_add(st.max_cache);
        if now < ready_at && !force {
            return Err(too_early(
                &next.kid,
                now.saturating_sub(next.published),
                &st,
                now,
            ));
        }
        let mut retired = None;
        for k in &mut st.keys {
            match k.state {
                KeyState::Current => {
                    k.state = KeyState::Retired;
                    k.retired = Some(now.max(k.activated.unwrap_or(now)));
                    retired = Some(k.kid.clone());
                }
                KeyState::Next => {
                    k.state = KeyState::Current;
                    k.activated = Some(now.max(k.published));
                }
                KeyState::Retired => {}
            }
        }
        let (new_kid, new_key) = generate(st.alg)?;
        st.keys.push(new_next(&new_kid, st.alg, now));
        made.push((new_kid.clone(), new_key));
        let removed = expired(&st, now);
        st.keys.retain(|k| !removed.contains(&k.kid));
        for kid in &removed {
            keys.remove(kid);
        }
        self.commit(&mut inner, st, keys.clone(), made, &removed)?;
        Ok(Rotation {
            retired,
            current: next.kid,
            next: new_kid,
            removed,
        })
    }

    /// Write the new keys, then the state (the commit point), then remove the files of the
    /// removed keys; install the result.
    fn commit(
        &self,
        inner: &mut Inner,
        st: RingState,
        mut keys: HashMap<String, Arc<SigningKey>>,
        made: Vec<(String, SigningKey)>,
        removed: &[String],
    ) -> Result<(), KeyRingError> {
        st.check().map_err(KeyRingError::Config)?;
        for (kid, key) in &made {
            store::write_key(&self.dir, kid, key)?;
        }
        store::write_state(&self.dir, &st)?;
        for kid in removed {
            store::remove_key(&self.dir, kid);
        }
        for (kid, key) in made {
            keys.insert(kid, Arc::new(key));
        }
        self.install(inner, Inner { state: st, keys });
        Ok(())
    }

    /// Remove the retired keys whose retention has ended (with their files). Returns their
    /// kids. (They have already left the published set; this is the bookkeeping.)
    pub fn prune(&self) -> Result<Vec<String>, KeyRingError> {
        let mut inner = self.fresh()?;
        let now = self.clock.now_unix();
        let removed = expired(&inner.state, now);
        if removed.is_empty() {
            return Ok(removed);
        }
        let mut st = inner.state.clone();
        st.keys.retain(|k| !removed.contains(&k.kid));
        let mut keys = inner.keys.clone();
        for kid in &removed {
            keys.remove(kid);
        }
        self.commit(&mut inner, st, keys, Vec::new(), &removed)?;
        Ok(removed)
    }

    /// The schedule helper, to call periodically (e.g. every minute): prune, and rotate once
    /// the current key has signed for `rotate_every` seconds and the next key is ready.
    /// Returns the rotation if one happened.
    pub fn maintain(&self, rotate_every: u64) -> Result<Option<Rotation>, KeyRingError> {
        self.prune()?;
        let st = self.state();
        let now = self.clock.now_unix();
        let due = st
            .current()
            .and_then(|c| c.activated)
            .is_some_and(|a| now >= a.saturating_add(rotate_every));
        let ready = st
            .next()
            .is_some_and(|n| now >= n.published.saturating_add(st.max_cache));
        if due && ready {
            return self.rotate(false).map(Some);
        }
        if st.next().is_none() {
            // Publish a next key now so that it is ready when the rotation is due.
            return match self.rotate(false) {
                Err(KeyRingError::TooEarly { .. }) => Ok(None),
                other => other.map(Some),
            };
        }
        Ok(None)
    }
}

fn new_next(kid: &str, alg: Algorithm, now: u64) -> KeyRecord {
    KeyRecord {
        kid: kid.to_owned(),
        alg,
        state: KeyState::Next,
        created: now,
        published: now,
        activated: None,
        retired: None,
    }
}

fn too_early(kid: &str, published_for: u64, st: &RingState, now: u64) -> KeyRingError {
    KeyRingError::TooEarly {
        kid: kid.to_owned(),
        published_for,
        max_cache: st.max_cache,
        ready_at: now
            .saturating_sub(published_for)
            .saturating_add(st.max_cache),
    }
}

/// The retired keys of `st` no longer published at `now`.
fn expired(st: &RingState, now: u64) -> Vec<String> {
    st.keys
        .iter()
        .filter(|k| k.state == KeyState::Retired && !st.is_published(k, now))
        .map(|k| k.kid.clone())
        .collect()
}
