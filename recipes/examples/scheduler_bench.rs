//! Scheduler benchmark: scheduling overhead and shard failover. Prints one
//! JSON line (peer `zkit-scheduler`).
//!
//! ```text
//! cargo run --release -p zkit-recipes --example scheduler_bench -- CONNECT \
//!     [--shards 16] [--instances 2] [--secs 20] [--interval-ms 10] \
//!     [--failover-rounds 10] [--session-ms 4000]
//! ```
//!
//! Overhead: one job of `--shards` shards with an empty body fires every
//! `--interval-ms` (faster than it can keep up with), shared by
//! `--instances` instances (one session each, this process). Every
//! shard-fire costs two fenced writes (its run record created, then
//! completed). `shard_runs_per_s` = completed and recorded shard-fires per
//! second after a warm-up; `job_fires_per_s` = that over the shard count;
//! `lag_*` = how late a run started after its fire time (the backlog shows
//! here: fires it could not keep up with are misfires, run once, late).
//!
//! Failover: two worker processes (this program again, `--worker`) share a
//! job of one shard firing every 50 ms; per round the shard's owner is
//! killed (SIGKILL, so its session must time out) and we time until a run
//! starts in the other worker; the killed one is started again. The bound
//! is the session timeout (`--session-ms`, as the server negotiated it)
//! plus the server's expiry granularity (a tick) and the scheduler's
//! reaction.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use zkit::Client;
use zkit_recipes::scheduler::{JobSpec, Jobs, Scheduler, SchedulerEvent};

fn flag(name: &str, default: u64) -> u64 {
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
        if args[i] == "--worker" {
            i += 1;
        } else if args[i].starts_with("--") {
            i += 2;
        } else {
            return args[i].clone();
        }
    }
    std::env::var("ZK_CONNECT").unwrap_or_else(|_| "127.0.0.1:22181".into())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .try_into()
        .unwrap()
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `--worker ROOT ID`: runs the failover job, one line per run start.
async fn worker(connect: &str) -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--worker").unwrap();
    let (root, id) = (args[at + 1].clone(), args[at + 2].clone());
    let session = Duration::from_millis(flag("session-ms", 4000));
    let zk = Client::builder()
        .session_timeout(session)
        .connect(connect)
        .await?;
    let me = id.clone();
    let _s = Scheduler::new(&zk, &root, &id)
        .handle("failover", move |ctx| {
            println!("run {me} {} {}", ctx.fire_ms(), now_ms());
            async { Ok::<(), zkit::Error>(()) }
        })
        .start()?;
    println!("up {id} {}", zk.session_timeout().as_millis());
    std::future::pending::<()>().await;
    Ok(())
}

struct Workers {
    connect: String,
    root: String,
    session_ms: u64,
    children: BTreeMap<String, Child>,
    tx: mpsc::UnboundedSender<String>,
}

impl Workers {
    fn spawn(&mut self, id: &str) -> std::io::Result<()> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                &self.connect,
                "--worker",
                &self.root,
                id,
                "--session-ms",
                &self.session_ms.to_string(),
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let out = child.stdout.take().expect("piped");
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
        self.children.insert(id.to_string(), child);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let connect = connect_arg();
    if std::env::args().any(|a| a == "--worker") {
        return worker(&connect).await;
    }
    let shards = u32::try_from(flag("shards", 16))?;
    let instances = flag("instances", 2);
    let secs = flag("secs", 20);
    let interval = flag("interval-ms", 10);
    let rounds = flag("failover-rounds", 10);
    let session_ms = flag("session-ms", 4000);
    let admin = Client::connect(&connect).await?;
    let root = format!("/zkit-bench-scheduler-{}", std::process::id());
    let jobs = Jobs::new(&admin, &root);

    // Overhead.
    jobs.define(
        &JobSpec::every("load", Duration::from_millis(interval))?
            .shards(shards)
            .history(32),
    )
    .await?;
    let mut running = Vec::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for i in 0..instances {
        let zk = Client::connect(&connect).await?;
        let s = Scheduler::new(&zk, &root, &format!("i{i}"))
            .handle("load", |_ctx| async { Ok::<(), zkit::Error>(()) })
            .start()?;
        let mut events = s.events();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                let _ = tx.send((now_ms(), e));
            }
        });
        running.push((zk, s));
    }
    drop(tx);
    let warm = Instant::now() + Duration::from_secs(3);
    let end = warm + Duration::from_secs(secs);
    let mut recorded = 0u64;
    let mut lags = Vec::new();
    let mut misfires = 0u64;
    while let Ok(Some((at, e))) = tokio::time::timeout_at(end.into(), rx.recv()).await {
        if Instant::now() < warm {
            continue;
        }
        match e {
            SchedulerEvent::Started { fire_ms, .. } => lags.push(at - fire_ms),
            SchedulerEvent::Finished { recorded: true, .. } => recorded += 1,
            SchedulerEvent::Misfired { .. } => misfires += 1,
            _ => {}
        }
    }
    for (zk, s) in running {
        s.close().await;
        zk.close().await?;
    }
    lags.sort_unstable();
    let runs_per_s = recorded as f64 / secs as f64;

    // Failover.
    jobs.define(&JobSpec::every("failover", Duration::from_millis(50))?)
        .await?;
    let (tx, mut lines) = mpsc::unbounded_channel();
    let mut w = Workers {
        connect: connect.clone(),
        root: root.clone(),
        session_ms,
        children: BTreeMap::new(),
        tx,
    };
    w.spawn("w0")?;
    w.spawn("w1")?;
    let mut failovers = Vec::new();
    let mut negotiated = 0u64;
    for round in 0..rounds {
        // Settle (a new worker joining moves the shard once), then the
        // owner is whoever ran the latest fire.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut owner = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while owner.is_none() || !lines.is_empty() {
            if Instant::now() > deadline {
                return Err("no worker runs the failover job".into());
            }
            match tokio::time::timeout(Duration::from_millis(200), lines.recv()).await {
                Ok(Some(l)) => match l.split(' ').collect::<Vec<_>>().as_slice() {
                    ["run", id, _, _] => owner = Some(id.to_string()),
                    ["up", _, ms] => negotiated = ms.parse().unwrap_or(negotiated),
                    _ => {}
                },
                Ok(None) => return Err("workers gone".into()),
                Err(_) => {}
            }
        }
        let victim = owner.expect("an owner");
        let mut child = w.children.remove(&victim).expect("a live worker");
        let killed = now_ms();
        child.kill().await?;
        let took = tokio::time::timeout(Duration::from_millis(session_ms * 4 + 10_000), async {
            while let Some(l) = lines.recv().await {
                if let ["run", id, _, at] = l.split(' ').collect::<Vec<_>>().as_slice() {
                    let at: i64 = at.parse().unwrap_or(0);
                    if *id != victim && at >= killed {
                        return at - killed;
                    }
                }
            }
            -1
        })
        .await
        .unwrap_or(-1);
        failovers.push(took);
        // A new process (a new id: the dead one's may still be listed
        // until its session times out).
        w.spawn(&format!("w{}", round + 2))?;
    }
    drop(w);
    eprintln!("failover samples (ms): {failovers:?}");
    let failed = failovers.iter().filter(|t| **t < 0).count();
    failovers.retain(|t| *t >= 0);
    failovers.sort_unstable();
    admin.delete_all(&root).await?;
    admin.close().await?;
    println!(
        "{}",
        json!({
            "peer": "zkit-scheduler",
            "connect": connect,
            "shards": shards,
            "instances": instances,
            "interval_ms": interval,
            "secs": secs,
            "shard_runs_per_s": (runs_per_s * 10.0).round() / 10.0,
            "job_fires_per_s": (runs_per_s / f64::from(shards) * 10.0).round() / 10.0,
            "lag_p50_ms": pct(&lags, 0.5),
            "lag_p99_ms": pct(&lags, 0.99),
            "misfires": misfires,
            "session_timeout_ms": session_ms,
            "session_timeout_negotiated_ms": negotiated,
            "failover_rounds": rounds,
            "failover_p50_ms": pct(&failovers, 0.5),
            "failover_p99_ms": pct(&failovers, 0.99),
            "failover_max_ms": failovers.last().copied().unwrap_or(-1),
            "failover_failed": failed,
        })
    );
    Ok(())
}
