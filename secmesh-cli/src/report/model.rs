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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use secmesh_audit::event::{AuditEvent, Decision, Direction};
use secmesh_audit::reader::{LineReader, Next, for_each_event};
use secmesh_audit::trace::{self, Call, Hop};
use secmesh_audit::verify::{Record, Verifier, parse_line};
use secmesh_core::policy::{Format, Policy};
use secmesh_core::{SpanId, TxnId};
use serde::Serialize;

use super::ReportError;

/// The service name of the audit queue's own events (drop and loss reports): not a node.
const QUEUE_SERVICE: &str = "secmesh-audit";

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

/// Strings shared by many rows, stored once; rows hold their index.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Strings {
    list: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl Strings {
    /// The index of `s` (0 is the empty string: "none").
    pub fn id(&mut self, s: &str) -> u32 {
        if self.list.is_empty() {
            self.list.push(String::new());
            self.index.insert(String::new(), 0);
        }
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }

    /// The index of an optional string (0 when absent).
    pub fn opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(0, |s| self.id(s))
    }

    /// The string at `i`.
    pub fn get(&self, i: u32) -> &str {
        self.list.get(i as usize).map_or("", String::as_str)
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
    fn add(&mut self, d: Decision) {
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

/// One transaction: its summary and its waterfall.
#[derive(Debug, Serialize)]
pub struct Txn {
    /// The transaction id.
    pub id: String,
    /// When it started (the first event's time).
    pub time: String,
    /// The first request: `service verb object` (string index).
    pub root: u32,
    /// Requests handled in it.
    pub hops: usize,
    /// Whether any request in it was denied.
    pub denied: bool,
    /// From the first start to the last end, microseconds.
    pub span_us: u64,
    /// The waterfall rows, in tree order: `[depth, start_us, latency_us, decision, status,
    /// service, verb, object, rule, reason, sub, caller, flag]` with the strings as indexes
    /// and `flag` 0 for a request handled, 1 for a call with no record from the callee, 2 for
    /// a call whose caller's record is missing.
    pub rows: Vec<[u64; 13]>,
    /// Rows left out past [`Limits::max_hops`].
    pub rows_omitted: usize,
}

/// One denied request: `[time, service, sub, caller, verb, object, reason, rule, txn]` as
/// string indexes.
pub type Denial = [u32; 9];

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
    let integrity = integrity(&files, opts.key.as_ref());

    let mut agg = Aggregate::new(&opts.limits);
    // File by file: a file that cannot be read (a line over the limit, an I/O error) is
    // named in the page and the others are still shown; its events up to there count.
    let mut unreadable = 0;
    let mut warnings = Vec::new();
    for f in &files {
        match for_each_event(std::slice::from_ref(f), |ev| agg.add(ev)) {
            Ok(bad) => unreadable += bad,
            Err(e) => warnings.push(format!("not read to the end: {e}")),
        }
    }
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
fn integrity(files: &[PathBuf], key: Option<&(Vec<u8>, String)>) -> Vec<Integrity> {
    let verifier = Verifier::new(key.map(|(k, _)| k.as_slice()));
    verifier
        .verify_services(files)
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

/// Node key while aggregating: a service by name, a caller by identity, or the outside.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Who {
    Service(String),
    Caller(String),
    Outside,
}

struct Aggregate {
    strings: Strings,
    events: u64,
    /// Requests handled, per service.
    handled: BTreeMap<String, Counts>,
    /// (caller as logged, callee service) -> counts.
    calls: HashMap<(Option<String>, String), Counts>,
    /// out span -> the service that made the call.
    out_spans: HashMap<SpanId, String>,
    /// caller identity -> a few parent spans of its calls (to learn which service it is).
    caller_spans: HashMap<String, Vec<SpanId>>,
    by_txn: HashMap<TxnId, Vec<AuditEvent>>,
    kept: usize,
    capped: bool,
    denials: Vec<(i64, Denial)>,
    denials_total: u64,
    max_denials: usize,
    max_trace_events: usize,
}

impl Aggregate {
    fn new(limits: &Limits) -> Aggregate {
        Aggregate {
            strings: Strings::default(),
            events: 0,
            handled: BTreeMap::new(),
            calls: HashMap::new(),
            out_spans: HashMap::new(),
            caller_spans: HashMap::new(),
            by_txn: HashMap::new(),
            kept: 0,
            capped: false,
            denials: Vec::new(),
            denials_total: 0,
            max_denials: limits.max_denials,
            max_trace_events: limits.max_trace_events,
        }
    }

    fn add(&mut self, ev: AuditEvent) {
        self.events += 1;
        if ev.service == QUEUE_SERVICE {
            return;
        }
        match ev.dir {
            Direction::Out => {
                if let Some(s) = ev.span_id {
                    self.out_spans.insert(s, ev.service.clone());
                }
            }
            Direction::In => {
                self.handled
                    .entry(ev.service.clone())
                    .or_default()
                    .add(ev.decision);
                if let (Some(c), Some(p)) = (&ev.caller, ev.parent_span_id) {
                    let spans = self.caller_spans.entry(c.clone()).or_default();
                    if spans.len() < 16 {
                        spans.push(p);
                    }
                }
                self.calls
                    .entry((ev.caller.clone(), ev.service.clone()))
                    .or_default()
                    .add(ev.decision);
                if ev.decision == Decision::Deny {
                    self.denial(&ev);
                }
            }
        }
        if let Some(t) = ev.txn {
            if self.kept < self.max_trace_events {
                self.kept += 1;
                self.by_txn.entry(t).or_default().push(ev);
            } else {
                self.capped = true;
            }
        }
    }

    fn denial(&mut self, ev: &AuditEvent) {
        self.denials_total += 1;
        let at = parse_time_us(&ev.time).unwrap_or(i64::MIN);
        // Keep the most recent: when full, drop the older half at once (amortized).
        if self.denials.len() >= self.max_denials.saturating_mul(2).max(1) {
            self.trim_denials();
        }
        let s = &mut self.strings;
        let row = [
            s.id(&ev.time),
            s.id(&ev.service),
            s.opt(ev.sub.as_deref()),
            s.opt(ev.caller.as_deref()),
            s.opt(ev.verb.as_deref().or(ev.method.as_deref())),
            s.opt(ev.object.as_deref().or(ev.path.as_deref())),
            s.opt(ev.reason.as_deref()),
            s.opt(ev.rule.as_deref()),
            s.opt(ev.txn.map(|t| t.to_string()).as_deref()),
        ];
        self.denials.push((at, row));
    }

    fn trim_denials(&mut self) {
        self.denials.sort_by_key(|d| std::cmp::Reverse(d.0));
        self.denials.truncate(self.max_denials);
    }

    fn finish(mut self, limits: &Limits) -> Model {
        // Which service each caller identity is: the service whose out event's span is the
        // parent of the caller's calls.
        let mut id_of: BTreeMap<String, String> = BTreeMap::new();
        let mut service_of: HashMap<String, String> = HashMap::new();
        for (caller, spans) in &self.caller_spans {
            if let Some(svc) = spans.iter().find_map(|s| self.out_spans.get(s)) {
                id_of.entry(svc.clone()).or_insert_with(|| caller.clone());
                service_of.insert(caller.clone(), svc.clone());
            }
        }
        // Nodes: every service that logged, then callers without a log, then the outside.
        let mut nodes: Vec<Node> = Vec::new();
        let mut index: HashMap<Who, usize> = HashMap::new();
        for (name, counts) in &self.handled {
            index.insert(Who::Service(name.clone()), nodes.len());
            nodes.push(Node {
                name: name.clone(),
                id: id_of.get(name).cloned(),
                kind: "service",
                handled: *counts,
            });
        }
        let mut edges: BTreeMap<(usize, usize), Counts> = BTreeMap::new();
        let mut calls: Vec<_> = std::mem::take(&mut self.calls).into_iter().collect();
        calls.sort_by(|a, b| a.0.cmp(&b.0));
        let mut callers = 0usize;
        for ((caller, callee), counts) in calls {
            let from_key = match &caller {
                None => Who::Outside,
                Some(c) => match service_of.get(c) {
                    Some(svc) if index.contains_key(&Who::Service(svc.clone())) => {
                        Who::Service(svc.clone())
                    }
                    _ if index.contains_key(&Who::Caller(c.clone())) => Who::Caller(c.clone()),
                    _ if callers < limits.max_callers => {
                        callers += 1;
                        Who::Caller(c.clone())
                    }
                    _ => Who::Caller("(other callers)".to_owned()),
                },
            };
            let from = *index.entry(from_key.clone()).or_insert_with(|| {
                nodes.push(match &from_key {
                    Who::Outside => Node {
                        name: "(outside)".to_owned(),
                        id: None,
                        kind: "outside",
                        handled: Counts::default(),
                    },
                    Who::Caller(c) | Who::Service(c) => Node {
                        name: c.clone(),
                        id: c.starts_with("spiffe://").then(|| c.clone()),
                        kind: "caller",
                        handled: Counts::default(),
                    },
                });
                nodes.len() - 1
            });
            let Some(&to) = index.get(&Who::Service(callee)) else {
                continue;
            };
            let e = edges.entry((from, to)).or_default();
            e.allow += counts.allow;
            e.deny += counts.deny;
            e.error += counts.error;
        }
        let edges = edges
            .into_iter()
            .map(|((from, to), counts)| Edge { from, to, counts })
            .collect();

        // Transactions, the most recent first.
        let txns_total = self.by_txn.len();
        let mut order: Vec<(i64, TxnId)> = self
            .by_txn
            .iter()
            .map(|(t, evs)| {
                let first = evs
                    .iter()
                    .filter_map(|e| parse_time_us(&e.time))
                    .min()
                    .unwrap_or(i64::MIN);
                (first, *t)
            })
            .collect();
        order.sort_by(|a, b| b.cmp(a));
        order.truncate(limits.max_txns);
        let mut txns = Vec::with_capacity(order.len());
        for (_, t) in order {
            let Some(evs) = self.by_txn.remove(&t) else {
                continue;
            };
            txns.push(txn_view(
                t,
                trace::build(t, evs),
                &mut self.strings,
                limits.max_hops,
            ));
        }

        self.trim_denials();
        let denials = self.denials.into_iter().map(|(_, d)| d).collect();
        Model {
            audit_dir: String::new(),
            key_source: None,
            events: self.events,
            unreadable: 0,
            strings: self.strings,
            nodes,
            edges,
            txns,
            txns_total,
            trace_events_capped: self.capped,
            denials,
            denials_total: self.denials_total,
            policies: Vec::new(),
            integrity: Vec::new(),
            generated: secmesh_audit::event::now_rfc3339(),
            warnings: Vec::new(),
        }
    }
}

fn decision_code(d: Decision) -> u64 {
    match d {
        Decision::Allow => 0,
        Decision::Deny => 1,
        Decision::Error => 2,
    }
}

/// A transaction's tree as waterfall rows (depth first, as `audit trace` prints it).
fn txn_view(txn: TxnId, tree: trace::TraceTree, s: &mut Strings, max_hops: usize) -> Txn {
    struct Rows<'a> {
        s: &'a mut Strings,
        rows: Vec<(u64, i64, &'a AuditEvent, u64)>,
        omitted: usize,
        max: usize,
    }
    impl<'a> Rows<'a> {
        fn push(&mut self, depth: u64, ev: &'a AuditEvent, flag: u64) {
            if self.rows.len() >= self.max {
                self.omitted += 1;
                return;
            }
            let t = parse_time_us(&ev.time).unwrap_or(0);
            self.rows.push((depth, t, ev, flag));
        }
        fn hop(&mut self, h: &'a Hop, depth: u64) {
            self.push(depth, &h.inbound, 0);
            for c in &h.calls {
                self.call(c, depth + 1);
            }
        }
        fn call(&mut self, c: &'a Call, depth: u64) {
            match &c.callee {
                Some(h) => self.hop(h, depth),
                None => self.push(depth, &c.outbound, 1),
            }
        }
    }
    let mut r = Rows {
        s,
        rows: Vec::new(),
        omitted: 0,
        max: max_hops,
    };
    for h in &tree.roots {
        r.hop(h, 0);
    }
    for c in &tree.orphan_calls {
        r.push(0, &c.outbound, 2);
    }
    let start = r.rows.iter().map(|x| x.1).min().unwrap_or(0);
    let end = r
        .rows
        .iter()
        .map(|x| x.1 + i64::try_from(x.2.latency_us.unwrap_or(0)).unwrap_or(0))
        .max()
        .unwrap_or(start);
    let denied = r.rows.iter().any(|x| x.2.decision == Decision::Deny);
    let hops = r.rows.iter().filter(|x| x.3 == 0).count() + r.omitted;
    let time = r
        .rows
        .iter()
        .min_by_key(|x| x.1)
        .map(|x| x.2.time.clone())
        .unwrap_or_default();
    let root = r.rows.first().map(|x| {
        let ev = x.2;
        format!(
            "{} {} {}",
            ev.service,
            ev.verb.as_deref().or(ev.method.as_deref()).unwrap_or("-"),
            ev.object.as_deref().or(ev.path.as_deref()).unwrap_or("-")
        )
    });
    let Rows {
        s, rows, omitted, ..
    } = r;
    let root = s.opt(root.as_deref());
    let rows = rows
        .into_iter()
        .map(|(depth, t, ev, flag)| {
            [
                depth,
                u64::try_from(t - start).unwrap_or(0),
                ev.latency_us.unwrap_or(0),
                decision_code(ev.decision),
                u64::from(ev.status.unwrap_or(0)),
                u64::from(s.id(&ev.service)),
                u64::from(s.opt(ev.verb.as_deref().or(ev.method.as_deref()))),
                u64::from(s.opt(ev.object.as_deref().or(ev.path.as_deref()))),
                u64::from(s.opt(ev.rule.as_deref())),
                u64::from(s.opt(ev.reason.as_deref())),
                u64::from(s.opt(ev.sub.as_deref())),
                u64::from(s.opt(ev.caller.as_deref())),
                flag,
            ]
        })
        .collect();
    Txn {
        id: txn.to_string(),
        time,
        root,
        hops,
        denied,
        span_us: u64::try_from(end - start).unwrap_or(0),
        rows,
        rows_omitted: omitted,
    }
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
