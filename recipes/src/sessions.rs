//! [`Sessions`]: the long-lived handle recipes are built from, and a new
//! session after the old one expired; [`SessionSource`]: what every recipe
//! constructor takes (a [`Client`] or a [`Sessions`]).
//!
//! A zkit [`Client`]'s session expiry is final. A service that runs for
//! weeks builds its recipes from a `Sessions` instead: it hands out the
//! current client while its session lives and builds a fresh one (same
//! builder settings, same connect string) once it has expired. What a
//! session *owned* is never carried over: a lock guard, a lease, a claim or
//! a term of leadership of the expired session reports `Lost` exactly as
//! with a plain `Client`. The *recipes* (the `Lock`, the `Queue`, the
//! `LeaderLatch`, the counter, the caches) carry on with the new session,
//! with no code on your side.
//!
//! # Which to pick
//! - [`Sessions`] for a service: recipes outlive session expiry.
//!   [`Sessions::events`] reports every session's life (Connected,
//!   Suspended, Reconnected, Lost, and a new session after Lost).
//! - A [`Client`] (`&client`) when you manage sessions yourself: every
//!   recipe built from it ends with its session (its operations then fail
//!   with [`Error::SessionExpired`]).
//!
//! ```no_run
//! # async fn demo() -> zkit::Result<()> {
//! use zkit_recipes::{Lock, Sessions};
//!
//! let sessions = Sessions::new(zkit::Client::builder(), "zk1:2181,zk2:2181");
//! let lock = Lock::new(&sessions, "/locks/job");
//! loop {
//!     let guard = lock.acquire().await?; // on whatever session is live now
//!     // ... work, fenced with guard.guarded() ...
//!     guard.release().await?;
//!     # break;
//! }
//! sessions.close().await?;
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use zkit::{Client, ClientBuilder, Error, SessionId, SessionState};

use crate::internal::protected::backoff;

/// A source of live sessions (see the module docs). Cheap to clone: clones
/// share the current client.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    builder: ClientBuilder,
    connect: String,
    current: tokio::sync::Mutex<Option<Client>>,
    /// Every session id handed out so far.
    past: std::sync::Mutex<Vec<i64>>,
    /// `close` was called: no new session, ever.
    closed: AtomicBool,
    events: broadcast::Sender<SessionEvent>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("connect", &self.inner.connect)
            .field("closed", &self.inner.closed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// What happened to the sessions of a [`Sessions`] handle, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The first session is established.
    Connected {
        /// Its id.
        session: SessionId,
    },
    /// The connection dropped: the session may still resume, so anything
    /// it owns (locks, leadership) is in doubt until `Reconnected` or
    /// `Lost` (Curator's SUSPENDED).
    Suspended {
        /// The session in doubt.
        session: SessionId,
    },
    /// A session is connected again: the same one (`new_session: false`,
    /// what it owned survived) or, after [`Lost`](Self::Lost), a new one
    /// (`new_session: true`, nothing of the old one survived).
    Reconnected {
        /// The session now connected.
        session: SessionId,
        /// Whether it is a new session.
        new_session: bool,
    },
    /// The session ended (expired, or its credentials were refused):
    /// everything it owned is gone. The next use starts a new session
    /// (Curator's LOST).
    Lost {
        /// The session that ended.
        session: SessionId,
    },
    /// [`Sessions::close`] was called: no more sessions.
    Closed,
}

/// A stream of [`SessionEvent`]s ([`Sessions::events`]).
#[derive(Debug)]
pub struct SessionEvents {
    rx: broadcast::Receiver<SessionEvent>,
}

impl SessionEvents {
    /// The next event; `None` once the handle is closed (after
    /// [`SessionEvent::Closed`]) or dropped. A receiver that fell more than
    /// 1024 events behind skips the oldest.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next(&mut self) -> Option<SessionEvent> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "session events skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Sessions {
    /// Sessions built with `builder` against `connect` (the first one on
    /// first use).
    pub fn new(builder: ClientBuilder, connect: impl Into<String>) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                builder,
                connect: connect.into(),
                current: tokio::sync::Mutex::new(None),
                past: std::sync::Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
                events,
            }),
        }
    }

    /// Starts from an existing client; later sessions come from `builder`
    /// and `connect`.
    pub fn with_client(client: Client, builder: ClientBuilder, connect: impl Into<String>) -> Self {
        let s = Self::new(builder, connect);
        s.remember(client.session_id().0);
        s.follow(&client, false);
        if let Ok(mut cur) = s.inner.current.try_lock() {
            *cur = Some(client);
        }
        s
    }

    /// Identifies this source of sessions (shared by its clones) while it
    /// lives.
    pub(crate) fn scope(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// The live client: the current one, or a new session when it ended.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`close`](Self::close); the connect error of
    /// a new session (e.g. no server reachable).
    pub async fn client(&self) -> Result<Client, Error> {
        let mut cur = self.inner.current.lock().await;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if let Some(c) = cur.as_ref() {
            if !c.state().is_terminal() {
                return Ok(c.clone());
            }
        }
        let renewed = cur.is_some();
        let c = self
            .inner
            .builder
            .clone()
            .connect(&self.inner.connect)
            .await?;
        tracing::info!(session = %c.session_id(), "new session for long-lived recipes");
        self.remember(c.session_id().0);
        self.follow(&c, renewed);
        *cur = Some(c.clone());
        Ok(c)
    }

    /// The current client, if a session was made and has not ended;
    /// never connects.
    pub fn current(&self) -> Option<Client> {
        let cur = self.inner.current.try_lock().ok()?;
        cur.as_ref().filter(|c| !c.state().is_terminal()).cloned()
    }

    /// Closes the live session, if any (never opens one just to close it),
    /// and makes this handle (and every clone) refuse new sessions: recipes
    /// built from it stop, their operations fail with [`Error::Closed`].
    ///
    /// # Errors
    /// As [`Client::close`].
    pub async fn close(&self) -> Result<(), Error> {
        let current = {
            let mut cur = self.inner.current.lock().await;
            self.inner.closed.store(true, Ordering::SeqCst);
            cur.take()
        };
        let r = match current {
            Some(c) => c.close().await,
            None => Ok(()),
        };
        let _ = self.inner.events.send(SessionEvent::Closed);
        r
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// The life of every session from now on (see [`SessionEvent`]).
    pub fn events(&self) -> SessionEvents {
        SessionEvents {
            rx: self.inner.events.subscribe(),
        }
    }

    /// Forwards `client`'s states as [`SessionEvent`]s until its session
    /// ends. `renewed`: it replaces a session that was lost.
    fn follow(&self, client: &Client, renewed: bool) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut states = client.state_stream();
        let session = client.session_id();
        let inner = Arc::downgrade(&self.inner);
        rt.spawn(async move {
            let mut first = true;
            let mut suspended = false;
            while let Some(s) = states.next_state().await {
                let Some(inner) = inner.upgrade() else { return };
                let event = match s {
                    SessionState::Connected | SessionState::ConnectedReadOnly => {
                        if first {
                            first = false;
                            Some(if renewed {
                                SessionEvent::Reconnected {
                                    session,
                                    new_session: true,
                                }
                            } else {
                                SessionEvent::Connected { session }
                            })
                        } else if std::mem::take(&mut suspended) {
                            Some(SessionEvent::Reconnected {
                                session,
                                new_session: false,
                            })
                        } else {
                            None
                        }
                    }
                    SessionState::Disconnected | SessionState::Connecting => {
                        if first || suspended {
                            None
                        } else {
                            suspended = true;
                            Some(SessionEvent::Suspended { session })
                        }
                    }
                    // A close of ours is reported by `close` itself.
                    SessionState::Closed if inner.closed.load(Ordering::SeqCst) => return,
                    _ => {
                        let _ = inner.events.send(SessionEvent::Lost { session });
                        return;
                    }
                };
                if let Some(e) = event {
                    let _ = inner.events.send(e);
                }
            }
        });
    }

    fn remember(&self, id: i64) {
        self.inner
            .past
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id);
    }

    /// Whether `session` is one this source handed out (e.g. the owner of
    /// an ephemeral node left by our expired session).
    pub fn was_ours(&self, session: i64) -> bool {
        self.inner
            .past
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&session)
    }

    /// Like [`client`](Self::client), retrying a failed connect with
    /// back-off until it succeeds; [`Error::Closed`] once closed.
    pub(crate) async fn client_retrying(&self) -> Result<Client, Error> {
        let mut delays = backoff();
        loop {
            match self.client().await {
                Ok(c) => return Ok(c),
                Err(Error::Closed) if self.is_closed() => return Err(Error::Closed),
                Err(e) => {
                    tracing::debug!(error = %e, "no session yet");
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
            }
        }
    }
}

/// Where a recipe gets its session: a [`Client`] (the recipe ends with its
/// session) or a [`Sessions`] (the recipe carries on with a new session
/// after expiry). Every recipe constructor takes `impl Into<SessionSource>`,
/// so `&client` and `&sessions` both work.
#[derive(Debug, Clone)]
pub struct SessionSource {
    kind: SourceKind,
}

#[derive(Debug, Clone)]
enum SourceKind {
    Client(Client),
    Sessions(Sessions),
}

impl From<&Client> for SessionSource {
    fn from(c: &Client) -> Self {
        Self {
            kind: SourceKind::Client(c.clone()),
        }
    }
}

impl From<Client> for SessionSource {
    fn from(c: Client) -> Self {
        Self {
            kind: SourceKind::Client(c),
        }
    }
}

impl From<&Sessions> for SessionSource {
    fn from(s: &Sessions) -> Self {
        Self {
            kind: SourceKind::Sessions(s.clone()),
        }
    }
}

impl From<Sessions> for SessionSource {
    fn from(s: Sessions) -> Self {
        Self {
            kind: SourceKind::Sessions(s),
        }
    }
}

impl SessionSource {
    /// The live client: the fixed one (even if its session ended: its
    /// operations then say so), or the current session of the
    /// [`Sessions`] (a new one when it ended).
    ///
    /// # Errors
    /// From a [`Sessions`]: [`Error::Closed`] after its `close`, or the
    /// connect error of a new session.
    pub async fn client(&self) -> Result<Client, Error> {
        match &self.kind {
            SourceKind::Client(c) => Ok(c.clone()),
            SourceKind::Sessions(s) => s.client().await,
        }
    }

    /// Whether nothing more can be done with this source: a `Client`'s
    /// session ended, or the `Sessions` were closed.
    pub(crate) fn is_finished(&self) -> bool {
        match &self.kind {
            SourceKind::Client(c) => c.state().is_terminal(),
            SourceKind::Sessions(s) => s.is_closed(),
        }
    }

    /// Whether a session that ends is replaced (built from [`Sessions`]).
    pub fn renews(&self) -> bool {
        matches!(self.kind, SourceKind::Sessions(_))
    }

    /// Whether an operation that failed with `e` should start over on a new
    /// session: the session expired, and this source replaces it.
    pub(crate) fn retry_on_new_session(&self, e: &Error) -> bool {
        match &self.kind {
            SourceKind::Sessions(s) => *e == Error::SessionExpired && !s.is_closed(),
            SourceKind::Client(_) => false,
        }
    }

    /// What a recipe's process-local registries key on: the session of a
    /// fixed client, or the `Sessions` handle (shared by its sessions).
    pub(crate) fn scope(&self, client: &Client) -> usize {
        match &self.kind {
            // Session ids are 64-bit; on 32-bit targets a collision only refuses.
            SourceKind::Client(_) => client.session_id().0 as usize,
            SourceKind::Sessions(s) => s.scope(),
        }
    }

    /// Whether `session` is one of ours (the fixed client's, or any this
    /// `Sessions` handed out).
    pub(crate) fn was_ours(&self, session: i64) -> bool {
        match &self.kind {
            SourceKind::Client(c) => c.session_id().0 == session,
            SourceKind::Sessions(s) => s.was_ours(session),
        }
    }

    /// Like [`client`](Self::client), retrying connect failures of a new
    /// session with back-off (a [`Sessions`] until it is closed).
    pub(crate) async fn client_retrying(&self) -> Result<Client, Error> {
        match &self.kind {
            SourceKind::Client(c) => Ok(c.clone()),
            SourceKind::Sessions(s) => s.client_retrying().await,
        }
    }
}
