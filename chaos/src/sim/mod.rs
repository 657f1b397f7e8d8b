//! `zkit-chaos sim`: the client and the bundled server in one process, on
//! tokio's paused clock and a simulated network ([`net`]), under faults
//! drawn from a seed.
//!
//! ```text
//! zkit-chaos sim [--schedules S] [--seed N] [--secs T] [--jobs J] [--verbose] [--twice]
//! ```
//!
//! Each schedule runs on a fresh current-thread runtime whose clock only
//! moves when every task waits, so seconds of session time-outs, back-offs
//! and partitions cost microseconds. Probe clients pipeline requests of
//! every kind while the nemesis cuts connections (both ways, or only the
//! client's side so that bytes of an old connection reach the server after
//! the client moved on), partitions clients from hosts, slows links down,
//! takes the server down and up, and expires sessions. Then everything
//! heals and the checkers compare what each call returned with the tree:
//!
//! - an acknowledged create is in the tree with its own data (the reply
//!   belonged to that request), no request is applied twice, one that
//!   failed with anything but ConnectionLoss was not applied, and one
//!   client's creates were applied in call order;
//! - a read pipelined after a write sees that write, and the final value is
//!   the last acknowledged write or a later one whose outcome is unknown
//!   (no stale write from an old connection lands late);
//! - every request future completes (ConnectionLoss at the latest when the
//!   transport fails), within bounded time;
//! - one-shot watches: one on a node that is then created fires
//!   NodeCreated, across reconnects, unless its session ended first; none
//!   fires for a node never created;
//! - persistent watches: never the same creation twice, never an event for
//!   a node that does not exist, and re-registered: a node created after
//!   the heal is seen by every live session;
//! - expiry is final: no state after a terminal one, and an expired
//!   session's requests fail with SessionExpired; an expiry the nemesis
//!   caused is seen by its client.
//!
//! A recipe workload from the chaos harness (lock, counter, queue, leader,
//! semaphore, config, read/write lock, membership), picked by the seed,
//! runs beside the probes and is checked by the same checkers.
//!
//! The seed decides the faults, their timing, the network delays, every
//! client's host order, the workloads' and the recipes' random choices, and
//! (in a build with `--cfg tokio_unstable`) tokio's own: with one thread
//! and a virtual clock, the run replays exactly. Without that flag about
//! one schedule in a hundred takes a slightly different path on a second
//! run (a `select!` polling ready branches in another order). `--twice`
//! runs each schedule twice and fails it when the two runs differ.

mod net;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};
use zkit::{
    AddWatchMode, Client, CreateMode, CreateOptions, Error, EventType, SessionState, Version,
};
use zkit_server::Server;

use crate::checks::Violations;
use crate::suite;
use crate::workloads::{client_builder, lock, Clock, Env};

use net::Net;

/// How to run one schedule again, exactly: tokio's own random choices
/// (which ready branch of a `select!` goes first) follow the seed only in a
/// build with `--cfg tokio_unstable` (scripts/test.sh builds it so).
const REPLAY: &str = if cfg!(tokio_unstable) {
    "RUSTFLAGS='--cfg tokio_unstable' cargo run --release --target-dir target/sim -p zkit-chaos -- sim"
} else {
    "zkit-chaos sim (build with RUSTFLAGS='--cfg tokio_unstable' for an exact replay)"
};

struct SimOpts {
    schedules: u64,
    seed: u64,
    secs: u64,
    jobs: usize,
    verbose: bool,
    twice: bool,
}

const USAGE: &str =
    "usage: zkit-chaos sim [--schedules S] [--seed N] [--secs T] [--jobs J] [--verbose] [--twice]";

fn parse(args: &[String]) -> Result<SimOpts, String> {
    let mut o = SimOpts {
        schedules: 100,
        seed: rand::random::<u32>().into(),
        secs: 6,
        jobs: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        verbose: false,
        twice: false,
    };
    crate::flags(args.iter().cloned(), |key, value| {
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{key}: {e}"));
        match key {
            "--schedules" => o.schedules = num(value()?)?,
            "--seed" => o.seed = num(value()?)?,
            "--secs" => o.secs = num(value()?)?.max(1),
            "--jobs" => o.jobs = usize::try_from(num(value()?)?.max(1)).unwrap_or(1),
            "--verbose" => o.verbose = true,
            "--twice" => o.twice = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
        Ok(())
    })?;
    Ok(o)
}

/// Runs `zkit-chaos sim ARGS`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let opts = match parse(args) {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let began = std::time::Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let totals: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    // Each job's schedule now, and since when (wall clock): a schedule that
    // stops virtual time (a task that never yields to the timers) would
    // otherwise hang the run instead of failing it.
    let running: Arc<Mutex<Vec<Running>>> = Arc::new(Mutex::new(vec![None; opts.jobs]));
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let (running, finished, opts) = (running.clone(), finished.clone(), opts.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let stuck = lock(&running)
                .iter()
                .flatten()
                .find(|(_, since)| since.elapsed() > LIVELOCK)
                .copied();
            if let Some((seed, _)) = stuck {
                println!(
                    "{}",
                    json!({"seed": seed, "ok": false, "error": format!("livelock: the schedule's virtual time stopped for {LIVELOCK:?} of wall time (a task that never waits)")})
                );
                eprintln!(
                    "zkit-chaos sim: schedule {seed} FAILED; replay: {REPLAY} --seed {seed} --schedules 1 --secs {} --verbose",
                    opts.secs
                );
                std::process::exit(1);
            }
            if finished.load(Ordering::SeqCst) {
                return;
            }
        })
    };
    let threads: Vec<_> = (0..opts.jobs)
        .map(|job| {
            let (opts, next, failed, totals, running) = (
                opts.clone(),
                next.clone(),
                failed.clone(),
                totals.clone(),
                running.clone(),
            );
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= opts.schedules {
                    break;
                }
                let seed = opts.seed.wrapping_add(i);
                lock(&running)[job] = Some((seed, std::time::Instant::now()));
                let mut out = run(&opts, seed);
                if opts.twice && out.ok {
                    lock(&running)[job] = Some((seed, std::time::Instant::now()));
                    let again = run(&opts, seed);
                    if again.digest != out.digest {
                        out.ok = false;
                        out.line = json!({
                            "seed": seed,
                            "ok": false,
                            "error": "the schedule did not replay: two runs differ",
                            "first": serde_json::from_str::<serde_json::Value>(&out.line).unwrap_or_default(),
                            "second": serde_json::from_str::<serde_json::Value>(&again.line).unwrap_or_default(),
                        })
                        .to_string();
                    }
                }
                lock(&running)[job] = None;
                {
                    let mut t = lock(&totals);
                    for (k, n) in &out.totals {
                        *t.entry(k.clone()).or_default() += n;
                    }
                }
                if !out.ok {
                    failed.fetch_add(1, Ordering::SeqCst);
                    println!("{}", out.line);
                    eprintln!(
                        "zkit-chaos sim: schedule {seed} FAILED; replay: {REPLAY} --seed {seed} --schedules 1 --secs {} --verbose",
                        opts.secs
                    );
                } else if opts.verbose {
                    println!("{}", out.line);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    finished.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    let failed = failed.load(Ordering::SeqCst);
    let passed = opts.schedules - failed;
    let mut summary = serde_json::Map::new();
    summary.insert("sim".into(), json!(true));
    summary.insert("seed".into(), json!(opts.seed));
    summary.insert("schedules".into(), json!(opts.schedules));
    summary.insert("secs".into(), json!(opts.secs));
    summary.insert("jobs".into(), json!(opts.jobs));
    summary.insert("exact_replay".into(), json!(cfg!(tokio_unstable)));
    summary.insert(
        "wall_s".into(),
        json!((began.elapsed().as_secs_f64() * 10.0).round() / 10.0),
    );
    for (k, n) in lock(&totals).iter() {
        summary.insert(k.clone(), json!(n));
    }
    println!("{}", serde_json::Value::Object(summary));
    crate::verdict(passed, failed)
}

/// A job's schedule now (seed, started on the wall clock), if any.
type Running = Option<(u64, std::time::Instant)>;

/// Wall time after which a schedule counts as livelocked (a normal one
/// takes well under a second).
const LIVELOCK: std::time::Duration = std::time::Duration::from_secs(60);

struct Outcome {
    ok: bool,
    line: String,
    totals: BTreeMap<String, u64>,
    digest: u64,
}

fn run(opts: &SimOpts, seed: u64) -> Outcome {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    // Built with `--cfg tokio_unstable`, tokio's own choices (which branch
    // of a select! is polled first) follow the seed too.
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            return Outcome {
                ok: false,
                line: json!({"seed": seed, "ok": false, "error": format!("runtime: {e}")})
                    .to_string(),
                totals: BTreeMap::from([("harness_errors".into(), 1)]),
                digest: 0,
            }
        }
    };
    // The recipes' random choices (back-off jitter, GUIDs) follow the seed
    // too: every task of this runtime runs on this thread.
    zkit_recipes::random::seed_thread(seed);
    rt.block_on(schedule(opts, seed))
}

// ---- the probes' records ---------------------------------------------------------

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ended {
    /// Acknowledged (a create's path).
    Ok(String),
    /// ConnectionLoss: it may have been applied.
    Unknown,
    /// SessionExpired.
    Expired,
    /// The caller dropped the future (it may have been applied).
    Dropped,
    /// Another error.
    Failed(String),
}

impl Ended {
    fn of<T>(r: &Result<T, Error>, path: impl FnOnce(&T) -> String) -> Self {
        match r {
            Ok(v) => Self::Ok(path(v)),
            Err(e) if e.outcome_unknown() => Self::Unknown,
            Err(Error::SessionExpired) => Self::Expired,
            Err(e) => Self::Failed(e.to_string()),
        }
    }

    /// Whether the request may have been applied.
    fn maybe_applied(&self) -> bool {
        matches!(self, Self::Ok(_) | Self::Unknown | Self::Dropped)
    }
}

/// One session of a probe client.
#[derive(Debug, Default)]
struct SessionRec {
    probe: usize,
    id: i64,
    /// States in order, with when.
    states: Vec<(u64, SessionState)>,
    /// One-shot watches: exists on an absent node (under /sim/w, set off
    /// by its creation) or data (under /sim/d, set off by a change to "1"):
    /// path and what `changed` gave.
    watches: Vec<(String, Option<Result<EventType, String>>)>,
    /// Persistent-recursive watch events (type, path), if the watch was set.
    persistent: Option<Vec<(EventType, String)>>,
    /// What a request gave after the session had expired.
    after_expiry: Option<String>,
    /// Still alive when the workloads stopped (seconds after the heal).
    alive_at_end: bool,
}

/// Everything the probes record.
#[derive(Debug, Default)]
struct ProbeRec {
    /// (probe, k, outcome) of each sequential create, in call order.
    creates: Vec<(usize, u64, Ended)>,
    /// (probe, k, outcome) of each set of the probe's value node.
    sets: Vec<(usize, u64, Ended)>,
    /// Reads pipelined after a write that did not see it.
    stale_reads: Vec<String>,
    /// Nodes under /sim/p created (path, outcome).
    touched: Vec<(String, Ended)>,
    /// Watched nodes to create or change, and what doing so gave, with
    /// when.
    to_create: VecDeque<String>,
    created: Vec<(String, Ended, u64)>,
    sessions: Vec<Arc<Mutex<SessionRec>>>,
    /// Requests that did not complete within 30 s.
    stuck: Vec<String>,
    /// Sessions the nemesis expired (id).
    expired_by_nemesis: BTreeSet<i64>,
    /// Every expiry the nemesis tried: (session, when).
    expiries: Vec<(i64, u64)>,
    /// Live clients, for the nemesis.
    live: Vec<Client>,
    tasks: Vec<JoinHandle<()>>,
}

const PROBES: usize = 3;

#[derive(Clone)]
struct Ctx {
    env: Env,
    net: Net,
    seed: u64,
    rec: Arc<Mutex<ProbeRec>>,
    next_client: Arc<AtomicUsize>,
}

impl Ctx {
    /// A builder for a new client: a connector of its own (so the nemesis
    /// can partition it) and a seeded host order.
    fn builder(&self) -> zkit::ClientBuilder {
        (self.env.builder)()
    }

    fn now(&self) -> u64 {
        self.env.clock.now()
    }
}

/// Waits for `f` at most 30 s; records a request that never completes.
async fn bounded<T>(ctx: &Ctx, what: &str, f: impl std::future::Future<Output = T>) -> Option<T> {
    if let Ok(v) = timeout(Duration::from_secs(30), f).await {
        Some(v)
    } else {
        lock(&ctx.rec)
            .stuck
            .push(format!("{what} at {}ms", ctx.now() / 1000));
        None
    }
}

/// Probe `p`: sessions one after another (a new one after an expiry), each
/// pipelining batches of requests until the stop.
async fn probe(ctx: Ctx, p: usize) {
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_mul(1_000_003).wrapping_add(p as u64));
    let mut k = 0u64;
    while !ctx.env.stopped() {
        let Ok(client) = ctx.builder().connect(&net::connect_string()).await else {
            ctx.env.pause(Duration::from_millis(100)).await;
            continue;
        };
        let sess = Arc::new(Mutex::new(SessionRec {
            probe: p,
            id: client.session_id().0,
            ..SessionRec::default()
        }));
        {
            let mut r = lock(&ctx.rec);
            r.sessions.push(sess.clone());
            r.live.push(client.clone());
        }
        let mut states = client.state_stream();
        let (s2, c2) = (sess.clone(), ctx.clone());
        let recorder = tokio::spawn(async move {
            while let Some(s) = states.next_state().await {
                lock(&s2).states.push((c2.now(), s));
            }
        });
        lock(&ctx.rec).tasks.push(recorder);
        if let Some(Ok(mut w)) = bounded(
            &ctx,
            "addWatch",
            client.add_watch("/sim/p", AddWatchMode::PersistentRecursive),
        )
        .await
        {
            lock(&sess).persistent = Some(Vec::new());
            let s2 = sess.clone();
            let t = tokio::spawn(async move {
                while let Ok(ev) = w.changed().await {
                    if let Some(evs) = lock(&s2).persistent.as_mut() {
                        evs.push((ev.event_type, ev.path));
                    }
                }
            });
            lock(&ctx.rec).tasks.push(t);
        }
        loop {
            if ctx.env.stopped() {
                // The harness closes the client after its last checks.
                lock(&sess).alive_at_end = !client.state().is_terminal();
                return;
            }
            let n = rng.random_range(1..=5);
            let mut batch: Vec<BoxFuture<'static, ()>> = Vec::new();
            for _ in 0..n {
                k += 1;
                let op = rng.random_range(0..11);
                let drop_after = rng
                    .random_bool(0.08)
                    .then(|| Duration::from_micros(rng.random_range(0..3000)));
                batch.push(one_op(&ctx, &client, &sess, p, k, op, drop_after));
            }
            futures::future::join_all(batch).await;
            if client.state().is_terminal() {
                // Expiry is final: a request now fails with SessionExpired,
                // at once.
                let r = timeout(Duration::from_secs(1), client.exists("/")).await;
                lock(&sess).after_expiry = Some(match r {
                    Ok(Err(Error::SessionExpired)) => "SessionExpired".into(),
                    Ok(Err(e)) => format!("error {e}"),
                    Ok(Ok(_)) => "answered".into(),
                    Err(_) => "no answer within 1 s".into(),
                });
                break;
            }
            ctx.env
                .pause(Duration::from_millis(rng.random_range(10..90)))
                .await;
        }
    }
}

/// How request `f` ended, `drop_after` dropping it early if given; `None`
/// if it did not complete within 30 s (recorded as stuck). `path_of` names
/// what an acknowledgement gave.
async fn settle<T>(
    ctx: &Ctx,
    what: &str,
    f: impl std::future::Future<Output = Result<T, Error>>,
    drop_after: Option<Duration>,
    path_of: impl FnOnce(&T) -> String,
) -> Option<Ended> {
    let dropped_or = async {
        match drop_after {
            None => Some(f.await),
            Some(d) => timeout(d, f).await.ok(),
        }
    };
    Some(match bounded(ctx, what, dropped_or).await? {
        None => Ended::Dropped,
        Some(r) => Ended::of(&r, path_of),
    })
}

/// Starts request(s) `op` now (so calls go out in this order) and returns
/// the future that records the outcome; `drop_after` drops the request's
/// future early.
fn one_op(
    ctx: &Ctx,
    client: &Client,
    sess: &Arc<Mutex<SessionRec>>,
    p: usize,
    k: u64,
    op: u32,
    drop_after: Option<Duration>,
) -> BoxFuture<'static, ()> {
    let ctx = ctx.clone();
    match op {
        0..=4 => {
            let f = client.create(
                &format!("/sim/log/p{p}-"),
                format!("{p}:{k}").as_bytes(),
                &CreateOptions::new(CreateMode::PersistentSequential),
            );
            async move {
                let Some(ended) =
                    settle(&ctx, "create", f, drop_after, |(path, _)| path.clone()).await
                else {
                    return;
                };
                lock(&ctx.rec).creates.push((p, k, ended));
            }
            .boxed()
        }
        5..=6 => {
            let path = format!("/sim/v/p{p}");
            let set = client.set_data(&path, k.to_string().as_bytes(), Version::Any);
            let get = client.get_data(&path);
            async move {
                let Some((set, get)) =
                    bounded(&ctx, "set+get", futures::future::join(set, get)).await
                else {
                    return;
                };
                let mut r = lock(&ctx.rec);
                if let (Ok(_), Ok((data, _))) = (&set, &get) {
                    let seen = String::from_utf8_lossy(data).into_owned();
                    if seen != k.to_string() {
                        r.stale_reads
                            .push(format!("probe {p} set {k} then read {seen}"));
                    }
                }
                r.sets.push((p, k, Ended::of(&set, |_| String::new())));
            }
            .boxed()
        }
        7 => {
            let path = format!("/sim/p/p{p}-{k}");
            let f = client.create(&path, b"", &CreateOptions::default());
            async move {
                let Some(ended) =
                    settle(&ctx, "create", f, drop_after, |(path, _)| path.clone()).await
                else {
                    return;
                };
                lock(&ctx.rec).touched.push((path, ended));
            }
            .boxed()
        }
        8 => {
            let path = format!("/sim/w/p{p}-{k}");
            let f = client.exists_and_watch(&path);
            let sess = sess.clone();
            async move {
                let Some(r) = bounded(&ctx, "exists+watch", f).await else {
                    return;
                };
                let watcher = match r {
                    Ok((None, w)) => w,
                    Ok((Some(_), _)) => {
                        lock(&ctx.rec)
                            .stale_reads
                            .push(format!("{path} exists before anyone created it"));
                        return;
                    }
                    Err(_) => return,
                };
                watch_until_fired(&ctx, &sess, path, watcher.changed());
            }
            .boxed()
        }
        9 => {
            // A node, then (pipelined) a read that watches its data.
            let path = format!("/sim/d/p{p}-{k}");
            let create = client.create(&path, b"0", &CreateOptions::default());
            let read = client.get_data_and_watch(&path);
            let sess = sess.clone();
            async move {
                let Some((_, read)) = bounded(
                    &ctx,
                    "create+getData+watch",
                    futures::future::join(create, read),
                )
                .await
                else {
                    return;
                };
                let Ok((data, _, watcher)) = read else {
                    return;
                };
                if &data[..] != b"0" {
                    lock(&ctx.rec)
                        .stale_reads
                        .push(format!("{path} read {data:?} before anyone changed it"));
                    return;
                }
                watch_until_fired(&ctx, &sess, path, watcher.changed());
            }
            .boxed()
        }
        _ => {
            // Set off a watch: create the node an exists watch waits for,
            // or change the data a data watch waits on.
            let Some(path) = lock(&ctx.rec).to_create.pop_front() else {
                return async {}.boxed();
            };
            let f = if path.starts_with("/sim/d/") {
                client
                    .set_data(&path, b"1", Version::Any)
                    .map(|r| r.map(|_| String::new()))
                    .boxed()
            } else {
                client
                    .create(&path, b"", &CreateOptions::default())
                    .map(|r| r.map(|(p, _)| p))
                    .boxed()
            };
            async move {
                let Some(ended) = settle(&ctx, "trigger", f, drop_after, Clone::clone).await else {
                    return;
                };
                let at = ctx.now();
                lock(&ctx.rec).created.push((path, ended, at));
            }
            .boxed()
        }
    }
}

/// Records a one-shot watch on `path` and, in a task, what it gives; the
/// path joins the nodes to set off.
fn watch_until_fired(
    ctx: &Ctx,
    sess: &Arc<Mutex<SessionRec>>,
    path: String,
    changed: impl std::future::Future<Output = Result<zkit::WatchedEvent, Error>> + Send + 'static,
) {
    let idx = {
        let mut s = lock(sess);
        s.watches.push((path.clone(), None));
        s.watches.len() - 1
    };
    lock(&ctx.rec).to_create.push_back(path);
    let sess = sess.clone();
    let t = tokio::spawn(async move {
        let r = changed.await;
        lock(&sess).watches[idx].1 = Some(r.map(|ev| ev.event_type).map_err(|e| e.to_string()));
    });
    lock(&ctx.rec).tasks.push(t);
}

// ---- the schedule -----------------------------------------------------------------

/// Where the recipe workload of a schedule works.
const RECIPE_BASE: &str = "/sim/recipe";

#[allow(clippy::too_many_lines)]
async fn schedule(opts: &SimOpts, seed: u64) -> Outcome {
    let origin = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let net = Net::new(seed ^ 0x005e_ed0f_5171);
    let fail = |why: String| Outcome {
        ok: false,
        line: json!({"seed": seed, "ok": false, "error": why}).to_string(),
        totals: BTreeMap::from([("harness_errors".into(), 1)]),
        digest: 0,
    };
    // The server's wall clock follows the virtual one, from a fixed date.
    let wall0: i64 = 1_800_000_000_000;
    let server = match Server::builder()
        .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .tick_time(Duration::from_millis(100))
        .wall_clock(move || wall0 + i64::try_from(origin.elapsed().as_millis()).unwrap_or(i64::MAX))
        .start()
        .await
    {
        Ok(s) => Arc::new(s),
        Err(e) => return fail(format!("server: {e}")),
    };
    net.set_server(server.clone());

    let (stop_tx, stop_rx) = watch::channel(false);
    let next_client = Arc::new(AtomicUsize::new(0));
    let builder_net = net.clone();
    let builder_next = next_client.clone();
    let env = Env {
        connect: net::connect_string(),
        base: RECIPE_BASE.into(),
        clock: Clock::Virtual(origin),
        stop: stop_rx,
        sessions: Arc::new(Mutex::new(Vec::new())),
        builder: Arc::new(move || {
            let idx = builder_next.fetch_add(1, Ordering::SeqCst);
            client_builder()
                .seed(seed.wrapping_mul(7919).wrapping_add(idx as u64))
                .connector(builder_net.connector(idx))
        }),
    };
    let ctx = Ctx {
        env: env.clone(),
        net: net.clone(),
        seed,
        rec: Arc::default(),
        next_client,
    };
    // The harness's own client: never partitioned (its connector index is
    // beyond every workload's) but it waits out a down server.
    let admin = async {
        let b = client_builder()
            .seed(seed)
            .connector(net.connector(1_000_000))
            .connect_timeout(Duration::from_secs(30));
        b.connect(&net::connect_string()).await
    };
    let admin = match admin.await {
        Ok(c) => c,
        Err(e) => return fail(format!("admin session: {e}")),
    };
    for (path, data) in [
        ("/sim", ""),
        ("/sim/log", ""),
        ("/sim/v", ""),
        ("/sim/p", ""),
        ("/sim/w", ""),
        ("/sim/d", ""),
    ] {
        if let Err(e) = admin
            .create(path, data.as_bytes(), &CreateOptions::default())
            .await
        {
            return fail(format!("create {path}: {e}"));
        }
    }
    if let Err(e) = suite::create_nodes(&admin, RECIPE_BASE).await {
        return fail(e);
    }
    for p in 0..PROBES {
        if let Err(e) = admin
            .create(&format!("/sim/v/p{p}"), b"0", &CreateOptions::default())
            .await
        {
            return fail(format!("create value node: {e}"));
        }
    }

    let recipe = suite::RECIPES[rng.random_range(0..suite::RECIPES.len())];
    let mut probes = Vec::new();
    for p in 0..PROBES {
        probes.push(tokio::spawn(probe(ctx.clone(), p)));
    }
    let records = suite::Records::default();
    let recipe_tasks = records.spawn(recipe, &env, seed);

    // The nemesis, then heal.
    let faults = nemesis(&ctx, &mut rng, Duration::from_secs(opts.secs)).await;
    net.heal();
    let healed_at = ctx.now();
    sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    let mut stuck = 0usize;
    for t in probes.into_iter().chain(recipe_tasks) {
        if timeout(Duration::from_secs(60), t).await.is_err() {
            stuck += 1;
        }
    }

    // The truth comes from a new session (the first one may have expired
    // while the server was down).
    let _ = admin.close().await;
    let admin = match client_builder()
        .connector(net.connector(1_000_002))
        .connect(&net::connect_string())
        .await
    {
        Ok(c) => c,
        Err(e) => return fail(format!("check session: {e}")),
    };
    // A node created now must reach every live session's persistent watch.
    let mut v = Violations::default();
    let live: Vec<Arc<Mutex<SessionRec>>> = lock(&ctx.rec).sessions.clone();
    if let Err(e) = admin
        .create("/sim/p/final", b"", &CreateOptions::default())
        .await
    {
        return fail(format!("create /sim/p/final: {e}"));
    }
    sleep(Duration::from_secs(5)).await;
    let mut tasks = std::mem::take(&mut lock(&ctx.rec).tasks);
    // Close every probe client still open (their watchers end).
    let clients = std::mem::take(&mut lock(&ctx.rec).live);
    for c in clients {
        let _ = timeout(Duration::from_secs(10), c.close()).await;
    }
    for t in tasks.drain(..) {
        if timeout(Duration::from_secs(30), t).await.is_err() {
            stuck += 1;
        }
    }
    if stuck > 0 {
        v.add("harness: task stuck after stop", format!("{stuck} tasks"));
    }

    // The truth.
    let tree = match read_tree(&admin).await {
        Ok(t) => t,
        Err(e) => return fail(format!("reading the tree: {e}")),
    };
    let expiries = lock(&ctx.rec).expiries.clone();
    let recipe_ops = records
        .check(recipe, &admin, RECIPE_BASE, &[], &expiries, &mut v)
        .await;
    let _ = admin.close().await;
    drop(server);
    let rec = lock(&ctx.rec);
    check_requests(&rec, &mut v);
    check_creates(&rec, &tree, &mut v);
    check_sets(&rec, &tree, &mut v);
    check_watches(&rec, &live, &tree, healed_at, &mut v);
    if !rec.creates.iter().any(|c| matches!(c.2, Ended::Ok(_))) {
        v.add("harness: the probes made no progress", String::new());
    }

    let sessions = rec.sessions.len();
    let watch_events: usize = live
        .iter()
        .map(|s| lock(s).persistent.as_ref().map_or(0, Vec::len))
        .sum();
    let oneshot_fired = live
        .iter()
        .map(|s| {
            lock(s)
                .watches
                .iter()
                .filter(|(_, r)| matches!(r, Some(Ok(_))))
                .count()
        })
        .sum::<usize>();
    let acked_creates = rec
        .creates
        .iter()
        .filter(|c| matches!(c.2, Ended::Ok(_)))
        .count();
    let unknown = rec
        .creates
        .iter()
        .chain(rec.sets.iter())
        .filter(|c| matches!(c.2, Ended::Unknown))
        .count();
    let expired = live
        .iter()
        .filter(|s| {
            lock(s)
                .states
                .iter()
                .any(|(_, st)| *st == SessionState::Expired)
        })
        .count();
    let ops = json!({
        "creates": rec.creates.len(),
        "creates_acked": acked_creates,
        "sets": rec.sets.len(),
        "outcome_unknown": unknown,
        "sessions": sessions,
        "sessions_expired": expired,
        "oneshot_watches": live.iter().map(|s| lock(s).watches.len()).sum::<usize>(),
        "oneshot_fired": oneshot_fired,
        "persistent_events": watch_events,
        "dials": net.dials(),
        "recipe": recipe,
        "recipe_ops": recipe_ops,
    });
    let violations: serde_json::Map<String, serde_json::Value> = v
        .by_kind
        .iter()
        .map(|(k, (n, ex))| (k.clone(), json!({"count": n, "example": ex})))
        .collect();
    let ok = v.is_empty();
    let virtual_s = origin.elapsed().as_secs_f64();
    let line = json!({
        "seed": seed,
        "faults": faults,
        "ops": ops,
        "violations": violations,
        "ok": ok,
        "virtual_s": (virtual_s * 10.0).round() / 10.0,
    })
    .to_string();
    let mut h = DefaultHasher::new();
    line.hash(&mut h);
    let mut tree_keys: Vec<_> = tree.iter().collect();
    tree_keys.sort();
    tree_keys.hash(&mut h);
    let mut totals = BTreeMap::from([
        ("schedules".to_string(), 1),
        ("faults".to_string(), faults.len() as u64),
        ("creates".to_string(), rec.creates.len() as u64),
        ("creates_acked".to_string(), acked_creates as u64),
        ("outcome_unknown".to_string(), unknown as u64),
        ("sessions".to_string(), sessions as u64),
        ("sessions_expired".to_string(), expired as u64),
        ("oneshot_fired".to_string(), oneshot_fired as u64),
        ("persistent_events".to_string(), watch_events as u64),
        (format!("recipe_{recipe}"), 1),
        (
            "violations".to_string(),
            v.by_kind.values().map(|(n, _)| n).sum::<u64>(),
        ),
    ]);
    totals.insert(
        "virtual_ms".into(),
        u64::try_from(origin.elapsed().as_millis()).unwrap_or(0),
    );
    Outcome {
        ok,
        line,
        totals,
        digest: h.finish(),
    }
}

/// Path → data of every node under /sim that the checks read.
async fn read_tree(c: &Client) -> Result<HashMap<String, String>, Error> {
    let mut out = HashMap::new();
    for dir in ["/sim/log", "/sim/v", "/sim/p", "/sim/w", "/sim/d"] {
        let (children, _) = c.get_children(dir).await?;
        let reads: Vec<_> = children
            .iter()
            .map(|ch| c.get_data(&format!("{dir}/{ch}")))
            .collect();
        for (ch, r) in children.iter().zip(futures::future::join_all(reads).await) {
            let (d, _) = r?;
            out.insert(
                format!("{dir}/{ch}"),
                String::from_utf8_lossy(&d).into_owned(),
            );
        }
    }
    Ok(out)
}

/// Acknowledged creates are there with their own data, nothing is applied
/// twice or after a definite failure, and each probe's creates were
/// applied in call order.
fn check_creates(rec: &ProbeRec, tree: &HashMap<String, String>, v: &mut Violations) {
    // (probe, k) → sequence numbers of the nodes holding it.
    let mut applied: BTreeMap<(usize, u64), Vec<u64>> = BTreeMap::new();
    for (path, data) in tree {
        let Some(name) = path.strip_prefix("/sim/log/") else {
            continue;
        };
        let parsed = data
            .split_once(':')
            .and_then(|(p, k)| Some((p.parse::<usize>().ok()?, k.parse::<u64>().ok()?)));
        let seq = name.rsplit('-').next().and_then(|s| s.parse::<u64>().ok());
        match (parsed, seq) {
            (Some(pk), Some(seq)) => applied.entry(pk).or_default().push(seq),
            _ => v.add("create: a node nobody wrote", format!("{path} = {data:?}")),
        }
    }
    let issued: HashMap<(usize, u64), &Ended> =
        rec.creates.iter().map(|(p, k, e)| ((*p, *k), e)).collect();
    for (&(p, k), seqs) in &applied {
        if seqs.len() > 1 {
            v.add(
                "create: applied twice",
                format!("probe {p} request {k} as {seqs:?}"),
            );
        }
        match issued.get(&(p, k)) {
            None => v.add(
                "create: a node nobody wrote",
                format!("probe {p} request {k}"),
            ),
            Some(e) if !e.maybe_applied() => v.add(
                "create: failed but applied",
                format!("probe {p} request {k}: {e:?}"),
            ),
            Some(_) => {}
        }
    }
    for (p, k, e) in &rec.creates {
        if let Ended::Ok(path) = e {
            match tree.get(path) {
                None => v.add(
                    "create: acknowledged but missing",
                    format!("probe {p} request {k} at {path}"),
                ),
                Some(d) if *d != format!("{p}:{k}") => v.add(
                    "create: reply of another request",
                    format!("probe {p} request {k} answered {path}, which holds {d}"),
                ),
                Some(_) => {}
            }
        }
    }
    for p in 0..PROBES {
        let mut order: Vec<(u64, u64)> = applied
            .iter()
            .filter(|((q, _), _)| *q == p)
            .flat_map(|(&(_, k), seqs)| seqs.iter().map(move |&s| (s, k)))
            .collect();
        order.sort_unstable();
        for w in order.windows(2) {
            if w[0].1 > w[1].1 {
                v.add(
                    "create: applied out of call order",
                    format!(
                        "probe {p}: request {} (seq {}) after request {} (seq {})",
                        w[1].1, w[1].0, w[0].1, w[0].0
                    ),
                );
            }
        }
    }
}

/// Every request completed, and failed (if it did) with ConnectionLoss or
/// SessionExpired only: each one here is made once, so no other error has
/// a cause.
fn check_requests(rec: &ProbeRec, v: &mut Violations) {
    let failed = rec
        .creates
        .iter()
        .chain(&rec.sets)
        .map(|(p, k, e)| (format!("probe {p} request {k}"), e))
        .chain(
            rec.created
                .iter()
                .map(|(path, e, _)| (path.clone(), e))
                .chain(rec.touched.iter().map(|(path, e)| (path.clone(), e))),
        );
    for (what, e) in failed {
        if let Ended::Failed(why) = e {
            v.add(
                "request: an error other than ConnectionLoss/SessionExpired",
                format!("{what}: {why}"),
            );
        }
    }
    for s in &rec.stuck {
        v.add("request: never completed", s.clone());
    }
}

/// Reads after writes see them; the final value is the last acknowledged
/// write or a later one of unknown outcome.
fn check_sets(rec: &ProbeRec, tree: &HashMap<String, String>, v: &mut Violations) {
    for s in &rec.stale_reads {
        v.add("read: did not see the write before it", s.clone());
    }
    for p in 0..PROBES {
        let Some(final_value) = tree
            .get(&format!("/sim/v/p{p}"))
            .and_then(|d| d.parse::<u64>().ok())
        else {
            v.add("set: value node unreadable", format!("probe {p}"));
            continue;
        };
        let sets: Vec<&(usize, u64, Ended)> = rec.sets.iter().filter(|s| s.0 == p).collect();
        let last_acked = sets
            .iter()
            .filter(|s| matches!(s.2, Ended::Ok(_)))
            .map(|s| s.1)
            .max()
            .unwrap_or(0);
        let allowed = final_value == last_acked
            || sets
                .iter()
                .any(|s| s.1 == final_value && s.1 > last_acked && s.2.maybe_applied());
        if !allowed {
            v.add(
                "set: final value is neither the last acknowledged write nor a later unknown one",
                format!("probe {p}: final {final_value}, last acknowledged {last_acked}"),
            );
        }
    }
}

/// One-shot and persistent watches, and the finality of expiry.
fn check_watches(
    rec: &ProbeRec,
    sessions: &[Arc<Mutex<SessionRec>>],
    tree: &HashMap<String, String>,
    healed_at: u64,
    v: &mut Violations,
) {
    let created_at: HashMap<&str, u64> = rec
        .created
        .iter()
        .filter(|c| matches!(c.1, Ended::Ok(_)))
        .map(|c| (c.0.as_str(), c.2))
        .collect();
    for s in sessions {
        let s = lock(s);
        let sid = format!("{:#x}", s.id);
        // Expiry is final.
        if let Some(i) = s.states.iter().position(|(_, st)| st.is_terminal()) {
            if let Some((at, after)) = s.states.get(i + 1) {
                v.add(
                    "session: a state after a terminal one",
                    format!(
                        "session {sid} of probe {}: {after:?} at {at}us after {:?}",
                        s.probe, s.states[i].1
                    ),
                );
            }
        }
        if let Some(r) = &s.after_expiry {
            if r != "SessionExpired" {
                v.add(
                    "session: an ended session's request did not fail with SessionExpired",
                    format!("session {sid}: {r}"),
                );
            }
        }
        if rec.expired_by_nemesis.contains(&s.id)
            && !s.states.iter().any(|(_, st)| *st == SessionState::Expired)
        {
            v.add(
                "session: an expiry its client never saw",
                format!("session {sid} of probe {}: states {:?}", s.probe, s.states),
            );
        }
        for (path, r) in &s.watches {
            let (expected, happened) = if path.starts_with("/sim/d/") {
                (
                    EventType::NodeDataChanged,
                    tree.get(path).is_some_and(|d| d == "1"),
                )
            } else {
                (EventType::NodeCreated, tree.contains_key(path))
            };
            match r {
                Some(Ok(t)) if *t == expected && !happened => v.add(
                    "watch: fired for a change that never happened",
                    format!("session {sid}: {path}: {t:?}"),
                ),
                Some(Ok(t)) if *t == expected => {}
                Some(Ok(other)) => v.add(
                    "watch: wrong event",
                    format!("session {sid}: {path}: {other:?}"),
                ),
                None => v.add(
                    "watch: watcher never ended",
                    format!("session {sid}: {path}"),
                ),
                Some(Err(e)) => {
                    // Lost: the node was created before the heal, and the
                    // session lived to the end (seconds after the heal).
                    let before_heal = created_at
                        .get(path.as_str())
                        .is_some_and(|&t| t < healed_at);
                    if happened && before_heal && s.alive_at_end {
                        v.add(
                            "watch: lost (change made, session alive, no event)",
                            format!("session {sid}: {path}: {e}"),
                        );
                    }
                }
            }
        }
        if let Some(evs) = &s.persistent {
            let mut seen = BTreeSet::new();
            for (t, path) in evs {
                if *t == EventType::NodeCreated {
                    if !seen.insert(path.clone()) {
                        v.add(
                            "persistent watch: the same creation twice",
                            format!("session {sid}: {path}"),
                        );
                    }
                    if !tree.contains_key(path) {
                        v.add(
                            "persistent watch: an event for a node that does not exist",
                            format!("session {sid}: {path}"),
                        );
                    }
                }
            }
            if s.alive_at_end && !seen.contains("/sim/p/final") {
                v.add(
                    "persistent watch: not re-registered (missed a creation after the heal)",
                    format!("session {sid} of probe {}", s.probe),
                );
            }
        }
    }
}

// ---- the nemesis ------------------------------------------------------------------

async fn nemesis(ctx: &Ctx, rng: &mut StdRng, dur: Duration) -> Vec<String> {
    let mut done = Vec::new();
    let end = Instant::now() + dur;
    sleep(Duration::from_millis(rng.random_range(50..500))).await;
    while Instant::now() < end {
        let clients = ctx.next_client.load(Ordering::SeqCst).max(1);
        let c = rng.random_range(0..clients);
        let at = ctx.now() / 1000;
        let ms =
            |lo: u64, hi: u64, rng: &mut StdRng| Duration::from_millis(rng.random_range(lo..hi));
        let what = match rng.random_range(0..8) {
            0 => {
                let n = ctx.net.cut(Some(c));
                format!("{at}ms cut client {c} ({n} connections)")
            }
            1 => {
                let late = Duration::from_micros(rng.random_range(0..60_000));
                let n = ctx.net.half_cut(c, late);
                format!("{at}ms cut client {c} on its side only, bytes on their way arrive {late:?} late ({n} connections)")
            }
            2 => {
                let host = rng
                    .random_bool(0.5)
                    .then(|| rng.random_range(0..net::HOSTS));
                let d = ms(200, 5000, rng);
                ctx.net.partition(c, host);
                sleep(d).await;
                ctx.net.heal();
                format!("{at}ms partition client {c} from host {host:?} for {d:?}")
            }
            3 => {
                let (lo, hi) = (
                    rng.random_range(1_000..100_000),
                    rng.random_range(100_000..600_000),
                );
                let d = ms(200, 3000, rng);
                ctx.net.slow(c, lo, hi);
                sleep(d).await;
                ctx.net.heal();
                format!("{at}ms slow client {c} to {lo}..{hi}us per chunk for {d:?}")
            }
            4 => {
                let d = ms(50, 3000, rng);
                ctx.net.server_down();
                sleep(d).await;
                ctx.net.heal();
                format!("{at}ms server down for {d:?}")
            }
            5 => {
                let live: Vec<Client> = lock(&ctx.rec)
                    .live
                    .iter()
                    .filter(|c| !c.state().is_terminal())
                    .cloned()
                    .collect();
                let recipe: Vec<Client> = lock(&ctx.env.sessions)
                    .iter()
                    .filter_map(zkit_recipes::Sessions::current)
                    .collect();
                let pool: Vec<(Client, bool)> = live
                    .into_iter()
                    .map(|c| (c, true))
                    .chain(recipe.into_iter().map(|c| (c, false)))
                    .collect();
                if pool.is_empty() {
                    continue;
                }
                let (victim, is_probe) = &pool[rng.random_range(0..pool.len())];
                let sid = victim.session_id();
                lock(&ctx.rec).expiries.push((sid.0, ctx.now()));
                let r = expire(ctx, sid.0, victim.session_password()).await;
                if r && *is_probe {
                    lock(&ctx.rec).expired_by_nemesis.insert(sid.0);
                }
                format!(
                    "{at}ms expire session {sid} ({})",
                    if r { "done" } else { "failed" }
                )
            }
            _ => {
                let d = ms(100, 1500, rng);
                sleep(d).await;
                format!("{at}ms quiet for {d:?}")
            }
        };
        done.push(what);
        sleep(Duration::from_millis(rng.random_range(50..600))).await;
    }
    done
}

/// Expires a session as ZooKeeper tests do: resume it from another client
/// and close it. The client it belongs to may take it back in between (a
/// session follows its latest connection, and the close then goes down
/// with the old one), so this repeats until resuming it answers
/// SessionExpired.
async fn expire(ctx: &Ctx, id: i64, password: zkit::Bytes) -> bool {
    for _ in 0..5 {
        let b = client_builder()
            .seed(ctx.seed)
            .connector(ctx.net.connector(1_000_001))
            .session(zkit::SessionId(id), password.clone());
        match timeout(Duration::from_secs(5), b.connect(&net::connect_string())).await {
            Ok(Err(Error::SessionExpired)) => return true,
            Ok(Ok(c)) => {
                let _ = timeout(Duration::from_secs(5), c.close()).await;
            }
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, &str)]) -> HashMap<String, String> {
        entries
            .iter()
            .map(|(p, d)| ((*p).to_string(), (*d).to_string()))
            .collect()
    }

    fn kinds(v: &Violations) -> Vec<&str> {
        v.by_kind.keys().map(String::as_str).collect()
    }

    fn ok(path: &str) -> Ended {
        Ended::Ok(path.into())
    }

    #[test]
    fn creates_in_call_order_with_their_own_data_pass() {
        let rec = ProbeRec {
            creates: vec![
                (0, 1, ok("/sim/log/p0-0000000000")),
                (0, 2, Ended::Unknown),
                (0, 3, ok("/sim/log/p0-0000000002")),
                (0, 4, Ended::Expired),
            ],
            ..ProbeRec::default()
        };
        let t = tree(&[
            ("/sim/log/p0-0000000000", "0:1"),
            ("/sim/log/p0-0000000001", "0:2"),
            ("/sim/log/p0-0000000002", "0:3"),
        ]);
        let mut v = Violations::default();
        check_creates(&rec, &t, &mut v);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn each_create_violation_fires() {
        let rec = ProbeRec {
            creates: vec![
                (0, 1, ok("/sim/log/p0-0000000005")),
                (0, 2, ok("/sim/log/p0-0000000001")),
                (0, 3, Ended::Expired),
                (0, 4, ok("/sim/log/p0-0000000009")),
                (0, 5, Ended::Unknown),
                (0, 6, Ended::Failed("NodeExists".into())),
            ],
            stuck: vec!["create at 10ms".into()],
            ..ProbeRec::default()
        };
        let t = tree(&[
            // 2 was applied before 1: out of call order.
            ("/sim/log/p0-0000000001", "0:2"),
            ("/sim/log/p0-0000000005", "0:1"),
            // 3 failed with SessionExpired, yet it is there.
            ("/sim/log/p0-0000000006", "0:3"),
            // 5 twice; 4 acknowledged a node holding 5.
            ("/sim/log/p0-0000000007", "0:5"),
            ("/sim/log/p0-0000000009", "0:5"),
            // Nobody wrote 0:77.
            ("/sim/log/p0-0000000010", "0:77"),
        ]);
        let mut v = Violations::default();
        check_creates(&rec, &t, &mut v);
        check_requests(&rec, &mut v);
        assert_eq!(
            kinds(&v),
            [
                "create: a node nobody wrote",
                "create: applied out of call order",
                "create: applied twice",
                "create: failed but applied",
                "create: reply of another request",
                "request: an error other than ConnectionLoss/SessionExpired",
                "request: never completed",
            ]
        );
        let missing = ProbeRec {
            creates: vec![(1, 1, ok("/sim/log/p1-0000000000"))],
            ..ProbeRec::default()
        };
        let mut v = Violations::default();
        check_creates(&missing, &tree(&[]), &mut v);
        assert_eq!(kinds(&v), ["create: acknowledged but missing"]);
    }

    #[test]
    fn the_final_value_is_the_last_acknowledged_write_or_a_later_unknown_one() {
        let rec = |sets: Vec<(usize, u64, Ended)>| ProbeRec {
            sets,
            ..ProbeRec::default()
        };
        let sets = vec![
            (0, 3, ok("")),
            (0, 7, Ended::Unknown),
            (0, 9, Ended::Expired),
            (1, 2, ok("")),
            (2, 1, ok("")),
        ];
        let base = [("/sim/v/p1", "2"), ("/sim/v/p2", "1")];
        for (final_p0, fine) in [("3", true), ("7", true), ("9", false), ("1", false)] {
            let mut entries = base.to_vec();
            entries.push(("/sim/v/p0", final_p0));
            let mut v = Violations::default();
            check_sets(&rec(sets.clone()), &tree(&entries), &mut v);
            assert_eq!(v.is_empty(), fine, "final {final_p0}: {v:?}");
        }
        let mut stale = rec(sets);
        stale.stale_reads.push("probe 0 set 3 then read 2".into());
        let mut v = Violations::default();
        check_sets(
            &stale,
            &tree(&[("/sim/v/p0", "3"), ("/sim/v/p1", "2"), ("/sim/v/p2", "1")]),
            &mut v,
        );
        assert_eq!(kinds(&v), ["read: did not see the write before it"]);
    }

    fn session(f: impl FnOnce(&mut SessionRec)) -> Arc<Mutex<SessionRec>> {
        let mut s = SessionRec {
            id: 1,
            alive_at_end: true,
            persistent: Some(vec![(EventType::NodeCreated, "/sim/p/final".into())]),
            ..SessionRec::default()
        };
        f(&mut s);
        Arc::new(Mutex::new(s))
    }

    fn watch_kinds(rec: &ProbeRec, s: Arc<Mutex<SessionRec>>, t: &[(&str, &str)]) -> Vec<String> {
        let mut v = Violations::default();
        check_watches(rec, &[s], &tree(t), 1_000, &mut v);
        v.by_kind.keys().cloned().collect()
    }

    #[test]
    fn a_healthy_session_passes_the_watch_checks() {
        let rec = ProbeRec {
            created: vec![("/sim/w/a".into(), ok("/sim/w/a"), 10)],
            ..ProbeRec::default()
        };
        let s = session(|s| {
            s.states = vec![
                (0, SessionState::Connected),
                (5, SessionState::Disconnected),
                (9, SessionState::Connected),
            ];
            s.watches = vec![("/sim/w/a".into(), Some(Ok(EventType::NodeCreated)))];
        });
        let t = [("/sim/w/a", ""), ("/sim/p/final", "")];
        assert!(watch_kinds(&rec, s, &t).is_empty());
    }

    #[test]
    fn each_watch_and_session_violation_fires() {
        let t = [("/sim/w/a", ""), ("/sim/p/final", ""), ("/sim/p/x", "")];
        let rec = ProbeRec {
            created: vec![("/sim/w/a".into(), ok("/sim/w/a"), 10)],
            ..ProbeRec::default()
        };
        let lost = session(|s| s.watches = vec![("/sim/w/a".into(), Some(Err("closed".into())))]);
        assert_eq!(
            watch_kinds(&rec, lost, &t),
            ["watch: lost (change made, session alive, no event)"]
        );
        let invented =
            session(|s| s.watches = vec![("/sim/w/b".into(), Some(Ok(EventType::NodeCreated)))]);
        assert_eq!(
            watch_kinds(&rec, invented, &t),
            ["watch: fired for a change that never happened"]
        );
        let wrong =
            session(|s| s.watches = vec![("/sim/w/a".into(), Some(Ok(EventType::NodeDeleted)))]);
        assert_eq!(watch_kinds(&rec, wrong, &t), ["watch: wrong event"]);
        // Data watches: set off by a change of the data to "1".
        let data = ProbeRec {
            created: vec![("/sim/d/a".into(), ok(""), 10)],
            ..ProbeRec::default()
        };
        let changed = [("/sim/d/a", "1"), ("/sim/p/final", "")];
        let unchanged = [("/sim/d/a", "0"), ("/sim/p/final", "")];
        let fired = || {
            session(|s| {
                s.watches = vec![("/sim/d/a".into(), Some(Ok(EventType::NodeDataChanged)))];
            })
        };
        assert!(watch_kinds(&data, fired(), &changed).is_empty());
        assert_eq!(
            watch_kinds(&data, fired(), &unchanged),
            ["watch: fired for a change that never happened"]
        );
        let missed = session(|s| s.watches = vec![("/sim/d/a".into(), Some(Err("closed".into())))]);
        assert_eq!(
            watch_kinds(&data, missed, &changed),
            ["watch: lost (change made, session alive, no event)"]
        );
        let twice = session(|s| {
            s.persistent.as_mut().unwrap().extend([
                (EventType::NodeCreated, "/sim/p/x".into()),
                (EventType::NodeCreated, "/sim/p/x".into()),
                (EventType::NodeCreated, "/sim/p/ghost".into()),
            ]);
        });
        assert_eq!(
            watch_kinds(&rec, twice, &t),
            [
                "persistent watch: an event for a node that does not exist",
                "persistent watch: the same creation twice"
            ]
        );
        let unregistered = session(|s| s.persistent = Some(Vec::new()));
        assert_eq!(
            watch_kinds(&rec, unregistered, &t),
            ["persistent watch: not re-registered (missed a creation after the heal)"]
        );
        let revived = session(|s| {
            s.alive_at_end = false;
            s.states = vec![(0, SessionState::Expired), (1, SessionState::Connected)];
            s.after_expiry = Some("answered".into());
        });
        assert_eq!(
            watch_kinds(&rec, revived, &t),
            [
                "session: a state after a terminal one",
                "session: an ended session's request did not fail with SessionExpired"
            ]
        );
        let mut expired = ProbeRec::default();
        expired.expired_by_nemesis.insert(1);
        let unseen = session(|s| s.states = vec![(0, SessionState::Connected)]);
        assert_eq!(
            watch_kinds(&expired, unseen, &t),
            ["session: an expiry its client never saw"]
        );
    }
}
