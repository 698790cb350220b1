//! Revocations issued by an instance, each one an audit event (the `redis` feature).
//!
//! [`AuditedPublisher`] revokes through a fleet-wide
//! [`Publisher`] and records the revocation in
//! the instance's audit log before it answers: an `out` event with the verb `revoke`, the key
//! revoked as its object (`jti J`, `sub S`, `txn T`, `kid K`), the subject or
//! transaction when the key is one, and the reason. Never a token. A revocation whose event
//! could not be recorded is still in force (refusing more is the safe side) and the error says
//! so ([`RevokeError::NotAudited`]). `secmesh revoke --audit-log` writes the same event
//! ([`revocation_event`]).
//!
//! # Example
//! ```no_run
//! use secmesh_audit::Auditor;
//! use secmesh_tokens::revocation::RevocationKey;
//! use secmesh_tokens::revocation::redis::Publisher;
//! use secmesh_tower::revoke::AuditedPublisher;
//!
//! # async fn run(auditor: Auditor) -> Result<(), Box<dyn std::error::Error>> {
//! let publisher = Publisher::connect("redis://127.0.0.1:6379/", "secmesh").await?;
//! let revoker = AuditedPublisher::new(publisher, auditor, "orders");
//! let entry = revoker
//!     .revoke(RevocationKey::Sub("user:mallory".into()), Some("account closed".into()))
//!     .await?;
//! assert_eq!(entry.key.to_string(), "sub user:mallory");
//! # Ok(()) }
//! ```

use secmesh_audit::event::{AuditEvent, Decision, Direction};
use secmesh_audit::{AuditError, Auditor, Durability};
use secmesh_tokens::revocation::redis::{Publisher, RedisRevocationError};
use secmesh_tokens::revocation::{RevocationKey, Revoked};

/// Why a revocation failed, or was not recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// Redis did not take it: nothing was revoked.
    #[error("not revoked: {0}")]
    Redis(#[from] RedisRevocationError),
    /// Revoked for the fleet, but the audit event could not be recorded.
    #[error("revoked {}, but the audit event was not recorded: {error}", entry.key)]
    NotAudited {
        /// The revocation, in force.
        entry: Box<Revoked>,
        /// Why the event was not recorded.
        error: AuditError,
    },
}

/// The audit event of one revocation by `service`.
pub fn revocation_event(service: &str, entry: &Revoked) -> AuditEvent {
    let mut ev = AuditEvent::now(service, Direction::Out);
    ev.verb = Some("revoke".into());
    ev.object = Some(entry.key.to_string());
    ev.decision = Decision::Allow;
    ev.reason = entry.reason.clone();
    match &entry.key {
        RevocationKey::Sub(s) => ev.sub = Some(s.clone()),
        RevocationKey::Txn(t) => ev.txn = Some(*t),
        _ => {}
    }
    ev
}

/// A [`Publisher`] whose every revocation is an audit event; see the [module docs](self).
#[derive(Debug)]
pub struct AuditedPublisher {
    publisher: Publisher,
    auditor: Auditor,
    service: String,
}

impl AuditedPublisher {
    /// Revoke through `publisher`, recording each revocation in `auditor` as `service`.
    pub fn new(publisher: Publisher, auditor: Auditor, service: impl Into<String>) -> Self {
        AuditedPublisher {
            publisher,
            auditor,
            service: service.into(),
        }
    }

    /// Revoke `key` for the fleet, then record it (written and synced) before answering.
    pub async fn revoke(
        &self,
        key: RevocationKey,
        reason: Option<String>,
    ) -> Result<Revoked, RevokeError> {
        let entry = self.publisher.revoke(key, reason).await?;
        let ev = revocation_event(&self.service, &entry);
        match self.auditor.submit(ev, Durability::Durable).await {
            Ok(()) => Ok(entry),
            Err(error) => Err(RevokeError::NotAudited {
                entry: Box::new(entry),
                error,
            }),
        }
    }

    /// The publisher, for reading the entries.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }
}
