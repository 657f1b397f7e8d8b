//! The HTTP admin server and `/metrics`: the bundled server alone, then
//! side by side with real ZooKeeper 3.8's AdminServer (`ZKIT_TEST_BACKEND=zookeeper`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit::{AddWatchMode, Client, CreateMode, CreateOptions};
use zkit_server::{RunningServer, Server};
use zkit_testcontainers::Ensemble;

const LOCAL_ANY: &str = "127.0.0.1:0";

async fn bundled() -> RunningServer {
    let any: SocketAddr = LOCAL_ANY.parse().unwrap();
    Server::builder()
        .admin_listen(any)
        .metrics_listen(any)
        .four_letter_words(zkit_server::FourLetterWords::all())
        .start()
        .await
        .expect("server starts")
}

/// Sends `raw` and returns (status, body).
async fn http_raw(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    http_raw(addr, req.as_bytes()).await
}

async fn command(addr: SocketAddr, name: &str) -> serde_json::Map<String, Value> {
    let (status, body) = get(addr, &format!("/commands/{name}")).await;
    assert_eq!(status, 200, "{name}: {body}");
    match serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}: {body}")) {
        Value::Object(m) => m,
        other => panic!("{name}: not an object: {other}"),
    }
}

/// Parses a Prometheus 0.0.4 text page: every line a comment (`# HELP`,
/// `# TYPE` with a known type) or `name[{labels}] value`; returns
/// sample name (labels included) → value.
fn parse_metrics(page: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in page.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix("# ") {
            let mut parts = c.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().expect("a metric name");
            assert!(valid_name(name), "bad name in {line:?}");
            if kind == "TYPE" {
                let t = parts.next().unwrap();
                assert!(
                    ["counter", "gauge", "summary", "histogram", "untyped"].contains(&t),
                    "{line:?}"
                );
            } else {
                assert_eq!(kind, "HELP", "{line:?}");
            }
            continue;
        }
        let (sample, value) = line.rsplit_once(' ').expect("name value");
        let name = sample.split('{').next().unwrap();
        assert!(valid_name(name), "bad name in {line:?}");
        if let Some(labels) = sample.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
            for l in labels[1..labels.len() - 1]
                .split(',')
                .filter(|l| !l.is_empty())
            {
                let (k, v) = l.split_once('=').expect("label=value");
                assert!(
                    valid_name(k) && v.starts_with('"') && v.ends_with('"'),
                    "{line:?}"
                );
            }
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.insert(sample.to_string(), v);
    }
    out
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The scripted workload: 3 znodes (2 ephemeral), 4 watch registrations. Returns the
/// client, which holds the session, its ephemerals and watches.
async fn workload(connect: &str) -> (Client, impl Sized) {
    let zk = Client::connect(connect).await.unwrap();
    let p = CreateOptions::new(CreateMode::Persistent);
    let e = CreateOptions::new(CreateMode::Ephemeral);
    zk.create("/app", b"hello", &p).await.unwrap();
    zk.create("/app/e1", b"x", &e).await.unwrap();
    zk.create("/app/e2", b"yz", &e).await.unwrap();
    let w1 = zk.get_data_and_watch("/app").await.unwrap().2;
    let w2 = zk.exists_and_watch("/app/e1").await.unwrap().1;
    let w3 = zk.get_children_and_watch("/app").await.unwrap().2;
    let w4 = zk
        .add_watch("/other", AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    (zk, (w1, w2, w3, w4))
}

const EXPECTED_METRICS: [&str; 12] = [
    "znode_count",
    "watch_count",
    "ephemerals_count",
    "num_alive_connections",
    "outstanding_requests",
    "approximate_data_size",
    "packets_received",
    "packets_sent",
    "avg_latency",
    "max_latency",
    "min_latency",
    "uptime",
];

#[tokio::test]
async fn metrics_parse_and_move_with_the_workload() {
    let server = bundled().await;
    let admin = server.admin_addr().unwrap();
    let (status, page) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let before = parse_metrics(&page);
    for name in EXPECTED_METRICS {
        assert!(before.contains_key(name), "{name} missing:\n{page}");
    }
    assert!(before.contains_key("readlatency_count"));
    assert!(before.contains_key("updatelatency{quantile=\"0.5\"}"));
    let (zk, _watches) = workload(&server.connect_string()).await;
    let after = parse_metrics(&get(admin, "/metrics").await.1);
    let delta = |n: &str| after[n] - before[n];
    assert_eq!(delta("znode_count"), 3.0);
    assert_eq!(delta("ephemerals_count"), 2.0);
    // Data /app, /app/e1; child /app; the persistent recursive watch counts
    // in both tables (as real ZooKeeper 3.8 counts it: see the comparison).
    assert_eq!(delta("watch_count"), 5.0);
    assert_eq!(delta("num_alive_connections"), 1.0);
    // Path and data lengths: "/app" 4 + 5, "/app/e1" 7 + 1, "/app/e2" 7 + 2.
    assert_eq!(delta("approximate_data_size"), 26.0);
    assert!(delta("packets_received") >= 8.0 && delta("packets_sent") >= 8.0);
    assert_eq!(after["updatelatency_count"], 3.0);
    assert!(after["readlatency_count"] >= 4.0);
    // The Prometheus provider's port serves the same page, at any path.
    let other = parse_metrics(&get(server.metrics_addr().unwrap(), "/metrics").await.1);
    assert_eq!(other["znode_count"], after["znode_count"]);
    let root = parse_metrics(&get(server.metrics_addr().unwrap(), "/").await.1);
    assert_eq!(root["ephemerals_count"], after["ephemerals_count"]);
    zk.close().await.unwrap();
    server.shutdown().await;
}

/// Keys each command answers with (besides `command` and `error`).
const COMMAND_KEYS: &[(&str, &[&str])] = &[
    ("ruok", &[]),
    (
        "monitor",
        &[
            "znode_count",
            "watch_count",
            "ephemerals_count",
            "server_state",
        ],
    ),
    ("mntr", &["znode_count", "num_alive_connections"]),
    (
        "server_stats",
        &[
            "version",
            "read_only",
            "server_stats",
            "client_response",
            "node_count",
        ],
    ),
    ("srvr", &["server_stats"]),
    (
        "stats",
        &["server_stats", "connections", "secure_connections"],
    ),
    (
        "configuration",
        &["client_port", "tick_time", "max_session_timeout"],
    ),
    ("conf", &["client_port"]),
    ("connections", &["connections", "secure_connections"]),
    ("cons", &["connections"]),
    (
        "dump",
        &[
            "expiry_time_to_session_ids",
            "session_id_to_ephemeral_paths",
        ],
    ),
    ("environment", &["zookeeper.version", "os.name"]),
    ("envi", &["zookeeper.version"]),
    ("is_read_only", &["read_only"]),
    (
        "watch_summary",
        &["num_connections", "num_paths", "num_total_watches"],
    ),
    ("wchs", &["num_total_watches"]),
    ("watches", &["session_id_to_watched_paths"]),
    ("watches_by_path", &["path_to_session_ids"]),
    ("dirs", &["datadir_size", "logdir_size"]),
    ("get_trace_mask", &["tracemask"]),
    ("initial_configuration", &["initial_configuration"]),
    ("last_snapshot", &["zxid", "timestamp"]),
    (
        "system_properties",
        &["os.name", "os.arch", "line.separator"],
    ),
];

#[tokio::test]
async fn commands_answer_json_like_zookeeper() {
    let server = bundled().await;
    let admin = server.admin_addr().unwrap();
    let (zk, _watches) = workload(&server.connect_string()).await;
    let sid = zk.session_id().0;
    for (name, keys) in COMMAND_KEYS {
        let m = command(admin, name).await;
        assert_eq!(m["error"], Value::Null, "{name}");
        assert!(m["command"].is_string(), "{name}");
        for k in *keys {
            assert!(m.contains_key(*k), "{name}: no {k} in {m:?}");
        }
    }
    // Aliases answer under the primary name, as in ZooKeeper.
    assert_eq!(command(admin, "cons").await["command"], "connections");
    let dump = command(admin, "dump").await;
    assert_eq!(
        dump["session_id_to_ephemeral_paths"][sid.to_string()],
        serde_json::json!(["/app/e1", "/app/e2"])
    );
    let by_path = command(admin, "watches_by_path").await;
    assert_eq!(
        by_path["path_to_session_ids"]["/app"],
        serde_json::json!([sid])
    );
    let cons = command(admin, "connections").await;
    assert_eq!(cons["connections"][0]["session_id"], sid);
    // Unknown: 200 with an error, as ZooKeeper's CommandServlet answers.
    let unknown = command(admin, "nope").await;
    assert_eq!(unknown["command"], "nope");
    assert_eq!(unknown["error"], "Unknown command: nope");
    let (status, links) = get(admin, "/commands").await;
    assert_eq!(status, 200);
    assert!(links.contains("/commands/monitor"), "{links}");
    zk.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_and_readiness() {
    let server = bundled().await;
    let admin = server.admin_addr().unwrap();
    assert_eq!(get(admin, "/ready").await, (200, "ready\n".to_string()));
    assert_eq!(get(admin, "/nothing").await.0, 404);
    assert_eq!(
        http_raw(admin, b"POST /commands/ruok HTTP/1.1\r\n\r\n")
            .await
            .0,
        405
    );
    assert_eq!(http_raw(admin, b"garbage\r\n\r\n").await.0, 400);
    assert_eq!(http_raw(admin, b"GET /metrics HTTP/9\r\n\r\n").await.0, 400);
    assert_eq!(
        http_raw(admin, b"GET /x HTTP/1.1\r\nbad header\r\n\r\n")
            .await
            .0,
        400
    );
    let huge = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    assert_eq!(http_raw(admin, huge.as_bytes()).await.0, 431);
    // Idle and half-open admin connections do not disturb the client port.
    let mut idle = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(admin).await.unwrap();
        s.write_all(b"GET /metr").await.unwrap();
        idle.push(s);
    }
    let zk = tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect(&server.connect_string()),
    )
    .await
    .expect("client port still serves")
    .unwrap();
    zk.exists("/").await.unwrap();
    drop(idle);
    // Freed slots serve again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(admin, "/commands/ruok").await.0, 200);
    zk.close().await.unwrap();
    server.shutdown().await;
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "admin port closed at shutdown"
    );
}

#[tokio::test]
async fn zoo_cfg_keys_enable_the_admin_server() {
    let text = "clientPort=0\nclientPortAddress=127.0.0.1\nadmin.enableServer=true\n\
         admin.serverAddress=127.0.0.1\nadmin.serverPort=0\n\
         metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
         metricsProvider.httpHost=127.0.0.1\nmetricsProvider.httpPort=0\n";
    let cfg = zkit_server::Config::parse(text).unwrap();
    let server = zkit_server::ServerBuilder::from_config(&cfg)
        .start()
        .await
        .unwrap();
    let admin = server.admin_addr().expect("admin enabled");
    assert_eq!(command(admin, "ruok").await["error"], Value::Null);
    assert_eq!(get(server.metrics_addr().unwrap(), "/metrics").await.0, 200);
    // The configuration as written, as ZooKeeper answers it.
    assert_eq!(command(admin, "icfg").await["initial_configuration"], text);
    server.shutdown().await;
    let off = zkit_server::ServerBuilder::from_config(
        &zkit_server::Config::parse("clientPort=0\nclientPortAddress=127.0.0.1\n").unwrap(),
    )
    .start()
    .await
    .unwrap();
    assert_eq!(off.admin_addr(), None, "off by default");
    off.shutdown().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(LOCAL_ANY)
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's classpath plus the servlet API, which Debian's `zookeeper.jar`
/// manifest leaves out: without it ZooKeeper's AdminServer does not start.
fn admin_classpath() -> String {
    let base = std::env::var("ZKIT_ZOOKEEPER_CLASSPATH")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            [
                "zookeeper.jar",
                "slf4j-log4j12.jar",
                "log4j-1.2.jar",
                "netty-codec.jar",
                "netty-resolver.jar",
            ]
            .iter()
            .map(|j| format!("/usr/share/java/{j}"))
            .filter(|p| std::path::Path::new(p).exists())
            .collect::<Vec<_>>()
            .join(":")
        });
    format!("{base}:/usr/share/java/servlet-api.jar")
}

fn keys(m: &serde_json::Map<String, Value>) -> BTreeSet<String> {
    m.keys().cloned().collect()
}

#[tokio::test]
async fn same_answers_as_real_zookeeper() {
    if zkit_testcontainers::skip_without_real_zookeeper("the AdminServer comparison") {
        return;
    }
    let port = free_port();
    let real = Ensemble::builder()
        .classpath(admin_classpath())
        .config("admin.enableServer", "true")
        .config("admin.serverAddress", "127.0.0.1")
        .config("admin.serverPort", port.to_string())
        .config("4lw.commands.whitelist", "*")
        .start()
        .await
        .expect("real ZooKeeper starts");
    let real_admin: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ours = bundled().await;
    let our_admin = ours.admin_addr().unwrap();

    let real_before = command(real_admin, "monitor").await;
    let our_before = command(our_admin, "monitor").await;
    let (zk_real, _w1) = workload(&real.connect_string()).await;
    let (zk_ours, _w2) = workload(&ours.connect_string()).await;
    let real_after = command(real_admin, "monitor").await;
    let our_after = command(our_admin, "monitor").await;
    let delta = |b: &serde_json::Map<String, Value>,
                 a: &serde_json::Map<String, Value>,
                 k: &str| { a[k].as_f64().unwrap() - b[k].as_f64().unwrap() };
    for k in [
        "znode_count",
        "ephemerals_count",
        "watch_count",
        "num_alive_connections",
        "approximate_data_size",
    ] {
        assert_eq!(
            delta(&our_before, &our_after, k),
            delta(&real_before, &real_after, k),
            "{k}: ours {} vs ZooKeeper {}",
            our_after[k],
            real_after[k]
        );
    }
    for k in [
        "ephemerals_count",
        "watch_count",
        "approximate_data_size",
        "global_sessions",
    ] {
        assert_eq!(our_after[k], real_after[k], "{k}");
    }
    // ZooKeeper's DataTree holds the root twice ("" and "/").
    assert_eq!(
        our_after["znode_count"].as_i64().unwrap() + 1,
        real_after["znode_count"].as_i64().unwrap()
    );
    // Every monitor key of ours is one of ZooKeeper's.
    let ours_only: Vec<_> = keys(&our_after)
        .difference(&keys(&real_after))
        .cloned()
        .collect();
    assert_eq!(
        ours_only,
        vec!["last_processed_zxid".to_string()],
        "monitor keys ZooKeeper lacks"
    );

    // Commands: the same top-level keys (connections: ours are a subset).
    for (name, _) in COMMAND_KEYS {
        let r = command(real_admin, name).await;
        let o = command(our_admin, name).await;
        assert_eq!(o["command"], r["command"], "{name}");
        match *name {
            "monitor" | "mntr" | "environment" | "envi" => {
                let missing: Vec<_> = keys(&o).difference(&keys(&r)).cloned().collect();
                assert!(
                    missing.is_empty() || name.starts_with('m'),
                    "{name}: keys ZooKeeper lacks: {missing:?}"
                );
            }
            "configuration" | "conf" => {
                let ok = keys(&o).is_subset(&keys(&r));
                assert!(ok, "{name}: {:?} vs {:?}", keys(&o), keys(&r));
            }
            // A JVM's properties against ours: the platform's are common.
            "system_properties" => {
                for k in ["os.name", "os.arch", "file.separator", "line.separator"] {
                    assert!(o.contains_key(k) && r.contains_key(k), "{k}");
                }
            }
            _ => assert_eq!(keys(&o), keys(&r), "{name}"),
        }
    }
    let (rc, oc) = (
        command(real_admin, "connections").await,
        command(our_admin, "connections").await,
    );
    let rk = keys(rc["connections"][0].as_object().unwrap());
    let ok = keys(oc["connections"][0].as_object().unwrap());
    assert_eq!(ok, rk, "connection keys");
    // The same request on both: the same last operation and counters.
    for (admin, zk) in [(real_admin, &zk_real), (our_admin, &zk_ours)] {
        zk.get_data("/app").await.unwrap();
        let c = &command(admin, "connections").await["connections"];
        let conn = c
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["session_id"] == zk.session_id().0)
            .expect("our session's connection")
            .clone();
        assert_eq!(conn["last_operation"], "GETD", "{admin}: {conn}");
        assert_eq!(conn["outstanding_requests"], 0, "{admin}: {conn}");
        assert!(conn["last_cxid"].as_i64().unwrap() >= 7, "{admin}: {conn}");
        assert!(
            conn["packets_received"].as_i64().unwrap() >= 8,
            "{admin}: {conn}"
        );
    }
    // The leader command of a standalone server.
    assert_eq!(
        command(our_admin, "leader").await,
        command(real_admin, "leader").await
    );
    // `cons` over four-letter words: the same fields, in the same order.
    let fields = |text: &str, sid: i64| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("sid={sid:#x}")))
            .unwrap_or_else(|| panic!("no line of {sid:#x} in {text}"));
        let inner = line.split_once("](").unwrap().1.trim_end_matches(')');
        inner
            .split(',')
            .map(|f| f.split('=').next().unwrap().to_string())
            .collect()
    };
    let real_cons = real.four_letter(0, "cons").await.unwrap();
    let our_cons = four_letter(ours.local_addr(), b"cons").await;
    assert_eq!(
        fields(&our_cons, zk_ours.session_id().0),
        fields(&real_cons, zk_real.session_id().0),
        "ours:\n{our_cons}\nZooKeeper:\n{real_cons}"
    );
    // Same ephemerals and watched paths.
    // (ZooKeeper lists them in hash order: compared sorted.)
    let paths = |m: &serde_json::Map<String, Value>, key: &str| -> Vec<BTreeSet<String>> {
        m[key]
            .as_object()
            .unwrap()
            .values()
            .map(|v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    };
    assert_eq!(
        paths(
            &command(our_admin, "dump").await,
            "session_id_to_ephemeral_paths"
        ),
        paths(
            &command(real_admin, "dump").await,
            "session_id_to_ephemeral_paths"
        )
    );
    assert_eq!(
        paths(
            &command(our_admin, "watches").await,
            "session_id_to_watched_paths"
        ),
        paths(
            &command(real_admin, "watches").await,
            "session_id_to_watched_paths"
        )
    );
    assert_eq!(
        command(our_admin, "watch_summary").await,
        command(real_admin, "watch_summary").await
    );
    let (ur, uo) = (
        command(real_admin, "nope").await,
        command(our_admin, "nope").await,
    );
    assert_eq!(ur, uo, "unknown command");
    // Real ZooKeeper 3.8 has no /metrics nor /ready on the admin port
    // (its Prometheus provider is not in Debian's package): 404.
    assert_eq!(get(real_admin, "/ready").await.0, 404);
    // mntr names: every metric we expose in /metrics is a ZooKeeper mntr name.
    let mntr = real.four_letter(0, "mntr").await.unwrap();
    let zk_names: BTreeSet<&str> = mntr
        .lines()
        .filter_map(|l| l.split('\t').next()?.strip_prefix("zk_"))
        .collect();
    let page = parse_metrics(&get(our_admin, "/metrics").await.1);
    for sample in page.keys() {
        let name = sample.split('{').next().unwrap();
        let base = name.trim_end_matches("_count").trim_end_matches("_sum");
        let known = zk_names.contains(name)
            || zk_names.contains(format!("avg_{base}").as_str())
            || name == "last_processed_zxid"
            || name == "commit_count";
        assert!(known, "{name} is not a ZooKeeper metric");
    }
    zk_real.close().await.unwrap();
    zk_ours.close().await.unwrap();
    ours.shutdown().await;
}

/// A four-letter word to `addr`; `extra` follows it (`stmk`'s mask).
async fn four_letter_with(addr: SocketAddr, word: &[u8], extra: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[word, extra].concat()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8(out).unwrap()
}

async fn four_letter(addr: SocketAddr, word: &[u8]) -> String {
    four_letter_with(addr, word, &[]).await
}

#[tokio::test]
async fn connection_statistics_and_their_reset() {
    let server = Server::builder()
        .admin_listen(LOCAL_ANY.parse().unwrap())
        .four_letter_words(zkit_server::FourLetterWords::all())
        .start()
        .await
        .unwrap();
    let admin = server.admin_addr().unwrap();
    let (zk, _w) = workload(&server.connect_string()).await;
    let sid = zk.session_id().0;
    let stat = zk
        .set_data("/app", b"v2", zkit::Version::Any)
        .await
        .unwrap();
    let conn = |m: &serde_json::Map<String, Value>| -> serde_json::Map<String, Value> {
        m["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["session_id"] == sid)
            .expect("the session's connection")
            .as_object()
            .unwrap()
            .clone()
    };
    let c = conn(&command(admin, "connections").await);
    // Connect, 3 creates, 3 watched reads, addWatch, setData: 9 requests
    // (and pings, if the test ran slowly); a reply to each, and the data
    // watch's event that the setData fired.
    let received = c["packets_received"].as_u64().unwrap();
    assert!(received >= 9, "{c:?}");
    assert_eq!(c["packets_sent"].as_u64().unwrap(), received + 1, "{c:?}");
    assert_eq!(c["outstanding_requests"], 0);
    assert_eq!(c["last_operation"], "SETD");
    assert_eq!(c["last_cxid"], 8, "the setData was the 8th request");
    assert_eq!(c["last_zxid"], stat.mzxid, "the setData's zxid");
    let (min, avg, max) = (
        c["min_latency"].as_u64().unwrap(),
        c["avg_latency"].as_u64().unwrap(),
        c["max_latency"].as_u64().unwrap(),
    );
    assert!(min <= avg && avg <= max, "{c:?}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let lresp = c["last_response_time"].as_u64().unwrap();
    assert!(now_ms - lresp < 10_000, "{lresp} vs now {now_ms}");
    // The data watch is spent: another setData is one packet each way.
    zk.set_data("/app", b"v3", zkit::Version::Any)
        .await
        .unwrap();
    let c = conn(&command(admin, "connections").await);
    let received = c["packets_received"].as_u64().unwrap();
    assert_eq!(c["packets_sent"].as_u64().unwrap(), received + 1, "{c:?}");
    // The four-letter word says the same.
    let cons = four_letter(server.local_addr(), b"cons").await;
    let line = cons
        .lines()
        .find(|l| l.contains(&format!("sid={sid:#x}")))
        .unwrap_or_else(|| panic!("{cons}"));
    assert!(
        line.contains("lop=SETD") && line.contains(&format!("recved={received},")),
        "{line}"
    );
    // Reset: the counters start again, the connection stays.
    assert_eq!(command(admin, "crst").await["error"], Value::Null);
    let c = conn(&command(admin, "connections").await);
    assert_eq!(c["packets_received"], 0, "{c:?}");
    assert_eq!(c["last_operation"], "NA", "{c:?}");
    assert_eq!(c["last_cxid"], -1, "{c:?}");
    zk.get_data("/app").await.unwrap();
    let c = conn(&command(admin, "connections").await);
    assert_eq!(c["packets_received"], 1, "{c:?}");
    assert_eq!(c["last_operation"], "GETD", "{c:?}");

    // The trace mask: set over HTTP and over `stmk`, read back by both.
    assert_eq!(command(admin, "gtmk").await["tracemask"], 306);
    let (status, body) = get(admin, "/commands/stmk?traceMask=1234").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(four_letter(server.local_addr(), b"gtmk").await, "1234");
    assert_eq!(
        four_letter_with(server.local_addr(), b"stmk", &77u64.to_be_bytes()).await,
        "77"
    );
    assert_eq!(command(admin, "get_trace_mask").await["tracemask"], 77);
    let bad = command(admin, "set_trace_mask?traceMask=x").await;
    assert!(
        bad["error"].as_str().unwrap().contains("traceMask"),
        "{bad:?}"
    );
    zk.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn last_snapshot_names_the_newest_snapshot() {
    let dir = std::env::temp_dir().join(format!("zkit-lsnp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = Server::builder()
        .admin_listen(LOCAL_ANY.parse().unwrap())
        .data_dir(&dir)
        .snap_count(10)
        .start()
        .await
        .unwrap();
    let admin = server.admin_addr().unwrap();
    let zk = Client::connect(&server.connect_string()).await.unwrap();
    for i in 0..40 {
        zk.create(&format!("/n{i}"), b"", &CreateOptions::default())
            .await
            .unwrap();
    }
    // Snapshots are written in the background: wait for the newest.
    let newest = || -> Option<i64> {
        std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                i64::from_str_radix(name.strip_prefix("snapshot.")?, 16).ok()
            })
            .max()
    };
    let mut seen = None;
    for _ in 0..100 {
        let l = command(admin, "last_snapshot").await;
        let zxid = i64::from_str_radix(l["zxid"].as_str().unwrap(), 16).unwrap();
        if zxid > 0 && Some(zxid) == newest() {
            assert!(
                l["timestamp"].as_u64().unwrap() > 1_600_000_000_000,
                "{l:?}"
            );
            seen = Some(zxid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.is_some(), "last_snapshot never named {:?}", newest());
    zk.close().await.unwrap();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    // In memory: no snapshot.
    let mem = bundled().await;
    let l = command(mem.admin_addr().unwrap(), "lsnp").await;
    assert_eq!(
        (l["zxid"].as_str(), l["timestamp"].as_u64()),
        (Some("0"), Some(0))
    );
    mem.shutdown().await;
}
