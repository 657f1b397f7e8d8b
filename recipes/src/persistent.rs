//! Nodes kept in place by a background task: [`PersistentNode`] (Curator's
//! `PersistentNode`) and [`PersistentTtlNode`] (Curator's
//! `PersistentTtlNode`).
//!
//! A `PersistentNode` is a node at a path, in a chosen [`CreateMode`], with
//! our data. It is created in the background as soon as the handle exists,
//! re-created when somebody deletes it, checked again after every reconnect
//! and, when built from [`Sessions`](crate::Sessions), re-created on each
//! new session after expiry. [`close`](PersistentNode::close) (or dropping
//! the handle) deletes it, only if it is still ours.
//!
//! Where Curator adopts whatever node it finds under the name (its
//! `NODEEXISTS` path writes our data into it, RECIPES.md §5.10), this
//! recipe looks at the node's owner first (RECIPES.md §6 item 12):
//!
//! | found under the name | ephemeral modes | persistent modes |
//! |---|---|---|
//! | an ephemeral of our live session | adopted (our data written) | [`Conflict`](NodeState::Conflict): waits for it to go |
//! | an ephemeral of an expired session of ours | deleted, ours created | deleted, ours created |
//! | an ephemeral of another live session | [`Conflict`](NodeState::Conflict): waits for it to go | [`Conflict`](NodeState::Conflict) |
//! | a persistent, container or TTL node | [`Conflict`](NodeState::Conflict) | adopted (our data written) |
//!
//! A node in conflict is never written to nor deleted; the keeper watches
//! it and creates ours as soon as it is gone. Two handles of one session
//! (or of one `Sessions`) for one path do not share the node: the second
//! waits in `Conflict` until the first is closed.
//!
//! The keeper watches the node with a one-shot data watch. On ZooKeeper
//! before 3.9 a session keeps one watch mode per path (ZOOKEEPER-4466), so
//! a persistent watch of the *same session* on exactly this path (a
//! [`NodeCache`](crate::cache::NodeCache) of the node itself) is disturbed
//! by it: watch the node from another session there.
//!
//! Sequential modes are always protected, as in Curator's
//! `withProtection()`: the first node is `<parent>/_c_<uuid>-<name><seq>`
//! (a create whose reply was lost is found again by its GUID). After it
//! was lost it is re-created under **the same full name**, in the mode
//! without the sequence (EPHEMERAL_SEQUENTIAL → EPHEMERAL), as Curator 5.4
//! does (CURATOR-483; observed in the interop tests: the GUID stays in the
//! name), so observers see one stable path.
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use std::time::Duration;
//! use zkit::CreateMode;
//! use zkit_recipes::PersistentNode;
//!
//! let node = PersistentNode::new(&zk, "/services/api/host-1", CreateMode::Ephemeral, b"10.0.0.5:80");
//! assert!(node.wait_for_initial_create(Duration::from_secs(10)).await?);
//! node.set_data(b"10.0.0.5:8080").await?; // kept across re-creations
//! node.close().await?; // deletes it (only if it is still ours)
//! # Ok(())
//! # }
//! ```
//!
//! # Cancellation
//!
//! Everything happens on a task spawned by the constructor (which needs a
//! tokio runtime). Dropping the handle, or the future of
//! [`close`](PersistentNode::close), does not stop the cleanup: the task
//! finishes it in the background (a guaranteed delete, retried through
//! connection losses while the session lives), then ends. A request the
//! task already sent is never abandoned half-way: closing waits for its
//! reply, so the delete goes out after any create of ours.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zkit::{
    Acl, Client, CreateMode, CreateOptions, Error, EventType, OneshotWatcher, SessionId,
    SessionState, Stat, Version,
};

use crate::internal::held::Held;
use crate::internal::protected::{
    backoff, delete_in_background, ensure_containers, join, name_of, new_guid,
};
use crate::internal::set_if_changed;
use crate::sessions::SessionSource;

/// Where a [`PersistentNode`] (or [`PersistentTtlNode`]) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeState {
    /// No node of ours right now: creating it (at first, or again after
    /// it was deleted, its session expired or the connection came back).
    Creating,
    /// Our node exists at this path (the full path: with the GUID and
    /// sequence for sequential modes) and was given our data.
    Created(String),
    /// Another node holds the name and is not ours to adopt (see the
    /// [module docs](self)): we wait for it to go, then create ours.
    Conflict {
        /// Its ephemeral owner (0: a persistent, container or TTL node).
        /// Our own session id when another handle of this process holds
        /// the name.
        owner: SessionId,
    },
    /// The parent is missing and [`create_parents`] is off: we wait for
    /// it to appear.
    ///
    /// [`create_parents`]: PersistentNodeOptions::create_parents
    NoParent,
    /// Cannot go on: [`Error::NoAuth`], [`Error::InvalidAcl`],
    /// [`Error::NoChildrenForEphemerals`], [`Error::Unimplemented`] (TTL
    /// nodes on a server without extended types),
    /// [`Error::InvalidArgument`], or the session ended on a recipe built
    /// from a `&Client` ([`Error::SessionExpired`], [`Error::Closed`]).
    /// Final: nothing is retried.
    Failed(Error),
    /// Closed by [`PersistentNode::close`] or by dropping the handle.
    /// Final.
    Closed,
}

impl NodeState {
    /// Whether our node exists with our data.
    pub fn is_created(&self) -> bool {
        matches!(self, Self::Created(_))
    }

    /// Whether no further state can follow (`Failed`, `Closed`).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::Closed)
    }
}

/// Settings of a [`PersistentNode`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PersistentNodeOptions {
    /// The create mode. Sequential modes are always protected (see the
    /// [module docs](self)); [`CreateMode::Container`] and the TTL modes
    /// are kept like persistent nodes (a container is re-created if the
    /// server reaps it, a TTL node if it expires).
    pub mode: CreateMode,
    /// Names a non-sequential node `_c_<uuid>-<name>` (a fresh GUID per
    /// handle), like Curator's `useProtection`. Default `false`; always on
    /// for sequential modes.
    pub protected: bool,
    /// Creates missing ancestors as containers (default `true`), also when
    /// they are reaped later. When `false`, a missing parent is reported as
    /// [`NodeState::NoParent`] and waited for.
    pub create_parents: bool,
    /// The node's ACL (default: open).
    pub acl: Vec<Acl>,
    /// Whether close and drop delete the node (the TTL node keeps its
    /// parent: it expires by itself).
    delete_on_close: bool,
}

impl PersistentNodeOptions {
    /// Options for a node in `mode`, unprotected, with container parents
    /// and the open ACL.
    pub fn new(mode: CreateMode) -> Self {
        Self {
            mode,
            protected: false,
            create_parents: true,
            acl: Acl::open_unsafe(),
            delete_on_close: true,
        }
    }

    /// Sets [`protected`](Self::protected).
    #[must_use]
    pub fn protected(mut self, protected: bool) -> Self {
        self.protected = protected;
        self
    }

    /// Sets [`create_parents`](Self::create_parents).
    #[must_use]
    pub fn create_parents(mut self, create: bool) -> Self {
        self.create_parents = create;
        self
    }

    /// Sets the node's ACL.
    #[must_use]
    pub fn acl(mut self, acl: Vec<Acl>) -> Self {
        self.acl = acl;
        self
    }
}

/// What the handle asks of its keeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    Close { delete: bool },
}

/// State shared by a handle and its keeper task.
#[derive(Debug)]
struct Shared {
    /// Our data and its generation (bumped by every `set_data`).
    data: Mutex<(u64, Vec<u8>)>,
    /// The latest generation asked for (wakes the keeper).
    wanted: watch::Sender<u64>,
    /// The latest generation known to be in our node.
    written: watch::Sender<u64>,
    state: watch::Sender<NodeState>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A node kept in place with our data (see the [module docs](self)).
///
/// Built from a `&Client`, it lives as long as that session (an ephemeral
/// node ends with it; the state becomes [`NodeState::Failed`] with
/// [`Error::SessionExpired`]). Built from `&Sessions` (see
/// [`SessionSource`]), it is re-created on each new session after expiry,
/// with the latest data; a leftover ephemeral of the expired session is
/// deleted first.
///
/// Dropping the handle deletes the node in the background (only if it is
/// still ours: same ephemeral owner, or for persistent modes the same
/// incarnation, by czxid).
#[derive(Debug)]
pub struct PersistentNode {
    path: String,
    shared: Arc<Shared>,
    close_tx: watch::Sender<Closing>,
    delete_on_close: bool,
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl PersistentNode {
    /// Starts keeping a node at `path` in `mode` with `data`, on `source`
    /// (`&Client` or `&Sessions`), with the default options otherwise
    /// (unprotected, container parents, open ACL).
    ///
    /// # Panics
    /// Outside a tokio runtime (the keeper is a spawned task).
    pub fn new(
        source: impl Into<SessionSource>,
        path: impl Into<String>,
        mode: CreateMode,
        data: impl Into<Vec<u8>>,
    ) -> Self {
        Self::with_options(source, path, data, PersistentNodeOptions::new(mode))
    }

    /// Starts keeping a node at `path` with `data` and `options`. For
    /// sequential modes `path` is the prefix (`/dir/name-`); the node's
    /// full path is in [`NodeState::Created`].
    ///
    /// An unusable `path` or mode shows as [`NodeState::Failed`].
    ///
    /// # Panics
    /// Outside a tokio runtime (the keeper is a spawned task).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
    /// use zkit::CreateMode;
    /// use zkit_recipes::persistent::{NodeState, PersistentNode, PersistentNodeOptions};
    ///
    /// let options = PersistentNodeOptions::new(CreateMode::EphemeralSequential).create_parents(false);
    /// let node = PersistentNode::with_options(&zk, "/workers/worker-", b"", options);
    /// let mut states = node.states();
    /// let state = states.wait_for(|s| s.is_created() || s.is_terminal()).await.ok().map(|s| s.clone());
    /// if let Some(NodeState::Created(path)) = state {
    ///     println!("registered as {path}"); // /workers/_c_<uuid>-worker-0000000007
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_options(
        source: impl Into<SessionSource>,
        path: impl Into<String>,
        data: impl Into<Vec<u8>>,
        options: PersistentNodeOptions,
    ) -> Self {
        let path = path.into();
        let (wanted, wanted_rx) = watch::channel(0);
        let shared = Arc::new(Shared {
            data: Mutex::new((0, data.into())),
            wanted,
            written: watch::channel(0).0,
            state: watch::channel(NodeState::Creating).0,
        });
        let (close_tx, close_rx) = watch::channel(Closing::Open);
        let delete_on_close = options.delete_on_close;
        let keeper = Keeper::new(
            source.into(),
            &path,
            options,
            shared.clone(),
            close_rx,
            wanted_rx,
        );
        let task = tokio::spawn(keeper.run());
        Self {
            path,
            shared,
            close_tx,
            delete_on_close,
            task: Some(task),
        }
    }

    /// The path this node was asked for (for sequential modes the prefix;
    /// see [`actual_path`](Self::actual_path)).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Our node's full path while it exists ([`NodeState::Created`]).
    pub fn actual_path(&self) -> Option<String> {
        match &*self.shared.state.borrow() {
            NodeState::Created(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// Where the node stands now.
    pub fn state(&self) -> NodeState {
        self.shared.state.borrow().clone()
    }

    /// A receiver of every state change, for `select!` or another task.
    /// It sees [`NodeState::Closed`] once the node is closed.
    pub fn states(&self) -> watch::Receiver<NodeState> {
        self.shared.state.subscribe()
    }

    /// Our data (the latest given to [`set_data`](Self::set_data), or the
    /// initial data), whether or not it reached the node yet.
    pub fn data(&self) -> Vec<u8> {
        locked(&self.shared.data).1.clone()
    }

    /// Waits at most `timeout` until our node exists: `Ok(true)` once it
    /// is [`Created`](NodeState::Created) (if it was lost meanwhile, this
    /// waits for its re-creation), `Ok(false)` on timeout.
    ///
    /// # Errors
    /// The error of [`NodeState::Failed`]; [`Error::Closed`] once closed.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_for_initial_create(&self, timeout: Duration) -> Result<bool, Error> {
        wait_created(self.states(), timeout).await
    }

    /// Replaces our data: written into our node now if it exists, and used
    /// for every re-creation from now on (also after session expiry).
    ///
    /// Resolves once the data is in our node, or at once while the keeper
    /// waits for the name ([`Conflict`](NodeState::Conflict)) or the parent
    /// ([`NoParent`](NodeState::NoParent)): the creation that follows
    /// carries it. While disconnected (or, from `Sessions`, between
    /// sessions) it waits until the node is back with this data.
    ///
    /// # Errors
    /// The error of [`NodeState::Failed`]; [`Error::Closed`] once closed.
    ///
    /// # Cancel safety
    /// The data is recorded before the first await: dropping the future
    /// does not undo it, the keeper writes it in the background.
    pub async fn set_data(&self, data: &[u8]) -> Result<(), Error> {
        let generation = {
            let mut d = locked(&self.shared.data);
            d.0 += 1;
            d.1 = data.to_vec();
            // Under the lock: generations reach the keeper in order.
            self.shared.wanted.send_replace(d.0);
            d.0
        };
        let mut written = self.shared.written.subscribe();
        let mut state = self.shared.state.subscribe();
        loop {
            if *written.borrow_and_update() >= generation {
                return Ok(());
            }
            match &*state.borrow_and_update() {
                // The keeper reads our data afresh when it leaves these
                // waits (it sets `Creating` first), so the next creation
                // carries it.
                NodeState::Conflict { .. } | NodeState::NoParent => return Ok(()),
                NodeState::Failed(e) => return Err(e.clone()),
                NodeState::Closed => return Err(Error::Closed),
                // A create may be in flight with the previous data: wait
                // for the keeper to write ours.
                _ => {}
            }
            // Both senders live in `shared`, which we hold: never closed.
            tokio::select! {
                _ = written.changed() => {}
                _ = state.changed() => {}
            }
        }
    }

    /// Stops keeping the node and deletes it if it is still ours (a
    /// guaranteed delete: retried through connection losses while the
    /// session lives). A node that is not ours (another session's, or a
    /// newer persistent node under the name) is left alone.
    ///
    /// # Errors
    /// The delete's error when it cannot be done: [`Error::NotEmpty`] (the
    /// node has children), [`Error::NoAuth`], or the session's end for a
    /// persistent node. An ephemeral node whose session ended is gone
    /// already: `Ok`.
    ///
    /// # Cancel safety
    /// Dropping the future does not stop the close: the delete finishes in
    /// the background.
    pub async fn close(self) -> Result<(), Error> {
        let delete = self.delete_on_close;
        self.close_with(delete).await
    }

    /// Closes, deleting the node or not.
    pub(crate) async fn close_with(mut self, delete: bool) -> Result<(), Error> {
        let _ = self.close_tx.send(Closing::Close { delete });
        let task = self.task.take();
        drop(self);
        match task {
            Some(t) => t.await.unwrap_or(Err(Error::Closed)),
            None => Ok(()),
        }
    }
}

/// Dropping the handle closes the node in the background: the keeper
/// finishes any request in flight, then deletes the node if it is still
/// ours (guaranteed delete), then ends.
impl Drop for PersistentNode {
    fn drop(&mut self) {
        if self.task.is_some() {
            let _ = self.close_tx.send(Closing::Close {
                delete: self.delete_on_close,
            });
        }
    }
}

/// Waits for `Created` (true), a terminal state (its error) or `timeout`
/// (false).
async fn wait_created(
    mut rx: watch::Receiver<NodeState>,
    timeout: Duration,
) -> Result<bool, Error> {
    let r = tokio::time::timeout(timeout, rx.wait_for(|s| s.is_created() || s.is_terminal())).await;
    match r {
        Err(_) => Ok(false),
        Ok(Err(_)) => Err(Error::Closed),
        Ok(Ok(s)) => match &*s {
            NodeState::Created(_) => Ok(true),
            NodeState::Failed(e) => Err(e.clone()),
            _ => Err(Error::Closed),
        },
    }
}

/// Why the keeper stopped serving a session.
enum Exit {
    /// Closed by the handle; whether to delete our node.
    Close(bool),
    /// The session ended.
    SessionEnded,
    /// A failure that retrying does not fix.
    Failed(Error),
}

/// The handle's close request, raced against every wait of the keeper.
struct CloseSignal {
    rx: watch::Receiver<Closing>,
    /// What a dropped handle means.
    delete_on_drop: bool,
}

impl CloseSignal {
    /// Resolves when the handle closes (or is gone).
    async fn closed(&mut self) -> Exit {
        let delete = self.delete_on_drop;
        match self.rx.wait_for(|c| *c != Closing::Open).await {
            Ok(c) => Exit::Close(matches!(*c, Closing::Close { delete: true })),
            Err(_) => Exit::Close(delete),
        }
    }

    /// Runs `f` unless the handle closes first.
    async fn or<F: std::future::Future>(&mut self, f: F) -> Result<F::Output, Exit> {
        tokio::select! {
            biased;
            exit = self.closed() => Err(exit),
            v = f => Ok(v),
        }
    }
}

/// The background task behind a [`PersistentNode`]: one per handle, so
/// every create, write and delete of the node is serialised.
struct Keeper {
    source: SessionSource,
    shared: Arc<Shared>,
    opts: PersistentNodeOptions,
    close: CloseSignal,
    wanted_rx: watch::Receiver<u64>,
    /// The node's full path: fixed from the start, or (sequential) known
    /// once the server named it.
    node: Option<String>,
    /// The directory and name part, for a sequential first create.
    parent: String,
    name: String,
    /// The GUID of a sequential create (a fresh one after a foreign match).
    guid: String,
    /// The mode for creating `node` by its full name.
    fixed_mode: CreateMode,
    /// The czxid of the incarnation we created or adopted (persistent
    /// modes: what close may delete).
    czxid: Option<i64>,
    /// A create whose reply was lost: the last zxid seen before it (a
    /// newer node under the name may be ours).
    unsure_since: Option<i64>,
    /// A sequential create whose reply was lost (look for the GUID).
    unsure_sequential: bool,
    /// The session in use.
    client: Option<Client>,
    /// The name, held against other handles of this process.
    held: Option<Held>,
    /// A path or mode we cannot use.
    invalid: Option<&'static str>,
}

/// The mode a sequential node is re-created in under its full name.
fn without_sequence(mode: CreateMode) -> CreateMode {
    match mode {
        CreateMode::EphemeralSequential => CreateMode::Ephemeral,
        CreateMode::PersistentSequential => CreateMode::Persistent,
        CreateMode::PersistentSequentialWithTtl(t) => CreateMode::PersistentWithTtl(t),
        other => other,
    }
}

fn parent_of(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((p, _)) => p,
    }
}

/// The error a session's terminal state stands for.
fn ended(state: SessionState) -> Error {
    match state {
        SessionState::Expired => Error::SessionExpired,
        SessionState::AuthFailed => Error::AuthFailed,
        _ => Error::Closed,
    }
}

impl Keeper {
    fn new(
        source: SessionSource,
        path: &str,
        opts: PersistentNodeOptions,
        shared: Arc<Shared>,
        close_rx: watch::Receiver<Closing>,
        wanted_rx: watch::Receiver<u64>,
    ) -> Self {
        let parent = parent_of(path).to_string();
        let name = name_of(path).to_string();
        let guid = new_guid();
        let invalid = if !path.starts_with('/') || path == "/" {
            Some("a PersistentNode needs an absolute path below the root")
        } else if name.is_empty() && !opts.mode.is_sequential() {
            Some("a PersistentNode path must not end with '/'")
        } else {
            None
        };
        let node = if opts.mode.is_sequential() {
            None
        } else if opts.protected {
            Some(join(&parent, &format!("{guid}{name}")))
        } else {
            Some(path.to_string())
        };
        Self {
            source,
            shared,
            fixed_mode: without_sequence(opts.mode),
            close: CloseSignal {
                rx: close_rx,
                delete_on_drop: opts.delete_on_close,
            },
            opts,
            wanted_rx,
            node,
            parent,
            name,
            guid,
            czxid: None,
            unsure_since: None,
            unsure_sequential: false,
            client: None,
            held: None,
            invalid,
        }
    }

    fn set_state(&self, s: NodeState) {
        set_if_changed(&self.shared.state, s);
    }

    /// Our data and its generation (marks the generation seen).
    fn wanted(&mut self) -> (u64, Vec<u8>) {
        self.wanted_rx.borrow_and_update();
        let d = locked(&self.shared.data);
        (d.0, d.1.clone())
    }

    fn mark_written(&self, generation: u64) {
        self.shared.written.send_if_modified(|w| {
            let newer = generation > *w;
            if newer {
                *w = generation;
            }
            newer
        });
    }

    fn ephemeral(&self) -> bool {
        self.opts.mode.is_ephemeral()
    }

    /// Whether a node found under the name is ours to keep (see the module
    /// docs' table).
    fn is_ours(&self, client: &Client, stat: &Stat) -> bool {
        if self.ephemeral() {
            stat.ephemeral_owner == client.session_id().0
        } else {
            stat.ephemeral_owner == 0
        }
    }

    async fn run(mut self) -> Result<(), Error> {
        let exit = match self.invalid {
            Some(why) => Exit::Failed(Error::InvalidArgument(why.into())),
            None => self.serve().await,
        };
        let delete = match exit {
            Exit::Close(delete) => delete,
            Exit::SessionEnded | Exit::Failed(_) => {
                let e = match exit {
                    Exit::Failed(e) => e,
                    _ => Error::Closed,
                };
                tracing::warn!(path = ?self.node, error = %e, "persistent node failed");
                self.set_state(NodeState::Failed(e));
                match self.close.closed().await {
                    Exit::Close(delete) => delete,
                    _ => false,
                }
            }
        };
        let r = if delete {
            self.delete_ours().await
        } else {
            Ok(())
        };
        self.set_state(NodeState::Closed);
        r
    }

    /// Keeps the node on each session of the source in turn.
    async fn serve(&mut self) -> Exit {
        loop {
            let client = match self.close.or(self.source.client_retrying()).await {
                Err(exit) => return exit,
                Ok(Err(e)) => return Exit::Failed(e),
                Ok(Ok(c)) => c,
            };
            self.client = Some(client.clone());
            match self.on_session(&client).await {
                Exit::SessionEnded => {
                    let state = client.state();
                    if state == SessionState::Expired
                        && self.source.retry_on_new_session(&Error::SessionExpired)
                    {
                        tracing::info!(path = ?self.node, "session expired; re-creating on a new session");
                        self.set_state(NodeState::Creating);
                        continue;
                    }
                    let e = if state.is_terminal() {
                        ended(state)
                    } else {
                        Error::Closed
                    };
                    return Exit::Failed(e);
                }
                other => return other,
            }
        }
    }

    /// Keeps the node while `client`'s session lives.
    async fn on_session(&mut self, client: &Client) -> Exit {
        if let Err(exit) = self.hold(client).await {
            return exit;
        }
        let mut states = client.state_stream();
        let mut write = true;
        loop {
            let watcher = match self.reconcile(client, write).await {
                Ok(w) => w,
                Err(exit) => return exit,
            };
            let changed = watcher.changed();
            tokio::pin!(changed);
            let mut disconnected = false;
            write = loop {
                tokio::select! {
                    exit = self.close.closed() => return exit,
                    ev = &mut changed => match ev {
                        // Somebody else's write: left alone (two keepers
                        // of one persistent node would fight otherwise).
                        Ok(ev) => break ev.event_type != EventType::NodeDataChanged,
                        Err(_) => return Exit::SessionEnded,
                    },
                    s = states.next_state() => match s {
                        Some(SessionState::Disconnected | SessionState::Connecting) => disconnected = true,
                        Some(SessionState::Connected | SessionState::ConnectedReadOnly) => {
                            // Events may have coalesced: look again.
                            if disconnected {
                                break true;
                            }
                        }
                        _ => return Exit::SessionEnded,
                    },
                    _ = self.wanted_rx.changed() => break true,
                }
            };
        }
    }

    /// Takes the name in this process's registry (fixed names only),
    /// waiting while another handle has it.
    async fn hold(&mut self, client: &Client) -> Result<(), Exit> {
        if self.held.is_some() || self.opts.mode.is_sequential() {
            return Ok(());
        }
        let Some(node) = self.node.clone() else {
            return Ok(());
        };
        loop {
            if let Some(h) = Held::take(self.source.scope(client), &node) {
                self.held = Some(h);
                self.set_state(NodeState::Creating);
                return Ok(());
            }
            self.set_state(NodeState::Conflict {
                owner: client.session_id(),
            });
            self.close
                .or(tokio::time::sleep(Duration::from_millis(50)))
                .await?;
        }
    }

    /// Brings the node to "ours, with our data" (writing the data when
    /// `write`, or when adopting a node) and returns a watch on it.
    async fn reconcile(&mut self, client: &Client, write: bool) -> Result<OneshotWatcher, Exit> {
        let mut delays = backoff();
        loop {
            let Some(path) = self.node.clone() else {
                if let Err(e) = self.create_sequential(client).await {
                    let parent = self.parent.clone();
                    self.create_failed(client, &parent, e, &mut delays).await?;
                }
                continue;
            };
            match client.get_data_and_watch(&path).await {
                Ok((data, stat, watcher)) => {
                    if self.is_ours(client, &stat) {
                        let (generation, want) = self.wanted();
                        let adopting = self.czxid != Some(stat.czxid);
                        if data[..] != want[..] && (write || adopting) {
                            drop(watcher);
                            match client
                                .set_data(&path, &want, Version::Exact(stat.version))
                                .await
                            {
                                Ok(st) => {
                                    self.czxid = Some(st.czxid);
                                    self.mark_written(generation);
                                }
                                Err(Error::BadVersion | Error::NoNode) => {}
                                Err(e) => self.retry_or_exit(e, &mut delays).await?,
                            }
                            continue;
                        }
                        if adopting {
                            tracing::debug!(%path, "persistent node adopted");
                        }
                        self.czxid = Some(stat.czxid);
                        self.unsure_since = None;
                        if data[..] == want[..] {
                            self.mark_written(generation);
                        }
                        self.set_state(NodeState::Created(path));
                        return Ok(watcher);
                    }
                    let owner = stat.ephemeral_owner;
                    if owner != 0 && owner != client.session_id().0 && self.source.was_ours(owner) {
                        // Left by an expired session of ours that the
                        // server has not expired yet (the client can tell
                        // first): nobody else uses it, so delete it rather
                        // than wait up to its session timeout.
                        drop(watcher);
                        tracing::debug!(%path, owner = %SessionId(owner), "deleting our old session's node");
                        match client.delete(&path, Version::Exact(stat.version)).await {
                            Ok(()) | Err(Error::BadVersion | Error::NoNode) => {}
                            Err(e) => self.retry_or_exit(e, &mut delays).await?,
                        }
                        continue;
                    }
                    tracing::debug!(%path, owner = %SessionId(owner), "name taken; waiting for it to go");
                    self.set_state(NodeState::Conflict {
                        owner: SessionId(owner),
                    });
                    if self.close.or(watcher.changed()).await?.is_err() {
                        return Err(Exit::SessionEnded);
                    }
                    // Before reading our data again (see `set_data`).
                    self.set_state(NodeState::Creating);
                }
                Err(Error::NoNode) => {
                    self.set_state(NodeState::Creating);
                    let (generation, want) = self.wanted();
                    let fence = client.last_zxid();
                    let options = CreateOptions::new(self.fixed_mode).acl(self.opts.acl.clone());
                    match client.create(&path, &want, &options).await {
                        Ok((_, stat)) => {
                            tracing::debug!(%path, "persistent node created");
                            self.czxid = Some(stat.czxid);
                            self.unsure_since = None;
                            self.mark_written(generation);
                        }
                        Err(Error::NodeExists) => {}
                        Err(e) => {
                            if e.is_retryable() {
                                self.unsure_since.get_or_insert(fence);
                            }
                            let parent = parent_of(&path).to_string();
                            self.create_failed(client, &parent, e, &mut delays).await?;
                        }
                    }
                }
                Err(e) => self.retry_or_exit(e, &mut delays).await?,
            }
        }
    }

    /// First create of a sequential node, protected by our GUID.
    async fn create_sequential(&mut self, client: &Client) -> Result<(), Error> {
        if self.unsure_sequential {
            if let Some((path, stat)) = find_guid(client, &self.parent, &self.guid).await? {
                if !self.ephemeral() || stat.ephemeral_owner == client.session_id().0 {
                    tracing::debug!(%path, "adopted our node after a lost create reply");
                    self.node = Some(path);
                    self.unsure_sequential = false;
                    return Ok(());
                }
                // Another session's node with our GUID (CURATOR-498).
                delete_in_background(client.clone(), path);
                self.guid = new_guid();
            }
            self.unsure_sequential = false;
        }
        let (generation, want) = self.wanted();
        let prefix = join(&self.parent, &format!("{}{}", self.guid, self.name));
        let options = CreateOptions::new(self.opts.mode).acl(self.opts.acl.clone());
        match client.create(&prefix, &want, &options).await {
            Ok((path, stat)) => {
                tracing::debug!(%path, "persistent node created");
                self.node = Some(path);
                self.czxid = Some(stat.czxid);
                self.mark_written(generation);
                Ok(())
            }
            Err(e) => {
                self.unsure_sequential = e.is_retryable();
                Err(e)
            }
        }
    }

    /// Handles a failed create: a missing parent (created, or waited
    /// for), a retryable error (back-off), or the end.
    async fn create_failed(
        &mut self,
        client: &Client,
        parent: &str,
        e: Error,
        delays: &mut impl Iterator<Item = Duration>,
    ) -> Result<(), Exit> {
        if e != Error::NoNode {
            return self.retry_or_exit(e, delays).await;
        }
        if self.opts.create_parents {
            return match self.close.or(ensure_containers(client, parent)).await? {
                Ok(()) => Ok(()),
                Err(e) => self.retry_or_exit(e, delays).await,
            };
        }
        self.set_state(NodeState::NoParent);
        let r = match client.exists_and_watch(parent).await {
            Ok((Some(_), _)) => Ok(()),
            Ok((None, watcher)) => match self.close.or(watcher.changed()).await? {
                Ok(_) => Ok(()),
                Err(_) => Err(Exit::SessionEnded),
            },
            Err(e) => self.retry_or_exit(e, delays).await,
        };
        // Before reading our data again (see `set_data`).
        self.set_state(NodeState::Creating);
        r
    }

    /// Backs off after a retryable error; otherwise ends this session's
    /// work (session over) or the keeper (anything else).
    async fn retry_or_exit(
        &mut self,
        e: Error,
        delays: &mut impl Iterator<Item = Duration>,
    ) -> Result<(), Exit> {
        if e.is_retryable() {
            let wait = delays.next().unwrap_or(Duration::from_secs(1));
            self.close.or(tokio::time::sleep(wait)).await?;
            Ok(())
        } else if e.is_session_terminal() {
            Err(Exit::SessionEnded)
        } else {
            Err(Exit::Failed(e))
        }
    }

    /// The close-time delete: our node only (ephemeral: our session owns
    /// it; persistent: the incarnation we created or adopted), at the
    /// version read, retried through connection losses.
    async fn delete_ours(&mut self) -> Result<(), Error> {
        let mut client = match self.client.clone() {
            Some(c) => c,
            None => return Ok(()), // never had a session: nothing of ours
        };
        if client.state().is_terminal() {
            if self.ephemeral() {
                return Ok(()); // gone with its session
            }
            // A persistent node outlives the session: delete it on the
            // live one (a `Sessions` makes one; a fixed client cannot).
            client = self.source.client().await?;
        }
        let session = client.session_id().0;
        let path = match self.node.clone() {
            Some(p) => p,
            None if self.unsure_sequential => {
                match find_guid(&client, &self.parent, &self.guid).await {
                    Ok(Some((p, _))) => p,
                    _ => return Ok(()),
                }
            }
            None => return Ok(()),
        };
        let mut delays = backoff();
        loop {
            let r = match client.exists(&path).await {
                Ok(None) => return Ok(()),
                Ok(Some(stat)) => {
                    let ours = if self.ephemeral() {
                        stat.ephemeral_owner == session
                    } else {
                        stat.ephemeral_owner == 0
                            && (self.czxid == Some(stat.czxid)
                                || self.unsure_since.is_some_and(|f| stat.czxid > f))
                    };
                    if !ours {
                        tracing::debug!(%path, "the node under the name is not ours: kept");
                        return Ok(());
                    }
                    client.delete(&path, Version::Exact(stat.version)).await
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(()) | Err(Error::NoNode) => {
                    tracing::debug!(%path, "persistent node deleted");
                    return Ok(());
                }
                Err(Error::BadVersion) => {}
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) if e.is_session_terminal() && self.ephemeral() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The child of `parent` carrying `guid`, with its Stat.
async fn find_guid(
    client: &Client,
    parent: &str,
    guid: &str,
) -> Result<Option<(String, Stat)>, Error> {
    let children = match client.get_children(parent).await {
        Ok((c, _)) => c,
        Err(Error::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    for c in children.into_iter().filter(|c| c.starts_with(guid)) {
        let path = join(parent, &c);
        if let Some(stat) = client.exists(&path).await? {
            return Ok(Some((path, stat)));
        }
    }
    Ok(None)
}

/// The parent of a [`PersistentTtlNode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TtlParent {
    /// A container, as Curator 5.4 creates it: the server removes it once
    /// the expired `touch` child is gone (at its next container check).
    #[default]
    Container,
    /// A `PERSISTENT_WITH_TTL` node with the same TTL: the server removes
    /// it once it has no children and no data change for the TTL.
    Ttl,
}

/// Settings of a [`PersistentTtlNode`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PersistentTtlNodeOptions {
    /// The child refreshed to keep the node alive (default `touch`,
    /// Curator's).
    pub child_name: String,
    /// The child is touched every `ttl / touch_factor` (default 2,
    /// Curator's `touchScheduleFactor`; 0 counts as 1).
    pub touch_factor: u32,
    /// The parent's kind (default [`TtlParent::Container`]).
    pub parent: TtlParent,
    /// Creates missing ancestors as containers (default `true`).
    pub create_parents: bool,
    /// The ACL of both nodes (default: open).
    pub acl: Vec<Acl>,
}

impl Default for PersistentTtlNodeOptions {
    fn default() -> Self {
        Self {
            child_name: "touch".into(),
            touch_factor: 2,
            parent: TtlParent::Container,
            create_parents: true,
            acl: Acl::open_unsafe(),
        }
    }
}

impl PersistentTtlNodeOptions {
    /// Sets [`parent`](Self::parent).
    #[must_use]
    pub fn parent(mut self, parent: TtlParent) -> Self {
        self.parent = parent;
        self
    }

    /// Sets [`touch_factor`](Self::touch_factor).
    #[must_use]
    pub fn touch_factor(mut self, factor: u32) -> Self {
        self.touch_factor = factor;
        self
    }

    /// Sets [`child_name`](Self::child_name).
    #[must_use]
    pub fn child_name(mut self, name: impl Into<String>) -> Self {
        self.child_name = name.into();
        self
    }
}

/// A node that lives while this process keeps it alive, and expires by
/// TTL when it stops (Curator's `PersistentTtlNode`): a parent at `path`
/// holding our data (a container by default, see [`TtlParent`]), kept like
/// a [`PersistentNode`] (re-created if deleted), and a
/// `PERSISTENT_WITH_TTL` child `<path>/touch` written every `ttl / 2`
/// (created when missing).
///
/// When we stop (close, drop, crash), the child expires once it has gone
/// unwritten for the TTL, and then the childless parent is removed by the
/// server: after about the TTL plus the server's container check interval
/// (`znode.container.checkIntervalMs`, 60 s by default). The recipe itself
/// never deletes the parent, except through
/// [`close_and_delete`](Self::close_and_delete).
///
/// Needs a server with TTL nodes (`zookeeper.extendedTypesEnabled=true`);
/// otherwise the state becomes [`NodeState::Failed`] with
/// [`Error::Unimplemented`].
///
/// ```no_run
/// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
/// use std::time::Duration;
/// use zkit_recipes::PersistentTtlNode;
///
/// let node = PersistentTtlNode::new(&zk, "/alive/job-7", Duration::from_secs(30), b"running");
/// node.wait_for_initial_create(Duration::from_secs(10)).await?;
/// // ... work ...
/// node.close().await?; // stops touching: gone within about 30 s + the server's check interval
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PersistentTtlNode {
    node: Option<PersistentNode>,
    source: SessionSource,
    child: String,
    state: Arc<watch::Sender<NodeState>>,
    touch: JoinHandle<()>,
}

impl PersistentTtlNode {
    /// Starts keeping a TTL node at `path` with `data` and the default
    /// options, on `source` (`&Client` or `&Sessions`).
    ///
    /// # Panics
    /// Outside a tokio runtime (the keepers are spawned tasks).
    pub fn new(
        source: impl Into<SessionSource>,
        path: impl Into<String>,
        ttl: Duration,
        data: impl Into<Vec<u8>>,
    ) -> Self {
        Self::with_options(source, path, ttl, data, PersistentTtlNodeOptions::default())
    }

    /// Starts keeping a TTL node at `path` with `data` and `options`.
    ///
    /// # Panics
    /// Outside a tokio runtime (the keepers are spawned tasks).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
    /// use std::time::Duration;
    /// use zkit_recipes::persistent::{PersistentTtlNode, PersistentTtlNodeOptions, TtlParent};
    ///
    /// let options = PersistentTtlNodeOptions::default().parent(TtlParent::Ttl).touch_factor(3);
    /// let node = PersistentTtlNode::with_options(&zk, "/alive/job-7", Duration::from_secs(30), b"", options);
    /// node.close_and_delete().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_options(
        source: impl Into<SessionSource>,
        path: impl Into<String>,
        ttl: Duration,
        data: impl Into<Vec<u8>>,
        options: PersistentTtlNodeOptions,
    ) -> Self {
        let source = source.into();
        let path = path.into();
        let mode = match options.parent {
            TtlParent::Container => CreateMode::Container,
            TtlParent::Ttl => CreateMode::PersistentWithTtl(ttl),
        };
        let mut node_options = PersistentNodeOptions::new(mode)
            .create_parents(options.create_parents)
            .acl(options.acl.clone());
        node_options.delete_on_close = false;
        let node = PersistentNode::with_options(source.clone(), path.clone(), data, node_options);
        let child = join(&path, &options.child_name);
        let state = Arc::new(watch::channel(NodeState::Creating).0);
        let every = ttl / options.touch_factor.max(1);
        let touch = tokio::spawn(keep_touching(
            source.clone(),
            node.states(),
            child.clone(),
            CreateOptions::new(CreateMode::PersistentWithTtl(ttl)).acl(options.acl),
            every,
            state.clone(),
        ));
        Self {
            node: Some(node),
            source,
            child,
            state,
            touch,
        }
    }

    fn node(&self) -> &PersistentNode {
        self.node.as_ref().expect("present until closed")
    }

    /// The parent's path.
    pub fn path(&self) -> &str {
        self.node().path()
    }

    /// The touched child's path (`<path>/touch`).
    pub fn child_path(&self) -> &str {
        &self.child
    }

    /// Where the node stands: [`Created`](NodeState::Created) (the
    /// parent's path) once the parent exists with our data and the child
    /// was touched; [`Failed`](NodeState::Failed) also when touching fails
    /// for good.
    pub fn state(&self) -> NodeState {
        self.state.borrow().clone()
    }

    /// A receiver of every state change.
    pub fn states(&self) -> watch::Receiver<NodeState> {
        self.state.subscribe()
    }

    /// Our data (on the parent).
    pub fn data(&self) -> Vec<u8> {
        self.node().data()
    }

    /// Waits at most `timeout` until the parent exists with our data and
    /// the child was touched: `Ok(true)`, or `Ok(false)` on timeout.
    ///
    /// # Errors
    /// The error of [`NodeState::Failed`]; [`Error::Closed`] once closed.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_for_initial_create(&self, timeout: Duration) -> Result<bool, Error> {
        wait_created(self.states(), timeout).await
    }

    /// Replaces the parent's data (as [`PersistentNode::set_data`]).
    ///
    /// # Errors
    /// As [`PersistentNode::set_data`].
    ///
    /// # Cancel safety
    /// As [`PersistentNode::set_data`].
    pub async fn set_data(&self, data: &[u8]) -> Result<(), Error> {
        self.node().set_data(data).await
    }

    /// Stops touching and keeping the parent; nothing is deleted: both
    /// nodes expire by TTL (see the type's docs).
    ///
    /// # Errors
    /// None today; `Result` for symmetry with
    /// [`close_and_delete`](Self::close_and_delete).
    ///
    /// # Cancel safety
    /// Cancel safe: touching has stopped before the first await.
    pub async fn close(mut self) -> Result<(), Error> {
        self.touch.abort();
        let node = self.node.take().expect("present until closed");
        let r = node.close_with(false).await;
        set_if_changed(&self.state, NodeState::Closed);
        r
    }

    /// Stops touching and deletes the child, then the parent if it is
    /// still the one we created or adopted (retried through connection
    /// losses).
    ///
    /// # Errors
    /// [`Error::NotEmpty`] when the parent has other children (it is
    /// left, and expires once they are gone); session and ACL errors.
    ///
    /// # Cancel safety
    /// Touching stops before the first await; a dropped future may leave
    /// the nodes, which then expire by TTL.
    pub async fn close_and_delete(mut self) -> Result<(), Error> {
        self.touch.abort();
        let node = self.node.take().expect("present until closed");
        let r = async {
            let client = self.source.client().await?;
            delete_child(&client, &self.child).await?;
            node.close_with(true).await
        }
        .await;
        set_if_changed(&self.state, NodeState::Closed);
        r
    }
}

/// Dropping the handle stops touching and keeping the parent; the nodes
/// expire by TTL.
impl Drop for PersistentTtlNode {
    fn drop(&mut self) {
        self.touch.abort();
        set_if_changed(&self.state, NodeState::Closed);
        // `node` (if still here) closes without deleting when dropped.
    }
}

/// Deletes the touch child (any version: it is shared by every keeper of
/// the node), retrying through connection losses.
async fn delete_child(client: &Client, child: &str) -> Result<(), Error> {
    let mut delays = backoff();
    loop {
        match client.delete(child, Version::Any).await {
            Ok(()) | Err(Error::NoNode) => return Ok(()),
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes the child (creating it when missing) every `every` while the
/// parent is ours, and publishes the node's combined state to `out`.
async fn keep_touching(
    source: SessionSource,
    mut parent: watch::Receiver<NodeState>,
    child: String,
    create: CreateOptions,
    every: Duration,
    out: Arc<watch::Sender<NodeState>>,
) {
    let mut touched = false;
    let mut next = Instant::now();
    loop {
        let now = parent.borrow_and_update().clone();
        let created = now.is_created();
        if !created {
            // A re-created parent has no child: touch as soon as it is back.
            touched = false;
            next = Instant::now();
            set_if_changed(&out, now);
        } else if Instant::now() >= next {
            match touch(&source, &child, &create).await {
                Ok(()) => {
                    touched = true;
                    next = Instant::now() + every;
                }
                Err(e) if e.is_retryable() || e == Error::NoNode || e.is_session_terminal() => {
                    // Disconnected, the parent being re-created, or the
                    // session over (the parent's keeper reports it).
                    tracing::debug!(%child, error = %e, "touch failed; trying again");
                    next = Instant::now() + (every / 4).min(Duration::from_millis(200));
                }
                Err(e) => {
                    tracing::warn!(%child, error = %e, "cannot touch the TTL node");
                    set_if_changed(&out, NodeState::Failed(e));
                    return;
                }
            }
            set_if_changed(&out, if touched { now } else { NodeState::Creating });
        }
        tokio::select! {
            // Any change (a re-created parent has no child): touch at once.
            r = parent.changed() => match r {
                Ok(()) => next = Instant::now(),
                Err(_) => return,
            },
            _ = tokio::time::sleep_until(next), if created => {}
        }
    }
}

/// One touch: setData on the child, or create it with its TTL.
async fn touch(source: &SessionSource, child: &str, create: &CreateOptions) -> Result<(), Error> {
    let client = source.client().await?;
    match client.set_data(child, b"", Version::Any).await {
        Ok(_) => Ok(()),
        Err(Error::NoNode) => match client.create(child, b"", create).await {
            Ok(_) | Err(Error::NodeExists) => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_modes_are_recreated_without_the_sequence() {
        let ttl = Duration::from_secs(5);
        assert_eq!(
            without_sequence(CreateMode::EphemeralSequential),
            CreateMode::Ephemeral
        );
        assert_eq!(
            without_sequence(CreateMode::PersistentSequential),
            CreateMode::Persistent
        );
        assert_eq!(
            without_sequence(CreateMode::PersistentSequentialWithTtl(ttl)),
            CreateMode::PersistentWithTtl(ttl)
        );
        assert_eq!(
            without_sequence(CreateMode::Container),
            CreateMode::Container
        );
    }

    #[test]
    fn parents() {
        assert_eq!(parent_of("/a"), "/");
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a/b-"), "/a");
        assert_eq!(parent_of("/a/"), "/a");
    }
}
