//! [`ClientBuilder`]: settings for a new session.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::driver::{Driver, SessionInfo};
use super::Client;
use crate::error::{Error, Result};
use crate::session::{terminal_error, ConnectString, Session, SessionConfig};
use crate::transport::{Connect, TcpConnector};
use crate::types::{SessionId, SessionState};

/// Settings for a new [`Client`]. Consuming setters; finish with
/// [`connect`](Self::connect).
///
/// ```no_run
/// # async fn demo() -> zkit::Result<()> {
/// use std::time::Duration;
/// let zk = zkit::Client::builder()
///     .session_timeout(Duration::from_secs(6))
///     .digest_auth("app", "secret")
///     .connect("zk1:2181,zk2:2181,zk3:2181/myapp")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    session_timeout: Duration,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    read_only: bool,
    auth: Vec<(String, Bytes)>,
    max_frame: usize,
    seed: Option<u64>,
    resume: Option<(i64, Bytes)>,
    connector: Option<Arc<dyn Connect>>,
    sasl: Option<(String, String)>,
    sasl_mechanism: Option<crate::sasl::MechanismFactory>,
    busy_poll: Duration,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials and the session password are never printed.
        f.debug_struct("ClientBuilder")
            .field("session_timeout", &self.session_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("read_only", &self.read_only)
            .field(
                "auth_schemes",
                &self.auth.iter().map(|a| &a.0).collect::<Vec<_>>(),
            )
            .field("max_frame", &self.max_frame)
            .field("resume", &self.resume.as_ref().map(|r| SessionId(r.0)))
            .field("custom_connector", &self.connector.is_some())
            .field("sasl_user", &self.sasl.as_ref().map(|s| &s.0))
            .field("sasl_gssapi", &self.sasl_mechanism.is_some())
            .field("busy_poll", &self.busy_poll)
            .finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(10),
            connect_timeout: None,
            request_timeout: None,
            read_only: false,
            auth: Vec::new(),
            max_frame: crate::proto::DEFAULT_JUTE_MAXBUFFER,
            seed: None,
            resume: None,
            connector: None,
            sasl: None,
            sasl_mechanism: None,
            busy_poll: Duration::ZERO,
        }
    }
}

impl ClientBuilder {
    /// Requested session timeout (default 10 s). The server clamps it to its
    /// `[minSessionTimeout, maxSessionTimeout]` (2 to 20 ticks by default).
    #[must_use]
    pub fn session_timeout(mut self, t: Duration) -> Self {
        self.session_timeout = t;
        self
    }

    /// How long [`connect`](Self::connect) waits for the first session before
    /// failing with [`Error::NoServerReachable`] (default: the session
    /// timeout).
    #[must_use]
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = Some(t);
        self
    }

    /// How long a request issued while disconnected waits for a connection
    /// before failing with [`Error::ConnectionLoss`] (default: the session
    /// timeout). Requests never wait beyond the session's expiry.
    #[must_use]
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = Some(t);
        self
    }

    /// Low-latency mode for callers outside the runtime's tasks: a request
    /// awaited by such a caller (in `Runtime::block_on` of a multi-thread
    /// runtime, or another executor's thread) polls for its reply for up to
    /// `budget` before its thread sleeps (default zero: off).
    ///
    /// Such a caller's thread sleeps while the connection's task, on a
    /// runtime worker, waits for the reply, and waking it again costs
    /// tens of microseconds on a virtual machine. Spinning saves that
    /// wake-up when the answer comes within the budget, and burns the
    /// budget in CPU when it does not. It changes nothing for callers that
    /// are tasks (they share a worker with the connection's task: spinning
    /// there would hold the very thread that reads the reply) nor on a
    /// current-thread runtime (one thread does both). Measured in the
    /// README's "Client efficiency" section: useful budgets are a little
    /// above the round trip, 100–200 µs here.
    ///
    /// ```
    /// let builder = zkit::Client::builder().busy_poll(std::time::Duration::from_micros(150));
    /// # drop(builder);
    /// ```
    #[must_use]
    pub fn busy_poll(mut self, budget: Duration) -> Self {
        self.busy_poll = budget;
        self
    }

    /// Accept read-only servers (partitioned ensemble members started with
    /// `readonlymode.enabled`); writes then fail with [`Error::NotReadOnly`].
    #[must_use]
    pub fn read_only(mut self, yes: bool) -> Self {
        self.read_only = yes;
        self
    }

    /// Credentials sent on every connection before anything else.
    #[must_use]
    pub fn auth(mut self, scheme: &str, auth: &[u8]) -> Self {
        self.auth
            .push((scheme.to_string(), Bytes::copy_from_slice(auth)));
        self
    }

    /// `digest` credentials `user:password`.
    #[must_use]
    pub fn digest_auth(self, user: &str, password: &str) -> Self {
        self.auth("digest", format!("{user}:{password}").as_bytes())
    }

    /// SASL DIGEST-MD5 credentials (a `DigestLoginModule` user of the
    /// server's JAAS `Server` section). Every connection authenticates
    /// first, before credentials, watches and requests go out; the session
    /// reports `Connected` only once authenticated (the server then knows
    /// the connection as `sasl:<user>`). A refusal ends the session as
    /// [`SessionState::AuthFailed`] with [`Error::AuthFailed`], or
    /// [`Error::SessionClosedRequireSaslAuth`] when the server requires SASL.
    /// Digest `add_auth` credentials work beside it.
    #[must_use]
    pub fn sasl_digest(mut self, user: &str, password: &str) -> Self {
        self.sasl_mechanism = None;
        self.sasl = Some((user.to_string(), password.to_string()));
        self
    }

    /// SASL GSSAPI (Kerberos v5) instead of DIGEST-MD5 (feature `gssapi`).
    /// Every connection authenticates first, as with
    /// [`sasl_digest`](Self::sasl_digest); the server then knows the
    /// connection as `sasl:<principal>` (shortened by its
    /// `kerberos.removeRealmFromPrincipal` / `removeHostFromPrincipal`).
    /// Credentials come from the environment (`KRB5CCNAME` ticket cache or
    /// `KRB5_CLIENT_KTNAME` keytab, `KRB5_CONFIG`); see [`GssapiConfig`](crate::GssapiConfig).
    /// The GSS-API calls (which may wait on the KDC) run on a blocking
    /// thread, never on the session's task. A failure (no ticket, unknown
    /// server principal, refused by the server) ends the session as
    /// [`SessionState::AuthFailed`].
    #[cfg(feature = "gssapi")]
    #[must_use]
    pub fn sasl_gssapi(mut self, config: crate::GssapiConfig) -> Self {
        self.sasl = None;
        self.sasl_mechanism = Some(Arc::new(move |host: &crate::session::HostAddr| {
            crate::gssapi::Gssapi::new(&config, host)
                .map(|m| Box::new(m) as Box<dyn crate::sasl::ExternalMechanism>)
        }));
        self
    }

    /// The largest request frame sent (default 1,048,575 bytes, ZooKeeper's
    /// default `jute.maxbuffer`): larger requests fail with
    /// [`Error::RequestTooLarge`] instead of making the server drop the
    /// connection. Raise it only together with the server's `jute.maxbuffer`.
    /// Replies up to twice this size are accepted; a larger one is read
    /// past and fails its request with [`Error::ResponseTooLarge`], the
    /// connection going on.
    #[must_use]
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Seed for the host shuffle and back-off jitter (default: random).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Resume an existing session (from [`Client::session_id`] and
    /// [`Client::session_password`]) instead of creating one.
    #[must_use]
    pub fn session(mut self, id: SessionId, password: Bytes) -> Self {
        self.resume = Some((id.0, password));
        self
    }

    /// How connections to servers are opened (default [`TcpConnector`]):
    /// the seam for TLS, tunnels, fault injection and in-memory tests. See
    /// [`Connect`] for what a connector must do.
    #[must_use]
    pub fn connector(mut self, connector: impl Connect) -> Self {
        self.connector = Some(Arc::new(connector));
        self
    }

    /// Reach every host over TLS with these settings (ZooKeeper's
    /// `secureClientPort`; feature `tls`). See [`crate::tls`]. Replaces a
    /// [`connector`](Self::connector) set before.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, config: crate::TlsConfig) -> Self {
        self.connector = Some(Arc::new(crate::tls::TlsConnector::new(config)));
        self
    }

    /// Connects and resolves once a session is established. Must be called
    /// within a tokio runtime: the session's background task is spawned on it.
    ///
    /// # Errors
    /// [`Error::NoHosts`] / [`Error::InvalidPath`] for a bad connect string,
    /// [`Error::NoServerReachable`] if no server answered within the connect
    /// timeout (naming each host tried and its last failure),
    /// [`Error::SessionExpired`] when resuming an expired session,
    /// [`Error::AuthFailed`] if the server rejected the credentials.
    ///
    /// # Cancel safety
    /// Dropping the future before it resolves drops the new client, which
    /// closes its session.
    pub async fn connect(self, connect_string: &str) -> Result<Client> {
        let cs = ConnectString::parse(connect_string)?;
        let seed = self.seed.unwrap_or_else(rand::random);
        debug!(seed, "session rng seed");
        let mut cfg = SessionConfig::new(cs.hosts);
        cfg.chroot = cs.chroot.clone();
        cfg.session_timeout = self.session_timeout;
        cfg.connect_timeout = self.connect_timeout.unwrap_or(self.session_timeout);
        cfg.request_timeout = self.request_timeout.unwrap_or(self.session_timeout);
        cfg.read_only = self.read_only;
        cfg.auth = self.auth;
        cfg.sasl = self.sasl;
        cfg.sasl_external = self.sasl_mechanism.is_some();
        cfg.max_request = self.max_frame;
        cfg.max_reply = self.max_frame.saturating_mul(2);
        cfg.seed = seed;
        cfg.resume = self.resume;

        let session = Session::new(cfg, tokio::time::Instant::now().into_std());
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (state_tx, mut state_rx) = watch::channel(SessionState::Connecting);
        let info = Arc::new(Mutex::new(SessionInfo::default()));
        let connector = self.connector.unwrap_or_else(|| Arc::new(TcpConnector));
        let driver = Driver::new(
            session,
            cmd_rx,
            state_tx,
            info.clone(),
            connector,
            self.sasl_mechanism,
        );
        tokio::spawn(driver.run());
        let client = Client::from_parts(
            cmd_tx,
            state_rx.clone(),
            info.clone(),
            cs.chroot,
            self.busy_poll,
        );
        // Wait for the first session (or a terminal state).
        let state = *state_rx
            .wait_for(|s| s.is_connected() || s.is_terminal())
            .await
            .map_err(|_| Error::Closed)?;
        if state.is_connected() {
            return Ok(client);
        }
        // No server reached (the error names each host and why), or the
        // session to resume was gone.
        let terminal = info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .terminal
            .clone();
        Err(terminal.unwrap_or_else(|| terminal_error(state)))
    }
}
