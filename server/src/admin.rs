//! The HTTP admin server (ZooKeeper's `JettyAdminServer`, off by default):
//! `/commands/<name>` answers JSON as ZooKeeper 3.8's `CommandServlet`
//! (`Commands` names and aliases, `command` and `error` in every answer, an
//! unknown name answered 200 with `"error": "Unknown command: <name>"`),
//! `/metrics` the Prometheus text format (`metrics.rs`), `/ready` a
//! readiness check (zkit's own: ZooKeeper 3.8 has none).
//!
//! A deliberately small HTTP/1.1 server on tokio: GET only, one request per
//! connection (`Connection: close`), the request head bounded in size and
//! time, a cap on concurrent admin connections. Its tasks are separate from
//! the client port's, which they never block (the state lock is held as
//! briefly as by the four-letter words).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics;
use crate::state::Shared;
use crate::VERSION;

/// Largest request head (request line + headers) accepted.
const MAX_HEAD: usize = 8 * 1024;

/// Time allowed to send the request head, and to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Concurrent admin connections; more are closed at once.
const MAX_CONNECTIONS: usize = 64;

/// ZooKeeper's default `admin.commandURL`.
const DEFAULT_COMMAND_URL: &str = "/commands";

/// The admin server's settings.
#[derive(Debug, Clone)]
pub(crate) struct AdminSettings {
    /// `admin.serverAddress` + `admin.serverPort`.
    pub(crate) addr: SocketAddr,
    /// `admin.commandURL`, without a trailing `/`.
    pub(crate) command_url: String,
}

impl AdminSettings {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            command_url: DEFAULT_COMMAND_URL.to_string(),
        }
    }
}

/// What a listener serves.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    /// The commands' URL prefix (`None`: no commands).
    commands: Option<String>,
    /// Every path is `/metrics` (the Prometheus provider's port).
    metrics_everywhere: bool,
}

impl Routes {
    /// The admin port: commands, `/metrics`, `/ready`.
    pub(crate) fn admin(command_url: String) -> Self {
        Self {
            commands: Some(command_url),
            metrics_everywhere: false,
        }
    }

    /// The Prometheus provider's port: metrics at any path, as its
    /// exporter serves them.
    pub(crate) fn metrics_only() -> Self {
        Self {
            commands: None,
            metrics_everywhere: true,
        }
    }
}

/// Accepts admin connections until `cancel`.
pub(crate) async fn serve(
    listener: TcpListener,
    routes: Routes,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let routes = Arc::new(routes);
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many admin connections, closing");
            continue;
        };
        let (routes, shared, cancel) = (routes.clone(), shared.clone(), cancel.clone());
        tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                () = connection(stream, &routes, &shared, &cancel) => {}
            }
            drop(permit);
        });
    }
}

/// A response: status, content type, body.
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    allow_get: bool,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: String) -> Self {
        Self {
            status,
            content_type,
            body,
            allow_get: false,
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    fn encode(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.allow_get {
            head.push_str("Allow: GET\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// Serves one request on `stream`, then closes it.
async fn connection(
    mut stream: TcpStream,
    routes: &Routes,
    shared: &Shared,
    cancel: &CancellationToken,
) {
    let response = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => Response::text(408, "request timeout"),
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::TooLarge)) => Response::text(431, "request head too large"),
        Ok(Ok(head)) => match parse(&head) {
            Err(why) => Response::text(400, why),
            Ok(Request::Other) => {
                let mut r = Response::text(405, "only GET is supported");
                r.allow_get = true;
                r
            }
            Ok(Request::Get(path, query)) => route(&path, &query, routes, shared, cancel),
        },
    };
    let bytes = response.encode();
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
}

enum HeadError {
    Closed,
    TooLarge,
}

/// Reads up to the blank line ending the request head.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(from + end);
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

enum Request {
    /// A GET of this path, with its query's parameters (percent-decoded).
    Get(String, Query),
    /// A well-formed request with another method.
    Other,
}

/// Parses a request head (without its final blank line).
fn parse(head: &[u8]) -> Result<Request, &'static str> {
    let head = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err("unsupported HTTP version");
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("malformed method");
    }
    if !target.starts_with('/') {
        return Err("malformed request target");
    }
    for h in lines {
        match h.split_once(':') {
            Some((name, _)) if !name.is_empty() && !name.contains([' ', '\t']) => {}
            _ => return Err("malformed header"),
        }
    }
    if method != "GET" {
        return Ok(Request::Other);
    }
    let target = target.split('#').next().unwrap_or(target);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request::Get(path.to_string(), parse_query(query)))
}

/// A request's query parameters (the last value of a repeated name wins).
type Query = std::collections::HashMap<String, String>;

/// Parses `a=1&b=x%20y` (form encoding: `+` is a space); a malformed escape
/// is kept as written.
fn parse_query(query: &str) -> Query {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route(
    path: &str,
    query: &Query,
    routes: &Routes,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Response {
    if routes.metrics_everywhere || path == "/metrics" {
        return Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::gather(shared).prometheus(),
        );
    }
    if path == "/ready" {
        return if cancel.is_cancelled() {
            Response::text(503, "not ready")
        } else {
            Response::text(200, "ready")
        };
    }
    let Some(prefix) = &routes.commands else {
        return Response::text(404, "not found");
    };
    let Some(rest) = path.strip_prefix(prefix.as_str()) else {
        return Response::text(404, "not found");
    };
    match rest {
        "" | "/" => Response::new(200, "text/html; charset=utf-8", command_links(prefix)),
        _ => match rest.strip_prefix('/') {
            Some(name) => {
                let body = run(name, query, shared, cancel);
                let text = serde_json::to_string_pretty(&body).unwrap_or_default();
                Response::new(200, "application/json", text + "\n")
            }
            None => Response::text(404, "not found"),
        },
    }
}

/// Commands: primary name (ZooKeeper's first name), then aliases.
const COMMANDS: &[&[&str]] = &[
    &["configuration", "conf", "config"],
    &["connection_stat_reset", "crst"],
    &["connections", "cons"],
    &["dirs"],
    &["dump"],
    &["environment", "env", "envi"],
    &["get_trace_mask", "gtmk"],
    &["hash"],
    &["initial_configuration", "icfg"],
    &["is_read_only", "isro"],
    &["last_snapshot", "lsnp"],
    &["leader", "lead"],
    &["monitor", "mntr"],
    &["observer_connection_stat_reset", "orst"],
    &["observers", "obsr"],
    &["ruok"],
    &["server_stats", "srvr"],
    &["set_trace_mask", "stmk"],
    &["stat_reset", "srst"],
    &["stats", "stat"],
    &["system_properties", "sysp"],
    &["voting_view"],
    &["watch_summary", "wchs"],
    &["watches", "wchc"],
    &["watches_by_path", "wchp"],
    &["zabstate"],
];

/// `GET /commands`: a link per command, as ZooKeeper lists them.
fn command_links(prefix: &str) -> String {
    let mut s = String::new();
    for names in COMMANDS {
        s.push_str(&format!(
            "<a href=\"{prefix}/{0}\">{0}</a>\n<br/>\n",
            names[0]
        ));
    }
    s
}

/// Runs command `name` (a name or an alias): its JSON object, with
/// `command` (the primary name) and `error` last, as ZooKeeper's
/// `CommandResponse`.
fn run(name: &str, query: &Query, shared: &Shared, cancel: &CancellationToken) -> Value {
    let Some(names) = COMMANDS.iter().find(|n| n.contains(&name)) else {
        return json!({ "command": name, "error": format!("Unknown command: {name}") });
    };
    let primary = names[0];
    if cancel.is_cancelled() {
        return json!({
            "command": primary,
            "error": "This ZooKeeper instance is not currently serving requests",
        });
    }
    let mut out = match primary {
        "configuration" => configuration(shared),
        "connections" => {
            let mut m = Map::new();
            m.insert("connections".into(), connections(shared, true));
            m.insert("secure_connections".into(), json!([]));
            m
        }
        "dirs" => {
            let (data, log) = crate::fourlw::dir_sizes(shared);
            obj(json!({ "datadir_size": data, "logdir_size": log }))
        }
        "dump" => dump(shared),
        "environment" => environment(),
        "connection_stat_reset" => {
            for h in shared.lock().conns.values() {
                h.stats.reset();
            }
            Map::new()
        }
        "get_trace_mask" => obj(json!({ "tracemask": shared.trace_mask.load(Ordering::Relaxed) })),
        "initial_configuration" => {
            obj(json!({ "initial_configuration": initial_configuration(shared) }))
        }
        "last_snapshot" => last_snapshot(shared),
        // A standalone server is no quorum peer: ZooKeeper answers so.
        "leader" => obj(json!({ "error": "server is not initialized" })),
        "set_trace_mask" => match query.get("traceMask").map(|v| v.parse::<u64>()) {
            Some(Ok(mask)) => {
                shared.trace_mask.store(mask, Ordering::Relaxed);
                obj(json!({ "tracemask": mask }))
            }
            Some(Err(_)) => obj(json!({
                "error": format!(
                    "setTraceMask requires long traceMask argument, got {}",
                    query.get("traceMask").map_or("", String::as_str)
                )
            })),
            None => obj(json!({ "error": "setTraceMask requires long traceMask argument" })),
        },
        "system_properties" => system_properties(shared),
        "hash" => obj(json!({ "digests": [] })),
        "is_read_only" => obj(json!({ "read_only": false })),
        "monitor" => metrics::gather(shared)
            .flat()
            .into_iter()
            .map(|(k, v)| (k, v.to_json()))
            .collect(),
        "observers" => obj(json!({ "synced_observers": 0, "observers": [] })),
        "server_stats" => server_stats(shared),
        "stats" => {
            let mut m = server_stats(shared);
            m.insert("connections".into(), connections(shared, false));
            m.insert("secure_connections".into(), json!([]));
            m
        }
        "voting_view" => obj(json!({ "current_config": {} })),
        "watch_summary" => {
            let (conns, paths, total) = shared.lock().watches.data_watch_summary();
            obj(json!({
                "num_connections": conns,
                "num_paths": paths,
                "num_total_watches": total,
            }))
        }
        "watches" | "watches_by_path" => watches(shared, primary == "watches_by_path"),
        "zabstate" => obj(json!({ "voting": false, "zabstate": "" })),
        // ruok, and the resets (nothing to reset: no per-connection stats).
        _ => Map::new(),
    };
    out.insert("command".into(), primary.into());
    out.entry("error").or_insert(Value::Null);
    Value::Object(out)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn configuration(shared: &Shared) -> Map<String, Value> {
    let st = shared.lock();
    let c = st.sessions.config();
    let mut m = Map::new();
    m.insert("client_port".into(), shared.local_addr.port().into());
    if let (Some(data), Some(log)) = (&shared.settings.data_dir, shared.settings.log_dir()) {
        m.insert("data_dir".into(), data.display().to_string().into());
        m.insert("data_log_dir".into(), log.display().to_string().into());
    }
    m.insert("tick_time".into(), c.tick_time.into());
    m.insert(
        "max_client_cnxns".into(),
        shared.settings.max_connections_per_ip.into(),
    );
    m.insert("min_session_timeout".into(), c.min_session_timeout.into());
    m.insert("max_session_timeout".into(), c.max_session_timeout.into());
    m.insert("server_id".into(), 0.into());
    m.insert("client_port_listen_backlog".into(), (-1).into());
    m
}

/// `connections`: one object per handshaken connection; `full` adds the
/// session fields (`stats` lists only the counters, as ZooKeeper does).
fn connections(shared: &Shared, full: bool) -> Value {
    let st = shared.lock();
    let mut list: Vec<_> = st.conns.values().collect();
    list.sort_by_key(|h| h.peer);
    let out: Vec<Value> = list
        .into_iter()
        .map(|h| {
            let c = &h.stats;
            let r = Ordering::Relaxed;
            let mut m = obj(json!({
                "remote_socket_address": h.peer.to_string(),
                "interest_ops": 1,
                "outstanding_requests": c.outstanding.load(r),
                "packets_received": c.packets_received.load(r),
                "packets_sent": c.packets_sent.load(r),
            }));
            if full {
                // ZooKeeper's `getConnectionInfo(false)`, in its order.
                m.insert("session_id".into(), h.session.into());
                m.insert("last_operation".into(), c.last_op().into());
                m.insert("established".into(), c.established_ms.into());
                m.insert(
                    "session_timeout".into(),
                    st.sessions.timeout(h.session).unwrap_or(0).into(),
                );
                m.insert("last_cxid".into(), c.last_cxid.load(r).into());
                m.insert("last_zxid".into(), c.last_zxid.load(r).into());
                // ZooKeeper's is its monotonic clock (an arbitrary origin);
                // ours the wall clock, which an operator can read.
                m.insert(
                    "last_response_time".into(),
                    c.last_response_ms.load(r).into(),
                );
                m.insert("last_latency".into(), c.last_latency.load(r).into());
                m.insert("min_latency".into(), c.min_latency().into());
                m.insert("avg_latency".into(), c.avg_latency().into());
                m.insert("max_latency".into(), c.max_latency.load(r).into());
            }
            Value::Object(m)
        })
        .collect();
    Value::Array(out)
}

fn dump(shared: &Shared) -> Map<String, Value> {
    let st = shared.lock();
    let mut expiry = Map::new();
    for (at, ids) in st.sessions.expiry_buckets() {
        expiry.insert(at.to_string(), json!(ids));
    }
    let mut ephemerals = Map::new();
    for owner in st.tree.sessions_with_ephemerals() {
        ephemerals.insert(owner.to_string(), json!(st.tree.get_ephemerals(owner, "/")));
    }
    obj(json!({
        "expiry_time_to_session_ids": expiry,
        "session_id_to_ephemeral_paths": ephemerals,
    }))
}

fn environment() -> Map<String, Value> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Mac OS X",
        other => other,
    };
    obj(json!({
        "zookeeper.version": format!("{VERSION}, built on 01/01/2022 00:00 GMT"),
        "host.name": read("/proc/sys/kernel/hostname"),
        "os.name": os,
        "os.arch": std::env::consts::ARCH,
        "os.version": read("/proc/sys/kernel/osrelease"),
        "user.name": var("USER"),
        "user.home": var("HOME"),
        "user.dir": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
    }))
}

fn server_stats(shared: &Shared) -> Map<String, Value> {
    let report = metrics::gather(shared);
    let get = |name: &str| {
        report
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map_or(Value::Null, |m| m.value.to_json())
    };
    let (data, log) = crate::fourlw::dir_sizes(shared);
    let buffers = json!({ "last_buffer_size": -1, "min_buffer_size": -1, "max_buffer_size": -1 });
    obj(json!({
        "version": get("version"),
        "read_only": false,
        "server_stats": {
            "packets_sent": shared.sent.load(Ordering::Relaxed),
            "packets_received": shared.received.load(Ordering::Relaxed),
            "fsync_threshold_exceed_count": 0,
            "client_response_stats": buffers,
            "data_dir_size": data,
            "log_dir_size": log,
            "provider_null": false,
            "server_state": "standalone",
            "last_processed_zxid": get("last_processed_zxid"),
            "outstanding_requests": get("outstanding_requests"),
            "avg_latency": get("avg_latency"),
            "max_latency": get("max_latency"),
            "min_latency": get("min_latency"),
            "num_alive_client_connections": get("num_alive_connections"),
            "auth_failed_count": 0,
            "non_mtlsremote_conn_count": 0,
            "non_mtlslocal_conn_count": 0,
            "uptime": get("uptime"),
        },
        "client_response": buffers,
        "node_count": get("znode_count"),
    }))
}

/// `initial_configuration`: the `zoo.cfg` text the server was started
/// with; a server built in code reports its effective settings in the same
/// syntax.
fn initial_configuration(shared: &Shared) -> String {
    if let Some(text) = &shared.settings.initial_config {
        return text.clone();
    }
    let mut s = String::new();
    for (k, v) in configuration(shared) {
        let key = match k.as_str() {
            "client_port" => "clientPort",
            "data_dir" => "dataDir",
            "data_log_dir" => "dataLogDir",
            "tick_time" => "tickTime",
            "max_client_cnxns" => "maxClientCnxns",
            "min_session_timeout" => "minSessionTimeout",
            "max_session_timeout" => "maxSessionTimeout",
            _ => continue,
        };
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        s.push_str(&format!("{key}={v}\n"));
    }
    s
}

/// `last_snapshot`: the newest snapshot file of the data directory (its
/// zxid, from its name, and when it was written). An in-memory server has
/// none: zxid 0, time 0.
fn last_snapshot(shared: &Shared) -> Map<String, Value> {
    // This server's snapshots are in the data directory itself (an
    // imported ZooKeeper directory keeps its `version-2`).
    let newest = shared.settings.data_dir.as_ref().and_then(|d| {
        [d.clone(), d.join("version-2")]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let zxid = i64::from_str_radix(name.strip_prefix("snapshot.")?, 16).ok()?;
                let at = e.metadata().ok()?.modified().ok()?;
                Some((zxid, at))
            })
            .max_by_key(|(zxid, _)| *zxid)
    });
    let (zxid, at_ms) = newest.map_or((0, 0), |(zxid, at)| {
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        (zxid, ms)
    });
    obj(json!({ "zxid": format!("{zxid:x}"), "timestamp": at_ms }))
}

/// `system_properties`: a JVM's `System.getProperties()` has no meaning
/// here; the server reports the ZooKeeper properties it honours, with their
/// effective values, and the platform's, under the same names.
fn system_properties(shared: &Shared) -> Map<String, Value> {
    let s = &shared.settings;
    let mut m = std::collections::BTreeMap::<String, String>::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("jute.maxbuffer", s.max_frame.to_string());
    put(
        "zookeeper.extendedTypesEnabled",
        s.extended_types.to_string(),
    );
    put(
        "zookeeper.4lw.commands.whitelist",
        s.four_letter_words.to_string(),
    );
    put("zookeeper.maxCnxns", s.max_connections.to_string());
    put("zookeeper.snapCount", s.snap_count.to_string());
    put(
        "zookeeper.preAllocSize",
        (s.prealloc_size / 1024).to_string(),
    );
    put(
        "zookeeper.forceSync",
        if s.force_sync { "yes" } else { "no" }.into(),
    );
    put(
        "znode.container.checkIntervalMs",
        s.container_check_interval.as_millis().to_string(),
    );
    put(
        "zookeeper.nio.sessionlessCnxnTimeout",
        s.handshake_timeout.as_millis().to_string(),
    );
    put("os.name", std::env::consts::OS.into());
    put("os.arch", std::env::consts::ARCH.into());
    put("file.separator", std::path::MAIN_SEPARATOR.to_string());
    put("line.separator", "\n".into());
    if let Ok(dir) = std::env::current_dir() {
        put("user.dir", dir.display().to_string());
    }
    for (k, var) in [
        ("user.name", "USER"),
        ("user.home", "HOME"),
        ("java.io.tmpdir", "TMPDIR"),
    ] {
        if let Ok(v) = std::env::var(var) {
            put(k, v);
        }
    }
    m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
}

/// `watches` (by session) and `watches_by_path` over the data watches.
fn watches(shared: &Shared, by_path: bool) -> Map<String, Value> {
    let st = shared.lock();
    let session_of = |c| st.conns.get(&c).map_or(0, |h| h.session);
    let by_conn = st.watches.data_watches_by_conn();
    let mut m = Map::new();
    if by_path {
        let mut paths: std::collections::BTreeMap<&String, Vec<i64>> = Default::default();
        for (c, ps) in &by_conn {
            for p in ps {
                paths.entry(p).or_default().push(session_of(*c));
            }
        }
        for (p, ids) in paths {
            m.insert(p.clone(), json!(ids));
        }
        obj(json!({ "path_to_session_ids": m }))
    } else {
        for (c, ps) in &by_conn {
            m.insert(session_of(*c).to_string(), json!(ps));
        }
        obj(json!({ "session_id_to_watched_paths": m }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_heads() {
        let get = |h: &str| match parse(h.as_bytes()) {
            Ok(Request::Get(p, _)) => Ok(p),
            Ok(Request::Other) => Err("other"),
            Err(e) => Err(e),
        };
        assert_eq!(get("GET /metrics HTTP/1.1\r\nHost: x").unwrap(), "/metrics");
        assert_eq!(
            get("GET /commands/ruok?x=1 HTTP/1.0").unwrap(),
            "/commands/ruok"
        );
        assert_eq!(get("POST /metrics HTTP/1.1"), Err("other"));
        assert!(get("GET /metrics").is_err());
        assert!(get("GET metrics HTTP/1.1").is_err());
        assert!(get("GET /metrics HTTP/2.0").is_err());
        assert!(get("GET /metrics HTTP/1.1\r\nno colon").is_err());
        assert!(get("get /metrics HTTP/1.1").is_err());
        let query = |h: &str| match parse(h.as_bytes()) {
            Ok(Request::Get(_, q)) => q,
            _ => Query::new(),
        };
        let q = query("GET /commands/stmk?traceMask=42&x=a%20b+c&bad=%zz&flag HTTP/1.1");
        assert_eq!(q["traceMask"], "42");
        assert_eq!(q["x"], "a b c");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["flag"], "");
        assert_eq!(query("GET /m?x=%4 HTTP/1.1")["x"], "%4");
    }
}
