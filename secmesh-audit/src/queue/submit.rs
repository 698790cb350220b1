//! [`Submit`]: the future of one event on its way to the writer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::{pin_project, pinned_drop};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::oneshot;

use super::{AuditError, Auditor, Durability, FullPolicy, Queue};
use crate::pool::EventBox;

/// The future [`Auditor::submit`] returns: resolves when the event is queued
/// ([`Durability::Queued`]) or written and synced ([`Durability::Durable`]).
///
/// When the queue is full it follows the [`FullPolicy`]: under `Block` it waits for room
/// (asynchronously: the task yields, the thread is free), under `DropAndCount` it counts the
/// event as dropped and resolves `Ok`, under `FailClosed` it resolves
/// [`AuditError::QueueFull`]. A durable event the sink could not write resolves
/// [`AuditError::NotDurable`].
///
/// Dropping it (or calling [`detach`](Self::detach)) before it resolves never loses the event:
/// one still waiting for room is handed to the writer anyway (the overflow, bounded by the
/// number of live `Submit`s); only the acknowledgement is given up.
#[pin_project(PinnedDrop)]
#[must_use = "the event waits for room only while polled; call detach() to hand it over"]
pub struct Submit {
    auditor: Auditor,
    /// The event while it waits for room.
    event: Option<EventBox>,
    durability: Durability,
    /// The writer's acknowledgement (durable events, once queued).
    ack: Option<oneshot::Receiver<Result<(), AuditError>>>,
    /// The outcome, when it was known at once.
    done: Option<Result<(), AuditError>>,
    /// Registered for the writer's next drain while the queue is full.
    #[pin]
    room: Option<OwnedNotified>,
}

impl std::fmt::Debug for Submit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submit")
            .field("durability", &self.durability)
            .field("waiting_for_room", &self.event.is_some())
            .field("waiting_for_ack", &self.ack.is_some())
            .finish_non_exhaustive()
    }
}

impl Submit {
    pub(super) fn new(auditor: Auditor, event: EventBox, durability: Durability) -> Self {
        let mut s = Submit {
            auditor,
            event: None,
            durability,
            ack: None,
            done: None,
            room: None,
        };
        match s.auditor.try_queue(event, durability) {
            Queue::Queued(ack) => s.queued(ack),
            Queue::Closed => s.done = Some(Err(AuditError::Closed)),
            Queue::Full(event) => s.full(event),
        }
        s
    }

    fn queued(&mut self, ack: Option<oneshot::Receiver<Result<(), AuditError>>>) {
        match ack {
            Some(rx) => self.ack = Some(rx),
            None => self.done = Some(Ok(())),
        }
    }

    /// The queue was full on the first attempt.
    fn full(&mut self, event: EventBox) {
        match self.auditor.shared.policy {
            FullPolicy::DropAndCount => {
                self.auditor.shared.count_drop();
                self.done = Some(Ok(()));
            }
            FullPolicy::FailClosed => self.done = Some(Err(AuditError::QueueFull)),
            _ => self.event = Some(event),
        }
    }

    /// Give up waiting: the event is handed to the writer even if the queue is full (it is
    /// never lost this way), and no acknowledgement is awaited. For drop paths that cannot
    /// wait.
    pub fn detach(self) {
        // The PinnedDrop implementation hands over an event still waiting for room.
    }
}

impl Future for Submit {
    type Output = Result<(), AuditError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(done) = this.done.take() {
                return Poll::Ready(done);
            }
            if let Some(ack) = this.ack.as_mut() {
                let out = std::task::ready!(Pin::new(ack).poll(cx));
                *this.ack = None;
                return Poll::Ready(out.unwrap_or(Err(AuditError::Closed)));
            }
            let Some(event) = this.event.take() else {
                return Poll::Ready(Err(AuditError::Closed));
            };
            if let Some(room) = this.room.as_mut().as_pin_mut() {
                if room.poll(cx).is_pending() {
                    *this.event = Some(event);
                    return Poll::Pending;
                }
                this.room.set(None);
            }
            // Register for the next drain *before* trying, so that a drain between the attempt
            // and the registration cannot be missed.
            let room = this.auditor.shared.room.clone().notified_owned();
            match this.auditor.try_queue(event, *this.durability) {
                Queue::Queued(None) => *this.done = Some(Ok(())),
                Queue::Queued(Some(rx)) => *this.ack = Some(rx),
                Queue::Closed => *this.done = Some(Err(AuditError::Closed)),
                Queue::Full(event) => {
                    *this.event = Some(event);
                    this.room.set(Some(room));
                }
            }
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Submit {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if let Some(event) = this.event.take() {
            this.auditor.hand_over(event);
        }
    }
}
