//! The workloads: each runs until told to stop, every client in a session of
//! its own (a `Sessions`, so it carries on after an expiry), and records
//! what it was told by ZooKeeper and by the recipes, with times from the
//! one process-wide clock. The checkers in `checks.rs` read the records.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::watch;
use zkit::{ClientBuilder, Version};
use zkit_recipes::{
    LeaderLatch, Lock, LockGuard, LockState, Queue, SessionSource, Sessions, SharedCount,
};

/// Microseconds since the schedule started, one clock for the harness and
/// its worker processes.
///
/// - `Wall(origin)`: the system clock (one machine, one clock; a step of
///   it during a schedule would skew the comparisons) minus the schedule's
///   origin, which the workers are given.
/// - `Virtual(origin)`: tokio's clock, for the simulation (paused time).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    Wall(u64),
    Virtual(tokio::time::Instant),
}

impl Clock {
    /// A wall clock starting now.
    pub(crate) fn start() -> Self {
        Self::Wall(wall_us())
    }

    pub(crate) fn now(self) -> u64 {
        match self {
            Self::Wall(origin) => wall_us().saturating_sub(origin),
            Self::Virtual(origin) => {
                u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
            }
        }
    }

    /// The origin to hand to a worker process (wall clocks only).
    pub(crate) fn origin(self) -> u64 {
        match self {
            Self::Wall(origin) => origin,
            Self::Virtual(_) => 0,
        }
    }
}

fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What every workload shares: where to connect, the clock, the stop
/// signal, and the sessions (the nemesis expires them).
#[derive(Clone)]
pub(crate) struct Env {
    pub(crate) connect: String,
    pub(crate) base: String,
    pub(crate) clock: Clock,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) sessions: Arc<Mutex<Vec<Sessions>>>,
    /// The builder of each new client's sessions (the simulation gives each
    /// client a connector of its own).
    pub(crate) builder: Arc<dyn Fn() -> ClientBuilder + Send + Sync>,
}

/// The clients' settings: 2 s sessions, and as long to connect or to wait
/// while disconnected.
pub(crate) fn client_builder() -> ClientBuilder {
    ClientBuilder::default()
        .session_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
}

impl Env {
    /// A new long-lived session for one client of a workload.
    pub(crate) fn sessions(&self) -> Sessions {
        let s = Sessions::new((self.builder)(), self.connect.clone());
        lock(&self.sessions).push(s.clone());
        s
    }

    pub(crate) fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once the workloads are told to stop.
    pub(crate) async fn stopping(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|s| *s).await;
    }

    /// Sleeps, returning early (false) when stopped.
    pub(crate) async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => !self.stopped(),
            () = self.stopping() => false,
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fenced increment acknowledged by ZooKeeper: the value written and the
/// fencing token it was written under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fenced {
    pub(crate) value: i64,
    pub(crate) token: i64,
}

/// Fenced increments of one counter node: acknowledged, refused by the
/// fence, and those whose outcome is unknown (ConnectionLoss).
#[derive(Debug, Default)]
pub(crate) struct FencedLog {
    pub(crate) acked: Vec<Fenced>,
    pub(crate) refused: u64,
    pub(crate) unknown: u64,
}

/// Increments the counter at `path` in a transaction fenced by `fence`.
async fn fenced_increment(
    source: &Sessions,
    path: &str,
    token: i64,
    fence: zkit::MultiWrite,
    log: &Mutex<FencedLog>,
) {
    let Ok(client) = source.client().await else {
        return;
    };
    let Ok((data, stat)) = client.get_data(path).await else {
        return;
    };
    let Some(cur) = std::str::from_utf8(&data)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    else {
        return;
    };
    let value = cur + 1;
    let r = fence
        .set_data(
            path,
            value.to_string().as_bytes(),
            Version::Exact(stat.version),
        )
        .commit()
        .await;
    let mut log = lock(log);
    match r {
        Ok(_) => log.acked.push(Fenced { value, token }),
        Err(e) if e.outcome_unknown() => log.unknown += 1,
        Err(_) => log.refused += 1,
    }
}

/// Waits at most 3 s for `acquire`; `None` once the workloads are told to
/// stop, `Some(None)` when it failed or timed out.
async fn acquire_or_stop<F>(env: &Env, acquire: F) -> Option<Option<LockGuard>>
where
    F: std::future::Future<Output = Result<LockGuard, zkit::Error>>,
{
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(3), acquire) => Some(r.ok().and_then(Result::ok)),
        () = env.stopping() => None,
    }
}

/// Keeps `guard` for `hold_for`, or until `states` says it no longer holds.
/// Returns when it was first told so (Suspended/Lost): `warned` if already
/// set, else the moment it saw it, else `None`.
async fn keep(
    env: &Env,
    guard: &LockGuard,
    states: &mut watch::Receiver<LockState>,
    hold_for: Duration,
    mut warned: Option<u64>,
) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + hold_for;
    while warned.is_none() {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            r = states.changed() => {
                if r.is_err() || !states.borrow().is_held() {
                    warned = Some(env.clock.now());
                }
            }
        }
    }
    warned.or_else(|| (!guard.state().is_held()).then(|| env.clock.now()))
}

/// Releases `guard` and returns the hold it was, ending now.
async fn release(env: &Env, who: usize, start: u64, warned: Option<u64>, guard: LockGuard) -> Hold {
    let end = env.clock.now();
    let token = guard.fencing_token();
    let session = guard.session_id().0;
    let _ = guard.release().await;
    Hold {
        who,
        start,
        end,
        warned,
        token,
        session,
    }
}

/// Tries `op` until it succeeds (a fault may be on), pausing 50 ms between
/// tries; `None` once the workloads are told to stop.
async fn until_ok<T, F, Fut>(env: &Env, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, zkit::Error>>,
{
    while !env.stopped() {
        if let Ok(v) = op().await {
            return Some(v);
        }
        env.pause(Duration::from_millis(50)).await;
    }
    None
}

/// Holds of a lock-like recipe by its contenders.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    pub(crate) holds: Vec<Hold>,
}

/// Until stopped: acquire, hold for a time drawn from `hold_ms` (less if
/// told it no longer holds), release, record the hold in `rec`, and wait a
/// time drawn from `gap_ms` before the next.
async fn hold_repeatedly<F, Fut>(
    env: &Env,
    who: usize,
    seed: u64,
    hold_ms: std::ops::Range<u64>,
    gap_ms: Option<std::ops::Range<u64>>,
    mut acquire: F,
    rec: &Mutex<Holds>,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<LockGuard, zkit::Error>>,
{
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    while !env.stopped() {
        let Some(acquired) = acquire_or_stop(env, acquire()).await else {
            break;
        };
        let Some(guard) = acquired else {
            env.pause(Duration::from_millis(50)).await;
            continue;
        };
        let start = env.clock.now();
        let mut states = guard.state_watch();
        let warned = (!guard.state().is_held()).then_some(start);
        let hold_for = Duration::from_millis(rng.random_range(hold_ms.clone()));
        let warned = keep(env, &guard, &mut states, hold_for, warned).await;
        let hold = release(env, who, start, warned, guard).await;
        lock(rec).holds.push(hold);
        if let Some(gap) = &gap_ms {
            env.pause(Duration::from_millis(rng.random_range(gap.clone())))
                .await;
        }
    }
}

// ---- lock --------------------------------------------------------------------

/// One hold of the lock by contender `who`: from `acquire` returning to
/// `release` being called; `warned` is when the guard first said it was no
/// longer held (Suspended or Lost).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hold {
    pub(crate) who: usize,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) warned: Option<u64>,
    pub(crate) token: i64,
    /// The session the hold was in.
    pub(crate) session: i64,
}

/// Contender ids from here on are worker processes.
pub(crate) const WORKER_IDS: usize = 100;

#[derive(Debug, Default)]
pub(crate) struct LockRecord {
    pub(crate) holds: Vec<Hold>,
    pub(crate) fenced: FencedLog,
}

pub(crate) async fn lock_contender(env: Env, who: usize, seed: u64, rec: Arc<Mutex<LockRecord>>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let sessions = env.sessions();
    let lock_path = format!("{}/lock", env.base);
    let counter = format!("{}/lock-counter", env.base);
    let lk = Lock::new(SessionSource::from(&sessions), lock_path);
    let fenced = Mutex::new(FencedLog::default());
    while !env.stopped() {
        let Some(acquired) = acquire_or_stop(&env, lk.acquire()).await else {
            break;
        };
        let Some(guard) = acquired else {
            env.pause(Duration::from_millis(50)).await;
            continue;
        };
        let fence_again_at_end = who >= WORKER_IDS;
        let start = env.clock.now();
        let mut states = guard.state_watch();
        let warned = (!guard.state().is_held()).then_some(start);
        fenced_increment(
            &sessions,
            &counter,
            guard.fencing_token(),
            guard.guarded(),
            &fenced,
        )
        .await;
        // The worker process holds longer, so that a pause often lands
        // inside a hold (and its write at the end meets the fence).
        let hold_for = if fence_again_at_end {
            Duration::from_millis(rng.random_range(100..600))
        } else {
            Duration::from_millis(rng.random_range(2..25))
        };
        let warned = keep(&env, &guard, &mut states, hold_for, warned).await;
        if fence_again_at_end {
            // A worker process writes again at the end of its hold: if it
            // was paused past its session in between, the fence must refuse.
            fenced_increment(
                &sessions,
                &counter,
                guard.fencing_token(),
                guard.guarded(),
                &fenced,
            )
            .await;
        }
        let hold = release(&env, who, start, warned, guard).await;
        lock(&rec).holds.push(hold);
    }
    let f = std::mem::take(&mut *lock(&fenced));
    {
        let mut r = lock(&rec);
        r.fenced.acked.extend(f.acked);
        r.fenced.refused += f.refused;
        r.fenced.unknown += f.unknown;
    }
    let _ = sessions.close().await;
}

// ---- counter -----------------------------------------------------------------

#[derive(Debug, Default)]
pub(crate) struct CounterRecord {
    pub(crate) acked: u64,
    pub(crate) unknown: u64,
}

pub(crate) async fn counter_client(env: Env, rec: Arc<Mutex<CounterRecord>>) {
    let sessions = env.sessions();
    let count = SharedCount::new(&sessions, format!("{}/counter", env.base), 0);
    while !env.stopped() {
        match tokio::time::timeout(Duration::from_secs(3), count.add(1)).await {
            Ok(Ok(_)) => lock(&rec).acked += 1,
            Ok(Err(e)) if e.outcome_unknown() => lock(&rec).unknown += 1,
            // A time-out drops a future whose write may have been sent.
            Err(_) => lock(&rec).unknown += 1,
            Ok(Err(_)) => {
                env.pause(Duration::from_millis(20)).await;
            }
        }
    }
    let _ = sessions.close().await;
}

// ---- queue -------------------------------------------------------------------

#[derive(Debug, Default)]
pub(crate) struct QueueRecord {
    /// Items whose put was acknowledged.
    pub(crate) put: Vec<String>,
    /// Items whose put has an unknown outcome.
    pub(crate) put_unknown: Vec<String>,
    /// How often each item's completion was acknowledged.
    pub(crate) completed: BTreeMap<String, u32>,
    /// Deliveries (claims taken), completed or not.
    pub(crate) delivered: u64,
    /// Items whose completion ended with an unknown outcome (the session
    /// ended first: the transaction may have applied).
    pub(crate) complete_unknown: std::collections::BTreeSet<String>,
}

pub(crate) async fn queue_producer(env: Env, rec: Arc<Mutex<QueueRecord>>) {
    let sessions = env.sessions();
    let q = Queue::new(&sessions, format!("{}/queue", env.base));
    let mut n = 0u64;
    while !env.stopped() {
        let item = format!("item-{n}");
        n += 1;
        match tokio::time::timeout(Duration::from_secs(3), q.put(item.as_bytes())).await {
            Ok(Ok(_)) => lock(&rec).put.push(item),
            Ok(Err(e)) if e.outcome_unknown() => lock(&rec).put_unknown.push(item),
            Err(_) => lock(&rec).put_unknown.push(item),
            Ok(Err(_)) => {}
        }
        env.pause(Duration::from_millis(5)).await;
    }
    let _ = sessions.close().await;
}

pub(crate) async fn queue_consumer(env: Env, rec: Arc<Mutex<QueueRecord>>) {
    let sessions = env.sessions();
    let q = Queue::new(&sessions, format!("{}/queue", env.base));
    while !env.stopped() {
        let claim = match q.poll_claimed(Duration::from_millis(200)).await {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(_) => {
                env.pause(Duration::from_millis(20)).await;
                continue;
            }
        };
        let item = String::from_utf8_lossy(claim.data()).into_owned();
        lock(&rec).delivered += 1;
        match claim.complete().await {
            Ok(()) => *lock(&rec).completed.entry(item).or_default() += 1,
            // Our claim was lost and the transaction refused: redelivered.
            Err(e) if e.is_fenced() => {}
            Err(_) => {
                lock(&rec).complete_unknown.insert(item);
            }
        }
    }
    let _ = sessions.close().await;
}

// ---- leader ------------------------------------------------------------------

#[derive(Debug, Default)]
pub(crate) struct LeaderRecord {
    pub(crate) fenced: FencedLog,
    /// Samples with more than one participant believing it leads: time and
    /// count.
    pub(crate) double: Vec<(u64, usize)>,
    pub(crate) samples: u64,
    /// Samples with exactly one leader.
    pub(crate) led: u64,
}

pub(crate) async fn leader_election(env: Env, participants: usize, rec: Arc<Mutex<LeaderRecord>>) {
    let path = format!("{}/leader", env.base);
    let counter = format!("{}/leader-counter", env.base);
    let mut latches = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..participants {
        let s = env.sessions();
        // Joining can fail while a fault is on: keep trying.
        let id = format!("p{i}");
        if let Some(l) = until_ok(&env, || LeaderLatch::start(&s, path.clone(), &id)).await {
            latches.push(l);
        }
        sessions.push(s);
    }
    let fenced = Mutex::new(FencedLog::default());
    let mut tick = 0u64;
    while !env.stopped() {
        let leaders: Vec<usize> = (0..latches.len())
            .filter(|&i| latches[i].is_leader())
            .collect();
        {
            let mut r = lock(&rec);
            r.samples += 1;
            if leaders.len() > 1 {
                r.double.push((env.clock.now(), leaders.len()));
            } else if leaders.len() == 1 {
                r.led += 1;
            }
        }
        tick += 1;
        if tick.is_multiple_of(3) {
            if let Some(&i) = leaders.first() {
                if let (Some(fence), Some(token)) =
                    (latches[i].guarded(), latches[i].fencing_token())
                {
                    fenced_increment(&sessions[i], &counter, token, fence, &fenced).await;
                }
            }
        }
        env.pause(Duration::from_millis(10)).await;
    }
    for l in latches {
        let _ = l.close().await;
    }
    for s in sessions {
        let _ = s.close().await;
    }
    let f = std::mem::take(&mut *lock(&fenced));
    lock(&rec).fenced = f;
}

// ---- semaphore ---------------------------------------------------------------

/// Leases allowed at once.
pub(crate) const SEMAPHORE_LEASES: usize = 2;

pub(crate) async fn semaphore_holder(env: Env, who: usize, seed: u64, rec: Arc<Mutex<Holds>>) {
    let sessions = env.sessions();
    let sem = zkit_recipes::Semaphore::new(
        &sessions,
        format!("{}/semaphore", env.base),
        SEMAPHORE_LEASES,
    );
    hold_repeatedly(&env, who, seed, 5..40, None, || sem.acquire(), &rec).await;
    let _ = sessions.close().await;
}

// ---- config subscription -----------------------------------------------------

#[derive(Debug, Default)]
pub(crate) struct ConfigRecord {
    /// Values whose publication was acknowledged, in order.
    pub(crate) published: Vec<i64>,
    /// Per subscriber: the values it saw, in order (changes only).
    pub(crate) observed: Vec<Vec<i64>>,
    /// Per subscriber: whether it reached the final value after the stop.
    pub(crate) reached: Vec<bool>,
}

pub(crate) async fn config_publisher(env: Env, rec: Arc<Mutex<ConfigRecord>>) {
    let sessions = env.sessions();
    let path = format!("{}/config", env.base);
    let mut value = 0i64;
    while !env.stopped() {
        value += 1;
        let Ok(client) = sessions.client().await else {
            env.pause(Duration::from_millis(20)).await;
            continue;
        };
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            zkit_recipes::config::publish(&client, &path, &value, Version::Any),
        )
        .await;
        if let Ok(Ok(_)) = r {
            lock(&rec).published.push(value);
        }
        env.pause(Duration::from_millis(20)).await;
    }
    let _ = sessions.close().await;
}

pub(crate) async fn config_subscriber(env: Env, idx: usize, rec: Arc<Mutex<ConfigRecord>>) {
    let sessions = env.sessions();
    let path = format!("{}/config", env.base);
    let sub = zkit_recipes::ConfigSubscription::<i64>::start(sessions.clone(), path.clone());
    let mut seen: Vec<i64> = Vec::new();
    let sample = |seen: &mut Vec<i64>| {
        if let Some(v) = sub.current() {
            if seen.last() != Some(&v.value) {
                seen.push(v.value);
            }
        }
    };
    while !env.stopped() {
        sample(&mut seen);
        env.pause(Duration::from_millis(5)).await;
    }
    // After the stop (the publisher is done): the subscription must reach
    // the node's final value.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reached = false;
    while Instant::now() < deadline {
        sample(&mut seen);
        let truth = match sessions.client().await {
            Ok(c) => c
                .get_data(&path)
                .await
                .ok()
                .and_then(|(d, _)| serde_json::from_slice::<i64>(&d).ok()),
            Err(_) => None,
        };
        if truth.is_some() && truth == seen.last().copied() {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let mut r = lock(&rec);
        if r.observed.len() <= idx {
            r.observed.resize(idx + 1, Vec::new());
            r.reached.resize(idx + 1, false);
        }
        r.observed[idx] = seen;
        r.reached[idx] = reached;
    }
    drop(sub);
    let _ = sessions.close().await;
}

/// A worker process's lock records as JSON.
pub(crate) fn worker_report(rec: &LockRecord) -> serde_json::Value {
    serde_json::json!({
        "holds": rec.holds.iter().map(|h| serde_json::json!([h.who, h.start, h.end, h.warned, h.token, h.session])).collect::<Vec<_>>(),
        "acked": rec.fenced.acked.iter().map(|f| serde_json::json!([f.value, f.token])).collect::<Vec<_>>(),
        "refused": rec.fenced.refused,
        "unknown": rec.fenced.unknown,
    })
}

/// Adds a worker process's report to the lock records.
pub(crate) fn merge_worker(rec: &mut LockRecord, report: &serde_json::Value) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let i = |v: &serde_json::Value| v.as_i64().unwrap_or(0);
    for h in report["holds"].as_array().into_iter().flatten() {
        rec.holds.push(Hold {
            who: usize::try_from(n(&h[0])).unwrap_or(usize::MAX),
            start: n(&h[1]),
            end: n(&h[2]),
            warned: h[3].as_u64(),
            token: i(&h[4]),
            session: i(&h[5]),
        });
    }
    for f in report["acked"].as_array().into_iter().flatten() {
        rec.fenced.acked.push(Fenced {
            value: i(&f[0]),
            token: i(&f[1]),
        });
    }
    rec.fenced.refused += n(&report["refused"]);
    rec.fenced.unknown += n(&report["unknown"]);
}

// ---- read/write lock ---------------------------------------------------------

/// Read/write contender ids from here on are readers.
pub(crate) const READER_IDS: usize = 10;

pub(crate) async fn rw_contender(env: Env, who: usize, seed: u64, rec: Arc<Mutex<Holds>>) {
    let sessions = env.sessions();
    let rw = zkit_recipes::ReadWriteLock::new(&sessions, format!("{}/rwlock", env.base));
    let side = if who >= READER_IDS {
        rw.read()
    } else {
        rw.write()
    };
    hold_repeatedly(&env, who, seed, 2..30, Some(0..10), || side.acquire(), &rec).await;
    let _ = sessions.close().await;
}

// ---- group membership --------------------------------------------------------

#[derive(Debug, Default)]
pub(crate) struct MembershipRecord {
    /// Members that joined (and rejoined after expiries, by themselves).
    pub(crate) joined: usize,
    /// Whether the observer's view reached the truth after the heal.
    pub(crate) converged: Option<bool>,
    /// What it saw last, and the truth then.
    pub(crate) last_view: Vec<String>,
    pub(crate) truth: Vec<String>,
    /// View changes the observer saw.
    pub(crate) changes: u64,
}

pub(crate) async fn membership(env: Env, members: usize, rec: Arc<Mutex<MembershipRecord>>) {
    let path = format!("{}/group", env.base);
    let mut joined = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..members {
        let s = env.sessions();
        let id = format!("m{i}");
        if let Some(m) = until_ok(&env, || {
            zkit_recipes::GroupMember::join(&s, &path, &id, b"up")
        })
        .await
        {
            joined.push(m);
        }
        sessions.push(s);
    }
    let observer_sessions = env.sessions();
    let mut set = zkit_recipes::MemberSet::watch(&observer_sessions, &path);
    let mut changes = 0u64;
    while !env.stopped() {
        tokio::select! {
            r = set.changed() => {
                if r.is_ok() {
                    changes += 1;
                } else {
                    env.pause(Duration::from_millis(20)).await;
                }
            }
            () = env.stopping() => break,
        }
    }
    // After the heal every member is back (the members rejoin by
    // themselves after an expiry): the view must reach the truth.
    let want: Vec<String> = (0..members).map(|i| format!("m{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut view, mut truth) = (Vec::new(), Vec::new());
    let mut converged = false;
    while Instant::now() < deadline {
        view = set.borrow().keys().cloned().collect();
        truth = match observer_sessions.client().await {
            Ok(c) => c
                .get_children(&path)
                .await
                .map(|(mut ch, _)| {
                    ch.sort();
                    ch
                })
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if view == want && truth == want {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let mut r = lock(&rec);
        r.joined = joined.len();
        r.converged = Some(converged);
        r.last_view = view;
        r.truth = truth;
        r.changes = changes;
    }
    drop(set);
    for m in joined {
        let _ = m.leave().await;
    }
    for s in sessions {
        let _ = s.close().await;
    }
    let _ = observer_sessions.close().await;
}

// ---- service discovery -------------------------------------------------------

#[derive(Debug, Default)]
pub(crate) struct DiscoveryRecord {
    /// Instances registered (they stay registered by themselves).
    pub(crate) registered: usize,
    /// Per instance id: the highest payload version an update of it was
    /// acknowledged with.
    pub(crate) acked: BTreeMap<String, i64>,
    /// Updates acknowledged.
    pub(crate) updates: u64,
    /// Cache changes the observer saw.
    pub(crate) changes: u64,
    /// Whether the observer's cache reached the truth after the heal.
    pub(crate) converged: Option<bool>,
    /// What the cache held last, and the truth then: (id, payload).
    pub(crate) last_view: Vec<(String, i64)>,
    pub(crate) truth: Vec<(String, i64)>,
}

/// `instances` instances of service "api" register (each in a session of
/// its own) and have their payload updated in turn, while an observer's
/// cache follows them; after the heal the cache must hold every instance
/// with its latest payload, and no acknowledged update may be lost (an
/// instance re-registered after an expiry carries its latest data).
pub(crate) async fn discovery(env: Env, instances: usize, rec: Arc<Mutex<DiscoveryRecord>>) {
    use zkit_recipes::discovery::{ServiceDiscovery, ServiceInstance};
    let base = format!("{}/services", env.base);
    let instance = |i: usize, version: i64| {
        ServiceInstance::new("api", "127.0.0.1", 8000 + u16::try_from(i).unwrap_or(0))
            .id(format!("i{i}"))
            .payload(version)
    };
    let mut regs = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..instances {
        let s = env.sessions();
        let d = ServiceDiscovery::<i64>::new(s.clone(), base.clone());
        if let Some(r) = until_ok(&env, || d.register(instance(i, 0))).await {
            regs.push((i, r));
        }
        sessions.push(s);
    }
    let observer = env.sessions();
    let od = ServiceDiscovery::<i64>::new(observer.clone(), base.clone());
    let mut cache = od.cache("api");
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let (mut changes, mut updates, mut version, mut turn) = (0u64, 0u64, 0i64, 0usize);
    let mut next_update = Instant::now();
    while !env.stopped() && !regs.is_empty() {
        tokio::select! {
            r = cache.changed() => {
                if r.is_ok() {
                    changes += 1;
                } else {
                    env.pause(Duration::from_millis(20)).await;
                }
            }
            () = tokio::time::sleep_until(next_update) => {
                next_update = Instant::now() + Duration::from_millis(40);
                let (i, r) = &regs[turn % regs.len()];
                turn += 1;
                version += 1;
                if let Ok(Ok(())) =
                    tokio::time::timeout(Duration::from_secs(3), r.update(instance(*i, version))).await
                {
                    acked.insert(format!("i{i}"), version);
                    updates += 1;
                }
            }
            () = env.stopping() => break,
        }
    }
    // After the heal: the cache reaches the truth, which holds every
    // instance.
    let view_of = |list: Vec<ServiceInstance<i64>>| {
        let mut v: Vec<(String, i64)> = list
            .into_iter()
            .map(|s| (s.id, s.payload.unwrap_or(-1)))
            .collect();
        v.sort();
        v
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut view, mut truth) = (Vec::new(), Vec::new());
    let mut converged = false;
    while Instant::now() < deadline {
        view = view_of(cache.instances());
        truth = view_of(od.query_instances("api").await.unwrap_or_default());
        if view == truth && truth.len() == regs.len() {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let mut r = lock(&rec);
        r.registered = regs.len();
        r.acked = acked;
        r.updates = updates;
        r.changes = changes;
        r.converged = Some(converged);
        r.last_view = view;
        r.truth = truth;
    }
    drop(cache);
    for (_, r) in regs {
        let _ = r.unregister().await;
    }
    for s in sessions {
        let _ = s.close().await;
    }
    let _ = observer.close().await;
}

// ---- work partitioning -------------------------------------------------------

/// Items shared out by the partition workload.
pub(crate) const PARTITION_ITEMS: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct PartitionRecord {
    /// Per item, each member's work on it: from the grant to its drop,
    /// warned when the grant was revoked.
    pub(crate) holds: BTreeMap<String, Vec<Hold>>,
    /// Grants made.
    pub(crate) grants: u64,
    /// Times a member left and joined again.
    pub(crate) leaves: u64,
    /// Whether, after the heal, every item was granted and the shares were
    /// even; and the shares seen last (member -> items).
    pub(crate) settled: Option<bool>,
    pub(crate) last_shares: BTreeMap<usize, usize>,
}

/// `members` partitioners over [`PARTITION_ITEMS`] items, each working on
/// its grant until it is revoked (then it drops it at once). Members leave
/// and join again at times drawn from `seed` (churn) until the stop.
pub(crate) async fn partition(
    env: Env,
    members: usize,
    seed: u64,
    rec: Arc<Mutex<PartitionRecord>>,
) {
    use rand::{Rng, SeedableRng};
    let path = format!("{}/partition", env.base);
    let items: Vec<String> = (0..PARTITION_ITEMS).map(|i| format!("i{i}")).collect();
    // What each member works on now.
    let current: Arc<Mutex<BTreeMap<usize, Vec<String>>>> = Arc::default();
    let (done_tx, done_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut sessions = Vec::new();
    for who in 0..members {
        let s = env.sessions();
        sessions.push(s.clone());
        let (env, rec, current, items, path) = (
            env.clone(),
            rec.clone(),
            current.clone(),
            items.clone(),
            path.clone(),
        );
        let mut done = done_rx.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(who as u64));
        tasks.push(tokio::spawn(async move {
            while !*done.borrow() {
                let Ok(mut part) =
                    zkit_recipes::Partitioner::new(&s, &path, &format!("m{who}"), items.clone())
                else {
                    return;
                };
                // Member 0 stays; the others leave after a while (until the
                // stop, after which everyone stays to settle).
                let leave_at = (who > 0)
                    .then(|| Instant::now() + Duration::from_millis(rng.random_range(1000..4000)));
                let leave = async {
                    match leave_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::pin!(leave);
                let mut left = false;
                loop {
                    let event = tokio::select! {
                        e = part.next() => e,
                        _ = done.wait_for(|d| *d) => break,
                        () = &mut leave, if !env.stopped() => {
                            left = true;
                            break;
                        }
                    };
                    let grant = match event {
                        Ok(zkit_recipes::PartitionEvent::Acquired(g)) => g,
                        Ok(_) => continue,
                        Err(zkit::Error::Closed) => break,
                        Err(_) => {
                            env.pause(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let start = env.clock.now();
                    let session = grant.session_id().map_or(0, |s| s.0);
                    let mine: Vec<String> = grant.items().map(str::to_string).collect();
                    lock(&current).insert(who, mine.clone());
                    lock(&rec).grants += 1;
                    let (warned, leaving) = tokio::select! {
                        () = grant.revoked() => (Some(env.clock.now()), false),
                        _ = done.wait_for(|d| *d) => (None, false),
                        () = &mut leave, if !env.stopped() => (None, true),
                    };
                    lock(&current).remove(&who);
                    let end = env.clock.now();
                    {
                        let mut r = lock(&rec);
                        for item in &mine {
                            r.holds.entry(item.clone()).or_default().push(Hold {
                                who,
                                start,
                                end,
                                warned,
                                token: grant.fencing_token(item).unwrap_or(0),
                                session,
                            });
                        }
                    }
                    drop(grant);
                    if leaving {
                        left = true;
                        break;
                    }
                }
                part.close().await;
                if !left {
                    break;
                }
                lock(&rec).leaves += 1;
                env.pause(Duration::from_millis(rng.random_range(100..800)))
                    .await;
            }
        }));
    }
    env.stopping().await;
    // After the heal: every item granted once, shares even.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut settled = false;
    let mut shares = BTreeMap::new();
    while Instant::now() < deadline {
        {
            let c = lock(&current);
            shares = c.iter().map(|(w, i)| (*w, i.len())).collect();
            let owned: std::collections::BTreeSet<&String> = c.values().flatten().collect();
            let (min, max) = (
                shares.values().copied().min().unwrap_or(0),
                shares.values().copied().max().unwrap_or(0),
            );
            if c.len() == members && owned.len() == PARTITION_ITEMS && max - min <= 1 {
                settled = true;
            }
        }
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let mut r = lock(&rec);
        r.settled = Some(settled);
        r.last_shares = shares;
    }
    let _ = done_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    for s in sessions {
        let _ = s.close().await;
    }
}

// ---- scheduled jobs -----------------------------------------------------------

/// Shards of the scheduler workload's job.
pub(crate) const SCHEDULER_SHARDS: u32 = 3;

#[derive(Debug, Default)]
pub(crate) struct SchedulerRecord {
    /// Per (fire, shard), each run of it: from its start to its end, warned
    /// when the run was cancelled (its instance lost or doubted the shard).
    pub(crate) runs: BTreeMap<(i64, u32), Vec<Hold>>,
    /// Runs whose fenced effect went through: (fire, shard, attempt, who).
    pub(crate) effective: std::collections::BTreeSet<(i64, u32, u32, usize)>,
    /// The run records, read after the stop.
    pub(crate) records: Vec<zkit_recipes::scheduler::RunRecord>,
    /// The latest recorded fire (epoch ms of the job's clock) when the
    /// workloads were told to stop, and whether every shard recorded a
    /// later fire after the heal.
    pub(crate) progressed: Option<bool>,
    /// Runs started.
    pub(crate) started: u64,
}

/// `instances` schedulers share a job of [`SCHEDULER_SHARDS`] shards firing
/// every 100 ms on the harness's clock (virtual in the simulation). Each
/// run writes its fenced effect (`effects/<fire>-<shard>-<attempt>`) and
/// is recorded as a hold of its (fire, shard).
pub(crate) async fn scheduler(env: Env, instances: usize, rec: Arc<Mutex<SchedulerRecord>>) {
    use zkit_recipes::scheduler::{JobSpec, Jobs, Scheduler, SchedulerOptions};
    let root = format!("{}/scheduler", env.base);
    let effects = format!("{root}/effects");
    // Epoch ms on the harness's clock: fire times follow virtual time in the
    // simulation, and are the same in every replay.
    let clock = env.clock;
    let now_ms = move || 1_700_000_000_000 + i64::try_from(clock.now() / 1000).unwrap_or(0);
    let admin = env.sessions();
    let jobs = Jobs::new(&admin, &root);
    let spec = JobSpec::every("job", Duration::from_millis(100))
        .expect("a valid interval")
        .shards(SCHEDULER_SHARDS)
        .history(100_000)
        .anchor_ms(now_ms());
    loop {
        let ok = match admin.client().await {
            Ok(c) => c.ensure_path(&effects).await.is_ok(),
            Err(_) => false,
        };
        if ok && jobs.define(&spec).await.is_ok() {
            break;
        }
        if !env.pause(Duration::from_millis(50)).await {
            return;
        }
    }
    let mut running = Vec::new();
    for who in 0..instances {
        let s = env.sessions();
        let (env2, rec2, effects) = (env.clone(), rec.clone(), effects.clone());
        let options = SchedulerOptions::default()
            .resync(Duration::from_millis(500))
            .cancel_grace(Duration::from_secs(1))
            .clock(now_ms);
        let started = Scheduler::new(&s, &root, &format!("s{who}"))
            .options(options)
            .handle("job", move |ctx| {
                let (env, rec, effects) = (env2.clone(), rec2.clone(), effects.clone());
                async move {
                    let start = env.clock.now();
                    lock(&rec).started += 1;
                    let key = (ctx.fire_ms(), ctx.shard());
                    let attempt = ctx.attempt();
                    let session = ctx.client().session_id().0;
                    let work = async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let path = format!("{effects}/{}-{}-{attempt}", key.0, key.1);
                        loop {
                            match ctx
                                .guarded()
                                .create(&path, b"", &zkit::CreateOptions::default())
                                .commit()
                                .await
                            {
                                Ok(_) => return Ok(()),
                                Err(e) if e.is_retryable() => {
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                // Our own create whose reply was lost.
                                Err(zkit::Error::MultiFailed { source, .. })
                                    if *source == zkit::Error::NodeExists =>
                                {
                                    return Ok(())
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    };
                    let mut warned = None;
                    let r = tokio::select! {
                        r = work => r,
                        () = ctx.cancelled() => {
                            warned = Some(env.clock.now());
                            Err(zkit::Error::Closed)
                        }
                    };
                    let end = env.clock.now();
                    let mut g = lock(&rec);
                    if r.is_ok() {
                        g.effective.insert((key.0, key.1, attempt, who));
                    }
                    g.runs.entry(key).or_default().push(Hold {
                        who,
                        start,
                        end,
                        warned,
                        token: ctx.fencing_token(),
                        session,
                    });
                    r
                }
            })
            .start();
        match started {
            Ok(r) => running.push(r),
            Err(_) => return,
        }
    }
    env.stopping().await;
    let latest = |records: &[zkit_recipes::scheduler::RunRecord], shard: u32| {
        records
            .iter()
            .filter(|r| r.shard == shard && r.outcome == zkit_recipes::scheduler::Outcome::Ok)
            .map(|r| r.fire_ms)
            .max()
            .unwrap_or(0)
    };
    // After the heal: every shard records a fire later than any before.
    let stop_ms = now_ms();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut progressed = false;
    let mut records = Vec::new();
    while Instant::now() < deadline {
        if let Ok(r) = jobs.history("job").await {
            records = r;
            if (0..SCHEDULER_SHARDS).all(|s| latest(&records, s) > stop_ms) {
                progressed = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in running {
        r.close().await;
    }
    if let Ok(r) = jobs.history("job").await {
        records = r;
    }
    {
        let mut g = lock(&rec);
        g.records = records;
        g.progressed = Some(progressed);
    }
    let _ = admin.close().await;
}
