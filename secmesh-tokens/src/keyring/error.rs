//! Why a key ring operation failed.

use std::path::PathBuf;

use secmesh_fs::{FileError, Shown};

use super::state::StateError;
use crate::alg::Algorithm;
use crate::error::KeyError;

/// Why a key ring could not be created, loaded, rotated or written. The ring in memory is
/// unchanged when an operation fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// A file of the ring could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// The directory could not be created or listed.
    #[error("{}: {source}", Shown(path))]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The directory holds no key ring (no state file).
    #[error("{}: no key ring here (run `secmesh keys init` first)", Shown(path))]
    NotFound {
        /// The state file looked for.
        path: PathBuf,
    },
    /// A key ring exists already where one was to be created.
    #[error("{}: a key ring exists already", Shown(path))]
    Exists {
        /// The state file found.
        path: PathBuf,
    },
    /// The state file was refused.
    #[error("{}: {source}", Shown(path))]
    State {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: StateError,
    },
    /// A key file was refused (malformed, another algorithm, or not the key its `kid` names).
    #[error("key {kid}: {source}")]
    Key {
        /// The key's id.
        kid: String,
        /// Why.
        source: KeyError,
    },
    /// A private key file is readable by others than its owner.
    #[error(
        "{}: readable by others (mode {mode:o}); a private key must be 0600",
        Shown(path)
    )]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The algorithm cannot be used in a key ring (HMAC would publish the secret; or this build
    /// cannot make keys for it).
    #[error("cannot make {alg} keys for a key ring: {why}")]
    Algorithm {
        /// The algorithm.
        alg: Algorithm,
        /// Why.
        why: String,
    },
    /// A setting is out of range.
    #[error("{0}")]
    Config(StateError),
    /// `rotate` refused: the `next` key has not been published for one max-cache period yet,
    /// so a verifier may still hold a key set without it. Retry at `ready_at`, or force.
    #[error(
        "the next key {kid} was published {published_for} s ago; verifiers may cache the key set \
         for {max_cache} s, so it may sign from {ready_at} (Unix time) on (or force the rotation)"
    )]
    TooEarly {
        /// The next key.
        kid: String,
        /// How long it has been published.
        published_for: u64,
        /// The ring's max-cache period.
        max_cache: u64,
        /// When it may start signing.
        ready_at: u64,
    },
}

impl KeyRingError {
    /// Whether the operation was refused by a rule of the ring (rotation too early) rather than
    /// failing on unreadable or invalid input.
    pub fn is_refusal(&self) -> bool {
        matches!(self, KeyRingError::TooEarly { .. })
    }
}
