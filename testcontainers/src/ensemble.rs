//! [`Ensemble`]: real ZooKeeper servers as local Java processes, and its builder.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tracing::{debug, info, warn};

use crate::config::{log4j_properties, logback_xml, ServerConfig};
use crate::four_letter::{self, Mode, ServerVersion};
use crate::install::Installation;
use crate::tempdir::TempDir;
use crate::watchdog::Watchdog;
use crate::FixtureError;

/// Default ZooKeeper `tickTime`.
pub const DEFAULT_TICK_TIME: Duration = Duration::from_millis(200);
/// Default time allowed for every member to start serving.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Environment variable choosing the server the project's tests run against:
/// unset or `bundled` (the in-process zkit-server, the default: `cargo test` needs nothing
/// installed), `bundled-durable` (the same with a data directory) or `zookeeper` (real
/// Apache ZooKeeper processes: ensembles, fault injection and interop tests run only then).
pub const TEST_BACKEND_ENV: &str = "ZKIT_TEST_BACKEND";

/// Environment variable that enables the tests driving other ZooKeeper clients as peers
/// (Curator and zkCli.sh on Java, kazoo on Python, the C client): set it to `1`. Unset, those
/// tests print `SKIPPED: ...` ([`skip_without_peers`]); set, a missing peer fails them.
pub const TEST_PEERS_ENV: &str = "ZKIT_TEST_PEERS";

/// For a test that drives another ZooKeeper client (Curator, kazoo, zkCli.sh, the C client):
/// returns `true`, after printing `SKIPPED: <what> ...` to stderr, unless `ZKIT_TEST_PEERS=1`
/// (`scripts/test.sh` sets it after installing the peers).
pub fn skip_without_peers(what: &str) -> bool {
    if std::env::var(TEST_PEERS_ENV).is_ok_and(|v| v == "1") {
        return false;
    }
    eprintln!(
        "SKIPPED: {what} needs other ZooKeeper clients installed: run with {TEST_PEERS_ENV}=1 \
         (scripts/test.sh does, after installing them)"
    );
    true
}

/// The server the project's tests run against, from [`TEST_BACKEND_ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TestBackend {
    /// The in-process zkit-server in memory (the default).
    Bundled,
    /// The in-process zkit-server with a data directory: every reply waits for its log.
    BundledDurable,
    /// Real Apache ZooKeeper processes (`scripts/install-zookeeper.sh` installs them).
    ZooKeeper,
}

impl TestBackend {
    /// Reads [`TEST_BACKEND_ENV`].
    ///
    /// # Panics
    ///
    /// On a value other than the three above (or empty), so a misspelt backend never
    /// silently runs the tests against another server.
    pub fn from_env() -> Self {
        match std::env::var(TEST_BACKEND_ENV).as_deref() {
            Err(_) | Ok("") | Ok("bundled") => Self::Bundled,
            Ok("bundled-durable") => Self::BundledDurable,
            Ok("zookeeper") => Self::ZooKeeper,
            Ok(other) => panic!(
                "{TEST_BACKEND_ENV}={other:?}: expected bundled, bundled-durable or zookeeper"
            ),
        }
    }

    /// Whether tests that need real ZooKeeper processes run: `ZKIT_TEST_BACKEND=zookeeper`.
    /// Otherwise they print `SKIPPED: ...` through [`skip_without_real_zookeeper`].
    pub fn wants_real_zookeeper() -> bool {
        Self::from_env() == Self::ZooKeeper
    }
}

/// For a test that needs real ZooKeeper processes (an ensemble, a Java or Python peer):
/// returns `true`, after printing `SKIPPED: <what> ...` to stderr, unless
/// `ZKIT_TEST_BACKEND=zookeeper`. Under that backend nothing is skipped: a missing
/// installation fails the test, so it never passes silently.
///
/// ```
/// # std::env::remove_var("ZKIT_TEST_BACKEND");
/// if zkit_testcontainers::skip_without_real_zookeeper("three-node failover") {
///     return;
/// }
/// ```
pub fn skip_without_real_zookeeper(what: &str) -> bool {
    if TestBackend::wants_real_zookeeper() {
        return false;
    }
    eprintln!(
        "SKIPPED: {what} needs real ZooKeeper: run with {TEST_BACKEND_ENV}=zookeeper \
         (scripts/test.sh does, after installing it)"
    );
    true
}

const STANDALONE_MAIN: &str = "org.apache.zookeeper.server.ZooKeeperServerMain";
const QUORUM_MAIN: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";
const LOG_FILE: &str = "zookeeper.log";
const STDOUT_FILE: &str = "stdout.log";
const CONFIG_FILE: &str = "zoo.cfg";
/// Readiness poll period.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Bound on one readiness / leader probe (a paused server never answers).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on [`Ensemble::four_letter`].
const FOUR_LETTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Ensemble::stop`] waits after SIGTERM before falling back to SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `Drop` waits for SIGKILLed processes to be reaped.
const DROP_WAIT: Duration = Duration::from_secs(5);
const MAX_START_ATTEMPTS: u32 = 3;
const LOG_TAIL_LINES: usize = 25;

/// Which server an [`Ensemble`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// Apache ZooKeeper (Java processes; standalone or an ensemble). The default.
    #[default]
    ZooKeeper,
    /// The bundled `zkit-server` binary, standalone only (it is not a replicated engine),
    /// as a process of its own, so that kill, pause, stop and restart mean what they mean
    /// for ZooKeeper. Its data directory makes it durable: a killed and restarted server
    /// keeps its tree and sessions. Found at `ZKIT_SERVER_BIN`, else built from this
    /// workspace with `cargo build -p zkit-server` (once per test process), else
    /// `zkit-server` on `PATH`.
    Bundled,
}

/// Configures and starts an [`Ensemble`]; obtained from [`Ensemble::builder`].
///
/// Defaults: one standalone server, `tickTime` 200 ms, 30 s start timeout, `-Xmx256m`,
/// `-Dzookeeper.extendedTypesEnabled=true` (TTL nodes), and the `zoo.cfg` defaults listed
/// on [`config`](EnsembleBuilder::config).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .start().await"]
pub struct EnsembleBuilder {
    size: usize,
    tick_time: Duration,
    config: Vec<(String, String)>,
    jvm_props: Vec<(String, String)>,
    jvm_args: Vec<String>,
    start_timeout: Duration,
    java: Option<PathBuf>,
    classpath: Option<String>,
    backend: Backend,
    tls: Option<crate::ClientAuth>,
    sasl_users: Vec<(String, String)>,
    kerberos: Option<(PathBuf, PathBuf)>,
}

impl Default for EnsembleBuilder {
    fn default() -> Self {
        EnsembleBuilder {
            size: 1,
            tick_time: DEFAULT_TICK_TIME,
            config: Vec::new(),
            jvm_props: vec![("zookeeper.extendedTypesEnabled".into(), "true".into())],
            jvm_args: Vec::new(),
            start_timeout: DEFAULT_START_TIMEOUT,
            java: None,
            classpath: None,
            backend: Backend::ZooKeeper,
            tls: None,
            sasl_users: Vec::new(),
            kerberos: None,
        }
    }
}

impl EnsembleBuilder {
    /// Number of servers: `1` (the default) runs a standalone `ZooKeeperServerMain`; more
    /// runs a `QuorumPeerMain` ensemble with `myid`s `1..=size`. At most 254.
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// ZooKeeper `tickTime` (whole milliseconds). Session timeouts are bounded by
    /// `2 * tickTime ..= 20 * tickTime` unless `minSessionTimeout`/`maxSessionTimeout` are
    /// set with [`config`](Self::config); ensembles use `initLimit=30` and `syncLimit=10`
    /// ticks.
    pub fn tick_time(mut self, tick_time: Duration) -> Self {
        self.tick_time = tick_time;
        self
    }

    /// Adds or overrides a `zoo.cfg` line `key=value`.
    ///
    /// The generated defaults are `tickTime`, `dataDir`, `clientPort`,
    /// `clientPortAddress=127.0.0.1`, `maxClientCnxns=0`, `forceSync=no`,
    /// `4lw.commands.whitelist=*`, `admin.enableServer=false`, and for ensembles
    /// `initLimit=30`, `syncLimit=10` and the `server.N` lines. Overriding `dataDir`,
    /// `clientPort` or `server.N` breaks the fixture.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        upsert(&mut self.config, key.into(), value.into());
        self
    }

    /// Adds or overrides a JVM system property `-Dkey=value`.
    /// `zookeeper.extendedTypesEnabled=true` is set by default.
    pub fn jvm_prop(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        upsert(&mut self.jvm_props, key.into(), value.into());
        self
    }

    /// Appends a raw JVM argument, after the fixture's own (so `-Xmx1g` or `-XX:+UseG1GC`
    /// override the defaults `-Xmx256m -XX:+UseSerialGC`).
    pub fn jvm_arg(mut self, arg: impl Into<String>) -> Self {
        self.jvm_args.push(arg.into());
        self
    }

    /// How long [`start`](Self::start) and [`Ensemble::restart`] wait for members to serve
    /// (default 30 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Which server to run (default [`Backend::ZooKeeper`]). [`Backend::Bundled`] runs the
    /// `zkit-server` binary instead, behind the same handle; it reads the same generated
    /// `zoo.cfg` (JVM settings do not apply) and only supports size 1.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Gives every member a TLS client port next to its plain one
    /// (`secureClientPort` on `127.0.0.1`; real ZooKeeper runs the Netty
    /// connection factory), with certificates made at start
    /// ([`Ensemble::tls_files`]: a CA, a server certificate for `localhost`
    /// and `127.0.0.1`, a client certificate) and `ssl.clientAuth` as given.
    /// The x509 scheme is registered, so the client certificate
    /// authenticates as `x509:CN=client,OU=tests,O=zkit`
    /// ([`CLIENT_DN`](crate::CLIENT_DN)). Connect with
    /// [`Ensemble::secure_connect_string`]. Works with both backends.
    pub fn tls(mut self, client_auth: crate::ClientAuth) -> Self {
        self.tls = Some(client_auth);
        self
    }

    /// Adds a SASL DIGEST-MD5 user: the fixture writes a JAAS file with a
    /// `Server` section (`DigestLoginModule`, `user_<name>="<password>"`),
    /// points the server at it (real ZooKeeper:
    /// `-Djava.security.auth.login.config`; zkit-server: `--jaas`) and
    /// registers the `sasl` ACL scheme (`authProvider.sasl`). Works with both
    /// backends.
    pub fn sasl_digest_user(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.sasl_users.push((user.into(), password.into()));
        self
    }

    /// SASL GSSAPI (Kerberos) on real ZooKeeper: the server logs in as
    /// `zookeeper/localhost@ZKIT.TEST` from `server_keytab` (made with
    /// [`Kdc::add_principal`](crate::Kdc::add_principal)) through a JAAS
    /// `Server` section (`Krb5LoginModule`), with `krb5_conf`
    /// ([`Kdc::krb5_conf`](crate::Kdc::krb5_conf)) as its
    /// `java.security.krb5.conf`, and registers the `sasl` ACL scheme. Not
    /// with [`sasl_digest_user`](Self::sasl_digest_user) (one JAAS section),
    /// nor with the bundled backend (it has no GSSAPI).
    pub fn kerberos(
        mut self,
        krb5_conf: impl Into<PathBuf>,
        server_keytab: impl Into<PathBuf>,
    ) -> Self {
        self.kerberos = Some((krb5_conf.into(), server_keytab.into()));
        self
    }

    /// Uses this `java` executable instead of `$JAVA_HOME/bin/java` or `java` on `PATH`.
    pub fn java(mut self, java: impl Into<PathBuf>) -> Self {
        self.java = Some(java.into());
        self
    }

    /// Uses this classpath (`:`-separated) instead of `ZKIT_ZOOKEEPER_CLASSPATH`,
    /// `ZOOKEEPER_HOME` or the Debian jars.
    pub fn classpath(mut self, classpath: impl Into<String>) -> Self {
        self.classpath = Some(classpath.into());
        self
    }

    /// Launches the servers on free `127.0.0.1` ports and waits until every member answers
    /// `ruok` with `imok` and `srvr` reports `Mode: standalone` (size 1) or
    /// `Mode: leader`/`follower`.
    ///
    /// When a member fails because a chosen port was taken in the meantime, the whole start
    /// is retried with new ports (3 attempts).
    ///
    /// # Errors
    ///
    /// - [`FixtureError::NotInstalled`]: no Java or no ZooKeeper jars.
    /// - [`FixtureError::InvalidConfig`]: size 0 or above 254, zero `tickTime`, a key with
    ///   `=` or a newline.
    /// - [`FixtureError::Start`]: a member exited or did not serve within the start timeout;
    ///   the message carries the tail of its logs.
    /// - [`FixtureError::Io`]: the fixture directory or ports could not be set up.
    ///
    /// # Cancel safety
    ///
    /// Cancelling the future kills every process started so far and deletes the directory.
    pub async fn start(self) -> Result<Ensemble, FixtureError> {
        self.validate()?;
        let install = match self.backend {
            Backend::ZooKeeper => {
                Installation::resolve(self.java.as_deref(), self.classpath.as_deref())?
            }
            Backend::Bundled => tokio::task::spawn_blocking(Installation::bundled)
                .await
                .map_err(|e| FixtureError::io("find zkit-server", io::Error::other(e)))??,
        };
        let began = Instant::now();
        let mut attempt = 1;
        loop {
            match self.launch(&install).await {
                Ok(ensemble) => {
                    info!(
                        size = self.size,
                        connect = %ensemble.connect_string(),
                        elapsed = ?began.elapsed(),
                        attempt,
                        "ZooKeeper fixture serving"
                    );
                    return Ok(ensemble);
                }
                Err(failure) if failure.port_conflict && attempt < MAX_START_ATTEMPTS => {
                    warn!(attempt, error = %failure.error, "port conflict; retrying with new ports");
                    attempt += 1;
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// Like [`start`](Self::start), for tests: with the real ZooKeeper backend, returns
    /// `None` (after printing `SKIPPED: ...` to stderr) unless `ZKIT_TEST_BACKEND=zookeeper`
    /// (see [`skip_without_real_zookeeper`]); the bundled backend always starts.
    ///
    /// # Panics
    ///
    /// On any start error, including a missing installation when real ZooKeeper was asked for.
    pub async fn start_or_skip(self) -> Option<Ensemble> {
        if self.backend == Backend::ZooKeeper && skip_without_real_zookeeper("this test") {
            return None;
        }
        match self.start().await {
            Ok(ensemble) => Some(ensemble),
            Err(e) => panic!("cannot start the ZooKeeper fixture: {e}"),
        }
    }

    fn validate(&self) -> Result<(), FixtureError> {
        let invalid = |msg: String| Err(FixtureError::InvalidConfig(msg));
        if self.backend == Backend::Bundled && self.size != 1 {
            return invalid(format!(
                "the bundled zkit-server is standalone only: size must be 1, got {}",
                self.size
            ));
        }
        if !(1..=254).contains(&self.size) {
            // myid must fit in the extended-types server-id byte (EphemeralType).
            return invalid(format!("size must be 1..=254, got {}", self.size));
        }
        if self.tick_time.as_millis() == 0 {
            return invalid(format!(
                "tick_time must be at least 1 ms, got {:?}",
                self.tick_time
            ));
        }
        let bad = |s: &str| s.is_empty() || s.contains(['=', '\n', '\r']);
        if let Some((k, _)) = self
            .config
            .iter()
            .chain(&self.jvm_props)
            .find(|(k, _)| bad(k))
        {
            return invalid(format!("bad key {k:?}: empty or contains `=` or a newline"));
        }
        if self.kerberos.is_some() && !self.sasl_users.is_empty() {
            return invalid(
                "kerberos and sasl_digest_user both need the JAAS Server section".into(),
            );
        }
        if self.kerberos.is_some() && self.backend == Backend::Bundled {
            return invalid("the bundled zkit-server has no SASL GSSAPI (Kerberos)".into());
        }
        if let Some((k, v)) = self.config.iter().find(|(_, v)| v.contains(['\n', '\r'])) {
            return invalid(format!("value of {k:?} contains a newline: {v:?}"));
        }
        Ok(())
    }

    async fn launch(&self, install: &Installation) -> Result<Ensemble, LaunchFailure> {
        let ensemble = self.prepare(install).map_err(LaunchFailure::fatal)?;
        for member in &ensemble.members {
            ensemble.spawn(member).map_err(LaunchFailure::fatal)?;
        }
        let deadline = Instant::now() + self.start_timeout;
        for member in &ensemble.members {
            if let Err(failure) = ensemble.wait_ready(member, deadline).await {
                // Any member's bind failure explains the others' failure to form a quorum.
                let port_conflict =
                    failure.foreign || ensemble.members.iter().any(Member::log_shows_bind_failure);
                let error = ensemble.start_error(member, failure.reason);
                return Err(LaunchFailure {
                    error,
                    port_conflict,
                });
            }
        }
        Ok(ensemble)
    }

    /// Creates the directory tree, picks ports and writes every member's files.
    fn prepare(&self, install: &Installation) -> Result<Ensemble, FixtureError> {
        let root = TempDir::new().map_err(|e| FixtureError::io("create fixture directory", e))?;
        let watchdog = Watchdog::spawn(root.path(), root.keep())
            .map_err(
                |e| warn!(error = %e, "no fixture watchdog: JVMs leak if the test process dies"),
            )
            .ok();
        let standalone = self.size == 1;
        let tls = match self.tls {
            Some(_) => Some(crate::TlsFiles::generate(&root.path().join("tls"))?),
            None => None,
        };
        let mut overrides: Vec<(String, String)> = Vec::new();
        let mut jvm_props = self.jvm_props.clone();
        if let (Some(files), Some(auth)) = (&tls, self.tls) {
            let path = |p: PathBuf| p.display().to_string();
            for (k, v) in [
                (
                    "serverCnxnFactory",
                    "org.apache.zookeeper.server.NettyServerCnxnFactory".to_string(),
                ),
                ("ssl.keyStore.location", path(files.server_key_store())),
                ("ssl.keyStore.type", "PEM".into()),
                ("ssl.trustStore.location", path(files.ca_file())),
                ("ssl.trustStore.type", "PEM".into()),
                ("ssl.clientAuth", auth.as_str().into()),
            ] {
                upsert(&mut overrides, k.into(), v);
            }
        }
        if !self.sasl_users.is_empty() {
            let jaas = root.path().join("jaas.conf");
            fs::write(
                &jaas,
                crate::security::jaas_server_section(&self.sasl_users),
            )
            .map_err(|e| FixtureError::io(format!("write {}", jaas.display()), e))?;
            upsert(
                &mut jvm_props,
                "java.security.auth.login.config".into(),
                jaas.display().to_string(),
            );
            upsert(
                &mut overrides,
                "authProvider.sasl".into(),
                "org.apache.zookeeper.server.auth.SASLAuthenticationProvider".into(),
            );
        }
        if let Some((krb5_conf, keytab)) = &self.kerberos {
            let jaas = root.path().join("jaas.conf");
            let section = format!(
                "Server {{\n  com.sun.security.auth.module.Krb5LoginModule required\n  \
                 useKeyTab=true\n  keyTab=\"{}\"\n  storeKey=true\n  useTicketCache=false\n  \
                 principal=\"zookeeper/localhost@{}\";\n}};\n",
                keytab.display(),
                crate::TEST_REALM
            );
            fs::write(&jaas, section)
                .map_err(|e| FixtureError::io(format!("write {}", jaas.display()), e))?;
            for (k, v) in [
                (
                    "java.security.auth.login.config",
                    jaas.display().to_string(),
                ),
                ("java.security.krb5.conf", krb5_conf.display().to_string()),
            ] {
                upsert(&mut jvm_props, k.into(), v);
            }
            upsert(
                &mut overrides,
                "authProvider.sasl".into(),
                "org.apache.zookeeper.server.auth.SASLAuthenticationProvider".into(),
            );
        }
        if install.bundled {
            // ZooKeeper reads `zookeeper.*` system properties where zkit-server
            // reads zoo.cfg keys (it accepts the `zookeeper.` spellings).
            for (k, v) in &jvm_props {
                if k.starts_with("zookeeper.") {
                    upsert(&mut overrides, k.clone(), v.clone());
                }
            }
        }
        for (k, v) in &self.config {
            upsert(&mut overrides, k.clone(), v.clone());
        }
        let per_member = usize::from(tls.is_some()) + if standalone { 1 } else { 3 };
        let ports = free_ports(self.size * per_member)
            .map_err(|e| FixtureError::io("pick free ports on 127.0.0.1", e))?;
        let servers: Vec<(u64, u16, u16)> = if standalone {
            Vec::new()
        } else {
            (0..self.size)
                .map(|i| {
                    (
                        i as u64 + 1,
                        ports[per_member * i + 1],
                        ports[per_member * i + 2],
                    )
                })
                .collect()
        };
        let mut members = Vec::with_capacity(self.size);
        for index in 0..self.size {
            let dir = root.path().join(format!("node{}", index + 1));
            let data_dir = dir.join("data");
            let client_port = ports[index * per_member];
            let secure_port = tls
                .as_ref()
                .map(|_| ports[index * per_member + per_member - 1]);
            let cfg = ServerConfig {
                tick_time: self.tick_time,
                data_dir: &data_dir,
                client_port,
                secure_port,
                servers: &servers,
                overrides: &overrides,
            };
            let write = |name: &str, contents: String| {
                let path = dir.join(name);
                fs::write(&path, contents)
                    .map_err(|e| FixtureError::io(format!("write {}", path.display()), e))
            };
            fs::create_dir_all(&data_dir)
                .map_err(|e| FixtureError::io(format!("create {}", data_dir.display()), e))?;
            if !standalone {
                write("data/myid", format!("{}\n", index + 1))?;
            }
            write(CONFIG_FILE, cfg.render())?;
            write("log4j.properties", log4j_properties(&dir.join(LOG_FILE)))?;
            write("logback.xml", logback_xml(&dir.join(LOG_FILE)))?;
            members.push(Member {
                index,
                client_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, client_port)),
                secure_addr: secure_port.map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p))),
                dir,
                proc: Mutex::default(),
            });
        }
        Ok(Ensemble {
            members,
            launch: Launch {
                bundled: install.bundled,
                java: install.java.clone(),
                classpath: install.classpath.clone(),
                main_class: if standalone {
                    STANDALONE_MAIN
                } else {
                    QUORUM_MAIN
                },
                jvm_props,
                jvm_args: self.jvm_args.clone(),
            },
            start_timeout: self.start_timeout,
            watchdog,
            tls,
            root,
        })
    }
}

fn upsert(list: &mut Vec<(String, String)>, key: String, value: String) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => list.push((key, value)),
    }
}

/// Binds `n` listeners on `127.0.0.1:0` at once (so the ports are distinct), then releases
/// them for the JVMs. Another process may grab one in between; `start` retries for that.
fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

#[derive(Debug)]
struct LaunchFailure {
    error: FixtureError,
    port_conflict: bool,
}

impl LaunchFailure {
    fn fatal(error: FixtureError) -> Self {
        LaunchFailure {
            error,
            port_conflict: false,
        }
    }
}

/// How every member's JVM is launched.
#[derive(Debug)]
struct Launch {
    /// `java` is the zkit-server binary, which takes `--config zoo.cfg`.
    bundled: bool,
    java: PathBuf,
    classpath: OsString,
    main_class: &'static str,
    jvm_props: Vec<(String, String)>,
    jvm_args: Vec<String>,
}

impl Launch {
    fn command(&self, dir: &Path) -> Command {
        if self.bundled {
            let mut cmd = Command::new(&self.java);
            if let Some((_, jaas)) = self
                .jvm_props
                .iter()
                .find(|(k, _)| k == "java.security.auth.login.config")
            {
                cmd.arg("--jaas").arg(jaas);
            }
            cmd.arg("--config")
                .arg(dir.join(CONFIG_FILE))
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .current_dir(dir)
                .stdin(Stdio::null())
                .kill_on_drop(true);
            return cmd;
        }
        let mut cmd = Command::new(&self.java);
        cmd.args([
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
        ])
        .arg(format!("-Dzookeeper.log.dir={}", dir.display()))
        .arg(format!("-Dzookeeper.log.file={LOG_FILE}"))
        .arg(format!(
            "-Dlog4j.configuration=file:{}",
            dir.join("log4j.properties").display()
        ))
        .arg(format!(
            "-Dlogback.configurationFile={}",
            dir.join("logback.xml").display()
        ))
        .arg("-Dzookeeper.jmx.log4j.disable=true")
        .args(self.jvm_props.iter().map(|(k, v)| format!("-D{k}={v}")))
        .args(&self.jvm_args)
        .arg("-cp")
        .arg(&self.classpath)
        .arg(self.main_class)
        .arg(dir.join(CONFIG_FILE))
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
        cmd
    }
}

/// One server: its fixed addresses and directory, and its (re)startable process.
#[derive(Debug)]
struct Member {
    index: usize,
    client_addr: SocketAddr,
    /// The TLS client port, for a [`EnsembleBuilder::tls`] fixture.
    secure_addr: Option<SocketAddr>,
    dir: PathBuf,
    proc: Mutex<Proc>,
}

#[derive(Debug, Default)]
struct Proc {
    child: Option<Child>,
    paused: bool,
    last_exit: Option<ExitStatus>,
}

impl Proc {
    /// The pid if the process is alive (paused counts as alive); reaps it otherwise.
    fn running_pid(&mut self) -> Option<u32> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(None) => child.id(),
            Ok(Some(status)) => {
                self.last_exit = Some(status);
                self.forget();
                None
            }
            Err(e) => {
                warn!(error = %e, "cannot query ZooKeeper process state");
                None
            }
        }
    }

    fn forget(&mut self) {
        self.child = None;
        self.paused = false;
    }
}

impl Member {
    fn lock(&self) -> MutexGuard<'_, Proc> {
        // A panic while holding the lock cannot leave `Proc` inconsistent.
        self.proc.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_logs(&self) -> Vec<(PathBuf, String)> {
        [LOG_FILE, STDOUT_FILE]
            .iter()
            .map(|name| self.dir.join(name))
            .filter_map(|path| {
                let bytes = fs::read(&path).ok()?;
                Some((path, String::from_utf8_lossy(&bytes).into_owned()))
            })
            .collect()
    }

    fn log_shows_bind_failure(&self) -> bool {
        self.read_logs()
            .iter()
            .any(|(_, text)| text.contains("Address already in use"))
    }

    /// The last lines of the member's log and captured output, ready to append to a message.
    fn log_tail(&self) -> String {
        let mut out = String::new();
        for (path, text) in self.read_logs() {
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                continue;
            }
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            let _ = write!(
                out,
                "\n--- last {} lines of {} ---",
                tail.len(),
                path.display()
            );
            for line in tail {
                out.push('\n');
                out.push_str(line);
            }
        }
        out
    }
}

/// Sends a signal by name (`STOP`, `CONT`, `TERM`) with `kill(1)`; the crate forbids `unsafe`
/// and so does not call `libc::kill`.
fn signal(pid: u32, name: &str) -> Result<(), FixtureError> {
    let context = || format!("kill -{name} {pid}");
    let output = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| FixtureError::io(context(), e))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(FixtureError::io(context(), io::Error::other(stderr)))
    }
}

/// Why a member is not ready.
#[derive(Debug)]
struct NotReady {
    reason: String,
    /// Another ZooKeeper answers on the member's client port: it was taken by someone else.
    foreign: bool,
}

/// One readiness probe: `ruok` → `imok`, then `srvr` shows a serving mode, then `conf` shows
/// the member's own `dataDir` (so a server of a concurrent fixture that grabbed the port
/// first is not mistaken for ours).
async fn probe(addr: SocketAddr, standalone: bool, data_dir: &Path) -> Result<(), NotReady> {
    let pending = |reason: String| NotReady {
        reason,
        foreign: false,
    };
    let ruok = four_letter::send(addr, "ruok", PROBE_TIMEOUT)
        .await
        .map_err(|e| pending(format!("ruok: {e}")))?;
    if ruok != "imok" {
        return Err(pending(format!("ruok answered {ruok:?}")));
    }
    let srvr = four_letter::send(addr, "srvr", PROBE_TIMEOUT)
        .await
        .map_err(|e| pending(format!("srvr: {e}")))?;
    let mode = Mode::from_srvr(&srvr).map_err(|e| pending(e.to_string()))?;
    let ready = if standalone {
        mode == Mode::Standalone
    } else {
        matches!(mode, Mode::Leader | Mode::Follower)
    };
    if !ready {
        return Err(pending(format!("srvr reports mode {mode}")));
    }
    let conf = four_letter::send(addr, "conf", PROBE_TIMEOUT)
        .await
        .map_err(|e| pending(format!("conf: {e}")))?;
    let ours = format!("dataDir={}", data_dir.display());
    if conf.lines().any(|line| line.starts_with(&ours)) {
        Ok(())
    } else {
        Err(NotReady {
            reason: format!("{addr} is served by another ZooKeeper (conf lacks {ours})"),
            foreign: true,
        })
    }
}

/// Real Apache ZooKeeper servers (one standalone server or an ensemble) running as local Java
/// processes on `127.0.0.1`, each with its own directory under the system temp dir.
///
/// Dropping the `Ensemble` SIGKILLs every process (resuming paused ones first), waits for them
/// to exit and deletes the directory (set `ZKIT_KEEP_FIXTURE_DIRS=1` to keep it). Unwinding
/// from a failed test drops it too. If the test process dies without dropping it (killed by a
/// signal, `std::process::exit`, an `Ensemble` in a `static`), a per-fixture `sh` watchdog
/// notices the closed pipe and SIGKILLs the servers within about a second.
///
/// Members are addressed by 0-based index `i`; member `i` has `myid` `i + 1`. Methods taking
/// an index panic if `i >= self.size()`. All methods take `&self`, so an `Arc<Ensemble>` can
/// drive faults while other tasks use the servers.
///
/// Do not run the fixture under a paused tokio clock (`time::pause`): its timeouts are real.
#[derive(Debug)]
pub struct Ensemble {
    members: Vec<Member>,
    launch: Launch,
    start_timeout: Duration,
    /// Kills the JVMs if this process dies without dropping the fixture.
    watchdog: Option<Watchdog>,
    tls: Option<crate::TlsFiles>,
    // Declared last so it is dropped (deleted) after `Drop::drop` has reaped every process.
    root: TempDir,
}

impl Ensemble {
    /// Starts configuring a fixture (one standalone server by default).
    pub fn builder() -> EnsembleBuilder {
        EnsembleBuilder::default()
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// True for a single `ZooKeeperServerMain` server.
    pub fn is_standalone(&self) -> bool {
        self.launch.main_class == STANDALONE_MAIN
    }

    /// Client connect string of all members, in index order:
    /// `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`.
    pub fn connect_string(&self) -> String {
        let addrs: Vec<String> = self
            .members
            .iter()
            .map(|m| m.client_addr.to_string())
            .collect();
        addrs.join(",")
    }

    /// The certificates of a [`EnsembleBuilder::tls`] fixture.
    pub fn tls_files(&self) -> Option<&crate::TlsFiles> {
        self.tls.as_ref()
    }

    /// The TLS client address of member `i`, for a [`EnsembleBuilder::tls`]
    /// fixture. Stable across [`restart`](Self::restart).
    pub fn secure_addr(&self, i: usize) -> Option<SocketAddr> {
        self.member(i).secure_addr
    }

    /// The TLS connect string of all members, in index order
    /// (`127.0.0.1:s1,127.0.0.1:s2,…`); empty without
    /// [`EnsembleBuilder::tls`].
    pub fn secure_connect_string(&self) -> String {
        let addrs: Vec<String> = self
            .members
            .iter()
            .filter_map(|m| m.secure_addr.map(|a| a.to_string()))
            .collect();
        addrs.join(",")
    }

    /// Client address of member `i`. Stable across [`restart`](Self::restart).
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        self.member(i).client_addr
    }

    /// Client addresses of all members, in index order.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.client_addr).collect()
    }

    /// The member whose client address (plain or TLS) is `addr`, if any.
    pub fn member_of(&self, addr: SocketAddr) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.client_addr == addr || m.secure_addr == Some(addr))
    }

    /// The member whose client port (plain or TLS) is `port`, if any.
    pub fn member_of_port(&self, port: u16) -> Option<usize> {
        self.members.iter().position(|m| {
            m.client_addr.port() == port || m.secure_addr.map(|a| a.port()) == Some(port)
        })
    }

    /// Directory of member `i`: `zoo.cfg`, `data/` (snapshots, txn logs, `myid`),
    /// `zookeeper.log` and `stdout.log` (captured stdout/stderr).
    pub fn member_dir(&self, i: usize) -> &Path {
        &self.member(i).dir
    }

    /// Root directory of the fixture (one `nodeN` directory per member).
    pub fn root_dir(&self) -> &Path {
        self.root.path()
    }

    /// Process id of member `i` while it runs (paused included).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.member(i).lock().running_pid()
    }

    /// Whether member `i`'s process is alive (a paused member is running).
    pub fn is_running(&self, i: usize) -> bool {
        self.pid(i).is_some()
    }

    /// Whether member `i` is currently paused by [`pause`](Self::pause).
    pub fn is_paused(&self, i: usize) -> bool {
        let mut proc = self.member(i).lock();
        proc.running_pid().is_some() && proc.paused
    }

    /// Freezes member `i` with SIGSTOP: its sockets stay open but it answers nothing, like a
    /// long GC pause or a hung host. Undo with [`resume`](Self::resume).
    ///
    /// # Errors
    ///
    /// [`FixtureError::NotRunning`] if the member is stopped; [`FixtureError::Io`] if
    /// `kill -STOP` fails.
    pub fn pause(&self, i: usize) -> Result<(), FixtureError> {
        let mut proc = self.member(i).lock();
        let pid = proc.running_pid().ok_or(FixtureError::NotRunning(i))?;
        signal(pid, "STOP")?;
        proc.paused = true;
        debug!(member = i, pid, "paused");
        Ok(())
    }

    /// Continues member `i` (SIGCONT) after [`pause`](Self::pause). Resuming a running member
    /// that is not paused is harmless.
    ///
    /// # Errors
    ///
    /// [`FixtureError::NotRunning`] if the member is stopped; [`FixtureError::Io`] if
    /// `kill -CONT` fails.
    pub fn resume(&self, i: usize) -> Result<(), FixtureError> {
        let mut proc = self.member(i).lock();
        let pid = proc.running_pid().ok_or(FixtureError::NotRunning(i))?;
        signal(pid, "CONT")?;
        proc.paused = false;
        debug!(member = i, pid, "resumed");
        Ok(())
    }

    /// Kills member `i` with SIGKILL (a crash: no goodbye to peers or clients, paused or not)
    /// and waits until the process has exited. Does nothing if it is not running.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Io`] if waiting for the process fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the process is killed even if the future is dropped.
    pub async fn kill(&self, i: usize) -> Result<(), FixtureError> {
        let Some(mut child) = self.take_child(i) else {
            return Ok(());
        };
        // Fails only if the process is already gone, which is what we want anyway.
        let _ = child.start_kill();
        let status = child
            .wait()
            .await
            .map_err(|e| FixtureError::io(format!("wait for member {i}"), e))?;
        debug!(member = i, %status, "killed");
        self.member(i).lock().last_exit = Some(status);
        Ok(())
    }

    /// Stops member `i` gracefully with SIGTERM (resuming it first if paused), falling back
    /// to SIGKILL after 10 s, and waits until it has exited. Does nothing if it is not
    /// running.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Io`] if signalling or waiting fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped the process is SIGKILLed.
    pub async fn stop(&self, i: usize) -> Result<(), FixtureError> {
        let paused = self.member(i).lock().paused;
        let Some(mut child) = self.take_child(i) else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            signal(pid, "TERM")?;
            if paused {
                signal(pid, "CONT")?;
            }
        }
        let status = match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                warn!(
                    member = i,
                    "no exit {STOP_GRACE:?} after SIGTERM; sending SIGKILL"
                );
                let _ = child.start_kill();
                child.wait().await
            }
        }
        .map_err(|e| FixtureError::io(format!("wait for member {i}"), e))?;
        debug!(member = i, %status, "stopped");
        self.member(i).lock().last_exit = Some(status);
        Ok(())
    }

    /// Starts member `i` again with the same directory, data and ports, and waits until it
    /// serves (standalone, or leader/follower). A member that is still running is killed
    /// first, so this also works as "crash and come back".
    ///
    /// An ensemble member only serves once it can form a quorum: restarting it while a
    /// majority is down ends in [`FixtureError::Start`] after the start timeout.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Start`] (with the log tail) or [`FixtureError::Io`].
    pub async fn restart(&self, i: usize) -> Result<(), FixtureError> {
        self.kill(i).await?;
        let member = self.member(i);
        self.spawn(member)?;
        let deadline = Instant::now() + self.start_timeout;
        let began = Instant::now();
        self.wait_ready(member, deadline)
            .await
            .map_err(|failure| self.start_error(member, failure.reason))?;
        debug!(member = i, elapsed = ?began.elapsed(), "restarted");
        Ok(())
    }

    /// Sends the four-letter word `word` (`ruok`, `srvr`, `stat`, `mntr`, `cons`, `dump`,
    /// `wchc`, ...) to member `i` and returns the full reply. All words are whitelisted.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Io`]: connection refused (member down) or no reply within 5 s
    /// ([`io::ErrorKind::TimedOut`], e.g. member paused).
    pub async fn four_letter(&self, i: usize, word: &str) -> Result<String, FixtureError> {
        let addr = self.member(i).client_addr;
        four_letter::send(addr, word, FOUR_LETTER_TIMEOUT)
            .await
            .map_err(|e| {
                FixtureError::io(
                    format!("four-letter word `{word}` to member {i} ({addr})"),
                    e,
                )
            })
    }

    /// Member `i`'s current [`Mode`], from `srvr`.
    ///
    /// # Errors
    ///
    /// As [`four_letter`](Self::four_letter), or [`FixtureError::Protocol`].
    pub async fn mode(&self, i: usize) -> Result<Mode, FixtureError> {
        Mode::from_srvr(&self.four_letter(i, "srvr").await?)
    }

    /// The member that currently accepts writes: the lowest-index member whose `srvr` says
    /// `Mode: leader` (or `standalone` for a standalone fixture). `None` while no reachable
    /// member claims it, e.g. during an election. Members are probed concurrently with a 1 s
    /// timeout each, so paused members do not stall it.
    pub async fn leader(&self) -> Option<usize> {
        let mut probes = tokio::task::JoinSet::new();
        for member in &self.members {
            let (index, addr) = (member.index, member.client_addr);
            probes.spawn(async move {
                let reply = four_letter::send(addr, "srvr", PROBE_TIMEOUT).await.ok()?;
                let mode = Mode::from_srvr(&reply).ok()?;
                matches!(mode, Mode::Leader | Mode::Standalone).then_some(index)
            });
        }
        let mut leader = None;
        while let Some(result) = probes.join_next().await {
            if let Ok(Some(index)) = result {
                leader = Some(leader.map_or(index, |l: usize| l.min(index)));
            }
        }
        leader
    }

    /// The server version, parsed from `srvr` of the first member that answers. Debian's
    /// 3.8.0 reports the unexpanded `3.8.0-${mvngit.commit.id}` as its full version.
    ///
    /// # Errors
    ///
    /// The last member's error if none answers, or [`FixtureError::Protocol`].
    pub async fn server_version(&self) -> Result<ServerVersion, FixtureError> {
        let mut last_error = None;
        for member in &self.members {
            match four_letter::send(member.client_addr, "srvr", PROBE_TIMEOUT * 2).await {
                Ok(reply) => return ServerVersion::from_srvr(&reply),
                Err(e) => {
                    last_error = Some(FixtureError::io(
                        format!("srvr to member {} ({})", member.index, member.client_addr),
                        e,
                    ))
                }
            }
        }
        Err(last_error.unwrap_or(FixtureError::NotRunning(0)))
    }

    fn member(&self, i: usize) -> &Member {
        match self.members.get(i) {
            Some(member) => member,
            None => panic!(
                "no member {i}: the ensemble has {} member(s)",
                self.members.len()
            ),
        }
    }

    fn take_child(&self, i: usize) -> Option<Child> {
        let mut proc = self.member(i).lock();
        let child = proc.child.take();
        proc.paused = false;
        child
    }

    fn spawn(&self, member: &Member) -> Result<(), FixtureError> {
        let out_path = member.dir.join(STDOUT_FILE);
        let io_err = |what: &str, e| FixtureError::io(format!("{what} {}", out_path.display()), e);
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .map_err(|e| io_err("open", e))?;
        let _ = io::Write::write_all(
            &mut out,
            format!(
                "=== zkit-testcontainers: launching member {} ===\n",
                member.index
            )
            .as_bytes(),
        );
        let err = out.try_clone().map_err(|e| io_err("duplicate", e))?;
        let child = self
            .launch
            .command(&member.dir)
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| FixtureError::io(format!("spawn {}", self.launch.java.display()), e))?;
        // (For the bundled backend `java` is the zkit-server binary.)
        debug!(member = member.index, pid = child.id(), addr = %member.client_addr, "spawned");
        if let (Some(watchdog), Some(pid)) = (&self.watchdog, child.id()) {
            watchdog.watch(pid);
        }
        let mut proc = member.lock();
        proc.child = Some(child);
        proc.paused = false;
        Ok(())
    }

    /// Polls until the member serves; on failure returns what was last observed.
    async fn wait_ready(&self, member: &Member, deadline: Instant) -> Result<(), NotReady> {
        let standalone = self.is_standalone();
        let data_dir = member.dir.join("data");
        let mut last = String::from("no probe completed");
        loop {
            {
                let mut proc = member.lock();
                if proc.running_pid().is_none() {
                    let status = proc
                        .last_exit
                        .map_or_else(|| "was stopped".to_string(), |s| format!("exited ({s})"));
                    let reason = format!("the process {status}; last probe: {last}");
                    return Err(NotReady {
                        reason,
                        foreign: false,
                    });
                }
            }
            match probe(member.client_addr, standalone, &data_dir).await {
                Ok(()) => return Ok(()),
                Err(failure) if failure.foreign => return Err(failure),
                Err(failure) => last = failure.reason,
            }
            if Instant::now() >= deadline {
                let reason = format!(
                    "not serving within {:?}; last probe: {last}",
                    self.start_timeout
                );
                return Err(NotReady {
                    reason,
                    foreign: false,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn start_error(&self, member: &Member, reason: String) -> FixtureError {
        FixtureError::Start {
            member: member.index,
            addr: member.client_addr,
            reason,
            log_tail: member.log_tail(),
        }
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        // Signal everyone first so the JVMs die in parallel, then reap.
        for member in &self.members {
            let mut proc = member.lock();
            let paused = proc.paused;
            if let Some(child) = proc.child.as_mut() {
                if let (true, Some(pid)) = (paused, child.id()) {
                    let _ = signal(pid, "CONT");
                }
                let _ = child.start_kill();
            }
        }
        let deadline = Instant::now() + DROP_WAIT;
        for member in &self.members {
            let mut proc = member.lock();
            let Some(mut child) = proc.child.take() else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Ok(None) => {
                        warn!(
                            member = member.index,
                            pid = child.id(),
                            "ZooKeeper process survived SIGKILL"
                        );
                        break;
                    }
                }
            }
        }
        if let Some(watchdog) = &self.watchdog {
            watchdog.disarm();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_replaces_in_place() {
        let mut list = vec![("a".to_string(), "1".to_string())];
        upsert(&mut list, "b".into(), "2".into());
        upsert(&mut list, "a".into(), "3".into());
        assert_eq!(list, [("a".into(), "3".into()), ("b".into(), "2".into())]);
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(9).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 9);
    }

    #[tokio::test]
    async fn probe_rejects_a_server_with_another_data_dir() {
        let Some(zk) = Ensemble::builder().start_or_skip().await else {
            return;
        };
        let addr = zk.client_addr(0);
        let ours = zk.member_dir(0).join("data");
        probe(addr, true, &ours).await.unwrap();
        let failure = probe(addr, true, Path::new("/elsewhere/data"))
            .await
            .unwrap_err();
        assert!(failure.foreign, "{failure:?}");
        // Right server, wrong expected mode: not ready, not foreign.
        let failure = probe(addr, false, &ours).await.unwrap_err();
        assert!(
            !failure.foreign && failure.reason.contains("standalone"),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn a_taken_client_port_is_recognised_as_a_port_conflict() {
        let builder = Ensemble::builder().start_timeout(Duration::from_secs(20));
        if skip_without_real_zookeeper("the port-conflict self-test") {
            return;
        }
        let install = Installation::resolve(None, None).unwrap_or_else(|e| panic!("{e}"));
        // Someone else grabs the port between our pick and the JVM's bind. Tests
        // run in parallel, so the picked port can already be gone again by the
        // time the "thief" binds it: pick again until the thief holds it.
        let mut attempt = 0;
        let (ensemble, _thief) = loop {
            let ensemble = builder.prepare(&install).unwrap();
            match TcpListener::bind(ensemble.members[0].client_addr) {
                Ok(thief) => break (ensemble, thief),
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    eprintln!("picked port taken before the test could take it ({e}); retrying");
                }
                Err(e) => panic!("no free port to steal after {attempt} tries: {e}"),
            }
        };
        let member = &ensemble.members[0];
        ensemble.spawn(member).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let failure = ensemble.wait_ready(member, deadline).await.unwrap_err();
        assert!(failure.reason.contains("exited"), "{failure:?}");
        assert!(member.log_shows_bind_failure(), "{}", member.log_tail());
    }
}
