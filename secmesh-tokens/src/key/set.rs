//! Key sets: verification keys chosen by `kid`, loaded from a JWKS.

use std::collections::HashMap;

use super::{Jwk, JwkSet, VerifyingKey};
use crate::error::{ErrorKind, KeyError, VerifyError};

/// A key left out of a [`KeySet`] because it may not verify signatures here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Its `kid`, if it had one.
    pub kid: Option<String>,
    /// Whether it was left out because its algorithm is unsupported (else: not for signing).
    pub unsupported: bool,
    /// Why, in words.
    pub reason: String,
}

/// The most keys (usable and skipped together) one [`KeySet`] or JWKS may hold. A real set
/// holds a handful (the current key and the ones rotating in and out); a larger one is refused
/// with [`KeyError::TooManyKeys`] before any key is parsed.
pub const MAX_KEYS: usize = 1000;

/// Where a `kid` of a [`KeySet`] is.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Key(usize),
    Skipped(usize),
}

/// Verification keys chosen by `kid`: no duplicate kids, not mixing symmetric and asymmetric
/// keys, and (when there are several) every key named; at most [`MAX_KEYS`]. Loading is linear
/// in the number of keys and choosing a key by `kid` is one hash lookup.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    skipped: Vec<Skipped>,
    by_kid: HashMap<String, Slot>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// A set of one key.
    pub fn single(key: VerifyingKey) -> KeySet {
        let mut set = KeySet::new();
        if let Some(kid) = &key.kid {
            set.by_kid.insert(kid.clone(), Slot::Key(0));
        }
        set.keys.push(key);
        set
    }

    fn check_room(&self) -> Result<(), KeyError> {
        if self.keys.len() + self.skipped.len() >= MAX_KEYS {
            return Err(KeyError::TooManyKeys { max: MAX_KEYS });
        }
        Ok(())
    }

    fn check_new_kid(&self, kid: Option<&String>) -> Result<(), KeyError> {
        match kid {
            Some(kid) if self.by_kid.contains_key(kid) => Err(KeyError::DuplicateKid(kid.clone())),
            _ => Ok(()),
        }
    }

    /// Add a key, refusing a duplicate `kid`, a symmetric key beside asymmetric ones (or the
    /// reverse), an unnamed key beside others, and a key past [`MAX_KEYS`].
    pub fn insert(&mut self, key: VerifyingKey) -> Result<(), KeyError> {
        if let Some(first) = self.keys.first() {
            if first.is_symmetric() != key.is_symmetric() {
                return Err(KeyError::MixedSet("symmetric and asymmetric keys"));
            }
            // An unnamed key is only ever alone, so the first key tells.
            if key.kid.is_none() || first.kid.is_none() {
                return Err(KeyError::MissingKid);
            }
        }
        self.check_new_kid(key.kid.as_ref())?;
        self.check_room()?;
        if let Some(kid) = &key.kid {
            self.by_kid.insert(kid.clone(), Slot::Key(self.keys.len()));
        }
        self.keys.push(key);
        Ok(())
    }

    fn skip(&mut self, skipped: Skipped) -> Result<(), KeyError> {
        self.check_new_kid(skipped.kid.as_ref())?;
        self.check_room()?;
        if let Some(kid) = &skipped.kid {
            self.by_kid
                .insert(kid.clone(), Slot::Skipped(self.skipped.len()));
        }
        self.skipped.push(skipped);
        Ok(())
    }

    /// Load a JWK Set. Keys that may not verify (`use: enc`, `key_ops` without `verify`, an
    /// encryption or unsupported algorithm) are left out and listed in [`skipped`](Self::skipped);
    /// anything else wrong with any key (weak, malformed, duplicate kid, mixed set) refuses the
    /// whole set.
    pub fn from_jwk_set(set: &JwkSet) -> Result<KeySet, KeyError> {
        let asym: Vec<&Jwk> = set
            .keys
            .iter()
            .filter(|k| k.kty.as_deref() != Some("oct"))
            .collect();
        if asym.iter().any(|k| k.d.is_some()) && asym.iter().any(|k| k.d.is_none()) {
            return Err(KeyError::MixedSet("public and private keys"));
        }
        if set.keys.len() > MAX_KEYS {
            return Err(KeyError::TooManyKeys { max: MAX_KEYS });
        }
        if set.keys.is_empty() {
            return Err(KeyError::EmptySet);
        }
        let mut out = KeySet::new();
        for jwk in &set.keys {
            match VerifyingKey::from_jwk(jwk) {
                Ok(key) => out.insert(key)?,
                Err(e) => {
                    let skip = match &e {
                        KeyError::Invalid(_) if jwk.verify_forbidden().is_some() => Some(false),
                        KeyError::Unsupported(_) => Some(true),
                        _ => None,
                    };
                    let Some(unsupported) = skip else {
                        return Err(e);
                    };
                    out.skip(Skipped {
                        kid: jwk.kid.clone(),
                        unsupported,
                        reason: e.to_string(),
                    })?;
                }
            }
        }
        let kinds: Vec<bool> = set
            .keys
            .iter()
            .map(|k| k.kty.as_deref() == Some("oct"))
            .collect();
        if kinds.iter().any(|&s| s) && kinds.iter().any(|&s| !s) {
            return Err(KeyError::MixedSet("symmetric and asymmetric keys"));
        }
        Ok(out)
    }

    /// Load a JWKS from JSON.
    pub fn from_jwks_json(json: &str) -> Result<KeySet, KeyError> {
        KeySet::from_jwk_set(&JwkSet::from_json(json)?)
    }

    /// Load a JWKS (`{"keys": [...]}`) or a single JWK from JSON.
    pub fn from_json(json: &str) -> Result<KeySet, KeyError> {
        let set = JwkSet::from_json(json);
        match set {
            Ok(set) => KeySet::from_jwk_set(&set),
            Err(e @ KeyError::TooManyKeys { .. }) => Err(e),
            Err(_) => {
                let jwk = Jwk::from_json(json)?;
                KeySet::from_jwk_set(&JwkSet { keys: vec![jwk] })
            }
        }
    }

    /// The set as a JWKS (HMAC keys included with their secrets).
    pub fn to_jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(VerifyingKey::to_jwk).collect(),
        }
    }

    /// The kids of the usable keys.
    pub fn kids(&self) -> impl Iterator<Item = Option<&str>> {
        self.keys.iter().map(VerifyingKey::kid)
    }

    /// The keys left out when the set was loaded.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// How many usable keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token's `kid`: the key with that kid; with no kid, the only key of a set
    /// of one.
    pub fn get(&self, kid: Option<&str>) -> Result<&VerifyingKey, VerifyError> {
        let skipped = match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(Slot::Key(i)) => {
                    if let Some(k) = self.keys.get(*i) {
                        return Ok(k);
                    }
                    None
                }
                Some(Slot::Skipped(i)) => self.skipped.get(*i),
                None => None,
            },
            None if self.keys.len() == 1 && self.skipped.is_empty() => {
                if let Some(k) = self.keys.first() {
                    return Ok(k);
                }
                None
            }
            None => self
                .skipped
                .iter()
                .find(|s| s.kid.is_none() || self.keys.is_empty()),
        };
        Err(match (skipped, kid) {
            (Some(s), _) if s.unsupported => {
                VerifyError::new(ErrorKind::Unsupported, s.reason.clone())
            }
            (Some(s), _) => VerifyError::new(ErrorKind::KeyNotUsable, s.reason.clone()),
            (None, Some(_)) => VerifyError::new(ErrorKind::UnknownKid, "no key has this kid"),
            (None, None) => VerifyError::new(
                ErrorKind::UnknownKid,
                "the token has no kid and the key set has more than one key",
            ),
        })
    }
}
