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
//! (or the thread that [`Workload::watch`] starts) swaps a renewed certificate, a new CA bundle
//! or a fresh CRL into every configuration already handed out, without a restart; a reload that
//! fails keeps the last good material. New handshakes see new material at once; for the
//! connections already open, [`Workload::reloads`] announces each swap and
//! [`Workload::check_client`] re-checks a connected peer's chain against it, so a server can
//! close the connections of a client whose certificate a new CRL revokes (secmesh-tower's
//! `TlsServer::from_workload` does). TLS 1.3 only, the provider of [`crypto_provider`](crate::crypto_provider), ALPN `h2` and `http/1.1`.
//! Federation (peers of other trust domains) is not supported.
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
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use secmesh_core::{SpiffeId, TrustDomain};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::svid::{self, SvidError};

/// Loading a workload's files failed. The previous material, if any, stays in use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file holds no PEM object of the kind expected, or a malformed one.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The private key is unusable, or does not belong to the certificate.
    #[error("{path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The workload's own certificate is not an X.509-SVID leaf.
    #[error("{path}: not an X.509-SVID: {source}")]
    NotAnSvid {
        /// The certificate file.
        path: PathBuf,
        /// The rule it breaks.
        source: SvidError,
    },
    /// A CA certificate cannot serve as a trust anchor, or a CRL does not parse.
    #[error("{path}: {reason}")]
    Trust {
        /// The CA bundle or CRL file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The workload's own certificate does not chain to the bundle (or is expired or revoked).
    #[error("{path}: the workload certificate does not verify against the CA bundle: {reason}")]
    OwnCertificate {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Why a peer's certificate was refused, beyond the chain checks rustls reports itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRejected {
    /// The leaf is not an X.509-SVID.
    #[error("peer certificate is not an X.509-SVID: {0}")]
    NotAnSvid(SvidError),
    /// The peer's SPIFFE ID is in another trust domain.
    #[error("peer {id} is not in the trust domain {expected}")]
    ForeignTrustDomain {
        /// The peer's ID.
        id: String,
        /// This workload's trust domain.
        expected: String,
    },
    /// The server's SPIFFE ID is not the one the client expects.
    #[error("server is {id}, expected {expected}")]
    UnexpectedServer {
        /// The server's ID.
        id: String,
        /// What the client accepts.
        expected: String,
    },
}

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

    fn paths(&self) -> impl Iterator<Item = &Path> {
        [&self.cert, &self.key, &self.ca]
            .into_iter()
            .chain(self.crl.as_ref())
            .map(PathBuf::as_path)
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

    fn accepts(&self, id: &SpiffeId) -> bool {
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

/// The material loaded from the files at one time.
struct Material {
    key: Arc<CertifiedKey>,
    id: SpiffeId,
    trust_domain: TrustDomain,
    roots: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    stamps: Vec<Option<(SystemTime, u64)>>,
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

fn stamps(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    files
        .paths()
        .map(|p| {
            let md = fs::metadata(p).ok()?;
            Some((md.modified().ok()?, md.len()))
        })
        .collect()
}

/// Read a certificate, key, bundle or CRL file: a regular file only (a device, a FIFO, a
/// directory is refused without hanging), at most 16 MiB.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    secmesh_fs::read(path, secmesh_fs::DOCUMENT).map_err(|e| TlsError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

fn pem_err(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<Material, TlsError> {
    // Read the stamps first: a file changed while loading is loaded again on the next check.
    let stamps = stamps(files);
    let chain = certs(&files.cert)?;
    let id = svid::spiffe_id(&chain[0]).map_err(|source| TlsError::NotAnSvid {
        path: files.cert.clone(),
        source,
    })?;
    let key_bytes = read(&files.key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| pem_err(&files.key, e))?;
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
    let ca_certs = certs(&files.ca)?;
    let mut roots = Vec::with_capacity(ca_certs.len());
    for der in &ca_certs {
        let anchor = webpki::anchor_from_trusted_cert(der)
            .map_err(|e| trust_err(&files.ca, format!("not a usable CA certificate: {e}")))?
            .to_owned();
        roots.push(anchor);
    }

    let mut crls = Vec::new();
    if let Some(path) = &files.crl {
        let bytes = read(path)?;
        for der in CertificateRevocationListDer::pem_slice_iter(&bytes) {
            let der = der.map_err(|e| pem_err(path, e))?;
            let crl = OwnedCertRevocationList::from_der(&der)
                .map_err(|e| trust_err(path, format!("not a CRL: {e}")))?;
            crls.push(CertRevocationList::from(crl));
        }
        if crls.is_empty() {
            return Err(pem_err(path, "no X509 CRL in the file"));
        }
    }

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

fn check_chain(
    m: &Material,
    crl_expiry: CrlExpiry,
    provider: &CryptoProvider,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: KeyUsage,
) -> Result<(), rustls::Error> {
    let cert = EndEntityCert::try_from(end_entity).map_err(pki_error)?;
    let crls: Vec<&CertRevocationList<'_>> = m.crls.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::Chain)
            // A CRL speaks for the CA that signed it; certificates of other CAs in the bundle
            // have no CRL to consult.
            .with_status_policy(UnknownStatusPolicy::Allow)
            .with_expiration_policy(match crl_expiry {
                CrlExpiry::Enforce => ExpirationPolicy::Enforce,
                CrlExpiry::Ignore => ExpirationPolicy::Ignore,
            })
            .build()
    });
    cert.verify_for_usage(
        provider.signature_verification_algorithms.all,
        &m.roots,
        intermediates,
        now,
        usage,
        revocation,
        None,
    )
    .map(|_| ())
    .map_err(pki_error)
}

/// The peer's SPIFFE ID after the chain and leaf checks.
fn verify_peer(
    inner: &Inner,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: KeyUsage,
) -> Result<SpiffeId, rustls::Error> {
    let m = inner.material.load();
    check_chain(
        &m,
        inner.files.crl_expiry,
        &inner.provider,
        end_entity,
        intermediates,
        now,
        usage,
    )?;
    let id = svid::spiffe_id(end_entity).map_err(|e| rejected(PeerRejected::NotAnSvid(e)))?;
    if !id.is_member_of(&m.trust_domain) {
        return Err(rejected(PeerRejected::ForeignTrustDomain {
            id: id.to_string(),
            expected: m.trust_domain.as_str().to_owned(),
        }));
    }
    Ok(id)
}

fn rejected(e: PeerRejected) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The rustls error for a webpki one (rustls's own mapping is private).
fn pki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let ce = match e {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::CertRevoked => CertificateError::Revoked,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        E::CrlExpired { .. } => CertificateError::ExpiredRevocationList,
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => CertificateError::BadSignature,
        E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(ce)
}

impl Workload {
    /// Load the files (with the [`crypto_provider`](crate::crypto_provider)). Fails unless the certificate is an
    /// X.509-SVID that verifies against the bundle (and CRLs) with the key that matches it.
    pub fn load(files: TlsFiles) -> Result<Workload, TlsError> {
        let provider = Arc::new(crate::crypto_provider());
        let material = load(&files, &provider)?;
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
        let _guard = self
            .inner
            .reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let m = load(&self.inner.files, &self.inner.provider)?;
        self.inner.material.store(Arc::new(m));
        self.inner
            .generation
            .send_modify(|g| *g = g.wrapping_add(1));
        Ok(())
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
        if stamps(&self.inner.files) == self.inner.material.load().stamps {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// Check the files every `every` on a background thread and reload them when they change
    /// (a failed reload is logged with `tracing` and retried at the next change). The thread
    /// stops when the returned [`Watch`] is dropped. Fails only if the thread cannot be started.
    pub fn watch(&self, every: Duration) -> std::io::Result<Watch> {
        let stop = Arc::new(AtomicBool::new(false));
        let workload = self.clone();
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("secmesh-tls-watch".into())
            .spawn(move || {
                // The stamps of a set of files that failed to load: not tried again until they
                // change.
                let mut failed = None;
                while !flag.load(Ordering::Acquire) {
                    thread::park_timeout(every);
                    let now = stamps(&workload.inner.files);
                    if now == workload.inner.material.load().stamps || failed.as_ref() == Some(&now)
                    {
                        continue;
                    }
                    match workload.reload() {
                        Ok(()) => {
                            tracing::info!(target: "secmesh::tls", id = %workload.id(), "TLS material reloaded");
                            failed = None;
                        }
                        Err(e) => {
                            tracing::warn!(target: "secmesh::tls", error = %e, "TLS reload failed; keeping the previous material");
                            failed = Some(now);
                        }
                    }
                }
            })?;
        Ok(Watch {
            stop,
            thread: Some(thread),
        })
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

/// The file-watching thread of [`Workload::watch`]; dropping it stops the thread.
#[derive(Debug)]
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Hands out the current certificate and key, to servers and to clients.
struct Resolver(Arc<Inner>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("secmesh_tls::Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.material.load().key))
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.material.load().key))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn verify_tls13(
    inner: &Inner,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &inner.provider.signature_verification_algorithms,
    )
}

fn schemes(inner: &Inner) -> Vec<SignatureScheme> {
    inner
        .provider
        .signature_verification_algorithms
        .supported_schemes()
}

fn tls12_refused() -> rustls::Error {
    rustls::Error::General("secmesh offers TLS 1.3 only".into())
}

/// Servers check clients with this.
struct SvidClientVerifier {
    inner: Arc<Inner>,
    auth: ClientAuth,
}

impl fmt::Debug for SvidClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidClientVerifier")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for SvidClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.auth == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints are optional and borrowed from `self`; the bundle may change on reload, so
        // send none (clients of a mesh have one certificate anyway).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        verify_peer(
            &self.inner,
            end_entity,
            intermediates,
            now,
            KeyUsage::client_auth(),
        )
        .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(&self.inner, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes(&self.inner)
    }
}

/// Clients check servers with this.
struct SvidServerVerifier {
    inner: Arc<Inner>,
    expected: ServerId,
}

impl fmt::Debug for SvidServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidServerVerifier")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for SvidServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = verify_peer(
            &self.inner,
            end_entity,
            intermediates,
            now,
            KeyUsage::server_auth(),
        )?;
        if !self.expected.accepts(&id) {
            return Err(rejected(PeerRejected::UnexpectedServer {
                id: id.to_string(),
                expected: self.expected.to_string(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(&self.inner, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes(&self.inner)
    }
}
