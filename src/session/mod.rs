//! The sans-IO session core: every protocol rule of one ZooKeeper session,
//! as a deterministic state machine. No sockets, no clocks, no global RNG:
//! the driver feeds it bytes and `Instant`s and carries out the [`Event`]s it
//! emits (quinn-proto's model, STYLE.md §3.3).
//!
//! ```text
//!   driver ──submit / handle_frame / handle_timeout──▶ Session
//!   driver ◀──poll_event (Dial, Reply, Watch, State…)── Session
//!   driver ◀──poll_transmit (bytes to write)─────────── Session
//! ```
//!
//! What lives here: the handshake and timeout negotiation, ping cadence and
//! read timeout, FIFO xid matching, fan-out of ConnectionLoss / SessionExpired
//! to pending requests, the shuffled host rotation and reconnect pauses,
//! chroot, auth replay, the watch registry and SetWatches/SetWatches2 replay,
//! and client-side expiry.

mod chroot;
mod hosts;
mod watches;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tracing::{debug, info, warn};

pub(crate) use chroot::Chroot;
pub(crate) use hosts::HostList;
pub use hosts::{ConnectString, HostAddr, DEFAULT_PORT};
pub(crate) use watches::{WatchKind, WatchRegistry, WatcherId, SET_WATCHES_MAX_LENGTH};

use crate::error::{DialFailure, Error};
use crate::proto::codes::{err, xid, EventType, OpCode, WatcherType};
use crate::proto::{
    decode_frame, encode_frame, AuthPacket, ConnectRequest, ConnectResponse, Decode, Encode,
    PathWatchRequest, ReplyHeader, RequestHeader, SaslToken, SetWatches, WatcherEvent,
    WatchesRequest,
};
use crate::types::{SessionId, SessionState, WatchedEvent};

/// Everything a session needs to know up front.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    /// Hosts to rotate over (shuffled once with `seed`).
    pub(crate) hosts: Vec<HostAddr>,
    /// Chroot prefixed to every path, if any.
    pub(crate) chroot: Option<String>,
    /// Requested session timeout (the server clamps it to 2..20 ticks).
    pub(crate) session_timeout: Duration,
    /// How long the first session may take to establish before the session
    /// gives up with [`Error::NoServerReachable`].
    pub(crate) connect_timeout: Duration,
    /// How long a request may wait unsent while disconnected before it fails
    /// with [`Error::ConnectionLoss`].
    pub(crate) request_timeout: Duration,
    /// Whether a read-only server is acceptable.
    pub(crate) read_only: bool,
    /// Auth credentials sent on every connection: (scheme, auth bytes).
    pub(crate) auth: Vec<(String, Bytes)>,
    /// SASL DIGEST-MD5 credentials (user, password): authenticated on every
    /// connection before anything else is sent.
    pub(crate) sasl: Option<(String, String)>,
    /// A SASL mechanism run outside the core (GSSAPI): every connection
    /// authenticates first through [`Event::SaslStep`] /
    /// [`Session::handle_sasl_step`].
    pub(crate) sasl_external: bool,
    /// Largest request frame sent (the server's `jute.maxbuffer`).
    pub(crate) max_request: usize,
    /// Largest reply frame accepted.
    pub(crate) max_reply: usize,
    /// Seed of the host shuffle and back-off jitter.
    pub(crate) seed: u64,
    /// An existing session to resume: (id, password).
    pub(crate) resume: Option<(i64, Bytes)>,
}

impl SessionConfig {
    /// A config with zkit's defaults for `hosts`.
    pub(crate) fn new(hosts: Vec<HostAddr>) -> Self {
        Self {
            hosts,
            chroot: None,
            session_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            read_only: false,
            auth: Vec::new(),
            sasl: None,
            sasl_external: false,
            max_request: crate::proto::DEFAULT_JUTE_MAXBUFFER,
            max_reply: 2 * crate::proto::DEFAULT_JUTE_MAXBUFFER,
            seed: 0,
            resume: None,
        }
    }
}

/// Identifies one submitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RequestId(pub u64);

/// What a request does to the watch registry when it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchAction {
    /// Register `id` for `kind` on `path` (server path). `WatchKind::Exist`
    /// means "exists": a data watch if the node exists, an exist watch if the
    /// server answers NoNode.
    Register {
        /// Watcher to register.
        id: WatcherId,
        /// Kind requested.
        kind: WatchKind,
        /// Server path.
        path: String,
    },
    /// A removeWatches: on success remove local watchers of `watcher_type`
    /// on `path` and tell them.
    Remove {
        /// Server path.
        path: String,
        /// What to remove.
        watcher_type: WatcherType,
    },
}

/// A request for [`Session::submit`]: its op code and marshalled body.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The operation.
    pub(crate) op: OpCode,
    /// The encoded request record (without header), paths already chrooted.
    pub(crate) body: Bytes,
    /// Watch registry effect on success.
    pub(crate) watch: Option<WatchAction>,
}

/// Output of the session for the driver to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// Open a transport to `host`; report with `handle_connected` or
    /// `handle_connect_failed`. Replaces any transport in progress.
    Dial {
        /// Where to connect.
        host: HostAddr,
    },
    /// Close the transport (and forget any unread or unwritten bytes).
    CloseTransport,
    /// A request completed: the reply body (after the header) or an error.
    Reply {
        /// Which request.
        id: RequestId,
        /// The xid it was sent with, when the server answered it.
        xid: Option<i32>,
        /// Body or error.
        result: Result<Bytes, Error>,
    },
    /// A watch fired (or was removed) for these watchers. One-shot watchers
    /// are consumed; persistent ones stay unless the event is a
    /// `*WatchRemoved` event.
    Watch {
        /// Watchers to notify.
        watchers: Vec<WatcherId>,
        /// The event (path relative to the chroot).
        event: WatchedEvent,
    },
    /// A watcher registration was not made (its request failed).
    WatchAbandoned(WatcherId),
    /// Run one step of the external SASL mechanism (off the session's
    /// task: it may block, e.g. on a KDC) and report with
    /// [`Session::handle_sasl_step`].
    SaslStep {
        /// Which exchange.
        generation: u64,
        /// What the step gets.
        input: SaslInput,
    },
    /// The public session state changed. After a terminal state no more
    /// events follow and every watcher is finished.
    State(SessionState),
}

/// The input of an external SASL step ([`Event::SaslStep`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SaslInput {
    /// A new exchange: a new mechanism for this server, as dialled.
    Start(HostAddr),
    /// The server's token (empty for a null one).
    Token(Bytes),
}

#[derive(Debug)]
enum Conn {
    /// Waiting before the next dial.
    Backoff { until: Instant },
    /// Transport being opened to hosts[idx].
    Dialing { idx: usize, deadline: Instant },
    /// ConnectRequest written, waiting for the ConnectResponse.
    Handshaking {
        idx: usize,
        deadline: Instant,
        sent: bool,
    },
    /// Session established on this connection.
    Connected(Connected),
    /// CloseSession sent; waiting for its reply or EOF.
    Closing { deadline: Instant },
    /// Nothing more will happen.
    Terminal(SessionState),
}

#[derive(Debug)]
struct Connected {
    /// When the session was established on this connection.
    since: Instant,
    last_recv: Instant,
    last_send: Instant,
    ping_outstanding: bool,
}

/// What waits in the queue to be sent, in call order.
#[derive(Debug)]
enum Outgoing {
    /// A request of the user.
    User {
        /// Whom to answer.
        id: RequestId,
        /// The request.
        req: Request,
    },
    /// An addAuth of the user: `auth.entries[entry]` (its waiter is there).
    Auth {
        /// Index into the auth entries.
        entry: usize,
    },
    /// removeWatches for a server-side persistent watch no local watcher
    /// needs any more (fire and forget).
    RemoveWatches {
        /// Server path.
        path: String,
    },
}

impl Outgoing {
    /// The watch registration this entry makes if it succeeds.
    fn watch(&self) -> Option<&WatchAction> {
        match self {
            Self::User { req, .. } => req.watch.as_ref(),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Queued {
    out: Outgoing,
    queued_at: Instant,
}

#[derive(Debug)]
enum PendingKind {
    /// A user request.
    User(RequestId, Option<WatchAction>),
    /// SetWatches / SetWatches2 sent on reconnect.
    SetWatches,
    /// removeWatches sent when the last local persistent watcher went away.
    InternalRemoveWatches,
    /// closeSession.
    Close,
    /// A SASL token (op 102) of the exchange under way.
    Sasl,
}

#[derive(Debug)]
struct Pending {
    xid: i32,
    op: OpCode,
    kind: PendingKind,
}

#[derive(Debug)]
struct AuthEntry {
    scheme: String,
    auth: Bytes,
    /// A user waiting for the first reply to this auth.
    waiter: Option<RequestId>,
    /// Whether it was sent once (or came from the config): only those are
    /// replayed on reconnect; an unsent one still waits in the queue, in
    /// call order.
    replay: bool,
}

/// What the server made of this session, and what we last saw of it.
#[derive(Debug)]
struct Identity {
    /// 0 until the first session is established (unless resuming).
    session_id: i64,
    passwd: Bytes,
    negotiated: Option<Duration>,
    read_only_server: bool,
    last_zxid: i64,
    /// When the session (not the connection) last heard from a server.
    last_heard: Option<Instant>,
}

/// Requests: waiting to be sent (call order) and sent, waiting for their
/// replies (xid order).
#[derive(Debug)]
struct Requests {
    queue: VecDeque<Queued>,
    pending: VecDeque<Pending>,
    next_xid: i32,
    /// Last [`RequestId`] handed out.
    counter: u64,
}

/// Credentials: every auth of the session (replayed on each new connection,
/// first thing after the handshake), and those sent on this connection
/// that wait for their reply. A multi-step exchange (SASL) belongs here.
#[derive(Debug, Default)]
struct Auth {
    /// The SASL exchange under way on this connection: nothing else is
    /// sent until it is done.
    sasl: Option<crate::sasl::DigestMd5>,
    /// An external SASL exchange under way on this connection: its
    /// generation (steps of an older connection's exchange are stale).
    sasl_external: Option<u64>,
    /// Generations handed out.
    sasl_generations: u64,
    entries: Vec<AuthEntry>,
    /// Indexes into `entries` of auth packets sent on this connection, in
    /// order.
    on_conn: VecDeque<usize>,
}

/// Local watchers and the bookkeeping of the server-side watches.
#[derive(Debug, Default)]
struct Watches {
    registry: WatchRegistry,
    /// Watchers dropped while their registering request was in flight.
    cancelled: HashSet<WatcherId>,
    /// Paths whose unused server-side persistent watch could not be removed
    /// yet because a watch request on the same path was in flight.
    deferred: HashSet<String>,
    /// Persistent watch registrations queued or in flight, per path (so a
    /// one-shot watch beside one is found without scanning the queues).
    persistent_setups: HashMap<String, usize>,
}

impl Watches {
    /// A user request leaves the queue or the pending list: forget its
    /// persistent registration, if it was one.
    fn setup_done(&mut self, watch: Option<&WatchAction>) {
        if let Some(WatchAction::Register { kind, path, .. }) = watch {
            if kind.is_persistent() {
                if let Some(n) = self.persistent_setups.get_mut(path) {
                    *n -= 1;
                    if *n == 0 {
                        self.persistent_setups.remove(path);
                    }
                }
            }
        }
    }
}

/// The current connection's bytes.
#[derive(Debug, Default)]
struct Wire {
    /// Frames to write before anything queued (handshake, auth, SetWatches,
    /// pings).
    priority: BytesMut,
    /// Received bytes not yet forming a whole frame.
    inbuf: BytesMut,
    /// The host of the transport being opened or open.
    host: Option<HostAddr>,
    /// Bytes of an oversized reply (its request already failed) still to
    /// drop as they arrive.
    discard: usize,
}

/// Encoded size of a reply header (xid, zxid, err).
const REPLY_HEADER_LEN: usize = 16;

/// The largest oversized reply read past; a larger length prefix is taken
/// for a broken stream and closes the connection.
const MAX_SKIPPED_REPLY: usize = 1 << 30;

/// A close the user asked for.
#[derive(Debug, Default)]
struct CloseRequest {
    requested: bool,
    /// A close waiting for a connection gives up at this instant.
    deadline: Option<Instant>,
}

/// One ZooKeeper session as a state machine. See the module docs.
#[derive(Debug)]
pub(crate) struct Session {
    cfg: SessionConfig,
    chroot: Chroot,
    rng: StdRng,
    hosts: HostList,
    conn: Conn,
    state: SessionState,
    ident: Identity,
    /// Deadline for establishing the first session.
    initial_deadline: Instant,
    requests: Requests,
    auth: Auth,
    watches: Watches,
    /// The last SetWatches replay: frames sent and watched paths in them.
    last_replay: (usize, usize),
    wire: Wire,
    close: CloseRequest,
    events: VecDeque<Event>,
    /// The error requests get once terminal.
    terminal_err: Option<Error>,
    /// The last failure of each host tried since the last established
    /// connection, in the order first tried.
    dial_failures: Vec<DialFailure>,
}

impl Session {
    /// A new session; it asks to dial its first host at once.
    pub(crate) fn new(cfg: SessionConfig, now: Instant) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let hosts = HostList::new(cfg.hosts.clone(), &mut rng);
        let (session_id, passwd) = cfg
            .resume
            .clone()
            .unwrap_or((0, Bytes::from_static(&[0; 16])));
        let auths = cfg
            .auth
            .iter()
            .map(|(s, a)| AuthEntry {
                scheme: s.clone(),
                auth: a.clone(),
                waiter: None,
                replay: true,
            })
            .collect();
        let mut s = Self {
            chroot: Chroot::new(cfg.chroot.clone()),
            initial_deadline: now + cfg.connect_timeout,
            cfg,
            rng,
            hosts,
            conn: Conn::Backoff { until: now },
            state: SessionState::Connecting,
            ident: Identity {
                session_id,
                passwd,
                negotiated: None,
                read_only_server: false,
                last_zxid: 0,
                last_heard: None,
            },
            requests: Requests {
                queue: VecDeque::new(),
                pending: VecDeque::new(),
                next_xid: 1,
                counter: 0,
            },
            auth: Auth {
                sasl: None,
                sasl_external: None,
                sasl_generations: 0,
                entries: auths,
                on_conn: VecDeque::new(),
            },
            watches: Watches::default(),
            last_replay: (0, 0),
            wire: Wire::default(),
            close: CloseRequest::default(),
            events: VecDeque::new(),
            terminal_err: None,
            dial_failures: Vec::new(),
        };
        if s.hosts.len() == 0 {
            s.terminate(SessionState::Closed, now);
        } else {
            s.dial(now);
        }
        s
    }

    // ---- getters ------------------------------------------------------------

    /// The public state.
    pub(crate) fn state(&self) -> SessionState {
        self.state
    }

    /// The session id (0 before the first session is established).
    pub(crate) fn session_id(&self) -> SessionId {
        SessionId(self.ident.session_id)
    }

    /// The session password (16 zero bytes before establishment).
    pub(crate) fn session_password(&self) -> &Bytes {
        &self.ident.passwd
    }

    /// The negotiated session timeout, once known.
    pub(crate) fn negotiated_timeout(&self) -> Option<Duration> {
        self.ident.negotiated
    }

    /// The watch replay of the latest connection: SetWatches frames sent
    /// and the watched paths they carried.
    pub(crate) fn last_watch_replay(&self) -> (usize, usize) {
        self.last_replay
    }

    /// The server the session is connected to right now, if any.
    pub(crate) fn connected_host(&self) -> Option<&HostAddr> {
        match self.conn {
            Conn::Connected(_) | Conn::Closing { .. } => self.wire.host.as_ref(),
            _ => None,
        }
    }

    /// Highest zxid seen in a reply.
    pub(crate) fn last_zxid(&self) -> i64 {
        self.ident.last_zxid
    }

    /// Number of local watchers registered.
    #[cfg(test)]
    pub(crate) fn watcher_count(&self) -> usize {
        self.watches.registry.len()
    }

    /// Whether the session has ended for good.
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self.conn, Conn::Terminal(_))
    }

    /// The error every request gets once the session is terminal.
    pub(crate) fn terminal_error(&self) -> Option<Error> {
        match self.conn {
            Conn::Terminal(s) => Some(self.terminal_err.clone().unwrap_or(terminal_error(s))),
            _ => None,
        }
    }

    fn timeout_basis(&self) -> Duration {
        self.ident.negotiated.unwrap_or(self.cfg.session_timeout)
    }

    /// Receive idleness after which a connection is declared dead: 2/5 of the
    /// session timeout, so a dead server is left well before the session
    /// could expire (Java uses 2/3; we want failover inside half a timeout).
    pub(crate) fn read_timeout(&self) -> Duration {
        self.timeout_basis() * 2 / 5
    }

    /// Send idleness after which a ping goes out: 1/10 of the session
    /// timeout, at most 10 s (Java's `MAX_SEND_PING_INTERVAL`). With the read
    /// timeout at 2/5, a server has 3/10 of the timeout to answer a ping
    /// before the connection is given up.
    pub(crate) fn ping_interval(&self) -> Duration {
        (self.timeout_basis() / 10).min(Duration::from_secs(10))
    }

    /// How long one connection attempt (TCP + handshake) may take: the
    /// session timeout shared among the hosts (Java), at most the read timeout.
    pub(crate) fn attempt_timeout(&self) -> Duration {
        let n = self.hosts.len().max(1) as u32;
        (self.timeout_basis() / n)
            .min(self.read_timeout())
            .max(Duration::from_millis(50))
    }

    /// The longest pause between two full cycles over the hosts: 1/20 of the
    /// session timeout (50 ms to 1 s), so a client never sleeps through a
    /// large part of its session while the ensemble elects a leader.
    pub(crate) fn max_pause(&self) -> Duration {
        (self.timeout_basis() / 20).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// How long after the last reply the client itself declares the session
    /// expired while it cannot reach any server: 4/3 of the negotiated
    /// timeout (Java 3.9.3, ZOOKEEPER-4508). The server expires it within
    /// `(timeout, timeout + tick]`.
    pub(crate) fn client_expiry(&self) -> Duration {
        self.timeout_basis() * 4 / 3
    }

    // ---- inputs -------------------------------------------------------------

    /// Queues a request; it is sent as soon as a session is connected.
    /// Requests are sent in submission order.
    pub(crate) fn submit(&mut self, now: Instant, req: Request) -> RequestId {
        let id = RequestId(self.next_request_id());
        if let Some(e) = self.terminal_error() {
            self.reply_err(id, req.watch.as_ref(), e);
            return id;
        }
        if self.close.requested {
            self.reply_err(id, req.watch.as_ref(), Error::Closed);
            return id;
        }
        let size = req.body.len() + 8;
        if size > self.cfg.max_request {
            self.reply_err(
                id,
                req.watch.as_ref(),
                Error::RequestTooLarge {
                    size,
                    limit: self.cfg.max_request,
                },
            );
            return id;
        }
        debug_assert!(req.op != OpCode::Auth, "auth goes through add_auth");
        let req = self.one_mode_per_path(req);
        if let Some(WatchAction::Register { kind, path, .. }) = &req.watch {
            if kind.is_persistent() {
                *self
                    .watches
                    .persistent_setups
                    .entry(path.clone())
                    .or_default() += 1;
            }
        }
        self.requests.queue.push_back(Queued {
            out: Outgoing::User { id, req },
            queued_at: now,
        });
        id
    }

    /// ZooKeeper before 3.9 keeps one watch mode per session and path
    /// (ZOOKEEPER-4466): a one-shot watch set on a path that has a
    /// persistent or persistent-recursive watch of this session replaces
    /// it, and the persistent watch silently stops after one event. So a
    /// one-shot watch on such a path is not sent to the server: the read
    /// goes without its watch flag, and the watcher is served from the
    /// persistent watch's events (which include everything a one-shot data,
    /// exist or child watch wants; children changes are derived from a
    /// recursive watch's child events, see `handle_notification`).
    fn one_mode_per_path(&self, mut req: Request) -> Request {
        let Some(WatchAction::Register { kind, path, .. }) = &req.watch else {
            return req;
        };
        if kind.is_persistent() || !self.persistent_watch_on(path) {
            return req;
        }
        if !matches!(
            req.op,
            OpCode::GetData | OpCode::Exists | OpCode::GetChildren | OpCode::GetChildren2
        ) {
            return req;
        }
        let mut body = req.body.clone();
        if let Ok(mut r) = PathWatchRequest::decode(&mut body) {
            debug!(path = %r.path, "one-shot watch served by this session's persistent watch (ZOOKEEPER-4466)");
            r.watch = false;
            let mut out = BytesMut::new();
            r.encode(&mut out);
            req.body = out.freeze();
        }
        req
    }

    /// Whether this session has (or is setting up) a persistent or
    /// persistent-recursive watch on exactly `path`.
    fn persistent_watch_on(&self, path: &str) -> bool {
        let registry = &self.watches.registry;
        registry.has(WatchKind::Persistent, path)
            || registry.has(WatchKind::PersistentRecursive, path)
            || self.watches.persistent_setups.contains_key(path)
    }

    fn next_request_id(&mut self) -> u64 {
        self.requests.counter += 1;
        self.requests.counter
    }

    /// Queues credentials (addAuth): sent in call order among the
    /// requests, then replayed first thing on every new connection. The
    /// reply to the first sending answers the returned id.
    pub(crate) fn add_auth(&mut self, now: Instant, scheme: String, auth: Bytes) -> RequestId {
        let id = RequestId(self.next_request_id());
        if let Some(e) = self.terminal_error() {
            self.reply_err(id, None, e);
            return id;
        }
        if self.close.requested {
            self.reply_err(id, None, Error::Closed);
            return id;
        }
        self.auth.entries.push(AuthEntry {
            scheme,
            auth,
            waiter: Some(id),
            replay: false,
        });
        self.requests.queue.push_back(Queued {
            out: Outgoing::Auth {
                entry: self.auth.entries.len() - 1,
            },
            queued_at: now,
        });
        id
    }

    /// Stops watcher `id` locally. When it was the last local watcher of a
    /// persistent watch and no other watcher remains on that path, the
    /// server-side watch is removed too (removeWatches, fire and forget).
    pub(crate) fn unwatch(&mut self, now: Instant, id: WatcherId) {
        let Some((kind, path, last)) = self.watches.registry.unregister(id) else {
            // Not registered yet: its request may still be on its way. Make
            // sure the reply does not register it.
            let waiting = |w: Option<&WatchAction>| matches!(w, Some(WatchAction::Register { id: w, .. }) if *w == id);
            let in_flight = self.requests.pending.iter().any(|p| match &p.kind {
                PendingKind::User(_, w) => waiting(w.as_ref()),
                _ => false,
            }) || self.requests.queue.iter().any(|q| waiting(q.out.watch()));
            if in_flight {
                self.watches.cancelled.insert(id);
            }
            return;
        };
        if last && kind.is_persistent() {
            self.remove_server_watch(now, path);
        }
        self.flush_deferred_removals(now);
    }

    /// Queues a fire-and-forget removeWatches for `path` unless other local
    /// watchers still need the server-side watch.
    fn remove_server_watch(&mut self, now: Instant, path: String) {
        // removeWatches(Any) would also drop the watch a request still in
        // flight on this path is setting up for another watcher.
        let registering = |w: Option<&WatchAction>| match w {
            Some(WatchAction::Register { id, path: p, .. }) => {
                *p == path && !self.watches.cancelled.contains(id)
            }
            _ => false,
        };
        let in_flight = self.requests.pending.iter().any(|p| match &p.kind {
            PendingKind::User(_, w) => registering(w.as_ref()),
            _ => false,
        }) || self
            .requests
            .queue
            .iter()
            .any(|q| registering(q.out.watch()));
        if self.is_terminal() {
            return;
        }
        if in_flight || self.watches.registry.has_path(&path) {
            // Still needed (or about to be): decide again once that request
            // is answered or those watchers are gone.
            self.watches.deferred.insert(path);
            return;
        }
        self.watches.deferred.remove(&path);
        self.requests.queue.push_back(Queued {
            out: Outgoing::RemoveWatches { path },
            queued_at: now,
        });
    }

    /// Re-examines the deferred removals (after replies, notifications and
    /// unwatches): each is sent once nothing needs the path any more.
    fn flush_deferred_removals(&mut self, now: Instant) {
        if self.watches.deferred.is_empty() {
            return;
        }
        for path in std::mem::take(&mut self.watches.deferred) {
            self.remove_server_watch(now, path);
        }
    }

    /// Closes the session: queued requests are still sent, then
    /// closeSession; the session becomes `Closed` when the server answers,
    /// the connection drops, or after the read timeout. If no connection is
    /// up the session is closed at once (after a short wait for one when a
    /// session exists, so that its ephemerals go now rather than at expiry).
    /// Whoever waits for the close watches for the terminal state.
    pub(crate) fn close(&mut self, now: Instant) {
        if self.is_terminal() || self.close.requested {
            return;
        }
        self.close.requested = true;
        if !matches!(self.conn, Conn::Connected(_)) {
            if self.ident.session_id != 0 && self.ident.last_heard.is_some() {
                // Keep trying for a short while to deliver closeSession, so
                // the server drops the session's ephemerals now rather than
                // at expiry.
                self.close.deadline = Some(now + self.read_timeout());
            } else {
                self.terminate(SessionState::Closed, now);
            }
        }
    }

    /// Whether a close is waiting for a connection and its time is up.
    fn close_given_up(&self, now: Instant) -> bool {
        self.close.requested && self.close.deadline.is_none_or(|d| now >= d)
    }

    /// The transport asked for by [`Event::Dial`] is open.
    pub(crate) fn handle_connected(&mut self, now: Instant) {
        let Conn::Dialing { idx, deadline } = self.conn else {
            return;
        };
        self.wire.inbuf.clear();
        self.conn = Conn::Handshaking {
            idx,
            deadline,
            sent: false,
        };
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: self.ident.last_zxid,
            timeout: duration_ms(self.cfg.session_timeout),
            session_id: self.ident.session_id,
            passwd: self.ident.passwd.clone(),
            read_only: Some(self.cfg.read_only),
        };
        self.wire.priority.clear();
        encode_frame(&mut self.wire.priority, |b| req.encode(b));
        let _ = now;
    }

    /// The transport asked for by [`Event::Dial`] could not be opened, for
    /// `cause` (the connector's error).
    pub(crate) fn handle_connect_failed(&mut self, now: Instant, cause: &str) {
        if matches!(self.conn, Conn::Dialing { .. }) {
            self.attempt_failed(now, cause);
        }
    }

    /// Bytes arrived on the transport. Complete frames are processed; a
    /// protocol violation closes the connection (the session may resume).
    pub(crate) fn handle_data(&mut self, now: Instant, data: &[u8]) {
        if !matches!(
            self.conn,
            Conn::Handshaking { .. } | Conn::Connected(_) | Conn::Closing { .. }
        ) {
            return;
        }
        // Any bytes prove the server alive, even a partial frame of a large
        // reply (the read timeout must not cut a slow big reply).
        if !data.is_empty() {
            if let Conn::Connected(c) = &mut self.conn {
                c.last_recv = now;
            }
        }
        self.wire.inbuf.extend_from_slice(data);
        loop {
            if self.wire.discard > 0 {
                let n = self.wire.discard.min(self.wire.inbuf.len());
                self.wire.inbuf.advance(n);
                self.wire.discard -= n;
                if self.wire.discard > 0 {
                    return;
                }
            }
            let frame = match decode_frame(&mut self.wire.inbuf, self.cfg.max_reply) {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(crate::proto::FrameError::TooLarge { len, .. })
                    if len <= MAX_SKIPPED_REPLY
                        && matches!(self.conn, Conn::Connected(_) | Conn::Closing { .. }) =>
                {
                    // A reply we will not hold (a child list beyond the
                    // limit, say): fail its request, read past it, go on.
                    if self.wire.inbuf.len() < 4 + REPLY_HEADER_LEN {
                        return;
                    }
                    if !self.fail_oversized(now, len) {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "bad frame from server; closing connection");
                    self.connection_lost(now, "bad frame");
                    return;
                }
            };
            if let Err(e) = self.handle_frame(now, frame) {
                warn!(error = %e, "protocol error; closing connection");
                self.connection_lost(now, "protocol error");
                return;
            }
            self.flush_deferred_removals(now);
            if !matches!(
                self.conn,
                Conn::Handshaking { .. } | Conn::Connected(_) | Conn::Closing { .. }
            ) {
                return;
            }
        }
    }

    /// An oversized reply of `len` bytes starts the input: if its header
    /// answers the oldest request, that request fails with
    /// [`Error::ResponseTooLarge`] and the frame's bytes are dropped as they
    /// come; otherwise the stream is broken and the connection is lost.
    /// Returns whether the connection goes on.
    fn fail_oversized(&mut self, now: Instant, len: usize) -> bool {
        let limit = self.cfg.max_reply;
        let mut header = Bytes::copy_from_slice(&self.wire.inbuf[4..4 + REPLY_HEADER_LEN]);
        let hdr = ReplyHeader::decode(&mut header).ok().filter(|h| {
            h.xid >= 0
                && self
                    .requests
                    .pending
                    .front()
                    .is_some_and(|p| p.xid == h.xid)
        });
        let Some(hdr) = hdr else {
            warn!(
                len,
                limit, "oversized frame that answers no request; closing connection"
            );
            self.connection_lost(now, "oversized frame");
            return false;
        };
        warn!(
            xid = hdr.xid,
            len, limit, "a reply exceeds this client's frame limit: dropped, its request fails"
        );
        let p = self.requests.pending.pop_front().expect("matched above");
        if hdr.zxid > 0 {
            self.ident.last_zxid = self.ident.last_zxid.max(hdr.zxid);
        }
        if let PendingKind::User(id, watch) = p.kind {
            self.watches.setup_done(watch.as_ref());
            self.reply_err(
                id,
                watch.as_ref(),
                Error::ResponseTooLarge { size: len, limit },
            );
        }
        self.wire.discard = 4 + len;
        true
    }

    /// The transport closed or failed (EOF or I/O error).
    pub(crate) fn handle_disconnected(&mut self, now: Instant) {
        match self.conn {
            Conn::Dialing { .. } => self.attempt_failed(now, "connect failed"),
            Conn::Handshaking { .. } => self.attempt_failed(now, "closed during handshake"),
            Conn::Connected(_) => self.connection_lost(now, "connection closed"),
            Conn::Closing { .. } => self.terminate(SessionState::Closed, now),
            Conn::Backoff { .. } | Conn::Terminal(_) => {}
        }
    }

    /// Processes every deadline that has passed at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        // Session-level deadlines first: they may end everything.
        if !matches!(
            self.conn,
            Conn::Connected(_) | Conn::Closing { .. } | Conn::Terminal(_)
        ) {
            if let Some(at) = self.expiry_deadline() {
                if now >= at {
                    if self.ident.last_heard.is_none() {
                        // Never reached a server: whether a resumed session
                        // still exists is unknown, so this is a timeout.
                        // The attempt under way counts too.
                        let pending = match self.conn {
                            Conn::Dialing { .. } => Some("still connecting"),
                            Conn::Handshaking { .. } => Some("no answer to the handshake"),
                            _ => None,
                        };
                        // A host that already failed keeps that cause (a
                        // refused TLS handshake says more than "still
                        // connecting" of the retry under way).
                        if let (Some(why), Some(host)) = (pending, &self.wire.host) {
                            let host = host.to_string();
                            if !self.dial_failures.iter().any(|f| f.host == host) {
                                self.dial_failures.push(DialFailure {
                                    host,
                                    cause: why.to_string(),
                                });
                            }
                        }
                        let attempts = self.dial_failures.clone();
                        warn!(
                            hosts = %DialFailure::list(&attempts),
                            "no session established within the connect timeout"
                        );
                        let e = Error::NoServerReachable {
                            timeout: self.cfg.connect_timeout,
                            attempts,
                        };
                        self.terminate_with(SessionState::Closed, e, now);
                    } else {
                        info!(session = %self.session_id(), "no server reachable for 4/3 of the session timeout; session expired");
                        self.terminate(SessionState::Expired, now);
                    }
                    return;
                }
            }
            if self.close_given_up(now) {
                self.terminate(SessionState::Closed, now);
                return;
            }
            self.expire_queued(now);
        }
        let (read_timeout, ping_interval) = (self.read_timeout(), self.ping_interval());
        match &mut self.conn {
            Conn::Backoff { until } if now >= *until => self.dial(now),
            Conn::Dialing { deadline, .. } | Conn::Handshaking { deadline, .. }
                if now >= *deadline =>
            {
                self.attempt_failed(now, "connection attempt timed out")
            }
            Conn::Connected(c) => {
                if now >= c.last_recv + read_timeout {
                    debug!("read timeout");
                    self.connection_lost(now, "read timeout");
                } else if !c.ping_outstanding && now >= c.last_send + ping_interval {
                    c.ping_outstanding = true;
                    c.last_send = now;
                    encode_frame(&mut self.wire.priority, |b| {
                        RequestHeader {
                            xid: xid::PING,
                            op: OpCode::Ping.code(),
                        }
                        .encode(b)
                    });
                }
            }
            Conn::Closing { deadline } if now >= *deadline => {
                self.terminate(SessionState::Closed, now);
            }
            _ => {}
        }
    }

    // ---- outputs ------------------------------------------------------------

    /// The next event for the driver.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends bytes to write to `out`. Returns whether anything was added.
    pub(crate) fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut) -> bool {
        let before = out.len();
        match &mut self.conn {
            // Only the ConnectRequest until the ConnectResponse arrives
            // (Java's rule: an RST must not hide the expiry reply).
            Conn::Handshaking { sent, .. } if !*sent => {
                *sent = true;
                out.extend_from_slice(&self.wire.priority);
                self.wire.priority.clear();
            }
            Conn::Connected(_) | Conn::Closing { .. } => {
                out.extend_from_slice(&self.wire.priority);
                self.wire.priority.clear();
                // While SASL runs, only its tokens (and pings) go out.
                if matches!(self.conn, Conn::Connected(_))
                    && self.auth.sasl.is_none()
                    && self.auth.sasl_external.is_none()
                {
                    while let Some(q) = self.requests.queue.pop_front() {
                        self.write_request(q, out);
                    }
                    if self.close.requested
                        && !self
                            .requests
                            .pending
                            .iter()
                            .any(|p| matches!(p.kind, PendingKind::Close))
                    {
                        let xid = self.take_xid();
                        encode_frame(out, |b| {
                            RequestHeader {
                                xid,
                                op: OpCode::CloseSession.code(),
                            }
                            .encode(b)
                        });
                        self.requests.pending.push_back(Pending {
                            xid,
                            op: OpCode::CloseSession,
                            kind: PendingKind::Close,
                        });
                        self.conn = Conn::Closing {
                            deadline: now + self.read_timeout(),
                        };
                    }
                }
            }
            _ => {}
        }
        let wrote = out.len() > before;
        if wrote {
            if let Conn::Connected(c) = &mut self.conn {
                c.last_send = now;
            }
        }
        wrote
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout)
    /// has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |i: Instant| t = Some(t.map_or(i, |t| t.min(i)));
        match &self.conn {
            Conn::Backoff { until } => at(*until),
            Conn::Dialing { deadline, .. } | Conn::Handshaking { deadline, .. } => at(*deadline),
            Conn::Connected(c) => {
                at(c.last_recv + self.read_timeout());
                if !c.ping_outstanding {
                    at(c.last_send + self.ping_interval());
                }
            }
            Conn::Closing { deadline } => at(*deadline),
            Conn::Terminal(_) => return None,
        }
        if !matches!(self.conn, Conn::Connected(_) | Conn::Closing { .. }) {
            if let Some(e) = self.expiry_deadline() {
                at(e);
            }
            if let Some(d) = self.close.deadline {
                at(d);
            }
            if let Some(q) = self.requests.queue.front() {
                at(q.queued_at + self.cfg.request_timeout);
            }
        }
        t
    }

    // ---- internals ------------------------------------------------------------

    fn take_xid(&mut self) -> i32 {
        let x = self.requests.next_xid;
        // Java: xids start at 1 and wrap from Integer.MAX_VALUE to 1, never <= 0.
        self.requests.next_xid = if x == i32::MAX { 1 } else { x + 1 };
        x
    }

    fn write_request(&mut self, q: Queued, out: &mut BytesMut) {
        let (op, body, kind) = match q.out {
            Outgoing::Auth { entry } => {
                // From now on replayed on every new connection.
                self.auth.entries[entry].replay = true;
                self.write_auth(entry);
                out.extend_from_slice(&self.wire.priority);
                self.wire.priority.clear();
                return;
            }
            Outgoing::User { id, req } => (req.op, req.body, PendingKind::User(id, req.watch)),
            Outgoing::RemoveWatches { path } => {
                let mut body = BytesMut::new();
                WatchesRequest {
                    path,
                    watcher_type: WatcherType::Any.code(),
                }
                .encode(&mut body);
                (
                    OpCode::RemoveWatches,
                    body.freeze(),
                    PendingKind::InternalRemoveWatches,
                )
            }
        };
        let xid = self.take_xid();
        encode_frame(out, |b| {
            RequestHeader { xid, op: op.code() }.encode(b);
            b.extend_from_slice(&body);
        });
        self.requests.pending.push_back(Pending { xid, op, kind });
    }

    fn write_auth(&mut self, idx: usize) {
        let a = &self.auth.entries[idx];
        let packet = AuthPacket {
            auth_type: 0,
            scheme: a.scheme.clone(),
            auth: a.auth.clone(),
        };
        encode_frame(&mut self.wire.priority, |b| {
            RequestHeader {
                xid: xid::AUTH,
                op: OpCode::Auth.code(),
            }
            .encode(b);
            packet.encode(b);
        });
        self.auth.on_conn.push_back(idx);
    }

    fn expiry_deadline(&self) -> Option<Instant> {
        match self.ident.last_heard {
            Some(t) if self.ident.session_id != 0 => Some(t + self.client_expiry()),
            _ if self.ident.session_id == 0 => Some(self.initial_deadline),
            // Resuming a given session that we never heard from: give it the
            // connect timeout.
            _ => Some(self.initial_deadline),
        }
    }

    fn expire_queued(&mut self, now: Instant) {
        let timeout = self.cfg.request_timeout;
        while let Some(q) = self.requests.queue.front() {
            if now < q.queued_at + timeout {
                break;
            }
            let q = self.requests.queue.pop_front().expect("front exists");
            debug!("request waited {timeout:?} without a connection");
            self.fail_queued(q, Error::ConnectionLoss);
        }
    }

    /// Answers a request that was never sent.
    fn fail_queued(&mut self, q: Queued, e: Error) {
        match q.out {
            Outgoing::User { id, req } => {
                self.watches.setup_done(req.watch.as_ref());
                self.reply_err(id, req.watch.as_ref(), e);
            }
            Outgoing::Auth { entry } => {
                // Never sent: the credentials are forgotten (never
                // replayed); the waiter is answered once.
                if let Some(id) = self
                    .auth
                    .entries
                    .get_mut(entry)
                    .and_then(|a| a.waiter.take())
                {
                    self.reply_err(id, None, e);
                }
            }
            Outgoing::RemoveWatches { .. } => {}
        }
    }

    fn reply_err(&mut self, id: RequestId, watch: Option<&WatchAction>, e: Error) {
        if let Some(WatchAction::Register { id: w, .. }) = watch {
            self.watches.cancelled.remove(w);
            self.events.push_back(Event::WatchAbandoned(*w));
        }
        self.events.push_back(Event::Reply {
            id,
            xid: None,
            result: Err(e),
        });
    }

    fn set_state(&mut self, s: SessionState) {
        if self.state != s {
            self.state = s;
            self.events.push_back(Event::State(s));
        }
    }

    fn dial(&mut self, now: Instant) {
        let (idx, host) = self.hosts.next_host();
        debug!(%host, "dialing");
        self.wire.host = Some(host.clone());
        self.conn = Conn::Dialing {
            idx,
            deadline: now + self.attempt_timeout(),
        };
        self.events.push_back(Event::Dial { host });
    }

    /// Forgets the transport and everything in flight on it: the driver
    /// closes it, unread and unwritten bytes are dropped, and every request
    /// sent on it fails with `e` (for a write, its outcome is unknown).
    fn drop_connection(&mut self, e: Error) {
        if !matches!(self.conn, Conn::Backoff { .. } | Conn::Terminal(_)) {
            self.events.push_back(Event::CloseTransport);
        }
        self.wire.inbuf.clear();
        self.wire.discard = 0;
        self.wire.priority.clear();
        self.auth.on_conn.clear();
        self.auth.sasl = None;
        self.auth.sasl_external = None;
        self.fail_pending(e);
    }

    fn attempt_failed(&mut self, now: Instant, why: &str) {
        debug!(why, "connection attempt failed");
        if let Some(host) = &self.wire.host {
            let host = host.to_string();
            match self.dial_failures.iter_mut().find(|f| f.host == host) {
                Some(f) => f.cause = why.to_string(),
                None => self.dial_failures.push(DialFailure {
                    host,
                    cause: why.to_string(),
                }),
            }
        }
        self.drop_connection(Error::ConnectionLoss);
        if self.close_given_up(now) {
            self.terminate(SessionState::Closed, now);
            return;
        }
        let cap = self.max_pause();
        let pause = self.hosts.on_failed(&mut self.rng, cap);
        if pause.is_zero() {
            self.dial(now);
        } else {
            // A whole round over the hosts failed: say so, host by host.
            warn!(
                hosts = %DialFailure::list(&self.dial_failures),
                retry_in_ms = pause.as_millis() as u64,
                "no ZooKeeper server reachable"
            );
            self.conn = Conn::Backoff { until: now + pause };
        }
    }

    fn connection_lost(&mut self, now: Instant, why: &str) {
        if matches!(self.conn, Conn::Closing { .. }) {
            self.terminate(SessionState::Closed, now);
            return;
        }
        if !matches!(self.conn, Conn::Connected(_)) {
            self.attempt_failed(now, why);
            return;
        }
        info!(session = %self.session_id(), why, "connection lost");
        self.drop_connection(Error::ConnectionLoss);
        self.set_state(SessionState::Disconnected);
        if self.close.requested {
            self.terminate(SessionState::Closed, now);
            return;
        }
        // A connection that dies right after it was set up (a flapping
        // server, or two clients fighting over one session) counts as a
        // failed attempt, so the rotation's pauses apply; otherwise the next
        // host is dialled at once.
        let lived = match &self.conn {
            Conn::Connected(c) => now.saturating_duration_since(c.since),
            _ => Duration::MAX,
        };
        let pause = if lived < FLAP_WINDOW {
            let cap = self.max_pause();
            self.hosts.on_failed(&mut self.rng, cap)
        } else {
            self.hosts.on_disconnected();
            Duration::ZERO
        };
        if pause.is_zero() {
            self.dial(now);
        } else {
            self.conn = Conn::Backoff { until: now + pause };
        }
    }

    fn fail_pending(&mut self, e: Error) {
        for p in std::mem::take(&mut self.requests.pending) {
            match p.kind {
                PendingKind::User(id, watch) => {
                    self.watches.setup_done(watch.as_ref());
                    self.reply_err(id, watch.as_ref(), e.clone());
                }
                PendingKind::SetWatches
                | PendingKind::InternalRemoveWatches
                | PendingKind::Close
                | PendingKind::Sasl => {}
            }
        }
    }

    fn terminate(&mut self, s: SessionState, now: Instant) {
        self.terminate_with(s, terminal_error(s), now);
    }

    fn terminate_with(&mut self, s: SessionState, e: Error, _now: Instant) {
        if self.is_terminal() {
            return;
        }
        self.drop_connection(e.clone());
        self.conn = Conn::Terminal(s);
        self.terminal_err = Some(e.clone());
        for q in std::mem::take(&mut self.requests.queue) {
            self.fail_queued(q, e.clone());
        }
        for a in &mut self.auth.entries {
            if let Some(id) = a.waiter.take() {
                self.events.push_back(Event::Reply {
                    id,
                    xid: None,
                    result: Err(e.clone()),
                });
            }
        }
        self.watches.registry.clear();
        self.set_state(s);
    }

    fn handle_frame(&mut self, now: Instant, mut frame: Bytes) -> Result<(), Error> {
        if let Conn::Handshaking { idx, .. } = self.conn {
            let resp = ConnectResponse::decode(&mut frame)
                .map_err(|e| Error::Protocol(format!("bad ConnectResponse: {e}")))?;
            return self.handle_connect_response(now, idx, resp);
        }
        if let Conn::Connected(c) = &mut self.conn {
            c.last_recv = now;
        }
        self.ident.last_heard = Some(now);
        let hdr = ReplyHeader::decode(&mut frame)
            .map_err(|e| Error::Protocol(format!("bad reply header: {e}")))?;
        match hdr.xid {
            xid::NOTIFICATION => {
                let ev = WatcherEvent::decode(&mut frame)
                    .map_err(|e| Error::Protocol(format!("bad notification: {e}")))?;
                self.handle_notification(hdr.zxid, ev);
                Ok(())
            }
            xid::PING => {
                if let Conn::Connected(c) = &mut self.conn {
                    c.ping_outstanding = false;
                }
                if hdr.err == err::SESSION_CLOSED_REQUIRE_SASL_AUTH {
                    self.refused_unauthenticated(now);
                }
                Ok(())
            }
            xid::AUTH => {
                let idx = self
                    .auth
                    .on_conn
                    .pop_front()
                    .ok_or_else(|| Error::Protocol("auth reply without a request".into()))?;
                let waiter = self.auth.entries.get_mut(idx).and_then(|a| a.waiter.take());
                if hdr.err == err::AUTH_FAILED {
                    warn!("authentication failed");
                    if let Some(id) = waiter {
                        self.events.push_back(Event::Reply {
                            id,
                            xid: None,
                            result: Err(Error::AuthFailed),
                        });
                    }
                    self.terminate(SessionState::AuthFailed, now);
                } else if let Some(id) = waiter {
                    let result = if hdr.err == 0 {
                        Ok(Bytes::new())
                    } else {
                        Err(Error::from_code(hdr.err))
                    };
                    self.events.push_back(Event::Reply {
                        id,
                        xid: None,
                        result,
                    });
                }
                Ok(())
            }
            x => {
                let p = match self.requests.pending.front() {
                    Some(p) if p.xid == x => {
                        self.requests.pending.pop_front().expect("front exists")
                    }
                    Some(p) => {
                        // ClientCnxn.SendThread.readResponse: "Xid out of order".
                        return Err(Error::Protocol(format!(
                            "xid {x} out of order (expected {})",
                            p.xid
                        )));
                    }
                    None => return Err(Error::Protocol(format!("unexpected xid {x}"))),
                };
                if hdr.zxid > 0 {
                    self.ident.last_zxid = self.ident.last_zxid.max(hdr.zxid);
                }
                self.handle_reply(now, p, hdr.err, frame);
                if hdr.err == err::SESSION_CLOSED_REQUIRE_SASL_AUTH {
                    self.refused_unauthenticated(now);
                }
                Ok(())
            }
        }
    }

    /// The server enforces authentication (`enforce.auth.*`,
    /// `sessionRequireClientSASLAuth`) and this connection has no id of a
    /// required scheme: it answered -124 and closes. Another connection with
    /// the same credentials would be refused the same way, so the session
    /// ends as AuthFailed, as when SASL itself is refused.
    fn refused_unauthenticated(&mut self, now: Instant) {
        warn!("the server requires authentication this client does not have (-124)");
        self.terminate_with(
            SessionState::AuthFailed,
            Error::SessionClosedRequireSaslAuth,
            now,
        );
    }

    fn handle_connect_response(
        &mut self,
        now: Instant,
        idx: usize,
        resp: ConnectResponse,
    ) -> Result<(), Error> {
        if resp.timeout <= 0 || resp.session_id == 0 {
            if self.ident.session_id != 0 {
                info!(session = %self.session_id(), "server reports the session expired");
                self.terminate(SessionState::Expired, now);
                return Ok(());
            }
            return Err(Error::Protocol("server refused to create a session".into()));
        }
        if self.ident.session_id != 0 && resp.session_id != self.ident.session_id {
            return Err(Error::Protocol(format!(
                "server answered with session {:#x}, expected {:#x}",
                resp.session_id, self.ident.session_id
            )));
        }
        let fresh = self.ident.session_id == 0;
        self.ident.session_id = resp.session_id;
        self.ident.passwd = resp.passwd;
        self.ident.negotiated = Some(Duration::from_millis(resp.timeout as u64));
        self.ident.read_only_server = resp.read_only.unwrap_or(false);
        self.ident.last_heard = Some(now);
        self.hosts.on_connected(idx);
        self.dial_failures.clear();
        self.conn = Conn::Connected(Connected {
            since: now,
            last_recv: now,
            last_send: now,
            ping_outstanding: false,
        });
        info!(
            session = %self.session_id(),
            timeout_ms = resp.timeout,
            fresh,
            "session established"
        );
        self.wire.priority.clear();
        if self.cfg.sasl_external {
            self.auth.sasl_generations += 1;
            let generation = self.auth.sasl_generations;
            self.auth.sasl_external = Some(generation);
            self.events.push_back(Event::SaslStep {
                generation,
                input: SaslInput::Start(self.cfg.hosts[idx].clone()),
            });
            return Ok(());
        }
        if let Some((user, password)) = self.cfg.sasl.clone() {
            // SASL first, before credentials, watches and requests (Java's
            // order); the rest follows once it succeeded.
            let mut mech = crate::sasl::DigestMd5::new(&user, &password);
            let token = mech.initial();
            self.auth.sasl = Some(mech);
            self.write_sasl(&token);
            return Ok(());
        }
        self.prime_connection();
        Ok(())
    }

    /// Sends a SASL token (op 102) right away.
    fn write_sasl(&mut self, token: &[u8]) {
        let xid = self.take_xid();
        encode_frame(&mut self.wire.priority, |b| {
            RequestHeader {
                xid,
                op: OpCode::Sasl.code(),
            }
            .encode(b);
            SaslToken {
                token: Bytes::copy_from_slice(token),
            }
            .encode(b);
        });
        self.requests.pending.push_back(Pending {
            xid,
            op: OpCode::Sasl,
            kind: PendingKind::Sasl,
        });
    }

    /// A SASL reply: the next token, success, or the end of the session.
    fn handle_sasl_reply(&mut self, now: Instant, code: i32, mut body: Bytes) {
        let failed = |s: &mut Self, why: String, e: Error| {
            warn!(%why, "SASL authentication failed");
            s.terminate_with(SessionState::AuthFailed, e, now);
        };
        if code != err::OK {
            let e = if code == err::SESSION_CLOSED_REQUIRE_SASL_AUTH {
                Error::SessionClosedRequireSaslAuth
            } else {
                Error::AuthFailed
            };
            return failed(self, format!("server error {code}"), e);
        }
        let token = match SaslToken::decode(&mut body) {
            Ok(t) => t.token,
            Err(e) => return failed(self, format!("bad SASL reply: {e}"), Error::AuthFailed),
        };
        if let Some(generation) = self.auth.sasl_external {
            self.events.push_back(Event::SaslStep {
                generation,
                input: SaslInput::Token(token),
            });
            return;
        }
        let Some(mut mech) = self.auth.sasl.take() else {
            return;
        };
        let cnonce: String = (0..16)
            .map(|_| format!("{:02x}", rand::Rng::random::<u8>(&mut self.rng)))
            .collect();
        match mech.step(&token, &cnonce) {
            Ok(crate::sasl::Step::Send(t)) => {
                self.auth.sasl = Some(mech);
                self.write_sasl(&t);
            }
            Ok(crate::sasl::Step::Done) => {
                info!(session = %self.session_id(), "SASL authenticated");
                self.prime_connection();
            }
            Err(why) => failed(self, why, Error::AuthFailed),
        }
    }

    /// The outcome of an external SASL step ([`Event::SaslStep`]): a token
    /// to send, `None` when the mechanism is done (authenticated), or why
    /// it failed (the session ends as AuthFailed). Steps of an exchange
    /// that is no longer under way (the connection changed) are ignored.
    pub(crate) fn handle_sasl_step(
        &mut self,
        now: Instant,
        generation: u64,
        result: Result<Option<Vec<u8>>, String>,
    ) {
        if self.auth.sasl_external != Some(generation) || !matches!(self.conn, Conn::Connected(_)) {
            return;
        }
        match result {
            Ok(Some(token)) => self.write_sasl(&token),
            Ok(None) => {
                self.auth.sasl_external = None;
                info!(session = %self.session_id(), "SASL authenticated");
                self.prime_connection();
            }
            Err(why) => {
                warn!(%why, "SASL authentication failed");
                self.terminate_with(SessionState::AuthFailed, Error::AuthFailed, now);
            }
        }
    }

    /// What follows the handshake (and SASL) on a new connection, in Java's
    /// primeConnection order: credentials first (so ACL-checked watch
    /// delivery works), then watches, then requests (`poll_transmit`).
    fn prime_connection(&mut self) {
        for i in 0..self.auth.entries.len() {
            if self.auth.entries[i].replay {
                self.write_auth(i);
            }
        }
        let batches = self
            .watches
            .registry
            .replay(self.ident.last_zxid, SET_WATCHES_MAX_LENGTH);
        self.last_replay = (
            batches.len(),
            batches
                .iter()
                .map(|b| {
                    b.data_watches.len()
                        + b.exist_watches.len()
                        + b.child_watches.len()
                        + b.persistent_watches.len()
                        + b.persistent_recursive_watches.len()
                })
                .sum(),
        );
        for b in batches {
            let xid = self.take_xid();
            let persistent =
                !b.persistent_watches.is_empty() || !b.persistent_recursive_watches.is_empty();
            let op = if persistent {
                OpCode::SetWatches2
            } else {
                OpCode::SetWatches
            };
            encode_frame(&mut self.wire.priority, |buf| {
                RequestHeader { xid, op: op.code() }.encode(buf);
                if persistent {
                    b.encode(buf);
                } else {
                    SetWatches {
                        relative_zxid: b.relative_zxid,
                        data_watches: b.data_watches,
                        exist_watches: b.exist_watches,
                        child_watches: b.child_watches,
                    }
                    .encode(buf);
                }
            });
            self.requests.pending.push_back(Pending {
                xid,
                op,
                kind: PendingKind::SetWatches,
            });
        }
        self.set_state(if self.ident.read_only_server {
            SessionState::ConnectedReadOnly
        } else {
            SessionState::Connected
        });
    }

    fn handle_reply(&mut self, now: Instant, p: Pending, code: i32, body: Bytes) {
        if code == err::SESSION_EXPIRED {
            // Any reply saying so ends the session.
            self.requests.pending.push_front(p);
            self.terminate(SessionState::Expired, now);
            return;
        }
        let xid = p.xid;
        match p.kind {
            PendingKind::User(id, watch) => {
                self.watches.setup_done(watch.as_ref());
                let ok = code == err::OK;
                match watch {
                    Some(WatchAction::Register { id: w, kind, path }) => {
                        let kind = match (kind, code) {
                            (WatchKind::Exist, err::OK) => Some(WatchKind::Data),
                            (WatchKind::Exist, err::NO_NODE) => Some(WatchKind::Exist),
                            (k, err::OK) => Some(k),
                            _ => None,
                        };
                        let cancelled = self.watches.cancelled.remove(&w);
                        match kind {
                            Some(k) if cancelled => {
                                // Dropped before its reply: the server has
                                // the watch, nobody wants it.
                                if k.is_persistent() {
                                    self.remove_server_watch(now, path);
                                }
                            }
                            Some(k) => self.watches.registry.register(w, k, &path),
                            None => self.events.push_back(Event::WatchAbandoned(w)),
                        }
                    }
                    Some(WatchAction::Remove { path, watcher_type }) if ok => {
                        self.remove_local_watches(&path, watcher_type);
                    }
                    _ => {}
                }
                let result = if ok {
                    Ok(body)
                } else {
                    Err(Error::from_code(code))
                };
                self.events.push_back(Event::Reply {
                    id,
                    xid: Some(xid),
                    result,
                });
            }
            PendingKind::Sasl => self.handle_sasl_reply(now, code, body),
            PendingKind::SetWatches => {
                if code != err::OK {
                    warn!(code, "re-registering watches failed");
                }
            }
            PendingKind::InternalRemoveWatches => {
                if code != err::OK && code != err::NO_WATCHER {
                    debug!(code, "removing an unused persistent watch failed");
                }
            }
            PendingKind::Close => self.terminate(SessionState::Closed, now),
        }
        let _ = p.op;
    }

    fn remove_local_watches(&mut self, path: &str, t: WatcherType) {
        let kinds: &[WatchKind] = match t {
            WatcherType::Children => &[WatchKind::Child],
            WatcherType::Data => &[WatchKind::Data, WatchKind::Exist],
            WatcherType::Persistent => &[WatchKind::Persistent],
            WatcherType::PersistentRecursive => &[WatchKind::PersistentRecursive],
            _ => &[
                WatchKind::Data,
                WatchKind::Exist,
                WatchKind::Child,
                WatchKind::Persistent,
                WatchKind::PersistentRecursive,
            ],
        };
        let client_path = self.chroot.to_client(path);
        for (w, kind) in self.watches.registry.remove_path(path, kinds) {
            let event_type = match kind {
                WatchKind::Data | WatchKind::Exist => EventType::DataWatchRemoved,
                WatchKind::Child => EventType::ChildWatchRemoved,
                WatchKind::Persistent | WatchKind::PersistentRecursive => {
                    EventType::PersistentWatchRemoved
                }
            };
            self.events.push_back(Event::Watch {
                watchers: vec![w],
                event: WatchedEvent {
                    event_type,
                    path: client_path.clone(),
                    zxid: -1,
                },
            });
        }
    }

    fn handle_notification(&mut self, zxid: i64, ev: WatcherEvent) {
        let Some(event_type) = EventType::from_code(ev.event_type) else {
            warn!(code = ev.event_type, "unknown watch event type; ignored");
            return;
        };
        let watchers = self.watches.registry.on_notification(event_type, &ev.path);
        // A child watch served by a recursive watch on its path (see
        // `one_mode_per_path`): the recursive watch reports a child created
        // or deleted, never NodeChildrenChanged; derive it.
        if matches!(event_type, EventType::NodeCreated | EventType::NodeDeleted) && ev.path != "/" {
            let parent = crate::proto::parent(&ev.path);
            if self
                .watches
                .registry
                .has(WatchKind::PersistentRecursive, parent)
            {
                let children: Vec<WatcherId> = self
                    .watches
                    .registry
                    .remove_path(parent, &[WatchKind::Child])
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                if !children.is_empty() {
                    self.events.push_back(Event::Watch {
                        watchers: children,
                        event: WatchedEvent {
                            event_type: EventType::NodeChildrenChanged,
                            path: self.chroot.to_client(parent),
                            zxid,
                        },
                    });
                }
            }
        }
        if watchers.is_empty() {
            debug!(path = %ev.path, ?event_type, "notification without a local watcher");
            return;
        }
        self.events.push_back(Event::Watch {
            watchers,
            event: WatchedEvent {
                event_type,
                path: self.chroot.to_client(&ev.path),
                zxid,
            },
        });
    }
}

/// A connection that drops sooner than this after the handshake counts as a
/// failed attempt (see `connection_lost`).
const FLAP_WINDOW: Duration = Duration::from_secs(1);

/// The error requests get in a terminal state.
pub(crate) fn terminal_error(s: SessionState) -> Error {
    match s {
        SessionState::Expired => Error::SessionExpired,
        SessionState::AuthFailed => Error::AuthFailed,
        _ => Error::Closed,
    }
}

fn duration_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
