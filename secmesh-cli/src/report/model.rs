//! The report's data: everything the page shows, aggregated in Rust from the audit logs and
//! the policy files, serialized as one JSON object that the page's script draws.
//!
//! Nothing from the logs is trusted: the logs are read through the audit crate's bounded
//! reader (regular files, lines of at most 1 MiB), a directory holding more than
//! [`Limits::max_files`] logs is refused, and what is embedded is capped (transactions, their
//! hops, denials, distinct callers), each cap counted in the model so that the page says what
//! it left out. Strings are stored as they are; escaping is the renderer's job
//! ([`to_script_json`] for the embedded blob, the page's script writes text with
//! `textContent` only).
//!
//! # Example
//! ```
//! use secmesh_audit::event::{AuditEvent, Decision, Direction};
//! use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
//! use secmesh_cli::report::model::{Options, build, to_script_json};
//!
//! let dir = tempfile::tempdir()?;
//! let mut sink = JsonLinesSink::open(dir.path().join("orders.jsonl"), JsonLinesConfig::default())?;
//! let mut ev = AuditEvent::now("orders", Direction::In);
//! ev.decision = Decision::Deny;
//! ev.object = Some("orders/</script>".into());
//! sink.write_batch(&mut [ev])?;
//! drop(sink);
//!
//! let model = build(&Options::new(dir.path()))?;
//! assert_eq!((model.events, model.denials_total), (1, 1));
//! let json = to_script_json(&model)?;
//! assert!(json.contains("orders/\\u003c/script\\u003e") && !json.contains('<'));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secmesh_audit::event::Decision;
use secmesh_audit::reader::{LineReader, Next};
use secmesh_audit::verify::{Record, ServiceOutcome, Verifier, parse_line};
use secmesh_core::TxnId;
use secmesh_core::policy::{Format, Policy};
use serde::Serialize;

use super::ReportError;
use super::aggregate::Aggregate;
use super::line::{EventLine, for_each_event_line};

/// What the report reads and how much of it it embeds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Log files in the audit directory (more is refused).
    pub max_files: usize,
    /// Events kept in memory to build transaction trees (the counts go on past it).
    pub max_trace_events: usize,
    /// Transactions embedded (the most recent).
    pub max_txns: usize,
    /// Rows of one transaction's waterfall.
    pub max_hops: usize,
    /// Denials embedded (the most recent).
    pub max_denials: usize,
    /// Distinct callers drawn as nodes of their own; the others are one `(other callers)`.
    pub max_callers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_files: 10_000,
            max_trace_events: 500_000,
            max_txns: 20_000,
            max_hops: 256,
            max_denials: 50_000,
            max_callers: 200,
        }
    }
}

/// What to build the report from.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// The directory of the audit logs (`NAME.jsonl` and rotated `NAME.jsonl.*`).
    pub audit_dir: PathBuf,
    /// Policy files (TOML, or by extension JSON/YAML as `secmesh policy` reads them).
    pub policies: Vec<PathBuf>,
    /// The trusted audit public key (raw 32-byte Ed25519) and where it came from; without
    /// it, signed records are checked against the key they name (not a trust anchor).
    pub key: Option<(Vec<u8>, String)>,
    /// The caps.
    pub limits: Limits,
}

impl Options {
    /// Options for the logs in `audit_dir`, no policy, no key, the default limits.
    pub fn new(audit_dir: impl Into<PathBuf>) -> Options {
        Options {
            audit_dir: audit_dir.into(),
            ..Options::default()
        }
    }

    /// Add a policy file.
    #[must_use]
    pub fn policy(mut self, path: impl Into<PathBuf>) -> Options {
        self.policies.push(path.into());
        self
    }

    /// Verify the logs' signed records against this raw Ed25519 public key; `label` says
    /// where it came from (a file name).
    #[must_use]
    pub fn key(mut self, public: impl Into<Vec<u8>>, label: impl Into<String>) -> Options {
        self.key = Some((public.into(), label.into()));
        self
    }

    /// Other limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Options {
        self.limits = limits;
        self
    }
}

/// Strings shared by many rows, stored once; rows hold their index (0 is the empty string:
/// "none"). In the page, the most used strings come first, so their indexes are short.
#[derive(Debug, Default)]
pub struct Strings {
    list: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
}

impl Serialize for Strings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.list.iter().map(|x| &**x))
    }
}

impl Strings {
    /// The index of `s`.
    pub fn id(&mut self, s: &str) -> u32 {
        if self.list.is_empty() {
            let empty: Arc<str> = Arc::from("");
            self.list.push(empty.clone());
            self.index.insert(empty, 0);
        }
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        let shared: Arc<str> = Arc::from(s);
        self.list.push(shared.clone());
        self.index.insert(shared, i);
        i
    }

    /// The index of an optional string (0 when absent).
    pub fn opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(0, |s| self.id(s))
    }

    /// The string at `i` (empty when there is none).
    pub fn get(&self, i: u32) -> &str {
        self.list.get(i as usize).map_or("", |s| s)
    }

    /// How many strings (the empty one included, once any was added).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether none was added.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// A node of the service graph.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Node {
    /// The service name (or the caller's identity for a caller without a log).
    pub name: String,
    /// Its SPIFFE ID, as its callees' logs name it.
    pub id: Option<String>,
    /// `service` (it wrote a log), `caller` (only seen calling), `outside` (requests with no
    /// authenticated caller).
    pub kind: &'static str,
    /// Requests it handled: allowed, denied, failed.
    pub handled: Counts,
}

/// Allowed, denied and failed requests.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Allowed.
    pub allow: u64,
    /// Denied.
    pub deny: u64,
    /// Failed (the handler, not the policy).
    pub error: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, d: Decision) {
        match d {
            Decision::Allow => self.allow += 1,
            Decision::Deny => self.deny += 1,
            Decision::Error => self.error += 1,
        }
    }
}

/// Calls from one node to another, as the callee logged them.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Edge {
    /// The caller's node index.
    pub from: usize,
    /// The callee's node index.
    pub to: usize,
    /// What the callee decided.
    pub counts: Counts,
}

/// What a waterfall row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowKind {
    /// A request handled (its `in` event).
    Handled,
    /// A call with no record from the callee (its `out` event).
    Unanswered,
    /// A call whose caller's record is missing (its `out` event).
    Orphan,
}

/// One row of a transaction's waterfall; strings are [`Strings`] indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Row {
    /// Its depth in the tree.
    pub depth: u32,
    /// What it is.
    pub kind: RowKind,
    /// The decision.
    pub decision: Decision,
    /// When it started, microseconds after the transaction's start.
    pub start_us: u64,
    /// Its latency, microseconds.
    pub latency_us: u64,
    /// The status (0: none).
    pub status: u16,
    /// The service.
    pub service: u32,
    /// The verb (else the method).
    pub verb: u32,
    /// The object (else the path).
    pub object: u32,
    /// The deciding rule.
    pub rule: u32,
    /// The reason.
    pub reason: u32,
    /// The subject.
    pub sub: u32,
    /// The caller.
    pub caller: u32,
}

impl Row {
    /// The row's first number in the page: `depth * 16 + kind * 4 + decision`, with kind 0
    /// handled, 1 unanswered, 2 orphan and decision 0 allow, 1 deny, 2 error.
    pub fn code(&self) -> u64 {
        let kind = match self.kind {
            RowKind::Handled => 0,
            RowKind::Unanswered => 1,
            RowKind::Orphan => 2,
        };
        let decision = match self.decision {
            Decision::Allow => 0,
            Decision::Deny => 1,
            Decision::Error => 2,
        };
        u64::from(self.depth) * 16 + kind * 4 + decision
    }
}

/// One transaction: its id, its start and its waterfall. In the page it is one array:
/// `[id, start_us, rows_omitted, ...rows]`, each row eleven numbers: [`Row::code`],
/// `start_us, latency_us, status, service, verb, object, rule, reason, sub, caller`.
#[derive(Debug)]
#[non_exhaustive]
pub struct Txn {
    /// The transaction id.
    pub id: TxnId,
    /// When it started (its first event), microseconds after [`Model::time_base_us`] (0 when
    /// no time of it could be read).
    pub start_us: i64,
    /// The waterfall rows, in tree order (what `secmesh audit trace` prints).
    pub rows: Vec<Row>,
    /// Rows left out past [`Limits::max_hops`].
    pub rows_omitted: usize,
}

impl Txn {
    /// Requests handled in it (rows left out included).
    pub fn hops(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.kind == RowKind::Handled)
            .count()
            + self.rows_omitted
    }

    /// Whether any request shown was denied.
    pub fn denied(&self) -> bool {
        self.rows.iter().any(|r| r.decision == Decision::Deny)
    }

    /// From its start to the last end, microseconds.
    pub fn span_us(&self) -> u64 {
        self.rows
            .iter()
            .map(|r| r.start_us.saturating_add(r.latency_us))
            .max()
            .unwrap_or(0)
    }
}

impl Serialize for Txn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        let mut seq = s.serialize_seq(Some(3 + self.rows.len() * 11))?;
        seq.serialize_element(&self.id)?;
        seq.serialize_element(&self.start_us)?;
        seq.serialize_element(&self.rows_omitted)?;
        for r in &self.rows {
            for n in [r.code(), r.start_us, r.latency_us, u64::from(r.status)] {
                seq.serialize_element(&n)?;
            }
            for i in [
                r.service, r.verb, r.object, r.rule, r.reason, r.sub, r.caller,
            ] {
                seq.serialize_element(&i)?;
            }
        }
        seq.end()
    }
}

/// One denied request. In the page: `[at_us, service, sub, caller, verb, object, reason,
/// rule, txn]`, strings as [`Strings`] indexes, the txn as its id (or `null`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Denial {
    /// When, microseconds after [`Model::time_base_us`]; -1 when its time cannot be read.
    pub at_us: i64,
    /// The service that denied it.
    pub service: u32,
    /// The subject.
    pub sub: u32,
    /// The caller.
    pub caller: u32,
    /// The verb (else the method).
    pub verb: u32,
    /// The object (else the path).
    pub object: u32,
    /// The reason.
    pub reason: u32,
    /// The rule.
    pub rule: u32,
    /// The transaction.
    pub txn: Option<TxnId>,
}

impl Serialize for Denial {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        let mut seq = s.serialize_seq(Some(9))?;
        seq.serialize_element(&self.at_us)?;
        for i in [
            self.service,
            self.sub,
            self.caller,
            self.verb,
            self.object,
            self.reason,
            self.rule,
        ] {
            seq.serialize_element(&i)?;
        }
        seq.serialize_element(&self.txn)?;
        seq.end()
    }
}

/// One rule of a policy file, as the access matrix shows it.
#[derive(Debug, Serialize)]
pub struct RuleRow {
    /// Its id.
    pub id: String,
    /// `allow` or `deny`.
    pub effect: String,
    /// `enforce` or `shadow` (dry run).
    pub mode: String,
    /// The subjects it matches.
    pub subjects: Vec<String>,
    /// The callers it matches (`None`: any caller).
    pub callers: Option<Vec<String>>,
    /// The verbs.
    pub verbs: Vec<String>,
    /// The objects.
    pub objects: Vec<String>,
    /// The longest-lived token class it accepts.
    pub max_class: Option<String>,
    /// What lint says of it (shadowed, never decides, never matches, unclassified verb).
    pub findings: Vec<String>,
    /// Whether it can never decide (shadowed, covered, or never matching).
    pub dead: bool,
}

/// One policy file.
#[derive(Debug, Serialize)]
pub struct PolicyFile {
    /// The file as given.
    pub file: String,
    /// Its rules, in file order.
    pub rules: Vec<RuleRow>,
}

/// One service's log set, verified.
#[derive(Debug, Serialize)]
pub struct Integrity {
    /// The service its records name.
    pub service: Option<String>,
    /// Its files.
    pub files: Vec<String>,
    /// Whether the set verified.
    pub ok: bool,
    /// Events, signed records.
    pub events: u64,
    /// Signed records verified.
    pub checkpoints: u64,
    /// Whether it ends with a `close` record.
    pub closed: bool,
    /// Whether the records were checked against the trusted key given.
    pub key_checked: bool,
    /// The key: the trusted key given, or the one the records name.
    pub key: String,
    /// The first failure, in words.
    pub failure: Option<String>,
}

/// Everything the page shows.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct Model {
    /// The audit directory, as given.
    pub audit_dir: String,
    /// The trusted key's source, if one was given.
    pub key_source: Option<String>,
    /// Events read (every log), and lines that did not parse.
    pub events: u64,
    /// Lines that were not records.
    pub unreadable: u64,
    /// The time the others are relative to: microseconds since the epoch of the earliest
    /// transaction or denial shown.
    pub time_base_us: i64,
    /// Strings referenced by index from [`Txn`] rows and [`Denial`]s.
    pub strings: Strings,
    /// The service graph's nodes.
    pub nodes: Vec<Node>,
    /// Its edges.
    pub edges: Vec<Edge>,
    /// Transactions, the most recent first.
    pub txns: Vec<Txn>,
    /// Transactions seen in all.
    pub txns_total: usize,
    /// Whether events past [`Limits::max_trace_events`] were not kept for trees.
    pub trace_events_capped: bool,
    /// Denials, the most recent first.
    pub denials: Vec<Denial>,
    /// Denials seen in all.
    pub denials_total: u64,
    /// The policies.
    pub policies: Vec<PolicyFile>,
    /// Each service's log set, verified.
    pub integrity: Vec<Integrity>,
    /// When the report was made.
    pub generated: String,
    /// Files that could not be read to the end, in words.
    pub warnings: Vec<String>,
}

/// The log files of a directory: `*.jsonl` and rotated `*.jsonl.*`, not the files a crash
/// recovery set aside (`*.torn*`), sorted by name.
pub fn log_files(dir: &Path, max_files: usize) -> Result<Vec<PathBuf>, ReportError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ReportError::AuditDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ReportError::AuditDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_log = name.ends_with(".jsonl") || name.contains(".jsonl.");
        if !is_log || name.contains(".torn") {
            continue;
        }
        // Regular files only (not following a link to a device); the reader checks again.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if files.len() == max_files {
            return Err(ReportError::TooManyFiles {
                dir: dir.to_path_buf(),
                max: max_files,
            });
        }
        files.push(entry.path());
    }
    files.sort();
    Ok(files)
}

/// Build the model.
pub fn build(opts: &Options) -> Result<Model, ReportError> {
    let files = log_files(&opts.audit_dir, opts.limits.max_files)?;
    if files.is_empty() {
        return Err(ReportError::NoLogs(opts.audit_dir.clone()));
    }
    let policies = opts
        .policies
        .iter()
        .map(|p| policy_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    // One read of each file: the strict verification shows the aggregate every record it
    // reads. A set that fails stops there; the rest of its files is read on (past the last
    // line shown), so that a tampered log's events are still counted and drawn.
    let mut agg = Aggregate::new(&opts.limits);
    let mut shown: Vec<(PathBuf, u64)> = Vec::new();
    let verifier = Verifier::new(opts.key.as_ref().map(|(k, _)| k.as_slice()));
    let outcomes = verifier.verify_services_visiting(&files, &mut |path, line, record| {
        if let Record::Event(ev) = record {
            agg.add(EventLine::from(&**ev));
        }
        match shown.last_mut() {
            Some((p, last)) if p.as_os_str() == path.as_os_str() => *last = line,
            _ => shown.push((path.to_path_buf(), line)),
        }
    });
    let verified: HashSet<&PathBuf> = outcomes
        .iter()
        .filter(|o| o.result.is_ok())
        .flat_map(|o| &o.files)
        .collect();
    let shown: HashMap<PathBuf, u64> = shown.into_iter().collect();
    // File by file: a file that cannot be read (a line over the limit, an I/O error) is
    // named in the page and the others are still shown; its events up to there count.
    let mut unreadable = 0;
    let mut warnings = Vec::new();
    for f in files.iter().filter(|f| !verified.contains(f)) {
        let skip = shown.get(f).copied().unwrap_or(0);
        match for_each_event_line(f, skip, |ev| agg.add(ev)) {
            Ok(bad) => unreadable += bad,
            Err(e) => warnings.push(format!("not read to the end: {e}")),
        }
    }
    let integrity = integrity(outcomes, opts.key.as_ref());
    let mut model = agg.finish(&opts.limits);
    model.unreadable = unreadable;
    model.warnings = warnings;
    model.audit_dir = opts.audit_dir.display().to_string();
    model.key_source = opts.key.as_ref().map(|(_, l)| l.clone());
    model.policies = policies;
    model.integrity = integrity;
    Ok(model)
}

/// Each pattern as its text.
fn strs<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn policy_file(path: &Path) -> Result<PolicyFile, ReportError> {
    let text = secmesh_fs::read_to_string(path, secmesh_fs::DOCUMENT)?;
    let format = path
        .extension()
        .and_then(|e| e.to_str())
        .and_then(Format::from_extension)
        .unwrap_or(Format::Toml);
    let policy = Policy::parse(&text, format).map_err(|e| ReportError::Policy {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut findings: BTreeMap<usize, Vec<(String, bool)>> = BTreeMap::new();
    for f in policy.lint() {
        findings
            .entry(f.index())
            .or_default()
            .push((f.to_string(), !f.kind().is_advisory()));
    }
    let rules = policy
        .rules()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let found = findings.remove(&i).unwrap_or_default();
            RuleRow {
                id: r.id().to_owned(),
                effect: r.effect().to_string(),
                mode: r.mode().to_string(),
                subjects: strs(r.subjects()),
                callers: r.callers().map(strs),
                verbs: strs(r.verbs()),
                objects: strs(r.objects()),
                max_class: r.max_class().map(|c| c.to_string()),
                dead: found.iter().any(|(_, dead)| *dead),
                findings: found.into_iter().map(|(s, _)| s).collect(),
            }
        })
        .collect();
    Ok(PolicyFile {
        file: path.display().to_string(),
        rules,
    })
}

/// Each service's set verified as `secmesh audit verify` does (strict: a log that is still
/// open fails with `unsigned_tail` or `truncated`).
fn integrity(outcomes: Vec<ServiceOutcome>, key: Option<&(Vec<u8>, String)>) -> Vec<Integrity> {
    outcomes
        .into_iter()
        .map(|o| {
            let shown_files = o.files.iter().map(|f| f.display().to_string()).collect();
            let key_named = match key {
                Some((k, _)) => b64(k),
                None => o
                    .files
                    .first()
                    .and_then(|f| named_key(f))
                    .unwrap_or_default(),
            };
            match o.result {
                Ok(r) => Integrity {
                    service: o.service,
                    files: shown_files,
                    ok: true,
                    events: r.events,
                    checkpoints: r.checkpoints,
                    closed: r.closed,
                    key_checked: r.key_checked,
                    key: key_named,
                    failure: None,
                },
                Err(f) => Integrity {
                    service: o.service,
                    files: shown_files,
                    ok: false,
                    events: 0,
                    checkpoints: 0,
                    closed: false,
                    key_checked: key.is_some(),
                    key: key_named,
                    failure: Some(f.to_string()),
                },
            }
        })
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The key the first signed record of a file names (its first line).
fn named_key(file: &Path) -> Option<String> {
    let mut r = LineReader::open(file).ok()?;
    match r.next_line().ok()? {
        Next::Line { .. } => match parse_line(r.line()) {
            Ok((Record::Checkpoint(c), _)) => Some(c.key),
            _ => None,
        },
        Next::TooLong | Next::Eof => None,
    }
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`; `None` for anything else.
pub fn parse_time_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut micros = 0i64;
    if b.get(19) == Some(&b'.') {
        let frac = s.get(20..s.len().checked_sub(1)?)?;
        if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits: String = frac.chars().chain("000000".chars()).take(6).collect();
        micros = digits.parse().ok()?;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros)
}

/// The model as JSON that can sit inside `<script type="application/json">`: `<`, `>` and `&`
/// are written as `\u003c`, `\u003e`, `\u0026` (they only occur inside JSON strings, where
/// the escape means the same character), so nothing in the logs can close the script element
/// or open a comment; U+2028 and U+2029 are escaped too.
pub fn to_script_json(model: &Model) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string(model)?;
    let mut out = String::with_capacity(json.len() + json.len() / 64);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_parse_to_microseconds_and_bad_ones_do_not() {
        let a = parse_time_us("2026-12-03T16:07:55.367077Z").unwrap();
        let b = parse_time_us("2026-12-03T16:07:55.362254Z").unwrap();
        assert_eq!(a - b, 4823);
        assert_eq!(parse_time_us("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(
            parse_time_us("2000-03-01T00:00:00.5Z").unwrap()
                - parse_time_us("2000-02-28T00:00:00Z").unwrap(),
            2 * 86_400_000_000 + 500_000
        );
        for bad in [
            "",
            "2026-12-03",
            "2026-12-03T16:07:5x.1Z",
            "2026-12-03T16:07:55.Z",
            "é",
        ] {
            assert_eq!(parse_time_us(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_script_json_cannot_close_its_element() {
        let mut strings = Strings::default();
        let hostile = "</script><script>alert(1)</script><!-- & \u{2028}";
        let i = strings.id(hostile);
        assert_eq!(strings.id(hostile), i, "stored once");
        assert_eq!(
            (strings.get(0), strings.get(i), strings.get(99)),
            ("", hostile, "")
        );
        let model = Model {
            audit_dir: hostile.to_owned(),
            key_source: None,
            events: 0,
            unreadable: 0,
            time_base_us: 0,
            strings,
            nodes: Vec::new(),
            edges: Vec::new(),
            txns: Vec::new(),
            txns_total: 0,
            trace_events_capped: false,
            denials: Vec::new(),
            denials_total: 0,
            policies: Vec::new(),
            integrity: Vec::new(),
            generated: String::new(),
            warnings: vec![hostile.to_owned()],
        };
        let json = to_script_json(&model).unwrap();
        assert!(!json.contains(['<', '>', '&', '\u{2028}']), "{json}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["strings"][i as usize], hostile);
        assert_eq!(back["audit_dir"], hostile);
        let page = super::super::html::render(&model).unwrap();
        assert_eq!(page.matches("<script").count(), 2);
        assert!(
            page.contains("&lt;/script&gt;&lt;script&gt;alert(1)"),
            "the title is escaped"
        );
    }
}
