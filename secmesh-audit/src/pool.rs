//! [`EventBox`]: an event in a reused allocation that goes back to the thread it came from.
//!
//! The request path builds one event per request. Built as a fresh [`AuditEvent`] that is a
//! dozen owned strings (a `malloc` each), handed to the writer thread and freed there (a
//! `free` of another thread's memory contends for the allocator's arena). An [`EventBox`]
//! avoids both: [`EventBox::new`] takes an event from this thread's free list, with the string
//! buffers of its earlier events kept; [`EventBox::string`] fills one of those buffers; once the
//! writer has written the event it returns the box, buffers and all, to the free list of the
//! thread that first made it. In a steady state an audited request allocates and frees nothing,
//! and no thread frees what another allocated.
//!
//! A plain [`AuditEvent`] still works everywhere an [`EventBox`] does (it converts, into a box
//! of this thread's), and an [`EventBox`] is an [`AuditEvent`] through `Deref`.
//!
//! # Example
//! ```
//! use secmesh_audit::event::{Decision, Direction};
//! use secmesh_audit::pool::EventBox;
//!
//! let mut ev = EventBox::new("orders", Direction::In);
//! ev.verb = Some(ev.string("read"));
//! ev.object = Some(ev.string("orders/7"));
//! ev.decision = Decision::Allow;
//! assert_eq!((ev.service.as_str(), ev.verb.as_deref()), ("orders", Some("read")));
//! drop(ev);
//! // The next event of this thread may reuse those buffers; it starts empty all the same.
//! let ev = EventBox::new("orders", Direction::Out);
//! assert!(ev.verb.is_none() && ev.object.is_none());
//! ```

use std::borrow::{Borrow, BorrowMut};
use std::cell::RefCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use crate::event::{AuditEvent, Decision, Direction, SCHEMA_VERSION};

/// How many boxes a thread takes from its returned ones at once (one lock for that many).
const REFILL: usize = 64;

/// The boxes a thread keeps once its writer has been quiet for a while (the rest are freed).
pub(crate) const KEEP: usize = 256;

/// A thread's returned boxes.
struct Home {
    list: Mutex<HomeList>,
}

struct HomeList {
    /// False once the thread has exited: boxes returned then are freed instead.
    alive: bool,
    boxes: Vec<EventBox>,
}

struct Slot {
    event: AuditEvent,
    /// Emptied string buffers of earlier events, for [`EventBox::string`].
    spare: Vec<String>,
    /// The thread this box goes back to.
    home: Arc<Home>,
    /// The event's JSON from `,"time":` on (see `event::json::write_tail`), written by the
    /// producer before the hand-off when the sink writes JSON; valid while `json_valid`.
    json: Vec<u8>,
    /// Whether `json` is the event's as it is now: cleared by every mutable access.
    json_valid: bool,
}

/// An [`AuditEvent`] in an allocation reused from this thread's earlier events (see the
/// [module](self)). Derefs to the event.
pub struct EventBox(Box<Slot>);

impl fmt::Debug for EventBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.event.fmt(f)
    }
}

/// This thread's free boxes and where the writer returns them.
struct Local {
    home: Arc<Home>,
    free: Vec<EventBox>,
}

impl Drop for Local {
    fn drop(&mut self) {
        // Boxes still on their way come back to a closed home and are freed by the writer.
        let rest = match self.home.list.lock() {
            Ok(mut l) => {
                l.alive = false;
                std::mem::take(&mut l.boxes)
            }
            Err(_) => Vec::new(),
        };
        drop(rest);
    }
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

fn new_home(alive: bool) -> Arc<Home> {
    Arc::new(Home {
        list: Mutex::new(HomeList {
            alive,
            boxes: Vec::new(),
        }),
    })
}

impl EventBox {
    /// An event of `service` in direction `dir`, stamped now (as [`AuditEvent::now`]), in a box
    /// of this thread's: its other fields are empty, their buffers kept for
    /// [`string`](Self::string).
    pub fn new(service: &str, dir: Direction) -> EventBox {
        let mut b = take();
        b.reset(service, dir);
        b
    }

    /// `s` in a `String` whose buffer is reused from this box's earlier events when it can be
    /// (no allocation once the box has held events of that size): for the event's fields,
    /// `ev.sub = Some(ev.string(sub))`.
    pub fn string(&mut self, s: &str) -> String {
        match self.0.spare.pop() {
            Some(mut buf) => {
                buf.push_str(s);
                buf
            }
            None => s.to_owned(),
        }
    }

    /// Put the box back on this thread's free list now, for the next [`EventBox::new`] (an
    /// event that is not recorded after all); a box of another thread's is freed. Dropping
    /// the box frees it.
    pub fn recycle(self) {
        let back = LOCAL.try_with(|local| {
            let mut local = local.try_borrow_mut().ok()?;
            let local = local.as_mut()?;
            if !Arc::ptr_eq(&local.home, &self.0.home) || local.free.len() >= KEEP {
                return Some(self);
            }
            local.free.push(self);
            None
        });
        drop(back);
    }

    /// Serialize the event's JSON tail into the box (the producer's side of the hand-off, on
    /// its own thread, while the event's strings are in its cache).
    pub(crate) fn prepare_json(&mut self) {
        let s = &mut *self.0;
        if !s.json_valid {
            s.json.clear();
            s.event.json_tail(&mut s.json);
            s.json_valid = true;
        }
    }

    /// The event and its prepared JSON tail, if any, without clearing it.
    pub(crate) fn parts(&mut self) -> (&mut AuditEvent, Option<&[u8]>) {
        let s = &mut *self.0;
        (&mut s.event, s.json_valid.then_some(&s.json[..]))
    }

    /// The event, out of the box (the box is freed).
    pub fn into_event(self) -> AuditEvent {
        self.0.event
    }

    /// Empty every field, keeping the string buffers, and stamp the event now.
    fn reset(&mut self, service: &str, direction: Direction) {
        let Slot { event, spare, .. } = &mut *self.0;
        // Every field named, so that a new one cannot be forgotten here.
        let AuditEvent {
            v,
            seq,
            time,
            service: svc,
            dir,
            txn,
            trace_id,
            span_id,
            parent_span_id,
            sub,
            caller,
            verb,
            object,
            method,
            path,
            decision,
            rule,
            reason,
            reason_kind,
            shadow,
            status,
            latency_us,
            jti,
            token_sha256,
            cls,
            peer,
            target,
        } = event;
        *v = SCHEMA_VERSION;
        *seq = 0;
        crate::event::now_rfc3339_into(time);
        svc.clear();
        svc.push_str(service);
        *dir = direction;
        (*txn, *trace_id, *span_id, *parent_span_id) = (None, None, None, None);
        *decision = Decision::default();
        *shadow = None;
        (*status, *latency_us, *cls) = (None, None, None);
        for f in [
            sub,
            caller,
            verb,
            object,
            method,
            path,
            rule,
            reason,
            reason_kind,
            jti,
            token_sha256,
            peer,
            target,
        ] {
            if let Some(mut s) = f.take() {
                s.clear();
                spare.push(s);
            }
        }
    }

    fn fresh(home: Arc<Home>) -> EventBox {
        EventBox(Box::new(Slot {
            event: AuditEvent::default(),
            spare: Vec::new(),
            home,
            json: Vec::new(),
            json_valid: false,
        }))
    }
}

/// A box from this thread's free list, refilled from the boxes the writer returned, else new.
fn take() -> EventBox {
    LOCAL
        .try_with(|local| {
            let mut local = local.try_borrow_mut().ok()?;
            let local = local.get_or_insert_with(|| Local {
                home: new_home(true),
                free: Vec::with_capacity(REFILL),
            });
            if local.free.is_empty()
                && let Ok(mut l) = local.home.list.try_lock()
            {
                let keep = l.boxes.len().saturating_sub(REFILL);
                local.free.extend(l.boxes.drain(keep..));
            }
            let mut b = local
                .free
                .pop()
                .unwrap_or_else(|| EventBox::fresh(local.home.clone()));
            b.0.json_valid = false;
            Some(b)
        })
        .ok()
        .flatten()
        // While this thread exits: a box that nobody takes back.
        .unwrap_or_else(|| EventBox::fresh(new_home(false)))
}

impl From<AuditEvent> for EventBox {
    /// The event in a box of this thread's (the box's earlier event is dropped).
    fn from(event: AuditEvent) -> EventBox {
        let mut b = take();
        b.0.event = event;
        b
    }
}

impl Deref for EventBox {
    type Target = AuditEvent;
    fn deref(&self) -> &AuditEvent {
        &self.0.event
    }
}

impl DerefMut for EventBox {
    fn deref_mut(&mut self) -> &mut AuditEvent {
        self.0.json_valid = false;
        &mut self.0.event
    }
}

impl Borrow<AuditEvent> for EventBox {
    fn borrow(&self) -> &AuditEvent {
        &self.0.event
    }
}

impl BorrowMut<AuditEvent> for EventBox {
    fn borrow_mut(&mut self) -> &mut AuditEvent {
        self.0.json_valid = false;
        &mut self.0.event
    }
}

/// The writer's side: written boxes go back to their threads, one lock per thread per batch.
#[derive(Default)]
pub(crate) struct Returns {
    /// The threads returned to, each with the boxes gathered for it.
    homes: Vec<(Arc<Home>, Vec<EventBox>)>,
}

impl Returns {
    /// Return (and empty) `boxes`.
    pub(crate) fn give_back(&mut self, boxes: &mut Vec<EventBox>) {
        let mut last = usize::MAX;
        for b in boxes.drain(..) {
            let i = match self.homes.get(last) {
                Some((h, _)) if Arc::ptr_eq(h, &b.0.home) => last,
                _ => match self
                    .homes
                    .iter()
                    .position(|(h, _)| Arc::ptr_eq(h, &b.0.home))
                {
                    Some(i) => i,
                    None => {
                        self.homes.push((b.0.home.clone(), Vec::new()));
                        self.homes.len() - 1
                    }
                },
            };
            last = i;
            if let Some((_, v)) = self.homes.get_mut(i) {
                v.push(b);
            }
        }
        let mut gone = false;
        for (home, staged) in &mut self.homes {
            if staged.is_empty() {
                continue;
            }
            let alive = match home.list.lock() {
                Ok(mut l) if l.alive => {
                    l.boxes.append(staged);
                    true
                }
                _ => false,
            };
            if !alive {
                // The thread has exited: nobody takes these back.
                staged.clear();
                gone = true;
            }
        }
        if gone {
            self.homes
                .retain(|(h, _)| h.list.lock().map(|l| l.alive).unwrap_or(false));
        }
    }

    /// The writer is quiet: give back the memory of a burst, keeping [`KEEP`] boxes a thread
    /// (freed outside the lock, off the request path).
    pub(crate) fn trim(&mut self) {
        for (home, _) in &self.homes {
            let excess = match home.list.lock() {
                Ok(mut l) if l.boxes.len() > KEEP => l.boxes.split_off(KEEP),
                _ => Vec::new(),
            };
            drop(excess);
        }
        self.homes
            .retain(|(h, _)| h.list.lock().map(|l| l.alive).unwrap_or(false));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn boxes_go_back_to_their_thread_and_are_reused_empty() {
        let mut returns = Returns::default();
        let mut ev = EventBox::new("orders", Direction::In);
        ev.sub = Some(ev.string("user:alice"));
        ev.status = Some(200);
        let at = std::ptr::from_ref::<AuditEvent>(&ev) as usize;
        // Written on another thread, returned from there.
        let mut batch = std::thread::spawn(move || {
            let mut batch = vec![ev];
            returns.give_back(&mut batch);
            (batch, returns)
        })
        .join()
        .unwrap()
        .0;
        assert!(batch.is_empty());
        batch.push(EventBox::new("orders", Direction::Out));
        let again = &batch[0];
        assert_eq!(std::ptr::from_ref::<AuditEvent>(again) as usize, at);
        assert_eq!((again.sub.as_ref(), again.status), (None, None));
        assert_eq!(again.dir, Direction::Out);
        assert_eq!(again.0.spare.len(), 1, "the buffer of `sub` is kept");
    }

    #[test]
    fn prepared_json_is_the_events_and_any_change_discards_it() {
        let mut ev = EventBox::new("orders", Direction::In);
        ev.sub = Some(ev.string("user:\"alice\""));
        ev.prepare_json();
        let mut want = Vec::new();
        crate::event::json::write_head(&ev, &mut want);
        let head = want.len();
        ev.json_tail(&mut want);
        want.push(b'}');
        let tail = ev.parts().1.unwrap().to_vec();
        assert_eq!(tail, &want[head..want.len() - 1]);
        assert_eq!(want, serde_json::to_vec(&*ev).unwrap());
        ev.status = Some(403);
        assert!(ev.parts().1.is_none(), "changed after it was written");
        ev.prepare_json();
        let tail = String::from_utf8(ev.parts().1.unwrap().to_vec()).unwrap();
        assert!(tail.ends_with(r#","status":403"#), "{tail}");
        // A box taken again starts without it.
        ev.recycle();
        let mut again = EventBox::new("orders", Direction::In);
        assert!(again.parts().1.is_none());
    }

    #[test]
    fn boxes_of_an_exited_thread_are_freed() {
        let ev = std::thread::spawn(|| EventBox::new("orders", Direction::In))
            .join()
            .unwrap();
        let mut returns = Returns::default();
        returns.give_back(&mut vec![ev]);
        assert!(returns.homes.is_empty());
    }
}
