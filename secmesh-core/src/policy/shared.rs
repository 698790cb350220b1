//! A policy shared between request handlers and a reloader: lock-free decisions, atomic swap.
//!
//! [`SharedPolicy`] holds the current [`Policy`] behind an `arc-swap`. Deciding loads the
//! current policy without a lock; a reload parses and compiles the new text first and swaps it
//! in only when it is valid, so a failed reload keeps the last good policy and reports why.
//! Watching a file is I/O and belongs to the caller (the tower crate); this type takes text.
//!
//! # Example
//! ```
//! use secmesh_core::policy::{Effect, Format, Policy, Request, SharedPolicy};
//! use secmesh_core::svo::{Object, Subject, Verb};
//!
//! let shared = SharedPolicy::new(Policy::empty());
//! let (sub, obj): (Subject, Object) = ("user:a".parse().unwrap(), "docs/1".parse().unwrap());
//! let req = Request::new(&sub, &Verb::Read, &obj);
//! assert_eq!(shared.decide(&req).effect(), Effect::Deny);
//!
//! let text = r#"[[rule]]
//! id = "read-docs"
//! effect = "allow"
//! subjects = ["user:*"]
//! verbs = ["read"]
//! objects = ["docs/*"]"#;
//! shared.reload_from_str(text, Format::Toml).unwrap();
//! assert_eq!(shared.decide(&req).rule(), Some("read-docs"));
//!
//! // A broken reload is refused and the last good policy stays.
//! assert!(shared.reload_from_str("[[rule]]\nid = 1", Format::Toml).is_err());
//! assert_eq!(shared.decide(&req).rule(), Some("read-docs"));
//! ```

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::engine::{Decision, Policy, Request};
use super::parse::{Format, PolicyError};

/// The current policy, shared and atomically replaceable. Clones share the same policy.
#[derive(Clone, Debug)]
pub struct SharedPolicy {
    current: Arc<ArcSwap<Policy>>,
}

impl Default for SharedPolicy {
    fn default() -> Self {
        SharedPolicy::new(Policy::empty())
    }
}

impl SharedPolicy {
    /// Share `policy`.
    pub fn new(policy: Policy) -> SharedPolicy {
        SharedPolicy {
            current: Arc::new(ArcSwap::from_pointee(policy)),
        }
    }

    /// Decide `req` against the current policy, without a lock.
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        self.current.load().decide(req)
    }

    /// Decide `req` and, for a deny, explain it ([`Policy::explain`]), both against the same
    /// policy (a reload in between cannot make them disagree). The explanation is computed
    /// only for a deny.
    pub fn decide_explained(
        &self,
        req: &Request<'_>,
    ) -> (Decision, Option<super::explain::Explanation>) {
        let policy = self.current.load();
        let d = policy.decide(req);
        let why = (!d.is_allowed()).then(|| policy.explain_decision(req, &d));
        (d, why)
    }

    /// Run `f` on the current policy without taking a reference count (the hot path's way
    /// to read it, e.g. its [limits](Policy::limits)).
    pub fn with<T>(&self, f: impl FnOnce(&Policy) -> T) -> T {
        f(&self.current.load())
    }

    /// The current policy.
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Replace the policy.
    pub fn store(&self, policy: Policy) {
        self.current.store(Arc::new(policy));
    }

    /// Parse `text` and, when it is a valid policy, swap it in. On error the current policy
    /// stays and the error says why.
    pub fn reload_from_str(&self, text: &str, format: Format) -> Result<(), PolicyError> {
        let policy = Policy::parse(text, format)?;
        self.store(policy);
        Ok(())
    }

    /// [`reload_from_str`](Self::reload_from_str) for bytes, which must be UTF-8.
    pub fn reload_from_slice(&self, bytes: &[u8], format: Format) -> Result<(), PolicyError> {
        let policy = Policy::parse_bytes(bytes, format)?;
        self.store(policy);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svo::{Object, Subject, Verb};

    #[test]
    fn clones_share_and_swap() {
        let a = SharedPolicy::default();
        let b = a.clone();
        let old = a.current();
        a.reload_from_slice(
            b"[[rule]]\nid='x'\neffect='allow'\nsubjects=['*']\nverbs=['*']\nobjects=['**']\n",
            Format::Toml,
        )
        .unwrap();
        assert!(old.rules().is_empty());
        let (s, o): (Subject, Object) = ("s".parse().unwrap(), "".parse().unwrap());
        assert!(b.decide(&Request::new(&s, &Verb::Delete, &o)).is_allowed());
        assert!(b.reload_from_slice(b"\xff", Format::Toml).is_err());
        assert_eq!(a.current().rules().len(), 1);
    }

    #[test]
    fn explains_only_a_deny() {
        let shared = SharedPolicy::default();
        let (s, o): (Subject, Object) = ("user:a".parse().unwrap(), "x".parse().unwrap());
        let req = Request::new(&s, &Verb::Read, &o);
        let (d, why) = shared.decide_explained(&req);
        assert!(!d.is_allowed());
        assert_eq!(why.unwrap().reason(), d.reason());
        shared
            .reload_from_str(
                "[[rule]]\nid='x'\neffect='allow'\nsubjects=['*']\nverbs=['*']\nobjects=['**']\n",
                Format::Toml,
            )
            .unwrap();
        let (d, why) = shared.decide_explained(&req);
        assert!(d.is_allowed() && why.is_none());
    }

    #[test]
    fn concurrent_decisions_during_reloads() {
        let shared = SharedPolicy::default();
        let allow =
            "[[rule]]\nid='x'\neffect='allow'\nsubjects=['*']\nverbs=['*']\nobjects=['**']\n";
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let shared = shared.clone();
                scope.spawn(move || {
                    let (s, o): (Subject, Object) = ("s".parse().unwrap(), "a".parse().unwrap());
                    for _ in 0..2000 {
                        let d = shared.decide(&Request::new(&s, &Verb::Read, &o));
                        assert!(d.rule().is_none() || d.rule() == Some("x"));
                    }
                });
            }
            for i in 0..200 {
                let text = if i % 2 == 0 { allow } else { "" };
                shared.reload_from_str(text, Format::Toml).unwrap();
            }
        });
    }
}
