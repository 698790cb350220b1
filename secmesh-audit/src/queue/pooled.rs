//! [`PooledEvent`]: an event filled in place, in a box and strings reused on this thread.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::ops::{Deref, DerefMut};

use crate::event::{self, AuditEvent, Direction, SCHEMA_VERSION};

/// The most emptied strings a thread keeps for reuse.
const STASH_MAX: usize = 256;

thread_local! {
    /// This thread's emptied strings, taken from the events it reused the boxes of.
    static STASH: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// An audit event being filled on the request path, from [`Auditor::event`]: it derefs to the
/// [`AuditEvent`] and is recorded with [`Auditor::record_event`] or
/// [`Auditor::submit_event`].
///
/// It comes in a box the writer has given back, and the strings of the event that box held
/// are kept on this thread for [`text`](Self::text) and [`display`](Self::display): an event
/// filled with them costs no allocation and no free once the pool is warm, and nothing
/// allocated on one thread is freed on another. Fields set with a plain `String` work too
/// (that string is reused later in the same way).
///
/// While it lives it holds this thread's stash of strings: fill and record it without
/// awaiting in between. Held longer (across an `.await`), it is still correct, but other
/// events filled on the thread meanwhile allocate their strings.
///
/// [`Auditor::event`]: super::Auditor::event
/// [`Auditor::record_event`]: super::Auditor::record_event
/// [`Auditor::submit_event`]: super::Auditor::submit_event
///
/// # Example
/// ```
/// use secmesh_audit::event::{Decision, Direction};
/// use secmesh_audit::sink::{JsonLinesConfig, JsonLinesSink};
/// use secmesh_audit::Auditor;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let sink = JsonLinesSink::open(dir.path().join("orders.jsonl"), JsonLinesConfig::default())?;
/// let auditor = Auditor::builder(sink).spawn();
/// let mut ev = auditor.event("orders", Direction::In);
/// ev.verb = Some(ev.text("read"));
/// ev.object = Some(ev.display(format_args!("orders/{}", 7)));
/// ev.decision = Decision::Allow;
/// auditor.record_event(ev)?;
/// auditor.flush()?;
/// let text = std::fs::read_to_string(dir.path().join("orders.jsonl"))?;
/// assert!(text.contains(r#""verb":"read","object":"orders/7""#));
/// # Ok(())
/// # }
/// ```
pub struct PooledEvent {
    pub(super) event: Box<AuditEvent>,
    /// Emptied strings for [`text`](Self::text) and [`display`](Self::display): this thread's
    /// stash, held while the event is filled (one thread-local access per event, not one per
    /// string), given back when the event is recorded or dropped.
    spare: Spare,
}

/// This thread's stash while an event holds it; given back when dropped.
struct Spare(Vec<String>);

impl fmt::Debug for PooledEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.event.fmt(f)
    }
}

impl Deref for PooledEvent {
    type Target = AuditEvent;
    fn deref(&self) -> &AuditEvent {
        &self.event
    }
}

impl DerefMut for PooledEvent {
    fn deref_mut(&mut self) -> &mut AuditEvent {
        &mut self.event
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        let spare = std::mem::take(&mut self.0);
        let _ = STASH.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut()
                && s.capacity() < spare.capacity()
            {
                *s = spare;
            }
        });
    }
}

impl PooledEvent {
    /// Empty the (reused) box and stamp a new event of `service` in direction `dir` now; the
    /// old event's strings are kept for reuse.
    pub(super) fn reset(mut event: Box<AuditEvent>, service: &str, dir: Direction) -> Self {
        let mut spare = STASH
            .try_with(|s| s.try_borrow_mut().map(|mut s| std::mem::take(&mut *s)).ok())
            .ok()
            .flatten()
            .unwrap_or_default();
        drain_strings(&mut event, &mut spare);
        let mut time = spare.pop().unwrap_or_default();
        event::now_rfc3339_into(&mut time);
        let mut name = spare.pop().unwrap_or_default();
        name.push_str(service);
        *event = AuditEvent {
            v: SCHEMA_VERSION,
            time,
            service: name,
            dir,
            ..AuditEvent::default()
        };
        PooledEvent {
            event,
            spare: Spare(spare),
        }
    }

    /// `s` in a reused string (for a field of this event).
    pub fn text(&mut self, s: &str) -> String {
        let mut out = self.spare.0.pop().unwrap_or_default();
        out.push_str(s);
        out
    }

    /// `value` formatted into a reused string (for a field of this event: an address, a
    /// hash, a reason in words).
    pub fn display(&mut self, value: impl fmt::Display) -> String {
        let mut out = self.spare.0.pop().unwrap_or_default();
        let _ = write!(out, "{value}");
        out
    }

    /// The event, out of its box (it no longer goes back to the pool).
    pub fn into_event(self) -> AuditEvent {
        *self.event
    }

    /// The box, for the queue.
    pub(super) fn into_box(self) -> Box<AuditEvent> {
        self.event
    }
}

/// Move the strings of a written event into `spare`, emptied (up to [`STASH_MAX`]).
fn drain_strings(ev: &mut AuditEvent, spare: &mut Vec<String>) {
    let mut keep = |s: Option<String>| {
        if let Some(mut s) = s
            && s.capacity() > 0
            && spare.len() < STASH_MAX
        {
            s.clear();
            spare.push(s);
        }
    };
    keep(Some(std::mem::take(&mut ev.time)));
    keep(Some(std::mem::take(&mut ev.service)));
    keep(ev.sub.take());
    keep(ev.caller.take());
    keep(ev.verb.take());
    keep(ev.object.take());
    keep(ev.method.take());
    keep(ev.path.take());
    keep(ev.rule.take());
    keep(ev.reason.take());
    keep(ev.reason_kind.take());
    keep(ev.shadow.take().and_then(|s| s.rule));
    keep(ev.jti.take());
    keep(ev.token_sha256.take());
    keep(ev.peer.take());
    keep(ev.target.take());
}
