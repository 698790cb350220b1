//! PEM armour for keys, through the `pem` crate: one block of an expected label in, PKCS#8
//! `PRIVATE KEY` out.

use zeroize::{Zeroize as _, Zeroizing};

use crate::error::KeyError;

/// The first PEM block of `text`.
pub(super) fn parse(text: &str) -> Result<::pem::Pem, KeyError> {
    ::pem::parse(text).map_err(|e| KeyError::Pem(e.to_string()))
}

/// The contents of the first PEM block of `text`, which must be labelled `label` (wiped from
/// memory when dropped: it may be a private key).
pub(super) fn expect(text: &str, label: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let block = parse(text)?;
    if block.tag() != label {
        return Err(KeyError::Pem(format!(
            "expected a {label} block, found {:?}",
            block.tag()
        )));
    }
    Ok(Zeroizing::new(block.into_contents()))
}

/// PKCS#8 DER as a `PRIVATE KEY` PEM block (wiped from memory when dropped).
pub(super) fn private_key(der: &[u8]) -> Zeroizing<String> {
    let block = ::pem::Pem::new("PRIVATE KEY", der);
    let text = Zeroizing::new(::pem::encode(&block));
    block.into_contents().zeroize();
    text
}
