//! # secmesh-audit
//!
//! The boundary audit log. Every service writes an event when a request crosses its boundary:
//! `in` when a request arrives and is decided, `out` when it calls another service, correlated
//! across services by the transaction id and the trace's span ids.
//!
//! - [`event`]: the event model (serde, stable field names, schema version 1).
//! - [`pool`]: [`EventBox`](pool::EventBox), an event in an allocation reused by the thread
//!   that made it (the request path allocates and frees nothing per event).
//! - [`Auditor`] ([`queue`]): a bounded non-blocking queue to a writer thread that batches
//!   (group commit for [durable](Durability::Durable) events, recovery from a failing sink),
//!   with an explicit [`FullPolicy`] (block, drop and count, fail closed) and draining
//!   shutdown.
//! - [`sink`]: the JSON-lines file sink (hash chain, signed records, a witness, rotation with
//!   retention, fsync policy, restart after a crash, rollback of failed writes) and a
//!   `tracing` sink; a [`Sink`](sink::Sink) trait for others.
//! - [`chain`]: the hash chain and the Ed25519 audit key.
//! - [`checkpoint`]: the signed records (open, checkpoint, rotate, close, recover) and the
//!   exact bytes they sign.
//! - [`verify`]: strict verification of a set of files, naming the first bad record; what it
//!   detects and what it does not.
//! - [`reader`]: bounded reading of log files (regular files only, lines of at most 1 MiB).
//! - [`trace`]: one transaction's path through every service, as a tree.
//!
//! The tower layers that write `in` and `out` events live in `secmesh-tower` (`audit`).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod chain;
pub mod checkpoint;
pub mod event;
pub mod pool;
pub mod queue;
pub mod reader;
pub mod sink;
pub mod trace;
pub mod verify;
mod walk;

pub use queue::{AuditError, Auditor, AuditorBuilder, CloseHook, Durability, FullPolicy, Submit};
