//! Signed records (format 2): what a checkpoint states, and the exact bytes it signs.
//!
//! A signed record is one line of the log, chained like an event (its `prev` is the hash of
//! the line before) and numbered in the same `seq` sequence. It states:
//!
//! | field | meaning |
//! |---|---|
//! | `v` | the record format, [`CHECKPOINT_VERSION`] |
//! | `kind` | [`CheckpointKind`]: `open`, `checkpoint`, `rotate`, `close`, `recover` |
//! | `service` | the service whose log this is |
//! | `gen` | the file generation (0 for the first file, one more on every rotation) |
//! | `seq` | this record's own `seq`; it covers every line up to `seq - 1` |
//! | `count` | the number of events in the log from its start up to here |
//! | `prev` | the chain head: the hash of the line before |
//! | `time` | when it was written (RFC 3339 UTC) |
//! | `prev_sig` | the signature of the signed record before it (empty for the first ever) |
//! | `retained` | the oldest generation the writer keeps; lower ones it deleted (retention) |
//! | `torn_bytes`, `torn_file` | `recover` only: what was set aside after a crash |
//! | `key`, `sig` | the public key and the Ed25519 signature (base64url) |
//!
//! The signature is over [`Checkpoint::signed_bytes`]: a fixed-order, length-prefixed byte
//! string of every field above but `sig`, never re-serialised JSON, so that no field can be
//! changed, added or dropped without breaking it. The same line is what a witness receives.
//!
//! # Example
//! ```
//! use secmesh_audit::chain::{AuditKey, GENESIS};
//! use secmesh_audit::checkpoint::{Checkpoint, CheckpointKind};
//!
//! let key = AuditKey::generate().unwrap();
//! let mut cp = Checkpoint::unsigned(CheckpointKind::Open, "orders", 0, 1, 0, GENESIS);
//! cp.sign(&key);
//! let line = cp.to_line();
//! let back = Checkpoint::parse(&line).unwrap();
//! assert!(back.verify(key.public_key()));
//! let forged = String::from_utf8(line).unwrap().replace("\"count\":0", "\"count\":7");
//! assert!(!Checkpoint::parse(forged.as_bytes()).unwrap().verify(key.public_key()));
//! ```

use serde::{Deserialize, Serialize};

use crate::chain::{self, AuditKey};

/// The record format version written in `v`.
pub const CHECKPOINT_VERSION: u32 = 2;

/// The longest service name a record may state.
pub const MAX_SERVICE_LEN: usize = 256;

/// What a signed record marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CheckpointKind {
    /// The start of a writing session: the first line of every file, or the line after a
    /// `close` when a cleanly closed log is continued.
    Open,
    /// A periodic checkpoint.
    Checkpoint,
    /// The last line of a file that was rotated; generation `gen + 1` follows.
    Rotate,
    /// The last line of a clean shutdown.
    Close,
    /// The first line written after a crash: it signs the records left unsigned by the crash
    /// and states what was set aside.
    Recover,
}

impl CheckpointKind {
    /// The word used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Open => "open",
            CheckpointKind::Checkpoint => "checkpoint",
            CheckpointKind::Rotate => "rotate",
            CheckpointKind::Close => "close",
            CheckpointKind::Recover => "recover",
        }
    }

    fn code(self) -> u8 {
        match self {
            CheckpointKind::Open => 1,
            CheckpointKind::Checkpoint => 2,
            CheckpointKind::Rotate => 3,
            CheckpointKind::Close => 4,
            CheckpointKind::Recover => 5,
        }
    }
}

/// One signed record (see the module docs for the fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Checkpoint {
    /// Record format version.
    pub v: u32,
    /// What it marks.
    pub kind: CheckpointKind,
    /// The service.
    pub service: String,
    /// The file generation.
    pub r#gen: u64,
    /// This record's seq.
    pub seq: u64,
    /// Events from the start of the log up to here.
    pub count: u64,
    /// The chain head (hex hash of the line before).
    pub prev: String,
    /// When it was written.
    pub time: String,
    /// The signature of the signed record before (empty for the first).
    pub prev_sig: String,
    /// The oldest generation the writer keeps.
    pub retained: u64,
    /// `recover`: bytes set aside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_bytes: Option<u64>,
    /// `recover`: the file name they were set aside to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_file: Option<String>,
    /// The signer's public key (base64url).
    pub key: String,
    /// The signature (base64url).
    pub sig: String,
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Checkpoint {
    /// A record with no signature, `prev_sig` and `retained` empty, stamped now.
    pub fn unsigned(
        kind: CheckpointKind,
        service: &str,
        r#gen: u64,
        seq: u64,
        count: u64,
        prev: &str,
    ) -> Checkpoint {
        Checkpoint {
            v: CHECKPOINT_VERSION,
            kind,
            service: service.to_owned(),
            r#gen,
            seq,
            count,
            prev: prev.to_owned(),
            time: crate::event::now_rfc3339(),
            prev_sig: String::new(),
            retained: 0,
            torn_bytes: None,
            torn_file: None,
            key: String::new(),
            sig: String::new(),
        }
    }

    /// The exact bytes the signature covers: every field but `sig`, in a fixed order, each
    /// string length-prefixed, each number big-endian.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(256 + self.service.len());
        m.extend_from_slice(b"secmesh-audit-checkpoint\0");
        m.extend_from_slice(&self.v.to_be_bytes());
        m.push(self.kind.code());
        put(&mut m, self.service.as_bytes());
        for n in [self.r#gen, self.seq, self.count] {
            m.extend_from_slice(&n.to_be_bytes());
        }
        put(&mut m, self.prev.as_bytes());
        put(&mut m, self.time.as_bytes());
        put(&mut m, self.prev_sig.as_bytes());
        m.extend_from_slice(&self.retained.to_be_bytes());
        match self.torn_bytes {
            Some(n) => {
                m.push(1);
                m.extend_from_slice(&n.to_be_bytes());
            }
            None => m.push(0),
        }
        match &self.torn_file {
            Some(f) => {
                m.push(1);
                put(&mut m, f.as_bytes());
            }
            None => m.push(0),
        }
        put(&mut m, self.key.as_bytes());
        m
    }

    /// Sign with `key` (sets `key` and `sig`).
    pub fn sign(&mut self, key: &AuditKey) {
        self.key = key.public_key_b64();
        self.sig = key.sign(&self.signed_bytes());
    }

    /// Whether `sig` is a signature by the raw Ed25519 key `public` over this record, and
    /// `key` names that key.
    pub fn verify(&self, public: &[u8]) -> bool {
        chain::parse_public_key(&self.key).is_ok_and(|named| named == public)
            && chain::verify_signature(public, &self.signed_bytes(), &self.sig)
    }

    /// The record as one JSON line (without the newline).
    pub fn to_line(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse one line strictly: no duplicate keys, no unknown fields, this format version, a
    /// service name of at most [`MAX_SERVICE_LEN`] bytes without control characters.
    pub fn parse(line: &[u8]) -> Result<Checkpoint, String> {
        secmesh_core::json::check_object(line, secmesh_core::json::DEFAULT_MAX_DEPTH)
            .map_err(|e| e.to_string())?;
        let c: Checkpoint = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        if c.v != CHECKPOINT_VERSION {
            return Err(format!(
                "record format {} (this reader accepts {CHECKPOINT_VERSION} only)",
                c.v
            ));
        }
        if c.service.is_empty()
            || c.service.len() > MAX_SERVICE_LEN
            || c.service.chars().any(char::is_control)
        {
            return Err("the service name is empty, too long or holds control characters".into());
        }
        Ok(c)
    }
}
