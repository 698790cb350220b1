//! CRLs checked once, when they are loaded, and consulted at every handshake without verifying
//! them again.
//!
//! webpki verifies a CRL's signature each time it consults it, that is at every handshake
//! (rustls/webpki#81): with CRLs on both sides a mutual handshake paid two more signature
//! checks. Here each CRL is parsed by webpki (so the CRLs accepted are the ones webpki accepts),
//! its signature verified against the CA of the bundle that its issuer names, and the verified
//! CRLs are indexed by the issuer's name. A handshake then builds the chain without CRLs and
//! checks every certificate of the path found (end entity and intermediates) against the
//! index, with webpki's semantics:
//!
//! - the CRL consulted for a certificate is the first one (in file order) whose issuer is the
//!   certificate's issuer, by the exact DER name; none means an unknown status, allowed (a CRL
//!   speaks for the CA that signed it only);
//! - that CRL must have been verified with the key of the issuer in the path, else the
//!   certificate is refused as webpki refuses it (`InvalidCrlSignatureForPublicKey`); an
//!   intermediate issuer with a key usage extension must assert cRLSign;
//! - a CRL past its `nextUpdate` refuses the certificates it covers under
//!   [`CrlExpiry::Enforce`], checked at each handshake against the handshake's time;
//! - the serial is looked up exactly as webpki does (its own map of the DER integer bytes).
//!
//! A CRL whose issuer names a CA of the bundle but that no such CA signed is refused at load
//! ([`TlsError::CrlNotVerified`]): a reload with it keeps the last good material. A set of CRLs
//! this index cannot stand for (a CRL of a CA outside the bundle, such as an intermediate, or
//! one with an issuing distribution point) is consulted the way it always was: every CRL handed
//! to webpki at each handshake.

use std::collections::HashMap;
use std::path::Path;

use rustls::pki_types::{CertificateRevocationListDer, SignatureVerificationAlgorithm};
use rustls::pki_types::{TrustAnchor, UnixTime};
use webpki::{CertRevocationList, OwnedCertRevocationList, VerifiedPath};

use super::{CrlExpiry, TlsError};

/// The CRLs of one load.
pub(super) struct Crls {
    /// Every CRL of the file, in file order.
    list: Vec<CertRevocationList<'static>>,
    mode: Mode,
}

/// How the handshakes consult the CRLs.
enum Mode {
    /// Through the index of CRLs verified at load.
    Indexed(HashMap<Box<[u8]>, Entry>),
    /// Every CRL handed to webpki at each handshake.
    PerHandshake,
}

/// The CRL consulted for the certificates of one issuer name.
struct Entry {
    /// Index into [`Crls::list`].
    crl: usize,
    /// The keys (SPKI contents, without the outer SEQUENCE) of the bundle's CAs of that name
    /// that verified the CRL's signature.
    keys: Vec<Box<[u8]>>,
    next_update: UnixTime,
}

impl Crls {
    /// No CRL.
    pub(super) fn none() -> Crls {
        Crls {
            list: Vec::new(),
            mode: Mode::Indexed(HashMap::new()),
        }
    }

    /// Parse the CRLs of a PEM file and verify each against the bundle.
    pub(super) fn load(
        path: &Path,
        pem: &[u8],
        roots: &[TrustAnchor<'static>],
        algs: &[&dyn SignatureVerificationAlgorithm],
    ) -> Result<Crls, TlsError> {
        use rustls::pki_types::pem::PemObject;
        let pem_err = |reason: String| TlsError::Pem {
            path: path.to_path_buf(),
            reason,
        };
        let mut list = Vec::new();
        let mut index: HashMap<Box<[u8]>, Entry> = HashMap::new();
        let mut indexable = true;
        for der in CertificateRevocationListDer::pem_slice_iter(pem) {
            let der = der.map_err(|e| pem_err(e.to_string()))?;
            let crl =
                CertRevocationList::from(OwnedCertRevocationList::from_der(&der).map_err(|e| {
                    TlsError::Trust {
                        path: path.to_path_buf(),
                        reason: format!("not a CRL: {e}"),
                    }
                })?);
            let n = list.len();
            let refused = |reason: String| TlsError::CrlNotVerified {
                path: path.to_path_buf(),
                index: n,
                reason,
            };
            let issuers: Vec<&TrustAnchor<'_>> = roots
                .iter()
                .filter(|a| a.subject.as_ref() == crl.issuer())
                .collect();
            if issuers.is_empty() {
                // Not a CA of the bundle: an intermediate's CRL, verified against the
                // intermediate a peer presents, at each handshake.
                indexable = false;
            } else {
                let signed = signed_parts(&der)
                    .ok_or_else(|| refused("the CRL's signature does not parse".into()))?;
                let mut keys = Vec::new();
                let mut last = "";
                for anchor in &issuers {
                    match verify(algs, anchor.subject_public_key_info.as_ref(), &signed) {
                        Ok(()) => keys.push(Box::from(anchor.subject_public_key_info.as_ref())),
                        Err(e) => last = e,
                    }
                }
                if keys.is_empty() {
                    return Err(refused(format!(
                        "not signed by the CA of the bundle it names as its issuer: {last}"
                    )));
                }
                match (crl.issuing_distribution_point(), next_update(&der)) {
                    (None, Some(next_update)) => {
                        index.entry(Box::from(crl.issuer())).or_insert(Entry {
                            crl: n,
                            keys,
                            next_update,
                        });
                    }
                    // The scope of an issuing distribution point is webpki's to judge.
                    _ => indexable = false,
                }
            }
            list.push(crl);
        }
        if list.is_empty() {
            return Err(pem_err("no X509 CRL in the file".into()));
        }
        let mode = if indexable {
            Mode::Indexed(index)
        } else {
            tracing::info!(
                target: "secmesh::tls",
                path = %path.display(),
                "a CRL of a CA outside the bundle or with a distribution point: CRLs are verified at each handshake"
            );
            Mode::PerHandshake
        };
        Ok(Crls { list, mode })
    }

    /// How many CRLs.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Every CRL, when they are to be handed to webpki at each handshake; `None` when the
    /// index stands for them (or there is none).
    pub(super) fn per_handshake(&self) -> Option<&[CertRevocationList<'static>]> {
        match self.mode {
            Mode::PerHandshake => Some(&self.list),
            Mode::Indexed(_) => None,
        }
    }

    /// Whether the index has nothing to check.
    pub(super) fn is_empty_index(&self) -> bool {
        matches!(&self.mode, Mode::Indexed(index) if index.is_empty())
    }

    /// Check every certificate of a verified path against the index: the end entity, then
    /// each intermediate, each with the issuer above it in the path.
    pub(super) fn check_path(
        &self,
        path: &VerifiedPath<'_>,
        now: UnixTime,
        expiry: CrlExpiry,
    ) -> Result<(), webpki::Error> {
        let Mode::Indexed(index) = &self.mode else {
            return Ok(());
        };
        let mut cert: &webpki::Cert<'_> = path.end_entity();
        let mut above = path.intermediate_certificates();
        loop {
            let issuer = above.next();
            if let Some(entry) = index.get(cert.issuer()) {
                self.check_one(entry, cert, issuer, path.anchor(), now, expiry)?;
            }
            match issuer {
                Some(next) => cert = next,
                None => return Ok(()),
            }
        }
    }

    fn check_one(
        &self,
        entry: &Entry,
        cert: &webpki::Cert<'_>,
        issuer: Option<&webpki::Cert<'_>>,
        anchor: &TrustAnchor<'_>,
        now: UnixTime,
        expiry: CrlExpiry,
    ) -> Result<(), webpki::Error> {
        let verified = match issuer {
            // webpki does not look at a trust anchor's key usage.
            None => entry
                .keys
                .iter()
                .any(|k| **k == *anchor.subject_public_key_info.as_ref()),
            // An intermediate named like a CA of the bundle: rare, so parsed here.
            Some(ca) => {
                let spki = ca.subject_public_key_info();
                let key = tlv(spki.as_ref(), SEQUENCE).map(|(_, value, _)| value);
                if !key.is_some_and(|key| entry.keys.iter().any(|k| **k == *key)) {
                    false
                } else {
                    crl_signer(ca)?;
                    true
                }
            }
        };
        if !verified {
            return Err(webpki::Error::InvalidCrlSignatureForPublicKey);
        }
        if expiry == CrlExpiry::Enforce && now >= entry.next_update {
            return Err(webpki::Error::CrlExpired {
                time: now,
                next_update: entry.next_update,
            });
        }
        match self.list[entry.crl].find_serial(cert.serial())? {
            Some(_) => Err(webpki::Error::CertRevoked),
            None => Ok(()),
        }
    }
}

/// An issuing intermediate with a key usage extension must assert cRLSign (as webpki asks).
fn crl_signer(ca: &webpki::Cert<'_>) -> Result<(), webpki::Error> {
    use x509_parser::prelude::FromDer;
    let der = ca.der();
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(der.as_ref())
        .map_err(|_| webpki::Error::BadDer)?;
    match x509.key_usage() {
        Ok(None) => Ok(()),
        Ok(Some(ku)) if ku.value.crl_sign() => Ok(()),
        Ok(Some(_)) => Err(webpki::Error::IssuerNotCrlSigner),
        Err(_) => Err(webpki::Error::BadDer),
    }
}

/// The parts of a CRL its signature covers: `(tbsCertList with its header, the signature
/// algorithm's contents, the signature)`.
struct Signed<'a> {
    tbs: &'a [u8],
    alg: &'a [u8],
    sig: &'a [u8],
}

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;

/// One DER element of `tag` at the start of `input`: `(the element, its contents, the rest)`.
/// Definite lengths of up to four bytes; every slice through `get`.
fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let first = usize::from(*input.get(1)?);
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first - 0x80;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((
        input.get(..end)?,
        input.get(header..end)?,
        input.get(end..)?,
    ))
}

/// A BIT STRING's contents without unused bits.
fn bits(contents: &[u8]) -> Option<&[u8]> {
    match contents.split_first()? {
        (0, rest) => Some(rest),
        _ => None,
    }
}

fn signed_parts(der: &[u8]) -> Option<Signed<'_>> {
    let (_, crl, rest) = tlv(der, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (tbs, _, rest) = tlv(crl, SEQUENCE)?;
    let (_, alg, rest) = tlv(rest, SEQUENCE)?;
    let (_, sig, rest) = tlv(rest, BIT_STRING)?;
    if !rest.is_empty() {
        return None;
    }
    Some(Signed {
        tbs,
        alg,
        sig: bits(sig)?,
    })
}

/// webpki's `verify_signed_data` for a CRL: the algorithm named by the CRL, matched to the
/// issuer's key type, among those of the crypto provider.
fn verify(
    algs: &[&dyn SignatureVerificationAlgorithm],
    spki: &[u8],
    signed: &Signed<'_>,
) -> Result<(), &'static str> {
    let bad_key = "the CA's public key does not parse";
    let (_, key_alg, rest) = tlv(spki, SEQUENCE).ok_or(bad_key)?;
    let (_, key, _) = tlv(rest, BIT_STRING).ok_or(bad_key)?;
    let key = bits(key).ok_or(bad_key)?;
    let mut for_other_key = false;
    for alg in algs
        .iter()
        .filter(|a| a.signature_alg_id().as_ref() == signed.alg)
    {
        if alg.public_key_alg_id().as_ref() != key_alg {
            for_other_key = true;
            continue;
        }
        return alg
            .verify_signature(key, signed.tbs, signed.sig)
            .map_err(|_| "the signature is invalid for the CA's key");
    }
    Err(if for_other_key {
        "the signature algorithm does not fit the CA's key"
    } else {
        "the signature algorithm is not supported"
    })
}

/// The CRL's `nextUpdate` (webpki refuses a CRL without one), read with x509-parser.
fn next_update(der: &[u8]) -> Option<UnixTime> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).ok()?;
    let secs = u64::try_from(crl.next_update()?.timestamp()).ok()?;
    Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        secs,
    )))
}

#[cfg(test)]
mod tests {
    use super::tlv;

    #[test]
    fn tlv_refuses_what_it_cannot_slice() {
        assert!(tlv(&[], 0x30).is_none());
        assert!(tlv(&[0x30], 0x30).is_none());
        assert!(tlv(&[0x30, 0x05, 1, 2], 0x30).is_none());
        assert!(tlv(&[0x30, 0x85, 0, 0, 0, 0, 1], 0x30).is_none());
        assert!(tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], 0x30).is_none());
        assert!(tlv(&[0x31, 0x00], 0x30).is_none());
        let (all, value, rest) = tlv(&[0x30, 0x81, 0x01, 7, 9], 0x30).unwrap();
        assert_eq!(
            (all, value, rest),
            (&[0x30, 0x81, 0x01, 7][..], &[7][..], &[9][..])
        );
    }
}
