//! Ops benchmark in the format of `shared/bench-peers` (peer `zkit-async`).
//!
//! ```text
//! cargo run --release --example bench -- CONNECT [--n N] [--window W] [--warmup W] [--sync-n S]
//!                                                [--runtime multi|current] [--peer NAME]
//!                                                [--tls-ca CA.pem [--tls-cert C.pem --tls-key K.pem]]
//!                                                [--observe none|info|trace|metrics|both]
//!                                                [--caller block-on|spawned] [--busy-poll-us U]
//!                                                [--server-pid PID]
//! ```
//!
//! `--observe` measures what observability costs: `info` installs a
//! `tracing` subscriber at level info (the request spans off by level, as
//! most services run), `trace` one at level debug (the client's spans on,
//! output discarded), `metrics` the Prometheus recorder (build with
//! `--features metrics`), `both` both; the JSON line says which.
//!
//! `--caller spawned` runs the benchmark in a task spawned on the runtime
//! (as a service's handlers run) instead of in `block_on` on the main
//! thread (as the peers' benchmarks run); the JSON line says which.
//!
//! `--busy-poll-us U` turns on the client's low-latency mode
//! (`ClientBuilder::busy_poll`); the JSON line then also says what the
//! one-at-a-time phase cost in CPU per request (`sync_cpu_us_per_op`, every
//! thread of the process), reported in any mode.
//!
//! `--server-pid PID` (a server on this machine) adds each phase's CPU per
//! request of the client and of the server (`<phase>_client_cpu_us_per_op`,
//! `<phase>_server_cpu_us_per_op`): which side a phase costs most.
//!
//! With `--tls-ca` the session runs over TLS (`TlsConfig`, the connect
//! string naming the servers' secure ports); the JSON line says `"tls":true`.
//!
//! Against one session and a 100-byte node under a unique base path: warm-up
//! gets, then `n` pipelined getData, setData, create and delete (at most
//! `window` in flight), then `sync-n` one-at-a-time getData for latency.
//! Prints one JSON line with the peers' keys; `verified` checks every count.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use zkit::{Client, CreateOptions, Version};

struct Args {
    connect: String,
    n: usize,
    window: usize,
    warmup: usize,
    sync_n: usize,
    runtime: String,
    peer: String,
    tls: Option<(String, Option<(String, String)>)>,
    observe: String,
    /// Whether the benchmark runs in a spawned task (on a runtime worker,
    /// as a service's request handlers do) rather than in `block_on` on
    /// the main thread (as the peers run).
    spawned: bool,
    /// `ClientBuilder::busy_poll` in microseconds (0: off).
    busy_poll_us: u64,
    /// The server's process id, when it runs on this machine: each phase
    /// then reports the server's CPU per request beside the client's.
    server_pid: Option<String>,
}

/// The last `--key` value, else `BENCH_<KEY>`; `None` when absent or empty.
fn text(flags: &[(String, String)], key: &str) -> Option<String> {
    let env = format!("BENCH_{}", key.to_uppercase().replace('-', "_"));
    flags
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(env).ok())
        .filter(|v| !v.is_empty())
}

fn arg(flags: &[(String, String)], key: &str, default: usize) -> usize {
    text(flags, key).map_or(default, |v| v.parse().unwrap_or(default))
}

fn parse_args() -> Args {
    let mut flags = Vec::new();
    let mut positional = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.strip_prefix("--") {
            Some(kv) => match kv.split_once('=') {
                Some((k, v)) => flags.push((k.to_string(), v.to_string())),
                None => flags.push((kv.to_string(), it.next().unwrap_or_default())),
            },
            None => positional.push(a),
        }
    }
    let connect = positional
        .into_iter()
        .find(|p| p != "ops")
        .or_else(|| std::env::var("ZK_CONNECT").ok())
        .unwrap_or_else(|| "127.0.0.1:22181".into());
    let runtime = flags
        .iter()
        .find(|(k, _)| k == "runtime")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("BENCH_RUNTIME").ok())
        .unwrap_or_else(|| "multi".into());
    let peer = flags
        .iter()
        .find(|(k, _)| k == "peer")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "zkit-async".into());
    let observe = text(&flags, "observe").unwrap_or_else(|| "none".into());
    let tls = text(&flags, "tls-ca").map(|ca| {
        let cert = text(&flags, "tls-cert").zip(text(&flags, "tls-key"));
        (ca, cert)
    });
    Args {
        tls,
        peer,
        connect,
        n: arg(&flags, "n", 20_000),
        window: arg(&flags, "window", 1000).max(1),
        warmup: arg(&flags, "warmup", 5000),
        sync_n: arg(&flags, "sync-n", 2000),
        runtime,
        observe,
        spawned: text(&flags, "caller").is_some_and(|c| c == "spawned"),
        busy_poll_us: arg(&flags, "busy-poll-us", 0) as u64,
        server_pid: text(&flags, "server-pid"),
    }
}

/// CPU per request of a phase, in microseconds: this process (every
/// thread) and, with `--server-pid`, the server.
#[derive(Default)]
struct PhaseCpu {
    client_us: Option<f64>,
    server_us: Option<f64>,
}

/// Runs `n` requests with at most `window` in flight; returns (ops/s, ok,
/// errors) and the phase's CPU per request. Requests are sent when issued
/// and complete in order, so awaiting the oldest is all the window needs.
async fn phase<T, F>(
    n: usize,
    window: usize,
    server_pid: Option<&str>,
    mut issue: impl FnMut(usize) -> F,
    check: impl Fn(&T) -> bool,
) -> ((f64, usize, usize), PhaseCpu)
where
    F: Future<Output = zkit::Result<T>>,
{
    let (mut ok, mut err) = (0usize, 0usize);
    let mut tally = |r: zkit::Result<T>| match r {
        Ok(v) if check(&v) => ok += 1,
        _ => err += 1,
    };
    let mut inflight = VecDeque::with_capacity(window);
    let cpu0 = (process_cpu_ns("self"), server_pid.and_then(process_cpu_ns));
    let t0 = Instant::now();
    for i in 0..n {
        if inflight.len() >= window {
            tally(inflight.pop_front().expect("non-empty").await);
        }
        inflight.push_back(issue(i));
    }
    while let Some(f) = inflight.pop_front() {
        tally(f.await);
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let cpu1 = (process_cpu_ns("self"), server_pid.and_then(process_cpu_ns));
    let per_op =
        |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / n.max(1) as f64 / 1e3);
    let cpu = PhaseCpu {
        client_us: per_op(cpu0.0, cpu1.0),
        server_us: per_op(cpu0.1, cpu1.1),
    };
    ((rate, ok, err), cpu)
}

fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    sorted_ns[rank - 1] as f64 / 1e3
}

fn round(v: f64, digits: i32) -> Value {
    let p = 10f64.powi(digits);
    json!((v * p).round() / p)
}

async fn ops(a: &Args, out: &mut Map<String, Value>) -> zkit::Result<bool> {
    for (k, v) in [
        ("n", a.n),
        ("window", a.window),
        ("value_bytes", 100),
        ("warmup", a.warmup),
        ("sync_n", a.sync_n),
    ] {
        out.insert(k.into(), json!(v));
    }
    let mut builder = Client::builder()
        .session_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(15))
        .busy_poll(Duration::from_micros(a.busy_poll_us));
    out.insert("busy_poll_us".into(), json!(a.busy_poll_us));
    out.insert("tls".into(), json!(a.tls.is_some()));
    if let Some((ca, cert)) = &a.tls {
        let mut tls = zkit::TlsConfig::new().ca_file(ca);
        if let Some((c, k)) = cert {
            tls = tls.client_cert(c, k);
        }
        builder = builder.tls(tls);
    }
    let zk = builder.connect(&a.connect).await?;
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let base = format!("/peers-bench-zkit-{}-{ms}", std::process::id());
    let node = format!("{base}/data");
    let dir = format!("{base}/c");
    let value = vec![b'x'; 100];
    let opts = CreateOptions::default();
    zk.create(&base, b"", &opts).await?;
    zk.create(&node, &value, &opts).await?;
    zk.create(&dir, b"", &opts).await?;
    let paths: Vec<String> = (0..a.n).map(|i| format!("{dir}/n{i}")).collect();

    let is100 = |r: &(zkit::Bytes, zkit::Stat)| r.0.len() == 100;
    let pid = a.server_pid.as_deref();
    phase(a.warmup, a.window, pid, |_| zk.get_data(&node), is100).await;
    let (g, g_cpu) = phase(a.n, a.window, pid, |_| zk.get_data(&node), is100).await;
    let (s, s_cpu) = phase(
        a.n,
        a.window,
        pid,
        |_| zk.set_data(&node, &value, Version::Any),
        |_| true,
    )
    .await;
    let (c, c_cpu) = phase(
        a.n,
        a.window,
        pid,
        |i| zk.create(&paths[i], &value, &opts),
        |_| true,
    )
    .await;
    let created = zk.exists(&dir).await?.map_or(-1, |s| s.num_children);
    let (d, d_cpu) = phase(
        a.n,
        a.window,
        pid,
        |i| zk.delete(&paths[i], Version::Any),
        |_| true,
    )
    .await;
    for (name, cpu) in [
        ("get", g_cpu),
        ("set", s_cpu),
        ("create", c_cpu),
        ("delete", d_cpu),
    ] {
        if let Some(v) = cpu.client_us {
            out.insert(format!("{name}_client_cpu_us_per_op"), round(v, 2));
        }
        if let Some(v) = cpu.server_us {
            out.insert(format!("{name}_server_cpu_us_per_op"), round(v, 2));
        }
    }
    let left = zk.exists(&dir).await?.map_or(-1, |s| s.num_children);
    let version = zk.exists(&node).await?.map_or(-1, |s| s.version);

    for _ in 0..a.sync_n.min(200) {
        zk.get_data(&node).await?;
    }
    let mut lat = Vec::with_capacity(a.sync_n);
    let mut bad = 0usize;
    let cpu0 = process_cpu_ns("self");
    for _ in 0..a.sync_n {
        let t0 = Instant::now();
        let (data, _) = zk.get_data(&node).await?;
        lat.push(t0.elapsed().as_nanos() as u64);
        bad += usize::from(data.len() != 100);
    }
    if let (Some(c0), Some(c1)) = (cpu0, process_cpu_ns("self")) {
        // What the one-at-a-time phase cost this process (all threads).
        out.insert(
            "sync_cpu_us_per_op".into(),
            round((c1 - c0) as f64 / a.sync_n.max(1) as f64 / 1e3, 2),
        );
    }
    lat.sort_unstable();
    zk.delete(&node, Version::Any).await?;
    zk.delete(&dir, Version::Any).await?;
    zk.delete(&base, Version::Any).await?;
    zk.close().await?;

    let errors = g.2 + s.2 + c.2 + d.2 + bad;
    let n = a.n as i32;
    let verified = errors == 0
        && [g.1, s.1, c.1, d.1].iter().all(|&x| x == a.n)
        && created == n
        && left == 0
        && version == n;
    for (k, v) in [
        ("get_ops_s", g.0),
        ("set_ops_s", s.0),
        ("create_ops_s", c.0),
        ("delete_ops_s", d.0),
    ] {
        out.insert(k.into(), round(v, 0));
    }
    for (k, v) in [
        ("get_ok", g.1),
        ("set_ok", s.1),
        ("create_ok", c.1),
        ("delete_ok", d.1),
        ("errors", errors),
    ] {
        out.insert(k.into(), json!(v));
    }
    out.insert("check_version".into(), json!(version));
    out.insert("check_children_created".into(), json!(created));
    out.insert("check_children_left".into(), json!(left));
    out.insert(
        "sync_get_p50_us".into(),
        round(percentile_us(&lat, 0.50), 1),
    );
    out.insert(
        "sync_get_p99_us".into(),
        round(percentile_us(&lat, 0.99), 1),
    );
    let mean = lat.iter().sum::<u64>() as f64 / lat.len().max(1) as f64 / 1e3;
    out.insert("sync_get_mean_us".into(), round(mean, 1));
    Ok(verified)
}

/// CPU time of every thread of a process (`self` or a pid) so far, in
/// nanoseconds (Linux: the first field of each thread's `schedstat`);
/// `None` elsewhere. A thread that ends between listing and reading is
/// skipped.
fn process_cpu_ns(pid: &str) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Installs what `--observe` asks for.
fn observe(what: &str) {
    if what == "info" {
        // A subscriber as most services run one: the request spans
        // (debug) are off by level.
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    }
    if what == "trace" || what == "both" {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    }
    if what == "metrics" || what == "both" {
        #[cfg(feature = "metrics")]
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("one recorder");
        #[cfg(not(feature = "metrics"))]
        panic!("--observe {what}: build with --features metrics");
    }
}

fn main() {
    let a = parse_args();
    observe(&a.observe);
    let (mut builder, runtime) = if a.runtime == "current" {
        (
            tokio::runtime::Builder::new_current_thread(),
            "tokio-current-thread",
        )
    } else {
        (
            tokio::runtime::Builder::new_multi_thread(),
            "tokio-multi-thread",
        )
    };
    let rt = builder.enable_all().build().expect("tokio runtime");
    let mut out = Map::new();
    out.insert("peer".into(), json!(a.peer));
    out.insert(
        "client".into(),
        json!(format!("zkit {}", env!("CARGO_PKG_VERSION"))),
    );
    out.insert("connect".into(), json!(a.connect));
    out.insert("runtime".into(), json!(runtime));
    out.insert("observe".into(), json!(a.observe));
    out.insert(
        "caller".into(),
        json!(if a.spawned { "spawned" } else { "block_on" }),
    );
    let t0 = Instant::now();
    let a = std::sync::Arc::new(a);
    let result = if a.spawned {
        let task = a.clone();
        let (result, more) = rt.block_on(async move {
            tokio::spawn(async move {
                let mut more = Map::new();
                let r = ops(&task, &mut more).await;
                (r, more)
            })
            .await
            .expect("the benchmark task")
        });
        out.extend(more);
        result
    } else {
        rt.block_on(ops(&a, &mut out))
    };
    let code = match result {
        Ok(verified) => {
            out.insert("verified".into(), json!(verified));
            out.insert("ok".into(), json!(true));
            0
        }
        Err(e) => {
            out.insert("ok".into(), json!(false));
            out.insert("error".into(), json!(e.to_string()));
            1
        }
    };
    out.insert("elapsed_s".into(), round(t0.elapsed().as_secs_f64(), 2));
    println!("{}", Value::Object(out));
    std::process::exit(code);
}
