//! Lock benchmark in the format of `shared/bench-peers` (peer `zkit-lock`).
//!
//! ```text
//! cargo run --release -p zkit-recipes --example lock_bench -- CONNECT \
//!     [--contenders K] [--per-contender M] [--failover-rounds R]
//!     [--runtime multi|current] [--peer NAME]
//! ```
//!
//! `--runtime current` runs everything on tokio's one-thread runtime
//! (default: the multi-thread one); `--peer` names the JSON line (default
//! `zkit-lock`).
//!
//! Handoff: K sessions each acquire and release one [`Lock`] M times
//! (nothing done while holding it but bookkeeping); `lock_acq_s` = K·M / wall
//! time; handoff latency = previous holder's timestamp just before
//! `release()` to the next holder's `acquire()` returning; a shared holder
//! counter detects overlapping holders (`mutex_violations`).
//!
//! Failover: 3 [`LeaderLatch`] contenders, each its own session; per round a
//! replacement joins, then the leader's **session is closed** and we time
//! until another contender leads. Prints one JSON line.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use zkit::{Client, Version};
use zkit_recipes::{LeaderLatch, Lock};

fn flag(name: &str, default: usize) -> usize {
    text_flag(name, "").parse().unwrap_or(default)
}

fn text_flag(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    let env = format!("BENCH_{}", name.to_uppercase().replace('-', "_"));
    args.iter()
        .position(|a| a == &format!("--{name}"))
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
        })
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| default.to_string())
}

fn connect_arg() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        if args[i].starts_with("--") {
            i += if args[i].contains('=') { 1 } else { 2 };
        } else {
            return args[i].clone();
        }
    }
    std::env::var("ZK_CONNECT").unwrap_or_else(|_| "127.0.0.1:22181".into())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn connect(cs: &str) -> zkit::Result<Client> {
    Client::builder()
        .session_timeout(Duration::from_secs(10))
        .connect(cs)
        .await
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let current = text_flag("runtime", "multi") == "current";
    let runtime = if current {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(bench(current))
}

async fn bench(current: bool) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let cs = connect_arg();
    let k = flag("contenders", 4);
    let m = flag("per-contender", 100);
    let rounds = flag("failover-rounds", 5);
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let base = format!("/peers-bench-zkit-lock-{}-{stamp}", std::process::id());
    let admin = connect(&cs).await?;
    admin
        .create(&base, b"", &zkit::CreateOptions::default())
        .await?;

    // ---- handoff --------------------------------------------------------
    let lock_path = format!("{base}/lock");
    let holders = Arc::new(AtomicUsize::new(0));
    let violations = Arc::new(AtomicUsize::new(0));
    // (timestamp just before release, releasing contender)
    let last_release: Arc<Mutex<Option<(Instant, usize)>>> = Arc::new(Mutex::new(None));
    let handoffs: Arc<Mutex<Vec<(f64, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let acquisitions = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..k {
        clients.push(connect(&cs).await?);
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (id, c) in clients.iter().enumerate() {
        let lock = Lock::new(c, lock_path.clone());
        let (holders, violations, last_release, handoffs, acquisitions) = (
            holders.clone(),
            violations.clone(),
            last_release.clone(),
            handoffs.clone(),
            acquisitions.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..m {
                let g = lock.acquire().await?;
                let now = Instant::now();
                if let Some((t, who)) = *last_release.lock().unwrap() {
                    handoffs
                        .lock()
                        .unwrap()
                        .push(((now - t).as_secs_f64() * 1e6, who != id));
                }
                if holders.fetch_add(1, Ordering::SeqCst) != 0 {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
                acquisitions.fetch_add(1, Ordering::SeqCst);
                holders.fetch_sub(1, Ordering::SeqCst);
                *last_release.lock().unwrap() = Some((Instant::now(), id));
                g.release().await?;
            }
            Ok::<(), zkit::Error>(())
        }));
    }
    let mut ok = true;
    for t in tasks {
        ok &= matches!(t.await, Ok(Ok(())));
    }
    let handoff_wall = t0.elapsed().as_secs_f64();
    for c in clients {
        c.close().await?;
    }
    let mut hs: Vec<f64> = handoffs.lock().unwrap().iter().map(|h| h.0).collect();
    let to_other = handoffs.lock().unwrap().iter().filter(|h| h.1).count();
    hs.sort_by(f64::total_cmp);
    let acq = acquisitions.load(Ordering::SeqCst);

    // ---- failover -------------------------------------------------------
    let election = format!("{base}/election");
    let mut contenders: Vec<(Client, LeaderLatch, String)> = Vec::new();
    let mut next_id = 0;
    for _ in 0..3 {
        let c = connect(&cs).await?;
        let id = format!("c{next_id}");
        next_id += 1;
        let l = LeaderLatch::start(&c, election.clone(), &id).await?;
        contenders.push((c, l, id));
    }
    contenders[0].1.await_leadership().await?;
    let mut failovers = Vec::new();
    let mut failover_ok = 0;
    let mut close_ms = Vec::new();
    for _ in 0..rounds {
        // A replacement joins.
        let c = connect(&cs).await?;
        let id = format!("c{next_id}");
        next_id += 1;
        let l = LeaderLatch::start(&c, election.clone(), &id).await?;
        contenders.push((c, l, id));
        let leader = contenders
            .iter()
            .position(|(_, l, _)| l.is_leader())
            .ok_or("no leader")?;
        let (client, latch, leader_id) = contenders.remove(leader);
        let watches: Vec<_> = contenders
            .iter()
            .map(|(_, l, _)| l.leadership_watch())
            .collect();
        let t = Instant::now();
        client.close().await?;
        close_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let waits = watches.into_iter().map(|mut w| {
            Box::pin(async move {
                let _ = w
                    .wait_for(|s| matches!(s, zkit_recipes::Leadership::Leader { .. }))
                    .await;
            })
        });
        let (_, idx, _) = futures::future::select_all(waits).await;
        failovers.push(t.elapsed().as_secs_f64() * 1e3);
        let new_id = &contenders[idx].2;
        if new_id != &leader_id && contenders[idx].1.is_leader() {
            failover_ok += 1;
        }
        drop(latch);
    }
    for (c, l, _) in contenders {
        l.close().await?;
        c.close().await?;
    }
    let _ = admin.delete(&election, Version::Any).await;
    let _ = admin.delete(&lock_path, Version::Any).await;
    admin.delete(&base, Version::Any).await?;
    admin.close().await?;
    failovers.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let violations = violations.load(Ordering::SeqCst);
    let verified = ok && violations == 0 && acq == k * m && failover_ok == rounds;
    println!(
        "{}",
        json!({
            "peer": text_flag("peer", "zkit-lock"),
            "client": format!("zkit {}", env!("CARGO_PKG_VERSION")),
            "connect": cs,
            "ok": ok,
            "verified": verified,
            "elapsed_s": r2(started.elapsed().as_secs_f64()),
            "contenders": k,
            "per_contender": m,
            "expected_acquisitions": k * m,
            "acquisitions": acq,
            "mutex_violations": violations,
            "handoffs": hs.len(),
            "handoffs_to_other": to_other,
            "lock_acq_s": r1(acq as f64 / handoff_wall),
            "handoff_mean_us": r1(mean(&hs)),
            "handoff_p50_us": r1(percentile(&hs, 0.5)),
            "handoff_p99_us": r1(percentile(&hs, 0.99)),
            "failover_rounds": rounds,
            "failover_ok": failover_ok,
            "failover_mean_ms": r2(mean(&failovers)),
            "failover_p50_ms": r2(percentile(&failovers, 0.5)),
            "failover_max_ms": r2(failovers.last().copied().unwrap_or(0.0)),
            "leader_close_mean_ms": r2(mean(&close_ms)),
            "runtime": if current { "tokio-current-thread" } else { "tokio-multi-thread" },
        })
    );
    Ok(())
}
