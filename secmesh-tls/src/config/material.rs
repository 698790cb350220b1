//! The material loaded from the files at one time: the SVID and its key, the trust anchors,
//! the CRLs; parsed from one [`Snapshot`] of the files and checked before it is swapped in.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor, UnixTime};
use rustls::sign::CertifiedKey;
use secmesh_core::{SpiffeId, TrustDomain};
use secmesh_fs::watch::{Snapshot, Stamps};
use webpki::KeyUsage;

use super::crl::Crls;
use super::verify::check_chain;
use super::{TlsError, TlsFiles};
use crate::svid;

/// The material loaded from the files at one time.
pub(super) struct Material {
    pub(super) key: Arc<CertifiedKey>,
    pub(super) id: SpiffeId,
    pub(super) trust_domain: TrustDomain,
    pub(super) roots: Vec<TrustAnchor<'static>>,
    /// Verified once here, consulted at every handshake.
    pub(super) crls: Crls,
    pub(super) stamps: Stamps,
}

/// Read every file of `files` at one time: regular files only (a device, a FIFO, a directory
/// is refused without hanging), at most 16 MiB each.
pub(super) fn read(files: &TlsFiles) -> Result<Snapshot, TlsError> {
    Snapshot::read(&files.paths(), secmesh_fs::DOCUMENT).map_err(|e| TlsError::Io {
        path: e.path().to_path_buf(),
        source: e.into(),
    })
}

fn pem_err(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// Parse and check the material of one snapshot of the files (in the order of
/// [`TlsFiles::paths`]).
pub(super) fn load(
    files: &TlsFiles,
    snapshot: &Snapshot,
    provider: &CryptoProvider,
) -> Result<Material, TlsError> {
    // The stamps from before the read: a file changed while loading is loaded again later.
    let stamps = snapshot.stamps().clone();
    let chain = certs(&files.cert, snapshot.file(0))?;
    let id = svid::spiffe_id(&chain[0]).map_err(|source| TlsError::NotAnSvid {
        path: files.cert.clone(),
        source,
    })?;
    let key_der =
        PrivateKeyDer::from_pem_slice(snapshot.file(1)).map_err(|e| pem_err(&files.key, e))?;
    let key_err = |reason: String| TlsError::Key {
        path: files.key.clone(),
        reason,
    };
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| key_err(e.to_string()))?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match()
        .map_err(|e| key_err(format!("the key does not match the certificate: {e}")))?;

    let trust_err = |path: &Path, reason: String| TlsError::Trust {
        path: path.to_path_buf(),
        reason,
    };
    let ca_certs = certs(&files.ca, snapshot.file(2))?;
    let mut roots = Vec::with_capacity(ca_certs.len());
    for der in &ca_certs {
        let anchor = webpki::anchor_from_trusted_cert(der)
            .map_err(|e| trust_err(&files.ca, format!("not a usable CA certificate: {e}")))?
            .to_owned();
        roots.push(anchor);
    }

    let crls = match &files.crl {
        Some(path) => Crls::load(
            path,
            snapshot.file(3),
            &roots,
            provider.signature_verification_algorithms.all,
        )?,
        None => Crls::none(),
    };

    let material = Material {
        trust_domain: id.trust_domain(),
        id,
        key: Arc::new(key),
        roots,
        crls,
        stamps,
    };
    // Refuse to serve a certificate peers would refuse: it must verify against the bundle.
    let own = &material.key.cert;
    check_chain(
        &material,
        files.crl_expiry,
        provider,
        &own[0],
        &own[1..],
        UnixTime::now(),
        KeyUsage::server_auth(),
    )
    .map_err(|e| TlsError::OwnCertificate {
        path: files.cert.clone(),
        reason: e.to_string(),
    })?;
    Ok(material)
}
