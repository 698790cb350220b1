//! An exchange policy shared between the Txn-Token Service's handlers and a reloader:
//! lock-free decisions, atomic swap, a generation counter.
//!
//! [`SharedExchangePolicy`] holds the current [`ExchangePolicy`] behind an `arc-swap`.
//! Deciding loads it without a lock; a reload parses and compiles the new text first and swaps
//! it in only when it is valid, so a failed reload keeps the last good policy and says why.
//! Every successful swap increases the generation by one (an audit event can name the
//! generation that decided). Watching a file is I/O and belongs to the caller.
//!
//! # Example
//! ```
//! use secmesh_core::claims::Scope;
//! use secmesh_core::exchange::SubjectTokenType;
//! use secmesh_core::exchange_policy::{ExchangeAsk, ExchangeReason, SharedExchangePolicy};
//! use secmesh_core::policy::Format;
//!
//! let shared = SharedExchangePolicy::default();
//! let scope: Scope = "read:orders/{sub}/**".parse().unwrap();
//! let ask = ExchangeAsk::new("spiffe://mesh.test/gateway", &SubjectTokenType::AccessToken,
//!     "user:alice", "mesh.test", &scope);
//! assert_eq!(shared.decide(&ask).reason(), ExchangeReason::NoRule);
//! assert_eq!(shared.generation(), 0);
//!
//! let text = r#"[[exchange]]
//! id = "gateway"
//! effect = "allow"
//! workloads = ["spiffe://mesh.test/gateway"]
//! subject_token_types = ["access_token"]
//! audiences = ["mesh.test"]
//! scopes = ["read:orders/{sub}/**"]"#;
//! shared.reload_from_str(text, Format::Toml).unwrap();
//! assert_eq!(shared.decide(&ask).rule(), Some("gateway"));
//! assert_eq!(shared.generation(), 1);
//!
//! // A broken reload is refused; the last good policy stays, and so does its generation.
//! assert!(shared.reload_from_str("[[exchange]]\nid = 1", Format::Toml).is_err());
//! assert_eq!(shared.decide(&ask).rule(), Some("gateway"));
//! assert_eq!(shared.generation(), 1);
//! ```

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::ask::ExchangeAsk;
use super::decide::{ExchangeDecision, ExchangePolicy};
use super::parse::ExchangePolicyError;
use crate::policy::Format;

#[derive(Debug)]
struct Loaded {
    policy: Arc<ExchangePolicy>,
    generation: u64,
}

/// The current exchange policy, shared and atomically replaceable. Clones share it.
#[derive(Clone, Debug)]
pub struct SharedExchangePolicy {
    current: Arc<ArcSwap<Loaded>>,
}

impl Default for SharedExchangePolicy {
    fn default() -> Self {
        SharedExchangePolicy::new(ExchangePolicy::empty())
    }
}

impl SharedExchangePolicy {
    /// Share `policy`, as generation 0.
    pub fn new(policy: ExchangePolicy) -> SharedExchangePolicy {
        SharedExchangePolicy {
            current: Arc::new(ArcSwap::from_pointee(Loaded {
                policy: Arc::new(policy),
                generation: 0,
            })),
        }
    }

    /// Decide `ask` against the current policy, without a lock.
    pub fn decide(&self, ask: &ExchangeAsk<'_>) -> ExchangeDecision {
        self.current.load().policy.decide(ask)
    }

    /// Decide `ask` and say which generation decided.
    pub fn decide_with_generation(&self, ask: &ExchangeAsk<'_>) -> (ExchangeDecision, u64) {
        let loaded = self.current.load();
        (loaded.policy.decide(ask), loaded.generation)
    }

    /// The current policy.
    pub fn current(&self) -> Arc<ExchangePolicy> {
        Arc::clone(&self.current.load().policy)
    }

    /// The current generation: 0 for the policy given to [`new`](Self::new), one more for
    /// every swap since.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// Replace the policy; the new generation.
    pub fn store(&self, policy: ExchangePolicy) -> u64 {
        let policy = Arc::new(policy);
        let previous = self.current.rcu(|cur| Loaded {
            policy: Arc::clone(&policy),
            generation: cur.generation.wrapping_add(1),
        });
        previous.generation.wrapping_add(1)
    }

    /// Parse `text` and, when it is a valid policy, swap it in; the new generation. On error
    /// the current policy stays and the error says why.
    pub fn reload_from_str(&self, text: &str, format: Format) -> Result<u64, ExchangePolicyError> {
        Ok(self.store(ExchangePolicy::parse(text, format)?))
    }

    /// [`reload_from_str`](Self::reload_from_str) for bytes, which must be UTF-8.
    pub fn reload_from_slice(
        &self,
        bytes: &[u8],
        format: Format,
    ) -> Result<u64, ExchangePolicyError> {
        Ok(self.store(ExchangePolicy::parse_bytes(bytes, format)?))
    }
}
