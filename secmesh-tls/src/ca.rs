//! A small internal CA for development and small fleets: X.509-SVIDs, revocation, CRLs
//! (the `ca` feature).
//!
//! A CA lives in a directory: `ca.key` (PKCS#8 PEM, mode 0600), `ca.crt`, `issued.log` (one
//! line per certificate: serial, SPIFFE ID, not-after) and `revoked.log` (serial and time).
//! Every file is read through `secmesh_fs` (regular files only, bounded: a device, a FIFO or a
//! huge file in the directory is an error, never a hang) and the keys are written with mode
//! 0600 whatever the umask.
//! It issues leaf certificates that follow the X.509-SVID rules — exactly one URI SAN, CA false,
//! key usage critical with digitalSignature, extended key usage serverAuth and clientAuth — for
//! SPIFFE IDs of its own trust domain only, and signs CRLs of what it revoked. Keys are ECDSA
//! P-256.
//!
//! # Example
//! ```
//! use secmesh_tls::ca::Ca;
//!
//! let dir = tempfile::tempdir()?;
//! let ca = Ca::init(dir.path(), "mesh.test".parse()?)?;
//! let svid = ca.issue(&"spiffe://mesh.test/payments".parse()?, 7)?;
//! assert!(svid.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! ca.revoke(&svid.serial)?;
//! let crl = ca.crl(1)?;
//! assert!(crl.starts_with("-----BEGIN X509 CRL-----"));
//! assert!(ca.issue(&"spiffe://other.test/x".parse()?, 7).is_err(), "another trust domain");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use secmesh_core::{SpiffeId, TrustDomain};
use time::{Duration, OffsetDateTime};

/// A CA operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Reading or writing the CA directory failed.
    #[error("{}: {source}", secmesh_fs::Shown(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file of the CA directory could not be read or written: not a regular file, too
    /// large, not text, or already there.
    #[error(transparent)]
    File(#[from] secmesh_fs::FileError),
    /// The directory already holds a CA (init) or holds none (open).
    #[error("{0}")]
    State(String),
    /// The SPIFFE ID is not in this CA's trust domain.
    #[error("{id} is not in the trust domain {td}")]
    WrongTrustDomain {
        /// The ID asked for.
        id: String,
        /// The CA's trust domain.
        td: String,
    },
    /// Certificate or key generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// No certificate with that serial was issued by this CA.
    #[error("unknown serial {0}")]
    UnknownSerial(String),
    /// A validity of zero days (or an empty window), or beyond ten years.
    #[error("validity must be 1..=3650 days")]
    BadValidity,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn gen_err(e: rcgen::Error) -> CaError {
    CaError::Generate(e.to_string())
}

/// A certificate the CA issued, with its private key.
pub struct Issued {
    /// The serial, lowercase hex.
    pub serial: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// The CA in a directory.
pub struct Ca {
    dir: PathBuf,
    td: TrustDomain,
    key: KeyPair,
    cert_pem: String,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("trust_domain", &self.td.as_str())
            .finish_non_exhaustive()
    }
}

/// The largest key, certificate or trust-domain file read.
const SMALL: u64 = secmesh_fs::SMALL;
/// The largest `issued.log` or `revoked.log` read (some 200,000 lines).
const LOG: u64 = secmesh_fs::DOCUMENT;

fn write_private(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    secmesh_fs::write_private(path, contents, secmesh_fs::Overwrite::No).map_err(CaError::from)
}

fn write_public(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    secmesh_fs::write_public(path, contents, secmesh_fs::Overwrite::Yes).map_err(CaError::from)
}

/// Read a text file of the CA directory; `None` when it does not exist.
fn read_optional(path: &Path, limit: u64) -> Result<Option<String>, CaError> {
    match secmesh_fs::read_to_string(path, limit) {
        Ok(t) => Ok(Some(t)),
        Err(secmesh_fs::FileError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn random_serial() -> Result<[u8; 16], CaError> {
    let mut b = [0u8; 16];
    secmesh_tokens::crypto::fill_random(&mut b)
        .map_err(|_| CaError::Generate("the random number generator failed".into()))?;
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // and 16 bytes long
    Ok(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Ca {
    /// Create a CA for `td` in `dir` (created if absent; refused if it already holds one).
    pub fn init(dir: impl AsRef<Path>, td: TrustDomain) -> Result<Ca, CaError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        if dir.join("ca.key").exists() {
            return Err(CaError::State(format!(
                "{} already holds a CA",
                secmesh_fs::Shown(&dir)
            )));
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("secmesh CA {}", td.as_str()));
        params
            .distinguished_name
            .push(DnType::OrganizationName, td.as_str());
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        params.subject_alt_names =
            vec![SanType::URI(td.id_string().try_into().map_err(
                |e: rcgen::Error| CaError::Generate(e.to_string()),
            )?)];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key).map_err(gen_err)?;
        write_private(&dir.join("ca.key"), key.serialize_pem().as_bytes())?;
        let cert_pem = cert.pem();
        write_public(&dir.join("ca.crt"), cert_pem.as_bytes())?;
        write_public(&dir.join("trust-domain"), td.as_str().as_bytes())?;
        Ok(Ca {
            dir,
            td,
            key,
            cert_pem,
        })
    }

    /// Open the CA in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Ca, CaError> {
        let dir = dir.as_ref().to_path_buf();
        let read = |name: &str| {
            read_optional(&dir.join(name), SMALL)?.ok_or_else(|| {
                CaError::State(format!(
                    "{} holds no CA (run `secmesh ca init`)",
                    secmesh_fs::Shown(&dir)
                ))
            })
        };
        let key = KeyPair::from_pem(&read("ca.key")?).map_err(gen_err)?;
        let cert_pem = read("ca.crt")?;
        let td: TrustDomain = read("trust-domain")?
            .trim()
            .parse()
            .map_err(|e| CaError::State(format!("bad trust-domain file: {e}")))?;
        Ok(Ca {
            dir,
            td,
            key,
            cert_pem,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.td
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, CaError> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(gen_err)
    }

    /// Issue an X.509-SVID for `id` (in this CA's trust domain), valid from five minutes ago
    /// (for clock skew) for `days`.
    pub fn issue(&self, id: &SpiffeId, days: u32) -> Result<Issued, CaError> {
        if days == 0 || days > 3650 {
            return Err(CaError::BadValidity);
        }
        let now = SystemTime::now();
        let skew = std::time::Duration::from_secs(300);
        let not_before = now.checked_sub(skew).unwrap_or(now);
        let not_after = now + std::time::Duration::from_secs(u64::from(days) * 86_400);
        self.issue_between(id, not_before, not_after)
    }

    /// Issue an X.509-SVID for `id` valid from `not_before` to `not_after` (at most ten years
    /// apart). The window may lie in the past or the future, which is what tests of expired and
    /// not-yet-valid certificates need.
    pub fn issue_between(
        &self,
        id: &SpiffeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Issued, CaError> {
        if !id.is_member_of(&self.td) {
            return Err(CaError::WrongTrustDomain {
                id: id.to_string(),
                td: self.td.as_str().to_owned(),
            });
        }
        let span = not_after
            .duration_since(not_before)
            .map_err(|_| CaError::BadValidity)?;
        if span.is_zero() || span > std::time::Duration::from_secs(3650 * 86_400) {
            return Err(CaError::BadValidity);
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.td.as_str());
        params.subject_alt_names =
            vec![SanType::URI(id.as_str().try_into().map_err(
                |e: rcgen::Error| CaError::Generate(e.to_string()),
            )?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = OffsetDateTime::from(not_before);
        params.not_after = OffsetDateTime::from(not_after);
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params.signed_by(&key, &self.issuer()?).map_err(gen_err)?;
        let serial_hex = hex(&serial);
        let log = self.dir.join("issued.log");
        let mut f = secmesh_fs::open_append(&log)?;
        writeln!(f, "{serial_hex} {id} {}", params.not_after.unix_timestamp()).map_err(io(&log))?;
        Ok(Issued {
            serial: serial_hex,
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }

    fn issued_serials(&self) -> Result<Vec<String>, CaError> {
        let text = read_optional(&self.dir.join("issued.log"), LOG)?.unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|l| l.split(' ').next().map(str::to_owned))
            .collect())
    }

    /// The revoked serials and when.
    pub fn revoked(&self) -> Result<Vec<(String, i64)>, CaError> {
        let text = read_optional(&self.dir.join("revoked.log"), LOG)?.unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|l| {
                let (s, at) = l.split_once(' ')?;
                Some((s.to_owned(), at.parse().ok()?))
            })
            .collect())
    }

    /// Revoke a certificate this CA issued, by serial (hex). Revoking twice is harmless.
    pub fn revoke(&self, serial: &str) -> Result<(), CaError> {
        let serial = serial.trim().to_ascii_lowercase();
        if !self.issued_serials()?.contains(&serial) {
            return Err(CaError::UnknownSerial(serial));
        }
        if self.revoked()?.iter().any(|(s, _)| *s == serial) {
            return Ok(());
        }
        let log = self.dir.join("revoked.log");
        let mut f = secmesh_fs::open_append(&log)?;
        writeln!(f, "{serial} {}", OffsetDateTime::now_utc().unix_timestamp()).map_err(io(&log))
    }

    /// A CRL of everything revoked, valid for `days`, PEM.
    pub fn crl(&self, days: u32) -> Result<String, CaError> {
        if days == 0 || days > 3650 {
            return Err(CaError::BadValidity);
        }
        let now = OffsetDateTime::now_utc();
        let mut revoked_certs = Vec::new();
        for (serial, at) in self.revoked()? {
            let bytes = unhex(&serial).ok_or_else(|| CaError::UnknownSerial(serial.clone()))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: OffsetDateTime::from_unix_timestamp(at).unwrap_or(now),
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(i64::from(days)),
            crl_number: SerialNumber::from_slice(&now.unix_timestamp().to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer()?)
            .and_then(|crl| crl.pem())
            .map_err(gen_err)
    }
}
