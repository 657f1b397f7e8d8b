//! The async client: [`Client`], its builder, watchers and multi builders.

mod builder;
mod driver;
mod multi;
mod paths;

#[cfg(test)]
mod driver_tests;
mod watcher;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, watch};

pub use builder::ClientBuilder;
pub use multi::{MultiRead, MultiWrite, OpResult, ReadResult};
pub use watcher::{OneshotWatcher, PersistentWatcher, StateStream};

use driver::{Command, SessionInfo, WatchSink};

use crate::error::{Error, Result};
use crate::path::validate_path;
use crate::proto::codes::{AddWatchMode, OpCode, WatcherType};
use crate::proto::{
    decode_exact, Acl, AddWatchRequest, ClientInfo, Create2Response, CreateRequest,
    CreateTtlRequest, Decode, Encode, GetAclResponse, GetChildren2Response, GetChildrenResponse,
    GetDataResponse, IntResponse, MultiOp, PathRequest, PathResponse, PathWatchRequest,
    ReconfigRequest, SetAclRequest, Stat, StatResponse, WatchesRequest, WhoAmIResponse,
};
use crate::session::{Chroot, HostAddr, Request, WatchAction, WatchKind, WatcherId};
use crate::types::{CreateMode, CreateOptions, SessionId, SessionState, Version};

/// The largest TTL ZooKeeper accepts (`EphemeralType.TTL`: 2^40 - 1 ms).
pub const MAX_TTL: Duration = Duration::from_millis((1 << 40) - 1);

/// The path of the dynamic configuration node.
pub const CONFIG_NODE: &str = "/zookeeper/config";

/// A handle to one ZooKeeper session.
///
/// Cheap to clone: every clone shares the session (and its one background
/// task). The session is closed when [`close`](Self::close) is called or the
/// last handle is dropped (closeSession is sent in the background, so the
/// server removes the session's ephemeral nodes at once).
///
/// # Ordering
/// Each operation method sends its request **when it is called**, not when
/// its future is first polled, so requests reach the server in call order and
/// replies complete in that order. Issuing many calls before awaiting them
/// pipelines them on the connection.
///
/// # Cancel safety
/// Dropping an operation's future does not cancel the operation: it has
/// already been sent (or queued) and the server applies it. Only the reply is
/// discarded.
///
/// # Session expiry
/// Expiry is final: once [`state`](Self::state) is
/// [`SessionState::Expired`], every call fails with [`Error::SessionExpired`],
/// watchers end, and this client never creates a new session behind your
/// back (the session's ephemeral nodes and watches are gone on the server).
/// To carry on, build a new client and restore what the old session owned;
/// the crate docs (*After `Expired`: build a new client*) show how.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cmds: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<SessionState>,
    info: Arc<Mutex<SessionInfo>>,
    chroot: Chroot,
    chroot_str: Option<String>,
    next_watcher: AtomicU64,
    /// Low-latency mode's spin budget (zero: off).
    busy_poll: std::time::Duration,
}

/// A request handed to the driver: its reply to come, in its `zk.request`
/// span (the driver keeps the request's metrics).
#[derive(Debug)]
struct Pending {
    rx: oneshot::Receiver<Result<Bytes>>,
    span: tracing::Span,
    /// How long the caller may spin for the reply (low-latency mode).
    spin: std::time::Duration,
}

impl Pending {
    /// A reply not tied to one op (addAuth).
    fn plain(rx: oneshot::Receiver<Result<Bytes>>) -> Self {
        Self {
            rx,
            span: tracing::Span::none(),
            spin: std::time::Duration::ZERO,
        }
    }

    /// Names the request's path in its span.
    fn path(&self, path: &str) {
        self.span.record("path", path);
    }
}

/// A reply body, or the error that came instead of sending the request.
type Reply = std::result::Result<Pending, Error>;

async fn await_reply(r: Reply) -> Result<Bytes> {
    match r {
        Err(e) => Err(e),
        Ok(Pending { mut rx, span, spin }) => {
            if !spin.is_zero() && may_spin() {
                if let Some(r) = spin_for(&mut rx, spin) {
                    if !span.is_disabled() {
                        let outcome = crate::observe::outcome(&r);
                        span.record("outcome", outcome);
                        tracing::trace!(parent: &span, outcome, "reply");
                    }
                    return r;
                }
            }
            // The driver answers every request before it drops its sender.
            if span.is_disabled() {
                return rx.await.unwrap_or(Err(Error::Closed));
            }
            let r = tracing::Instrument::instrument(rx, span.clone())
                .await
                .unwrap_or(Err(Error::Closed));
            let outcome = crate::observe::outcome(&r);
            span.record("outcome", outcome);
            tracing::trace!(parent: &span, outcome, "reply");
            r
        }
    }
}

/// A TTL as the wire carries it: whole milliseconds, 1 ..= 2^40-1 (under
/// 1 ms would be 0).
fn ttl_millis(ttl: Duration) -> Result<i64> {
    if ttl.as_millis() == 0 || ttl > MAX_TTL {
        return Err(Error::InvalidArgument(format!(
            "TTL {ttl:?} out of range (1 ms ..= 2^40-1 ms)"
        )));
    }
    Ok(ttl.as_millis() as i64)
}

/// Whether a caller may spin for its reply: not inside a task (a spinning
/// task would hold its worker, which may be the one that must run the
/// connection's task), and not on a current-thread runtime (whose one
/// thread runs the connection's task too).
fn may_spin() -> bool {
    tokio::task::try_id().is_none()
        && tokio::runtime::Handle::try_current().map_or(true, |h| {
            h.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread
        })
}

/// Polls for the reply for up to `budget`; `None` if it has not come.
fn spin_for(
    rx: &mut oneshot::Receiver<Result<Bytes>>,
    budget: std::time::Duration,
) -> Option<Result<Bytes>> {
    let start = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(r) => return Some(r),
            Err(oneshot::error::TryRecvError::Closed) => return Some(Err(Error::Closed)),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        if start.elapsed() >= budget {
            return None;
        }
        for _ in 0..8 {
            std::hint::spin_loop();
        }
    }
}

fn decode<T: Decode>(body: Bytes) -> Result<T> {
    decode_exact(body).map_err(|e| Error::Protocol(e.to_string()))
}

/// Room most request bodies fit in (a path and a few fields): one
/// allocation instead of a growth from empty.
const BODY_CAPACITY: usize = 128;

fn encode(rec: &impl Encode) -> Bytes {
    encode_sized(rec, BODY_CAPACITY)
}

/// Encodes a record carrying data: `room` is the size it will likely take.
fn encode_sized(rec: &impl Encode, room: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(room);
    rec.encode(&mut b);
    b.freeze()
}

impl Client {
    /// Connects with default settings and resolves once a session is
    /// established. `connect_string` is `host[:port][,host[:port]...][/chroot]`.
    ///
    /// ```no_run
    /// # async fn demo() -> zkit::Result<()> {
    /// let zk = zkit::Client::connect("127.0.0.1:2181").await?;
    /// zk.create("/demo", b"hello", &zkit::CreateOptions::default()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NoServerReachable`] if no session was established within the
    /// connect timeout (it names each host tried and its last failure);
    /// [`Error::NoHosts`] for a bad connect string.
    pub async fn connect(connect_string: &str) -> Result<Self> {
        Self::builder().connect(connect_string).await
    }

    /// A builder for non-default settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    fn from_parts(
        cmds: mpsc::UnboundedSender<Command>,
        state: watch::Receiver<SessionState>,
        info: Arc<Mutex<SessionInfo>>,
        chroot: Option<String>,
        busy_poll: std::time::Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cmds,
                state,
                info,
                chroot: Chroot::new(chroot.clone()),
                chroot_str: chroot,
                next_watcher: AtomicU64::new(1),
                busy_poll,
            }),
        }
    }

    fn info(&self) -> SessionInfo {
        self.inner
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The session id.
    pub fn session_id(&self) -> SessionId {
        self.info().session_id
    }

    /// The session password; with [`session_id`](Self::session_id) it lets
    /// another client resume this session
    /// ([`ClientBuilder::session`]).
    pub fn session_password(&self) -> Bytes {
        self.info().password
    }

    /// The session timeout the server granted.
    pub fn session_timeout(&self) -> Duration {
        self.info().negotiated_timeout.unwrap_or_default()
    }

    /// The highest zxid seen in a reply.
    pub fn last_zxid(&self) -> i64 {
        self.info().last_zxid
    }

    /// The server this client is connected to right now (`None` while
    /// disconnected).
    pub fn connected_server(&self) -> Option<HostAddr> {
        self.info().server
    }

    /// The chroot of this client, if any.
    pub fn chroot(&self) -> Option<&str> {
        self.inner.chroot_str.as_deref()
    }

    /// The current session state.
    pub fn state(&self) -> SessionState {
        *self.inner.state.borrow()
    }

    /// A stream of every session state transition from now on, starting with
    /// the current state. It ends after a terminal state (`Expired`,
    /// `AuthFailed`, `Closed`).
    pub fn state_stream(&self) -> StateStream {
        let (tx, rx) = mpsc::unbounded_channel();
        if self
            .inner
            .cmds
            .send(Command::Subscribe(tx.clone()))
            .is_err()
        {
            let _ = tx.send(self.state());
        }
        StateStream::new(rx)
    }

    /// Closes the session: requests already issued are sent first, then
    /// closeSession; resolves when the server confirmed it (or the connection
    /// dropped). Every handle of this session sees `Closed` afterwards, and
    /// the server deletes the session's ephemeral nodes.
    ///
    /// # Errors
    /// None in practice; closing a session that already ended succeeds.
    ///
    /// # Cancel safety
    /// The close is requested when this is called; dropping the future does
    /// not stop it.
    pub async fn close(self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.inner.cmds.send(Command::Close(tx)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    // ---- plumbing ----------------------------------------------------------------

    fn server_path(&self, path: &str, sequential: bool) -> Result<String> {
        validate_path(path, sequential)?;
        let (head, tail) = self.inner.chroot.server_parts(path, sequential);
        Ok(format!("{head}{tail}"))
    }

    /// A request body that starts with the server path of `path`, encoded
    /// straight from the caller's arguments (no path `String`, no owned
    /// record); `rest` writes the fields after the path, `room` their size.
    fn path_body(
        &self,
        path: &str,
        sequential: bool,
        room: usize,
        rest: impl FnOnce(&mut BytesMut),
    ) -> Result<Bytes> {
        validate_path(path, sequential)?;
        let (head, tail) = self.inner.chroot.server_parts(path, sequential);
        let len = head.len() + tail.len();
        let len_i32 = i32::try_from(len)
            .map_err(|_| Error::InvalidArgument(format!("path of {len} bytes")))?;
        let mut b = BytesMut::with_capacity(4 + len + room);
        crate::proto::jute::write_i32(&mut b, len_i32);
        b.extend_from_slice(head.as_bytes());
        b.extend_from_slice(tail.as_bytes());
        rest(&mut b);
        Ok(b.freeze())
    }

    fn client_path(&self, path: &str) -> String {
        self.inner.chroot.to_client(path)
    }

    fn send(&self, op: OpCode, body: Bytes) -> Reply {
        self.submit(
            Request {
                op,
                body,
                watch: None,
            },
            None,
        )
    }

    /// Sends a request that registers a watcher (`sink` receives its events).
    fn send_watch(
        &self,
        op: OpCode,
        body: Bytes,
        watcher: Option<(WatchAction, WatchSink)>,
    ) -> Reply {
        let (watch, sink) = match watcher {
            Some((action @ WatchAction::Register { id, .. }, sink)) => {
                (Some(action), Some((id, sink)))
            }
            Some((action, _)) => (Some(action), None),
            None => (None, None),
        };
        self.submit(Request { op, body, watch }, sink)
    }

    /// Queues `req` with the driver (synchronously: call order is wire order).
    fn submit(&self, req: Request, watcher: Option<(WatcherId, WatchSink)>) -> Reply {
        let (tx, rx) = oneshot::channel();
        let op = req.op.name();
        let span = tracing::debug_span!(
            "zk.request",
            op,
            session = tracing::field::Empty,
            path = tracing::field::Empty,
            xid = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        if !span.is_disabled() {
            span.record("session", tracing::field::display(self.session_id()));
        }
        let cmd = Command::Submit {
            req,
            reply: tx,
            watcher,
            span: span.clone(),
        };
        if self.inner.cmds.send(cmd).is_err() {
            return Err(self.ended_error());
        }
        Ok(Pending {
            rx,
            span,
            spin: self.inner.busy_poll,
        })
    }

    fn ended_error(&self) -> Error {
        let s = self.state();
        if s.is_terminal() {
            crate::session::terminal_error(s)
        } else {
            Error::Closed
        }
    }

    fn new_watcher_id(&self) -> WatcherId {
        WatcherId(self.inner.next_watcher.fetch_add(1, Ordering::Relaxed))
    }

    fn oneshot_watch(
        &self,
        kind: WatchKind,
        server_path: &str,
    ) -> (WatchAction, WatchSink, OneshotWatcher) {
        let id = self.new_watcher_id();
        let (tx, rx) = oneshot::channel();
        let watcher = OneshotWatcher::new(
            id,
            rx,
            self.inner.cmds.downgrade(),
            self.inner.state.clone(),
        );
        (
            WatchAction::Register {
                id,
                kind,
                path: server_path.to_string(),
            },
            WatchSink::Oneshot(tx),
            watcher,
        )
    }

    // ---- create / delete -------------------------------------------------------

    /// Creates a node and returns its actual path (with the sequence suffix
    /// for sequential modes, relative to the chroot) and its Stat.
    ///
    /// Uses create2 for plain modes, createContainer for
    /// [`CreateMode::Container`] and createTTL for TTL modes (the server needs
    /// `zookeeper.extendedTypesEnabled=true` for TTLs).
    ///
    /// ```no_run
    /// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
    /// use zkit::{CreateMode, CreateOptions};
    /// let (path, _stat) = zk
    ///     .create("/jobs/job-", b"payload", &CreateOptions::new(CreateMode::PersistentSequential))
    ///     .await?;
    /// assert!(path.starts_with("/jobs/job-"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NodeExists`], [`Error::NoNode`] (no parent),
    /// [`Error::NoChildrenForEphemerals`], [`Error::InvalidAcl`],
    /// [`Error::NoAuth`], [`Error::InvalidPath`], [`Error::RequestTooLarge`],
    /// [`Error::InvalidArgument`] for a TTL out of range,
    /// [`Error::Unimplemented`] for TTLs on a server without extended types.
    ///
    /// # Cancel safety
    /// The request is sent when this method is called; dropping the future
    /// does not undo the create. For sequential nodes the created name is then
    /// unknown to you: use a unique prefix if you must find it again.
    pub fn create(
        &self,
        path: &str,
        data: &[u8],
        options: &CreateOptions,
    ) -> impl Future<Output = Result<(String, Stat)>> + Send + 'static {
        let reply = self.create_request(path, data, options);
        let this = self.clone();
        async move {
            let r: Create2Response = decode(await_reply(reply).await?)?;
            Ok((this.client_path(&r.path), r.stat))
        }
    }

    fn create_request(&self, path: &str, data: &[u8], options: &CreateOptions) -> Reply {
        let mode = options.mode;
        let ttl = mode.ttl().map(ttl_millis).transpose();
        // CreateRequest / CreateTTLRequest: path, data, ACL, flags[, ttl].
        let acl = &options.acl;
        let room = data.len()
            + 24
            + acl
                .iter()
                .map(|a| 16 + a.id.scheme.len() + a.id.id.len())
                .sum::<usize>();
        let body = self.path_body(path, mode.is_sequential(), room, |b| {
            crate::proto::jute::write_buffer(b, data);
            crate::proto::jute::write_i32(b, i32::try_from(acl.len()).unwrap_or(i32::MAX));
            for a in acl {
                a.encode(b);
            }
            crate::proto::jute::write_i32(b, mode.flags());
            if let Ok(Some(ttl)) = ttl {
                crate::proto::jute::write_i64(b, ttl);
            }
        })?;
        // A bad path is reported before a bad TTL.
        let op = match (ttl?, mode) {
            (Some(_), _) => OpCode::CreateTtl,
            (None, CreateMode::Container) => OpCode::CreateContainer,
            (None, _) => OpCode::Create2,
        };
        let reply = self.send(op, body)?;
        reply.path(path);
        Ok(reply)
    }

    /// Validates a create and builds its record; shared with multi.
    fn create_op(&self, path: &str, data: &[u8], options: &CreateOptions) -> Result<MultiOp> {
        let mode = options.mode;
        let path = self.server_path(path, mode.is_sequential())?;
        let data = Some(Bytes::copy_from_slice(data));
        if let Some(ttl) = mode.ttl() {
            return Ok(MultiOp::CreateTtl(CreateTtlRequest {
                path,
                data,
                acl: options.acl.clone(),
                flags: mode.flags(),
                ttl: ttl_millis(ttl)?,
            }));
        }
        let op = if mode == CreateMode::Container {
            OpCode::CreateContainer
        } else {
            OpCode::Create2
        };
        Ok(MultiOp::Create {
            op,
            req: CreateRequest {
                path,
                data,
                acl: options.acl.clone(),
                flags: mode.flags(),
            },
        })
    }

    /// Deletes a node if its version matches.
    ///
    /// # Errors
    /// [`Error::NoNode`], [`Error::BadVersion`], [`Error::NotEmpty`],
    /// [`Error::NoAuth`], [`Error::InvalidPath`].
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future does not cancel the delete.
    pub fn delete(
        &self,
        path: &str,
        version: Version,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        // DeleteRequest: path, version.
        let reply = self
            .path_body(path, false, 4, |b| {
                crate::proto::jute::write_i32(b, version.as_i32());
            })
            .and_then(|body| self.send(OpCode::Delete, body));
        async move {
            await_reply(reply).await?;
            Ok(())
        }
    }

    // ---- reads --------------------------------------------------------------------

    /// The node's Stat, or `None` if it does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidPath`], connection and session errors.
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the reply.
    pub fn exists(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<Stat>>> + Send + 'static {
        let reply = self.path_watch_request(OpCode::Exists, path, None);
        async move { exists_result(await_reply(reply).await) }
    }

    /// Like [`exists`](Self::exists), and leaves a one-shot watch that fires
    /// on the node's creation, deletion or data change. The watch is set
    /// whether or not the node exists.
    ///
    /// # Errors
    /// As [`exists`](Self::exists).
    ///
    /// # Cancel safety
    /// Sent when called. If the future is dropped the watch is registered
    /// and then dropped with it.
    pub fn exists_and_watch(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Option<Stat>, OneshotWatcher)>> + Send + 'static {
        let (reply, watcher) = self.watched(OpCode::Exists, WatchKind::Exist, path);
        async move {
            let stat = exists_result(await_reply(reply).await)?;
            Ok((
                stat,
                watcher.expect("watcher exists when the request was sent"),
            ))
        }
    }

    /// The node's data and Stat.
    ///
    /// # Errors
    /// [`Error::NoNode`], [`Error::NoAuth`], [`Error::InvalidPath`].
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the reply.
    pub fn get_data(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Bytes, Stat)>> + Send + 'static {
        let reply = self.path_watch_request(OpCode::GetData, path, None);
        async move {
            let r: GetDataResponse = decode(await_reply(reply).await?)?;
            Ok((r.data.unwrap_or_default(), r.stat))
        }
    }

    /// Like [`get_data`](Self::get_data), and leaves a one-shot watch that
    /// fires on the next data change or deletion.
    ///
    /// # Errors
    /// As [`get_data`](Self::get_data); no watch is left on error.
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future drops the watcher.
    pub fn get_data_and_watch(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Bytes, Stat, OneshotWatcher)>> + Send + 'static {
        let (reply, watcher) = self.watched(OpCode::GetData, WatchKind::Data, path);
        async move {
            let r: GetDataResponse = decode(await_reply(reply).await?)?;
            Ok((
                r.data.unwrap_or_default(),
                r.stat,
                watcher.expect("watcher exists when the request was sent"),
            ))
        }
    }

    /// Sets the node's data if its version matches; returns the new Stat.
    ///
    /// # Errors
    /// [`Error::NoNode`], [`Error::BadVersion`], [`Error::NoAuth`],
    /// [`Error::InvalidPath`], [`Error::RequestTooLarge`].
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future does not cancel the write.
    pub fn set_data(
        &self,
        path: &str,
        data: &[u8],
        version: Version,
    ) -> impl Future<Output = Result<Stat>> + Send + 'static {
        // SetDataRequest: path, data, version.
        let reply = self
            .path_body(path, false, data.len() + 8, |b| {
                crate::proto::jute::write_buffer(b, data);
                crate::proto::jute::write_i32(b, version.as_i32());
            })
            .and_then(|body| self.send(OpCode::SetData, body));
        async move {
            let r: StatResponse = decode(await_reply(reply).await?)?;
            Ok(r.stat)
        }
    }

    /// The node's children (unsorted, names only) and its Stat.
    ///
    /// # Errors
    /// [`Error::NoNode`], [`Error::NoAuth`], [`Error::InvalidPath`].
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the reply.
    pub fn get_children(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<String>, Stat)>> + Send + 'static {
        let reply = self.path_watch_request(OpCode::GetChildren2, path, None);
        async move {
            let r: GetChildren2Response = decode(await_reply(reply).await?)?;
            Ok((r.children, r.stat))
        }
    }

    /// Like [`get_children`](Self::get_children), and leaves a one-shot watch
    /// that fires when a child is created or deleted, or the node is deleted.
    ///
    /// # Errors
    /// As [`get_children`](Self::get_children); no watch is left on error.
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future drops the watcher.
    pub fn get_children_and_watch(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<String>, Stat, OneshotWatcher)>> + Send + 'static {
        let (reply, watcher) = self.watched(OpCode::GetChildren2, WatchKind::Child, path);
        async move {
            let r: GetChildren2Response = decode(await_reply(reply).await?)?;
            Ok((
                r.children,
                r.stat,
                watcher.expect("watcher exists when the request was sent"),
            ))
        }
    }

    fn path_watch_request(
        &self,
        op: OpCode,
        path: &str,
        watch: Option<(WatchAction, WatchSink)>,
    ) -> Reply {
        // PathWatchRequest: path, watch flag.
        let watching = watch.is_some();
        let body = self.path_body(path, false, 1, |b| {
            crate::proto::jute::write_bool(b, watching);
        })?;
        let reply = self.send_watch(op, body, watch)?;
        reply.path(path);
        Ok(reply)
    }

    fn watched(&self, op: OpCode, kind: WatchKind, path: &str) -> (Reply, Option<OneshotWatcher>) {
        let server_path = match self.server_path(path, false) {
            Ok(p) => p,
            Err(e) => return (Err(e), None),
        };
        let (action, sink, watcher) = self.oneshot_watch(kind, &server_path);
        let reply = self.send_watch(
            op,
            encode(&PathWatchRequest {
                path: server_path,
                watch: true,
            }),
            Some((action, sink)),
        );
        (reply, Some(watcher))
    }

    /// The node's ACL and Stat.
    ///
    /// # Errors
    /// [`Error::NoNode`], [`Error::InvalidPath`].
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the reply.
    pub fn get_acl(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<(Vec<Acl>, Stat)>> + Send + 'static {
        let reply = self
            .server_path(path, false)
            .and_then(|path| self.send(OpCode::GetAcl, encode(&PathRequest { path })));
        async move {
            let r: GetAclResponse = decode(await_reply(reply).await?)?;
            Ok((r.acl, r.stat))
        }
    }

    /// Replaces the node's ACL if its ACL version matches.
    ///
    /// # Errors
    /// [`Error::NoNode`], [`Error::BadVersion`], [`Error::InvalidAcl`],
    /// [`Error::NoAuth`], [`Error::InvalidPath`].
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future does not cancel the write.
    pub fn set_acl(
        &self,
        path: &str,
        acl: &[Acl],
        version: Version,
    ) -> impl Future<Output = Result<Stat>> + Send + 'static {
        let reply = self.server_path(path, false).and_then(|path| {
            self.send(
                OpCode::SetAcl,
                encode(&SetAclRequest {
                    path,
                    acl: acl.to_vec(),
                    version: version.as_i32(),
                }),
            )
        });
        async move {
            let r: StatResponse = decode(await_reply(reply).await?)?;
            Ok(r.stat)
        }
    }

    /// Waits until the server this client is connected to has caught up with
    /// the leader (for a read that must see every write committed before the
    /// sync).
    ///
    /// # Errors
    /// [`Error::InvalidPath`], connection and session errors.
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the reply.
    pub fn sync(&self, path: &str) -> impl Future<Output = Result<()>> + Send + 'static {
        let reply = self
            .server_path(path, false)
            .and_then(|path| self.send(OpCode::Sync, encode(&PathRequest { path })));
        async move {
            let _: PathResponse = decode(await_reply(reply).await?)?;
            Ok(())
        }
    }

    /// The paths of this session's ephemeral nodes under `prefix` ("/" for
    /// all), relative to the chroot. ZooKeeper 3.6+.
    ///
    /// # Errors
    /// [`Error::InvalidPath`], connection and session errors.
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the reply.
    pub fn get_ephemerals(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'static {
        let reply = self
            .server_path(prefix, false)
            .and_then(|path| self.send(OpCode::GetEphemerals, encode(&PathRequest { path })));
        let this = self.clone();
        async move {
            let r: GetChildrenResponse = decode(await_reply(reply).await?)?;
            Ok(r.children.iter().map(|p| this.client_path(p)).collect())
        }
    }

    /// The number of all descendants of `path` (not counting itself).
    /// ZooKeeper 3.6+.
    ///
    /// # Errors
    /// [`Error::NoNode`], [`Error::InvalidPath`].
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the reply.
    pub fn get_all_children_number(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<i32>> + Send + 'static {
        let reply = self.server_path(path, false).and_then(|path| {
            self.send(OpCode::GetAllChildrenNumber, encode(&PathRequest { path }))
        });
        async move {
            let r: IntResponse = decode(await_reply(reply).await?)?;
            Ok(r.value)
        }
    }

    // ---- watches --------------------------------------------------------------------

    /// Adds a persistent (mode `Persistent`: data and child events of `path`)
    /// or persistent-recursive (mode `PersistentRecursive`: data events of
    /// `path` and every descendant, never `NodeChildrenChanged`) watch.
    /// ZooKeeper 3.6+. The node need not exist.
    ///
    /// # Errors
    /// [`Error::InvalidPath`], connection and session errors.
    ///
    /// # Cancel safety
    /// Sent when called; if the future is dropped, the watch is registered
    /// and removed again.
    pub fn add_watch(
        &self,
        path: &str,
        mode: AddWatchMode,
    ) -> impl Future<Output = Result<PersistentWatcher>> + Send + 'static {
        let kind = match mode {
            AddWatchMode::Persistent => Ok(WatchKind::Persistent),
            AddWatchMode::PersistentRecursive => Ok(WatchKind::PersistentRecursive),
            // `AddWatchMode` is non-exhaustive (it lives in zkit-proto): a
            // mode this client cannot track locally is refused before sending.
            _ => Err(Error::BadArguments),
        };
        let setup = kind.and_then(|kind| self.server_path(path, false).map(|p| (kind, p)));
        let setup = setup.map(|(kind, server_path)| {
            let id = self.new_watcher_id();
            let (tx, rx) = mpsc::unbounded_channel();
            let watcher = PersistentWatcher::new(
                id,
                rx,
                self.inner.cmds.downgrade(),
                self.inner.state.clone(),
            );
            let reply = self.send_watch(
                OpCode::AddWatch,
                encode(&AddWatchRequest {
                    path: server_path.clone(),
                    mode: mode.code(),
                }),
                Some((
                    WatchAction::Register {
                        id,
                        kind,
                        path: server_path,
                    },
                    WatchSink::Persistent(tx),
                )),
            );
            (reply, watcher)
        });
        async move {
            let (reply, watcher) = setup?;
            let _: IntResponse = decode(await_reply(reply).await?)?;
            Ok(watcher)
        }
    }

    /// Removes this session's watches of `watcher_type` on `path`, on the
    /// server (removeWatches) and locally: local watchers receive a
    /// `DataWatchRemoved`, `ChildWatchRemoved` or `PersistentWatchRemoved`
    /// event and end. ZooKeeper 3.8 only knows `Children`, `Data` and `Any`;
    /// use `Any` to remove persistent watches there.
    ///
    /// # Errors
    /// [`Error::NoWatcher`] if the server has no such watch,
    /// [`Error::MarshallingError`] for `Persistent*` types on ZooKeeper 3.8.
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future does not stop the removal.
    pub fn remove_watches(
        &self,
        path: &str,
        watcher_type: WatcherType,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let reply = self.server_path(path, false).and_then(|server_path| {
            let req = Request {
                op: OpCode::RemoveWatches,
                body: encode(&WatchesRequest {
                    path: server_path.clone(),
                    watcher_type: watcher_type.code(),
                }),
                watch: Some(WatchAction::Remove {
                    path: server_path,
                    watcher_type,
                }),
            };
            self.submit(req, None)
        });
        async move {
            await_reply(reply).await?;
            Ok(())
        }
    }

    /// Asks the server whether this session has a watch of `watcher_type` on
    /// `path` (checkWatches); changes nothing.
    ///
    /// # Errors
    /// [`Error::NoWatcher`] if not.
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the reply.
    pub fn check_watches(
        &self,
        path: &str,
        watcher_type: WatcherType,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let reply = self.server_path(path, false).and_then(|path| {
            self.send(
                OpCode::CheckWatches,
                encode(&WatchesRequest {
                    path,
                    watcher_type: watcher_type.code(),
                }),
            )
        });
        async move {
            await_reply(reply).await?;
            Ok(())
        }
    }

    // ---- auth, identity, config -------------------------------------------------

    /// Adds credentials to this session (e.g. scheme `digest`, auth
    /// `b"user:password"`). They are re-sent on every reconnect, before
    /// watches are re-registered.
    ///
    /// # Errors
    /// [`Error::AuthFailed`] if the server rejects them; the session then ends
    /// (ZooKeeper closes the connection).
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future does not withdraw the credentials.
    pub fn add_auth(
        &self,
        scheme: &str,
        auth: &[u8],
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::AddAuth {
            scheme: scheme.to_string(),
            auth: Bytes::copy_from_slice(auth),
            reply: tx,
        };
        let reply = match self.inner.cmds.send(cmd) {
            Ok(()) => Ok(Pending::plain(rx)),
            Err(_) => Err(self.ended_error()),
        };
        async move {
            await_reply(reply).await?;
            Ok(())
        }
    }

    /// The identities this connection is authenticated as (whoAmI,
    /// ZooKeeper 3.7+).
    ///
    /// # Errors
    /// Connection and session errors; [`Error::Unimplemented`] before 3.7.
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the reply.
    pub fn who_am_i(&self) -> impl Future<Output = Result<Vec<ClientInfo>>> + Send + 'static {
        let reply = self.send(OpCode::WhoAmI, Bytes::new());
        async move {
            let r: WhoAmIResponse = decode(await_reply(reply).await?)?;
            Ok(r.client_info)
        }
    }

    /// The ensemble's dynamic configuration (`/zookeeper/config`, never
    /// chrooted) and its Stat.
    ///
    /// # Errors
    /// [`Error::NoNode`] on servers without dynamic config; connection errors.
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the reply.
    pub fn get_config(&self) -> impl Future<Output = Result<(Bytes, Stat)>> + Send + 'static {
        let reply = self.send(
            OpCode::GetData,
            encode(&PathWatchRequest {
                path: CONFIG_NODE.to_string(),
                watch: false,
            }),
        );
        async move {
            let r: GetDataResponse = decode(await_reply(reply).await?)?;
            Ok((r.data.unwrap_or_default(), r.stat))
        }
    }

    /// Changes the ensemble membership (reconfig, ZooKeeper 3.5+ with
    /// `reconfigEnabled=true`): incremental (`joining` / `leaving`) or a whole
    /// `new_members` list, if the config version is `from_config` (-1: any).
    /// Returns the new configuration.
    ///
    /// # Errors
    /// [`Error::ReconfigDisabled`], [`Error::ReconfigInProgress`],
    /// [`Error::NewConfigNoQuorum`], [`Error::BadVersion`], [`Error::NoAuth`].
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future does not cancel the change.
    pub fn reconfig(
        &self,
        joining: &str,
        leaving: &str,
        new_members: &str,
        from_config: i64,
    ) -> impl Future<Output = Result<(Bytes, Stat)>> + Send + 'static {
        let reply = self.send(
            OpCode::Reconfig,
            encode(&ReconfigRequest {
                joining_servers: joining.to_string(),
                leaving_servers: leaving.to_string(),
                new_members: new_members.to_string(),
                cur_config_id: from_config,
            }),
        );
        async move {
            let r: GetDataResponse = decode(await_reply(reply).await?)?;
            Ok((r.data.unwrap_or_default(), r.stat))
        }
    }

    // ---- multi ----------------------------------------------------------------------

    /// Starts an atomic transaction (multi): add checks, creates, sets and
    /// deletes, then [`commit`](MultiWrite::commit).
    ///
    /// ```no_run
    /// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
    /// use zkit::{CreateOptions, Version};
    /// zk.multi()
    ///     .check("/config", Version::Exact(3))
    ///     .set_data("/config", b"v4", Version::Any)
    ///     .create("/config/history-", b"v4", &CreateOptions::new(zkit::CreateMode::PersistentSequential))
    ///     .commit()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn multi(&self) -> MultiWrite {
        MultiWrite::new(self.clone())
    }

    /// Starts a batch of reads (multiRead, ZooKeeper 3.6+): not atomic, each
    /// read has its own result.
    pub fn multi_read(&self) -> MultiRead {
        MultiRead::new(self.clone())
    }
}

fn exists_result(r: Result<Bytes>) -> Result<Option<Stat>> {
    match r {
        Ok(body) => Ok(Some(decode::<StatResponse>(body)?.stat)),
        Err(Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}
