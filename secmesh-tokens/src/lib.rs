//! # secmesh-tokens
//!
//! Strict JWS compact parsing, signing and verification of secmesh transaction tokens.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
