//! The verification state machine behind [`Verifier`]: one pass over the lines of a set.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::chain::{self, GENESIS};
use crate::checkpoint::{Checkpoint, CheckpointKind};
use crate::reader::{LineReader, MAX_LINE, Next};
use crate::verify::{
    FailureKind, Record, Report, Verifier, VerifyFailure, WitnessSource, io_failure, parse_line,
};

/// Where the writer's session stands after the last record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing yet.
    Start,
    /// After `open`, `checkpoint`, `recover` or an event of an open session.
    Open,
    /// After `close`.
    Closed,
    /// After `rotate`: the next file follows.
    Rotated,
}

/// What [`Verifier::verify_services_visiting`] calls with each record that parses.
pub(crate) type Visit<'f> = &'f mut dyn FnMut(&Path, u64, &Record);

pub(crate) struct Walk<'v, 'k, 'f> {
    opts: &'v Verifier<'k>,
    visit: Option<Visit<'f>>,
    /// The key in force: the one given, else the one the first signed record names.
    key: Option<Vec<u8>>,
    prev_hash: Option<[u8; 32]>,
    last_seq: Option<u64>,
    events: u64,
    last_sig: Option<String>,
    retained: u64,
    state: State,
    /// The current file's generation (from its `open` record).
    file_gen: Option<u64>,
    /// Whether any signed record or the key makes this a signed log.
    signed: bool,
    sigs: HashSet<String>,
    last_pos: (PathBuf, u64, Option<u64>),
    /// A `prev` that did not match, decided at the next record (see [`Suspect`]).
    suspect: Option<Suspect>,
    report: Report,
}

/// A record whose `prev` is not the hash of the record before although its `seq` follows:
/// either the record before was changed (then the record after this one still chains to this
/// one, or this one is a signed record whose signature vouches for its `prev`) or this record
/// was. The next record decides, so that a changed record is reported at its own line.
struct Suspect {
    /// The record before: file, line, seq.
    before: (PathBuf, u64, Option<u64>),
    /// The failure at this record, reported when the record before cannot be blamed.
    here: VerifyFailure,
}

impl Suspect {
    /// The record before was changed.
    fn blame_before(self, why: &str) -> VerifyFailure {
        let (file, line, seq) = self.before;
        VerifyFailure {
            file,
            line,
            seq,
            kind: FailureKind::BrokenChain,
            detail: format!("this record was changed: {why}"),
        }
    }
}

type Fail = Box<dyn Fn(FailureKind, String) -> VerifyFailure>;

impl<'v, 'k, 'f> Walk<'v, 'k, 'f> {
    pub(crate) fn new(opts: &'v Verifier<'k>, visit: Option<Visit<'f>>) -> Walk<'v, 'k, 'f> {
        Walk {
            opts,
            visit,
            key: opts.key.map(<[u8]>::to_vec),
            prev_hash: None,
            last_seq: None,
            events: 0,
            last_sig: None,
            retained: 0,
            state: State::Start,
            file_gen: None,
            signed: opts.key.is_some(),
            sigs: HashSet::new(),
            last_pos: (PathBuf::new(), 0, None),
            suspect: None,
            report: Report {
                key_checked: opts.key.is_some(),
                ..Report::default()
            },
        }
    }

    /// Check one file's lines.
    pub(crate) fn file<R: Read>(
        &mut self,
        path: &Path,
        r: &mut LineReader<R>,
    ) -> Result<(), VerifyFailure> {
        let at = |line: u64, seq: Option<u64>| -> Fail {
            let file = path.to_path_buf();
            Box::new(move |kind, detail| VerifyFailure {
                file: file.clone(),
                line,
                seq,
                kind,
                detail,
            })
        };
        self.file_gen = None;
        loop {
            let next = r.next_line().map_err(|e| io_failure(path, e.to_string()));
            let next = self.or_suspect(next)?;
            let lineno = r.lineno();
            let complete = match next {
                Next::Eof => break,
                Next::TooLong => {
                    return self.or_suspect(Err(at(lineno, None)(
                        FailureKind::LineTooLong,
                        format!("a line longer than {MAX_LINE} bytes"),
                    )));
                }
                Next::Line { complete } => complete,
            };
            let line = r.line();
            let (record, prev) = match parse_line(line) {
                Ok(x) => x,
                Err(e) if !complete => {
                    return self.or_suspect(Err(at(lineno, None)(
                        FailureKind::TornLine,
                        format!("the last line is cut off ({e})"),
                    )));
                }
                Err(e) => {
                    return self.or_suspect(Err(at(lineno, None)(FailureKind::Malformed, e)));
                }
            };
            if let Some(visit) = self.visit.as_mut() {
                visit(path, lineno, &record);
            }
            let seq = record.seq();
            let fail = at(lineno, Some(seq));
            if !complete {
                return self.or_suspect(Err(fail(
                    FailureKind::TornLine,
                    "the last line has no newline: a torn write".into(),
                )));
            }
            let checked = self.line(&fail, lineno, record, &prev, seq);
            self.or_suspect(checked)?;
            self.prev_hash = Some(chain::hash_line(line));
            self.last_seq = Some(seq);
            self.last_pos = (path.to_path_buf(), lineno, Some(seq));
        }
        if self.signed && self.file_gen.is_none() {
            // An empty file in a signed set.
            return self.or_suspect(Err(at(0, None)(
                FailureKind::NoCheckpoint,
                "an empty file: no signed open record".into(),
            )));
        }
        Ok(())
    }

    fn line(
        &mut self,
        fail: &Fail,
        lineno: u64,
        record: Record,
        prev: &str,
        seq: u64,
    ) -> Result<(), VerifyFailure> {
        let expected_prev = self
            .prev_hash
            .map_or_else(|| GENESIS.to_owned(), |h| chain::to_hex(&h));
        if let Some(suspect) = self.suspect.take() {
            // The record before this one did not chain to its predecessor. If this one chains
            // to it, it is intact: its predecessor is the changed record.
            return Err(if prev == expected_prev {
                suspect.blame_before(
                    "the next record's `prev` is not its hash, and the record after that chains to the next one",
                )
            } else {
                suspect.here
            });
        }
        // The set may start after generation 0: its first record is then the anchor.
        let anchor = self.last_seq.is_none()
            && match &record {
                Record::Checkpoint(c) => c.r#gen > 0,
                Record::Event(_) => self.opts.from_generation.is_some_and(|g| g > 0),
            };
        if let Record::Checkpoint(c) = &record {
            // Another service's record: say so before the chain does.
            let expected = self
                .opts
                .service
                .as_deref()
                .or(self.report.service.as_deref());
            if let Some(s) = expected
                && s != c.service
            {
                return Err(fail(
                    FailureKind::ServiceMismatch,
                    format!("a record of service `{}` where `{s}` was due", c.service),
                ));
            }
        }
        if lineno == 1
            && let (Some((_, last)), Record::Checkpoint(c)) = (self.report.generations, &record)
        {
            // A file after the first: say what is wrong with the set before the chain does.
            if self.state != State::Rotated {
                return Err(fail(
                    FailureKind::Truncated,
                    format!(
                        "generation {last} does not end with a `rotate` record, yet generation {} follows",
                        c.r#gen
                    ),
                ));
            }
            if let Some(detail) = generation_gap(last, c.r#gen) {
                return Err(fail(FailureKind::GenerationGap, detail));
            }
        }
        if !anchor {
            let expected_seq = self.last_seq.map_or(1, |s| s.saturating_add(1));
            if prev != expected_prev {
                let here = fail(
                    FailureKind::BrokenChain,
                    "`prev` is not the hash of the record before".into(),
                );
                if seq != expected_seq || self.last_seq.is_none() {
                    return Err(here); // removed, inserted, moved or cut: this is the place
                }
                // The seq follows: this record or the one before was changed; the next
                // record (or this one's signature) says which.
                self.suspect = Some(Suspect {
                    before: self.last_pos.clone(),
                    here,
                });
            } else if seq != expected_seq {
                return Err(fail(
                    FailureKind::BadSequence,
                    format!("seq {seq} where {expected_seq} was due"),
                ));
            }
        }
        if self.state == State::Rotated && lineno > 1 {
            return Err(fail(
                FailureKind::Malformed,
                "a record after the `rotate` record that ends the file".into(),
            ));
        }
        match record {
            Record::Event(_) => {
                if lineno == 1 && (self.signed || self.state == State::Rotated) {
                    return Err(fail(
                        FailureKind::NoCheckpoint,
                        "the file does not begin with a signed `open` record".into(),
                    ));
                }
                if self.state == State::Closed {
                    return Err(fail(
                        FailureKind::UnsignedTail,
                        "an event after a `close` record".into(),
                    ));
                }
                self.events += 1;
                self.report.events += 1;
                self.report.after_last_checkpoint += 1;
            }
            Record::Checkpoint(c) => self.checkpoint(fail, lineno, *c, anchor)?,
        }
        Ok(())
    }

    fn checkpoint(
        &mut self,
        fail: &Fail,
        lineno: u64,
        c: Checkpoint,
        anchor: bool,
    ) -> Result<(), VerifyFailure> {
        let bad = |d: String| fail(FailureKind::BadCheckpoint, d);
        if !self.signed && self.report.events > 0 {
            return Err(fail(
                FailureKind::NoCheckpoint,
                "the log does not begin with a signed `open` record".into(),
            ));
        }
        self.signed = true;
        // The signature first: nothing it states is trusted before.
        let key = match &self.key {
            Some(k) => k.clone(),
            None => {
                let named = chain::parse_public_key(&c.key).map_err(|e| bad(e.to_string()))?;
                self.key = Some(named.clone());
                named
            }
        };
        if chain::parse_public_key(&c.key).ok().as_deref() != Some(key.as_slice()) {
            return Err(bad(if self.opts.key.is_some() {
                "signed by another key than the one given".into()
            } else {
                "signed by another key than the records before".into()
            }));
        }
        if !c.verify(&key) {
            return Err(bad("the signature does not verify".into()));
        }
        if let Some(suspect) = self.suspect.take() {
            // The signature covers `prev`: the record before is not the one it signed.
            return Err(
                suspect.blame_before("the signed record after it states another hash for it")
            );
        }
        // The service (checked against the expected one before the chain).
        self.report.service.get_or_insert_with(|| c.service.clone());
        // The generation and the session.
        if lineno == 1 {
            if c.kind != CheckpointKind::Open {
                return Err(fail(
                    FailureKind::NoCheckpoint,
                    "the file does not begin with a signed `open` record".into(),
                ));
            }
            match (self.state, self.report.generations) {
                (State::Start, _) => {
                    if c.r#gen > 0 && !anchor {
                        return Err(bad("a later generation opened at the log's start".into()));
                    }
                    self.report.generations = Some((c.r#gen, c.r#gen));
                }
                (State::Rotated, Some((first, last))) => {
                    if let Some(detail) = generation_gap(last, c.r#gen) {
                        return Err(fail(FailureKind::GenerationGap, detail));
                    }
                    self.report.generations = Some((first, c.r#gen));
                }
                (_, Some((_, last))) => {
                    return Err(fail(
                        FailureKind::Truncated,
                        format!(
                            "generation {last} does not end with a `rotate` record, yet generation {} follows",
                            c.r#gen
                        ),
                    ));
                }
                (_, None) => return Err(bad("an `open` record out of place".into())),
            }
            self.file_gen = Some(c.r#gen);
        } else {
            let ok = match c.kind {
                CheckpointKind::Open => self.state == State::Closed,
                _ => self.state == State::Open,
            };
            if !ok {
                return Err(bad(format!(
                    "a `{}` record after {}",
                    c.kind.as_str(),
                    match self.state {
                        State::Closed => "a `close` record",
                        _ => "a record it cannot follow",
                    }
                )));
            }
            if self.file_gen != Some(c.r#gen) {
                return Err(bad(format!(
                    "states generation {} inside the file of generation {}",
                    c.r#gen,
                    self.file_gen.unwrap_or(0)
                )));
            }
        }
        // What it states about what precedes it.
        if anchor {
            self.events = c.count;
        } else {
            if c.count != self.events {
                return Err(bad(format!(
                    "states {} events where {} precede it",
                    c.count, self.events
                )));
            }
            let expected = self.last_sig.as_deref().unwrap_or("");
            if c.prev_sig != expected {
                return Err(bad(
                    "`prev_sig` is not the signature of the signed record before".into(),
                ));
            }
        }
        if c.retained < self.retained || c.retained > c.r#gen {
            return Err(bad(format!(
                "states retention from generation {}, after {} before",
                c.retained, self.retained
            )));
        }
        self.retained = c.retained;
        self.state = match c.kind {
            CheckpointKind::Close => State::Closed,
            CheckpointKind::Rotate => State::Rotated,
            _ => State::Open,
        };
        self.report.closed = c.kind == CheckpointKind::Close;
        if c.kind == CheckpointKind::Recover {
            self.report.recoveries += 1;
        }
        self.report.checkpoints += 1;
        self.report.last_checkpoint = Some(c.seq);
        self.report.after_last_checkpoint = 0;
        self.last_sig = Some(c.sig.clone());
        self.sigs.insert(c.sig);
        Ok(())
    }

    /// The checks on the set as a whole.
    pub(crate) fn finish(mut self) -> Result<Report, VerifyFailure> {
        if let Some(suspect) = self.suspect.take() {
            // The last record does not chain, and nothing after it says which one changed.
            return Err(suspect.here);
        }
        let (file, line, seq) = self.last_pos.clone();
        let fail = |kind, detail| VerifyFailure {
            file: file.clone(),
            line,
            seq,
            kind,
            detail,
        };
        if !self.signed {
            // An unsigned log, verified without a key: the chain only.
            return Ok(self.report);
        }
        if self.report.checkpoints == 0 {
            return Err(fail(
                FailureKind::NoCheckpoint,
                "no signed record in the log".into(),
            ));
        }
        match self.state {
            State::Rotated => {
                return Err(fail(
                    FailureKind::MissingLiveFile,
                    "the last file ends with a `rotate` record: the file after it is missing"
                        .into(),
                ));
            }
            State::Open if !self.opts.allow_open_tail => {
                return Err(if self.report.after_last_checkpoint > 0 {
                    fail(
                        FailureKind::UnsignedTail,
                        format!(
                            "{} events after the last signed record (a live file: --allow-open-tail)",
                            self.report.after_last_checkpoint
                        ),
                    )
                } else {
                    fail(
                        FailureKind::Truncated,
                        "the log does not end with a `close` record (a live file: --allow-open-tail)"
                            .into(),
                    )
                });
            }
            _ => {}
        }
        if let Some((first, _)) = self.report.generations
            && first > 0
            && first > self.retained
            && self.opts.from_generation.is_none_or(|g| first > g)
        {
            return Err(fail(
                FailureKind::GenerationGap,
                format!(
                    "the set starts at generation {first}; no signed record says generations before it were removed by retention (--from-generation)"
                ),
            ));
        }
        if let Some(w) = &self.opts.witness {
            self.witness(w)?;
        }
        Ok(self.report)
    }

    fn witness(&mut self, source: &WitnessSource) -> Result<(), VerifyFailure> {
        let (path, mut r): (PathBuf, LineReader<Box<dyn Read + '_>>) = match source {
            WitnessSource::File(p) => {
                let f = secmesh_fs::open_regular(p).map_err(|e| io_failure(p, e.to_string()))?;
                (p.clone(), LineReader::new(Box::new(f)))
            }
            WitnessSource::Bytes(b) => (
                PathBuf::from("<witness>"),
                LineReader::new(Box::new(b.as_slice())),
            ),
        };
        let first_gen = self.report.generations.map_or(0, |g| g.0);
        let service = self.report.service.clone().unwrap_or_default();
        let key = self.key.clone().unwrap_or_default();
        loop {
            let next = r
                .next_line()
                .map_err(|e| io_failure(&path, e.to_string()))?;
            let line = r.lineno();
            let at = |kind, detail| VerifyFailure {
                file: path.clone(),
                line,
                seq: None,
                kind,
                detail,
            };
            match next {
                Next::Eof => return Ok(()),
                Next::TooLong => {
                    return Err(at(FailureKind::LineTooLong, "in the witness".into()));
                }
                Next::Line { complete: false } => {
                    return Err(at(FailureKind::TornLine, "in the witness".into()));
                }
                Next::Line { complete: true } => {
                    if r.line().is_empty() {
                        continue;
                    }
                    let c = Checkpoint::parse(r.line()).map_err(|e| {
                        at(
                            FailureKind::WitnessMismatch,
                            format!("not a signed record: {e}"),
                        )
                    })?;
                    if c.service != service {
                        continue;
                    }
                    if !c.verify(&key) {
                        return Err(at(
                            FailureKind::WitnessMismatch,
                            "a witnessed record whose signature does not verify".into(),
                        ));
                    }
                    if c.r#gen < first_gen {
                        continue; // in a generation removed before the set starts
                    }
                    if !self.sigs.contains(&c.sig) {
                        return Err(at(
                            FailureKind::WitnessMismatch,
                            format!(
                                "the witnessed `{}` record of generation {} seq {} is not in the log: it was cut back or replaced",
                                c.kind.as_str(),
                                c.r#gen,
                                c.seq
                            ),
                        ));
                    }
                    self.report.witnessed += 1;
                }
            }
        }
    }
}

impl Walk<'_, '_, '_> {
    /// A failure found while a suspect is pending is reported at the suspect: the earlier
    /// line comes first.
    fn or_suspect<T>(&mut self, r: Result<T, VerifyFailure>) -> Result<T, VerifyFailure> {
        r.map_err(|e| self.suspect.take().map_or(e, |s| s.here))
    }
}

/// Why generation `next` may not follow generation `last`, or `None` when it is the next one.
fn generation_gap(last: u64, next: u64) -> Option<String> {
    (next != last.saturating_add(1)).then(|| {
        format!(
            "generation {next} follows generation {last}: {}",
            if next > last {
                "generations are missing"
            } else {
                "a generation is repeated or out of order"
            }
        )
    })
}
