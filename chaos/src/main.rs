//! `zkit-chaos`: randomized fault schedules against zkit's recipes, with
//! checkers for their safety properties.
//!
//! ```text
//! zkit-chaos [--backend zookeeper|bundled] [--schedules S] [--seed N] [--secs T]
//! ```
//!
//! Each schedule starts a fresh server (a real 3-member ZooKeeper 3.8
//! ensemble, or the bundled zkit-server, durable), runs every workload at
//! once (each client in its own session, through a fault proxy per member)
//! while a nemesis drawn from the schedule's seed injects faults for `T`
//! seconds, heals everything, stops the workloads and checks:
//!
//! - lock: no two holders overlap unless one had been told Suspended/Lost
//!   first; the fenced counter equals the acknowledged fenced writes;
//!   fencing tokens never go back;
//! - counter: the final count equals the acknowledged increments (within
//!   the writes whose outcome was unknown);
//! - queue: nothing acknowledged is lost, nothing is completed twice;
//! - leader latch: never two leaders in one sample; the leaders' fenced
//!   writes as for the lock;
//! - semaphore: never more than its 2 leases held by holders not yet told
//!   Suspended/Lost;
//! - config subscription: values never go backwards, the last one arrives;
//! - read/write lock: a writer never overlaps another unwarned holder;
//! - group membership: an observer's view converges to every member after
//!   the heal.
//!
//! A workload that made no progress fails the schedule. One JSON line per
//! schedule, then `N passed, N failed`; a failure prints the command that
//! replays it (the seed decides every fault and its timing; thread
//! scheduling does not replay exactly).

mod abuse;
mod checks;
mod sim;
mod suite;
mod workloads;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::watch;
use zkit::Client;
use zkit_testcontainers::{proxy_connect_string, Backend, Ensemble, FaultMode, FaultProxy};

use crate::checks::Violations;
use crate::workloads::{lock, Clock, Env};

struct Opts {
    backend: Backend,
    schedules: u64,
    seed: u64,
    secs: u64,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        backend: Backend::ZooKeeper,
        schedules: 1,
        seed: rand::random::<u32>().into(),
        secs: 10,
    };
    flags(std::env::args().skip(1), |key, value| {
        match key {
            "--backend" => {
                o.backend = match value()?.as_str() {
                    "zookeeper" => Backend::ZooKeeper,
                    "bundled" => Backend::Bundled,
                    other => return Err(format!("--backend {other}: zookeeper or bundled")),
                }
            }
            "--schedules" => o.schedules = value()?.parse().map_err(|e| format!("--schedules: {e}"))?,
            "--seed" => o.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--secs" => o.secs = value()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "-h" | "--help" => {
                return Err(
                    "usage: zkit-chaos [--backend zookeeper|bundled] [--schedules S] [--seed N] [--secs T]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
        Ok(())
    })?;
    Ok(o)
}

/// Walks command-line flags, `--flag value`, `--flag=value` or a bare
/// `--flag`: `each` gets the flag and a function that takes its value.
pub(crate) fn flags(
    args: impl IntoIterator<Item = String>,
    mut each: impl FnMut(&str, &mut dyn FnMut() -> Result<String, String>) -> Result<(), String>,
) -> Result<(), String> {
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let (key, mut inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = || {
            inline
                .take()
                .or_else(|| args.next())
                .ok_or(format!("{key} needs a value"))
        };
        each(&key, &mut value)?;
    }
    Ok(())
}

fn backend_name(b: Backend) -> &'static str {
    if b == Backend::Bundled {
        "bundled"
    } else {
        "zookeeper"
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("worker") {
        return worker();
    }
    if std::env::args().nth(1).as_deref() == Some("abuse") {
        let args: Vec<String> = std::env::args().skip(2).collect();
        return abuse::main(&args);
    }
    if std::env::args().nth(1).as_deref() == Some("sim") {
        let args: Vec<String> = std::env::args().skip(2).collect();
        return sim::main(&args);
    }
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
    for i in 0..opts.schedules {
        let seed = opts.seed.wrapping_add(i);
        let report = rt.block_on(schedule(&opts, seed));
        println!("{}", report.line);
        for (k, n) in &report.totals {
            *totals.entry(k.clone()).or_default() += n;
        }
        if report.ok {
            passed += 1;
        } else {
            failed += 1;
            eprintln!(
                "zkit-chaos: schedule {seed} FAILED; replay: zkit-chaos --backend {} --seed {seed} --schedules 1 --secs {}",
                backend_name(opts.backend),
                opts.secs
            );
        }
    }
    eprintln!("zkit-chaos: totals {}", json!(totals));
    verdict(passed, failed)
}

/// Prints `N passed, N failed`; success when nothing failed.
pub(crate) fn verdict(passed: u64, failed: u64) -> ExitCode {
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

struct Report {
    line: String,
    ok: bool,
    totals: Vec<(String, u64)>,
}

/// The servers and the proxies in front of them.
struct Target {
    zk: Ensemble,
    proxies: Vec<FaultProxy>,
}

async fn schedule(opts: &Opts, seed: u64) -> Report {
    let began = Instant::now();
    let fail = |why: String| Report {
        line:
            json!({"seed": seed, "backend": backend_name(opts.backend), "ok": false, "error": why})
                .to_string(),
        ok: false,
        totals: vec![("harness_errors".into(), 1)],
    };
    let size = if opts.backend == Backend::Bundled {
        1
    } else {
        3
    };
    let zk = match Ensemble::builder()
        .backend(opts.backend)
        .size(size)
        .tick_time(Duration::from_millis(200))
        .start()
        .await
    {
        Ok(zk) => zk,
        Err(e) => return fail(format!("fixture: {e}")),
    };
    let mut proxies = Vec::new();
    for i in 0..size {
        match FaultProxy::start(zk.client_addr(i)).await {
            Ok(p) => proxies.push(p),
            Err(e) => return fail(format!("proxy: {e}")),
        }
    }
    let target = Arc::new(Target { zk, proxies });
    let base = format!("/chaos-{seed}");
    let setup = match Client::connect(&target.zk.connect_string()).await {
        Ok(c) => c,
        Err(e) => return fail(format!("setup session: {e}")),
    };
    if let Err(e) = suite::create_nodes(&setup, &base).await {
        return fail(e);
    }
    let _ = setup.close().await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let env = Env {
        connect: proxy_connect_string(&target.proxies),
        base: base.clone(),
        clock: Clock::start(),
        stop: stop_rx,
        sessions: Arc::new(Mutex::new(Vec::new())),
        builder: Arc::new(workloads::client_builder),
    };
    let records = suite::Records::default();
    let tasks: Vec<_> = suite::RECIPES
        .iter()
        .flat_map(|r| records.spawn(r, &env, seed))
        .collect();
    // A lock contender in a process of its own, which the nemesis can
    // SIGSTOP past its session timeout.
    let mut worker = match tokio::process::Command::new(
        std::env::current_exe().unwrap_or_else(|_| "zkit-chaos".into()),
    )
    .args([
        "worker".to_string(),
        env.connect.clone(),
        base.clone(),
        workloads::WORKER_IDS.to_string(),
        seed.wrapping_mul(41).to_string(),
        env.clock.origin().to_string(),
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("spawn the worker process: {e}")),
    };
    let worker_stdin = worker.stdin.take();
    let worker_pid = worker.id();
    let marks = Marks::default();

    // The nemesis, then heal.
    let faults = nemesis(
        &target,
        &env,
        seed,
        Duration::from_secs(opts.secs),
        opts.backend,
        worker_pid,
        &marks,
    )
    .await;
    // The worker process runs again whatever happened to a SIGCONT.
    if let Some(pid) = worker_pid {
        signal(pid, "CONT");
    }
    let healed = heal(&target).await;
    // Let the workloads run on a healthy server for a moment, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    drop(worker_stdin); // the worker stops at EOF and reports
    let mut stuck = 0;
    for t in tasks {
        if tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .is_err()
        {
            stuck += 1;
        }
    }
    let worker_report =
        match tokio::time::timeout(Duration::from_secs(30), worker.wait_with_output()).await {
            Ok(Ok(out)) => match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                Ok(r) if out.status.success() => Ok(r),
                _ => Err(format!(
                    "{}; stdout {:?}; stderr {:?}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                )),
            },
            Ok(Err(e)) => Err(format!("waiting for it: {e}")),
            Err(_) => Err("no report within 30 s".into()),
        };

    let mut v = Violations::default();
    match &worker_report {
        Ok(r) => workloads::merge_worker(&mut lock(&records.lock), r),
        Err(why) => v.add("harness: the worker process failed", why.clone()),
    }
    if let Err(e) = healed {
        v.add("harness: did not heal", e);
    }
    if stuck > 0 {
        v.add(
            "harness: workload stuck after stop",
            format!("{stuck} tasks"),
        );
    }
    // The truth, from a fresh session.
    let check = match Client::connect(&target.zk.connect_string()).await {
        Ok(c) => c,
        Err(e) => return fail(format!("check session: {e}")),
    };
    let mut ops = serde_json::Map::new();
    {
        let (pauses, expiries) = (lock(&marks.pauses).clone(), lock(&marks.expiries).clone());
        for r in suite::RECIPES {
            ops.extend(
                records
                    .check(r, &check, &base, &pauses, &expiries, &mut v)
                    .await,
            );
        }
        ops.insert("worker_pauses".into(), json!(pauses.len()));
    }
    let _ = check.close().await;
    let mut totals: Vec<(String, u64)> = ops
        .iter()
        .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
        .collect();
    totals.push(("schedules".to_string(), 1));
    totals.push(("faults".to_string(), faults.len() as u64));
    totals.push((
        "violations".to_string(),
        v.by_kind.values().map(|(n, _)| n).sum::<u64>(),
    ));
    let violations: serde_json::Map<String, serde_json::Value> = v
        .by_kind
        .iter()
        .map(|(k, (n, ex))| (k.clone(), json!({"count": n, "example": ex})))
        .collect();
    let ok = v.is_empty();
    let line = json!({
        "seed": seed,
        "backend": backend_name(opts.backend),
        "secs": opts.secs,
        "faults": faults,
        "ops": ops,
        "violations": violations,
        "ok": ok,
        "elapsed_s": (began.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    })
    .to_string();
    Report { line, ok, totals }
}

/// What the nemesis did that the checkers take into account.
#[derive(Default)]
struct Marks {
    /// The worker process's pauses (SIGSTOP to SIGCONT), on the schedule's
    /// clock.
    pauses: Mutex<Vec<(u64, u64)>>,
    /// Sessions expired from outside, and when.
    expiries: Mutex<Vec<(i64, u64)>>,
}

/// Injects faults drawn from `seed` for `dur`; returns what it did.
/// `worker` is the client process it may SIGSTOP; `marks` gets each pause
/// (start, end) and each session expiry (session, when) on the schedule's clock.
#[allow(clippy::too_many_lines)]
async fn nemesis(
    t: &Target,
    env: &Env,
    seed: u64,
    dur: Duration,
    backend: Backend,
    worker: Option<u32>,
    marks: &Marks,
) -> Vec<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut done = Vec::new();
    let end = Instant::now() + dur;
    let n = t.proxies.len();
    // Time for the workloads to get going before the first fault.
    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
    while Instant::now() < end {
        let member = rng.random_range(0..n);
        let kinds: &[u8] = if backend == Backend::Bundled {
            &[0, 1, 2, 3, 4, 9]
        } else {
            &[0, 1, 2, 3, 4, 5, 6, 7, 9]
        };
        let kind = kinds[rng.random_range(0..kinds.len())];
        let ms = |lo: u64, hi: u64, rng: &mut rand::rngs::StdRng| {
            Duration::from_millis(rng.random_range(lo..hi))
        };
        let at = env.clock.now() / 1000;
        let what = match kind {
            0 => {
                t.proxies[member].cut();
                format!("{at}ms cut connections to member {member}")
            }
            1 => {
                let d = ms(20, 300, &mut rng);
                let how_long = ms(300, 1500, &mut rng);
                t.proxies[member].set_mode(FaultMode::Delay(d));
                tokio::time::sleep(how_long).await;
                t.proxies[member].set_mode(FaultMode::Pass);
                format!("{at}ms delay {d:?} to member {member} for {how_long:?}")
            }
            2 => {
                // A partition between the clients and one member, shorter
                // or longer than the 2 s session timeout.
                let how_long = ms(300, 3000, &mut rng);
                t.proxies[member].set_mode(FaultMode::Blackhole);
                t.proxies[member].cut();
                tokio::time::sleep(how_long).await;
                t.proxies[member].set_mode(FaultMode::Pass);
                format!("{at}ms partition member {member} from the clients for {how_long:?}")
            }
            3 => {
                let sessions: Vec<zkit::Client> = lock(&env.sessions)
                    .iter()
                    .filter_map(zkit_recipes::Sessions::current)
                    .collect();
                if sessions.is_empty() {
                    continue;
                }
                let c = &sessions[rng.random_range(0..sessions.len())];
                let sid = c.session_id();
                lock(&marks.expiries).push((sid.0, env.clock.now()));
                let r = zkit_testcontainers::expire_session(
                    t.zk.client_addr(rng.random_range(0..n)),
                    sid.0,
                    &c.session_password(),
                )
                .await;
                format!(
                    "{at}ms expire session {sid} ({})",
                    if r.is_ok() { "done" } else { "failed" }
                )
            }
            4 => {
                // kill -9 and restart: for the bundled server, the whole
                // service; for an ensemble, one member (maybe the leader).
                let down = ms(200, 2000, &mut rng);
                if t.zk.kill(member).await.is_err() {
                    continue;
                }
                tokio::time::sleep(down).await;
                let r = t.zk.restart(member).await;
                format!(
                    "{at}ms kill -9 member {member}, restart after {down:?}{}",
                    if r.is_err() { " (restart failed)" } else { "" }
                )
            }
            5 => {
                let how_long = ms(300, 3500, &mut rng);
                if t.zk.pause(member).is_err() {
                    continue;
                }
                tokio::time::sleep(how_long).await;
                let _ = t.zk.resume(member);
                format!("{at}ms SIGSTOP member {member} for {how_long:?}")
            }
            6 => {
                // Brief quorum loss: two members paused.
                let other = (member + 1 + rng.random_range(0..n - 1)) % n;
                let how_long = ms(300, 2000, &mut rng);
                let _ = t.zk.pause(member);
                let _ = t.zk.pause(other);
                tokio::time::sleep(how_long).await;
                let _ = t.zk.resume(member);
                let _ = t.zk.resume(other);
                format!("{at}ms quorum loss: members {member} and {other} paused for {how_long:?}")
            }
            9 => {
                // The paused-lock-holder case: the client process stops,
                // maybe past its 2 s session timeout, then goes on.
                let Some(pid) = worker else { continue };
                let how_long = ms(500, 4000, &mut rng);
                let start = env.clock.now();
                if !signal(pid, "STOP") {
                    continue;
                }
                tokio::time::sleep(how_long).await;
                signal(pid, "CONT");
                lock(&marks.pauses).push((start, env.clock.now()));
                format!("{at}ms SIGSTOP the worker client process for {how_long:?}")
            }
            _ => {
                let leader = t.zk.leader().await;
                let Some(l) = leader else { continue };
                let down = ms(200, 2000, &mut rng);
                if t.zk.kill(l).await.is_err() {
                    continue;
                }
                tokio::time::sleep(down).await;
                let r = t.zk.restart(l).await;
                format!(
                    "{at}ms kill -9 the leader (member {l}), restart after {down:?}{}",
                    if r.is_err() { " (restart failed)" } else { "" }
                )
            }
        };
        done.push(what);
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
    }
    done
}

/// Sends SIGSTOP/SIGCONT (`kill -s`).
fn signal(pid: u32, sig: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// `zkit-chaos worker CONNECT BASE WHO SEED ORIGIN_US`: one lock contender
/// in this process until standard input closes; then its records as one
/// JSON object on standard output.
fn worker() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let [connect, base, who, seed, origin] = &args[..] else {
        eprintln!("usage: zkit-chaos worker CONNECT BASE WHO SEED ORIGIN_US");
        return ExitCode::from(2);
    };
    let (Ok(who), Ok(seed), Ok(origin)) = (who.parse(), seed.parse(), origin.parse()) else {
        eprintln!("zkit-chaos worker: bad numbers");
        return ExitCode::from(2);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rec = Arc::new(Mutex::new(workloads::LockRecord::default()));
    rt.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        let env = Env {
            connect: connect.clone(),
            base: base.clone(),
            clock: Clock::Wall(origin),
            stop: stop_rx,
            sessions: Arc::new(Mutex::new(Vec::new())),
            builder: Arc::new(workloads::client_builder),
        };
        let task = tokio::spawn(workloads::lock_contender(env, who, seed, rec.clone()));
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await;
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    });
    println!("{}", workloads::worker_report(&lock(&rec)));
    ExitCode::SUCCESS
}

/// Everything back: members running and resumed, proxies passing, and a
/// session can be made and used.
async fn heal(t: &Target) -> Result<(), String> {
    for p in &t.proxies {
        p.set_mode(FaultMode::Pass);
    }
    for i in 0..t.zk.size() {
        if t.zk.is_paused(i) {
            let _ = t.zk.resume(i);
        }
        if !t.zk.is_running(i) {
            t.zk.restart(i)
                .await
                .map_err(|e| format!("restart {i}: {e}"))?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = async {
            let c = Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .connect(&t.zk.connect_string())
                .await
                .ok()?;
            let r = c.exists("/").await.ok();
            let _ = c.close().await;
            r
        }
        .await;
        if ok.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("no usable session within 30 s of healing".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
