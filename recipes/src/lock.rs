//! Exclusive lock, herd-free, in Curator's `InterProcessMutex` layout.
//!
//! Each contender creates a protected EPHEMERAL_SEQUENTIAL node
//! `<path>/_c_<uuid>-lock-<seq>` (the parent is a container); the lowest
//! sequence holds the lock; every other contender watches only its
//! immediate predecessor (a getData watch) and re-checks after each wake-up.
//! Nodes written by Curator (`-lock-`), kazoo (`__lock__`), Curator's
//! read/write lock (`__WRIT__`, `__READ__`) and kazoo's read lock
//! (`__rlock__`) in the same directory count as contenders, so a Java, a
//! Python and a Rust process can share one lock.
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::Lock;
//!
//! let lock = Lock::new(&zk, "/locks/invoices");
//! let guard = lock.acquire().await?;
//! // Fenced write: refused by ZooKeeper unless we still hold the lock.
//! guard
//!     .guarded()
//!     .set_data("/invoices/next", b"42", zkit::Version::Any)
//!     .commit()
//!     .await?;
//! println!("token {}", guard.fencing_token());
//! guard.release().await?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::internal::metrics;
use zkit::{Client, Error, MultiWrite, SessionState, Version};

use crate::internal::protected::{
    backoff, create_protected, delete_in_background, delete_retrying, join, name_of, NodeGuard,
};
use crate::internal::sequence::contenders;
/// Name patterns that mark a lock or election contender, whoever wrote it:
/// Curator (`-lock-`, `__WRIT__`, `__READ__`, the latch's `-latch-`, the
/// semaphore's `-lease-`) and kazoo (`__lock__`, `__rlock__`). Tools that
/// inspect a lock directory (the `zkit` CLI) read contenders by them.
pub use crate::internal::sequence::CONTENDER_MARKERS;
use crate::sessions::SessionSource;

/// Settings of a [`Lock`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LockOptions {
    /// Data stored in our lock node (Curator stores the local address;
    /// default: empty).
    pub data: Vec<u8>,
    /// The name part after the GUID (default `lock-`, Curator's).
    pub prefix: String,
    /// Name fragments that make a child a contender (default: Curator's,
    /// kazoo's and the read/write locks' markers).
    pub contender_markers: Vec<String>,
}

impl Default for LockOptions {
    fn default() -> Self {
        Self {
            data: Vec::new(),
            prefix: "lock-".into(),
            contender_markers: CONTENDER_MARKERS
                .iter()
                .filter(|m| !matches!(**m, "-latch-" | "-lease-"))
                .map(|m| (*m).to_string())
                .collect(),
        }
    }
}

impl LockOptions {
    /// Sets the data stored in our lock node.
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }
}

/// What a held lock's guard knows about its ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LockState {
    /// Held: our node is first and owned by our live session.
    Held,
    /// The connection is lost: ownership is unknown until it comes back
    /// (another holder may exist if our session expires meanwhile). Stop
    /// acting as the holder; fenced writes stay safe.
    Suspended,
    /// The connection came back and our node is still there and ours.
    Reconfirmed,
    /// The lock is gone: session expired or closed, or our node deleted.
    /// Final.
    Lost,
}

impl LockState {
    /// Held or reconfirmed.
    pub fn is_held(self) -> bool {
        matches!(self, Self::Held | Self::Reconfirmed)
    }
}

/// What a contender waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Exclusive lock or write lock: the immediate predecessor, whatever it is.
    Exclusive,
    /// Read lock: only the nearest earlier writer.
    Read,
}

/// Name fragments of nodes that exclude readers: Curator's write lock and
/// mutex, kazoo's lock and write lock.
const WRITER_MARKERS: &[&str] = &["__WRIT__", "__lock__", "-lock-"];

fn is_writer(name: &str) -> bool {
    WRITER_MARKERS.iter().any(|m| name.contains(m))
}

/// A distributed exclusive lock at a path. Cheap to clone; any number of
/// acquisitions may run at once (each is a separate contender).
#[derive(Debug, Clone)]
pub struct Lock {
    source: SessionSource,
    path: String,
    options: LockOptions,
    kind: Kind,
}

impl Lock {
    /// A lock at `path` with the default [`LockOptions`], on `source`: a
    /// `&Client` (the lock ends with its session) or `&Sessions` (each
    /// acquisition runs on the live session; see [`SessionSource`]).
    pub fn new(source: impl Into<SessionSource>, path: impl Into<String>) -> Self {
        Self::with_options(source, path, LockOptions::default())
    }

    /// A lock at `path` with `options`.
    pub fn with_options(
        source: impl Into<SessionSource>,
        path: impl Into<String>,
        options: LockOptions,
    ) -> Self {
        Self {
            source: source.into(),
            path: path.into(),
            options,
            kind: Kind::Exclusive,
        }
    }

    pub(crate) fn with_kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// The lock's directory.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Waits until the lock is ours.
    ///
    /// # Errors
    /// [`Error::SessionExpired`] / [`Error::Closed`] when the session ends
    /// first; ACL and path errors of the lock directory. Connection losses
    /// are retried while the session lives.
    ///
    /// # Cancel safety
    /// Dropping the future leaves no node behind: our contender node (or a
    /// half-created one) is deleted in the background.
    pub async fn acquire(&self) -> Result<LockGuard, Error> {
        match self.acquire_until(None, true).await? {
            Some(g) => Ok(g),
            None => unreachable!("waiting acquire returns a guard or an error"),
        }
    }

    /// Takes the lock if nobody holds it, without waiting.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>, Error> {
        self.acquire_until(None, false).await
    }

    /// Waits at most `timeout` for the lock; `None` when it did not come.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard>, Error> {
        self.acquire_until(Some(Instant::now() + timeout), true)
            .await
    }

    /// The contenders' node names in lock order (the holder first).
    ///
    /// # Errors
    /// Connection and session errors; an absent directory gives an empty
    /// list.
    pub async fn participants(&self) -> Result<Vec<String>, Error> {
        match self.source.client().await?.get_children(&self.path).await {
            Ok((children, _)) => Ok(contenders(&children, &self.options.contender_markers)
                .into_iter()
                .map(|c| c.name)
                .collect()),
            Err(Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Acquires on the live session; from a [`Sessions`](crate::Sessions), an
    /// acquisition whose session expired before it held the lock starts
    /// over on a new session (it owned nothing yet: its node went with the
    /// old session).
    async fn acquire_until(
        &self,
        deadline: Option<Instant>,
        wait: bool,
    ) -> Result<Option<LockGuard>, Error> {
        let started = Instant::now();
        let r = loop {
            let client = match self.source.client().await {
                Ok(c) => c,
                Err(e) => break Err(e),
            };
            match self.acquire_on(&client, deadline, wait).await {
                Err(e) if self.source.retry_on_new_session(&e) => {
                    tracing::info!(path = %self.path, "session expired while acquiring; again on a new session");
                }
                r => break r,
            }
        };
        let label = match self.kind {
            Kind::Read => "read",
            Kind::Exclusive if self.options.prefix.contains("WRIT") => "write",
            Kind::Exclusive => "mutex",
        };
        let outcome = match &r {
            Ok(Some(_)) => "acquired",
            Ok(None) => "not_acquired",
            Err(_) => metrics::outcome(&r),
        };
        metrics::lock_acquire(label, started.elapsed(), outcome);
        r
    }

    async fn acquire_on(
        &self,
        client: &Client,
        deadline: Option<Instant>,
        wait: bool,
    ) -> Result<Option<LockGuard>, Error> {
        let created =
            create_protected(client, &self.path, &self.options.prefix, &self.options.data).await?;
        // From here our node exists: any early exit deletes it.
        let mut node = NodeGuard {
            client: client.clone(),
            path: Some(created.path.clone()),
        };
        let our_name = name_of(&created.path).to_string();
        let session = client.session_id().0;
        let mut delays = backoff();
        // Set when the node we waited for was the first contender and is
        // now deleted: we are first (see `Step::Wait`).
        let mut next_in_line = false;
        loop {
            let step = if next_in_line && created.stat.ephemeral_owner == session {
                Ok(Step::Holder)
            } else {
                self.step(client, &our_name, created.stat.ephemeral_owner, session)
                    .await
            };
            next_in_line = false;
            let (predecessor, first) = match step {
                Ok(Step::Holder) => {
                    let path = node.disarm();
                    return Ok(Some(LockGuard::new(
                        client,
                        path,
                        created.stat.czxid,
                        self.kind,
                    )));
                }
                Ok(Step::Wait(p, first)) => (p, first),
                Ok(Step::Gone) => {
                    // Our node vanished (deleted by someone): the acquisition
                    // failed as a whole; start over with a new node.
                    node.disarm();
                    return Box::pin(self.acquire_on(client, deadline, wait)).await;
                }
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !wait {
                node.release().await?;
                return Ok(None);
            }
            let watcher = match client.get_data_and_watch(&predecessor).await {
                Ok((_, _, w)) => w,
                Err(Error::NoNode) => continue, // gone already: re-check
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let fired = match deadline {
                Some(d) => match tokio::time::timeout_at(d, watcher.changed()).await {
                    Ok(r) => r,
                    Err(_) => {
                        node.release().await?;
                        return Ok(None);
                    }
                },
                None => watcher.changed().await,
            };
            match fired {
                // The first contender is gone and nothing can sort before
                // us now: sequence numbers only grow. One round trip saved
                // on every handoff.
                Ok(ev) if first && ev.event_type == zkit::EventType::NodeDeleted => {
                    next_in_line = true;
                }
                // Any other event (or a connection-only wake-up): look again.
                Ok(_) => {}
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One look at the contenders.
    async fn step(
        &self,
        client: &Client,
        our_name: &str,
        owner: i64,
        session: i64,
    ) -> Result<Step, Error> {
        let (children, _) = client.get_children(&self.path).await?;
        let order = contenders(&children, &self.options.contender_markers);
        let Some(i) = order.iter().position(|c| c.name == our_name) else {
            return Ok(Step::Gone);
        };
        let blocker = match self.kind {
            Kind::Exclusive => i.checked_sub(1),
            // A reader waits for the nearest earlier writer only.
            Kind::Read => order[..i].iter().rposition(|c| is_writer(&c.name)),
        };
        match blocker {
            // Waiting for the first contender: when it is deleted we are
            // first, unless it is a write lock that may leave a downgraded
            // reader at its own sequence number (readers ignore those).
            Some(b) => Ok(Step::Wait(
                join(&self.path, &order[b].name),
                b == 0 && (self.kind == Kind::Read || !order[0].name.contains("__WRIT__")),
            )),
            // Our turn. The node is ours (CURATOR-696): its owner was
            // checked when it was created or adopted (`owner`), and a
            // client's session never changes. Its deletion from now on is
            // seen by the guard's monitor.
            None if owner == session => Ok(Step::Holder),
            None => Ok(Step::Gone),
        }
    }
}

enum Step {
    Holder,
    /// Watch this node; `true` when it is the first contender and its
    /// deletion makes us first.
    Wait(String, bool),
    Gone,
}

/// Ownership of a [`Lock`]: release with [`release`](Self::release), or
/// drop it to release in the background.
///
/// A guard does not mean the lock survived every fault: watch
/// [`state`](Self::state) / [`lost`](Self::lost), and make writes that must
/// only happen under the lock with [`guarded`](Self::guarded).
#[derive(Debug)]
pub struct LockGuard {
    client: Client,
    node: String,
    token: i64,
    kind: Kind,
    state: watch::Receiver<LockState>,
    monitor: tokio::task::JoinHandle<()>,
    released: bool,
    /// When it was acquired, and its label in the metrics.
    acquired: Instant,
    label: &'static str,
}

impl LockGuard {
    pub(crate) fn new(client: &Client, node: String, token: i64, kind: Kind) -> Self {
        let (tx, rx) = watch::channel(LockState::Held);
        let monitor = tokio::spawn(monitor(client.clone(), node.clone(), tx));
        let label = match kind {
            Kind::Read => "read",
            Kind::Exclusive if node.contains("__WRIT__") => "write",
            Kind::Exclusive if node.contains("-lease-") => "lease",
            Kind::Exclusive => "mutex",
        };
        Self {
            acquired: Instant::now(),
            label,
            client: client.clone(),
            node,
            token,
            kind,
            state: rx,
            monitor,
            released: false,
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// The session that holds the lock: the guard (and the lock) end with
    /// it, whatever a [`Sessions`](crate::Sessions) does next.
    pub fn session_id(&self) -> zkit::SessionId {
        self.client.session_id()
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Our lock node's path.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The fencing token: our node's creation zxid. Every later holder of
    /// this lock has a larger one, so a resource that remembers the largest
    /// token it has seen can refuse a stale holder.
    pub fn fencing_token(&self) -> i64 {
        self.token
    }

    /// The current [`LockState`]: the guard's own view, corrected by the
    /// client's connection state at the moment of the call (a holder whose
    /// connection is down reads as suspended, one whose session has ended
    /// as lost), even before the guard's monitor has caught up.
    pub fn state(&self) -> LockState {
        let own = *self.state.borrow();
        let conn = self.client.state();
        match own {
            _ if conn.is_terminal() => LockState::Lost,
            LockState::Held | LockState::Reconfirmed if !conn.is_connected() => {
                LockState::Suspended
            }
            own => own,
        }
    }

    /// Whether the lock is (re)confirmed held right now.
    pub fn is_held(&self) -> bool {
        self.state().is_held()
    }

    /// A receiver of every [`LockState`] change.
    pub fn state_watch(&self) -> watch::Receiver<LockState> {
        self.state.clone()
    }

    /// Completes once the lock is [`LockState::Lost`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn lost(&self) {
        let mut rx = self.state.clone();
        let _ = rx.wait_for(|s| *s == LockState::Lost).await;
    }

    /// A transaction fenced by our lock node: committed only if we still
    /// hold the lock, else it fails with [`Error::Fenced`]
    /// ([`Error::is_fenced`]) and writes nothing.
    pub fn guarded(&self) -> MultiWrite {
        self.client.multi().fence(&self.node, Version::Any)
    }

    /// Releases the lock: deletes our node (retrying through connection
    /// losses) and stops watching.
    ///
    /// # Errors
    /// [`Error::SessionExpired`] / [`Error::Closed`]: the session ended, so
    /// the node is gone anyway.
    ///
    /// # Cancel safety
    /// If the future is dropped, the delete continues in the background.
    pub async fn release(mut self) -> Result<(), Error> {
        self.released = true;
        metrics::lock_release(self.label, self.acquired.elapsed());
        self.monitor.abort();
        let client = self.client.clone();
        let node = self.node.clone();
        // Run to completion even if this future is dropped.
        let task = tokio::spawn(async move { delete_retrying(&client, &node).await });
        task.await.unwrap_or(Err(Error::Closed))
    }
}

/// Dropping the guard releases the lock in the background: the delete of
/// our node is sent at once and retried through connection losses.
impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            metrics::lock_release(self.label, self.acquired.elapsed());
            self.monitor.abort();
            delete_in_background(self.client.clone(), self.node.clone());
        }
    }
}

/// Follows the session and our node: Suspended on disconnect, Reconfirmed
/// or Lost on reconnect, Lost on expiry, close or deletion of the node.
async fn monitor(client: Client, node: String, tx: watch::Sender<LockState>) {
    let session = client.session_id().0;
    let mut states = client.state_stream();
    type Event = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<zkit::WatchedEvent, Error>> + Send>,
    >;
    let arm = |w: zkit::OneshotWatcher| -> Event { Box::pin(w.changed()) };
    let mut node_event: Option<Event> = match client.exists_and_watch(&node).await {
        Ok((Some(_), w)) => Some(arm(w)),
        Ok((None, _)) => {
            let _ = tx.send(LockState::Lost);
            return;
        }
        Err(_) => None, // re-armed after the next reconnect
    };
    loop {
        tokio::select! {
            s = states.next_state() => match s {
                Some(SessionState::Disconnected | SessionState::Connecting) => {
                    if tx.borrow().is_held() {
                        let _ = tx.send(LockState::Suspended);
                    }
                }
                Some(SessionState::Connected | SessionState::ConnectedReadOnly) => {
                    if *tx.borrow() == LockState::Suspended {
                        match client.exists_and_watch(&node).await {
                            Ok((Some(stat), w)) if stat.ephemeral_owner == session => {
                                node_event = Some(arm(w));
                                let _ = tx.send(LockState::Reconfirmed);
                            }
                            Ok(_) => {
                                let _ = tx.send(LockState::Lost);
                                return;
                            }
                            Err(_) => {} // disconnected again; wait for the next state
                        }
                    }
                }
                Some(_) | None => {
                    let _ = tx.send(LockState::Lost);
                    return;
                }
            },
            ev = async { node_event.as_mut().expect("guarded by the condition").await },
                if node_event.is_some() =>
            {
                node_event = None;
                match ev {
                    Ok(ev) if ev.event_type == zkit::EventType::NodeDeleted => {
                        let _ = tx.send(LockState::Lost);
                        return;
                    }
                    Ok(_) => match client.exists_and_watch(&node).await {
                        Ok((Some(_), w)) => node_event = Some(arm(w)),
                        Ok((None, _)) => {
                            let _ = tx.send(LockState::Lost);
                            return;
                        }
                        Err(_) => {} // re-checked on reconnect
                    },
                    Err(e) if e.is_retryable() => {}
                    Err(_) => {
                        let _ = tx.send(LockState::Lost);
                        return;
                    }
                }
            }
        }
    }
}
