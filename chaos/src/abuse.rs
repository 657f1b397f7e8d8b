//! `zkit-chaos abuse`: one client abuses the bundled server while another
//! measures its own latency; one JSON line per abuse.
//!
//! ```text
//! zkit-chaos abuse [--only NAME] [--server-bin PATH]
//! ```
//!
//! Each abuse gets a fresh `zkit-server` process (the fixtures' bundled
//! backend: durable, all four-letter words; the `zkit-server` next to this
//! binary unless `--server-bin` says otherwise). A victim
//! client reads a small node one request at a time: 3 s alone (the
//! baseline), then while the abuser runs. The line gives both latency
//! distributions, the server's memory (resident now, and its peak), what
//! the abuser was told, and whether the server kept serving:
//!
//! - `watches`: one session sets 1,000,000 watches (exists on distinct
//!   absent paths), then closes;
//! - `huge_multi`: a transaction of 17,000 creates (just under the 1 MiB
//!   frame limit), one with a failing last op (all rolled back), and one
//!   over the limit (refused before sending; sent raw, the server closes
//!   that connection);
//! - `deep_paths`: a chain of nodes 5,000 deep (paths of 10 KB), counted,
//!   watched recursively, changed at the bottom, deleted;
//! - `huge_child_list`: 100,000 children (a 2.6 MB list, beyond the
//!   client's 2 MiB reply limit) listed over and over: each listing fails
//!   alone with ResponseTooLarge;
//! - `connection_flood`: 10,000 connections from one IP: beyond the
//!   per-IP limit (60) they are closed at once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use zkit::{AddWatchMode, Client, CreateOptions, Error, Version};
use zkit_testcontainers::{Backend, Ensemble};

const ABUSES: [&str; 5] = [
    "watches",
    "huge_multi",
    "deep_paths",
    "huge_child_list",
    "connection_flood",
];

/// Runs `zkit-chaos abuse ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    if let [flag, name, addr] = args {
        if flag == "--worker" {
            return worker(name, addr);
        }
    }
    let mut only: Option<String> = None;
    let mut bin: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => only = it.next().cloned(),
            "--server-bin" => bin = it.next().map(PathBuf::from),
            _ => {
                eprintln!(
                    "usage: zkit-chaos abuse [--only {}] [--server-bin PATH]",
                    ABUSES.join("|")
                );
                return ExitCode::from(2);
            }
        }
    }
    if let Some(o) = &only {
        if !ABUSES.contains(&o.as_str()) {
            eprintln!("--only: one of {}", ABUSES.join(", "));
            return ExitCode::from(2);
        }
    }
    // The server of this build (next to this binary) unless told otherwise:
    // the fixture starts what SERVER_BIN_ENV names.
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("zkit-server")))
        .filter(|p| p.is_file());
    if let Some(bin) = bin.or(sibling) {
        std::env::set_var(zkit_testcontainers::SERVER_BIN_ENV, bin);
    }
    // 10,000 connections need as many descriptors: the soft limit goes up
    // to the hard one (best effort).
    let hard = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
        });
    if let Some(hard) = hard {
        let _ = std::process::Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                &format!("--nofile={hard}:{hard}"),
            ])
            .status();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut passed, mut failed) = (0, 0);
    for name in ABUSES {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut line = rt.block_on(run(name));
        let wrong = wrong_outcome(name, &line);
        if !wrong.is_empty() {
            line["wrong"] = json!(wrong);
        }
        if line["served"] == json!(true) && wrong.is_empty() {
            passed += 1;
        } else {
            failed += 1;
        }
        println!("{line}");
    }
    crate::verdict(passed, failed)
}

/// What the abuser should have been told, and what the server should hold
/// afterwards: the ways `line` differs from that (empty when it does not).
fn wrong_outcome(name: &str, line: &Value) -> Vec<String> {
    let o = &line["outcome"];
    let expect: Vec<(&str, Value)> = match name {
        "watches" => vec![
            ("watches_set", json!(1_000_000)),
            ("server_wchs", json!("1 connections watching 1000000 paths")),
        ],
        "huge_multi" => vec![
            ("multi_17000_creates", json!("Ok(17000)")),
            ("children_after", json!("Ok(17000)")),
            (
                "multi_with_failing_last_op",
                json!("Some(MultiFailed { index: 16999, source: NoNode })"),
            ),
            ("raw_2mb_frame_connection_closed", json!(true)),
        ],
        "deep_paths" => vec![
            ("created", json!(5000)),
            ("descendants_counted", json!("Ok(4999)")),
            ("bottom_changed", json!(true)),
            ("deleted", json!(5000)),
        ],
        "huge_child_list" => vec![
            ("response_too_large", json!(20)),
            ("other", json!([])),
            ("session_still_usable", json!(true)),
        ],
        _ => vec![
            ("connected", json!(10_000)),
            // ZooKeeper's default per-IP limit: the rest closed at once.
            ("kept", json!(60)),
        ],
    };
    let mut wrong: Vec<String> = expect
        .into_iter()
        .filter(|(k, v)| &o[*k] != v)
        .map(|(k, v)| format!("{k}: {} (expected {v})", o[k]))
        .collect();
    if name == "huge_multi"
        && !o["multi_over_the_limit"]
            .as_str()
            .is_some_and(|s| s.starts_with("Some(RequestTooLarge"))
    {
        wrong.push(format!(
            "multi_over_the_limit: {}",
            o["multi_over_the_limit"]
        ));
    }
    // Everything the abuser's session held went with it.
    if line["server_watches_after"] != json!("0 connections watching 0 paths") {
        wrong.push(format!(
            "server_watches_after: {}",
            line["server_watches_after"]
        ));
    }
    wrong
}

/// The resident memory of process `pid`, now and at its peak (VmRSS,
/// VmHWM), in KiB.
fn memory(pid: Option<u32>) -> (u64, u64) {
    let status = pid
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Latencies of one-at-a-time reads, microseconds.
#[derive(Default)]
struct Latencies {
    us: Vec<u64>,
    errors: u64,
    /// When the slowest read started, ms into the phase.
    slowest_at_ms: u64,
}

impl Latencies {
    fn summary(&mut self) -> Value {
        self.us.sort_unstable();
        let q = |f: f64| {
            if self.us.is_empty() {
                0
            } else {
                let i = ((self.us.len() as f64 * f).ceil() as usize).clamp(1, self.us.len()) - 1;
                self.us[i]
            }
        };
        json!({
            "ops": self.us.len(),
            "errors": self.errors,
            "p50_us": q(0.50),
            "p99_us": q(0.99),
            "max_us": self.us.last().copied().unwrap_or(0),
            "slowest_at_ms": self.slowest_at_ms,
        })
    }
}

/// Reads `/victim` one request at a time until `stop`.
async fn victim(c: Client, stop: Arc<AtomicBool>) -> Latencies {
    let mut l = Latencies::default();
    let began = Instant::now();
    let mut slowest = 0;
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), c.get_data("/victim")).await {
            Ok(Ok(_)) => {
                let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                if us > slowest {
                    slowest = us;
                    l.slowest_at_ms =
                        u64::try_from(t.duration_since(began).as_millis()).unwrap_or(0);
                }
                l.us.push(us);
            }
            _ => l.errors += 1,
        }
    }
    l
}

async fn connect(addr: &str) -> Result<Client, Error> {
    Client::builder()
        .session_timeout(Duration::from_secs(30))
        .connect(addr)
        .await
}

async fn run(name: &str) -> Value {
    let fail = |why: String| json!({"abuse": name, "served": false, "error": why});
    // The fixtures lift the per-IP connection limit for tests; the abuse
    // runs under ZooKeeper's default (60), as a production server would.
    let server = match Ensemble::builder()
        .backend(Backend::Bundled)
        .config("maxClientCnxns", "60")
        .start()
        .await
    {
        Ok(s) => s,
        Err(e) => return fail(format!("server: {e}")),
    };
    let addr = server.connect_string();
    let v = match connect(&addr).await {
        Ok(c) => c,
        Err(e) => return fail(format!("victim: {e}")),
    };
    if let Err(e) = v
        .create("/victim", b"small", &CreateOptions::default())
        .await
    {
        return fail(format!("create /victim: {e}"));
    }
    // The baseline.
    let stop = Arc::new(AtomicBool::new(false));
    let t = tokio::spawn(victim(v.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut baseline = t.await.unwrap_or_default();
    let mem_before = memory(server.pid(0));
    // The abuse, with the victim reading throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let t = tokio::spawn(victim(v.clone(), stop.clone()));
    let began = Instant::now();
    // The abuser is a process of its own: its client's work does not
    // share the victim's runtime.
    let exe = std::env::current_exe().unwrap_or_else(|_| "zkit-chaos".into());
    let outcome = match tokio::process::Command::new(exe)
        .args(["abuse", "--worker", name, &addr])
        .stderr(std::process::Stdio::null())
        .output()
        .await
    {
        Ok(out) => serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|_| json!(format!("abuser failed: {}", out.status))),
        Err(e) => json!(format!("abuser did not start: {e}")),
    };
    let abuse_s = began.elapsed().as_secs_f64();
    let mem_peak = memory(server.pid(0));
    stop.store(true, Ordering::SeqCst);
    let mut during = t.await.unwrap_or_default();
    // Still serving, and the abuser's leftovers gone with its session.
    let served = server.is_running(0)
        && tokio::time::timeout(Duration::from_secs(5), v.get_data("/victim"))
            .await
            .is_ok_and(|r| r.is_ok());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mem_after = memory(server.pid(0));
    let watch_count = server.four_letter(0, "wchs").await.unwrap_or_default();
    let _ = v.close().await;
    json!({
        "abuse": name,
        "served": served,
        "outcome": outcome,
        "abuse_s": (abuse_s * 100.0).round() / 100.0,
        "victim_alone": baseline.summary(),
        "victim_during_abuse": during.summary(),
        "server_rss_kib": {"before": mem_before.0, "peak": mem_peak.1, "after": mem_after.0},
        "server_watches_after": watch_count.lines().next().unwrap_or("").trim(),
    })
}

/// `zkit-chaos abuse --worker NAME ADDR`: one abuse; its outcome as JSON
/// on standard output.
fn worker(name: &str, addr: &str) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = rt.block_on(async {
        match name {
            "watches" => watches(addr).await,
            "huge_multi" => huge_multi(addr).await,
            "deep_paths" => deep_paths(addr).await,
            "huge_child_list" => huge_child_list(addr).await,
            _ => connection_flood(addr).await,
        }
    });
    println!("{outcome}");
    ExitCode::SUCCESS
}

async fn four_letter(addr: &str, word: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return String::new();
    };
    let _ = s.write_all(word.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn watches(addr: &str) -> Value {
    let Ok(c) = connect(addr).await else {
        return json!("abuser could not connect");
    };
    let began = Instant::now();
    let mut set = 0u64;
    let mut watchers = Vec::with_capacity(1_000_000);
    for batch in 0..100 {
        let futs: Vec<_> = (0..10_000)
            .map(|i| c.exists_and_watch(&format!("/absent/w-{batch}-{i}")))
            .collect();
        for (_, w) in futures::future::join_all(futs).await.into_iter().flatten() {
            watchers.push(w);
            set += 1;
        }
    }
    let set_s = began.elapsed().as_secs_f64();
    let server_side = four_letter(addr, "wchs").await;
    let closing = Instant::now();
    let _ = c.close().await;
    let close_ms = closing.elapsed().as_secs_f64() * 1000.0;
    drop(watchers);
    json!({
        "watches_set": set,
        "set_s": (set_s * 100.0).round() / 100.0,
        "close_ms": close_ms.round(),
        "server_wchs": server_side.lines().next().unwrap_or("").trim(),
    })
}

async fn huge_multi(addr: &str) -> Value {
    let Ok(c) = connect(addr).await else {
        return json!("abuser could not connect");
    };
    let _ = c.create("/m", b"", &CreateOptions::default()).await;
    let mut txn = c.multi();
    for i in 0..17_000 {
        txn = txn.create(&format!("/m/n{i:05}"), b"", &CreateOptions::default());
    }
    let big = txn.commit().await.map(|r| r.len());
    let mut failing = c.multi();
    for i in 0..16_999 {
        failing = failing.create(&format!("/m/f{i:05}"), b"", &CreateOptions::default());
    }
    let rolled_back = failing
        .set_data("/m/absent", b"", Version::Any)
        .commit()
        .await;
    let count_after = c.get_all_children_number("/m").await;
    let mut too_big = c.multi();
    for i in 0..40_000 {
        too_big = too_big.create(&format!("/m/t{i:05}"), b"", &CreateOptions::default());
    }
    let refused = too_big.commit().await;
    // The same sent raw: the server closes that connection only.
    let raw = match TcpStream::connect(addr).await {
        Ok(mut s) => {
            let mut frame = (2_000_000u32).to_be_bytes().to_vec();
            frame.resize(2_000_004, 0);
            let _ = s.write_all(&frame).await;
            let mut sink = [0u8; 64];
            matches!(
                tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::io::AsyncReadExt::read(&mut s, &mut sink)
                )
                .await,
                Ok(Ok(0) | Err(_))
            )
        }
        Err(_) => false,
    };
    let _ = c.close().await;
    json!({
        "multi_17000_creates": format!("{big:?}"),
        "multi_with_failing_last_op": format!("{:?}", rolled_back.err()),
        "children_after": format!("{count_after:?}"),
        "multi_over_the_limit": format!("{:?}", refused.err()),
        "raw_2mb_frame_connection_closed": raw,
    })
}

async fn deep_paths(addr: &str) -> Value {
    let Ok(c) = connect(addr).await else {
        return json!("abuser could not connect");
    };
    const DEPTH: usize = 5_000;
    let mut path = String::new();
    let mut created = 0;
    let mut watcher = None;
    for d in 0..DEPTH {
        path.push_str("/d");
        if d == 0 {
            let _ = c.create(&path, b"", &CreateOptions::default()).await;
            watcher = c
                .add_watch("/d", AddWatchMode::PersistentRecursive)
                .await
                .ok();
            created += 1;
            continue;
        }
        if c.create(&path, b"", &CreateOptions::default())
            .await
            .is_ok()
        {
            created += 1;
        }
    }
    let count = c.get_all_children_number("/d").await;
    let set = c.set_data(&path, b"bottom", Version::Any).await.is_ok();
    let event = match &mut watcher {
        Some(w) => tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|e| format!("{:?} at depth {}", e.event_type, e.path.len() / 2)),
        None => None,
    };
    let mut deleted = 0;
    while path.len() > 2 {
        if c.delete(&path, Version::Any).await.is_ok() {
            deleted += 1;
        }
        path.truncate(path.len() - 2);
    }
    let _ = c.delete("/d", Version::Any).await;
    let _ = c.close().await;
    json!({
        "created": created,
        "descendants_counted": format!("{count:?}"),
        "bottom_changed": set,
        "recursive_watch_event": event,
        "deleted": deleted + 1,
    })
}

async fn huge_child_list(addr: &str) -> Value {
    let Ok(c) = connect(addr).await else {
        return json!("abuser could not connect");
    };
    let _ = c.create("/crowd", b"", &CreateOptions::default()).await;
    for batch in 0..10 {
        let futs: Vec<_> = (0..10_000)
            .map(|i| {
                c.create(
                    &format!("/crowd/member-{batch}-{i:013}"),
                    b"",
                    &CreateOptions::default(),
                )
            })
            .collect();
        futures::future::join_all(futs).await;
    }
    let mut too_large = 0;
    let mut other = Vec::new();
    for _ in 0..20 {
        match c.get_children("/crowd").await {
            Err(Error::ResponseTooLarge { .. }) => too_large += 1,
            r => other.push(format!("{:?}", r.map(|(ch, _)| ch.len()))),
        }
    }
    let still = c.get_data("/crowd").await.is_ok();
    let _ = c.close().await;
    json!({
        "listings": 20,
        "response_too_large": too_large,
        "other": other,
        "session_still_usable": still,
    })
}

async fn connection_flood(addr: &str) -> Value {
    let Ok(target) = addr.parse::<std::net::SocketAddr>() else {
        return json!("bad address");
    };
    // From 127.0.0.2: the victim (127.0.0.1) has its own per-IP budget.
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..10_000 {
        let s = TcpSocket::new_v4().and_then(|s| {
            s.bind("127.0.0.2:0".parse().expect("address"))?;
            Ok(s)
        });
        match s {
            Ok(s) => match s.connect(target).await {
                Ok(c) => open.push(c),
                Err(_) => refused += 1,
            },
            Err(_) => refused += 1,
        }
    }
    // Those over the limit are closed by the server at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut closed = 0;
    let mut sink = [0u8; 16];
    for s in &mut open {
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(
            Duration::from_millis(1),
            tokio::io::AsyncReadExt::read(s, &mut sink),
        )
        .await
        {
            closed += 1;
        }
    }
    let connected = open.len();
    drop(open);
    json!({
        "attempted": 10_000,
        "connected": connected,
        "refused_by_the_os": refused,
        "closed_by_the_server": closed,
        "kept": connected - closed,
    })
}
