//! The server's shared state: everything behind the one lock ([`State`]),
//! what every task shares ([`Shared`]: the lock, the settings, the clocks,
//! the counters), and the handles connections are reached through.
//!
//! All server state (tree, watches, sessions, zxid, connection registry) sits
//! behind one `std::sync::Mutex` that is never held across an `.await`. Each
//! connection owns an unbounded queue of outgoing frames; everything a request
//! causes (notifications to any connection, then its own reply) is queued
//! while the lock is held, so notifications of a write precede its reply
//! (ZooKeeper's ordering guarantee, PROTOCOL.md §4.16).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Notify};
use zkit_proto::DEFAULT_JUTE_MAXBUFFER;

use crate::acl::{AclPolicy, AuthInfo};
use crate::clock::Clock;
use crate::config::FourLetterWords;
use crate::persist::{self, Record, RecordKind, TxnLog};
use crate::sessions::{ServerSessionId, SessionTracker};
use crate::tree::{Compat, DataTree, Trigger};
use crate::watches::{ConnId, WatchManager};
use crate::wire::notification;

/// Every setting of a server, with ZooKeeper's defaults. The builder fills
/// it in; the running server reads it.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) tick_time: Duration,
    pub(crate) min_session_timeout: Option<Duration>,
    pub(crate) max_session_timeout: Option<Duration>,
    /// `jute.maxbuffer`: the largest request frame accepted.
    pub(crate) max_frame: usize,
    /// `maxCnxns` (0 = unlimited).
    pub(crate) max_connections: usize,
    /// `maxClientCnxns` (0 = unlimited).
    pub(crate) max_connections_per_ip: usize,
    /// `zookeeper.nio.sessionlessCnxnTimeout`.
    pub(crate) handshake_timeout: Duration,
    pub(crate) super_digest: Option<String>,
    pub(crate) extended_types: bool,
    pub(crate) container_check_interval: Duration,
    pub(crate) compat: Compat,
    pub(crate) four_letter_words: FourLetterWords,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) data_log_dir: Option<PathBuf>,
    pub(crate) snap_count: u64,
    pub(crate) snap_retain_count: usize,
    pub(crate) prealloc_size: u64,
    pub(crate) force_sync: bool,
    /// The JAAS `Server` section's DIGEST-MD5 users (`None`: no SASL).
    pub(crate) sasl_users: Option<crate::sasl::SaslUsers>,
    /// The `sasl` ACL scheme is registered (`authProvider.*=…SASLAuthenticationProvider`).
    pub(crate) sasl_auth_provider: bool,
    /// `zookeeper.superUser` (and `.superUser.<suffix>`): SASL users who are
    /// also super.
    pub(crate) sasl_super_users: Vec<String>,
    /// The `x509` scheme is registered explicitly (`authProvider.*`); a
    /// secure port registers it too.
    pub(crate) x509_auth_provider: bool,
    /// `zookeeper.X509AuthenticationProvider.superUser`.
    pub(crate) x509_super_user: Option<String>,
    /// `enforce.auth.enabled` + `enforce.auth.schemes` (or
    /// `sessionRequireClientSASLAuth`): a connection without an id of one of
    /// these schemes gets -124 for any request but auth and SASL, and is
    /// closed. Empty: no enforcement.
    pub(crate) enforce_auth_schemes: Vec<String>,
    /// The HTTP admin server (`admin.enableServer`): its address and
    /// command URL (`None`: off).
    pub(crate) admin: Option<crate::admin::AdminSettings>,
    /// The Prometheus provider's own port (`metricsProvider.httpPort`).
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// The `zoo.cfg` text the server was configured from, if any.
    pub(crate) initial_config: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tick_time: Duration::from_millis(2000),
            min_session_timeout: None,
            max_session_timeout: None,
            max_frame: DEFAULT_JUTE_MAXBUFFER,
            max_connections: 1024,
            max_connections_per_ip: 0,
            handshake_timeout: Duration::from_secs(10),
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
            sasl_users: None,
            sasl_auth_provider: false,
            sasl_super_users: Vec::new(),
            x509_auth_provider: false,
            x509_super_user: None,
            enforce_auth_schemes: Vec::new(),
            admin: None,
            metrics_listen: None,
            initial_config: None,
        }
    }
}

impl Settings {
    /// Where the transaction log goes: `dataLogDir`, else `dataDir`.
    pub(crate) fn log_dir(&self) -> Option<&PathBuf> {
        self.data_log_dir.as_ref().or(self.data_dir.as_ref())
    }

    /// SASL is required (enforcement names `sasl`): a failed SASL exchange
    /// answers -124 rather than -115.
    pub(crate) fn sasl_required(&self) -> bool {
        self.enforce_auth_schemes.iter().any(|s| s == "sasl")
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

/// ZooTrace's default mask (client requests, client pings, server
/// pings, the session traces' bits).
pub(crate) const DEFAULT_TRACE_MASK: u64 = 306;

/// A registered (handshaken) connection, as the state knows it.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub(crate) tx: mpsc::UnboundedSender<Out>,
    pub(crate) session: ServerSessionId,
    pub(crate) peer: SocketAddr,
    /// Its counters, kept by its task (`cons`, `/commands/connections`).
    pub(crate) stats: Arc<ConnStats>,
}

/// A connection's statistics, as ZooKeeper's `ServerCnxn` keeps them:
/// written by the connection's task, read by the admin commands. Times are
/// wall-clock milliseconds, latencies milliseconds.
#[derive(Debug)]
pub(crate) struct ConnStats {
    /// When the connection was accepted.
    pub(crate) established_ms: u64,
    pub(crate) packets_received: AtomicU64,
    pub(crate) packets_sent: AtomicU64,
    /// Requests received and not yet answered.
    pub(crate) outstanding: AtomicU64,
    /// ZooKeeper's short name of the last answered op (`GETD`, `PING`, ...;
    /// `NA` before any), as 4 ASCII bytes.
    last_op: AtomicU32,
    /// The last answered request's xid (-1: none yet).
    pub(crate) last_cxid: AtomicI64,
    /// The zxid of the last reply (-1: none yet).
    pub(crate) last_zxid: AtomicI64,
    pub(crate) last_response_ms: AtomicU64,
    pub(crate) last_latency: AtomicU64,
    /// `u64::MAX` until the first reply.
    min_latency: AtomicU64,
    pub(crate) max_latency: AtomicU64,
    total_latency: AtomicU64,
    count: AtomicU64,
}

impl ConnStats {
    pub(crate) fn new(established_ms: u64) -> Self {
        Self {
            established_ms,
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            outstanding: AtomicU64::new(0),
            last_op: AtomicU32::new(0),
            last_cxid: AtomicI64::new(-1),
            last_zxid: AtomicI64::new(-1),
            last_response_ms: AtomicU64::new(0),
            last_latency: AtomicU64::new(0),
            min_latency: AtomicU64::new(u64::MAX),
            max_latency: AtomicU64::new(0),
            total_latency: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// A reply to `op` (its short name), for the request `cxid` (negative:
    /// a ping or an auth, whose xid is not a cxid), carrying `zxid`, sent at
    /// `now_ms`, `latency_ms` after its request came.
    pub(crate) fn replied(&self, op: [u8; 4], cxid: i32, zxid: i64, now_ms: u64, latency_ms: u64) {
        let r = Ordering::Relaxed;
        if cxid >= 0 {
            self.last_cxid.store(i64::from(cxid), r);
        }
        self.last_op.store(u32::from_be_bytes(op), r);
        self.last_zxid.store(zxid, r);
        self.last_response_ms.store(now_ms, r);
        self.last_latency.store(latency_ms, r);
        self.min_latency.fetch_min(latency_ms, r);
        self.max_latency.fetch_max(latency_ms, r);
        self.total_latency.fetch_add(latency_ms, r);
        self.count.fetch_add(1, r);
    }

    /// The last op's short name (`NA` before any).
    pub(crate) fn last_op(&self) -> String {
        match self.last_op.load(Ordering::Relaxed) {
            0 => "NA".to_string(),
            v => String::from_utf8_lossy(&v.to_be_bytes()).into_owned(),
        }
    }

    /// The least latency seen (0 before any reply).
    pub(crate) fn min_latency(&self) -> u64 {
        match self.min_latency.load(Ordering::Relaxed) {
            u64::MAX => 0,
            v => v,
        }
    }

    /// The mean latency (integer milliseconds, as ZooKeeper's).
    pub(crate) fn avg_latency(&self) -> u64 {
        let n = self.count.load(Ordering::Relaxed);
        self.total_latency
            .load(Ordering::Relaxed)
            .checked_div(n)
            .unwrap_or(0)
    }

    /// `crst`: forgets the counters (ZooKeeper's `resetStats`), keeping the
    /// connection's identity.
    pub(crate) fn reset(&self) {
        let r = Ordering::Relaxed;
        self.packets_received.store(0, r);
        self.packets_sent.store(0, r);
        self.last_op.store(0, r);
        self.last_cxid.store(-1, r);
        self.last_zxid.store(-1, r);
        self.last_response_ms.store(0, r);
        self.last_latency.store(0, r);
        self.min_latency.store(u64::MAX, r);
        self.max_latency.store(0, r);
        self.total_latency.store(0, r);
        self.count.store(0, r);
    }
}

/// A handshaken connection, as its own task knows it: what a request of it
/// is dispatched with.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: ConnId,
    pub(crate) session: ServerSessionId,
    pub(crate) auth: AuthInfo,
    pub(crate) tx: mpsc::UnboundedSender<Out>,
    /// This connection's SASL exchange.
    pub(crate) sasl: crate::sasl::SaslServer,
    /// Where its reply frames are encoded, a chunk holding many of them
    /// ([`crate::wire::reply_in`]).
    pub(crate) frames: bytes::BytesMut,
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) tree: DataTree,
    pub(crate) watches: WatchManager,
    pub(crate) sessions: SessionTracker,
    /// Last processed zxid.
    pub(crate) zxid: i64,
    pub(crate) conns: crate::shards::FastMap<ConnId, ConnHandle>,
    pub(crate) session_conn: crate::shards::FastMap<ServerSessionId, ConnId>,
    pub(crate) next_conn: u64,
    /// The transaction log (`None`: in-memory server).
    pub(crate) log: Option<TxnLog>,
}

impl State {
    /// Requests received and not yet answered, over every connection.
    pub(crate) fn outstanding(&self) -> u64 {
        self.conns
            .values()
            .map(|h| h.stats.outstanding.load(Ordering::Relaxed))
            .sum()
    }

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
    pub(crate) fn log(&mut self, time_ms: i64, session: ServerSessionId, kind: RecordKind) {
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

    /// Ends a session at wall-clock `time_ms`: removes its ephemerals
    /// (firing watches), forgets it and closes its connection, if any.
    pub(crate) fn kill_session(&mut self, session: ServerSessionId, time_ms: i64) {
        self.sessions.set_closing(session);
        let zxid = self.next_zxid();
        self.log(time_ms, session, RecordKind::CloseSession);
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
    pub(crate) state: Mutex<State>,
    pub(crate) settings: Settings,
    pub(crate) clock: Clock,
    /// The last durable zxid (`None`: in-memory server).
    pub(crate) durable: Option<watch::Receiver<i64>>,
    pub(crate) policy: AclPolicy,
    /// The tick in milliseconds.
    pub(crate) tick_ms: i32,
    pub(crate) local_addr: SocketAddr,
    /// Live connections per client IP (only tracked with a per-IP limit).
    pub(crate) per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Wakes the expirer when a session may expire earlier than it planned.
    pub(crate) session_added: Notify,
    pub(crate) connections: AtomicUsize,
    pub(crate) received: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) started: std::time::Instant,
    /// Latency and fsync-time distributions.
    pub(crate) metrics: crate::metrics::ServerMetrics,
    /// The trace mask (`gtmk`/`stmk`): kept and reported, as ZooKeeper's
    /// `ZooTrace` level (this server writes no trace file).
    pub(crate) trace_mask: AtomicU64,
}

impl Shared {
    /// Locks the state; a poisoned lock (a panic elsewhere) is taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `peer`, or refuses it (`false`) when the
    /// global or the per-IP (`maxClientCnxns`) limit is reached.
    pub(crate) fn admit(&self, peer: SocketAddr) -> bool {
        let max = self.settings.max_connections;
        if max > 0 && self.connections.load(Ordering::SeqCst) >= max {
            tracing::warn!(%peer, "too many connections, closing");
            return false;
        }
        let per_ip_max = self.settings.max_connections_per_ip;
        if per_ip_max > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_ip.entry(peer.ip()).or_insert(0);
            if *n >= per_ip_max {
                tracing::warn!(
                    "Too many connections from {} - max is {}",
                    peer.ip(),
                    per_ip_max
                );
                return false;
            }
            *n += 1;
        }
        self.connections.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Forgets a connection counted by [`admit`](Self::admit).
    pub(crate) fn release(&self, peer: SocketAddr) {
        self.connections.fetch_sub(1, Ordering::SeqCst);
        if self.settings.max_connections_per_ip > 0 {
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
