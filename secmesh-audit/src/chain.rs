//! The tamper-evident record format: the hash chain and the Ed25519 audit key.
//!
//! Each line of a log is one JSON object. An event line is the event's fields plus
//! `"prev"`: the lowercase hex SHA-256 of the previous line's bytes (without its newline); the
//! first line of a log links to [`GENESIS`]. A rotated file's first line links to the last line
//! of the file before it, so the chain runs through the whole set. Signed records
//! ([`checkpoint`](crate::checkpoint)) are chained the same way and share one `seq` sequence
//! with the events, one more on every line.
//!
//! # Example
//! ```
//! use secmesh_audit::chain::{hash_line, to_hex, verify_signature, AuditKey, GENESIS};
//!
//! let first = br#"{"v":1,"seq":1,"prev":"0000"}"#;
//! let h = hash_line(first);
//! assert_eq!(to_hex(&h).len(), 64);
//! assert_eq!(GENESIS.len(), 64);
//!
//! let key = AuditKey::generate().unwrap();
//! let sig = key.sign(b"message");
//! assert!(verify_signature(key.public_key(), b"message", &sig));
//! assert!(!verify_signature(key.public_key(), b"massage", &sig));
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secmesh_tokens::{Algorithm, SigningKey, crypto};
use zeroize::Zeroizing;

/// The `prev` of the first line of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 of a line's bytes (without its newline), through the `secmesh-tokens` crypto seam.
pub fn hash_line(line: &[u8]) -> [u8; 32] {
    crypto::sha256(line)
}

/// Append lowercase hex to a byte buffer.
pub fn hex_into(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// The service's Ed25519 audit key, which signs checkpoints.
///
/// A [`SigningKey`] of `secmesh-tokens` pinned to EdDSA, so it signs through the same backend as
/// tokens; its PKCS#8 bytes are wiped from memory when it is dropped.
pub struct AuditKey {
    key: SigningKey,
    public: [u8; 32],
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("public", &URL_SAFE_NO_PAD.encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

/// A key that could not be made or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The private key was refused (not PKCS#8, not Ed25519, malformed) or could not be made.
    #[error("invalid audit key: {0}")]
    Private(#[from] secmesh_tokens::KeyError),
    /// The PEM armour of a public key is broken.
    #[error("invalid audit key: {0}")]
    Pem(String),
    /// A PEM public key that is not an Ed25519 SPKI `PUBLIC KEY`.
    #[error("invalid audit key: not an Ed25519 SPKI public key")]
    NotEd25519,
    /// A raw public key that is not base64url.
    #[error("invalid audit key: not base64url")]
    NotBase64,
    /// A raw public key of the wrong length.
    #[error("invalid audit key: {len} bytes, an Ed25519 key has 32")]
    Length {
        /// Its length in bytes.
        len: usize,
    },
}

impl AuditKey {
    /// A new random key.
    pub fn generate() -> Result<AuditKey, KeyError> {
        AuditKey::from_signing_key(SigningKey::generate(Algorithm::EdDsa)?)
    }

    /// A key from PKCS#8 DER (v1 or v2).
    pub fn from_pkcs8(der: &[u8]) -> Result<AuditKey, KeyError> {
        AuditKey::from_signing_key(SigningKey::from_pkcs8_der(Algorithm::EdDsa, der)?)
    }

    /// A key from a PKCS#8 PEM (`PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<AuditKey, KeyError> {
        AuditKey::from_signing_key(SigningKey::from_pkcs8_pem(Algorithm::EdDsa, pem)?)
    }

    fn from_signing_key(key: SigningKey) -> Result<AuditKey, KeyError> {
        let public = key
            .ed25519_public_key()
            .and_then(|p| <[u8; 32]>::try_from(p).ok())
            .ok_or(KeyError::NotEd25519)?;
        Ok(AuditKey { key, public })
    }

    /// The private key as PKCS#8 PEM (wiped from memory when dropped).
    pub fn to_pem(&self) -> Zeroizing<String> {
        // Keys are only ever made from PKCS#8, so the document is always there.
        self.key.to_pkcs8_pem().unwrap_or_default()
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The public key as base64url (what `--key` files and checkpoint lines hold).
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    /// Sign `message`; the signature as base64url.
    pub fn sign(&self, message: &[u8]) -> String {
        // Ed25519 signing cannot fail once the key is loaded.
        URL_SAFE_NO_PAD.encode(self.key.sign(message).unwrap_or_default())
    }
}

/// Verify a base64url Ed25519 signature over `message` with a raw public key.
pub fn verify_signature(public: &[u8], message: &[u8], sig_b64: &str) -> bool {
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig_b64) else {
        return false;
    };
    crypto::verify_ed25519(public, message, &sig)
}

/// Read a public key given as base64url raw bytes or as an SPKI PEM (`PUBLIC KEY`).
pub fn parse_public_key(text: &str) -> Result<Vec<u8>, KeyError> {
    let t = text.trim();
    let raw = if t.starts_with("-----BEGIN") {
        let block = pem::parse(t).map_err(|e| KeyError::Pem(e.to_string()))?;
        if block.tag() != "PUBLIC KEY" {
            return Err(KeyError::NotEd25519);
        }
        // Ed25519 SPKI: 12 bytes of algorithm header, then the 32-byte key.
        const PREFIX: [u8; 12] = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        match block.contents().strip_prefix(&PREFIX[..]) {
            Some(k) => k.to_vec(),
            None => return Err(KeyError::NotEd25519),
        }
    } else {
        URL_SAFE_NO_PAD.decode(t).map_err(|_| KeyError::NotBase64)?
    };
    if raw.len() != 32 {
        return Err(KeyError::Length { len: raw.len() });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_round_trips_through_pkcs8_pem_and_signs_through_the_seam() {
        let key = AuditKey::generate().unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = AuditKey::from_pem(&pem).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let sig = again.sign(b"m");
        assert!(verify_signature(key.public_key(), b"m", &sig));
        assert!(
            !format!("{key:?}").contains(&pem[30..60]),
            "Debug shows no private key"
        );
    }

    #[test]
    fn public_keys_are_refused_with_a_typed_reason() {
        let key = AuditKey::generate().unwrap();
        assert_eq!(
            parse_public_key(&key.public_key_b64()).unwrap(),
            key.public_key()
        );
        assert!(matches!(parse_public_key("*"), Err(KeyError::NotBase64)));
        assert!(matches!(
            parse_public_key("AAAA"),
            Err(KeyError::Length { len: 3 })
        ));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse_public_key(cert), Err(KeyError::NotEd25519)));
        assert!(matches!(
            parse_public_key("-----BEGIN PUBLIC KEY-----\n!!\n"),
            Err(KeyError::Pem(_))
        ));
        // An ES256 private key is not an audit key.
        let es = secmesh_tokens::SigningKey::generate(Algorithm::Es256).unwrap();
        let es_pem = es.to_pkcs8_pem().unwrap();
        assert!(matches!(
            AuditKey::from_pem(&es_pem),
            Err(KeyError::Private(_))
        ));
    }
}
