//! # secmesh-tls
//!
//! Identity on the wire. This first part holds the certificate side:
//!
//! - [`svid`]: from a DER certificate to a [`PeerIdentity`](secmesh_core::PeerIdentity),
//!   enforcing the X.509-SVID leaf rules, and the `x5t#S256` thumbprint that certificate-bound
//!   tokens name.
//! - [`ca`]: a small internal CA (X.509-SVIDs for one trust domain, revocation, CRLs) behind
//!   `secmesh ca`.
//!
//! - [`config`]: rustls server and client configurations for mutual TLS between the workloads of
//!   a trust domain: SVID leaf rules, CRLs, SPIFFE ID checks, files reloaded without a restart.
//!
//! The serving side that puts the peer identity into each request (for axum and tonic) is in
//! `secmesh-tower`'s `tls` module.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod ca;
pub mod config;
pub mod svid;
