//! Where events go: the [`Sink`] trait, the chained [`JsonLinesSink`] and the [`TracingSink`].
//!
//! # The JSON-lines sink
//! - **Signed records.** With a key, every writing session begins with a signed `open` record
//!   (the first line of every file), periodic `checkpoint` records follow, a rotated file
//!   ends with `rotate`, a clean shutdown ([`JsonLinesSink::close`] or drop) with `close`
//!   ([`checkpoint`](crate::checkpoint) has what each states and signs).
//! - **Witness.** Each signed record can also be appended to a second file the writer does
//!   not otherwise use ([`JsonLinesConfig::with_witness`], e.g. on another mount) and is
//!   emitted as a `tracing` event on the target `secmesh_audit::witness`. A record goes to the
//!   witness only once it is written to the log. A witness that cannot be written is reported
//!   (`tracing`, [`JsonLinesSink::witness_errors`]), never fatal.
//! - **Rotation and retention.** Past [`JsonLinesConfig::rotate_bytes`] the live file `FILE` is
//!   renamed `FILE.<g+1>` (`g` its generation) and a new `FILE` of generation `g + 1` begins.
//!   With retention ([`JsonLinesConfig::with_retention`]) the oldest rotated files are deleted
//!   until at most `max_files` files are kept and the rotated files plus one live file fit
//!   `max_bytes`; the next signed record states the oldest generation kept (`retained`), so
//!   that verification accepts a set starting there.
//! - **Restart.** Opening an existing log continues it: after a clean `close` with a new
//!   `open`; after a crash, a torn or unreadable last line is moved to `FILE.torn-<unix time>`
//!   (kept, never deleted), the file is cut back to its last whole record and a signed
//!   `recover` record, stating what was set aside, signs what the crash left unsigned.
//! - **Failed writes.** A write or fsync that fails (a full disk) cuts the file back to the
//!   last whole record, restores the chain state to it, drops the buffer (memory stays
//!   bounded) and returns the error: the events of that batch are not in the log and the
//!   caller reports them. Later writes continue the chain from the last good record.
//!
//! # Example
//! ```
//! use secmesh_audit::chain::AuditKey;
//! use secmesh_audit::event::{AuditEvent, Direction};
//! use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
//! use secmesh_audit::verify::Verifier;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("orders.jsonl");
//! let key = AuditKey::generate()?;
//! let public = key.public_key().to_vec();
//! let config = JsonLinesConfig::default().with_key(key).with_service("orders");
//! let mut sink = JsonLinesSink::open(&path, config)?;
//! let mut batch = vec![AuditEvent::now("orders", Direction::In), AuditEvent::now("orders", Direction::Out)];
//! sink.write_batch(&mut batch)?;
//! assert_eq!((batch[0].seq, batch[1].seq), (2, 3)); // seq 1 is the `open` record
//! sink.close()?;
//! let report = Verifier::new(Some(&public)).service("orders").verify_files(&[path])?;
//! assert_eq!((report.events, report.checkpoints, report.closed), (2, 2, true));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::chain::AuditKey;
use crate::event::AuditEvent;
use crate::pool::EventBox;

mod files;
mod jsonl;
mod resume;

pub use jsonl::JsonLinesSink;

/// A destination for batches of events. The writer thread owns it; it may block.
pub trait Sink: Send + 'static {
    /// Write a batch (the sink may set each event's `seq`). Returning an error loses nothing
    /// silently: the writer reports it through tracing and the error counter.
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> io::Result<()>;

    /// Write a batch of boxed events, as [`write_batch`](Self::write_batch) does; the
    /// [`Auditor`](crate::Auditor)'s writer calls this, with the events in the boxes they were
    /// queued in (which go back to their threads afterwards, see [`pool`](crate::pool)). The
    /// default moves them out into one batch and back; a sink that can write them in place (as
    /// [`JsonLinesSink`] does) saves those copies.
    fn write_boxed(&mut self, events: &mut [EventBox]) -> io::Result<()> {
        let mut batch: Vec<AuditEvent> = events
            .iter_mut()
            .map(|e| std::mem::take(&mut **e))
            .collect();
        let result = self.write_batch(&mut batch);
        for (b, e) in events.iter_mut().zip(batch) {
            **b = e;
        }
        result
    }

    /// Called when no events came for a while, and before shutdown: write what is due
    /// (a time-based checkpoint) and make it durable.
    fn tick(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Make everything written so far durable (flush and fsync), whatever the fsync policy.
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Signed records (checkpoints, rotations, closes) this sink has written so far, for
    /// [`Auditor::checkpoints`](crate::Auditor::checkpoints); a sink without them says 0.
    fn checkpoints(&self) -> u64 {
        0
    }
}

/// When the JSON-lines sink makes writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fsync {
    /// `fdatasync` after every batch: everything acknowledged is on disk.
    PerBatch,
    /// At most every this many milliseconds (and at shutdown).
    EveryMillis(u64),
}

/// Configuration of a [`JsonLinesSink`].
#[derive(Debug)]
#[non_exhaustive]
pub struct JsonLinesConfig {
    /// Rotate when the file grows past this many bytes (0: never).
    pub rotate_bytes: u64,
    /// Durability.
    pub fsync: Fsync,
    /// Write a checkpoint every this many lines (0: never by count).
    pub checkpoint_every: u64,
    /// ... or when this much time passed since the last one.
    pub checkpoint_interval: Option<Duration>,
    /// The key that signs checkpoints; without one no signed records are written.
    pub key: Option<AuditKey>,
    /// The service the signed records name (default: the `service` of the first event).
    pub service: Option<String>,
    /// A second file each signed record is appended to.
    pub witness: Option<PathBuf>,
    /// Retention: at most this many files (the live one included; 0: no limit).
    pub max_files: usize,
    /// Retention: at most this many bytes in the rotated files plus one live file (0: no
    /// limit).
    pub max_bytes: u64,
}

impl Default for JsonLinesConfig {
    fn default() -> Self {
        JsonLinesConfig {
            rotate_bytes: 64 << 20,
            fsync: Fsync::PerBatch,
            checkpoint_every: 1000,
            checkpoint_interval: Some(Duration::from_secs(10)),
            key: None,
            service: None,
            witness: None,
            max_files: 0,
            max_bytes: 0,
        }
    }
}

impl JsonLinesConfig {
    /// Sign checkpoints with `key`.
    pub fn with_key(mut self, key: AuditKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The service named in the signed records.
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Append each signed record to `path` too (opened append-only).
    pub fn with_witness(mut self, path: impl Into<PathBuf>) -> Self {
        self.witness = Some(path.into());
        self
    }

    /// Set the fsync policy.
    pub fn with_fsync(mut self, fsync: Fsync) -> Self {
        self.fsync = fsync;
        self
    }

    /// Rotate past `bytes`.
    pub fn with_rotation(mut self, bytes: u64) -> Self {
        self.rotate_bytes = bytes;
        self
    }

    /// Keep at most `max_files` files and `max_bytes` bytes (0: no limit), deleting the oldest
    /// rotated files first.
    pub fn with_retention(mut self, max_files: usize, max_bytes: u64) -> Self {
        self.max_files = max_files;
        self.max_bytes = max_bytes;
        self
    }

    /// Checkpoint every `lines` lines and every `interval`.
    pub fn with_checkpoints(mut self, lines: u64, interval: Option<Duration>) -> Self {
        self.checkpoint_every = lines;
        self.checkpoint_interval = interval;
        self
    }
}

/// A log that could not be opened or continued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The file (or its directory) cannot be opened for writing.
    #[error("cannot open the audit log {}: {source}", shown(path))]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The existing file cannot be read (not a regular file, unreadable).
    #[error(transparent)]
    File(#[from] secmesh_fs::FileError),
    /// A record before the last one is not a record of this format.
    #[error(
        "{}:{line}: not a record of this format ({detail}); verify the log and move it aside",
        shown(path)
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: u64,
        /// What is wrong.
        detail: String,
    },
    /// A signing sink was asked to continue a log that has no signed `open` record.
    #[error(
        "{}: the log has no signed open record (written without a key, or by an older version); move it aside to start a signed log",
        shown(path)
    )]
    Unsigned {
        /// The file.
        path: PathBuf,
    },
    /// The log belongs to another service than the one configured.
    #[error("{}: a log of service `{found}`, not `{expected}`", shown(path))]
    ServiceMismatch {
        /// The file.
        path: PathBuf,
        /// The service the log names.
        found: String,
        /// The service configured.
        expected: String,
    },
    /// Reading, setting a torn tail aside or writing the first records failed.
    #[error("{}: {source}", shown(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn shown(path: &std::path::Path) -> String {
    secmesh_fs::escape_for_terminal(&path.to_string_lossy()).into_owned()
}

impl From<SinkError> for io::Error {
    fn from(e: SinkError) -> io::Error {
        let kind = match &e {
            SinkError::Open { source, .. } | SinkError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// Events as `tracing` events on the target `secmesh::audit` (info level).
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink;

impl Sink for TracingSink {
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> io::Result<()> {
        for ev in events.iter() {
            tracing::info!(
                target: "secmesh::audit",
                service = %ev.service,
                dir = ?ev.dir,
                txn = ?ev.txn,
                sub = ev.sub.as_deref().unwrap_or("-"),
                caller = ev.caller.as_deref().unwrap_or("-"),
                verb = ev.verb.as_deref().unwrap_or("-"),
                object = ev.object.as_deref().unwrap_or("-"),
                decision = ?ev.decision,
                rule = ev.rule.as_deref().unwrap_or("-"),
                reason = ev.reason.as_deref().unwrap_or("-"),
                status = ev.status.unwrap_or(0),
                latency_us = ev.latency_us.unwrap_or(0),
                "audit"
            );
        }
        Ok(())
    }
}
