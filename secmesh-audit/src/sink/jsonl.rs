//! The chained JSON-lines file sink (see the [`sink`](crate::sink) module docs).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{self, rotated_path};
use super::resume::{self, Last, Scan};
use super::{Fsync, JsonLinesConfig, Sink, SinkError};
use crate::chain;
use crate::checkpoint::{Checkpoint, CheckpointKind};
use crate::event::{AuditEvent, Decision};
use crate::reader::MAX_LINE;

/// Buffered bytes past which a batch is written out before it ends (see
/// [`JsonLinesSink::spill`]).
const SPILL: usize = 256 << 10;

/// Where the writing session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Session {
    /// A new file: the next record is its `open`.
    Fresh,
    /// After `close`: the next record is an `open` in the same file.
    Closed,
    /// After `rotate` was written but the file not yet renamed.
    Rotated,
    /// Open.
    Open,
}

/// The chain as of some record.
#[derive(Clone, Debug)]
struct ChainState {
    prev: [u8; 32],
    seq: u64,
    events: u64,
    r#gen: u64,
    last_sig: String,
    retained: u64,
    session: Session,
    since_checkpoint: u64,
    /// The file's length with this record.
    size: u64,
    /// Signed records written by this process (for metrics).
    signed: u64,
}

/// JSON lines in a file, hash-chained, with signed records, rotation with retention, an
/// fsync policy, a witness, restart after a crash, and rollback of failed writes.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: PathBuf,
    file: File,
    config: JsonLinesConfig,
    service: Option<String>,
    /// The state with everything buffered.
    st: ChainState,
    /// The state as of the last record written to the file.
    good: ChainState,
    /// The file may hold bytes past `good.size` (a cut back that failed).
    must_cut: bool,
    buf: Vec<u8>,
    pending_witness: Vec<Vec<u8>>,
    witness: Option<File>,
    witness_errors: u64,
    /// A torn tail set aside before the service was known: recorded when a session opens.
    pending_torn: Option<(String, u64)>,
    last_checkpoint: Instant,
    last_sync: Instant,
    dirty: bool,
}

impl JsonLinesSink {
    /// Open (or continue) the log at `path`; see the module docs for what a restart does.
    pub fn open(
        path: impl AsRef<Path>,
        config: JsonLinesConfig,
    ) -> Result<JsonLinesSink, SinkError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| SinkError::Open {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(open_err)?;
        let scan = resume::scan(&path)?.unwrap_or_default();
        if let (Some(want), Some(found)) = (&config.service, &scan.service)
            && want != found
        {
            return Err(SinkError::ServiceMismatch {
                path,
                found: found.clone(),
                expected: want.clone(),
            });
        }
        let io_err = |source| SinkError::Io {
            path: path.clone(),
            source,
        };
        let mut torn = None;
        if scan.torn {
            torn = Some(files::set_aside(&path, &mut file, scan.good_len).map_err(io_err)?);
        }
        let (base, session) = if scan.good_len > 0 {
            if config.key.is_some() && !scan.opened {
                return Err(SinkError::Unsigned { path });
            }
            let session = match scan.last {
                Some(Last::Signed(CheckpointKind::Close)) => Session::Closed,
                Some(Last::Signed(CheckpointKind::Rotate)) => Session::Rotated,
                _ => Session::Open,
            };
            (scan, session)
        } else {
            Self::after_rotated(&path, config.key.is_some())?
        };
        let recovering = session == Session::Open || torn.is_some();
        let st = ChainState {
            prev: base.prev,
            seq: base.seq,
            events: base.events,
            r#gen: base.r#gen.unwrap_or(0),
            last_sig: base.last_sig.clone(),
            retained: base.retained,
            session,
            since_checkpoint: 0,
            size: if scan_is_live(&base) {
                base.good_len
            } else {
                0
            },
            signed: 0,
        };
        let witness = config.witness.as_ref().and_then(|w| open_witness(w));
        let mut sink = JsonLinesSink {
            path: path.clone(),
            file,
            service: config.service.clone().or(base.service),
            config,
            good: st.clone(),
            st,
            must_cut: false,
            buf: Vec::with_capacity(64 << 10),
            pending_witness: Vec::new(),
            witness,
            witness_errors: 0,
            pending_torn: None,
            last_checkpoint: Instant::now(),
            last_sync: Instant::now(),
            dirty: false,
        };
        if sink.st.session == Session::Rotated {
            sink.finish_rotation().map_err(io_err)?;
        } else if recovering {
            sink.recover(torn).map_err(io_err)?;
        }
        Ok(sink)
    }

    /// The live file is new or empty: continue after the newest rotated file, if any.
    fn after_rotated(path: &Path, signed: bool) -> Result<(Scan, Session), SinkError> {
        let Some((n, newest, _)) = files::rotated_files(path).pop() else {
            return Ok((Scan::default(), Session::Fresh));
        };
        let mut s = resume::scan(&newest)?.unwrap_or_default();
        if s.torn {
            return Err(SinkError::Corrupt {
                path: newest,
                line: 0,
                detail: "a rotated file with a torn last line".into(),
            });
        }
        if signed && s.last != Some(Last::Signed(CheckpointKind::Rotate)) {
            return Err(SinkError::Corrupt {
                path: newest,
                line: 0,
                detail: "the newest rotated file does not end with a `rotate` record and the live file is missing".into(),
            });
        }
        s.r#gen = Some(s.r#gen.map_or(n, |g| g + 1));
        s.good_len = 0;
        Ok((s, Session::Fresh))
    }

    /// The path of the live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signed records that could not be written to the witness.
    pub fn witness_errors(&self) -> u64 {
        self.witness_errors
    }

    /// Write the `close` record, flush and sync: a clean shutdown. Drop does the same but
    /// cannot report a failure.
    pub fn close(mut self) -> io::Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> io::Result<()> {
        if self.st.session == Session::Open {
            self.push_signed(CheckpointKind::Close, None)?;
        }
        self.flush(true)
    }

    /// After a crash: sign what it left unsigned, and state what was set aside.
    fn recover(&mut self, torn: Option<(String, u64)>) -> io::Result<()> {
        if torn.is_some() || self.config.key.is_some() {
            tracing::warn!(target: "secmesh::audit", file = %self.path.display(), torn = ?torn, "audit log continued after an unclean end");
        }
        if self.config.key.is_some() {
            if self.service.is_none() {
                self.pending_torn = torn;
                return Ok(());
            }
            if self.st.session != Session::Open {
                self.push_signed(CheckpointKind::Open, None)?;
            }
            self.push_signed(CheckpointKind::Recover, torn)?;
        } else if let Some((name, bytes)) = torn {
            let mut ev = AuditEvent::now(
                self.service
                    .clone()
                    .unwrap_or_else(|| "secmesh-audit".into()),
                crate::event::Direction::In,
            );
            ev.decision = Decision::Error;
            ev.reason = Some(format!(
                "recovered torn tail: {bytes} bytes set aside to {name}"
            ));
            self.push_event(&mut ev, None)?;
        }
        self.flush(true)
    }

    /// Begin a session if none is open (signed logs only).
    fn ensure_open(&mut self, first_service: &str) -> io::Result<()> {
        if self.config.key.is_none() {
            return Ok(());
        }
        if self.st.session == Session::Rotated {
            self.finish_rotation()?;
        }
        if self.st.session != Session::Open {
            self.service.get_or_insert_with(|| first_service.to_owned());
            self.push_signed(CheckpointKind::Open, None)?;
            if let Some(torn) = self.pending_torn.take() {
                self.push_signed(CheckpointKind::Recover, Some(torn))?;
            }
        }
        Ok(())
    }

    fn end_line(&mut self, start: usize) {
        self.st.prev = chain::hash_line(&self.buf[start..]);
        self.buf.push(b'\n');
        self.st.size += (self.buf.len() - start) as u64;
        self.st.since_checkpoint += 1;
    }

    /// Number and append one event; `tail` is its JSON from `,"time":` on when the producer
    /// wrote it already (see `EventBox::prepare_json`).
    fn push_event(&mut self, ev: &mut AuditEvent, tail: Option<&[u8]>) -> io::Result<()> {
        self.st.seq += 1;
        self.st.events += 1;
        ev.seq = self.st.seq;
        let start = self.buf.len();
        self.serialize_event(ev, tail);
        if self.buf.len() - start > MAX_LINE - 1024 {
            // Never write a line the readers refuse: record that the event was too large.
            let size = self.buf.len() - start;
            self.buf.truncate(start);
            let mut stub = AuditEvent::now(ev.service.clone(), ev.dir);
            stub.seq = ev.seq;
            stub.service = ev.service.chars().take(256).collect();
            (stub.txn, stub.trace_id, stub.span_id, stub.parent_span_id) =
                (ev.txn, ev.trace_id, ev.span_id, ev.parent_span_id);
            stub.decision = Decision::Error;
            stub.reason = Some(format!("an event of {size} bytes, too large to record"));
            self.serialize_event(&stub, None);
        }
        self.end_line(start);
        Ok(())
    }

    /// The event's JSON with `"prev"` spliced in before its closing brace. Written by hand into
    /// the reused buffer (the same bytes `serde_json` writes, see `event::json`); the part
    /// after `seq` is `tail` when the producer wrote it already.
    fn serialize_event(&mut self, ev: &AuditEvent, tail: Option<&[u8]>) {
        ev.json_head(&mut self.buf);
        match tail {
            Some(t) => self.buf.extend_from_slice(t),
            None => ev.json_tail(&mut self.buf),
        }
        self.buf.extend_from_slice(b",\"prev\":\"");
        chain::hex_into(&self.st.prev, &mut self.buf);
        self.buf.extend_from_slice(b"\"}");
    }

    fn push_signed(&mut self, kind: CheckpointKind, torn: Option<(String, u64)>) -> io::Result<()> {
        let (Some(key), Some(service)) = (&self.config.key, &self.service) else {
            return Ok(());
        };
        let prev = chain::to_hex(&self.st.prev);
        self.st.seq += 1;
        let mut c = Checkpoint::unsigned(
            kind,
            service,
            self.st.r#gen,
            self.st.seq,
            self.st.events,
            &prev,
        );
        c.prev_sig = self.st.last_sig.clone();
        c.retained = self.st.retained;
        if let Some((name, bytes)) = torn {
            c.torn_bytes = Some(bytes);
            c.torn_file = Some(name);
        }
        c.sign(key);
        let line = c.to_line();
        let start = self.buf.len();
        self.buf.extend_from_slice(&line);
        self.end_line(start);
        self.st.last_sig = c.sig;
        self.st.since_checkpoint = 0;
        self.st.session = match kind {
            CheckpointKind::Close => Session::Closed,
            CheckpointKind::Rotate => Session::Rotated,
            _ => Session::Open,
        };
        self.pending_witness.push(line);
        self.last_checkpoint = Instant::now();
        self.st.signed += 1;
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        self.checkpoint_due_by_count() || (self.checkpoint_may_be_due() && self.interval_passed())
    }

    /// A signed session is open with lines since the last signed record.
    fn checkpoint_may_be_due(&self) -> bool {
        self.config.key.is_some()
            && self.st.session == Session::Open
            && self.st.since_checkpoint > 0
    }

    fn checkpoint_due_by_count(&self) -> bool {
        self.checkpoint_may_be_due()
            && self.config.checkpoint_every > 0
            && self.st.since_checkpoint >= self.config.checkpoint_every
    }

    fn interval_passed(&self) -> bool {
        self.config
            .checkpoint_interval
            .is_some_and(|i| self.last_checkpoint.elapsed() >= i)
    }

    /// Write the buffer and sync as the policy says (always when `force_sync`); on failure,
    /// cut the file back to the last good record and restore the chain state to it.
    fn write_out(&mut self, force_sync: bool) -> io::Result<()> {
        if self.must_cut {
            self.file.set_len(self.good.size)?;
            self.must_cut = false;
        }
        let result = (|| {
            if !self.buf.is_empty() {
                self.file.write_all(&self.buf)?;
                self.dirty = true;
            }
            let sync_now = force_sync
                || match self.config.fsync {
                    Fsync::PerBatch => true,
                    Fsync::EveryMillis(ms) => self.last_sync.elapsed() >= Duration::from_millis(ms),
                };
            if self.dirty && sync_now {
                self.file.sync_data()?;
                self.dirty = false;
                self.last_sync = Instant::now();
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.roll_back();
            return Err(e);
        }
        self.buf.clear();
        self.good = self.st.clone();
        self.send_to_witness();
        Ok(())
    }

    /// Write the whole lines buffered so far, without syncing: a large batch goes out in
    /// pieces of about [`SPILL`] bytes while they are still in the cache, not in one buffer of
    /// megabytes. A failure is the batch's: [`roll_back`](Self::roll_back) cuts the file back
    /// to the last good record, before these pieces.
    fn spill(&mut self) -> io::Result<()> {
        if self.must_cut {
            self.file.set_len(self.good.size)?;
            self.must_cut = false;
        }
        self.file.write_all(&self.buf)?;
        self.dirty = true;
        self.buf.clear();
        Ok(())
    }

    fn roll_back(&mut self) {
        self.must_cut = self.file.set_len(self.good.size).is_err();
        self.st = self.good.clone();
        self.buf.clear();
        self.buf.shrink_to(64 << 10);
        self.pending_witness.clear();
        self.dirty = false;
    }

    fn flush(&mut self, force_sync: bool) -> io::Result<()> {
        self.write_out(force_sync)?;
        if self.config.rotate_bytes > 0 && self.st.size >= self.config.rotate_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.config.key.is_some() {
            if self.st.session != Session::Open {
                return Ok(()); // rotated when the next session opens
            }
            self.push_signed(CheckpointKind::Rotate, None)?;
            self.write_out(true)?;
        } else {
            self.file.sync_data()?;
            self.st.session = Session::Rotated;
        }
        self.finish_rotation()
    }

    /// Rename the live file (which ends with `rotate`), apply retention, begin the next file.
    fn finish_rotation(&mut self) -> io::Result<()> {
        let rotated = rotated_path(&self.path, self.st.r#gen);
        if rotated.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists: will not rotate over it", rotated.display()),
            ));
        }
        std::fs::rename(&self.path, &rotated)?;
        self.st.r#gen += 1;
        if let Some(kept_from) = files::apply_retention(
            &self.path,
            self.config.max_files,
            self.config.max_bytes,
            self.config.rotate_bytes,
        ) {
            self.st.retained = self.st.retained.max(kept_from).min(self.st.r#gen);
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        files::sync_dir(&self.path);
        self.st.size = 0;
        self.st.session = Session::Fresh;
        self.good = self.st.clone();
        if self.service.is_some() && self.config.key.is_some() {
            self.push_signed(CheckpointKind::Open, None)?;
            self.write_out(true)?;
        }
        Ok(())
    }

    fn send_to_witness(&mut self) {
        for line in std::mem::take(&mut self.pending_witness) {
            tracing::info!(
                target: "secmesh_audit::witness",
                record = %String::from_utf8_lossy(&line),
                "audit signed record"
            );
            let Some(path) = &self.config.witness else {
                continue;
            };
            if self.witness.is_none() {
                self.witness = open_witness(path);
            }
            let ok = self.witness.as_mut().is_some_and(|w| {
                let mut l = line.clone();
                l.push(b'\n');
                w.write_all(&l).is_ok()
            });
            if !ok {
                if self.witness_errors == 0 {
                    tracing::error!(target: "secmesh::audit", witness = %path.display(), "cannot write the audit witness");
                }
                self.witness_errors += 1;
                self.witness = None;
            }
        }
    }
}

fn scan_is_live(s: &Scan) -> bool {
    s.good_len > 0
}

fn open_witness(path: &Path) -> Option<File> {
    match OpenOptions::new().create(true).append(true).open(path) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(target: "secmesh::audit", witness = %path.display(), error = %e, "cannot open the audit witness");
            None
        }
    }
}

/// An event as the sink takes it: plain, or in a box with its JSON tail maybe written.
trait Record {
    fn parts(&mut self) -> (&mut AuditEvent, Option<&[u8]>);
}

impl Record for AuditEvent {
    fn parts(&mut self) -> (&mut AuditEvent, Option<&[u8]>) {
        (self, None)
    }
}

impl Record for crate::pool::EventBox {
    fn parts(&mut self) -> (&mut AuditEvent, Option<&[u8]>) {
        crate::pool::EventBox::parts(self)
    }
}

impl JsonLinesSink {
    /// Write a batch of events, boxed or not, where they are.
    fn write_events<E: Record>(&mut self, events: &mut [E]) -> io::Result<()> {
        // The clock is read once per batch, not once per event: a time-based checkpoint comes
        // at the end of the batch in which its interval passed.
        let result = (|| {
            for ev in events.iter_mut() {
                let (ev, tail) = ev.parts();
                self.ensure_open(&ev.service)?;
                self.push_event(ev, tail)?;
                if self.checkpoint_due_by_count() {
                    self.push_signed(CheckpointKind::Checkpoint, None)?;
                }
                if self.buf.len() >= SPILL {
                    self.spill()?;
                }
            }
            if self.checkpoint_due() {
                self.push_signed(CheckpointKind::Checkpoint, None)?;
            }
            self.flush(false)
        })();
        if result.is_err() {
            self.roll_back();
        }
        result
    }
}

impl Sink for JsonLinesSink {
    fn write_batch(&mut self, events: &mut [AuditEvent]) -> io::Result<()> {
        self.write_events(events)
    }

    fn write_boxed(&mut self, events: &mut [crate::pool::EventBox]) -> io::Result<()> {
        self.write_events(events)
    }

    fn tick(&mut self) -> io::Result<()> {
        if self.checkpoint_due() {
            self.push_signed(CheckpointKind::Checkpoint, None)?;
        }
        self.flush(true)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.write_out(true)
    }

    fn checkpoints(&self) -> u64 {
        // As of the last record in the file: a signed record rolled back is not counted.
        self.good.signed
    }
}

impl Drop for JsonLinesSink {
    fn drop(&mut self) {
        if let Err(e) = self.close_inner() {
            tracing::error!(target: "secmesh::audit", file = %self.path.display(), error = %e, "audit log not closed cleanly");
        }
    }
}
