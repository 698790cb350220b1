//! The key ring's state file (`keyring.json`): which keys exist, in which state, since when.
//!
//! The file is small, written by secmesh, and read as hostile input: at most
//! [`MAX_STATE_LEN`] bytes, strict JSON (no duplicate members, bounded depth), no unknown
//! members, at most [`MAX_RING_KEYS`] keys, every `kid` a short base64url word (it names a file
//! in the ring's directory, so nothing else may reach a path), and the states and times
//! consistent: exactly one `current` key, at most one `next`, `created <= published <=
//! activated <= retired`. Every refusal is a typed [`StateError`].
//!
//! # Example
//! ```
//! use secmesh_tokens::keyring::state::{KeyState, RingState, StateError};
//!
//! let json = br#"{"format":"secmesh-keyring/1","alg":"EdDSA","max_cache":600,"retain":86460,
//!   "keys":[{"kid":"k1","alg":"EdDSA","state":"current","created":10,"published":10,"activated":10}]}"#;
//! let state = RingState::from_json(json)?;
//! assert_eq!(state.keys[0].state, KeyState::Current);
//! assert_eq!(RingState::from_json(&state.to_json())?, state);
//! assert!(matches!(
//!     RingState::from_json(br#"{"format":"secmesh-keyring/1","format":"x"}"#),
//!     Err(StateError::Json(_))
//! ));
//! # Ok::<(), StateError>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::alg::{Algorithm, Family};

/// The `format` word of the state file this version writes and reads.
pub const FORMAT: &str = "secmesh-keyring/1";

/// The largest state file read (64 KiB: a ring holds a handful of keys).
pub const MAX_STATE_LEN: usize = 64 * 1024;

/// The most keys one ring may hold (current, next, and the retired ones still published).
pub const MAX_RING_KEYS: usize = 32;

/// The longest `kid` (a SHA-256 thumbprint is 43 characters).
pub const MAX_KID_LEN: usize = 64;

/// The longest issuer name.
pub const MAX_ISSUER_LEN: usize = 2048;

/// The largest time accepted (9999-12-31T23:59:59Z), so that adding periods never overflows.
pub const MAX_TIME: u64 = 253_402_300_799;

/// The longest max-cache period (7 days).
pub const MAX_CACHE_LIMIT: u64 = 7 * 86_400;

/// The longest retention of a retired key (400 days).
pub const MAX_RETAIN: u64 = 400 * 86_400;

/// Where a key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not signing yet: verifiers learn it before the first token it signs.
    Next,
    /// Signing (and published).
    Current,
    /// No longer signing; published until every token it signed has expired.
    Retired,
}

impl KeyState {
    /// `next`, `current` or `retired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Current => "current",
            KeyState::Retired => "retired",
        }
    }
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key of the ring, as the state file records it (no key material: that is in its own
/// PKCS#8 file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The key id (the RFC 7638 thumbprint of the public key for keys the ring made).
    pub kid: String,
    /// The algorithm the key is pinned to.
    #[serde(with = "alg_name")]
    pub alg: Algorithm,
    /// Its state.
    pub state: KeyState,
    /// When it was made (Unix seconds).
    pub created: u64,
    /// When it was first published.
    pub published: u64,
    /// When it began to sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated: Option<u64>,
    /// When it stopped signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<u64>,
}

/// The whole state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingState {
    /// Always [`FORMAT`].
    pub format: String,
    /// The issuer (`iss`) the ring signs for, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The algorithm new keys are made for.
    #[serde(with = "alg_name")]
    pub alg: Algorithm,
    /// How long verifiers may cache the published key set (seconds): the `max-age` served, and
    /// how long a `next` key is published before it may sign.
    pub max_cache: u64,
    /// How long a retired key stays published (seconds): the slowest class bound plus skew.
    pub retain: u64,
    /// The keys, in no particular order.
    pub keys: Vec<KeyRecord>,
}

/// Why a state file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Larger than [`MAX_STATE_LEN`].
    #[error("the state file is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Not strict JSON of the expected shape.
    #[error("the state file is not valid: {0}")]
    Json(String),
    /// Another format or version.
    #[error("unknown state format (expected {FORMAT:?})")]
    Format,
    /// A setting out of range.
    #[error("{0} is out of range")]
    Setting(&'static str),
    /// An algorithm a key ring cannot hold (HMAC: its key set would publish the secret).
    #[error("{0} keys cannot be in a key ring (only asymmetric algorithms)")]
    Symmetric(Algorithm),
    /// More than [`MAX_RING_KEYS`] keys.
    #[error("more than {max} keys")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// A `kid` that is empty, too long or not base64url.
    #[error("a kid is empty, longer than {MAX_KID_LEN} characters or not base64url")]
    BadKid,
    /// The same `kid` twice.
    #[error("duplicate kid {0:?}")]
    DuplicateKid(String),
    /// Not exactly one `current` key, or more than one `next`.
    #[error("{0}")]
    States(&'static str),
    /// A key's times contradict its state or each other.
    #[error("key {kid:?}: {what}")]
    Times {
        /// The key.
        kid: String,
        /// What is wrong.
        what: &'static str,
    },
}

mod alg_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::alg::Algorithm;

    pub(super) fn serialize<S: Serializer>(alg: &Algorithm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(alg.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Algorithm, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether `kid` may name a key of a ring: 1..=[`MAX_KID_LEN`] characters of the base64url
/// alphabet (so it is also a safe file name).
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl RingState {
    /// Parse and check a state file.
    pub fn from_json(bytes: &[u8]) -> Result<RingState, StateError> {
        if bytes.len() > MAX_STATE_LEN {
            return Err(StateError::TooLarge {
                limit: MAX_STATE_LEN,
            });
        }
        secmesh_core::json::check_object(bytes, 4).map_err(|e| StateError::Json(e.to_string()))?;
        let state: RingState =
            serde_json::from_slice(bytes).map_err(|e| StateError::Json(e.to_string()))?;
        state.check()?;
        Ok(state)
    }

    /// The state as the file holds it (pretty JSON, a trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, integers and enums always serialize.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Check every rule of the [module docs](self).
    pub fn check(&self) -> Result<(), StateError> {
        if self.format != FORMAT {
            return Err(StateError::Format);
        }
        if let Some(iss) = &self.issuer
            && (iss.is_empty() || iss.len() > MAX_ISSUER_LEN || iss.chars().any(char::is_control))
        {
            return Err(StateError::Setting("issuer"));
        }
        if self.alg.family() == Family::Hmac {
            return Err(StateError::Symmetric(self.alg));
        }
        if !(1..=MAX_CACHE_LIMIT).contains(&self.max_cache) {
            return Err(StateError::Setting("max_cache"));
        }
        if !(1..=MAX_RETAIN).contains(&self.retain) {
            return Err(StateError::Setting("retain"));
        }
        if self.keys.len() > MAX_RING_KEYS {
            return Err(StateError::TooManyKeys { max: MAX_RING_KEYS });
        }
        let mut seen = std::collections::HashSet::with_capacity(self.keys.len());
        let (mut current, mut next) = (0, 0);
        for k in &self.keys {
            if !valid_kid(&k.kid) {
                return Err(StateError::BadKid);
            }
            if !seen.insert(k.kid.as_str()) {
                return Err(StateError::DuplicateKid(k.kid.clone()));
            }
            if k.alg.family() == Family::Hmac {
                return Err(StateError::Symmetric(k.alg));
            }
            check_times(k)?;
            match k.state {
                KeyState::Current => current += 1,
                KeyState::Next => next += 1,
                KeyState::Retired => {}
            }
        }
        if current != 1 {
            return Err(StateError::States("a key ring has exactly one current key"));
        }
        if next > 1 {
            return Err(StateError::States("a key ring has at most one next key"));
        }
        Ok(())
    }

    /// The current key's record.
    pub fn current(&self) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.state == KeyState::Current)
    }

    /// The next key's record, if there is one.
    pub fn next(&self) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.state == KeyState::Next)
    }

    /// Whether `key` is published at `now`: next and current keys always, a retired key until
    /// `retain` seconds after it was retired.
    pub fn is_published(&self, key: &KeyRecord, now: u64) -> bool {
        match (key.state, key.retired) {
            (KeyState::Retired, Some(r)) => now < r.saturating_add(self.retain),
            (KeyState::Retired, None) => false,
            (KeyState::Next | KeyState::Current, _) => true,
        }
    }
}

fn check_times(k: &KeyRecord) -> Result<(), StateError> {
    let bad = |what| {
        Err(StateError::Times {
            kid: k.kid.clone(),
            what,
        })
    };
    let all = [Some(k.created), Some(k.published), k.activated, k.retired];
    if all.iter().flatten().any(|&t| t > MAX_TIME) {
        return bad("a time is past the year 9999");
    }
    if k.published < k.created {
        return bad("published before it was created");
    }
    match (k.state, k.activated, k.retired) {
        (KeyState::Next, None, None) => Ok(()),
        (KeyState::Next, _, _) => bad("a next key has no activation or retirement time"),
        (KeyState::Current, Some(a), None) if a >= k.published => Ok(()),
        (KeyState::Current, Some(_), None) => bad("activated before it was published"),
        (KeyState::Current, _, _) => bad("a current key has an activation time and no retirement"),
        (KeyState::Retired, Some(a), Some(r)) if a >= k.published && r >= a => Ok(()),
        (KeyState::Retired, Some(_), Some(_)) => bad("times out of order"),
        (KeyState::Retired, _, _) => bad("a retired key has activation and retirement times"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(kid: &str, state: KeyState, a: Option<u64>, r: Option<u64>) -> KeyRecord {
        KeyRecord {
            kid: kid.into(),
            alg: Algorithm::EdDsa,
            state,
            created: 5,
            published: 10,
            activated: a,
            retired: r,
        }
    }

    fn ring(keys: Vec<KeyRecord>) -> RingState {
        RingState {
            format: FORMAT.into(),
            issuer: Some("https://iss".into()),
            alg: Algorithm::EdDsa,
            max_cache: 600,
            retain: 86_460,
            keys,
        }
    }

    #[test]
    fn round_trips_and_refuses_inconsistent_states() {
        let good = ring(vec![
            rec("a", KeyState::Retired, Some(10), Some(20)),
            rec("b", KeyState::Current, Some(20), None),
            rec("c", KeyState::Next, None, None),
        ]);
        assert_eq!(RingState::from_json(&good.to_json()).unwrap(), good);
        let two_current = ring(vec![
            rec("a", KeyState::Current, Some(10), None),
            rec("b", KeyState::Current, Some(20), None),
        ]);
        assert!(matches!(two_current.check(), Err(StateError::States(_))));
        assert!(matches!(ring(vec![]).check(), Err(StateError::States(_))));
        let dup = ring(vec![
            rec("a", KeyState::Current, Some(10), None),
            rec("a", KeyState::Next, None, None),
        ]);
        assert!(matches!(dup.check(), Err(StateError::DuplicateKid(_))));
        let path = ring(vec![rec("../x", KeyState::Current, Some(10), None)]);
        assert_eq!(path.check(), Err(StateError::BadKid));
        let early = ring(vec![rec("a", KeyState::Current, Some(9), None)]);
        assert!(matches!(early.check(), Err(StateError::Times { .. })));
        let next_active = ring(vec![
            rec("a", KeyState::Current, Some(10), None),
            rec("b", KeyState::Next, Some(10), None),
        ]);
        assert!(matches!(next_active.check(), Err(StateError::Times { .. })));
    }

    #[test]
    fn refuses_unknown_members_duplicates_and_hmac() {
        let good =
            String::from_utf8(ring(vec![rec("a", KeyState::Current, Some(10), None)]).to_json())
                .unwrap();
        let extra = good.replacen('{', r#"{"x":1,"#, 1);
        assert!(matches!(
            RingState::from_json(extra.as_bytes()),
            Err(StateError::Json(_))
        ));
        let dup = good.replacen('{', r#"{"max_cache":1,"#, 1);
        assert!(matches!(
            RingState::from_json(dup.as_bytes()),
            Err(StateError::Json(_))
        ));
        let hs = good.replace("\"EdDSA\"", "\"HS256\"");
        assert!(matches!(
            RingState::from_json(hs.as_bytes()),
            Err(StateError::Symmetric(_))
        ));
        let big = vec![b' '; MAX_STATE_LEN + 1];
        assert!(matches!(
            RingState::from_json(&big),
            Err(StateError::TooLarge { .. })
        ));
    }
}
