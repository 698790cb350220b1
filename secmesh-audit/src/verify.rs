//! Reading and verifying logs: the chain, the sequence and the checkpoints.
//!
//! [`verify_files`] streams one service's log files (rotated ones included, in any order: they
//! are put in chain order by their first `seq`) and checks that every line is a whole, strict
//! JSON record, that its `prev` is the SHA-256 of the line before it (the first line of the log
//! links to [`GENESIS`]), that `seq` goes up by exactly one, and that
//! every checkpoint's signature holds (with the key given; without one, checkpoints are checked
//! against the key they name, which proves nothing against someone who can rewrite the file,
//! and the report says so). A changed, deleted, swapped or inserted record breaks the chain or
//! the sequence at that line; a log cut before its last checkpoint breaks the link between
//! files or the sequence; a torn last line is reported, never accepted. The first failure is
//! returned, naming the file, the line and the seq.
//!
//! # Example
//! ```
//! use secmesh_audit::event::{AuditEvent, Direction};
//! use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
//! use secmesh_audit::verify::{verify_files, FailureKind};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("a.jsonl");
//! let mut sink = JsonLinesSink::open(&path, JsonLinesConfig::default())?;
//! sink.write_batch(&mut vec![AuditEvent::now("a", Direction::In); 3])?;
//! drop(sink);
//! assert!(verify_files(&[&path], None).is_ok());
//!
//! let text = std::fs::read_to_string(&path)?.replace("\"dir\":\"in\"", "\"dir\":\"out\"");
//! std::fs::write(&path, text)?;
//! let err = verify_files(&[&path], None).unwrap_err();
//! assert_eq!((err.line, err.kind), (2, FailureKind::BrokenChain));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::chain::{self, GENESIS};
use crate::event::AuditEvent;

/// What is wrong at the first bad line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The file could not be read.
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
    /// A checkpoint's signature does not verify, or is by another key than the one given.
    BadCheckpoint,
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
        }
    }
}

/// The first line that fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number in that file.
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
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// The seq of the last checkpoint, if any.
    pub last_checkpoint: Option<u64>,
    /// Records after the last checkpoint (protected by the chain only).
    pub after_last_checkpoint: u64,
    /// Whether checkpoints were checked against a key given by the caller.
    pub key_checked: bool,
}

/// One parsed line.
#[derive(Debug)]
pub enum Record {
    /// An event.
    Event(Box<AuditEvent>),
    /// A checkpoint.
    Checkpoint {
        /// Its seq.
        seq: u64,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkpoint {
    #[allow(dead_code)]
    v: u32,
    #[allow(dead_code)]
    kind: String,
    seq: u64,
    prev: String,
    #[allow(dead_code)]
    count: u64,
    key: String,
    sig: String,
}

/// Parse one line (without newline) into its record and `prev`. Strict: no duplicate keys,
/// no unknown fields in checkpoints.
pub fn parse_line(line: &[u8]) -> Result<(Record, String), String> {
    secmesh_core::json::check_object(line, secmesh_core::json::DEFAULT_MAX_DEPTH)
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if v.get("kind").and_then(|k| k.as_str()) == Some("checkpoint") {
        let c: Checkpoint = serde_json::from_value(v).map_err(|e| e.to_string())?;
        return Ok((Record::Checkpoint { seq: c.seq }, c.prev));
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

/// Split bytes into lines; the bool says whether the last line ended with a newline.
fn split_lines(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
    let complete = bytes.is_empty() || bytes.ends_with(b"\n");
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    (lines, complete)
}

fn read_lines(path: &Path) -> io::Result<(Vec<Vec<u8>>, bool)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let (lines, complete) = split_lines(&bytes);
    Ok((lines.into_iter().map(<[u8]>::to_vec).collect(), complete))
}

fn first_seq(path: &Path) -> u64 {
    File::open(path)
        .ok()
        .and_then(|f| BufReader::new(f).split(b'\n').next())
        .and_then(Result::ok)
        .and_then(|l| serde_json::from_slice::<serde_json::Value>(&l).ok())
        .and_then(|v| v["seq"].as_u64())
        .unwrap_or(u64::MAX)
}

/// The running state of a verification across the files of one log.
struct Chain<'k> {
    key: Option<&'k [u8]>,
    prev_hash: Option<[u8; 32]>,
    last_seq: Option<u64>,
    report: Report,
}

impl Chain<'_> {
    fn check(&mut self, path: &Path, bytes: &[u8]) -> Result<(), VerifyFailure> {
        let fail = |line: u64, seq: Option<u64>, kind: FailureKind, detail: String| VerifyFailure {
            file: path.to_path_buf(),
            line,
            seq,
            kind,
            detail,
        };
        let (lines, complete) = split_lines(bytes);
        let n = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            let lineno = i as u64 + 1;
            let last_and_torn = i + 1 == n && !complete;
            let (record, prev) = match parse_line(line) {
                Ok(r) => r,
                Err(e) if last_and_torn => {
                    return Err(fail(
                        lineno,
                        None,
                        FailureKind::TornLine,
                        format!("the last line is cut off ({e})"),
                    ));
                }
                Err(e) => return Err(fail(lineno, None, FailureKind::Malformed, e)),
            };
            let seq = match &record {
                Record::Event(ev) => ev.seq,
                Record::Checkpoint { seq } => *seq,
            };
            if last_and_torn {
                return Err(fail(
                    lineno,
                    Some(seq),
                    FailureKind::TornLine,
                    "the last line has no newline: a torn write".into(),
                ));
            }
            let expected_prev = self
                .prev_hash
                .map_or_else(|| GENESIS.to_owned(), |h| chain::to_hex(&h));
            if prev != expected_prev {
                return Err(fail(
                    lineno,
                    Some(seq),
                    FailureKind::BrokenChain,
                    "`prev` is not the hash of the record before".into(),
                ));
            }
            let expected_seq = self.last_seq.map_or(1, |s| s.saturating_add(1));
            if seq != expected_seq {
                return Err(fail(
                    lineno,
                    Some(seq),
                    FailureKind::BadSequence,
                    format!("seq {seq} where {expected_seq} was due"),
                ));
            }
            match record {
                Record::Event(_) => {
                    self.report.events += 1;
                    self.report.after_last_checkpoint += 1;
                }
                Record::Checkpoint { .. } => {
                    let c: Checkpoint = serde_json::from_slice(line).map_err(|e| {
                        fail(lineno, Some(seq), FailureKind::Malformed, e.to_string())
                    })?;
                    let named = chain::parse_public_key(&c.key).map_err(|e| {
                        fail(lineno, Some(seq), FailureKind::BadCheckpoint, e.to_string())
                    })?;
                    if self.key.is_some_and(|k| k != named.as_slice()) {
                        return Err(fail(
                            lineno,
                            Some(seq),
                            FailureKind::BadCheckpoint,
                            "signed by another key than the one given".into(),
                        ));
                    }
                    let hash = self.prev_hash.unwrap_or([0; 32]);
                    if !chain::verify_checkpoint(&named, &hash, seq, &c.sig) {
                        return Err(fail(
                            lineno,
                            Some(seq),
                            FailureKind::BadCheckpoint,
                            "the signature does not verify".into(),
                        ));
                    }
                    self.report.checkpoints += 1;
                    self.report.last_checkpoint = Some(seq);
                    self.report.after_last_checkpoint = 0;
                }
            }
            self.prev_hash = Some(chain::hash_line(line));
            self.last_seq = Some(seq);
        }
        Ok(())
    }
}

/// Verify one service's log files (see the module docs). `key` is the raw 32-byte Ed25519
/// public key the checkpoints must be signed with.
pub fn verify_files<P: AsRef<Path>>(
    paths: &[P],
    key: Option<&[u8]>,
) -> Result<Report, VerifyFailure> {
    let mut files: Vec<PathBuf> = paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
    files.sort_by_key(|p| first_seq(p));
    let mut chain = Chain {
        key,
        prev_hash: None,
        last_seq: None,
        report: Report {
            key_checked: key.is_some(),
            ..Report::default()
        },
    };
    for path in &files {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| VerifyFailure {
                file: path.clone(),
                line: 0,
                seq: None,
                kind: FailureKind::Io,
                detail: e.to_string(),
            })?;
        chain.check(path, &bytes)?;
    }
    Ok(chain.report)
}

/// Verify a whole log held in memory (one file's bytes), as [`verify_files`] does.
pub fn verify_bytes(bytes: &[u8], key: Option<&[u8]>) -> Result<Report, VerifyFailure> {
    let mut chain = Chain {
        key,
        prev_hash: None,
        last_seq: None,
        report: Report {
            key_checked: key.is_some(),
            ..Report::default()
        },
    };
    chain.check(Path::new("<memory>"), bytes)?;
    Ok(chain.report)
}

/// Read every event of some log files, without verifying (for trace and tail). Lines that do
/// not parse are skipped and counted.
pub fn read_events<P: AsRef<Path>>(paths: &[P]) -> io::Result<(Vec<AuditEvent>, u64)> {
    let mut out = Vec::new();
    let mut bad = 0;
    for p in paths {
        let (lines, _) = read_lines(p.as_ref())?;
        for line in lines {
            match parse_line(&line) {
                Ok((Record::Event(ev), _)) => out.push(*ev),
                Ok(_) => {}
                Err(_) => bad += 1,
            }
        }
    }
    Ok((out, bad))
}
