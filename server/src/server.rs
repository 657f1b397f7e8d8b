//! The network server: builder, shared state, accept loop, session expirer
//! and container/TTL reaper.
//!
//! All server state (tree, watches, sessions, zxid, connection registry) sits
//! behind one `std::sync::Mutex` that is never held across an `.await`. Each
//! connection owns an unbounded queue of outgoing frames; everything a request
//! causes (notifications to any connection, then its own reply) is queued
//! while the lock is held, so notifications of a write precede its reply
//! (ZooKeeper's ordering guarantee, PROTOCOL.md §4.16).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zkit_proto::codes::keeper_state;
use zkit_proto::{encode_frame, Encode, ReplyHeader, WatcherEvent, DEFAULT_JUTE_MAXBUFFER};

use crate::acl::AclPolicy;
use crate::config::FourLetterWords;
use crate::persist::{self, Record, RecordKind, Storage, TxnLog};
use crate::sessions::{SessionConfig, SessionId, SessionTracker};
use crate::tree::{Compat, DataTree, Trigger};
use crate::watches::{ConnId, WatchManager};

/// The version string the four-letter words report; clients parse it as 3.8.
pub const VERSION: &str = "3.8.0-zkit";

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Entry point of the bundled server: see [`Server::builder`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Server;

impl Server {
    /// A builder with ZooKeeper's defaults (tickTime 2000, timeouts in
    /// `[2, 20]` ticks, jute.maxbuffer 0xfffff, extended types enabled),
    /// listening on `127.0.0.1:0`.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Settings of a server to start ([`Server::builder`]).
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    listen: SocketAddr,
    tick_time: Duration,
    min_session_timeout: Option<Duration>,
    max_session_timeout: Option<Duration>,
    max_frame: usize,
    max_connections: usize,
    max_connections_per_ip: usize,
    handshake_timeout: Duration,
    super_digest: Option<String>,
    extended_types: bool,
    container_check_interval: Duration,
    compat: Compat,
    four_letter_words: FourLetterWords,
    data_dir: Option<PathBuf>,
    data_log_dir: Option<PathBuf>,
    snap_count: u64,
    snap_retain_count: usize,
    prealloc_size: u64,
    force_sync: bool,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tick_time: Duration::from_millis(2000),
            min_session_timeout: None,
            max_session_timeout: None,
            max_frame: DEFAULT_JUTE_MAXBUFFER,
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            max_connections_per_ip: 0,
            super_digest: None,
            extended_types: true,
            container_check_interval: Duration::from_secs(60),
            compat: Compat::V3_8,
            four_letter_words: FourLetterWords::default(),
            data_dir: None,
            data_log_dir: None,
            snap_count: 100_000,
            snap_retain_count: 3,
            prealloc_size: 16 << 20,
            force_sync: true,
        }
    }
}

impl ServerBuilder {
    /// The address to listen on (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// `tickTime`: the session expiry bucket width and the unit of the
    /// default session timeout bounds.
    pub fn tick_time(mut self, tick: Duration) -> Self {
        self.tick_time = tick;
        self
    }

    /// `minSessionTimeout` (default `2 * tickTime`).
    pub fn min_session_timeout(mut self, d: Duration) -> Self {
        self.min_session_timeout = Some(d);
        self
    }

    /// `maxSessionTimeout` (default `20 * tickTime`).
    pub fn max_session_timeout(mut self, d: Duration) -> Self {
        self.max_session_timeout = Some(d);
        self
    }

    /// `jute.maxbuffer`: the largest accepted request frame (default 0xfffff).
    pub fn max_frame(mut self, n: usize) -> Self {
        self.max_frame = n;
        self
    }

    /// `maxCnxns`: a global cap on concurrent connections (default 1024
    /// here; 0 = unlimited, ZooKeeper's default, which a `zoo.cfg` without
    /// `maxCnxns` gets): connections beyond it are closed at once.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// `zookeeper.nio.sessionlessCnxnTimeout` (default 10 s): a connection
    /// that has not sent a complete ConnectRequest (or four-letter word) by
    /// then is closed, so that idle or trickling sockets cannot pile up.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// `maxClientCnxns`: concurrent connections allowed from one IP address
    /// (0 = unlimited, the builder's default; ZooKeeper's default is 60,
    /// which [`Config::apply`](crate::config::Config::apply) uses). A
    /// connection beyond it is closed at once, as ZooKeeper does.
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.max_connections_per_ip = n;
        self
    }

    /// `4lw.commands.whitelist`: the four-letter words the server answers
    /// (default: only `srvr`, as ZooKeeper 3.5.3+; `srvr` is always
    /// allowed). Any other known word gets ZooKeeper's answer
    /// `"<word> is not executed because it is not in the whitelist.\n"`
    /// and the connection is closed.
    pub fn four_letter_words(mut self, words: FourLetterWords) -> Self {
        self.four_letter_words = words;
        self
    }

    /// `DigestAuthenticationProvider.superDigest`: `"super:<base64 sha1>"`
    /// ([`crate::acl::generate_digest`] of `"super:password"`).
    pub fn super_digest(mut self, digest: impl Into<String>) -> Self {
        self.super_digest = Some(digest.into());
        self
    }

    /// `zookeeper.extendedTypesEnabled` (default true): TTL nodes.
    pub fn extended_types(mut self, enabled: bool) -> Self {
        self.extended_types = enabled;
        self
    }

    /// `znode.container.checkIntervalMs` (default 60 s): how often empty
    /// containers and expired TTL nodes are deleted.
    pub fn container_check_interval(mut self, d: Duration) -> Self {
        self.container_check_interval = d;
        self
    }

    /// Which release's observable behaviour to reproduce where 3.8 and 3.9
    /// differ (default 3.8): create2 results in a multi, watch modes and
    /// removal types, and notification zxids (3.9: the triggering txn's).
    pub fn compat(mut self, compat: Compat) -> Self {
        self.compat = compat;
        self
    }

    /// `dataDir`: makes the server durable. Snapshots go here, and the
    /// transaction log too unless [`data_log_dir`](Self::data_log_dir) is
    /// set. The directory is created if missing; at start the server
    /// recovers the tree, the sessions and their ephemerals from it. A write
    /// is acknowledged only once its log record is synced (see
    /// [`force_sync`](Self::force_sync)). Without a data directory the
    /// server is in-memory and forgets everything when it stops.
    ///
    /// One server at a time may use a directory: a second one fails to
    /// start.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// `dataLogDir`: where the transaction log goes (default: the data
    /// directory). A separate device for the log makes syncs faster, as with
    /// ZooKeeper. Ignored without [`data_dir`](Self::data_dir).
    pub fn data_log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_log_dir = Some(dir.into());
        self
    }

    /// `snapCount`: logged transactions between two snapshots (default
    /// 100,000). A snapshot bounds recovery time and lets old log segments
    /// be deleted; taking one serialises the tree while requests wait.
    pub fn snap_count(mut self, n: u64) -> Self {
        self.snap_count = n.max(1);
        self
    }

    /// `autopurge.snapRetainCount`: snapshots kept (default 3, at least
    /// 1); older snapshots and the log segments only they need are deleted
    /// after each new snapshot. (ZooKeeper keeps everything unless
    /// autopurge is configured; zkit-server always purges.)
    pub fn snap_retain_count(mut self, n: usize) -> Self {
        self.snap_retain_count = n.max(1);
        self
    }

    /// `preAllocSize` in bytes (default 16 MiB): the log file grows by
    /// zero-filled steps of this size, so that syncing a batch does not
    /// also have to update the file's size.
    pub fn prealloc_size(mut self, bytes: u64) -> Self {
        self.prealloc_size = bytes;
        self
    }

    /// `forceSync` (default true): `fdatasync` the log before
    /// acknowledging. With false a process crash still loses nothing (the
    /// kernel has the data), but a power cut or an OS crash may lose
    /// acknowledged writes.
    pub fn force_sync(mut self, on: bool) -> Self {
        self.force_sync = on;
        self
    }

    /// Binds the listener and starts the server's tasks. With a
    /// [`data_dir`](Self::data_dir), first recovers the state saved there.
    ///
    /// # Errors
    /// Binding the address fails, or the tick time is not a positive number
    /// of milliseconds, or the data directory cannot be used (I/O error,
    /// another server holds it, unreadable or inconsistent files).
    pub async fn start(self) -> io::Result<RunningServer> {
        let tick = i32::try_from(self.tick_time.as_millis()).unwrap_or(i32::MAX);
        if tick <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tick time must be at least 1 ms",
            ));
        }
        let mut config = SessionConfig::new(tick);
        if let Some(d) = self.min_session_timeout {
            config.min_session_timeout = i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        }
        if let Some(d) = self.max_session_timeout {
            config.max_session_timeout = i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        }
        let cancel = CancellationToken::new();
        let mut tree = DataTree::with_compat(self.compat);
        tree.set_extended_types(self.extended_types);
        let mut state = State {
            tree,
            watches: WatchManager::with_compat(self.compat),
            sessions: SessionTracker::new(config, now_ms()),
            zxid: 0,
            conns: HashMap::new(),
            session_conn: HashMap::new(),
            next_conn: 1,
            log: None,
        };
        let mut durable = None;
        if let Some(dir) = &self.data_dir {
            let storage = Storage {
                data_dir: dir.clone(),
                log_dir: self.data_log_dir.clone().unwrap_or_else(|| dir.clone()),
                snap_count: self.snap_count,
                snap_retain_count: self.snap_retain_count,
                prealloc: self.prealloc_size,
                force_sync: self.force_sync,
            };
            let cancel = cancel.clone();
            state = tokio::task::spawn_blocking(move || recover_state(state, storage, cancel))
                .await
                .map_err(io::Error::other)??;
            durable = state.log.as_ref().map(TxnLog::durable);
        }
        let listener = TcpListener::bind(self.listen).await?;
        let local_addr = listener.local_addr()?;
        let policy = AclPolicy {
            super_digest: self.super_digest.clone(),
            ..AclPolicy::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            durable,
            data_dir: self.data_dir.clone(),
            data_log_dir: self.data_log_dir.clone().or_else(|| self.data_dir.clone()),
            policy,
            max_frame: self.max_frame,
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            max_connections_per_ip: self.max_connections_per_ip,
            per_ip: Mutex::new(HashMap::new()),
            four_letter_words: self.four_letter_words,
            tick_time: tick,
            local_addr,
            session_added: Notify::new(),
            connections: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            started: std::time::Instant::now(),
        });
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            shared.clone(),
            cancel.clone(),
            tracker.clone(),
        ));
        tracker.spawn(expirer(shared.clone(), cancel.clone()));
        tracker.spawn(reaper(
            shared.clone(),
            cancel.clone(),
            self.container_check_interval,
        ));
        Ok(RunningServer {
            local_addr,
            shared,
            cancel,
            tracker,
        })
    }
}

/// A started server. Dropping it stops accepting and closes every
/// connection (without waiting); [`shutdown`](Self::shutdown) also waits.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `host:port` for a client's connect string.
    pub fn connect_string(&self) -> String {
        self.local_addr.to_string()
    }

    /// The last processed zxid.
    pub fn last_zxid(&self) -> i64 {
        self.shared.lock().zxid
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.shared.lock().sessions.len()
    }

    /// Serves one already accepted connection (any byte stream: a proxied
    /// socket, an in-memory duplex) as if it came from `peer`. The task
    /// ends with the connection or at shutdown. The connection limits apply
    /// as to accepted sockets: over a limit, `io` is dropped at once.
    pub fn serve_connection<IO>(&self, io: IO, peer: SocketAddr)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = self.shared.clone();
        let cancel = self.cancel.clone();
        if !shared.admit(peer) {
            return;
        }
        self.tracker.spawn(async move {
            crate::connection::serve(io, peer, shared.clone(), cancel).await;
            shared.release(peer);
        });
    }

    /// Stops accepting, closes every connection and waits for the server's
    /// tasks to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        // Write what is queued and wait for the log writer.
        let log = self.shared.lock().log.take();
        if let Some(mut log) = log {
            let _ = tokio::task::spawn_blocking(move || log.stop()).await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What a connection task is told to do.
#[derive(Debug)]
pub(crate) enum Out {
    /// Write this frame (length prefix included) once the zxid is durable.
    Frame(Bytes, i64),
    /// Write everything queued before, then close.
    Close,
}

/// A registered (handshaken) connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub(crate) tx: mpsc::UnboundedSender<Out>,
    pub(crate) session: SessionId,
    pub(crate) peer: SocketAddr,
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) tree: DataTree,
    pub(crate) watches: WatchManager,
    pub(crate) sessions: SessionTracker,
    /// Last processed zxid.
    pub(crate) zxid: i64,
    pub(crate) conns: HashMap<ConnId, ConnHandle>,
    pub(crate) session_conn: HashMap<SessionId, ConnId>,
    pub(crate) next_conn: u64,
    /// The transaction log (`None`: in-memory server).
    pub(crate) log: Option<TxnLog>,
}

impl State {
    /// The zxid that must be durable before a frame produced now may be
    /// written: the last logged one (0 for an in-memory server).
    pub(crate) fn gate(&self) -> i64 {
        if self.log.is_some() {
            self.zxid
        } else {
            0
        }
    }

    /// Logs a transaction that took the current zxid (no-op in memory),
    /// and queues a snapshot when one is due.
    pub(crate) fn log(&mut self, time_ms: i64, session: i64, kind: RecordKind) {
        let Some(log) = self.log.as_mut() else { return };
        log.append(&Record {
            zxid: self.zxid,
            time_ms,
            session,
            kind,
        });
        if log.snapshot_due() {
            self.snapshot();
        }
    }

    /// Serialises the state after the current zxid and hands it to the log
    /// writer (no-op in memory).
    pub(crate) fn snapshot(&mut self) {
        let Some(log) = self.log.as_mut() else { return };
        let tree = &self.tree;
        let image = persist::encode_snapshot(self.zxid, self.sessions.sessions(), |b| {
            tree.encode_image(b);
        });
        log.snapshot(self.zxid, image);
    }

    /// Allocates the next zxid.
    pub(crate) fn next_zxid(&mut self) -> i64 {
        self.zxid += 1;
        self.zxid
    }

    /// Queues a frame for a connection (ignored if it is gone).
    pub(crate) fn send(&self, conn: ConnId, frame: Bytes) {
        if let Some(h) = self.conns.get(&conn) {
            let _ = h.tx.send(Out::Frame(frame, self.gate()));
        }
    }

    /// Fires the watches of the triggers of the write just applied (at the
    /// current zxid) and queues the notifications.
    pub(crate) fn fire(&mut self, triggers: &[Trigger]) {
        if triggers.is_empty() {
            return;
        }
        // 3.8 sends -1; 3.9 (ZOOKEEPER-4655) the triggering txn's zxid.
        let zxid = match self.watches.compat() {
            Compat::V3_8 => -1,
            _ => self.zxid,
        };
        let events = self.watches.trigger_all(triggers);
        for (conn, ev) in events {
            self.send(conn, notification(&ev, zxid));
        }
    }

    /// Ends a session: removes its ephemerals (firing watches), forgets it
    /// and closes its connection, if any.
    pub(crate) fn kill_session(&mut self, session: SessionId) {
        self.sessions.set_closing(session);
        let zxid = self.next_zxid();
        self.log(now_ms() as i64, session, RecordKind::CloseSession);
        let triggers = self.tree.kill_session(session, zxid);
        self.fire(&triggers);
        self.sessions.close(session);
        if let Some(conn) = self.session_conn.remove(&session) {
            if let Some(h) = self.conns.get(&conn) {
                let _ = h.tx.send(Out::Close);
            }
        }
    }
}

/// Shared by all tasks of one server.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// The last durable zxid (`None`: in-memory server).
    pub(crate) durable: Option<watch::Receiver<i64>>,
    /// Where snapshots and the log go (`conf` reports them).
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) data_log_dir: Option<PathBuf>,
    pub(crate) policy: AclPolicy,
    pub(crate) max_frame: usize,
    pub(crate) max_connections: usize,
    pub(crate) handshake_timeout: Duration,
    /// `maxClientCnxns` (0 = unlimited).
    pub(crate) max_connections_per_ip: usize,
    /// Live connections per client IP (only tracked with a per-IP limit).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub(crate) four_letter_words: FourLetterWords,
    pub(crate) tick_time: i32,
    pub(crate) local_addr: SocketAddr,
    /// Wakes the expirer when a session may expire earlier than it planned.
    pub(crate) session_added: Notify,
    pub(crate) connections: AtomicUsize,
    pub(crate) received: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) started: std::time::Instant,
}

impl Shared {
    /// Locks the state; a poisoned lock (a panic elsewhere) is taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `peer`, or refuses it (`false`) when the
    /// global or the per-IP (`maxClientCnxns`) limit is reached.
    fn admit(&self, peer: SocketAddr) -> bool {
        if self.max_connections > 0
            && self.connections.load(Ordering::SeqCst) >= self.max_connections
        {
            tracing::warn!(%peer, "too many connections, closing");
            return false;
        }
        if self.max_connections_per_ip > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_ip.entry(peer.ip()).or_insert(0);
            if *n >= self.max_connections_per_ip {
                tracing::warn!(
                    "Too many connections from {} - max is {}",
                    peer.ip(),
                    self.max_connections_per_ip
                );
                return false;
            }
            *n += 1;
        }
        self.connections.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Forgets a connection counted by [`admit`](Self::admit).
    fn release(&self, peer: SocketAddr) {
        self.connections.fetch_sub(1, Ordering::SeqCst);
        if self.max_connections_per_ip > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_ip.get_mut(&peer.ip()) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&peer.ip());
                }
            }
        }
    }
}

/// A whole frame: reply header plus an optional body.
pub(crate) fn reply_frame(hdr: ReplyHeader, body: Option<&dyn Encode>) -> Bytes {
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, |b| {
        hdr.encode(b);
        if let Some(body) = body {
            body.encode(b);
        }
    });
    buf.freeze()
}

/// A notification frame: `(-1, zxid, 0)` + WatcherEvent (zxid -1 on 3.8
/// and for SetWatches events).
pub(crate) fn notification(ev: &WatcherEvent, zxid: i64) -> Bytes {
    let ev = WatcherEvent {
        event_type: ev.event_type,
        state: keeper_state::SYNC_CONNECTED,
        path: ev.path.clone(),
    };
    reply_frame(
        ReplyHeader {
            xid: -1,
            zxid,
            err: 0,
        },
        Some(&ev),
    )
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !shared.admit(peer) {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            crate::connection::serve(stream, peer, shared.clone(), cancel).await;
            shared.release(peer);
        });
    }
}

/// Expires sessions: sleeps until the next expiry bucket (or a new session
/// is announced), then kills every due session.
async fn expirer(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let wait = {
            let st = shared.lock();
            let now = now_ms();
            match st.sessions.next_expiration() {
                Some(t) if t <= now => Duration::ZERO,
                Some(t) => Duration::from_millis(t - now),
                None => Duration::from_millis(shared.tick_time as u64),
            }
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = shared.session_added.notified() => {}
            }
        }
        let mut st = shared.lock();
        let due = st.sessions.expired(now_ms());
        for id in due {
            tracing::debug!(session = format_args!("{id:#x}"), "session expired");
            st.kill_session(id);
        }
    }
}

/// Deletes empty containers and expired TTL nodes every `interval`.
async fn reaper(shared: Arc<Shared>, cancel: CancellationToken, interval: Duration) {
    let interval = interval.max(Duration::from_millis(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let mut st = shared.lock();
        let now = now_ms() as i64;
        for path in st.tree.reapable(now) {
            let zxid = st.zxid + 1;
            if let Ok(applied) = st.tree.delete_container(&path, zxid) {
                st.zxid = zxid;
                st.log(now, 0, RecordKind::DeleteContainer { path });
                st.fire(&applied.triggers);
            }
        }
    }
}

/// Loads what `storage` holds into `state` (a fresh one) and starts the
/// transaction log after it. Blocking.
fn recover_state(
    mut state: State,
    storage: Storage,
    cancel: CancellationToken,
) -> io::Result<State> {
    let lock = persist::lock_dir(&storage.data_dir)?;
    let started = std::time::Instant::now();
    let recovered = persist::recover(&storage)?;
    let now = now_ms();
    let mut snap_zxid = None;
    if let Some(snap) = recovered.snapshot {
        let mut image = snap.image;
        state.tree.decode_image(&mut image).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snapshot {:#x}: {e}", snap.zxid),
            )
        })?;
        for (id, timeout) in snap.sessions {
            state.sessions.restore(id, timeout, now);
        }
        state.zxid = snap.zxid;
        snap_zxid = Some(snap.zxid);
    }
    let replayed = recovered.records.len();
    for rec in recovered.records {
        crate::dispatch::replay(&mut state, rec, now);
    }
    tracing::info!(
        data_dir = %storage.data_dir.display(),
        snapshot = ?snap_zxid.map(|z| format!("{z:#x}")),
        replayed,
        zxid = format_args!("{:#x}", state.zxid),
        sessions = state.sessions.len(),
        znodes = state.tree.node_count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered"
    );
    state.log = Some(TxnLog::start(storage, state.zxid, cancel, lock)?);
    // A snapshot right away when the log had to be replayed, so that the
    // next start has less to replay (ZooKeeper does the same).
    if replayed > 0 {
        state.snapshot();
    }
    Ok(state)
}
