//! # secmesh-tls
//!
//! Identity on the wire. This first part holds the certificate side:
//!
//! - [`svid`]: from a DER certificate to a [`PeerIdentity`](secmesh_core::PeerIdentity),
//!   enforcing the X.509-SVID leaf rules, and the `x5t#S256` thumbprint that certificate-bound
//!   tokens name.
//! - `ca` (the `ca` feature, off by default): a small internal CA (X.509-SVIDs for one trust
//!   domain, revocation, CRLs) behind `secmesh ca`; only it compiles rcgen.
//!
//! - [`config`]: rustls server and client configurations for mutual TLS between the workloads of
//!   a trust domain: SVID leaf rules, CRLs, SPIFFE ID checks, files reloaded without a restart.
//!
//! # Features
//!
//! - `ring` (default) or `aws-lc-rs`: the rustls crypto provider, webpki's signature
//!   algorithms and the hashing (through `secmesh-tokens`, so one backend serves tokens, audit
//!   and TLS). With both on, aws-lc-rs wins ([`crypto_provider`]).
//! - `ca`: the internal CA.
//!
//! The serving side that puts the peer identity into each request (for axum and tonic) is in
//! `secmesh-tower`'s `tls` module.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

#[cfg(feature = "ca")]
pub mod ca;
pub mod config;
pub mod svid;

#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
compile_error!("secmesh-tls needs a crypto backend: enable `ring` (the default) or `aws-lc-rs`");

/// The rustls crypto provider of the backend compiled in: aws-lc-rs when the `aws-lc-rs`
/// feature is on (also when `ring` is on too), else ring. Every configuration of
/// [`config::Workload`] uses it.
///
/// # Example
/// ```
/// let provider = secmesh_tls::crypto_provider();
/// assert!(!provider.cipher_suites.is_empty());
/// ```
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    {
        rustls::crypto::aws_lc_rs::default_provider()
    }
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    {
        rustls::crypto::ring::default_provider()
    }
}
