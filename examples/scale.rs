//! Scale benchmark for a server: does one-at-a-time getData latency hold up
//! with many znodes and many sessions?
//!
//! ```text
//! cargo run --release --example scale -- CONNECT [--znodes N] [--sessions S] [--sync-n K]
//! ```
//!
//! 1. baseline: `sync-n` one-at-a-time getData of a 100-byte node, p50/p99;
//! 2. creates `znodes` znodes (100 bytes each, 1000 per parent, pipelined);
//! 3. opens `sessions` more sessions, each a raw connection that pings every
//!    third of its 30 s timeout (as an idle ZooKeeper client does);
//! 4. measures the same latency again, with everything in place;
//! 5. checks the count (getAllChildrenNumber) and removes the znodes.
//!
//! Prints one JSON line: `peer` `zkit-scale`, `base_p50_us`, `base_p99_us`,
//! `loaded_p50_us`, `loaded_p99_us`, `p99_ratio`, the counts and the
//! creation rate.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit::proto::codes::OpCode;
use zkit::proto::{encode_frame, ConnectRequest, Encode, RequestHeader};
use zkit::{Client, CreateOptions, Version};

fn flag(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == &format!("--{name}"))
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn connect_arg() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        if args[i].starts_with("--") {
            i += 2;
        } else {
            return args[i].clone();
        }
    }
    "127.0.0.1:2181".into()
}

/// Runs `ops` futures with at most `window` in flight; returns the errors.
async fn pipelined<F, Fut>(n: usize, window: usize, mut op: F) -> usize
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = zkit::Result<()>>,
{
    let mut inflight = VecDeque::with_capacity(window);
    let mut errors = 0;
    for i in 0..n {
        if inflight.len() >= window {
            let f: std::pin::Pin<Box<Fut>> = inflight.pop_front().unwrap();
            errors += usize::from(f.await.is_err());
        }
        inflight.push_back(Box::pin(op(i)));
    }
    for f in inflight {
        errors += usize::from(f.await.is_err());
    }
    errors
}

async fn latency(zk: &Client, node: &str, n: usize) -> (f64, f64) {
    for _ in 0..200 {
        let _ = zk.get_data(node).await;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        zk.get_data(node).await.expect("getData");
        lat.push(t0.elapsed().as_nanos() as f64 / 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let rank = |p: f64| lat[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    (rank(0.50), rank(0.99))
}

/// One idle session: handshake (at most `gate` at a time, as sessions
/// arrive over time in real life, not in one SYN flood), then a ping every
/// 10 s until `stop`. `Err` says what failed.
async fn idle_session(
    addr: String,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
    done: tokio::sync::mpsc::UnboundedSender<()>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), &'static str> {
    /// Reports the end of the handshake phase, however it ends.
    struct Done(tokio::sync::mpsc::UnboundedSender<()>);
    impl Drop for Done {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let done = Done(done);
    let permit = gate.acquire_owned().await.map_err(|_| "gate closed")?;
    let mut s = TcpStream::connect(&addr).await.map_err(|_| "connect")?;
    let _ = s.set_nodelay(true);
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, |b| {
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout: 30_000,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        }
        .encode(b)
    });
    s.write_all(&buf).await.map_err(|_| "send handshake")?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.map_err(|_| "read handshake")?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body)
        .await
        .map_err(|_| "read handshake")?;
    if body.len() < 20 {
        return Err("short handshake");
    }
    drop(permit);
    drop(done);
    let mut ping = BytesMut::new();
    encode_frame(&mut ping, |b| {
        RequestHeader {
            xid: -2,
            op: OpCode::Ping.code(),
        }
        .encode(b)
    });
    let mut stop = stop;
    // Spread the pings over the period.
    let jitter = Duration::from_millis(rand::random::<u64>() % 10_000);
    let mut next = tokio::time::Instant::now() + jitter;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return Ok(()),
        }
        s.write_all(&ping).await.map_err(|_| "send ping")?;
        let mut reply = [0u8; 20];
        s.read_exact(&mut reply)
            .await
            .map_err(|_| "read ping reply")?;
        next += Duration::from_secs(10);
    }
}

#[tokio::main]
async fn main() -> zkit::Result<()> {
    let connect = connect_arg();
    let znodes = flag("znodes", 1_000_000);
    let sessions = flag("sessions", 10_000);
    let sync_n = flag("sync-n", 5000);
    let started = Instant::now();
    let zk = Client::builder()
        .session_timeout(Duration::from_secs(30))
        .connect(&connect)
        .await?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let base = format!("/scale-{}-{stamp}", std::process::id());
    let node = format!("{base}/data");
    zk.create(&base, b"", &CreateOptions::default()).await?;
    zk.create(&node, &[b'x'; 100], &CreateOptions::default())
        .await?;
    let (base_p50, base_p99) = latency(&zk, &node, sync_n).await;

    let parents = znodes.div_ceil(1000);
    for p in 0..parents {
        zk.create(&format!("{base}/p{p}"), b"", &CreateOptions::default())
            .await?;
    }
    let t0 = Instant::now();
    let create_errors = pipelined(znodes, 1000, |i| {
        let f = zk.create(
            &format!("{base}/p{}/n{}", i / 1000, i % 1000),
            &[b'z'; 100],
            &CreateOptions::default(),
        );
        async move { f.await.map(drop) }
    })
    .await;
    let create_s = t0.elapsed().as_secs_f64();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let first = connect.split(',').next().unwrap_or_default().to_string();
    let mut holders = Vec::with_capacity(sessions);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let t1 = Instant::now();
    for _ in 0..sessions {
        holders.push(tokio::spawn(idle_session(
            first.clone(),
            gate.clone(),
            done_tx.clone(),
            stop_rx.clone(),
        )));
    }
    // Every session established (or failed) before measuring.
    for _ in 0..sessions {
        let _ = done_rx.recv().await;
    }
    let sessions_s = t1.elapsed().as_secs_f64();
    let (loaded_p50, loaded_p99) = latency(&zk, &node, sync_n).await;
    let _ = stop_tx.send(true);
    let mut sessions_ok = 0;
    let mut session_errors = std::collections::BTreeMap::<&str, usize>::new();
    for h in holders {
        match h.await {
            Ok(Ok(())) => sessions_ok += 1,
            Ok(Err(why)) => *session_errors.entry(why).or_default() += 1,
            Err(_) => *session_errors.entry("panicked").or_default() += 1,
        }
    }

    let counted = zk.get_all_children_number(&base).await?;
    let expected = (znodes - create_errors + parents + 1) as i32;
    let delete_errors = pipelined(znodes, 1000, |i| {
        zk.delete(&format!("{base}/p{}/n{}", i / 1000, i % 1000), Version::Any)
    })
    .await;
    for p in 0..parents {
        let _ = zk.delete(&format!("{base}/p{p}"), Version::Any).await;
    }
    zk.delete(&node, Version::Any).await?;
    zk.delete(&base, Version::Any).await?;
    zk.close().await?;
    let ok = create_errors == 0 && delete_errors == 0 && sessions_ok == sessions;
    println!(
        "{}",
        json!({
            "peer": "zkit-scale",
            "connect": connect,
            "ok": ok,
            "verified": ok && counted == expected,
            "znodes": znodes,
            "sessions": sessions,
            "sessions_ok": sessions_ok,
            "session_errors": session_errors,
            "sync_n": sync_n,
            "base_p50_us": (base_p50 * 10.0).round() / 10.0,
            "base_p99_us": (base_p99 * 10.0).round() / 10.0,
            "loaded_p50_us": (loaded_p50 * 10.0).round() / 10.0,
            "loaded_p99_us": (loaded_p99 * 10.0).round() / 10.0,
            "p99_ratio": ((loaded_p99 / base_p99) * 100.0).round() / 100.0,
            "create_ops_s": (znodes as f64 / create_s).round(),
            "sessions_open_s": (sessions_s * 100.0).round() / 100.0,
            "create_errors": create_errors,
            "delete_errors": delete_errors,
            "counted": counted,
            "elapsed_s": (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        })
    );
    Ok(())
}
