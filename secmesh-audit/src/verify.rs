//! Strict verification of one service's log: the chain, the signed records, the file set.
//!
//! [`Verifier`] streams a service's files (the live file and its rotated ones, given in any
//! order: they are put in order by the signed generation of their first record, never by
//! their names) and fails at the first problem, naming the file, the line, the seq and a
//! stable [`FailureKind`]. [`verify_files`] is the verifier with its defaults.
//!
//! # What is detected
//! With the service's public key (`--key`):
//! - a changed, deleted, inserted, swapped or moved record: `broken_chain` / `bad_sequence`,
//!   at the changed record's own line (a changed record is found when the next record does
//!   not chain to it; the record after that, or the next record's signature, says which of
//!   the two changed; when nothing follows the record that does not chain, at the end of an
//!   unsigned or open log, that record is the one reported);
//!   a torn last line: `torn_line`; a line that is not a strict record: `malformed`; a line
//!   over 1 MiB: `line_too_long`;
//! - a signed record whose signature does not verify, that is signed by another key, or
//!   whose `count`, generation, `prev_sig` chain or retention statement does not match what
//!   precedes it: `bad_checkpoint` (the signature covers every field of the record);
//! - a file that does not begin with a signed `open` record, or a log without any signed
//!   record (a file replaced by forged events): `no_checkpoint`;
//! - events after the last signed record (a forged event appended, or a live file):
//!   `unsigned_tail`, unless the open tail is allowed ([`Verifier::allow_open_tail`]);
//! - a log that does not end with a `close` record (cut just after an earlier checkpoint, or
//!   cut and re-chained with forged events: the forger cannot sign a `close`): `truncated`,
//!   unless the open tail is allowed;
//! - a set whose last file ends with `rotate` (the live file was deleted):
//!   `missing_live_file`, always;
//! - a missing, repeated or reordered generation: `generation_gap`; a set starting after
//!   generation 0 is accepted only if a signed record of the set says the writer deleted the
//!   older files (retention, `retained`) or the caller allows it
//!   ([`Verifier::from_generation`]);
//! - a service other than the one expected ([`Verifier::service`]), or files of several
//!   services in one set: `service_mismatch` ([`Verifier::verify_services`] groups the files
//!   of several services first and verifies each service's set on its own);
//! - with a witness ([`Verifier::witness`]), a log cut back before a witnessed signed record,
//!   even when the tail is allowed open: `witness_mismatch`.
//!
//! A `recover` record (written by the sink after a crash) is accepted where the writer puts
//! it: after the records a crash left unsigned, which it then signs. Nothing else unsigned is
//! accepted.
//!
//! # What is not detected
//! - Without `--key`, the records are checked against the key they name: anyone who can
//!   rewrite the files can make a new key and re-sign. The report says so.
//! - A log cut back to an earlier *clean* end (a `close` record followed by nothing) looks
//!   like a log that was shut down there; with `--allow-open-tail`, a live log cut back after
//!   any signed record looks like one that was written up to there. Only a witness holding a
//!   later signed record detects these cuts.
//! - Events written after the last signed record before a crash are signed by the `recover`
//!   record as they are found at restart: whoever changed them in between is not detected.
//! - Events name their own `service` field (the queue writes its own `secmesh-audit` events);
//!   the service check is on the signed records.
//!
//! # Example
//! ```
//! use secmesh_audit::chain::AuditKey;
//! use secmesh_audit::event::{AuditEvent, Direction};
//! use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
//! use secmesh_audit::verify::{FailureKind, Verifier};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("a.jsonl");
//! let key = AuditKey::generate()?;
//! let public = key.public_key().to_vec();
//! let mut sink = JsonLinesSink::open(&path, JsonLinesConfig::default().with_key(key))?;
//! sink.write_batch(&mut vec![AuditEvent::now("a", Direction::In); 3])?;
//! drop(sink); // writes the `close` record
//! let report = Verifier::new(Some(&public)).service("a").verify_files(&[&path])?;
//! assert_eq!((report.events, report.checkpoints), (3, 2));
//!
//! // A forged event appended after the `close` (line 5): an unsigned tail.
//! let mut text = std::fs::read_to_string(&path)?;
//! let forged = text.lines().nth(1).unwrap().replace("\"seq\":2", "\"seq\":6");
//! text.push_str(&forged);
//! text.push('\n');
//! std::fs::write(&path, text)?;
//! let err = Verifier::new(Some(&public)).verify_files(&[&path]).unwrap_err();
//! assert_eq!((err.line, err.kind), (6, FailureKind::BrokenChain));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::event::AuditEvent;
use crate::reader::{LineReader, Next};
use crate::walk::{Visit, Walk};

pub use crate::reader::{ReadError, for_each_event, read_events};

/// What is wrong at the first bad line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The file could not be read (or is not a regular file).
    Io,
    /// The line is not a strict JSON record of this format.
    Malformed,
    /// The last line has no newline or is cut off: a torn write.
    TornLine,
    /// `prev` is not the hash of the line before: a record was changed, removed, inserted or
    /// moved.
    BrokenChain,
    /// `seq` does not follow the line before: records were removed, inserted or swapped.
    BadSequence,
    /// A signed record's signature does not verify, is by another key than the one given, or
    /// what it states does not match the log.
    BadCheckpoint,
    /// Events after the last signed record.
    UnsignedTail,
    /// No signed record where one is required.
    NoCheckpoint,
    /// Another service than the one expected, or several in one set.
    ServiceMismatch,
    /// A generation of the set is missing, repeated or out of order.
    GenerationGap,
    /// The set ends with a rotated file: the live file is missing.
    MissingLiveFile,
    /// The witness holds a signed record the log does not.
    WitnessMismatch,
    /// The log does not end with a `close` record.
    Truncated,
    /// A line longer than [`MAX_LINE`](crate::reader::MAX_LINE).
    LineTooLong,
}

impl FailureKind {
    /// A stable word.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Io => "io",
            FailureKind::Malformed => "malformed",
            FailureKind::TornLine => "torn_line",
            FailureKind::BrokenChain => "broken_chain",
            FailureKind::BadSequence => "bad_sequence",
            FailureKind::BadCheckpoint => "bad_checkpoint",
            FailureKind::UnsignedTail => "unsigned_tail",
            FailureKind::NoCheckpoint => "no_checkpoint",
            FailureKind::ServiceMismatch => "service_mismatch",
            FailureKind::GenerationGap => "generation_gap",
            FailureKind::MissingLiveFile => "missing_live_file",
            FailureKind::WitnessMismatch => "witness_mismatch",
            FailureKind::Truncated => "truncated",
            FailureKind::LineTooLong => "line_too_long",
        }
    }
}

/// The first line that fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number in that file (0: the file as a whole).
    pub line: u64,
    /// The `seq` of that line, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: FailureKind,
    /// In words.
    pub detail: String,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            self.file.display(),
            self.line,
            self.kind.as_str()
        )?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for VerifyFailure {}

/// What a sound log holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Event records.
    pub events: u64,
    /// Signed records verified (every kind).
    pub checkpoints: u64,
    /// The seq of the last signed record, if any.
    pub last_checkpoint: Option<u64>,
    /// Records after the last signed record (protected by the chain only; accepted only with
    /// an open tail allowed).
    pub after_last_checkpoint: u64,
    /// Whether the records were checked against a key given by the caller.
    pub key_checked: bool,
    /// The service the signed records name.
    pub service: Option<String>,
    /// The generations of the files verified (first, last).
    pub generations: Option<(u64, u64)>,
    /// Whether the log ends with a `close` record.
    pub closed: bool,
    /// `recover` records (restarts after a crash).
    pub recoveries: u64,
    /// Witnessed signed records of this service found in the log.
    pub witnessed: u64,
}

/// One parsed line.
#[derive(Debug)]
pub enum Record {
    /// An event.
    Event(Box<AuditEvent>),
    /// A signed record.
    Checkpoint(Box<Checkpoint>),
}

impl Record {
    /// Its seq.
    pub fn seq(&self) -> u64 {
        match self {
            Record::Event(e) => e.seq,
            Record::Checkpoint(c) => c.seq,
        }
    }
}

/// Parse one line (without newline) into its record and `prev`. Strict: no duplicate keys,
/// no unknown fields in signed records.
///
/// The line is read straight into its record: a first look finds whether it is a signed
/// record (a `kind` key, whatever its value) and its `prev` (a string), then the event is
/// deserialized from the same bytes; no intermediate `serde_json::Value` is built.
pub fn parse_line(line: &[u8]) -> Result<(Record, String), String> {
    secmesh_core::json::check_object(line, secmesh_core::json::DEFAULT_MAX_DEPTH)
        .map_err(|e| e.to_string())?;
    let head: LineHead = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if head.kind.0 {
        let c = Checkpoint::parse(line)?;
        let prev = c.prev.clone();
        return Ok((Record::Checkpoint(Box::new(c)), prev));
    }
    let prev = head.prev.0.ok_or("no `prev`")?;
    // `prev` is not an event field: the event's deserializer passes over it.
    let ev: AuditEvent = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    Ok((Record::Event(Box::new(ev)), prev))
}

/// What [`parse_line`] looks at first: whether the line has a `kind` key and its `prev`.
#[derive(serde::Deserialize)]
struct LineHead {
    #[serde(default)]
    kind: Present,
    #[serde(default)]
    prev: PrevField,
}

/// Whether a key is present at all (`null` included).
#[derive(Default)]
struct Present(bool);

impl<'de> serde::Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Present, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Present(true))
    }
}

/// `prev` when it is a string; any other value is `None` (reported as "no `prev`").
#[derive(Default)]
struct PrevField(Option<String>);

impl<'de> serde::Deserialize<'de> for PrevField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PrevField, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PrevField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<PrevField, E> {
                Ok(PrevField(Some(s.to_owned())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<PrevField, E> {
                Ok(PrevField(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<PrevField, E> {
                Ok(PrevField(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<PrevField, E> {
                Ok(PrevField(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<PrevField, E> {
                Ok(PrevField(None))
            }
            fn visit_unit<E>(self) -> Result<PrevField, E> {
                Ok(PrevField(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<PrevField, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(PrevField(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<PrevField, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(PrevField(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Where witnessed records come from.
#[derive(Clone, Debug)]
pub(crate) enum WitnessSource {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// Verification options; see the module docs for what each rule detects.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Verifier<'k> {
    pub(crate) key: Option<&'k [u8]>,
    pub(crate) service: Option<String>,
    pub(crate) allow_open_tail: bool,
    pub(crate) from_generation: Option<u64>,
    pub(crate) witness: Option<WitnessSource>,
}

impl<'k> Verifier<'k> {
    /// Strict verification; `key` is the raw 32-byte Ed25519 public key the records must be
    /// signed with (without it, the key each record names is used, which proves little).
    pub fn new(key: Option<&'k [u8]>) -> Verifier<'k> {
        Verifier {
            key,
            ..Verifier::default()
        }
    }

    /// The service the log must belong to.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Accept a log that does not end with a `close` record (a live file): the events after
    /// the last signed record are counted in [`Report::after_last_checkpoint`].
    pub fn allow_open_tail(mut self, allow: bool) -> Self {
        self.allow_open_tail = allow;
        self
    }

    /// Accept a set whose oldest file has generation `g` or lower even if no signed record
    /// says the older ones were deleted by retention (they were archived elsewhere).
    pub fn from_generation(mut self, g: u64) -> Self {
        self.from_generation = Some(g);
        self
    }

    /// A witness file: copies of signed records, one JSON line each; every one of this
    /// service's must be in the log, signature-identical.
    pub fn witness(mut self, path: impl Into<PathBuf>) -> Self {
        self.witness = Some(WitnessSource::File(path.into()));
        self
    }

    /// A witness held in memory.
    pub fn witness_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.witness = Some(WitnessSource::Bytes(bytes.into()));
        self
    }

    /// Verify a set of files (any order).
    pub fn verify_files<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Report, VerifyFailure> {
        self.verify_set(paths, None)
    }

    fn verify_set<P: AsRef<Path>>(
        &self,
        paths: &[P],
        visit: Option<Visit<'_>>,
    ) -> Result<Report, VerifyFailure> {
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let path = p.as_ref().to_path_buf();
            let order = first_record_order(&path)?;
            files.push((order, path));
        }
        files.sort_by_key(|(order, _)| *order);
        let mut walk = Walk::new(self, visit);
        for (_, path) in &files {
            let mut r = LineReader::open(path).map_err(|e| io_failure(path, e.to_string()))?;
            walk.file(path, &mut r)?;
        }
        walk.finish()
    }

    /// Verify files of several services given together: grouped by the service their first
    /// record names ([`group_by_service`]), each group verified on its own as one service's
    /// set, so that a file set mixing services is not mistaken for tampering. With
    /// [`service`](Self::service) set, every file must be that service's: the files form one
    /// set, as [`verify_files`](Self::verify_files) checks them.
    ///
    /// ```
    /// use secmesh_audit::chain::AuditKey;
    /// use secmesh_audit::event::{AuditEvent, Direction};
    /// use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
    /// use secmesh_audit::verify::Verifier;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let key = AuditKey::generate()?;
    /// let public = key.public_key().to_vec();
    /// let mut files = Vec::new();
    /// for service in ["payments", "orders"] {
    ///     let path = dir.path().join(format!("{service}.jsonl"));
    ///     let config = JsonLinesConfig::default().with_key(AuditKey::from_pem(&key.to_pem())?);
    ///     let mut sink = JsonLinesSink::open(&path, config.with_service(service))?;
    ///     sink.write_batch(&mut [AuditEvent::now(service, Direction::In)])?;
    ///     drop(sink);
    ///     files.push(path);
    /// }
    /// let outcomes = Verifier::new(Some(&public)).verify_services(&files);
    /// let services: Vec<_> = outcomes.iter().map(|o| o.service.as_deref()).collect();
    /// assert_eq!(services, [Some("orders"), Some("payments")]);
    /// assert!(outcomes.iter().all(|o| o.result.is_ok()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_services<P: AsRef<Path>>(&self, paths: &[P]) -> Vec<ServiceOutcome> {
        self.verify_services_visiting(paths, &mut |_, _, _| {})
    }

    /// [`verify_services`](Self::verify_services), reading each file once for the caller
    /// too: `visit` is called with every record that parses, as it is read (the file, the
    /// 1-based line number, the record), before it is checked. A set's walk stops at its
    /// first failure, so the records after it are not visited: a caller that wants every
    /// record reads the rest of those files itself, past the last line it was shown.
    ///
    /// ```
    /// use secmesh_audit::event::{AuditEvent, Direction};
    /// use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
    /// use secmesh_audit::verify::{Record, Verifier};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("orders.jsonl");
    /// let mut sink = JsonLinesSink::open(&path, JsonLinesConfig::default())?;
    /// sink.write_batch(&mut vec![AuditEvent::now("orders", Direction::In); 2])?;
    /// drop(sink);
    /// let mut events = 0;
    /// let outcomes = Verifier::new(None).verify_services_visiting(&[&path], &mut |_, _, r| {
    ///     events += u32::from(matches!(r, Record::Event(_)));
    /// });
    /// assert_eq!(events, 2);
    /// assert_eq!(outcomes[0].service.as_deref(), Some("orders"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_services_visiting<P: AsRef<Path>>(
        &self,
        paths: &[P],
        visit: &mut dyn FnMut(&Path, u64, &Record),
    ) -> Vec<ServiceOutcome> {
        let groups = if self.service.is_some() {
            vec![ServiceFiles {
                service: self.service.clone(),
                files: paths.iter().map(|p| p.as_ref().to_path_buf()).collect(),
            }]
        } else {
            group_by_service(paths)
        };
        groups
            .into_iter()
            .map(|g| ServiceOutcome {
                result: self.verify_set(&g.files, Some(&mut *visit)),
                service: g.service,
                files: g.files,
            })
            .collect()
    }

    /// Verify one file's bytes held in memory.
    pub fn verify_bytes(&self, bytes: &[u8]) -> Result<Report, VerifyFailure> {
        let mut walk = Walk::new(self, None);
        walk.file(Path::new("<memory>"), &mut LineReader::new(bytes))?;
        walk.finish()
    }
}

/// The files of one service, as [`group_by_service`] finds them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceFiles {
    /// The service their first records name; `None` for a file whose first record cannot be
    /// read (each such file is a group of its own, so that its failure is reported).
    pub service: Option<String>,
    /// The files, in the order given.
    pub files: Vec<PathBuf>,
}

/// One service's result in [`Verifier::verify_services`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServiceOutcome {
    /// The service (see [`ServiceFiles::service`]).
    pub service: Option<String>,
    /// Its files, in the order given.
    pub files: Vec<PathBuf>,
    /// Its verification.
    pub result: Result<Report, VerifyFailure>,
}

/// Group log files by the service their first record names (a signed record's `service`, or
/// an unsigned log's first event's, passing over the audit queue's own events): one group per
/// service, ordered by name, then one group per file whose first record cannot be read. Only
/// the first line of each file is read (a few more in an unsigned file that begins with the
/// queue's own events).
///
/// Grouping trusts nothing: each group is then verified strictly, so a file that claims
/// another service in its first record fails that service's verification (a generation is
/// missing from one set, or a set starts with a generation it cannot start with).
pub fn group_by_service<P: AsRef<Path>>(paths: &[P]) -> Vec<ServiceFiles> {
    // Keyed by service, so that many files naming many services group in n log n, sorted.
    let mut named: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    let mut unknown = Vec::new();
    for p in paths {
        let path = p.as_ref().to_path_buf();
        match first_record_service(&path) {
            Some(service) => named.entry(service).or_default().push(path),
            None => unknown.push(ServiceFiles {
                service: None,
                files: vec![path],
            }),
        }
    }
    let mut groups: Vec<ServiceFiles> = named
        .into_iter()
        .map(|(service, files)| ServiceFiles {
            service: Some(service),
            files,
        })
        .collect();
    groups.extend(unknown);
    groups
}

/// The service name of the audit queue's own events (drop and loss reports), written into
/// every service's log.
const QUEUE_SERVICE: &str = "secmesh-audit";

/// How many events of an unsigned file are read, at most, to find its service.
const SERVICE_SCAN: usize = 64;

/// The service a file names: its first signed record's, or, in an unsigned file, the first
/// event's that is not the audit queue's own (within the first lines); `None` when its first
/// record cannot be read.
fn first_record_service(path: &Path) -> Option<String> {
    let mut r = LineReader::open(path).ok()?;
    let mut queue_only = None;
    for _ in 0..SERVICE_SCAN {
        match r.next_line().ok()? {
            Next::Line { .. } => match parse_line(r.line()) {
                Ok((Record::Checkpoint(c), _)) => return Some(c.service),
                Ok((Record::Event(e), _)) if e.service != QUEUE_SERVICE => {
                    return Some(e.service);
                }
                Ok((Record::Event(e), _)) => {
                    queue_only.get_or_insert(e.service);
                }
                Err(_) => break,
            },
            Next::TooLong | Next::Eof => break,
        }
    }
    queue_only
}

/// Verify one service's log files with the strict defaults (see the module docs). `key` is
/// the raw 32-byte Ed25519 public key the records must be signed with.
pub fn verify_files<P: AsRef<Path>>(
    paths: &[P],
    key: Option<&[u8]>,
) -> Result<Report, VerifyFailure> {
    Verifier::new(key).verify_files(paths)
}

/// Verify a whole log held in memory (one file's bytes), as [`verify_files`] does.
pub fn verify_bytes(bytes: &[u8], key: Option<&[u8]>) -> Result<Report, VerifyFailure> {
    Verifier::new(key).verify_bytes(bytes)
}

pub(crate) fn io_failure(path: &Path, detail: String) -> VerifyFailure {
    VerifyFailure {
        file: path.to_path_buf(),
        line: 0,
        seq: None,
        kind: FailureKind::Io,
        detail,
    }
}

/// The order of a file in its set: the generation its first (signed `open`) record states,
/// then its first seq; files that cannot be read are reported here.
fn first_record_order(path: &Path) -> Result<(u64, u64), VerifyFailure> {
    let mut r = LineReader::open(path).map_err(|e| io_failure(path, e.to_string()))?;
    match r.next_line().map_err(|e| io_failure(path, e.to_string()))? {
        Next::Line { .. } => Ok(match parse_line(r.line()) {
            Ok((Record::Checkpoint(c), _)) => (c.r#gen, c.seq),
            Ok((Record::Event(e), _)) => (0, e.seq),
            Err(_) => (u64::MAX, u64::MAX),
        }),
        Next::TooLong | Next::Eof => Ok((u64::MAX, u64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;
    use crate::event::Direction;

    /// `parse_line` as it was, through a `serde_json::Value`: the reference the direct parse
    /// must agree with.
    fn through_value(line: &[u8]) -> Result<(Record, String), String> {
        secmesh_core::json::check_object(line, secmesh_core::json::DEFAULT_MAX_DEPTH)
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        if v.get("kind").is_some() {
            let c = Checkpoint::parse(line)?;
            let prev = c.prev.clone();
            return Ok((Record::Checkpoint(Box::new(c)), prev));
        }
        let prev = v
            .get("prev")
            .and_then(|p| p.as_str())
            .ok_or("no `prev`")?
            .to_owned();
        let mut obj = v;
        if let Some(m) = obj.as_object_mut() {
            m.remove("prev");
        }
        let ev: AuditEvent = serde_json::from_value(obj).map_err(|e| e.to_string())?;
        Ok((Record::Event(Box::new(ev)), prev))
    }

    fn same(line: &[u8]) {
        let (a, b) = (parse_line(line), through_value(line));
        match (&a, &b) {
            (Ok((ra, pa)), Ok((rb, pb))) => {
                assert_eq!(pa, pb);
                assert_eq!(format!("{ra:?}"), format!("{rb:?}"));
            }
            (Err(_), Err(_)) => {}
            _ => panic!(
                "{:?}: direct {:?}, through a Value {:?}",
                String::from_utf8_lossy(line),
                a.map(|x| x.1),
                b.map(|x| x.1)
            ),
        }
    }

    fn line() -> String {
        let mut ev = AuditEvent::now("orders", Direction::In);
        ev.sub = Some("user:\"1\"".into());
        ev.status = Some(200);
        ev.latency_us = Some(12);
        let json = serde_json::to_string(&ev).unwrap();
        format!("{},\"prev\":\"00ff\"}}", &json[..json.len() - 1])
    }

    #[test]
    fn edge_cases_parse_as_through_a_value() {
        let l = line();
        for extra in [
            "\"kind\":null,",
            "\"kind\":\"open\",",
            "\"prev\":1,",
            "\"x\":{\"prev\":2},",
            "\"status\":\"200\",",
            "\"v\":1.0,",
            "\"dir\":null,",
        ] {
            let mutated = l.replacen("{", &format!("{{{extra}"), 1);
            same(mutated.as_bytes());
        }
        same(l.replace(",\"prev\":\"00ff\"", "").as_bytes());
        same(l.replace("\"prev\":\"00ff\"", "\"prev\":null").as_bytes());
        same(
            l.replace("\"prev\":\"00ff\"", "\"prev\":[\"a\"]")
                .as_bytes(),
        );
        same(b"[]");
        same(b"");
        same(l.as_bytes());
        assert!(parse_line(l.as_bytes()).is_ok());
    }

    proptest! {
        /// Any edit of a valid line is read the same way by both.
        #[test]
        fn edited_lines_parse_as_through_a_value(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
                &b"{}[]\":,0123456789.-eEnulltrfas\\ kindprev"[..])), 1..4),
            cut in any::<prop::sample::Index>(),
            do_cut in any::<bool>(),
        ) {
            let mut bytes = line().into_bytes();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            if do_cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            same(&bytes);
        }

        /// A field added, or an existing one given again (a duplicate), with any value.
        #[test]
        fn added_fields_parse_as_through_a_value(
            key in prop::sample::select(&["kind", "prev", "v", "seq", "status", "dir", "txn", "sub", "decision", "x"][..]),
            value in prop::sample::select(&["null", "1", "\"s\"", "[]", "{}", "1.5", "-1", "true", "\"in\"", "\"deny\""][..]),
            drop_prev in any::<bool>(),
        ) {
            let mut l = line().replacen('{', &format!("{{\"{key}\":{value},"), 1);
            if drop_prev {
                l = l.replace(",\"prev\":\"00ff\"", "");
            }
            same(l.as_bytes());
        }
    }
}
