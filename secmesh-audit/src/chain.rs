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
use ring::digest;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

/// The `prev` of the first line of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 of a line's bytes (without its newline).
pub fn hash_line(line: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, line);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
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
pub struct AuditKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
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
#[error("invalid audit key: {0}")]
pub struct KeyError(String);

impl AuditKey {
    /// A new random key.
    pub fn generate() -> Result<AuditKey, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeyError(e.to_string()))?;
        AuditKey::from_pkcs8(doc.as_ref())
    }

    /// A key from PKCS#8 DER (v1 or v2).
    pub fn from_pkcs8(der: &[u8]) -> Result<AuditKey, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| KeyError(e.to_string()))?;
        Ok(AuditKey {
            pair,
            pkcs8: der.to_vec(),
        })
    }

    /// A key from a PKCS#8 PEM (`PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<AuditKey, KeyError> {
        AuditKey::from_pkcs8(&pem_body(pem, "PRIVATE KEY")?)
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key as base64url (what `--key` files and checkpoint lines hold).
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    /// Sign `message`; the signature as base64url.
    pub fn sign(&self, message: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.sign(message))
    }
}

/// Verify a base64url Ed25519 signature over `message` with a raw public key.
pub fn verify_signature(public: &[u8], message: &[u8], sig_b64: &str) -> bool {
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig_b64) else {
        return false;
    };
    signature::UnparsedPublicKey::new(&signature::ED25519, public)
        .verify(message, &sig)
        .is_ok()
}

/// Read a public key given as base64url raw bytes or as an SPKI PEM (`PUBLIC KEY`).
pub fn parse_public_key(text: &str) -> Result<Vec<u8>, KeyError> {
    let t = text.trim();
    let raw = if t.starts_with("-----BEGIN") {
        let der = pem_body(t, "PUBLIC KEY")?;
        // Ed25519 SPKI: 12 bytes of algorithm header, then the 32-byte key.
        const PREFIX: [u8; 12] = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        match der.strip_prefix(&PREFIX[..]) {
            Some(k) => k.to_vec(),
            None => return Err(KeyError("not an Ed25519 SPKI public key".into())),
        }
    } else {
        URL_SAFE_NO_PAD
            .decode(t)
            .map_err(|_| KeyError("not base64url".into()))?
    };
    if raw.len() != 32 {
        return Err(KeyError(format!(
            "{} bytes, an Ed25519 key has 32",
            raw.len()
        )));
    }
    Ok(raw)
}

fn pem_body(pem: &str, label: &str) -> Result<Vec<u8>, KeyError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| KeyError(format!("no {label} block")))?
        + begin.len();
    let stop = pem[start..]
        .find(&end)
        .ok_or_else(|| KeyError(format!("unterminated {label} block")))?
        + start;
    let b64: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| KeyError("bad PEM base64".into()))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}
