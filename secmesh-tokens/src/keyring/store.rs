//! The ring's directory: the state file and one PKCS#8 PEM file per key, all mode 0600, all
//! written atomically (temporary file, sync, rename, sync of the directory) through
//! `secmesh_fs`, and read back as hostile input (regular files only, bounded).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secmesh_fs::{FileError, Overwrite};

use super::error::KeyRingError;
use super::state::{KeyRecord, MAX_STATE_LEN, RingState};
use super::{STATE_FILE, jwk_thumbprint};
use crate::error::KeyError;
use crate::key::SigningKey;

pub(super) fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

pub(super) fn key_path(dir: &Path, kid: &str) -> PathBuf {
    // `kid` is checked base64url (state::valid_kid): a plain file name.
    dir.join(format!("key-{kid}.pem"))
}

pub(super) fn create_dir(dir: &Path) -> Result<(), KeyRingError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|source| KeyRingError::Dir {
        path: dir.to_path_buf(),
        source,
    })
}

pub(super) fn read_state(dir: &Path) -> Result<RingState, KeyRingError> {
    let path = state_path(dir);
    let bytes = match secmesh_fs::read(&path, MAX_STATE_LEN as u64) {
        Ok(b) => b,
        Err(FileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyRingError::NotFound { path });
        }
        Err(e) => return Err(e.into()),
    };
    RingState::from_json(&bytes).map_err(|source| KeyRingError::State { path, source })
}

pub(super) fn write_state(dir: &Path, state: &RingState) -> Result<(), KeyRingError> {
    secmesh_fs::write_private(state_path(dir), &state.to_json(), Overwrite::Yes)?;
    Ok(())
}

/// The kid the ring gives `key`: its RFC 7638 thumbprint.
pub(super) fn kid_of(key: &SigningKey) -> Result<String, KeyError> {
    jwk_thumbprint(&key.verifying_key(None).to_jwk())
        .ok_or_else(|| KeyError::Unsupported("a key without a JWK thumbprint".into()))
}

pub(super) fn write_key(dir: &Path, kid: &str, key: &SigningKey) -> Result<(), KeyRingError> {
    let pem = key.to_pkcs8_pem().ok_or_else(|| KeyRingError::Key {
        kid: kid.to_owned(),
        source: KeyError::Unsupported("the key cannot be exported as PKCS#8".into()),
    })?;
    secmesh_fs::write_private(key_path(dir, kid), pem.as_bytes(), Overwrite::No)?;
    Ok(())
}

pub(super) fn remove_key(dir: &Path, kid: &str) {
    // A key file left behind is harmless (it is no longer in the state, so never loaded);
    // removing it is hygiene.
    let _ = std::fs::remove_file(key_path(dir, kid));
}

fn read_key(dir: &Path, rec: &KeyRecord) -> Result<SigningKey, KeyRingError> {
    let path = key_path(dir, &rec.kid);
    let file = secmesh_fs::open_regular(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|source| FileError::Io {
                path: path.clone(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyRingError::InsecureKeyFile {
                path,
                mode: mode & 0o777,
            });
        }
    }
    drop(file);
    let pem = zeroize::Zeroizing::new(secmesh_fs::read_to_string(&path, secmesh_fs::SMALL)?);
    let key_err = |source| KeyRingError::Key {
        kid: rec.kid.clone(),
        source,
    };
    let key = SigningKey::from_pkcs8_pem(rec.alg, &pem).map_err(key_err)?;
    if kid_of(&key).map_err(key_err)? != rec.kid {
        return Err(key_err(KeyError::Invalid(
            "the key file holds another key than its kid names".into(),
        )));
    }
    Ok(key)
}

/// The state and every key it names.
pub(super) fn load(
    dir: &Path,
) -> Result<(RingState, HashMap<String, Arc<SigningKey>>), KeyRingError> {
    let state = read_state(dir)?;
    let mut keys = HashMap::with_capacity(state.keys.len());
    for rec in &state.keys {
        keys.insert(rec.kid.clone(), Arc::new(read_key(dir, rec)?));
    }
    Ok((state, keys))
}
