//! rustls configurations for mutual TLS between workloads of one trust domain.
//!
//! A [`Workload`] is this service's identity on the wire, loaded from files: its X.509-SVID
//! (certificate chain and key), the trust domain's CA bundle and, optionally, the CA's CRLs.
//! From it come:
//!
//! - [`Workload::server_config`]: a rustls `ServerConfig` that asks for client certificates and,
//!   in [`ClientAuth::Required`] mode, refuses a client without one. A presented certificate must
//!   chain to the bundle, be valid now, not be revoked by a CRL, carry the clientAuth usage, follow
//!   the X.509-SVID leaf rules and name a SPIFFE ID of this workload's trust domain.
//! - [`Workload::client_config`]: a rustls `ClientConfig` that presents the workload's SVID and
//!   checks the server's certificate the same way (serverAuth usage), then its SPIFFE ID against
//!   the [`ServerId`] expected. The DNS name a client dials is not checked: in a SPIFFE mesh the
//!   SPIFFE ID is the name.
//!
//! Both configurations read the files' contents through the workload, so [`Workload::reload`]
//! (or the task that [`Workload::watch`] starts, on `secmesh_fs`'s file watcher) swaps a renewed certificate, a new CA bundle
//! or a fresh CRL into every configuration already handed out, without a restart; a reload that
//! fails keeps the last good material. New handshakes see new material at once; for the
//! connections already open, [`Workload::reloads`] announces each swap and
//! [`Workload::check_client`] re-checks a connected peer's chain against it, so a server can
//! close the connections of a client whose certificate a new CRL revokes (secmesh-tower's
//! `TlsServer::from_workload` does). TLS 1.3 only, the provider of [`crypto_provider`](crate::crypto_provider), ALPN `h2` and `http/1.1`.
//! Federation (peers of other trust domains) is not supported.
//!
//! The module's files: `error` ([`TlsError`], [`PeerRejected`]), `material` (reading and
//! checking the files), `crl` (CRLs verified once at load, then an index each handshake
//! consults), `verify` (the peer checks as rustls verifiers), `watch` ([`Watch`]).
//!
//! # Example
//! ```
//! use secmesh_tls::ca::Ca;
//! use secmesh_tls::config::{ClientAuth, ServerId, TlsFiles, Workload};
//!
//! let dir = tempfile::tempdir()?;
//! let ca = Ca::init(dir.path().join("ca"), "mesh.test".parse()?)?;
//! let svid = ca.issue(&"spiffe://mesh.test/orders".parse()?, 1)?;
//! std::fs::write(dir.path().join("orders.crt"), &svid.cert_pem)?;
//! std::fs::write(dir.path().join("orders.key"), &svid.key_pem)?;
//!
//! let files = TlsFiles::new(
//!     dir.path().join("orders.crt"),
//!     dir.path().join("orders.key"),
//!     dir.path().join("ca/ca.crt"),
//! );
//! let orders = Workload::load(files)?;
//! assert_eq!(orders.id().as_str(), "spiffe://mesh.test/orders");
//! let server = orders.server_config(ClientAuth::Required);
//! let client = orders.client_config(ServerId::exact("spiffe://mesh.test/payments".parse()?));
//! assert_eq!(server.alpn_protocols[0], b"h2");
//! assert!(client.client_auth_cert_resolver.has_certs());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::{ClientConfig, ServerConfig};
use secmesh_core::SpiffeId;
use secmesh_fs::watch::{Snapshot, Stamps};
use webpki::KeyUsage;

mod crl;
mod error;
mod material;
mod verify;
mod watch;

pub use error::{PeerRejected, TlsError};
pub use watch::Watch;

use crate::svid;
use material::Material;
use verify::{Resolver, SvidClientVerifier, SvidServerVerifier, verify_peer};

/// What happens when a CRL is past its `nextUpdate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlExpiry {
    /// Refuse every certificate the stale CRL covers (the default: fail closed until the CRL
    /// file is refreshed and reloaded).
    #[default]
    Enforce,
    /// Use the stale CRL anyway.
    Ignore,
}

/// Where a workload's TLS material lives.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    crl: Option<PathBuf>,
    crl_expiry: CrlExpiry,
}

impl TlsFiles {
    /// The workload's certificate chain (PEM, leaf first), its private key (PKCS#8, PKCS#1 or
    /// SEC1 PEM) and the trust domain's CA bundle (PEM, one or more certificates).
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>, ca: impl Into<PathBuf>) -> Self {
        TlsFiles {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
            crl: None,
            crl_expiry: CrlExpiry::Enforce,
        }
    }

    /// A PEM file of CRLs (from `secmesh ca crl`) to check peers against.
    #[must_use]
    pub fn crl(mut self, path: impl Into<PathBuf>) -> Self {
        self.crl = Some(path.into());
        self
    }

    /// What to do with a CRL past its `nextUpdate` (default [`CrlExpiry::Enforce`]).
    #[must_use]
    pub fn crl_expiry(mut self, policy: CrlExpiry) -> Self {
        self.crl_expiry = policy;
        self
    }

    /// The files, in the order they are read: certificate, key, bundle, then the CRL file.
    pub(super) fn paths(&self) -> Vec<PathBuf> {
        [&self.cert, &self.key, &self.ca]
            .into_iter()
            .chain(self.crl.as_ref())
            .cloned()
            .collect()
    }
}

/// Whether a server requires client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A client without a valid certificate is refused in the handshake.
    Required,
    /// A client may connect without a certificate (it then has no peer identity); one that
    /// presents a certificate must present a valid one.
    Optional,
}

/// The server identities a client accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerId {
    /// Exactly this SPIFFE ID.
    Exact(SpiffeId),
    /// Any of these.
    AnyOf(Vec<SpiffeId>),
    /// Any workload of the client's own trust domain.
    TrustDomain,
}

impl ServerId {
    /// Exactly `id`.
    pub fn exact(id: SpiffeId) -> Self {
        ServerId::Exact(id)
    }

    pub(super) fn accepts(&self, id: &SpiffeId) -> bool {
        match self {
            ServerId::Exact(want) => want == id,
            ServerId::AnyOf(ids) => ids.contains(id),
            ServerId::TrustDomain => true,
        }
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerId::Exact(id) => f.write_str(id.as_str()),
            ServerId::AnyOf(ids) => {
                let ids: Vec<&str> = ids.iter().map(SpiffeId::as_str).collect();
                write!(f, "one of [{}]", ids.join(", "))
            }
            ServerId::TrustDomain => f.write_str("any workload of the trust domain"),
        }
    }
}

struct Inner {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    material: ArcSwap<Material>,
    /// Serializes reloads so two concurrent ones cannot swap in older material last.
    reload: Mutex<()>,
    /// Bumped after every swap; servers subscribe to re-check the peers of open connections.
    generation: tokio::sync::watch::Sender<u64>,
}

/// This workload's identity on the wire: its SVID, the trust bundle and the CRLs, reloadable.
/// Cloning is cheap and every clone sees reloads.
#[derive(Clone)]
pub struct Workload {
    inner: Arc<Inner>,
}

impl fmt::Debug for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.inner.material.load();
        f.debug_struct("Workload")
            .field("id", &m.id.as_str())
            .field("roots", &m.roots.len())
            .field("crls", &m.crls.len())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Parse `snapshot` and swap it in; on error the previous material stays in use.
    fn swap(&self, snapshot: &Snapshot) -> Result<(), TlsError> {
        // Serializes reloads so two concurrent ones cannot swap in older material last.
        let _guard = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let m = material::load(&self.files, snapshot, &self.provider)?;
        self.material.store(Arc::new(m));
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
        Ok(())
    }
}

impl Workload {
    /// Load the files (with the [`crypto_provider`](crate::crypto_provider)). Fails unless the certificate is an
    /// X.509-SVID that verifies against the bundle (and CRLs) with the key that matches it.
    pub fn load(files: TlsFiles) -> Result<Workload, TlsError> {
        let provider = Arc::new(crate::crypto_provider());
        let material = material::load(&files, &material::read(&files)?, &provider)?;
        Ok(Workload {
            inner: Arc::new(Inner {
                files,
                provider,
                material: ArcSwap::from_pointee(material),
                reload: Mutex::new(()),
                generation: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// The workload's SPIFFE ID (of the certificate in use now).
    pub fn id(&self) -> SpiffeId {
        self.inner.material.load().id.clone()
    }

    /// The `x5t#S256` thumbprint of the certificate in use now: what a token bound to this
    /// workload carries in `cnf`.
    pub fn thumbprint(&self) -> String {
        svid::thumbprint(&self.inner.material.load().key.cert[0])
    }

    /// Load the files again and swap them in; on error the previous material stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let snapshot = material::read(&self.inner.files)?;
        self.inner.swap(&snapshot)
    }

    /// How many times new material has been swapped in since [`Workload::load`].
    pub fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// A receiver that sees [`Workload::generation`] change after every reload: a server
    /// awaits `changed()` to re-check the peers of its open connections with
    /// [`Workload::check_client`], so that a certificate revoked by a new CRL (or no longer
    /// chaining to a new bundle) loses its connections too, not only its next handshake.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Check a client's certificate chain (leaf first, as rustls hands it out with
    /// `peer_certificates()`) against the material in use now, exactly as a handshake with
    /// [`Workload::server_config`] would: chain to the bundle, valid now, not revoked by the
    /// current CRLs, clientAuth usage, X.509-SVID leaf rules, SPIFFE ID of this trust domain.
    /// Returns the peer's SPIFFE ID.
    pub fn check_client(&self, chain: &[CertificateDer<'_>]) -> Result<SpiffeId, rustls::Error> {
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return Err(rustls::Error::NoCertificatesPresented);
        };
        verify_peer(
            &self.inner,
            end_entity,
            intermediates,
            UnixTime::now(),
            KeyUsage::client_auth(),
        )
    }

    /// Reload if any file's modification time or size changed since the last load. Returns
    /// whether new material was swapped in.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        if Stamps::of(self.inner.files.paths()) == self.inner.material.load().stamps {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// A server configuration: this workload's SVID, client certificates checked as the module
    /// says, TLS 1.3, ALPN `h2` then `http/1.1`.
    pub fn server_config(&self, auth: ClientAuth) -> Arc<ServerConfig> {
        let verifier = Arc::new(SvidClientVerifier {
            inner: Arc::clone(&self.inner),
            auth,
        });
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.inner.provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("both crypto providers support TLS 1.3")
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(&self.inner))));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A client configuration: presents this workload's SVID, accepts a server whose
    /// certificate verifies and whose SPIFFE ID `server` accepts; TLS 1.3, ALPN `h2` then
    /// `http/1.1`.
    pub fn client_config(&self, server: ServerId) -> Arc<ClientConfig> {
        let verifier = Arc::new(SvidServerVerifier {
            inner: Arc::clone(&self.inner),
            expected: server,
        });
        let mut config = ClientConfig::builder_with_provider(Arc::clone(&self.inner.provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("both crypto providers support TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(Resolver(Arc::clone(&self.inner))));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}
