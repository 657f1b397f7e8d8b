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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
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

/// A registered (handshaken) connection, as the state knows it.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub(crate) tx: mpsc::UnboundedSender<Out>,
    pub(crate) session: ServerSessionId,
    pub(crate) peer: SocketAddr,
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
    pub(crate) session_conn: HashMap<ServerSessionId, ConnId>,
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
