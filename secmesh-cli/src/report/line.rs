//! The report's reader for the lines the strict verification did not show it (the rest of a
//! log set after its first failure): each event is parsed into a borrowed view
//! ([`EventLine`]), whose strings point into the line (no allocation unless a string holds an
//! escape), instead of an owned [`AuditEvent`] built for the occasion. The events the
//! verification reads reach the report as the same view ([`EventLine::from`] an
//! [`AuditEvent`]), so each file is read once when its set verifies.
//!
//! The parse is as strict as the audit crate's [`parse_line`]: the line must be one JSON
//! object without duplicate keys ([`secmesh_core::json::check_object`]), with the event's
//! fields in their types and a `prev`. Whatever the view does not take (a signed record, a line
//! the view refuses) goes to [`parse_line`] itself, so a line counts as an event, a signed
//! record or an unreadable line exactly as `secmesh audit` reads it.
//!
//! # Example
//! ```
//! use secmesh_audit::event::{AuditEvent, Direction};
//! use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink, Sink};
//! use secmesh_cli::report::line::for_each_event_line;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("orders.jsonl");
//! let mut sink = JsonLinesSink::open(&path, JsonLinesConfig::default())?;
//! let mut ev = AuditEvent::now("orders", Direction::In);
//! ev.object = Some("orders/\"42\"".into());
//! sink.write_batch(&mut [ev])?;
//! drop(sink);
//! std::fs::write(&path, [std::fs::read(&path)?, b"not json\n".to_vec()].concat())?;
//!
//! let mut objects = Vec::new();
//! let bad = for_each_event_line(&path, 0, |ev| objects.push(ev.object.unwrap().into_owned()))?;
//! assert_eq!((objects, bad), (vec!["orders/\"42\"".to_owned()], 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::path::Path;

use secmesh_audit::event::{AuditEvent, Decision, Direction, Shadow};
use secmesh_audit::reader::{LineReader, Next, ReadError};
use secmesh_audit::verify::{Record, parse_line};
use secmesh_core::{ExpiryClass, SpanId, TraceId, TxnId};
use serde::{Deserialize, Deserializer};

/// Whether a key is present at all (whatever its value, `null` included).
#[derive(Debug, Default, Clone, Copy)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Present, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Present(true))
    }
}

/// An event as the report reads it: the fields it shows, borrowed from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventLine<'a> {
    /// When (RFC 3339).
    pub time: Cow<'a, str>,
    /// The service that wrote it.
    pub service: Cow<'a, str>,
    /// In or out.
    pub dir: Direction,
    /// The transaction.
    pub txn: Option<TxnId>,
    /// Its span.
    pub span_id: Option<SpanId>,
    /// The parent span.
    pub parent_span_id: Option<SpanId>,
    /// The subject.
    pub sub: Option<Cow<'a, str>>,
    /// The caller.
    pub caller: Option<Cow<'a, str>>,
    /// The verb, else the method.
    pub verb: Option<Cow<'a, str>>,
    /// The object, else the path.
    pub object: Option<Cow<'a, str>>,
    /// The decision.
    pub decision: Decision,
    /// The deciding rule.
    pub rule: Option<Cow<'a, str>>,
    /// Why.
    pub reason: Option<Cow<'a, str>>,
    /// The status.
    pub status: Option<u16>,
    /// The latency, microseconds.
    pub latency_us: Option<u64>,
}

/// Every field of an event line, typed as [`AuditEvent`] types them (so that a line the audit
/// crate refuses is refused here too), strings borrowed.
#[derive(Deserialize)]
#[allow(dead_code)] // some fields are read only to check their type
struct Raw<'a> {
    #[serde(default)]
    kind: Present,
    v: u32,
    #[serde(default)]
    seq: u64,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    service: Cow<'a, str>,
    dir: Direction,
    #[serde(default)]
    txn: Option<TxnId>,
    #[serde(default)]
    trace_id: Option<TraceId>,
    #[serde(default)]
    span_id: Option<SpanId>,
    #[serde(default)]
    parent_span_id: Option<SpanId>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    sub: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    caller: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    verb: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    object: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    method: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    path: Option<Cow<'a, str>>,
    decision: Decision,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    rule: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    reason: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    reason_kind: Option<Cow<'a, str>>,
    #[serde(default)]
    shadow: Option<Shadow>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    latency_us: Option<u64>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    jti: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    token_sha256: Option<Cow<'a, str>>,
    #[serde(default)]
    cls: Option<ExpiryClass>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    peer: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    target: Option<Cow<'a, str>>,
    #[serde(borrow)]
    prev: Cow<'a, str>,
}

/// An optional string, borrowed from the line when it holds no escape (serde borrows a bare
/// `Cow` field, not one inside an `Option`).
fn opt_cow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'de>>::deserialize(d)?.map(|b| b.0))
}

impl<'a> From<Raw<'a>> for EventLine<'a> {
    fn from(r: Raw<'a>) -> EventLine<'a> {
        EventLine {
            time: r.time,
            service: r.service,
            dir: r.dir,
            txn: r.txn,
            span_id: r.span_id,
            parent_span_id: r.parent_span_id,
            sub: r.sub,
            caller: r.caller,
            verb: r.verb.or(r.method),
            object: r.object.or(r.path),
            decision: r.decision,
            rule: r.rule,
            reason: r.reason,
            status: r.status,
            latency_us: r.latency_us,
        }
    }
}

impl<'a> From<&'a AuditEvent> for EventLine<'a> {
    fn from(e: &'a AuditEvent) -> EventLine<'a> {
        let b = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        EventLine {
            time: Cow::Borrowed(&e.time),
            service: Cow::Borrowed(&e.service),
            dir: e.dir,
            txn: e.txn,
            span_id: e.span_id,
            parent_span_id: e.parent_span_id,
            sub: b(&e.sub),
            caller: b(&e.caller),
            verb: b(&e.verb).or(b(&e.method)),
            object: b(&e.object).or(b(&e.path)),
            decision: e.decision,
            rule: b(&e.rule),
            reason: b(&e.reason),
            status: e.status,
            latency_us: e.latency_us,
        }
    }
}

/// What one line holds.
#[allow(clippy::large_enum_variant)] // matched at once, per line: boxing would allocate
enum Parsed<'a> {
    Event(EventLine<'a>),
    Other,
    Unreadable,
}

fn parse(line: &[u8]) -> Parsed<'_> {
    let strict = secmesh_core::json::check_object(line, secmesh_core::json::DEFAULT_MAX_DEPTH);
    if strict.is_ok()
        && let Ok(raw) = serde_json::from_slice::<Raw<'_>>(line)
        && !raw.kind.0
    {
        return Parsed::Event(raw.into());
    }
    // A signed record, or a line the view refuses: as the audit crate reads it.
    match parse_line(line) {
        Ok((Record::Event(_), _)) => Parsed::Other, // cannot happen: the view is as lenient
        Ok((Record::Checkpoint(_), _)) => Parsed::Other,
        Err(_) => Parsed::Unreadable,
    }
}

/// Call `f` with every event of the log file `path` after its first `skip` lines, in order,
/// each borrowed from its line. Lines that are not records are skipped and their number
/// returned; signed records are skipped. Memory stays bounded by one line.
pub fn for_each_event_line(
    path: &Path,
    skip: u64,
    mut f: impl FnMut(EventLine<'_>),
) -> Result<u64, ReadError> {
    let mut r = LineReader::open(path)?;
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bad = 0;
    loop {
        match r.next_line().map_err(io_err)? {
            Next::Eof => return Ok(bad),
            Next::TooLong => {
                return Err(ReadError::LineTooLong {
                    path: path.to_path_buf(),
                    line: r.lineno(),
                });
            }
            Next::Line { .. } if r.lineno() <= skip => {}
            Next::Line { .. } => match parse(r.line()) {
                Parsed::Event(ev) => f(ev),
                Parsed::Other => {}
                Parsed::Unreadable => bad += 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kind(line: &str) -> &'static str {
        match parse(line.as_bytes()) {
            Parsed::Event(_) => "event",
            Parsed::Other => "other",
            Parsed::Unreadable => "unreadable",
        }
    }

    /// The view counts lines as the audit crate's strict parser does.
    #[test]
    fn lines_are_classified_as_the_audit_crate_classifies_them() {
        let ev = AuditEvent::now("orders", Direction::In);
        let json = serde_json::to_string(&ev).unwrap();
        let with_prev = format!("{},\"prev\":\"00\"}}", &json[..json.len() - 1]);
        let cases = [
            with_prev.clone(),
            json.clone(),                                       // no prev
            with_prev.replace("\"prev\":\"00\"", "\"prev\":1"), // prev not a string
            with_prev.replace("\"v\":1", "\"v\":1,\"v\":1"),    // duplicate key
            with_prev.replace("\"dir\":\"in\"", "\"dir\":\"sideways\""),
            with_prev.replace("\"v\":1", "\"v\":1,\"status\":\"x\""),
            with_prev.replace("\"v\":1", "\"v\":1,\"kind\":null"),
            with_prev.replace("\"v\":1", "\"v\":1,\"unknown\":[1,{}]"),
            with_prev.replace("\"v\":1", "\"v\":1,\"cls\":\"forever\""),
            "[]".to_owned(),
            "{\"kind\":\"open\"}".to_owned(),
            "not json".to_owned(),
        ];
        for line in &cases {
            let expected = match parse_line(line.as_bytes()) {
                Ok((Record::Event(_), _)) => "event",
                Ok((Record::Checkpoint(_), _)) => "other",
                Err(_) => "unreadable",
            };
            assert_eq!(kind(line), expected, "{line}");
        }
        assert_eq!(kind(&cases[0]), "event");
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let mut ev = AuditEvent::now("orders", Direction::In);
        ev.sub = Some("user:1".into());
        ev.object = Some("a\"b".into());
        let json = serde_json::to_string(&ev).unwrap();
        let line = format!("{},\"prev\":\"00\"}}", &json[..json.len() - 1]);
        let Parsed::Event(view) = parse(line.as_bytes()) else {
            panic!("an event")
        };
        assert!(matches!(view.sub, Some(Cow::Borrowed("user:1"))));
        assert_eq!(view.object.as_deref(), Some("a\"b"));
        assert_eq!(view, EventLine::from(&ev));
    }
}
