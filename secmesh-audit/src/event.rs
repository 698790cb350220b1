//! The audit event: one boundary crossing, with stable field names.
//!
//! Field names are part of the log format (schema version `v` = 1): `seq`, `time` (RFC 3339,
//! UTC, microseconds), `service`, `dir` (`in` | `out`), `txn`, `trace_id`, `span_id`,
//! `parent_span_id`, `sub`, `caller`, `verb`, `object`, `method`, `path`, `decision` (`allow` |
//! `deny` | `error`), `rule`, `reason`, `reason_kind`, `shadow` (`{decision, rule}`), `status`,
//! `latency_us`, `jti`, `token_sha256`, `cls`, `peer`, `target`. Absent values are left out.
//! An event never holds a token, a secret or a body: only the token's `jti` and SHA-256.
//!
//! One vocabulary: `verb` and `object` are always in policy terms (`read`, `orders/7`), set once
//! the request is classified; the HTTP `method` and `path` (or the gRPC method path) are fields
//! of their own. A denial carries `reason_kind`, a stable word (`missing_token`,
//! `invalid_token`, `policy_deny`, `no_rule`, `missing_grant`, `class_not_allowed`, ...), next
//! to `reason` in words and the deciding `rule`. Logs written before these fields existed read
//! as before (the fields are absent), and their chains verify unchanged: a record is hashed as
//! the bytes of its line.
//!
//! # Example
//! ```
//! use secmesh_audit::event::{AuditEvent, Decision, Direction};
//!
//! let mut ev = AuditEvent::now("orders", Direction::In);
//! ev.verb = Some("read".into());
//! ev.object = Some("orders/7".into());
//! ev.decision = Decision::Allow;
//! ev.status = Some(200);
//! let json = serde_json::to_string(&ev).unwrap();
//! assert!(json.contains(r#""dir":"in""#) && json.contains(r#""decision":"allow""#));
//! assert!(!json.contains("jti"), "absent fields are left out");
//! ```

pub(crate) mod json;

use std::time::{SystemTime, UNIX_EPOCH};

use secmesh_core::{ExpiryClass, SpanId, TraceId, TxnId};
use serde::{Deserialize, Serialize};

/// The schema version written in every record.
pub const SCHEMA_VERSION: u32 = 1;

/// Which way the request crossed the boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A request arrived and was decided.
    #[default]
    In,
    /// This service called another.
    Out,
}

/// The outcome recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Allowed (and answered).
    #[default]
    Allow,
    /// Refused by authentication or authorization.
    Deny,
    /// Neither: the handler failed, panicked, or the client went away.
    Error,
}

/// What shadow (dry-run) rules would have decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shadow {
    /// The shadow decision.
    pub decision: Decision,
    /// The deciding shadow rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// One boundary crossing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// Schema version.
    pub v: u32,
    /// Sequence number in the service's log, assigned by the writer.
    #[serde(default)]
    pub seq: u64,
    /// When, RFC 3339 UTC with microseconds.
    pub time: String,
    /// The service writing the event.
    pub service: String,
    /// In or out.
    pub dir: Direction,
    /// Transaction id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<TxnId>,
    /// W3C trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<TraceId>,
    /// This crossing's span id (for `out`: the span the callee sees as its parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<SpanId>,
    /// The parent span (for `in`: the caller's span).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    /// The token subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The calling workload (mTLS peer, else the token's current actor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The verb.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// The object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The HTTP method as received (`GET`; gRPC calls are `POST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The request path as received (for gRPC: `/package.Service/Method`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The decision.
    pub decision: Decision,
    /// The deciding rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why, as a stable word for a denial (e.g. `missing_grant`, `class_not_allowed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_kind: Option<String>,
    /// The shadow outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    /// HTTP status (or the gRPC status mapped to HTTP by the transport).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Latency in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// The token's `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Hex SHA-256 of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// The token's expiry class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cls: Option<ExpiryClass>,
    /// The peer's network address (`ip:port`) when the server knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// For `out`: the callee's authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl AuditEvent {
    /// Append `{"v":..,"seq":..`, the beginning of the event's JSON object.
    pub(crate) fn json_head(&self, out: &mut Vec<u8>) {
        json::write_head(self, out);
    }

    /// Append the event's JSON from `,"time":` on, without the closing brace (see
    /// `json::write_tail`).
    pub(crate) fn json_tail(&self, out: &mut Vec<u8>) {
        json::write_tail(self, out);
    }

    /// An event of `service` in direction `dir`, stamped now.
    pub fn now(service: impl Into<String>, dir: Direction) -> AuditEvent {
        AuditEvent {
            v: SCHEMA_VERSION,
            time: now_rfc3339(),
            service: service.into(),
            dir,
            ..AuditEvent::default()
        }
    }
}

/// Now as RFC 3339 UTC with microseconds.
///
/// The date and time of day are formatted once per second per thread; within that second
/// only the microseconds are written, and the string is made in one copy.
pub fn now_rfc3339() -> String {
    let mut s = String::new();
    now_rfc3339_into(&mut s);
    s
}

/// [`now_rfc3339`] written into `out` (emptied first), in its buffer when it has room.
pub(crate) fn now_rfc3339_into(out: &mut String) {
    out.clear();
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, micros) = (d.as_secs(), d.subsec_micros());
    let done = LAST_SECOND
        .try_with(|last| {
            let mut last = last.try_borrow_mut().ok()?;
            if last.0 != Some(secs) {
                *last = (Some(secs), stamp(secs, 0)?);
            }
            let mut b = last.1;
            put_digits(&mut b, 20, 6, u64::from(micros));
            out.push_str(std::str::from_utf8(&b).ok()?);
            Some(())
        })
        .ok()
        .flatten();
    if done.is_none() {
        out.push_str(&rfc3339_micros(secs, micros));
    }
}

thread_local! {
    /// The last second stamped on this thread, formatted (with zero microseconds).
    static LAST_SECOND: std::cell::RefCell<(Option<u64>, [u8; 27])> =
        const { std::cell::RefCell::new((None, [0; 27])) };
}

/// Write `n` as `width` decimal digits ending before `at + width` (the high digits dropped).
fn put_digits(b: &mut [u8; 27], at: usize, width: usize, mut n: u64) {
    for i in (at..at + width).rev() {
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` as bytes; `None` outside four-digit years or a second.
fn stamp(secs: u64, micros: u32) -> Option<[u8; 27]> {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = secmesh_core::clock::civil_from_days(i64::try_from(days).ok()?);
    if !(0..=9999).contains(&y) || micros > 999_999 {
        return None;
    }
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut b, 0, 4, y as u64);
    put_digits(&mut b, 5, 2, u64::from(m));
    put_digits(&mut b, 8, 2, u64::from(d));
    put_digits(&mut b, 11, 2, rem / 3600);
    put_digits(&mut b, 14, 2, (rem % 3600) / 60);
    put_digits(&mut b, 17, 2, rem % 60);
    put_digits(&mut b, 20, 6, u64::from(micros));
    Some(b)
}

/// The stamp as a `String`, in one allocation and one copy (it is always ASCII).
fn ascii_string(b: &[u8; 27]) -> Option<String> {
    std::str::from_utf8(b).ok().map(str::to_owned)
}

/// Format seconds since the epoch and microseconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
///
/// Written digit by digit into a stack buffer and copied into one allocation of the exact
/// size (no `format!` machinery: every event is stamped on the request path).
pub fn rfc3339_micros(secs: u64, micros: u32) -> String {
    if let Some(s) = stamp(secs, micros).as_ref().and_then(ascii_string) {
        return s;
    }
    // Outside four-digit years or a second: the general path (never for a real clock).
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = secmesh_core::clock::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_without_the_new_fields_still_read() {
        let old = r#"{"v":1,"seq":3,"time":"2026-01-01T00:00:00.000000Z","service":"orders","dir":"in","verb":"GET","object":"/orders/1","decision":"deny","reason":"no rule"}"#;
        let ev: AuditEvent = serde_json::from_str(old).unwrap();
        assert_eq!((ev.method, ev.path, ev.reason_kind), (None, None, None));
        assert_eq!(ev.verb.as_deref(), Some("GET"));

        let mut ev = AuditEvent::now("orders", Direction::In);
        ev.verb = Some("read".into());
        ev.object = Some("orders/1".into());
        ev.method = Some("GET".into());
        ev.path = Some("/orders/1".into());
        ev.reason_kind = Some("no_rule".into());
        let json = serde_json::to_string(&ev).unwrap();
        assert!(
            json.contains(r#""method":"GET","path":"/orders/1""#),
            "{json}"
        );
        assert!(json.contains(r#""reason_kind":"no_rule""#), "{json}");
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn now_is_the_clock_formatted() {
        for _ in 0..1000 {
            let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let now = now_rfc3339();
            let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let lo = rfc3339_micros(before.as_secs(), before.subsec_micros());
            let hi = rfc3339_micros(after.as_secs(), after.subsec_micros());
            assert!(lo <= now && now <= hi, "{lo} <= {now} <= {hi}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_micros(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(951_782_400, 7),
            "2000-02-29T00:00:00.000007Z"
        );
        assert_eq!(
            rfc3339_micros(1_795_575_845, 123_456),
            "2026-11-25T03:04:05.123456Z"
        );
        // The digit writer agrees with the general formatter across the years.
        for secs in (0..253_402_300_799u64).step_by(9_876_543_211) {
            let days = secs / 86_400;
            let rem = secs % 86_400;
            let (y, m, d) = secmesh_core::clock::civil_from_days(days as i64);
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60,
                secs % 1_000_000
            );
            assert_eq!(rfc3339_micros(secs, (secs % 1_000_000) as u32), want);
        }
    }
}
