//! `zoo.cfg` support: a standard ZooKeeper configuration file (Java
//! properties syntax) parsed into a [`Config`], which
//! [`ServerBuilder::from_config`](crate::ServerBuilder::from_config) turns
//! into a server. This module only parses: it knows nothing of the server.
//!
//! Supported keys (anything else is logged at debug level and ignored, much
//! as ZooKeeper turns unknown keys into `zookeeper.*` system properties):
//!
//! | key | meaning |
//! |-----|---------|
//! | `clientPort` | port to listen on (default 2181) |
//! | `clientPortAddress` | address to listen on (default `0.0.0.0`: all interfaces, like ZooKeeper) |
//! | `dataDir` | snapshots and (by default) the transaction log: the server is durable; without it, in-memory |
//! | `dataLogDir` | the transaction log (default `dataDir`) |
//! | `snapCount` | logged transactions between snapshots (default 100000) |
//! | `autopurge.snapRetainCount` | snapshots kept (default 3; older files are always purged) |
//! | `preAllocSize` | log preallocation step in KiB (default 16384) |
//! | `forceSync` | `yes`/`no`: fdatasync the log before acknowledging (default yes) |
//! | `tickTime` | milliseconds, > 0 |
//! | `minSessionTimeout`, `maxSessionTimeout` | milliseconds; `-1` = default (2 / 20 ticks) |
//! | `maxClientCnxns` | concurrent connections per client IP (0 = unlimited, default 60) |
//! | `maxCnxns` | concurrent connections in all (0 = unlimited, the default) |
//! | `4lw.commands.whitelist` | comma list of four-letter words, `*` = all (default `srvr`) |
//! | `extendedTypesEnabled` | `true`/`false`: TTL nodes |
//! | `DigestAuthenticationProvider.superDigest` | `super:<base64 sha1>` |
//! | `znode.container.checkIntervalMs` | milliseconds between container/TTL sweeps |
//! | `jute.maxbuffer` | largest accepted request, bytes |
//! | `secureClientPort`, `secureClientPortAddress` | a TLS client port (feature `tls`) |
//! | `ssl.keyStore.location` | PEM file with the server's certificate chain and key (`ssl.keyStore.type` must be PEM) |
//! | `ssl.trustStore.location` | PEM file of the client CAs (mutual TLS) |
//! | `ssl.clientAuth` | `none`, `want` or `need` (default `need` with a trust store) |
//! | `ssl.protocol`, `ssl.enabledProtocols` | `TLSv1.2`, `TLSv1.3` (or `TLS`: both); as in ZooKeeper the enabled list defaults to the one protocol, `TLSv1.2` |
//! | `authProvider.<n>` | `org.apache.zookeeper.server.auth.SASLAuthenticationProvider` (the `sasl` scheme) or `…X509AuthenticationProvider` (`x509`; a secure port registers it anyway) |
//! | `superUser`, `superUser.<suffix>` | a SASL user who is also super |
//! | `X509AuthenticationProvider.superUser` | a certificate subject DN (RFC 2253) that is also super |
//! | `enforce.auth.enabled`, `enforce.auth.schemes` | `true` + a comma list of schemes: a connection without an id of one of them gets -124 and is closed |
//! | `sessionRequireClientSASLAuth` | `true`: shorthand for enforcing `sasl` |
//! | `admin.enableServer` | `true`: serve the HTTP admin server (default **false** here; ZooKeeper's default is true) |
//! | `admin.serverAddress`, `admin.serverPort` | its address (default `0.0.0.0`) and port (default 8080) |
//! | `admin.commandURL` | the commands' URL prefix (default `/commands`) |
//! | `metricsProvider.className` | `org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider`: also serve `/metrics` on a port of its own |
//! | `metricsProvider.httpHost`, `metricsProvider.httpPort` | that port's address (default `0.0.0.0`) and port (default 7000) |
//!
//! The system-property spellings (`zookeeper.4lw.commands.whitelist`,
//! `zookeeper.extendedTypesEnabled`,
//! `zookeeper.DigestAuthenticationProvider.superDigest`,
//! `zookeeper.znode.container.checkIntervalMs`, `zookeeper.jute.maxbuffer`,
//! `zookeeper.snapCount`, `zookeeper.preAllocSize`, `zookeeper.forceSync`,
//! and `zookeeper.` before every security key) are accepted too.
//!
//! ```
//! let cfg = zkit_server::config::Config::parse("tickTime=500\nclientPort=2181\n")?;
//! let builder = zkit_server::ServerBuilder::from_config(&cfg);
//! # let _ = builder;
//! # Ok::<(), zkit_server::config::ConfigError>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// ZooKeeper's default `clientPort`.
pub const DEFAULT_CLIENT_PORT: u16 = 2181;

/// ZooKeeper's default `maxClientCnxns` (per client IP).
pub const DEFAULT_MAX_CLIENT_CNXNS: usize = 60;

/// The Java TLS protocol names `ssl.protocol` and `ssl.enabledProtocols`
/// accept (`TLS`: every version).
const TLS_PROTOCOLS: [&str; 3] = ["TLSv1.2", "TLSv1.3", "TLS"];

/// A comma list's non-blank entries, trimmed.
fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `superUser` or `superUser.<suffix>` (ZooKeeper 3.7+ takes several),
/// with or without `zookeeper.`.
fn is_super_user_key(key: &str) -> bool {
    let key = key.strip_prefix("zookeeper.").unwrap_or(key);
    key == "superUser" || key.starts_with("superUser.")
}

/// The four-letter words a server answers (`4lw.commands.whitelist`).
///
/// `srvr` is always allowed, as in ZooKeeper (its scripts depend on it).
/// The default allows only `srvr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FourLetterWords {
    all: bool,
    words: BTreeSet<String>,
}

impl Default for FourLetterWords {
    fn default() -> Self {
        Self::only(std::iter::empty::<&str>())
    }
}

/// ZooKeeper's list syntax: `*`, or the words comma-separated.
impl std::fmt::Display for FourLetterWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.all {
            return f.write_str("*");
        }
        let words: Vec<&str> = self.words.iter().map(String::as_str).collect();
        f.write_str(&words.join(","))
    }
}

impl FourLetterWords {
    /// Every four-letter word (`*`).
    pub fn all() -> Self {
        Self {
            all: true,
            words: BTreeSet::new(),
        }
    }

    /// These words (plus `srvr`).
    pub fn only<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set: BTreeSet<String> = words
            .into_iter()
            .map(|w| w.as_ref().trim().to_string())
            .filter(|w| !w.is_empty())
            .collect();
        if set.contains("*") {
            return Self::all();
        }
        set.insert("srvr".to_string());
        Self {
            all: false,
            words: set,
        }
    }

    /// Parses ZooKeeper's comma-separated list (`"ruok, srvr"`, `"*"`).
    /// Blank entries are ignored, as ZooKeeper does.
    pub fn parse(list: &str) -> Self {
        Self::only(list.split(','))
    }

    /// Whether `word` is answered.
    pub fn allows(&self, word: &str) -> bool {
        self.all || self.words.contains(word)
    }
}

impl FromStr for FourLetterWords {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

/// A `zoo.cfg` that could not be read or has a bad value.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key has a value this server cannot use.
    Invalid {
        /// 1-based line number where the entry starts.
        line: usize,
        /// The key.
        key: String,
        /// The raw value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::Invalid {
                line,
                key,
                value,
                reason,
            } => write!(f, "line {line}: invalid {key}={value:?}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Invalid { .. } => None,
        }
    }
}

/// The settings of a `zoo.cfg` this server understands; `None` = not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The text this was parsed from (empty when built in code): what the
    /// admin server's `initial_configuration` answers.
    pub text: String,
    /// `clientPort`.
    pub client_port: Option<u16>,
    /// `clientPortAddress`.
    pub client_port_address: Option<IpAddr>,
    /// `dataDir`: where the server persists its state.
    pub data_dir: Option<PathBuf>,
    /// `dataLogDir`: where the transaction log goes.
    pub data_log_dir: Option<PathBuf>,
    /// `snapCount`.
    pub snap_count: Option<u64>,
    /// `autopurge.snapRetainCount`.
    pub snap_retain_count: Option<usize>,
    /// `preAllocSize`, converted to bytes.
    pub prealloc_size: Option<u64>,
    /// `forceSync`.
    pub force_sync: Option<bool>,
    /// `tickTime`.
    pub tick_time: Option<Duration>,
    /// `minSessionTimeout` (`-1` reads as `None`).
    pub min_session_timeout: Option<Duration>,
    /// `maxSessionTimeout` (`-1` reads as `None`).
    pub max_session_timeout: Option<Duration>,
    /// `maxClientCnxns`: per client IP, 0 = unlimited.
    pub max_client_cnxns: Option<usize>,
    /// `maxCnxns`: all connections, 0 = unlimited (the default).
    pub max_cnxns: Option<usize>,
    /// `4lw.commands.whitelist`.
    pub four_letter_words: Option<FourLetterWords>,
    /// `extendedTypesEnabled` / `zookeeper.extendedTypesEnabled`.
    pub extended_types: Option<bool>,
    /// `DigestAuthenticationProvider.superDigest`.
    pub super_digest: Option<String>,
    /// `znode.container.checkIntervalMs`.
    pub container_check_interval: Option<Duration>,
    /// `jute.maxbuffer`.
    pub jute_maxbuffer: Option<usize>,
    /// `secureClientPort`: a TLS client port (needs `ssl.keyStore.location`).
    pub secure_client_port: Option<u16>,
    /// `secureClientPortAddress` (default: `clientPortAddress`, else all
    /// interfaces).
    pub secure_client_port_address: Option<IpAddr>,
    /// `ssl.keyStore.location`: a PEM file holding the server's certificate
    /// chain and private key (ZooKeeper's PEM key store).
    pub ssl_key_store: Option<PathBuf>,
    /// `ssl.trustStore.location`: a PEM file of the CAs client
    /// certificates must chain to.
    pub ssl_trust_store: Option<PathBuf>,
    /// `ssl.clientAuth`: `none`, `want` or `need` (ZooKeeper's default).
    pub ssl_client_auth: Option<String>,
    /// `ssl.protocol` (Java names: `TLSv1.2`, `TLSv1.3`, `TLS`).
    pub ssl_protocol: Option<String>,
    /// `ssl.enabledProtocols`: a comma list of Java protocol names.
    pub ssl_enabled_protocols: Option<Vec<String>>,
    /// An `authProvider.<n>` names `SASLAuthenticationProvider`: the `sasl`
    /// ACL scheme is registered.
    pub sasl_auth_provider: bool,
    /// An `authProvider.<n>` names `X509AuthenticationProvider`.
    pub x509_auth_provider: bool,
    /// `superUser` and `superUser.<suffix>`: SASL users who are also super.
    pub sasl_super_users: Vec<String>,
    /// `X509AuthenticationProvider.superUser`.
    pub x509_super_user: Option<String>,
    /// The schemes `enforce.auth.enabled=true` + `enforce.auth.schemes`
    /// (or `sessionRequireClientSASLAuth=true`: `sasl`) require; empty when
    /// enforcement is off.
    pub enforce_auth_schemes: Vec<String>,
    /// `admin.enableServer` (ZooKeeper defaults to true; zkit-server is off
    /// unless it is set).
    pub admin_enable: Option<bool>,
    /// `admin.serverAddress` (default `0.0.0.0`).
    pub admin_address: Option<IpAddr>,
    /// `admin.serverPort` (default 8080).
    pub admin_port: Option<u16>,
    /// `admin.commandURL` (default `/commands`).
    pub admin_command_url: Option<String>,
    /// `metricsProvider.className` names ZooKeeper's Prometheus provider.
    pub prometheus_provider: bool,
    /// `metricsProvider.httpHost` (default `0.0.0.0`).
    pub metrics_http_host: Option<IpAddr>,
    /// `metricsProvider.httpPort` (default 7000).
    pub metrics_http_port: Option<u16>,
}

/// ZooKeeper's default `admin.serverPort`.
pub const DEFAULT_ADMIN_PORT: u16 = 8080;

/// ZooKeeper's default `metricsProvider.httpPort`.
pub const DEFAULT_METRICS_PORT: u16 = 7000;

/// The class name of ZooKeeper's Prometheus metrics provider.
pub const PROMETHEUS_PROVIDER: &str =
    "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider";

impl Config {
    /// Reads and parses a `zoo.cfg`.
    ///
    /// # Errors
    /// The file cannot be read, or see [`parse`](Self::parse).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses the text of a `zoo.cfg`; later entries override earlier ones.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key and line of the first bad
    /// value.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut cfg = Self {
            text: text.to_string(),
            ..Self::default()
        };
        let mut secure_at: Option<(usize, String)> = None;
        let mut enforce_enabled: Option<(usize, String)> = None;
        let mut enforce_schemes: Vec<String> = Vec::new();
        let mut require_sasl = false;
        for (line, key, value) in properties(text) {
            let bad = |reason: &str| ConfigError::Invalid {
                line,
                key: key.clone(),
                value: value.clone(),
                reason: reason.to_string(),
            };
            let v = value.trim();
            match key.as_str() {
                "clientPort" => {
                    cfg.client_port = Some(v.parse().map_err(|_| bad("not a port (0-65535)"))?);
                }
                "clientPortAddress" => {
                    cfg.client_port_address =
                        Some(v.parse().map_err(|_| bad("not an IP address"))?);
                }
                "dataDir" => {
                    if v.is_empty() {
                        return Err(bad("empty path"));
                    }
                    cfg.data_dir = Some(PathBuf::from(v));
                }
                "dataLogDir" => {
                    if v.is_empty() {
                        return Err(bad("empty path"));
                    }
                    cfg.data_log_dir = Some(PathBuf::from(v));
                }
                "snapCount" | "zookeeper.snapCount" => {
                    let n: u64 = v.parse().map_err(|_| bad("not a number"))?;
                    if n < 2 {
                        return Err(bad("must be at least 2"));
                    }
                    cfg.snap_count = Some(n);
                }
                "autopurge.snapRetainCount" => {
                    let n: usize = v.parse().map_err(|_| bad("not a number"))?;
                    // ZooKeeper raises anything below 3 to 3.
                    cfg.snap_retain_count = Some(n.max(3));
                }
                "preAllocSize" | "zookeeper.preAllocSize" => {
                    let kib: u64 = v.parse().map_err(|_| bad("not a number of KiB"))?;
                    if kib == 0 || kib > (1 << 30) {
                        return Err(bad("must be between 1 and 1073741824 KiB"));
                    }
                    cfg.prealloc_size = Some(kib * 1024);
                }
                "forceSync" | "zookeeper.forceSync" => {
                    cfg.force_sync = Some(match v.to_ascii_lowercase().as_str() {
                        "yes" | "true" => true,
                        "no" | "false" => false,
                        _ => return Err(bad("expected yes or no")),
                    });
                }
                "tickTime" => {
                    let ms: u64 = v.parse().map_err(|_| bad("not a number of ms"))?;
                    if ms == 0 || ms > i32::MAX as u64 {
                        return Err(bad("must be between 1 and 2147483647 ms"));
                    }
                    cfg.tick_time = Some(Duration::from_millis(ms));
                }
                "minSessionTimeout" => {
                    cfg.min_session_timeout = session_timeout(v)
                        .ok_or_else(|| bad("not a number of ms (-1 = default)"))?
                }
                "maxSessionTimeout" => {
                    cfg.max_session_timeout = session_timeout(v)
                        .ok_or_else(|| bad("not a number of ms (-1 = default)"))?
                }
                "maxCnxns" => {
                    cfg.max_cnxns = Some(v.parse().map_err(|_| bad("not a non-negative integer"))?);
                }
                "maxClientCnxns" => {
                    cfg.max_client_cnxns =
                        Some(v.parse().map_err(|_| bad("not a non-negative integer"))?);
                }
                "4lw.commands.whitelist" | "zookeeper.4lw.commands.whitelist" => {
                    cfg.four_letter_words = Some(FourLetterWords::parse(v));
                }
                "extendedTypesEnabled" | "zookeeper.extendedTypesEnabled" => {
                    cfg.extended_types = Some(match v.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("expected true or false")),
                    });
                }
                "DigestAuthenticationProvider.superDigest"
                | "zookeeper.DigestAuthenticationProvider.superDigest" => {
                    if !v.contains(':') {
                        return Err(bad("expected super:<base64 sha1 digest>"));
                    }
                    cfg.super_digest = Some(v.to_string());
                }
                "znode.container.checkIntervalMs" | "zookeeper.znode.container.checkIntervalMs" => {
                    let ms: u64 = v.parse().map_err(|_| bad("not a number of ms"))?;
                    if ms == 0 {
                        return Err(bad("must be at least 1 ms"));
                    }
                    cfg.container_check_interval = Some(Duration::from_millis(ms));
                }
                "secureClientPort" => {
                    cfg.secure_client_port = Some(v.parse().map_err(|_| bad("not a port number"))?);
                    secure_at = Some((line, value.clone()));
                }
                "secureClientPortAddress" => {
                    cfg.secure_client_port_address =
                        Some(v.parse().map_err(|_| bad("not an IP address"))?);
                }
                "ssl.keyStore.location" | "zookeeper.ssl.keyStore.location" => {
                    cfg.ssl_key_store = Some(PathBuf::from(v));
                }
                "ssl.trustStore.location" | "zookeeper.ssl.trustStore.location" => {
                    cfg.ssl_trust_store = Some(PathBuf::from(v));
                }
                "ssl.keyStore.type"
                | "zookeeper.ssl.keyStore.type"
                | "ssl.trustStore.type"
                | "zookeeper.ssl.trustStore.type" => {
                    if !v.eq_ignore_ascii_case("PEM") {
                        return Err(bad("only PEM key and trust stores are supported"));
                    }
                }
                "ssl.protocol" | "zookeeper.ssl.protocol" => {
                    if !TLS_PROTOCOLS.contains(&v) {
                        return Err(bad("expected TLSv1.2, TLSv1.3 or TLS"));
                    }
                    cfg.ssl_protocol = Some(v.to_string());
                }
                "ssl.enabledProtocols" | "zookeeper.ssl.enabledProtocols" => {
                    let list = comma_list(v);
                    if list.is_empty() || list.iter().any(|p| !TLS_PROTOCOLS.contains(&p.as_str()))
                    {
                        return Err(bad("expected a comma list of TLSv1.2, TLSv1.3, TLS"));
                    }
                    cfg.ssl_enabled_protocols = Some(list);
                }
                "ssl.clientAuth" | "zookeeper.ssl.clientAuth" => {
                    let auth = v.to_ascii_lowercase();
                    if !matches!(auth.as_str(), "none" | "want" | "need") {
                        return Err(bad("expected none, want or need"));
                    }
                    cfg.ssl_client_auth = Some(auth);
                }
                k if k.starts_with("authProvider.") || k.starts_with("zookeeper.authProvider.") => {
                    if v == "org.apache.zookeeper.server.auth.SASLAuthenticationProvider" {
                        cfg.sasl_auth_provider = true;
                    } else if v == "org.apache.zookeeper.server.auth.X509AuthenticationProvider" {
                        cfg.x509_auth_provider = true;
                    } else {
                        tracing::debug!(
                            line,
                            key,
                            value,
                            "ignoring an auth provider zkit-server does not have"
                        );
                    }
                }
                k if is_super_user_key(k) => {
                    if v.is_empty() {
                        return Err(bad("expected a SASL user name"));
                    }
                    cfg.sasl_super_users.push(v.to_string());
                }
                "X509AuthenticationProvider.superUser"
                | "zookeeper.X509AuthenticationProvider.superUser" => {
                    cfg.x509_super_user = Some(v.to_string());
                }
                "enforce.auth.enabled" | "zookeeper.enforce.auth.enabled" => {
                    enforce_enabled = Some((line, v.to_string()));
                }
                "enforce.auth.schemes" | "zookeeper.enforce.auth.schemes" => {
                    enforce_schemes = comma_list(v);
                }
                "sessionRequireClientSASLAuth" | "zookeeper.sessionRequireClientSASLAuth" => {
                    // Java's Boolean.parseBoolean: "true" in any case, else false.
                    require_sasl = v.eq_ignore_ascii_case("true");
                }
                "admin.enableServer" | "zookeeper.admin.enableServer" => {
                    // ZooKeeper reads it with Boolean.parseBoolean.
                    cfg.admin_enable = Some(v.eq_ignore_ascii_case("true"));
                }
                "admin.serverAddress" | "zookeeper.admin.serverAddress" => {
                    cfg.admin_address = Some(v.parse().map_err(|_| bad("not an IP address"))?);
                }
                "admin.serverPort" | "zookeeper.admin.serverPort" => {
                    cfg.admin_port = Some(v.parse().map_err(|_| bad("not a port (0-65535)"))?);
                }
                "admin.commandURL" | "zookeeper.admin.commandURL" => {
                    if !v.starts_with('/') {
                        return Err(bad("must start with /"));
                    }
                    cfg.admin_command_url = Some(v.trim_end_matches('/').to_string());
                }
                "metricsProvider.className" => {
                    cfg.prometheus_provider = v == PROMETHEUS_PROVIDER;
                    if !cfg.prometheus_provider
                        && v != "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider"
                    {
                        tracing::debug!(line, value, "ignoring an unknown metrics provider");
                    }
                }
                "metricsProvider.httpHost" => {
                    cfg.metrics_http_host = Some(v.parse().map_err(|_| bad("not an IP address"))?);
                }
                "metricsProvider.httpPort" => {
                    cfg.metrics_http_port =
                        Some(v.parse().map_err(|_| bad("not a port (0-65535)"))?);
                }
                "jute.maxbuffer" | "zookeeper.jute.maxbuffer" => {
                    let n: usize = v.parse().map_err(|_| bad("not a number of bytes"))?;
                    if n == 0 || n > i32::MAX as usize {
                        return Err(bad("must be between 1 and 2147483647 bytes"));
                    }
                    cfg.jute_maxbuffer = Some(n);
                }
                _ => tracing::debug!(line, key, value, "ignoring unsupported zoo.cfg key"),
            }
        }
        if require_sasl {
            cfg.enforce_auth_schemes = vec!["sasl".to_string()];
        } else if let Some((line, value)) = enforce_enabled {
            if value.eq_ignore_ascii_case("true") {
                if enforce_schemes.is_empty() {
                    return Err(ConfigError::Invalid {
                        line,
                        key: "enforce.auth.enabled".into(),
                        value,
                        reason: "enforce.auth.schemes must name at least one scheme".into(),
                    });
                }
                cfg.enforce_auth_schemes = enforce_schemes;
            }
        }
        if let (Some((line, value)), None) = (secure_at, &cfg.ssl_key_store) {
            return Err(ConfigError::Invalid {
                line,
                key: "secureClientPort".into(),
                value,
                reason: "needs ssl.keyStore.location (the server's PEM certificate and key)".into(),
            });
        }
        Ok(cfg)
    }

    /// The TLS client port's address, if `secureClientPort` is set:
    /// `secureClientPortAddress`, else `clientPortAddress`, else all
    /// interfaces.
    pub fn secure_listen_addr(&self) -> Option<SocketAddr> {
        let port = self.secure_client_port?;
        let ip = self
            .secure_client_port_address
            .or(self.client_port_address)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Some(SocketAddr::new(ip, port))
    }

    /// The admin server's address, if `admin.enableServer=true`:
    /// `admin.serverAddress` (default `0.0.0.0`), `admin.serverPort`
    /// (default 8080).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        if self.admin_enable != Some(true) {
            return None;
        }
        Some(SocketAddr::new(
            self.admin_address
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            self.admin_port.unwrap_or(DEFAULT_ADMIN_PORT),
        ))
    }

    /// The Prometheus provider's address, if `metricsProvider.className`
    /// names it: `metricsProvider.httpHost` (default `0.0.0.0`),
    /// `metricsProvider.httpPort` (default 7000).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        if !self.prometheus_provider {
            return None;
        }
        Some(SocketAddr::new(
            self.metrics_http_host
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            self.metrics_http_port.unwrap_or(DEFAULT_METRICS_PORT),
        ))
    }

    /// The address to listen on: `clientPortAddress` (default `0.0.0.0`,
    /// all interfaces, as ZooKeeper) and `clientPort` (default 2181).
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.client_port_address
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            self.client_port.unwrap_or(DEFAULT_CLIENT_PORT),
        )
    }
}

/// `-1` (or any negative) = default; else a number of ms. `None`: bad.
fn session_timeout(v: &str) -> Option<Option<Duration>> {
    let ms: i64 = v.parse().ok()?;
    if ms < 0 {
        return Some(None);
    }
    if ms > i32::MAX as i64 {
        return None;
    }
    Some(Some(Duration::from_millis(ms as u64)))
}

/// Splits Java properties text into `(line, key, value)` entries:
/// `#`/`!` comment lines, `=`, `:` or whitespace separators, `\` line
/// continuations and the usual backslash escapes.
fn properties(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let first = raw.trim_start();
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = String::from(first);
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_entry(&logical);
        out.push((i + 1, unescape(key), unescape(value).trim_end().to_string()));
    }
    out
}

/// An odd number of trailing backslashes continues the line.
fn ends_with_continuation(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Key ends at the first unescaped `=`, `:` or whitespace; the separator
/// and surrounding whitespace are skipped.
fn split_entry(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            key_end = i;
            break;
        }
    }
    let key = &line[..key_end];
    let mut rest = line[key_end..].trim_start();
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start();
    }
    (key, rest)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(text: &str) -> (usize, String) {
        match Config::parse(text) {
            Err(ConfigError::Invalid { line, key, .. }) => (line, key),
            other => panic!("expected an invalid-value error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_typical_zoo_cfg() {
        let cfg = Config::parse(
            "# The number of milliseconds of each tick\n\
             tickTime=2000\n\
             ! another comment\n\
             \n\
             dataDir=/var/lib/zookeeper\n\
             clientPort = 2182\n\
             clientPortAddress: 127.0.0.1\n\
             minSessionTimeout=-1\n\
             maxSessionTimeout 60000\n\
             maxClientCnxns=0\n\
             4lw.commands.whitelist=ruok, mntr ,\n\
             zookeeper.extendedTypesEnabled=true\n\
             DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n\
             znode.container.checkIntervalMs=500\n\
             jute.maxbuffer=4194304\n\
             autopurge.snapRetainCount=3\n",
        )
        .unwrap();
        assert_eq!(cfg.tick_time, Some(Duration::from_millis(2000)));
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/var/lib/zookeeper")));
        assert_eq!(cfg.client_port, Some(2182));
        assert_eq!(cfg.client_port_address, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(cfg.listen_addr(), "127.0.0.1:2182".parse().unwrap());
        assert_eq!(cfg.min_session_timeout, None);
        assert_eq!(cfg.max_session_timeout, Some(Duration::from_secs(60)));
        assert_eq!(cfg.max_client_cnxns, Some(0));
        let w = cfg.four_letter_words.clone().unwrap();
        assert!(w.allows("ruok") && w.allows("mntr") && w.allows("srvr"));
        assert!(!w.allows("stat"));
        assert_eq!(cfg.extended_types, Some(true));
        assert_eq!(
            cfg.super_digest.as_deref(),
            Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")
        );
        assert_eq!(
            cfg.container_check_interval,
            Some(Duration::from_millis(500))
        );
        assert_eq!(cfg.jute_maxbuffer, Some(4_194_304));
        // Applies without panicking.
        let _ = crate::ServerBuilder::from_config(&cfg);
    }

    #[test]
    fn defaults_follow_zookeeper() {
        let cfg = Config::parse("").unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.listen_addr(), "0.0.0.0:2181".parse().unwrap());
        let w = FourLetterWords::default();
        assert!(w.allows("srvr"));
        assert!(!w.allows("ruok") && !w.allows("isro"));
        assert!(FourLetterWords::parse("*").allows("mntr"));
        assert!(FourLetterWords::parse(" ruok , * ").allows("wchs"));
        assert!(FourLetterWords::parse("").allows("srvr"));
    }

    #[test]
    fn both_spellings_of_system_properties() {
        for key in ["extendedTypesEnabled", "zookeeper.extendedTypesEnabled"] {
            let cfg = Config::parse(&format!("{key}=FALSE")).unwrap();
            assert_eq!(cfg.extended_types, Some(false));
        }
        let cfg = Config::parse("zookeeper.4lw.commands.whitelist=*").unwrap();
        assert!(cfg.four_letter_words.unwrap().allows("cons"));
        let cfg =
            Config::parse("zookeeper.DigestAuthenticationProvider.superDigest=super:x").unwrap();
        assert_eq!(cfg.super_digest.as_deref(), Some("super:x"));
    }

    #[test]
    fn later_entries_win_and_continuations_join() {
        let cfg =
            Config::parse("tickTime=100\ntickTime=300\n4lw.commands.whitelist=ruok,\\\n    stat\n")
                .unwrap();
        assert_eq!(cfg.tick_time, Some(Duration::from_millis(300)));
        let w = cfg.four_letter_words.unwrap();
        assert!(w.allows("stat") && w.allows("ruok"));
    }

    #[test]
    fn bad_values_name_key_and_line() {
        assert_eq!(invalid("\n\ntickTime=abc\n"), (3, "tickTime".into()));
        assert_eq!(invalid("tickTime=0"), (1, "tickTime".into()));
        assert_eq!(invalid("# c\nclientPort=70000"), (2, "clientPort".into()));
        assert_eq!(
            invalid("clientPortAddress=localhost"),
            (1, "clientPortAddress".into())
        );
        assert_eq!(invalid("maxClientCnxns=-1"), (1, "maxClientCnxns".into()));
        assert_eq!(
            invalid("extendedTypesEnabled=yes"),
            (1, "extendedTypesEnabled".into())
        );
        assert_eq!(
            invalid("DigestAuthenticationProvider.superDigest=nocolon"),
            (1, "DigestAuthenticationProvider.superDigest".into())
        );
        assert_eq!(invalid("jute.maxbuffer=0"), (1, "jute.maxbuffer".into()));
        assert_eq!(
            invalid("maxSessionTimeout=ten"),
            (1, "maxSessionTimeout".into())
        );
        let msg = Config::parse("x=1\ntickTime=abc").unwrap_err().to_string();
        assert!(msg.contains("line 2") && msg.contains("tickTime"), "{msg}");
    }

    #[test]
    fn admin_and_metrics_ports() {
        let cfg = Config::parse("admin.serverPort=9090").unwrap();
        assert_eq!(cfg.admin_addr(), None, "off unless enabled");
        let cfg = Config::parse("admin.enableServer=true").unwrap();
        assert_eq!(cfg.admin_addr(), Some("0.0.0.0:8080".parse().unwrap()));
        let cfg = Config::parse(
            "admin.enableServer=TRUE\nadmin.serverAddress=127.0.0.1\nadmin.serverPort=0\n\
             metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
             metricsProvider.httpPort=7001\n",
        )
        .unwrap();
        assert_eq!(cfg.admin_addr(), Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(cfg.metrics_addr(), Some("0.0.0.0:7001".parse().unwrap()));
        assert_eq!(
            invalid("admin.serverPort=x"),
            (1, "admin.serverPort".into())
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let text = "initLimit=5\nsyncLimit=2\nserver.1=a:2888:3888";
        let cfg = Config::parse(text).unwrap();
        assert_eq!(
            cfg,
            Config {
                text: text.into(),
                ..Config::default()
            }
        );
    }
}
