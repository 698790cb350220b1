//! # secmesh
//!
//! Secure the calls between services: transaction tokens that travel with each request,
//! claim-based access control, expiry classes, and an audit log at every boundary.
//!
//! This facade re-exports the secmesh crates.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub use secmesh_audit as audit;
pub use secmesh_core as core;
pub use secmesh_tokens as tokens;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
