//! JSON Web Keys (RFC 7517, 7518 §6, 8037): the wire shape only. Turning a [`Jwk`] into a key
//! that can verify or sign is [`VerifyingKey::from_jwk`](super::VerifyingKey::from_jwk) and
//! [`SigningKey::from_jwk`](super::SigningKey::from_jwk).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::MAX_KEYS;
use super::mismatch;
use super::tables::Curve;
use crate::alg::{Algorithm, Family};
use crate::b64;
use crate::error::KeyError;

/// One JSON Web Key. Unknown members are ignored; `Debug` never prints private members.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Jwk {
    /// Key type: `OKP`, `EC`, `RSA` or `oct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The algorithm the key is pinned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use: `sig` or `enc`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Permitted operations (`sign`, `verify`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// Curve (`P-256`, `P-384`, `P-521`, `Ed25519`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC / OKP public x.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC public y.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Private exponent / private scalar / seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    /// Symmetric key value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("use", &self.use_)
            .field("private", &(self.d.is_some() || self.k.is_some()))
            .finish_non_exhaustive()
    }
}

impl Jwk {
    /// Parse one JWK from JSON, strictly (no duplicate members).
    pub fn from_json(json: &str) -> Result<Jwk, KeyError> {
        secmesh_core::json::check_object(json.as_bytes(), secmesh_core::json::DEFAULT_MAX_DEPTH)
            .map_err(|e| KeyError::Jwk(e.to_string()))?;
        serde_json::from_str(json).map_err(|e| KeyError::Jwk(e.to_string()))
    }

    /// The JWK as JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the key carries private material (`d` or `k`).
    pub fn is_secret(&self) -> bool {
        self.d.is_some() || self.k.is_some()
    }

    /// Why this key may not verify signatures, if it may not: `use` other than `sig`, or
    /// `key_ops` without `verify`.
    pub fn verify_forbidden(&self) -> Option<String> {
        if let Some(u) = &self.use_
            && u != "sig"
        {
            return Some(format!("the key's use is {u:?}, not \"sig\""));
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|o| o == "verify")
        {
            return Some("the key's key_ops do not include \"verify\"".to_owned());
        }
        None
    }
}

/// A JSON Web Key Set: `{"keys": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// A JWKS as read: at most [`MAX_KEYS`] keys are kept; past that the rest are skipped over
/// without being built and the set is refused.
#[derive(Deserialize)]
struct BoundedSet {
    keys: BoundedKeys,
}

struct BoundedKeys {
    keys: Vec<Jwk>,
    too_many: bool,
}

impl<'de> Deserialize<'de> for BoundedKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = BoundedKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of JWKs")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<BoundedKeys, A::Error> {
                let mut keys = Vec::new();
                while keys.len() < MAX_KEYS {
                    match seq.next_element()? {
                        Some(k) => keys.push(k),
                        None => {
                            return Ok(BoundedKeys {
                                keys,
                                too_many: false,
                            });
                        }
                    }
                }
                let mut too_many = false;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    too_many = true;
                }
                Ok(BoundedKeys { keys, too_many })
            }
        }
        d.deserialize_seq(V)
    }
}

impl JwkSet {
    /// Parse a JWKS from JSON, strictly: no duplicate members, and at most [`MAX_KEYS`] keys
    /// ([`KeyError::TooManyKeys`]).
    pub fn from_json(json: &str) -> Result<JwkSet, KeyError> {
        secmesh_core::json::check_object(json.as_bytes(), secmesh_core::json::DEFAULT_MAX_DEPTH)
            .map_err(|e| KeyError::Jwk(e.to_string()))?;
        // Each key object is checked too: the set check above covers nested duplicates.
        let set: BoundedSet =
            serde_json::from_str(json).map_err(|e| KeyError::Jwk(e.to_string()))?;
        if set.keys.too_many {
            return Err(KeyError::TooManyKeys { max: MAX_KEYS });
        }
        Ok(JwkSet {
            keys: set.keys.keys,
        })
    }

    /// The set as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// From the wire shape to the key's algorithm and bytes

/// A base64url member of a JWK, decoded.
pub(super) fn decode_field(name: &str, v: &Option<String>) -> Result<Vec<u8>, KeyError> {
    let s = v
        .as_deref()
        .ok_or_else(|| KeyError::Jwk(format!("missing member `{name}`")))?;
    b64::decode(s.as_bytes())
        .map_err(|_| KeyError::Jwk(format!("`{name}` is not base64url without padding")))
}

/// The algorithm a JWK is pinned to: its `alg`, or the only one its curve allows.
pub(super) fn jwk_alg(jwk: &Jwk) -> Result<Algorithm, KeyError> {
    let kty = jwk.kty.as_deref().unwrap_or("");
    if let Some(name) = &jwk.alg {
        let alg: Algorithm = name
            .parse()
            .map_err(|_| KeyError::Unsupported(format!("algorithm {name:?}")))?;
        let family_ok = matches!(
            (alg.family(), kty),
            (Family::Ed25519, "OKP")
                | (Family::Ecdsa, "EC")
                | (Family::Rsa, "RSA")
                | (Family::Hmac, "oct")
        );
        if !family_ok {
            return Err(mismatch(alg, format!("key type {kty:?}")));
        }
        if let (Some(want), Some(crv)) = (alg.curve(), jwk.crv.as_deref())
            && want != crv
        {
            return Err(mismatch(alg, format!("curve {crv:?}")));
        }
        return Ok(alg);
    }
    match (kty, jwk.crv.as_deref()) {
        ("OKP", Some("Ed25519")) => Ok(Algorithm::EdDsa),
        ("EC", Some("P-256")) => Ok(Algorithm::Es256),
        ("EC", Some("P-384")) => Ok(Algorithm::Es384),
        ("EC", Some("P-521")) => Ok(Algorithm::Es512),
        _ => Err(KeyError::Jwk(format!(
            "a {kty:?} key needs `alg` to pin it to one algorithm"
        ))),
    }
}

/// The uncompressed point (`04 || x || y`) of an EC JWK on `curve`.
pub(super) fn ec_point(jwk: &Jwk, alg: Algorithm, curve: Curve) -> Result<Vec<u8>, KeyError> {
    let len = curve.coordinate_len();
    let x = decode_field("x", &jwk.x)?;
    let y = decode_field("y", &jwk.y)?;
    if x.len() != len || y.len() != len {
        return Err(mismatch(
            alg,
            format!(
                "coordinates of {}/{} bytes, expected {len}",
                x.len(),
                y.len()
            ),
        ));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}
