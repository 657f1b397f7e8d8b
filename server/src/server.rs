//! The top of the server: the builder, the listener, and the background
//! tasks (accept loop, session expirer, container/TTL reaper, recovery).
//!
//! Module graph (no cycles): `server` → `connection` → `dispatch`/`fourlw`
//! → `state` → the building blocks (`tree`, `watches`, `sessions`, `acl`,
//! `persist`), with `wire`, `clock`, `write` and `config` as leaves.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acl::{AclPolicy, AuthInfo};
use crate::clock::{Clock, WallClock};
use crate::config::{Config, FourLetterWords, DEFAULT_MAX_CLIENT_CNXNS};
use crate::persist::{self, RecordKind, Storage, TxnLog};
use crate::sessions::{SessionConfig, SessionTracker};
use crate::state::{Settings, Shared, State};
use crate::tree::{Compat, DataTree};
use crate::watches::WatchManager;

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
#[derive(Clone, Default)]
pub struct ServerBuilder {
    settings: Settings,
    wall_clock: Option<WallClock>,
    #[cfg(feature = "tls")]
    secure: Option<(SocketAddr, crate::tls::ServerTls)>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("settings", &self.settings)
            .field("custom_wall_clock", &self.wall_clock.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// A builder with every setting of a parsed `zoo.cfg`, and ZooKeeper's
    /// defaults where the file is silent: the listen address
    /// ([`Config::listen_addr`]: `0.0.0.0:2181`), `maxClientCnxns` (60 per IP)
    /// and `maxCnxns` (unlimited). With `dataDir` the server is durable.
    ///
    /// ```
    /// let cfg = zkit_server::Config::parse("tickTime=500\nclientPort=2181\n")?;
    /// let builder = zkit_server::ServerBuilder::from_config(&cfg);
    /// # let _ = builder;
    /// # Ok::<(), zkit_server::ConfigError>(())
    /// ```
    pub fn from_config(cfg: &Config) -> Self {
        let mut b = Self::default();
        let s = &mut b.settings;
        s.listen = cfg.listen_addr();
        if !cfg.text.is_empty() {
            s.initial_config = Some(cfg.text.clone());
        }
        s.max_connections_per_ip = cfg.max_client_cnxns.unwrap_or(DEFAULT_MAX_CLIENT_CNXNS);
        s.max_connections = cfg.max_cnxns.unwrap_or(0);
        if let Some(t) = cfg.tick_time {
            s.tick_time = t;
        }
        s.min_session_timeout = cfg.min_session_timeout.or(s.min_session_timeout);
        s.max_session_timeout = cfg.max_session_timeout.or(s.max_session_timeout);
        if let Some(w) = &cfg.four_letter_words {
            s.four_letter_words = w.clone();
        }
        if let Some(e) = cfg.extended_types {
            s.extended_types = e;
        }
        s.super_digest = cfg.super_digest.clone().or(s.super_digest.take());
        if let Some(d) = cfg.container_check_interval {
            s.container_check_interval = d;
        }
        if let Some(n) = cfg.jute_maxbuffer {
            s.max_frame = n;
        }
        #[cfg(feature = "tls")]
        if let (Some(addr), Some(store)) = (cfg.secure_listen_addr(), &cfg.ssl_key_store) {
            let mut tls = crate::tls::ServerTls::new(store.clone(), store.clone());
            // ZooKeeper: enabledProtocols, else [protocol], else TLSv1.2.
            let names = cfg.ssl_enabled_protocols.clone().unwrap_or_else(|| {
                vec![cfg
                    .ssl_protocol
                    .clone()
                    .unwrap_or_else(|| "TLSv1.2".to_string())]
            });
            let versions: Vec<crate::tls::TlsVersion> = names
                .iter()
                .filter_map(|n| crate::tls::TlsVersion::parse_java(n))
                .flatten()
                .collect();
            tls = tls.versions(&versions);
            if let Some(trust) = &cfg.ssl_trust_store {
                let auth = match cfg.ssl_client_auth.as_deref() {
                    Some("none") => crate::tls::ClientAuth::None,
                    Some("want") => crate::tls::ClientAuth::Want,
                    _ => crate::tls::ClientAuth::Need,
                };
                tls = tls.client_ca(trust.clone(), auth);
            }
            b.secure = Some((addr, tls));
        }
        let s = &mut b.settings;
        s.sasl_auth_provider = cfg.sasl_auth_provider;
        s.x509_auth_provider = cfg.x509_auth_provider;
        s.sasl_super_users
            .extend(cfg.sasl_super_users.iter().cloned());
        s.x509_super_user = cfg.x509_super_user.clone().or(s.x509_super_user.take());
        if !cfg.enforce_auth_schemes.is_empty() {
            s.enforce_auth_schemes = cfg.enforce_auth_schemes.clone();
        }
        s.data_dir = cfg.data_dir.clone().or(s.data_dir.take());
        s.data_log_dir = cfg.data_log_dir.clone().or(s.data_log_dir.take());
        if let Some(n) = cfg.snap_count {
            b = b.snap_count(n);
        }
        if let Some(n) = cfg.snap_retain_count {
            b = b.snap_retain_count(n);
        }
        if let Some(n) = cfg.prealloc_size {
            b = b.prealloc_size(n);
        }
        if let Some(f) = cfg.force_sync {
            b = b.force_sync(f);
        }
        if let Some(addr) = cfg.admin_addr() {
            b = b.admin_listen(addr);
        }
        if let Some(url) = &cfg.admin_command_url {
            if let Some(a) = b.settings.admin.as_mut() {
                a.command_url.clone_from(url);
            }
        }
        if let Some(addr) = cfg.metrics_addr() {
            b = b.metrics_listen(addr);
        }
        b
    }

    /// Serves the HTTP admin server on `addr` (ZooKeeper's
    /// `admin.enableServer=true`, `admin.serverAddress`,
    /// `admin.serverPort`; off by default): `/commands/<name>` answers
    /// JSON as ZooKeeper's AdminServer does, `/metrics` the Prometheus text
    /// format with ZooKeeper's metric names, `/ready` 200 while the server
    /// serves (503 once it stops). GET only; see the README.
    pub fn admin_listen(mut self, addr: SocketAddr) -> Self {
        self.settings.admin = Some(crate::admin::AdminSettings::new(addr));
        self
    }

    /// Serves `/metrics` (Prometheus text format) on a port of its own, as
    /// ZooKeeper's Prometheus provider does (`metricsProvider.className=
    /// org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider`,
    /// `metricsProvider.httpHost`, `metricsProvider.httpPort`).
    pub fn metrics_listen(mut self, addr: SocketAddr) -> Self {
        self.settings.metrics_listen = Some(addr);
        self
    }

    /// The address to listen on (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.settings.listen = addr;
        self
    }

    /// `tickTime`: the session expiry bucket width and the unit of the
    /// default session timeout bounds.
    pub fn tick_time(mut self, tick: Duration) -> Self {
        self.settings.tick_time = tick;
        self
    }

    /// `minSessionTimeout` (default `2 * tickTime`).
    pub fn min_session_timeout(mut self, d: Duration) -> Self {
        self.settings.min_session_timeout = Some(d);
        self
    }

    /// `maxSessionTimeout` (default `20 * tickTime`).
    pub fn max_session_timeout(mut self, d: Duration) -> Self {
        self.settings.max_session_timeout = Some(d);
        self
    }

    /// `jute.maxbuffer`: the largest accepted request frame (default 0xfffff).
    pub fn max_frame(mut self, n: usize) -> Self {
        self.settings.max_frame = n;
        self
    }

    /// `maxCnxns`: a global cap on concurrent connections (default 1024
    /// here; 0 = unlimited, ZooKeeper's default, which a `zoo.cfg` without
    /// `maxCnxns` gets): connections beyond it are closed at once.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.settings.max_connections = n;
        self
    }

    /// `zookeeper.nio.sessionlessCnxnTimeout` (default 10 s): a connection
    /// that has not sent a complete ConnectRequest (or four-letter word) by
    /// then is closed, so that idle or trickling sockets cannot pile up.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.settings.handshake_timeout = d;
        self
    }

    /// `maxClientCnxns`: concurrent connections allowed from one IP address
    /// (0 = unlimited, the builder's default; ZooKeeper's default is 60,
    /// which [`from_config`](Self::from_config) uses). A
    /// connection beyond it is closed at once, as ZooKeeper does.
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.settings.max_connections_per_ip = n;
        self
    }

    /// `4lw.commands.whitelist`: the four-letter words the server answers
    /// (default: only `srvr`, as ZooKeeper 3.5.3+; `srvr` is always
    /// allowed). Any other known word gets ZooKeeper's answer
    /// `"<word> is not executed because it is not in the whitelist.\n"`
    /// and the connection is closed.
    pub fn four_letter_words(mut self, words: FourLetterWords) -> Self {
        self.settings.four_letter_words = words;
        self
    }

    /// `DigestAuthenticationProvider.superDigest`: `"super:<base64 sha1>"`
    /// ([`crate::acl::generate_digest`] of `"super:password"`).
    pub fn super_digest(mut self, digest: impl Into<String>) -> Self {
        self.settings.super_digest = Some(digest.into());
        self
    }

    /// `zookeeper.extendedTypesEnabled` (default true): TTL nodes.
    pub fn extended_types(mut self, enabled: bool) -> Self {
        self.settings.extended_types = enabled;
        self
    }

    /// `znode.container.checkIntervalMs` (default 60 s): how often empty
    /// containers and expired TTL nodes are deleted.
    pub fn container_check_interval(mut self, d: Duration) -> Self {
        self.settings.container_check_interval = d;
        self
    }

    /// Which release's observable behaviour to reproduce where 3.8 and 3.9
    /// differ (default 3.8): create2 results in a multi, watch modes and
    /// removal types, and notification zxids (3.9: the triggering txn's).
    pub fn compat(mut self, compat: Compat) -> Self {
        self.settings.compat = compat;
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
        self.settings.data_dir = Some(dir.into());
        self
    }

    /// `dataLogDir`: where the transaction log goes (default: the data
    /// directory). A separate device for the log makes syncs faster, as with
    /// ZooKeeper. Ignored without [`data_dir`](Self::data_dir).
    pub fn data_log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.data_log_dir = Some(dir.into());
        self
    }

    /// `snapCount`: logged transactions between two snapshots (default
    /// 100,000). A snapshot bounds recovery time and lets old log segments
    /// be deleted; taking one serialises the tree while requests wait.
    pub fn snap_count(mut self, n: u64) -> Self {
        self.settings.snap_count = n.max(1);
        self
    }

    /// `autopurge.snapRetainCount`: snapshots kept (default 3, at least
    /// 1); older snapshots and the log segments only they need are deleted
    /// after each new snapshot. (ZooKeeper keeps everything unless
    /// autopurge is configured; zkit-server always purges.)
    pub fn snap_retain_count(mut self, n: usize) -> Self {
        self.settings.snap_retain_count = n.max(1);
        self
    }

    /// `preAllocSize` in bytes (default 16 MiB): the log file grows by
    /// zero-filled steps of this size, so that syncing a batch does not
    /// also have to update the file's size.
    pub fn prealloc_size(mut self, bytes: u64) -> Self {
        self.settings.prealloc_size = bytes;
        self
    }

    /// `forceSync` (default true): `fdatasync` the log before
    /// acknowledging. With false a process crash still loses nothing (the
    /// kernel has the data), but a power cut or an OS crash may lose
    /// acknowledged writes.
    pub fn force_sync(mut self, on: bool) -> Self {
        self.settings.force_sync = on;
        self
    }

    /// The wall clock: milliseconds since the Unix epoch (default: the
    /// system clock). It stamps znode `ctime`/`mtime`, ages TTL nodes and
    /// containers, dates log records and seeds session ids. Session expiry
    /// never reads it: it runs on a monotonic clock (tokio's `Instant`, as
    /// ZooKeeper uses `System.nanoTime()`), so a step of the wall clock
    /// neither expires every session at once nor stops expiry. Meant for
    /// tests and simulations that move the wall clock.
    ///
    /// ```
    /// let b = zkit_server::Server::builder().wall_clock(|| 1_700_000_000_000);
    /// # let _ = b;
    /// ```
    pub fn wall_clock(mut self, now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.wall_clock = Some(Arc::new(now_ms));
        self
    }

    /// Also serve clients over TLS on `addr` (ZooKeeper's
    /// `secureClientPort`, next to the plain port), with `tls`: the
    /// server's certificate and, for mutual TLS, the client CAs. The PEM
    /// files are read again for every connection (rotated certificates need
    /// no restart); [`start`](Self::start) fails if they cannot be used.
    #[cfg(feature = "tls")]
    pub fn secure_listen(mut self, addr: SocketAddr, tls: crate::tls::ServerTls) -> Self {
        self.secure = Some((addr, tls));
        self
    }

    /// SASL DIGEST-MD5 with these users (the JAAS `Server` section ZooKeeper
    /// reads from `-Djava.security.auth.login.config`; see
    /// [`SaslUsers::from_jaas_file`](crate::SaslUsers::from_jaas_file)). A
    /// client that authenticates gets the id `sasl:<user>`; a failed
    /// exchange is answered AuthFailed and the connection closed, as by
    /// ZooKeeper. Without it, SASL tokens get ZooKeeper's answer for a
    /// server with no `Server` section (success with a null token).
    pub fn sasl(mut self, users: crate::SaslUsers) -> Self {
        self.settings.sasl_users = Some(users);
        self
    }

    /// Registers the `sasl` ACL scheme (ZooKeeper's
    /// `authProvider.<n>=org.apache.zookeeper.server.auth.SASLAuthenticationProvider`;
    /// default off): `sasl:<user>` ACLs are valid and enforced, and whoAmI
    /// names the SASL user.
    pub fn sasl_auth_provider(mut self, on: bool) -> Self {
        self.settings.sasl_auth_provider = on;
        self
    }

    /// Registers the `x509` ACL scheme without a secure port (ZooKeeper's
    /// `authProvider.<n>=org.apache.zookeeper.server.auth.X509AuthenticationProvider`,
    /// needed there with port unification). A
    /// [`secure_listen`](Self::secure_listen) port registers it anyway: a
    /// verified client certificate then authenticates the connection as
    /// `x509:<subject DN>`, the DN in RFC 2253 form
    /// (`CN=alice,OU=tests,O=zkit`), usable in ACLs.
    pub fn x509_auth_provider(mut self, on: bool) -> Self {
        self.settings.x509_auth_provider = on;
        self
    }

    /// A certificate subject DN whose holder is also super
    /// (`zookeeper.X509AuthenticationProvider.superUser`): it passes every
    /// ACL check.
    pub fn x509_super_user(mut self, dn: impl Into<String>) -> Self {
        self.settings.x509_super_user = Some(dn.into());
        self
    }

    /// A SASL user who is also super (`zookeeper.superUser`; call again for
    /// more, as `zookeeper.superUser.<suffix>`).
    pub fn sasl_super_user(mut self, user: impl Into<String>) -> Self {
        self.settings.sasl_super_users.push(user.into());
        self
    }

    /// Requires every connection to be authenticated with one of `schemes`
    /// (`enforce.auth.enabled=true` + `enforce.auth.schemes`; `["sasl"]` is
    /// `sessionRequireClientSASLAuth=true`). A connection without such an id
    /// gets `SessionClosedRequireSaslAuth` (-124) with no body for any
    /// request but auth and SASL (pings included), and is closed, as in
    /// ZooKeeper; a failed SASL exchange answers -124 too when `sasl` is
    /// required. An empty list turns enforcement off.
    ///
    /// [`start`](Self::start) fails if a scheme has no provider (`ip`,
    /// `digest`, `sasl` with [`sasl_auth_provider`](Self::sasl_auth_provider),
    /// `x509` with a secure port or
    /// [`x509_auth_provider`](Self::x509_auth_provider)).
    pub fn enforce_auth<I, S>(mut self, schemes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.settings.enforce_auth_schemes = schemes.into_iter().map(Into::into).collect();
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
        let Self {
            settings,
            wall_clock,
            #[cfg(feature = "tls")]
            secure,
        } = self;
        #[cfg(feature = "tls")]
        let has_secure_port = secure.is_some();
        #[cfg(not(feature = "tls"))]
        let has_secure_port = false;
        // Checked before anything is bound or recovered.
        let policy = AclPolicy {
            super_digest: settings.super_digest.clone(),
            sasl_enabled: settings.sasl_auth_provider,
            x509_enabled: settings.x509_auth_provider || has_secure_port,
            x509_super_user: settings.x509_super_user.clone(),
            ..AclPolicy::default()
        };
        if let Some(s) = settings
            .enforce_auth_schemes
            .iter()
            .find(|s| !policy.has_provider(s))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("enforce.auth.schemes: authentication scheme {s} is not available"),
            ));
        }
        #[cfg(feature = "tls")]
        let secure = match secure {
            Some((addr, tls)) => {
                tls.server_config()?; // usable files, or no start
                let listener = TcpListener::bind(addr).await?;
                Some((listener, tls))
            }
            None => None,
        };
        let tick = i32::try_from(settings.tick_time.as_millis()).unwrap_or(i32::MAX);
        if tick <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tick time must be at least 1 ms",
            ));
        }
        let clock = Clock::new(wall_clock);
        let mut config = SessionConfig::new(tick);
        if let Some(d) = settings.min_session_timeout {
            config.min_session_timeout = i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        }
        if let Some(d) = settings.max_session_timeout {
            config.max_session_timeout = i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        }
        let cancel = CancellationToken::new();
        let mut tree = DataTree::with_compat(settings.compat);
        tree.set_extended_types(settings.extended_types);
        // Session ids are seeded from the wall clock, so that a restarted
        // server does not hand out the ids of its previous run.
        let id_seed = u64::try_from(clock.wall_ms()).unwrap_or(0);
        let mut state = State {
            tree,
            watches: WatchManager::with_compat(settings.compat),
            sessions: SessionTracker::new(config, id_seed),
            zxid: 0,
            conns: Default::default(),
            session_conn: Default::default(),
            next_conn: 1,
            log: None,
        };
        let mut durable = None;
        if let Some(dir) = &settings.data_dir {
            let storage = Storage {
                data_dir: dir.clone(),
                log_dir: settings.log_dir().cloned().unwrap_or_else(|| dir.clone()),
                snap_count: settings.snap_count,
                snap_retain_count: settings.snap_retain_count,
                prealloc: settings.prealloc_size,
                force_sync: settings.force_sync,
            };
            let cancel = cancel.clone();
            let now = clock.monotonic_ms();
            state = tokio::task::spawn_blocking(move || recover_state(state, storage, now, cancel))
                .await
                .map_err(io::Error::other)??;
            durable = state.log.as_ref().map(TxnLog::durable);
        }
        let listener = TcpListener::bind(settings.listen).await?;
        let local_addr = listener.local_addr()?;
        let admin = match &settings.admin {
            Some(a) => Some((TcpListener::bind(a.addr).await?, a.clone())),
            None => None,
        };
        let metrics_listener = match settings.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let metrics = crate::metrics::ServerMetrics {
            fsync: state.log.as_ref().map(TxnLog::fsync_time),
            ..Default::default()
        };
        let reap_every = settings.container_check_interval;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            settings,
            clock,
            durable,
            policy,
            tick_ms: tick,
            local_addr,
            per_ip: Mutex::new(HashMap::new()),
            session_added: Notify::new(),
            connections: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            started: std::time::Instant::now(),
            metrics,
            trace_mask: AtomicU64::new(crate::state::DEFAULT_TRACE_MASK),
        });
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            None,
            shared.clone(),
            cancel.clone(),
            tracker.clone(),
        ));
        #[cfg(feature = "tls")]
        let secure_addr = match secure {
            Some((listener, tls)) => {
                let addr = listener.local_addr()?;
                tracker.spawn(accept_loop(
                    listener,
                    Some(tls),
                    shared.clone(),
                    cancel.clone(),
                    tracker.clone(),
                ));
                Some(addr)
            }
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let secure_addr = None;
        let admin_addr = match admin {
            Some((listener, settings)) => {
                let addr = listener.local_addr()?;
                let routes = crate::admin::Routes::admin(settings.command_url);
                tracker.spawn(crate::admin::serve(
                    listener,
                    routes,
                    shared.clone(),
                    cancel.clone(),
                    tracker.clone(),
                ));
                Some(addr)
            }
            None => None,
        };
        let metrics_addr = match metrics_listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                tracker.spawn(crate::admin::serve(
                    listener,
                    crate::admin::Routes::metrics_only(),
                    shared.clone(),
                    cancel.clone(),
                    tracker.clone(),
                ));
                Some(addr)
            }
            None => None,
        };
        tracker.spawn(expirer(shared.clone(), cancel.clone()));
        tracker.spawn(reaper(shared.clone(), cancel.clone(), reap_every));
        Ok(RunningServer {
            local_addr,
            secure_addr,
            admin_addr,
            metrics_addr,
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
    secure_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the TLS client port, if one was set
    /// ([`ServerBuilder::secure_listen`]).
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.secure_addr
    }

    /// The address of the HTTP admin server, if one was set
    /// ([`ServerBuilder::admin_listen`]).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The address of the Prometheus metrics port, if one was set
    /// ([`ServerBuilder::metrics_listen`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
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
            let auth = AuthInfo::new(peer.ip());
            crate::connection::serve(io, peer, auth, shared.clone(), cancel).await;
            shared.release(peer);
        });
    }

    /// Resolves when the server stops on its own: its transaction log could
    /// not be written (a full disk, an I/O error), so it stopped serving
    /// rather than acknowledge what is not on disk. Call
    /// [`shutdown`](Self::shutdown) then; the `zkit-server` binary exits
    /// with a failure status, as ZooKeeper does, so a supervisor restarts
    /// it once the disk is fixed.
    pub async fn stopped(&self) {
        self.cancel.cancelled().await;
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

/// The TLS settings of a listener (`None`: plain TCP).
#[cfg(feature = "tls")]
type ListenerTls = Option<crate::tls::ServerTls>;
#[cfg(not(feature = "tls"))]
type ListenerTls = Option<std::convert::Infallible>;

/// Accepts clients on one listener: plain, or TLS (the handshake bounded by
/// the handshake timeout, with the certificate files read again for each
/// connection), then the same connection task.
async fn accept_loop(
    listener: TcpListener,
    tls: ListenerTls,
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
        // (Without the `tls` feature the settings are a `Copy` nothing.)
        #[allow(clippy::clone_on_copy)]
        let (shared, cancel, tls) = (shared.clone(), cancel.clone(), tls.clone());
        tracker.spawn(async move {
            match tls {
                None => {
                    let auth = AuthInfo::new(peer.ip());
                    crate::connection::serve(stream, peer, auth, shared.clone(), cancel).await;
                }
                #[cfg(feature = "tls")]
                Some(tls) => {
                    let handshake = async {
                        let config = tls.server_config()?;
                        tokio_rustls::TlsAcceptor::from(Arc::new(config))
                            .accept(stream)
                            .await
                    };
                    let limit = shared.settings.handshake_timeout;
                    match tokio::time::timeout(limit, handshake).await {
                        Ok(Ok(stream)) => match tls_auth(&stream, peer, &shared) {
                            Some(auth) => {
                                crate::connection::serve(
                                    stream,
                                    peer,
                                    auth,
                                    shared.clone(),
                                    cancel,
                                )
                                .await;
                            }
                            None => {
                                // ZooKeeper closes a connection whose
                                // certificate it cannot authenticate.
                                let mut stream = stream;
                                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                            }
                        },
                        Ok(Err(e)) => tracing::warn!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::warn!(%peer, "no TLS handshake in {limit:?}, closing"),
                    }
                }
                #[cfg(not(feature = "tls"))]
                Some(never) => match never {},
            }
            shared.release(peer);
        });
    }
}

/// The ids a TLS connection starts with: its `ip`, and for a verified client
/// certificate `x509:<subject DN>` (with `super` first for the
/// `X509AuthenticationProvider.superUser`), as ZooKeeper's
/// `X509AuthenticationProvider.handleAuthentication`. `None`: a certificate
/// whose subject cannot be read (logged; the connection is closed).
#[cfg(feature = "tls")]
fn tls_auth(
    stream: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<AuthInfo> {
    let mut auth = AuthInfo::new(peer.ip());
    let Some(leaf) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    else {
        return Some(auth); // no certificate asked for, or `want` and none given
    };
    let Some(dn) = crate::x509::subject_dn(leaf) else {
        tracing::warn!(%peer, "cannot read the client certificate's subject, closing");
        return None;
    };
    tracing::debug!(%peer, %dn, "x509 authenticated");
    if shared.policy.x509_super_user.as_deref() == Some(dn.as_str()) {
        auth.insert(zkit_proto::Id {
            scheme: crate::acl::SCHEME_SUPER.into(),
            id: dn.clone(),
        });
    }
    auth.insert(zkit_proto::Id {
        scheme: crate::acl::SCHEME_X509.into(),
        id: dn,
    });
    Some(auth)
}

/// Expires sessions: sleeps until the next expiry bucket (or a new session
/// is announced), then kills every due session.
async fn expirer(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let wait = {
            let st = shared.lock();
            let now = shared.clock.monotonic_ms();
            match st.sessions.next_expiration() {
                Some(t) if t <= now => Duration::ZERO,
                Some(t) => Duration::from_millis(t - now),
                None => Duration::from_millis(shared.tick_ms as u64),
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
        let due = st.sessions.expired(shared.clock.monotonic_ms());
        let wall = shared.clock.wall_ms();
        for id in due {
            tracing::debug!(session = format_args!("{id:#x}"), "session expired");
            st.kill_session(id, wall);
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
        let now = shared.clock.wall_ms();
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
/// `now_ms` (monotonic) starts the expiry clock of the sessions recovered.
fn recover_state(
    mut state: State,
    storage: Storage,
    now_ms: u64,
    cancel: CancellationToken,
) -> io::Result<State> {
    let lock = persist::lock_dir(&storage.data_dir)?;
    let started = std::time::Instant::now();
    let recovered = persist::recover(&storage)?;
    let now = now_ms;
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
