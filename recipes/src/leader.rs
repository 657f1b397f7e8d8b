//! Leader election: [`LeaderLatch`] (Curator's `LeaderLatch` layout,
//! `<path>/_c_<uuid>-latch-<seq>` holding the participant's id) and
//! [`LeaderSelector`] (run a future while leader, cancel it when leadership
//! is lost; Curator's `LeaderSelector` layout, `<path>/_c_<uuid>-lock-<seq>`).
//!
//! # Suspended connections
//!
//! When the connection drops, a leader cannot know whether its session (and
//! so its leadership) will survive. The default policy is the safe one, as
//! Curator's: leadership is **suspended** at once ([`Leadership::Suspended`];
//! a selector's task is cancelled) and is only held again once the session
//! is back and our node is still first. Fenced writes
//! ([`LeaderLatch::guarded`], [`Leader::guarded`]) stay correct in any case.
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::LeaderLatch;
//!
//! let latch = LeaderLatch::start(&zk, "/election/scheduler", "node-a").await?;
//! latch.await_leadership().await?;
//! println!("leading with token {:?}", latch.fencing_token());
//! latch.close().await?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use zkit::{Client, Error, MultiWrite, SessionState, Version};

use crate::internal::protected::{
    backoff, create_protected, delete_in_background, delete_retrying, join, name_of,
};
use crate::internal::sequence::contenders;
use crate::internal::set_if_changed;
use crate::lock::{Lock, LockOptions, LockState};
use crate::sessions::SessionSource;

/// A participant's view of the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Leadership {
    /// Another participant leads (or the latch is still joining).
    NotLeader,
    /// We lead; the fencing token is our node's creation zxid.
    Leader {
        /// Our node's czxid: larger for every later leader.
        token: i64,
    },
    /// We led when the connection dropped: not leading until confirmed.
    Suspended,
    /// The latch is closed, or its session ended. Final.
    Closed,
}

#[derive(Debug)]
struct LatchInner {
    source: SessionSource,
    /// The session the latch is in now.
    client: Mutex<Client>,
    path: String,
    state: watch::Sender<Leadership>,
    /// Our node and its creation zxid (the fencing token).
    node: Mutex<Option<String>>,
    token: Mutex<i64>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A leader latch: joins the election when started and stays in it until
/// closed; [`is_leader`](Self::is_leader) says whether we lead now.
#[derive(Debug)]
pub struct LeaderLatch {
    inner: Arc<LatchInner>,
}

impl LeaderLatch {
    /// Joins the election at `path` with `id` (stored in our node, as
    /// Curator does; readable by the other participants).
    ///
    /// From a `&Client` the latch ends with its session
    /// ([`Leadership::Closed`]). From `&Sessions` (see [`SessionSource`]) a
    /// session that expires ends our leadership ([`Leadership::NotLeader`],
    /// never carried over) and the latch joins again on a new session, as
    /// Curator's does after LOST.
    ///
    /// # Errors
    /// Session and ACL errors while creating our node.
    ///
    /// # Cancel safety
    /// Dropping the future leaves no node behind.
    pub async fn start(
        source: impl Into<SessionSource>,
        path: impl Into<String>,
        id: &str,
    ) -> Result<Self, Error> {
        let source = source.into();
        let path = path.into();
        let client = source.client().await?;
        let created = create_protected(&client, &path, "latch-", id.as_bytes()).await?;
        let (state, _) = watch::channel(Leadership::NotLeader);
        let inner = Arc::new(LatchInner {
            source,
            client: Mutex::new(client),
            path,
            state,
            node: Mutex::new(Some(created.path)),
            token: Mutex::new(created.stat.czxid),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run_latch(inner.clone(), id.as_bytes().to_vec()));
        *lock(&inner.task) = Some(task);
        Ok(Self { inner })
    }

    /// Whether we lead right now.
    pub fn is_leader(&self) -> bool {
        matches!(self.leadership(), Leadership::Leader { .. })
    }

    /// The current [`Leadership`]. The latch's own view, corrected by the
    /// client's connection state at the moment of the call: a leader whose
    /// connection is down reads as suspended and one whose session has
    /// ended as closed, even before the latch's task has caught up.
    pub fn leadership(&self) -> Leadership {
        let own = *self.inner.state.borrow();
        let conn = self.inner.client().state();
        match own {
            Leadership::Closed => Leadership::Closed,
            // A new session is on its way: not leading meanwhile.
            _ if conn.is_terminal() && self.inner.source.renews() => Leadership::NotLeader,
            _ if conn.is_terminal() => Leadership::Closed,
            Leadership::Leader { .. } if !conn.is_connected() => Leadership::Suspended,
            own => own,
        }
    }

    /// A receiver of every [`Leadership`] change.
    pub fn leadership_watch(&self) -> watch::Receiver<Leadership> {
        self.inner.state.subscribe()
    }

    /// The fencing token while we lead.
    pub fn fencing_token(&self) -> Option<i64> {
        match self.leadership() {
            Leadership::Leader { token } => Some(token),
            _ => None,
        }
    }

    /// Waits until we lead.
    ///
    /// # Errors
    /// [`Error::Closed`] when the latch closes (or its session ends) first.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn await_leadership(&self) -> Result<(), Error> {
        let mut rx = self.inner.state.subscribe();
        let s = rx
            .wait_for(|s| matches!(s, Leadership::Leader { .. } | Leadership::Closed))
            .await
            .map_err(|_| Error::Closed)?;
        match *s {
            Leadership::Closed => Err(Error::Closed),
            _ => Ok(()),
        }
    }

    /// A transaction that first checks our latch node exists: a write that
    /// commits only while our node is in the election (pair it with
    /// [`is_leader`](Self::is_leader), or use the node order). `None` when
    /// we have no node.
    pub fn guarded(&self) -> Option<MultiWrite> {
        let node = lock(&self.inner.node).clone()?;
        Some(self.inner.client().multi().fence(&node, Version::Any))
    }

    /// The participants' ids in election order (the leader first).
    ///
    /// # Errors
    /// Connection and session errors.
    pub async fn participants(&self) -> Result<Vec<String>, Error> {
        let client = self.inner.client();
        let (children, _) = client.get_children(&self.inner.path).await?;
        let mut out = Vec::new();
        for c in contenders(&children, &["-latch-".to_string()]) {
            if let Ok((data, _)) = client.get_data(&join(&self.inner.path, &c.name)).await {
                out.push(String::from_utf8_lossy(&data).into_owned());
            }
        }
        Ok(out)
    }

    /// Leaves the election: deletes our node (the next participant takes
    /// over at once) and ends in [`Leadership::Closed`].
    ///
    /// # Errors
    /// Session errors (the node is then gone with the session anyway).
    pub async fn close(self) -> Result<(), Error> {
        if let Some(t) = lock(&self.inner.task).take() {
            t.abort();
        }
        let node = lock(&self.inner.node).take();
        self.inner.state.send_replace(Leadership::Closed);
        match node {
            Some(n) => delete_retrying(&self.inner.client(), &n).await,
            None => Ok(()),
        }
    }
}

/// Dropping the latch leaves the election: its task stops and our node is
/// deleted in the background (the next participant takes over at once).
impl Drop for LeaderLatch {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.inner.task).take() {
            t.abort();
        }
        if let Some(n) = lock(&self.inner.node).take() {
            self.inner.state.send_replace(Leadership::Closed);
            delete_in_background(self.inner.client(), n);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LatchInner {
    /// The session the latch is in now.
    fn client(&self) -> Client {
        lock(&self.client).clone()
    }
}

/// The latch across sessions: one [`run_session`] per session; from a
/// [`Sessions`](crate::Sessions), an expired session is followed by a new
/// one (our leadership ended with it: `NotLeader`, then we join again).
async fn run_latch(inner: Arc<LatchInner>, id: Vec<u8>) {
    loop {
        let client = inner.client();
        let ended = run_session(&inner, &client, &id).await;
        if !inner.source.retry_on_new_session(&ended) {
            break;
        }
        tracing::info!(path = %inner.path, "latch session expired; joining again on a new session");
        set_leadership(&inner.state, Leadership::NotLeader);
        *lock(&inner.node) = None; // gone with the session: a new node
        match inner.source.client_retrying().await {
            Ok(c) => *lock(&inner.client) = c,
            Err(_) => break, // closed
        }
    }
    set_leadership(&inner.state, Leadership::Closed);
}

/// Publishes a latch's leadership, counting the changes in and out of
/// leading in the metrics.
fn set_leadership(tx: &watch::Sender<Leadership>, s: Leadership) {
    let was = matches!(*tx.borrow(), Leadership::Leader { .. });
    let is = matches!(s, Leadership::Leader { .. });
    set_if_changed(tx, s);
    if is && !was {
        crate::internal::metrics::leadership("latch", "acquired");
    } else if was && !is {
        crate::internal::metrics::leadership("latch", "lost");
    }
}

/// The latch's life in one session: find our place, lead or watch the
/// predecessor, follow the connection; re-create our node if it disappears
/// while the session lives. Returns the error that ended the session (or
/// the latch).
async fn run_session(inner: &LatchInner, client: &Client, id: &[u8]) -> Error {
    let mut states = client.state_stream();
    let markers = vec!["-latch-".to_string()];
    let mut delays = backoff();
    let mut next_in_line = false;
    let set = |s: Leadership| set_leadership(&inner.state, s);
    // A connection loss (seen as an error, or as a state event while
    // waiting): a leader stops leading at once.
    let suspend = || {
        if matches!(*inner.state.borrow(), Leadership::Leader { .. }) {
            set(Leadership::Suspended);
        }
    };
    loop {
        let current = lock(&inner.node).clone();
        let node = match current {
            Some(n) => n,
            None => match create_protected(client, &inner.path, "latch-", id).await {
                Ok(c) => {
                    *lock(&inner.node) = Some(c.path.clone());
                    *lock(&inner.token) = c.stat.czxid;
                    c.path
                }
                Err(e) if e.is_retryable() => {
                    suspend();
                    continue;
                }
                Err(e) => return e,
            },
        };
        // Where are we? Right after the first contender's deletion, when we
        // were second, we know without looking: nothing can sort before us
        // now (sequence numbers only grow), and our node's owner was
        // checked when it was created or adopted (the lock does the same).
        // Our own node is read back and watched right after, as on every
        // path to leadership.
        let (watch_path, lead, first_waiting) = if std::mem::take(&mut next_in_line) {
            (node.clone(), true, false)
        } else {
            let looked = async {
                let (children, _) = client.get_children(&inner.path).await?;
                let order = contenders(&children, &markers);
                let me = order.iter().position(|c| c.name == name_of(&node));
                Ok::<_, Error>((order, me))
            }
            .await;
            let (order, me) = match looked {
                Ok(x) => x,
                Err(e) if e.is_retryable() => {
                    suspend();
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(Error::NoNode) => (Vec::new(), None),
                Err(e) => return e,
            };
            // What to watch: our own node when leading (its loss ends the
            // term), else the predecessor.
            match me {
                None => {
                    *lock(&inner.node) = None; // gone: re-create
                    set(Leadership::NotLeader);
                    continue;
                }
                Some(0) => (node.clone(), true, false),
                Some(i) => (join(&inner.path, &order[i - 1].name), false, i == 1),
            }
        };
        if lead && client.state().is_connected() {
            // Our node is first and ours (its owner was checked when it was
            // created or adopted): lead now, then watch it for deletion.
            set(Leadership::Leader {
                token: *lock(&inner.token),
            });
        }
        let watched = if lead {
            match client.exists_and_watch(&watch_path).await {
                Ok((Some(_), w)) => Ok(w),
                Ok((None, _)) => {
                    // Deleted under us: leadership over; re-join.
                    set(Leadership::NotLeader);
                    *lock(&inner.node) = None;
                    continue;
                }
                Err(e) => Err(e),
            }
        } else {
            match client.get_data_and_watch(&watch_path).await {
                Ok((_, _, w)) => {
                    set(Leadership::NotLeader);
                    Ok(w)
                }
                Err(Error::NoNode) => continue,
                Err(e) => Err(e),
            }
        };
        let watcher = match watched {
            Ok(w) => w,
            Err(e) if e.is_retryable() => {
                suspend();
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                continue;
            }
            Err(e) => return e,
        };
        // Wait for a change of the watched node or of the connection.
        let changed = watcher.changed();
        tokio::pin!(changed);
        loop {
            tokio::select! {
                ev = &mut changed => {
                    next_in_line = first_waiting
                        && matches!(ev, Ok(ev) if ev.event_type == zkit::EventType::NodeDeleted);
                    break;
                }
                s = states.next_state() => match s {
                    Some(SessionState::Disconnected | SessionState::Connecting) => suspend(),
                    Some(SessionState::Connected | SessionState::ConnectedReadOnly) => {
                        if *inner.state.borrow() == Leadership::Suspended {
                            break; // re-check from scratch
                        }
                    }
                    Some(SessionState::Expired) => return Error::SessionExpired,
                    Some(SessionState::AuthFailed) => return Error::AuthFailed,
                    Some(_) | None => return Error::Closed,
                },
            }
        }
    }
}

/// What a [`LeaderSelector`] task gets while it leads.
#[derive(Debug, Clone)]
pub struct Leader {
    client: Client,
    node: String,
    token: i64,
}

impl Leader {
    /// The fencing token of this term (larger for every later term).
    pub fn fencing_token(&self) -> i64 {
        self.token
    }

    /// A transaction that commits only while this term lasts (it checks our
    /// election node first).
    pub fn guarded(&self) -> MultiWrite {
        self.client.multi().fence(&self.node, Version::Any)
    }
}

/// How a term of a [`LeaderSelector`] ended (see
/// [`on_term_end`](LeaderSelector::on_term_end)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TermEnd {
    /// The task returned: leadership was given up.
    Returned {
        /// The term's fencing token.
        token: i64,
    },
    /// The connection dropped and the task was cancelled (the default
    /// suspend policy): leadership was in doubt.
    Suspended {
        /// The term's fencing token.
        token: i64,
    },
    /// Leadership was lost for sure (our node is gone, or the session
    /// expired); the task was cancelled.
    Lost {
        /// The term's fencing token.
        token: i64,
    },
}

type TermHook = Arc<dyn Fn(TermEnd) + Send + Sync>;

/// Runs a task while leader ([`run`](Self::run)); the task is cancelled
/// (dropped) as soon as leadership is lost — or suspended, unless
/// [`cancel_on_suspend(false)`](Self::cancel_on_suspend).
/// [`on_term_end`](Self::on_term_end) is told how each term ended.
#[derive(Clone)]
pub struct LeaderSelector {
    lock: Lock,
    auto_requeue: bool,
    cancel_on_suspend: bool,
    on_term_end: Option<TermHook>,
}

impl std::fmt::Debug for LeaderSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderSelector")
            .field("lock", &self.lock)
            .field("auto_requeue", &self.auto_requeue)
            .field("cancel_on_suspend", &self.cancel_on_suspend)
            .field("on_term_end", &self.on_term_end.is_some())
            .finish()
    }
}

impl LeaderSelector {
    /// A selector at `path`; `id` is stored in our node.
    ///
    /// From a `&Client` the selector ends with its session (`run` then
    /// fails). From `&Sessions` (see [`SessionSource`]) a term ends with its
    /// session as always (the task is cancelled), and the next term is
    /// sought on a new session.
    pub fn new(source: impl Into<SessionSource>, path: impl Into<String>, id: &str) -> Self {
        Self {
            lock: Lock::with_options(source, path, LockOptions::default().data(id.as_bytes())),
            auto_requeue: false,
            cancel_on_suspend: true,
            on_term_end: None,
        }
    }

    /// After a term ends (the task returned or was cancelled), queue again
    /// for the next one (Curator's `autoRequeue`); default off: `run`
    /// returns after one term.
    pub fn auto_requeue(mut self, on: bool) -> Self {
        self.auto_requeue = on;
        self
    }

    /// Cancel the task when the connection is lost (default true, the safe
    /// policy, as Curator's), or only when leadership is lost for sure
    /// (false: the task keeps running while the connection is down, and
    /// its writes must be fenced with [`Leader::guarded`] — they are
    /// refused once the term is over).
    pub fn cancel_on_suspend(mut self, on: bool) -> Self {
        self.cancel_on_suspend = on;
        self
    }

    /// Calls `hook` after each term, once the task has returned or has been
    /// dropped, with how the term ended (Curator's
    /// `stateChanged`/`takeLeadership` return, in one place): the place to
    /// log, count or alert on lost leadership. Runs on the task calling
    /// [`run`](Self::run); keep it short.
    ///
    /// ```no_run
    /// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
    /// use zkit_recipes::{leader::TermEnd, LeaderSelector};
    /// let selector = LeaderSelector::new(&zk, "/election/jobs", "node-a")
    ///     .auto_requeue(true)
    ///     .on_term_end(|end| {
    ///         if matches!(end, TermEnd::Lost { .. }) {
    ///             eprintln!("leadership lost: {end:?}");
    ///         }
    ///     });
    /// selector.run(|leader| async move { /* lead */ }).await?;
    /// # Ok(()) }
    /// ```
    pub fn on_term_end(mut self, hook: impl Fn(TermEnd) + Send + Sync + 'static) -> Self {
        self.on_term_end = Some(Arc::new(hook));
        self
    }

    /// Waits for leadership, runs `task` while leading, gives up
    /// leadership when the task returns (or when leadership is lost, which
    /// drops the task); with auto-requeue, repeats.
    ///
    /// # Errors
    /// Session errors (the session ended: no more terms).
    ///
    /// # Cancel safety
    /// Dropping the future drops the running task and releases leadership
    /// in the background.
    pub async fn run<F, Fut>(&self, mut task: F) -> Result<(), Error>
    where
        F: FnMut(Leader) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let guard = self.lock.acquire().await?;
            let leader = Leader {
                client: guard.client().clone(),
                node: guard.node().to_string(),
                token: guard.fencing_token(),
            };
            let token = guard.fencing_token();
            crate::internal::metrics::leadership("selector", "acquired");
            let mut states = guard.state_watch();
            let cancel_on_suspend = self.cancel_on_suspend;
            let ended = async move {
                match states
                    .wait_for(|s| {
                        *s == LockState::Lost || (cancel_on_suspend && *s == LockState::Suspended)
                    })
                    .await
                {
                    Ok(s) if *s == LockState::Suspended => TermEnd::Suspended { token },
                    _ => TermEnd::Lost { token },
                }
            };
            let end = tokio::select! {
                () = task(leader) => TermEnd::Returned { token },
                end = ended => {
                    tracing::info!(node = %guard.node(), ?end, "leadership ended: task cancelled");
                    end
                }
            };
            crate::internal::metrics::leadership(
                "selector",
                match end {
                    TermEnd::Returned { .. } => "returned",
                    TermEnd::Suspended { .. } => "suspended",
                    _ => "lost",
                },
            );
            if let Some(hook) = &self.on_term_end {
                hook(end);
            }
            // Gives the node back (a lost node is gone already); with the
            // session over, the next acquire reports it.
            let _ = guard.release().await;
            if !self.auto_requeue {
                return Ok(());
            }
        }
    }
}

/// Who leads an election now, as seen by a participant of any layout
/// ([`LeaderLatch`]'s `-latch-` nodes, [`LeaderSelector`]'s `-lock-` nodes,
/// and Curator's), from one [`LeaderObserver`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ObservedLeader {
    /// The leader's participant id (its node's data).
    pub id: String,
    /// The leader's node.
    pub node: String,
    /// Its node's creation zxid: every later leader's is larger (the
    /// leader's own [`LeaderLatch::fencing_token`]).
    pub fencing_token: i64,
}

/// Follows who leads the election at a path without taking part (etcd's
/// `Observe`): [`current`](Self::current) is the leader now (`None` when no
/// one leads), [`changed`](Self::changed) waits for the next change.
///
/// One persistent watch on the election path sees every join and leave;
/// after a reconnect the election is read again (events missed meanwhile
/// are not replayed). Built from `&Sessions` it carries on after an expiry;
/// from a `&Client` it stops with its session ([`changed`](Self::changed)
/// then fails).
///
/// ```no_run
/// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
/// use zkit_recipes::leader::LeaderObserver;
///
/// let mut leader = LeaderObserver::observe(&zk, "/election/scheduler");
/// leader.initialized().await?;
/// loop {
///     println!("leader now: {:?}", leader.current().map(|l| l.id));
///     leader.changed().await?;
/// }
/// # }
/// ```
///
/// Dropping it stops its task; the client removes the watch when its last
/// watcher is gone.
#[derive(Debug)]
pub struct LeaderObserver {
    rx: watch::Receiver<Option<ObservedLeader>>,
    ready: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaderObserver {
    /// Starts following the election at `path`.
    pub fn observe(source: impl Into<SessionSource>, path: impl Into<String>) -> Self {
        let (tx, rx) = watch::channel(None);
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(observe_sessions(source.into(), path.into(), tx, ready_tx));
        Self { rx, ready, task }
    }

    /// The leader now, as last read.
    pub fn current(&self) -> Option<ObservedLeader> {
        self.rx.borrow().clone()
    }

    /// Waits until the election has been read once.
    ///
    /// # Errors
    /// [`Error::Closed`] when the session ended before.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn initialized(&self) -> Result<(), Error> {
        let mut r = self.ready.clone();
        r.wait_for(|ok| *ok)
            .await
            .map(drop)
            .map_err(|_| Error::Closed)
    }

    /// Waits for the next change of leader and returns it.
    ///
    /// # Errors
    /// [`Error::Closed`] when the session ended (no more changes).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn changed(&mut self) -> Result<Option<ObservedLeader>, Error> {
        self.rx.changed().await.map_err(|_| Error::Closed)?;
        Ok(self.rx.borrow_and_update().clone())
    }

    /// A receiver of the leader, for `select!` or another task.
    pub fn receiver(&self) -> watch::Receiver<Option<ObservedLeader>> {
        self.rx.clone()
    }
}

/// Dropping the observer stops its task.
impl Drop for LeaderObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The election's first contender, with its id; `None` when empty.
async fn read_leader(client: &Client, path: &str) -> Result<Option<ObservedLeader>, Error> {
    loop {
        let children = match client.get_children(path).await {
            Ok((c, _)) => c,
            Err(Error::NoNode) => return Ok(None),
            Err(e) => return Err(e),
        };
        let markers = ["-latch-".to_string(), "-lock-".to_string()];
        let Some(first) = contenders(&children, &markers).into_iter().next() else {
            return Ok(None);
        };
        let node = join(path, &first.name);
        match client.get_data(&node).await {
            Ok((data, stat)) => {
                return Ok(Some(ObservedLeader {
                    id: String::from_utf8_lossy(&data).into_owned(),
                    node,
                    fencing_token: stat.czxid,
                }))
            }
            Err(Error::NoNode) => {} // it left meanwhile: look again
            Err(e) => return Err(e),
        }
    }
}

/// [`observe`] on each session of `source` in turn.
async fn observe_sessions(
    source: SessionSource,
    path: String,
    tx: watch::Sender<Option<ObservedLeader>>,
    ready: watch::Sender<bool>,
) {
    loop {
        let Ok(client) = source.client_retrying().await else {
            return;
        };
        observe(&client, &path, &tx, &ready).await;
        if !source.retry_on_new_session(&Error::SessionExpired)
            || client.state() != SessionState::Expired
        {
            return;
        }
    }
}

async fn observe(
    client: &Client,
    path: &str,
    tx: &watch::Sender<Option<ObservedLeader>>,
    ready: &watch::Sender<bool>,
) {
    let mut delays = backoff();
    let mut states = client.state_stream();
    let mut events = loop {
        match client.add_watch(path, zkit::AddWatchMode::Persistent).await {
            Ok(w) => break w,
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(_) => return,
        }
    };
    'reload: loop {
        match read_leader(client, path).await {
            Ok(leader) => {
                set_if_changed(tx, leader);
                ready.send_if_modified(|r| !std::mem::replace(r, true));
            }
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                continue;
            }
            Err(_) => return,
        }
        let mut disconnected = false;
        loop {
            tokio::select! {
                ev = events.changed() => {
                    if ev.is_err() {
                        return;
                    }
                    // A join, a leave, or the path itself created/deleted.
                    continue 'reload;
                }
                s = states.next_state() => match s {
                    Some(SessionState::Disconnected | SessionState::Connecting) => disconnected = true,
                    Some(SessionState::Connected | SessionState::ConnectedReadOnly) => {
                        if disconnected {
                            continue 'reload; // events may have been missed
                        }
                    }
                    _ => return,
                },
            }
        }
    }
}
