//! # secmesh-core
//!
//! The vocabulary every other secmesh crate speaks: token claims, expiry classes, the
//! subject/verb/object language of access control, transaction and trace ids, and time.
//!
//! This crate does no I/O and no cryptography and knows nothing of tower or http, so that the
//! types and the policy engine can be used (and fuzzed) anywhere. Signing and verification live
//! in `secmesh-tokens`; the layers in `secmesh-tower`.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod claims;
pub mod class;
pub mod clock;
pub mod exchange;
pub mod exchange_policy;
pub mod identity;
pub mod json;
pub mod limit;
pub mod policy;
pub mod svo;
pub mod trace;

pub use claims::{Actor, Audience, Claims, ClaimsError, Confirmation, Scope, ScopeError};
pub use class::{ClassBounds, ExpiryClass};
pub use clock::{Clock, ManualClock, SystemClock};
pub use identity::{PeerIdentity, SpiffeId, TrustDomain};
pub use policy::Grant;
pub use policy::{Decision, Policy, SharedPolicy};
pub use svo::{Object, Subject, Verb};
pub use trace::{SpanId, TraceId, TraceParent, TxnId};
