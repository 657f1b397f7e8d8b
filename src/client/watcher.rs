//! Watchers handed out by `*_and_watch` and `add_watch`, and the session
//! state stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot, watch};

use super::driver::Command;
use crate::error::Error;
use crate::session::{terminal_error, WatcherId};
use crate::types::{EventType, SessionState, WatchedEvent};

fn ended(state: &watch::Receiver<SessionState>) -> Error {
    let s = *state.borrow();
    if s.is_terminal() {
        terminal_error(s)
    } else {
        Error::Closed
    }
}

/// A one-shot watch: fires once, for the first change after it was set.
///
/// It survives reconnects (it is re-registered with the server, and a change
/// made while disconnected fires it on reconnect). It ends with an error only
/// when the session ends.
///
/// Dropping it unregisters it locally; the server-side one-shot watch, if
/// any, fires once more into nothing.
#[derive(Debug)]
pub struct OneshotWatcher {
    id: WatcherId,
    rx: Option<oneshot::Receiver<WatchedEvent>>,
    cmds: mpsc::WeakUnboundedSender<Command>,
    state: watch::Receiver<SessionState>,
}

impl OneshotWatcher {
    pub(crate) fn new(
        id: WatcherId,
        rx: oneshot::Receiver<WatchedEvent>,
        cmds: mpsc::WeakUnboundedSender<Command>,
        state: watch::Receiver<SessionState>,
    ) -> Self {
        Self {
            id,
            rx: Some(rx),
            cmds,
            state,
        }
    }

    /// Waits for the event.
    ///
    /// # Errors
    /// [`Error::SessionExpired`], [`Error::AuthFailed`] or [`Error::Closed`]
    /// if the session ends first.
    ///
    /// # Cancel safety
    /// Dropping the future drops the watcher (consumed by `self`).
    pub async fn changed(mut self) -> Result<WatchedEvent, Error> {
        let rx = self.rx.take().expect("receiver present until changed()");
        match rx.await {
            Ok(ev) => Ok(ev),
            Err(_) => Err(ended(&self.state)),
        }
    }
}

impl Drop for OneshotWatcher {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            if rx.try_recv().is_ok() {
                return; // already fired: nothing registered any more
            }
            if let Some(tx) = self.cmds.upgrade() {
                let _ = tx.send(Command::Unwatch(self.id));
            }
        }
    }
}

/// A persistent or persistent-recursive watch (`add_watch`): a stream of
/// events that stays registered until dropped or removed.
///
/// It survives reconnects (re-registered with SetWatches2). ZooKeeper does
/// not replay events missed while disconnected for persistent watches: after
/// a `Disconnected` state, re-read what you depend on.
///
/// The stream ends when the session ends or the watch is removed with
/// `remove_watches` (after a `PersistentWatchRemoved` event). Dropping it
/// removes the watch, on the server too when it was the last local watcher of
/// that path.
#[derive(Debug)]
pub struct PersistentWatcher {
    id: WatcherId,
    rx: mpsc::UnboundedReceiver<WatchedEvent>,
    cmds: mpsc::WeakUnboundedSender<Command>,
    state: watch::Receiver<SessionState>,
    done: bool,
}

impl PersistentWatcher {
    pub(crate) fn new(
        id: WatcherId,
        rx: mpsc::UnboundedReceiver<WatchedEvent>,
        cmds: mpsc::WeakUnboundedSender<Command>,
        state: watch::Receiver<SessionState>,
    ) -> Self {
        Self {
            id,
            rx,
            cmds,
            state,
            done: false,
        }
    }

    /// Waits for the next event.
    ///
    /// # Errors
    /// The session's terminal error when it ends; [`Error::NoWatcher`] after
    /// the watch was removed.
    ///
    /// # Cancel safety
    /// Cancel safe: an event is never lost when the future is dropped.
    pub async fn changed(&mut self) -> Result<WatchedEvent, Error> {
        match self.rx.recv().await {
            Some(ev) => {
                if ev.event_type == EventType::PersistentWatchRemoved {
                    self.done = true;
                }
                Ok(ev)
            }
            None if self.done => Err(Error::NoWatcher),
            None => Err(ended(&self.state)),
        }
    }
}

impl Stream for PersistentWatcher {
    type Item = WatchedEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchedEvent>> {
        let r = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(ev)) = &r {
            if ev.event_type == EventType::PersistentWatchRemoved {
                self.done = true;
            }
        }
        r
    }
}

impl Drop for PersistentWatcher {
    fn drop(&mut self) {
        if !self.done {
            if let Some(tx) = self.cmds.upgrade() {
                let _ = tx.send(Command::Unwatch(self.id));
            }
        }
    }
}

/// Every session state transition, in order, starting with the state at the
/// time of subscribing. Ends after a terminal state.
#[derive(Debug)]
pub struct StateStream {
    rx: mpsc::UnboundedReceiver<SessionState>,
}

impl StateStream {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<SessionState>) -> Self {
        Self { rx }
    }

    /// The next state, or `None` once the session has ended and every state
    /// was delivered.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next_state(&mut self) -> Option<SessionState> {
        self.rx.recv().await
    }
}

impl Stream for StateStream {
    type Item = SessionState;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SessionState>> {
        self.rx.poll_recv(cx)
    }
}
