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
//! The rustls server and client configurations and the serving side that put the peer identity
//! into each request come next (issue 6).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod ca;
pub mod svid;
