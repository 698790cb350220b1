//! Where events go: the [`Sink`] trait, the chained [`JsonLinesSink`] and the [`TracingSink`].
//!
//! # Example
//! ```
//! use secmesh_audit::event::{AuditEvent, Direction};
//! use secmesh_audit::sink::{Fsync, JsonLinesConfig, JsonLinesSink, Sink};
//! use secmesh_audit::verify::verify_files;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("orders.jsonl");
//! let mut sink = JsonLinesSink::open(&path, JsonLinesConfig::default())?;
//! let mut batch = vec![AuditEvent::now("orders", Direction::In), AuditEvent::now("orders", Direction::Out)];
//! sink.write_batch(&mut batch)?;
//! assert_eq!((batch[0].seq, batch[1].seq), (1, 2));
//! drop(sink);
//! let report = verify_files(&[path], None)?;
//! assert_eq!(report.events, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::chain::{self, AuditKey, GENESIS};
use crate::event::AuditEvent;

/// A destination for batches of events. The writer thread owns it; it may block.
pub trait Sink: Send + 'static {
    /// Write a batch (the sink may set each event's `seq`). Returning an error loses nothing
    /// silently: the writer reports it through tracing and the error counter.
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> io::Result<()>;

    /// Called when no events came for a while, and before shutdown: write what is due
    /// (a time-based checkpoint) and make it durable.
    fn tick(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Make everything written so far durable (flush and fsync), whatever the sink's own
    /// fsync policy; the queue calls it once per batch that holds a durable event.
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
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
    /// The key that signs checkpoints; without one no checkpoints are written.
    pub key: Option<AuditKey>,
}

impl Default for JsonLinesConfig {
    fn default() -> Self {
        JsonLinesConfig {
            rotate_bytes: 64 << 20,
            fsync: Fsync::PerBatch,
            checkpoint_every: 1000,
            checkpoint_interval: Some(Duration::from_secs(10)),
            key: None,
        }
    }
}

impl JsonLinesConfig {
    /// Sign checkpoints with `key`.
    pub fn with_key(mut self, key: AuditKey) -> Self {
        self.key = Some(key);
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

    /// Checkpoint every `lines` lines and every `interval`.
    pub fn with_checkpoints(mut self, lines: u64, interval: Option<Duration>) -> Self {
        self.checkpoint_every = lines;
        self.checkpoint_interval = interval;
        self
    }
}

/// JSON lines in a file, hash-chained, with signed checkpoints, rotation and an fsync policy.
///
/// Rotation renames `FILE` to `FILE.1`, `FILE.2`, ... (the highest number is the newest
/// rotated file) and starts a new `FILE` whose first line links to the last line of the old
/// one. Opening an existing log continues its chain and sequence.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: PathBuf,
    file: File,
    size: u64,
    config: JsonLinesConfig,
    prev: [u8; 32],
    seq: u64,
    events: u64,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    last_sync: Instant,
    dirty: bool,
    buf: Vec<u8>,
}

/// The `prev` hash, the last `seq` and the event count of an existing log (rotated files
/// included), to continue it.
fn resume(path: &Path) -> io::Result<([u8; 32], u64, u64, bool)> {
    let Ok(f) = File::open(path) else {
        return Ok(([0; 32], 0, 0, false));
    };
    let mut last: Option<Vec<u8>> = None;
    let mut events = 0;
    for line in BufReader::new(f).split(b'\n') {
        let line = line?;
        if !line.is_empty() {
            if !line.windows(12).any(|w| w == b"\"checkpoint\"") {
                events += 1;
            }
            last = Some(line);
        }
    }
    let Some(last) = last else {
        return Ok(([0; 32], 0, 0, false));
    };
    let seq = serde_json::from_slice::<serde_json::Value>(&last)
        .ok()
        .and_then(|v| v["seq"].as_u64())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: the last line is not a whole record; verify and repair the log before appending", path.display()),
            )
        })?;
    Ok((chain::hash_line(&last), seq, events, true))
}

impl JsonLinesSink {
    /// Open (or continue) the log at `path`.
    pub fn open(path: impl AsRef<Path>, config: JsonLinesConfig) -> io::Result<JsonLinesSink> {
        let path = path.as_ref().to_path_buf();
        let (prev, seq, events, existed) = resume(&path)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        let _ = existed;
        Ok(JsonLinesSink {
            path,
            file,
            size,
            config,
            prev,
            seq,
            events,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            last_sync: Instant::now(),
            dirty: false,
            buf: Vec::with_capacity(64 << 10),
        })
    }

    /// The path of the live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn prev_hex(&self) -> String {
        if self.seq == 0 {
            GENESIS.to_owned()
        } else {
            chain::to_hex(&self.prev)
        }
    }

    /// Chain the line that starts at `start` in the buffer and end it with a newline.
    fn end_line(&mut self, start: usize) {
        self.prev = chain::hash_line(&self.buf[start..]);
        self.buf.push(b'\n');
        self.since_checkpoint += 1;
    }

    fn push_event(&mut self, ev: &mut AuditEvent) -> io::Result<()> {
        let first = self.seq == 0;
        self.seq += 1;
        self.events += 1;
        ev.seq = self.seq;
        // The event's own JSON, with `"prev"` spliced in before its closing brace: no
        // intermediate allocation, one pass.
        let start = self.buf.len();
        serde_json::to_writer(&mut self.buf, ev)?;
        if self.buf.last() != Some(&b'}') {
            return Err(io::Error::other("an event did not serialize to an object"));
        }
        self.buf.pop();
        self.buf.extend_from_slice(b",\"prev\":\"");
        if first {
            self.buf.extend_from_slice(GENESIS.as_bytes());
        } else {
            chain::hex_into(&self.prev, &mut self.buf);
        }
        self.buf.extend_from_slice(b"\"}");
        self.end_line(start);
        Ok(())
    }

    fn push_checkpoint(&mut self) -> io::Result<()> {
        let Some(key) = &self.config.key else {
            return Ok(());
        };
        self.seq += 1;
        let prev_hex = self.prev_hex();
        let sig = key.sign_checkpoint(&self.prev, self.seq);
        let line = serde_json::to_vec(&serde_json::json!({
            "v": crate::event::SCHEMA_VERSION,
            "kind": "checkpoint",
            "seq": self.seq,
            "prev": prev_hex,
            "count": self.events,
            "key": key.public_key_b64(),
            "sig": sig,
        }))?;
        let start = self.buf.len();
        self.buf.extend_from_slice(&line);
        self.end_line(start);
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        self.config.key.is_some()
            && self.since_checkpoint > 0
            && ((self.config.checkpoint_every > 0
                && self.since_checkpoint >= self.config.checkpoint_every)
                || self
                    .config
                    .checkpoint_interval
                    .is_some_and(|i| self.last_checkpoint.elapsed() >= i))
    }

    fn flush_buf(&mut self, force_sync: bool) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.size += self.buf.len() as u64;
            self.buf.clear();
            self.dirty = true;
        }
        let sync_now = match self.config.fsync {
            Fsync::PerBatch => true,
            Fsync::EveryMillis(ms) => {
                force_sync || self.last_sync.elapsed() >= Duration::from_millis(ms)
            }
        };
        if self.dirty && sync_now {
            self.file.sync_data()?;
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        if self.config.rotate_bytes > 0 && self.size >= self.config.rotate_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let mut n = 1;
        let name = self
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rotated = loop {
            let candidate = self.path.with_file_name(format!("{name}.{n}"));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        std::fs::rename(&self.path, &rotated)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl JsonLinesSink {
    /// Run `f`; if it fails, roll back to the last good record: the file truncated to its
    /// last whole line, the unwritten buffer dropped (memory stays bounded), the chain state
    /// restored, so that the next write continues the chain as if the batch never happened.
    fn or_roll_back(&mut self, f: impl FnOnce(&mut Self) -> io::Result<()>) -> io::Result<()> {
        let saved = (self.prev, self.seq, self.events, self.since_checkpoint);
        let size = self.size;
        let result = f(self);
        if result.is_err() {
            self.buf.clear();
            if self.file.set_len(size).is_ok() {
                self.size = size;
            }
            (self.prev, self.seq, self.events, self.since_checkpoint) = saved;
        }
        result
    }
}

impl Sink for JsonLinesSink {
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> io::Result<()> {
        self.or_roll_back(|s| {
            for ev in events.iter_mut() {
                s.push_event(ev)?;
                if s.checkpoint_due() {
                    s.push_checkpoint()?;
                }
            }
            s.flush_buf(false)
        })
    }

    fn tick(&mut self) -> io::Result<()> {
        self.or_roll_back(|s| {
            if s.checkpoint_due() {
                s.push_checkpoint()?;
            }
            s.flush_buf(true)
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        self.flush_buf(true)
    }
}

impl Drop for JsonLinesSink {
    fn drop(&mut self) {
        // Close with a checkpoint so that the last records are covered by a signature too.
        if self.config.key.is_some() && self.since_checkpoint > 0 {
            let _ = self.push_checkpoint();
        }
        let _ = self.flush_buf(true);
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
