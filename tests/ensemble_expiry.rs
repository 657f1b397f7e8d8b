//! Session expiry, whole-ensemble restarts, quorum loss and a crash soak on
//! a real 3-node Apache ZooKeeper 3.8 ensemble (`zkit-testcontainers`, one
//! ensemble at a time: the tests take a serial lock).
//!
//! - **Expiry is final**, whether the server reports it on reconnect (session
//!   ended with closeSession from elsewhere, or a partition longer than the
//!   session timeout) or the client declares it (every member unreachable, or
//!   the whole ensemble down, for 4/3 of the session timeout): the state stream
//!   reports `Disconnected` then `Expired`, every pending and later request
//!   fails with `SessionExpired`, the session's ephemerals are gone, one-shot
//!   watchers resolve with `Err(SessionExpired)`, persistent watcher streams
//!   end, and no new session is created behind the user's back (same session
//!   id, state stays `Expired`, no connection attempt afterwards).
//! - **Whole-ensemble restart** within the session timeout is ridden out with
//!   the same session; a longer outage ends in `Expired`, never in a silent
//!   new session.
//! - **No quorum**: requests fail with `ConnectionLoss` within the request
//!   timeout; the session resumes once a quorum is back.
//! - **Soak**: three sessions write while members are killed (SIGKILL) and
//!   restarted; every acknowledged write is in the final state.
//!
//! Logs: `RUST_LOG=zkit=debug cargo test --test ensemble_expiry -- --nocapture`.
//!
//! # Recipe: carrying on after `Expired`
//!
//! A [`Client`] whose session expired stays expired: it never opens a new
//! session by itself, because the ephemerals and watches of the old session
//! are gone and only the application knows what to rebuild. To continue,
//! connect a new `Client` and restore what the old session owned (see
//! `carry_on_after_expiry` below, exercised by
//! `recipe_fresh_client_after_expiry`):
//!
//! ```ignore
//! // 1. Notice the expiry: the state stream ends with `Expired` (or any
//! //    request fails with `Error::SessionExpired`).
//! while let Some(state) = states.next_state().await {
//!     if state == SessionState::Expired { break; }
//! }
//! // 2. A new client: a new session id and password. Replace every clone of
//! //    the old handle (e.g. behind an `ArcSwap` / `RwLock`).
//! let zk = Client::builder().session_timeout(timeout).connect(hosts).await?;
//! // 3. Re-create the ephemerals. The old session's node can still be there
//! //    when the client declared the expiry on its own clock before the
//! //    server did (all servers unreachable, or a leader election reset the
//! //    server's timers): remove it only if the old session owns it. After a
//! //    ConnectionLoss the create may have been applied: a node owned by the
//! //    new session is ours.
//! loop {
//!     match zk.create(path, data, &CreateOptions::new(CreateMode::Ephemeral)).await {
//!         Ok(_) => break,
//!         Err(Error::ConnectionLoss) => continue,
//!         Err(Error::NodeExists) => match zk.exists(path).await? {
//!             Some(s) if s.ephemeral_owner == zk.session_id().0 => break,
//!             Some(s) if s.ephemeral_owner == old_session.0 => {
//!                 match zk.delete(path, Version::Exact(s.version)).await {
//!                     Ok(()) | Err(Error::NoNode) => {}
//!                     Err(e) => return Err(e),
//!                 }
//!             }
//!             Some(_) => return Err(Error::NodeExists), // held by someone else
//!             None => {}                                 // gone meanwhile: retry
//!         },
//!         Err(e) => return Err(e),
//!     }
//! }
//! // 4. Re-read and re-watch: watchers of the old client ended with
//! //    `SessionExpired` and events in between were not recorded.
//! let (data, stat, watcher) = zk.get_data_and_watch("/config").await?;
//! let tree = zk.add_watch("/jobs", AddWatchMode::PersistentRecursive).await?;
//! ```

mod common;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_err, eventually};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Mutex, MutexGuard};
use zkit::{
    AddWatchMode, Client, ClientBuilder, CreateMode, CreateOptions, Error, EventType,
    OneshotWatcher, PersistentWatcher, SessionId, SessionState, StateStream, Version,
};
use zkit_testcontainers::{
    expire_session, proxy_connect_string, Ensemble, EnsembleBuilder, FaultMode, FaultProxy, Mode,
};

/// Two cores: one ensemble (three JVMs) at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The fixture's default tickTime is 200 ms, so sessions are clamped to
/// 0.4..=4 s unless `maxSessionTimeout` is raised.
const SHORT: Duration = Duration::from_secs(4);

/// How long "nothing more happens" is watched for.
const QUIET: Duration = Duration::from_secs(3);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Starts a 3-node ensemble under the serial lock (`None`: skipped loudly
/// unless `ZKIT_TEST_BACKEND=zookeeper`).
async fn start(builder: EnsembleBuilder) -> Option<(MutexGuard<'static, ()>, Ensemble)> {
    init_tracing();
    let guard = SERIAL.lock().await;
    let began = Instant::now();
    let zk = builder.size(3).start_or_skip().await?;
    eprintln!(
        "ensemble serving at {} after {:?}",
        zk.connect_string(),
        began.elapsed()
    );
    Some((guard, zk))
}

/// Awaits `fut`, failing the test if it takes longer than `limit`.
async fn within<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: hung for {limit:?}"),
    }
}

async fn connect(builder: ClientBuilder, cs: &str) -> Client {
    match within(
        &format!("connect to {cs}"),
        Duration::from_secs(20),
        builder.connect(cs),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => panic!("connect to {cs}: {e:?}"),
    }
}

/// Every member serves and exactly one leads.
async fn wait_healthy(zk: &Ensemble) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut serving = 0;
        let mut leaders = 0;
        for i in 0..zk.size() {
            if let Ok(m) = zk.mode(i).await {
                serving += usize::from(m.is_serving());
                leaders += usize::from(m == Mode::Leader);
            }
        }
        if serving == zk.size() && leaders == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ensemble not healthy: {serving} serving, {leaders} leader(s)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn kill_all(zk: &Ensemble) {
    let (a, b, c) = tokio::join!(zk.kill(0), zk.kill(1), zk.kill(2));
    a.and(b).and(c).expect("kill every member");
}

/// Restarts every member at once (one alone cannot form a quorum).
async fn restart_all(zk: &Ensemble) {
    let (a, b, c) = within("restart the ensemble", Duration::from_secs(60), async {
        tokio::join!(zk.restart(0), zk.restart(1), zk.restart(2))
    })
    .await;
    a.and(b).and(c).expect("restart every member");
}

/// One fault proxy per member, all passing.
async fn proxies(zk: &Ensemble) -> Vec<FaultProxy> {
    let mut out = Vec::new();
    for addr in zk.client_addrs() {
        out.push(FaultProxy::start(addr).await.expect("start a fault proxy"));
    }
    out
}

fn set_mode(proxies: &[FaultProxy], mode: FaultMode) {
    for p in proxies {
        p.set_mode(mode);
    }
}

fn accepted(proxies: &[FaultProxy]) -> usize {
    proxies.iter().map(FaultProxy::accepted_connections).sum()
}

/// The next state, within `limit`.
async fn next_state(states: &mut StateStream, limit: Duration) -> Option<SessionState> {
    within("next session state", limit, states.next_state()).await
}

/// Reads states until `done` accepts one (or the stream ends); returns all
/// of them.
async fn states_until(
    states: &mut StateStream,
    limit: Duration,
    done: impl Fn(SessionState) -> bool,
) -> Vec<SessionState> {
    let mut seen = Vec::new();
    within("session states", limit, async {
        while let Some(s) = states.next_state().await {
            seen.push(s);
            if done(s) {
                break;
            }
        }
    })
    .await;
    seen
}

fn ephemeral() -> CreateOptions {
    CreateOptions::new(CreateMode::Ephemeral)
}

fn unique(name: &str) -> String {
    format!("/{name}-{:08x}", rand::random::<u32>())
}

/// What a session owns on the server and locally: a base node, an ephemeral
/// under it, three one-shot watchers and two persistent ones (on their own
/// paths: ZooKeeper 3.8 keeps one watch mode per path and connection).
struct Owned {
    base: String,
    eph: String,
    data: OneshotWatcher,
    exist: OneshotWatcher,
    child: OneshotWatcher,
    persistent: PersistentWatcher,
    recursive: PersistentWatcher,
}

async fn set_up(c: &Client, name: &str) -> Owned {
    let base = unique(name);
    let eph = format!("{base}/eph");
    let limit = Duration::from_secs(10);
    within("set up", limit, async {
        c.create(&base, b"base", &CreateOptions::default())
            .await
            .unwrap();
        c.create(&eph, b"mine", &ephemeral()).await.unwrap();
        let (_, _, data) = c.get_data_and_watch(&base).await.unwrap();
        let (none, exist) = c.exists_and_watch(&format!("{base}/absent")).await.unwrap();
        assert!(none.is_none());
        let (_, _, child) = c.get_children_and_watch(&base).await.unwrap();
        let persistent = c
            .add_watch(&format!("{base}/p"), AddWatchMode::Persistent)
            .await
            .unwrap();
        let recursive = c
            .add_watch(&format!("{base}/r"), AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
        Owned {
            base: base.clone(),
            eph: eph.clone(),
            data,
            exist,
            child,
            persistent,
            recursive,
        }
    })
    .await
}

type Op = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

fn unit<T: 'static>(f: impl Future<Output = Result<T, Error>> + Send + 'static) -> Op {
    Box::pin(async move { f.await.map(|_| ()) })
}

/// One request of every kind (issued now: call order is wire order).
fn issue_all(c: &Client, base: &str) -> Vec<(&'static str, Op)> {
    let eph = format!("{base}/eph");
    vec![
        ("get_data", unit(c.get_data(base))),
        ("exists", unit(c.exists(base))),
        ("get_children", unit(c.get_children(base))),
        (
            "create",
            unit(c.create(&format!("{base}/new"), b"x", &CreateOptions::default())),
        ),
        (
            "create ephemeral",
            unit(c.create(&format!("{base}/eph2"), b"x", &ephemeral())),
        ),
        ("set_data", unit(c.set_data(base, b"x", Version::Any))),
        ("delete", unit(c.delete(&eph, Version::Any))),
        (
            "multi",
            unit(
                c.multi()
                    .check(base, Version::Any)
                    .set_data(base, b"m", Version::Any)
                    .commit(),
            ),
        ),
        ("sync", unit(c.sync(base))),
        ("get_data_and_watch", unit(c.get_data_and_watch(base))),
        (
            "add_watch",
            unit(c.add_watch(&format!("{base}/r"), AddWatchMode::PersistentRecursive)),
        ),
    ]
}

/// A client whose session has just been reported `Expired`.
struct Expired {
    c: Client,
    sid: SessionId,
    password: zkit::Bytes,
    /// Its state stream, after the `Expired` item.
    states: StateStream,
    /// Requests issued before the expiry that had not been sent.
    pending: Vec<(&'static str, Op)>,
    owned: Owned,
}

/// Everything "expiry is final" promises. `observer` is another session;
/// `proxies` (all passing by now) are the only way the client reaches the
/// ensemble; `ephemeral_gone_within` bounds the server's own expiry.
async fn assert_expired_for_good(
    e: Expired,
    observer: &Client,
    member: std::net::SocketAddr,
    proxies: &[FaultProxy],
    ephemeral_gone_within: Duration,
) {
    let Expired {
        c,
        sid,
        password,
        mut states,
        pending,
        owned,
    } = e;
    let limit = Duration::from_secs(5);
    assert_eq!(c.state(), SessionState::Expired);
    // Every pending request fails with SessionExpired.
    assert!(!pending.is_empty());
    for (what, fut) in pending {
        let r = within(what, limit, fut).await;
        assert!(
            matches!(r, Err(Error::SessionExpired)),
            "pending {what}: {r:?}"
        );
    }
    // And so does every later one, at once.
    for (what, fut) in issue_all(&c, &owned.base) {
        let r = within(what, limit, fut).await;
        assert!(
            matches!(r, Err(Error::SessionExpired)),
            "later {what}: {r:?}"
        );
    }
    // One-shot watchers resolve with SessionExpired; persistent streams end.
    for (what, w) in [
        ("data watcher", owned.data),
        ("exist watcher", owned.exist),
        ("child watcher", owned.child),
    ] {
        assert_err(
            within(what, limit, w.changed()).await,
            Error::SessionExpired,
        );
    }
    let mut persistent = owned.persistent;
    assert_err(
        within("persistent watcher", limit, persistent.changed()).await,
        Error::SessionExpired,
    );
    let mut recursive = owned.recursive;
    assert_eq!(
        within("recursive watcher stream", limit, recursive.next()).await,
        None
    );
    // The state stream ended with Expired.
    assert_eq!(next_state(&mut states, limit).await, None);
    // The session and its ephemeral are gone on the server.
    eventually(
        "the expired session's ephemeral is removed",
        ephemeral_gone_within,
        || async { observer.exists(&owned.eph).await.unwrap().is_none() },
    )
    .await;
    assert!(
        observer.exists(&owned.base).await.unwrap().is_some(),
        "persistent nodes stay"
    );
    let known = within(
        "expire_session probe",
        Duration::from_secs(12),
        expire_session(member, sid.0, &password),
    )
    .await
    .expect("probe the server");
    assert!(!known, "the server still knows session {sid}");
    // No new session behind our back: with every server reachable, nothing
    // connects and nothing changes.
    let before = accepted(proxies);
    tokio::time::sleep(QUIET).await;
    assert_eq!(c.state(), SessionState::Expired);
    assert_eq!(c.session_id(), sid);
    assert_eq!(c.connected_server(), None);
    assert_eq!(
        accepted(proxies),
        before,
        "the expired client opened new connections"
    );
    let mut late = c.state_stream();
    assert_eq!(
        next_state(&mut late, limit).await,
        Some(SessionState::Expired)
    );
    assert_eq!(next_state(&mut late, limit).await, None);
    assert_err(
        within("get_data", limit, c.get_data("/")).await,
        Error::SessionExpired,
    );
}

/// Asserts the states after `Connected` were `Disconnected` first, nothing
/// connected, and `Expired` last.
fn assert_disconnected_then_expired(seen: &[SessionState]) {
    assert_eq!(seen.first(), Some(&SessionState::Disconnected), "{seen:?}");
    assert_eq!(seen.last(), Some(&SessionState::Expired), "{seen:?}");
    assert!(
        !seen.iter().any(|s| s.is_connected()),
        "connected again before expiring: {seen:?}"
    );
}

// ---- 6. expiry ---------------------------------------------------------------

/// Cuts the client (behind `proxies`) off, ends its session on the server
/// with a second connection + closeSession, and lets it reconnect: the
/// handshake answer (timeOut 0, sessionId 0) is the server's verdict.
async fn expire_on_server(
    zk: &Ensemble,
    proxies: &[FaultProxy],
    c: Client,
    owned: Owned,
) -> Expired {
    let sid = c.session_id();
    let password = c.session_password();
    let timeout = c.session_timeout();
    let mut states = c.state_stream();
    assert_eq!(
        next_state(&mut states, Duration::from_secs(5)).await,
        Some(SessionState::Connected)
    );
    // Existing connections closed, new ones refused: the client keeps trying.
    set_mode(proxies, FaultMode::Refuse);
    for p in proxies {
        p.cut();
    }
    let cut_at = Instant::now();
    assert_eq!(
        next_state(&mut states, Duration::from_secs(5)).await,
        Some(SessionState::Disconnected)
    );
    // Requests issued now wait for a connection.
    let pending = issue_all(&c, &owned.base);
    let ended = expire_session(zk.client_addr(0), sid.0, &password)
        .await
        .expect("expire the session on the server");
    assert!(ended, "the server did not know session {sid}");
    assert!(!c.state().is_terminal(), "{:?}", c.state());
    set_mode(proxies, FaultMode::Pass);
    let mut seen = vec![SessionState::Disconnected];
    seen.extend(
        states_until(
            &mut states,
            Duration::from_secs(10),
            SessionState::is_terminal,
        )
        .await,
    );
    let took = cut_at.elapsed();
    assert_disconnected_then_expired(&seen);
    // Well before the client's own 4/3 deadline: this was the server's word.
    assert!(
        took + Duration::from_secs(1) < timeout * 4 / 3,
        "Expired only after {took:?} (session timeout {timeout:?})"
    );
    eprintln!("server-reported expiry seen {took:?} after the cut: {seen:?}");
    Expired {
        c,
        sid,
        password,
        states,
        pending,
        owned,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reported_expiry_is_final() {
    let Some((_serial, zk)) = start(Ensemble::builder()).await else {
        return;
    };
    let proxies = proxies(&zk).await;
    let observer = connect(Client::builder(), &zk.connect_string()).await;
    let c = connect(
        Client::builder()
            .session_timeout(SHORT)
            .request_timeout(Duration::from_secs(20)),
        &proxy_connect_string(&proxies),
    )
    .await;
    assert_eq!(c.session_timeout(), SHORT);
    let owned = set_up(&c, "srv-expiry").await;
    let expired = expire_on_server(&zk, &proxies, c, owned).await;
    // closeSession removed the ephemeral at once.
    assert_expired_for_good(
        expired,
        &observer,
        zk.client_addr(1),
        &proxies,
        Duration::from_secs(2),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_expiry_when_every_member_is_unreachable() {
    let Some((_serial, zk)) = start(Ensemble::builder()).await else {
        return;
    };
    let proxies = proxies(&zk).await;
    let observer = connect(Client::builder(), &zk.connect_string()).await;
    let c = connect(
        Client::builder()
            .session_timeout(SHORT)
            .request_timeout(Duration::from_secs(20)),
        &proxy_connect_string(&proxies),
    )
    .await;
    let timeout = c.session_timeout();
    assert_eq!(timeout, SHORT);
    let owned = set_up(&c, "client-expiry").await;
    let (sid, password) = (c.session_id(), c.session_password());
    let mut states = c.state_stream();
    assert_eq!(
        next_state(&mut states, Duration::from_secs(5)).await,
        Some(SessionState::Connected)
    );
    // A partition: connections stay open, nothing gets through either way.
    set_mode(&proxies, FaultMode::Blackhole);
    let t0 = Instant::now();
    // Sent on the frozen connection: its outcome is unknown.
    let in_flight = c.set_data(&owned.base, b"in flight", Version::Any);
    assert_eq!(
        next_state(&mut states, timeout).await,
        Some(SessionState::Disconnected)
    );
    let disconnected = t0.elapsed();
    assert_err(
        within("in-flight request", Duration::from_secs(2), in_flight).await,
        Error::ConnectionLoss,
    );
    // Queued, never sent: they wait for the session's fate.
    let pending = issue_all(&c, &owned.base);
    let mut seen = vec![SessionState::Disconnected];
    seen.extend(states_until(&mut states, timeout * 3, SessionState::is_terminal).await);
    let took = t0.elapsed();
    assert_disconnected_then_expired(&seen);
    // Nothing came from any server meanwhile: the verdict is the client's.
    assert!(proxies.iter().all(|p| p.mode() == FaultMode::Blackhole));
    assert!(
        took >= timeout && took <= timeout * 4 / 3 + Duration::from_millis(1500),
        "Expired after {took:?}; session timeout {timeout:?}"
    );
    eprintln!("client-side expiry: Disconnected after {disconnected:?}, Expired after {took:?}");
    // The server expired the session on its own (within timeout + tick of
    // the last packet). Wait for that before healing the partition, so the
    // proxies' held bytes (old handshakes) cannot touch a live session.
    eventually(
        "the server expires the session",
        Duration::from_secs(5),
        || async { observer.exists(&owned.eph).await.unwrap().is_none() },
    )
    .await;
    set_mode(&proxies, FaultMode::Pass);
    let expired = Expired {
        c,
        sid,
        password,
        states,
        pending,
        owned,
    };
    assert_expired_for_good(
        expired,
        &observer,
        zk.client_addr(2),
        &proxies,
        Duration::from_secs(2),
    )
    .await;
}

/// A partition longer than the session timeout but shorter than the
/// client's 4/3 deadline: the server expires the session, and the first
/// handshake after the partition heals gets its verdict (timeOut 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_beyond_the_session_timeout_gets_the_servers_verdict() {
    let Some((_serial, zk)) = start(Ensemble::builder().config("maxSessionTimeout", "20000")).await
    else {
        return;
    };
    let proxies = proxies(&zk).await;
    let observer = connect(Client::builder(), &zk.connect_string()).await;
    let timeout = Duration::from_secs(8);
    let c = connect(
        Client::builder()
            .session_timeout(timeout)
            .request_timeout(Duration::from_secs(30)),
        &proxy_connect_string(&proxies),
    )
    .await;
    assert_eq!(c.session_timeout(), timeout);
    let owned = set_up(&c, "partition").await;
    let (sid, password) = (c.session_id(), c.session_password());
    let mut states = c.state_stream();
    assert_eq!(
        next_state(&mut states, Duration::from_secs(5)).await,
        Some(SessionState::Connected)
    );
    // Last reply just before the partition: the client's own deadline is
    // then 4/3 of the timeout from now.
    c.exists("/").await.unwrap();
    set_mode(&proxies, FaultMode::Blackhole);
    let t0 = Instant::now();
    assert_eq!(
        next_state(&mut states, timeout).await,
        Some(SessionState::Disconnected)
    );
    let pending = issue_all(&c, &owned.base);
    // The server expires the session within timeout + tick of its last
    // packet (the leader's buckets): its ephemeral goes.
    eventually(
        "the server expires the partitioned session",
        timeout * 4 / 3,
        || async { observer.exists(&owned.eph).await.unwrap().is_none() },
    )
    .await;
    let server_expired = t0.elapsed();
    assert!(
        !c.state().is_terminal(),
        "the client gave up before the server ({server_expired:?}): {:?}",
        c.state()
    );
    set_mode(&proxies, FaultMode::Pass);
    let mut seen = vec![SessionState::Disconnected];
    seen.extend(states_until(&mut states, timeout, SessionState::is_terminal).await);
    let took = t0.elapsed();
    assert_disconnected_then_expired(&seen);
    assert!(
        took + Duration::from_millis(500) < timeout * 4 / 3,
        "Expired after {took:?}: the client's own deadline, not the server's verdict"
    );
    eprintln!("partition: server expired the session after {server_expired:?}, client Expired after {took:?}");
    let expired = Expired {
        c,
        sid,
        password,
        states,
        pending,
        owned,
    };
    assert_expired_for_good(
        expired,
        &observer,
        zk.client_addr(1),
        &proxies,
        Duration::from_secs(2),
    )
    .await;
}

/// The module docs' recipe: a new session, its ephemeral and watches back.
async fn carry_on_after_expiry(
    hosts: &str,
    old: &Client,
    eph: &str,
    watched: &str,
    tree: &str,
) -> zkit::Result<(Client, OneshotWatcher, PersistentWatcher)> {
    assert_eq!(old.state(), SessionState::Expired, "only after expiry");
    let old_session = old.session_id();
    let zk = Client::builder()
        .session_timeout(old.session_timeout())
        .connect(hosts)
        .await?;
    loop {
        match zk.create(eph, b"mine", &ephemeral()).await {
            Ok(_) => break,
            // Outcome unknown: the next round finds out.
            Err(Error::ConnectionLoss) => continue,
            Err(Error::NodeExists) => match zk.exists(eph).await? {
                Some(s) if s.ephemeral_owner == zk.session_id().0 => break,
                Some(s) if s.ephemeral_owner == old_session.0 => {
                    match zk.delete(eph, Version::Exact(s.version)).await {
                        Ok(()) | Err(Error::NoNode) => {}
                        Err(e) => return Err(e),
                    }
                }
                Some(_) => return Err(Error::NodeExists),
                None => {}
            },
            Err(e) => return Err(e),
        }
    }
    let (_data, _stat, watcher) = zk.get_data_and_watch(watched).await?;
    let tree = zk
        .add_watch(tree, AddWatchMode::PersistentRecursive)
        .await?;
    Ok((zk, watcher, tree))
}

/// The recipe in its hardest case: the client declared the expiry on its
/// own clock (whole ensemble down for 4/3 of the session timeout), and when
/// the ensemble comes back the server has restored the old session, whose
/// ephemeral still blocks the path. The recipe replaces it; the old session's
/// later end on the server does not take the new node with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_fresh_client_after_expiry() {
    let Some((_serial, zk)) = start(Ensemble::builder().config("maxSessionTimeout", "20000")).await
    else {
        return;
    };
    let hosts = zk.connect_string();
    let timeout = Duration::from_secs(6);
    let old = connect(
        Client::builder()
            .session_timeout(timeout)
            .request_timeout(Duration::from_secs(30)),
        &hosts,
    )
    .await;
    assert_eq!(old.session_timeout(), timeout);
    let owned = set_up(&old, "recipe").await;
    let (base, eph) = (owned.base.clone(), owned.eph.clone());
    let tree = format!("{base}/r");
    let (old_sid, old_password) = (old.session_id(), old.session_password());
    let mut states = old.state_stream();
    assert_eq!(
        next_state(&mut states, Duration::from_secs(5)).await,
        Some(SessionState::Connected)
    );
    kill_all(&zk).await;
    let seen = states_until(&mut states, timeout * 3, SessionState::is_terminal).await;
    assert_disconnected_then_expired(&seen);
    // Step 1 of the recipe: the old watchers say why they ended.
    assert_err(
        within("old watcher", Duration::from_secs(5), owned.data.changed()).await,
        Error::SessionExpired,
    );
    restart_all(&zk).await;
    let observer = connect(Client::builder(), &hosts).await;
    let stale = observer
        .exists(&eph)
        .await
        .unwrap()
        .map(|s| s.ephemeral_owner);
    assert_eq!(
        stale,
        Some(old_sid.0),
        "the restored old session should still own its ephemeral"
    );

    let (zk2, watcher, mut tree_watch) = within(
        "carry on after expiry",
        Duration::from_secs(20),
        carry_on_after_expiry(&hosts, &old, &eph, &base, &tree),
    )
    .await
    .expect("the recipe");
    // A different session, owning the ephemeral now.
    assert_ne!(zk2.session_id(), old_sid);
    assert_eq!(zk2.state(), SessionState::Connected);
    let owner = |s: Option<zkit::Stat>| s.map(|s| s.ephemeral_owner);
    assert_eq!(
        owner(observer.exists(&eph).await.unwrap()),
        Some(zk2.session_id().0)
    );
    // The server still had the old session; ending it now leaves the new
    // session's node alone.
    let was_alive = expire_session(zk.client_addr(0), old_sid.0, &old_password)
        .await
        .expect("end the old session");
    assert!(was_alive, "the server had already expired the old session");
    observer.sync(&base).await.unwrap();
    assert_eq!(
        owner(observer.exists(&eph).await.unwrap()),
        Some(zk2.session_id().0)
    );
    // The new watches work.
    observer
        .set_data(&base, b"changed", Version::Any)
        .await
        .unwrap();
    let ev = within("data watch", Duration::from_secs(5), watcher.changed())
        .await
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path),
        (EventType::NodeDataChanged, base.clone())
    );
    observer
        .create(&tree, b"", &CreateOptions::default())
        .await
        .unwrap();
    let ev = within("tree watch", Duration::from_secs(5), tree_watch.changed())
        .await
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path),
        (EventType::NodeCreated, tree.clone())
    );
    // The old handle stays expired.
    assert_eq!(old.state(), SessionState::Expired);
    assert_eq!(old.session_id(), old_sid);
    assert_err(old.get_data(&base).await, Error::SessionExpired);
    zk2.close().await.unwrap();
    assert!(observer.exists(&eph).await.unwrap().is_none());
}

// ---- 7. whole-ensemble restart -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_ensemble_restart_within_the_session_timeout_keeps_the_session() {
    let Some((_serial, zk)) = start(Ensemble::builder().config("maxSessionTimeout", "20000")).await
    else {
        return;
    };
    let timeout = Duration::from_secs(15);
    let c = connect(
        Client::builder().session_timeout(timeout),
        &zk.connect_string(),
    )
    .await;
    assert_eq!(c.session_timeout(), timeout);
    let sid = c.session_id();
    let base = unique("restart-all");
    let eph = format!("{base}/eph");
    c.create(&base, b"v0", &CreateOptions::default())
        .await
        .unwrap();
    c.create(&eph, b"mine", &ephemeral()).await.unwrap();
    let (_, _, data_watch) = c.get_data_and_watch(&base).await.unwrap();
    let mut tree = c
        .add_watch(&format!("{base}/r"), AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let mut states = c.state_stream();
    assert_eq!(
        next_state(&mut states, Duration::from_secs(5)).await,
        Some(SessionState::Connected)
    );

    let t0 = Instant::now();
    kill_all(&zk).await;
    assert_eq!(
        next_state(&mut states, Duration::from_secs(5)).await,
        Some(SessionState::Disconnected)
    );
    // Issued during the outage: waits (request timeout = session timeout)
    // and is sent once the session resumes.
    let during = c.set_data(&base, b"written during the outage", Version::Any);
    restart_all(&zk).await;
    let restarted = t0.elapsed();
    let seen = states_until(&mut states, timeout, |s| {
        s.is_connected() || s.is_terminal()
    })
    .await;
    let resumed = t0.elapsed();
    eprintln!("ensemble back after {restarted:?}; session resumed after {resumed:?}: {seen:?}");
    assert_eq!(seen.last(), Some(&SessionState::Connected), "{seen:?}");
    assert!(
        resumed < timeout,
        "outage {resumed:?} too long for the test"
    );
    assert_eq!(c.session_id(), sid, "a new session was created");

    let stat = within("request issued during the outage", timeout, during)
        .await
        .expect("set_data issued during the outage");
    assert_eq!(stat.version, 1);
    // The one-shot watch was re-registered and saw that write.
    let ev = within("data watch", Duration::from_secs(5), data_watch.changed())
        .await
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path),
        (EventType::NodeDataChanged, base.clone())
    );
    // The ephemeral survived, owned by the same session.
    let observer = connect(Client::builder(), &zk.connect_string()).await;
    let stat = observer
        .exists(&eph)
        .await
        .unwrap()
        .expect("ephemeral kept");
    assert_eq!(stat.ephemeral_owner, sid.0);
    // Operations work; the persistent watch too.
    let child = format!("{base}/r");
    within("ops after restart", Duration::from_secs(5), async {
        c.create(&child, b"", &CreateOptions::default())
            .await
            .unwrap();
        assert_eq!(
            &c.get_data(&base).await.unwrap().0[..],
            b"written during the outage"
        );
        c.delete(&child, Version::Any).await.unwrap();
    })
    .await;
    let ev = within("tree watch", Duration::from_secs(5), tree.changed())
        .await
        .unwrap();
    assert_eq!((ev.event_type, ev.path), (EventType::NodeCreated, child));
    assert_eq!(c.state(), SessionState::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_ensemble_down_beyond_the_session_timeout_expires() {
    let Some((_serial, zk)) = start(Ensemble::builder()).await else {
        return;
    };
    let proxies = proxies(&zk).await;
    let c = connect(
        Client::builder()
            .session_timeout(SHORT)
            .request_timeout(Duration::from_secs(30)),
        &proxy_connect_string(&proxies),
    )
    .await;
    let timeout = c.session_timeout();
    let owned = set_up(&c, "down-too-long").await;
    let (sid, password) = (c.session_id(), c.session_password());
    let mut states = c.state_stream();
    assert_eq!(
        next_state(&mut states, Duration::from_secs(5)).await,
        Some(SessionState::Connected)
    );
    let t0 = Instant::now();
    kill_all(&zk).await;
    assert_eq!(
        next_state(&mut states, Duration::from_secs(5)).await,
        Some(SessionState::Disconnected)
    );
    let pending = issue_all(&c, &owned.base);
    let mut seen = vec![SessionState::Disconnected];
    seen.extend(states_until(&mut states, timeout * 3, SessionState::is_terminal).await);
    let took = t0.elapsed();
    assert_disconnected_then_expired(&seen);
    assert!((0..3).all(|i| !zk.is_running(i)), "no server could answer");
    assert!(
        took >= timeout && took <= timeout * 4 / 3 + Duration::from_millis(1500),
        "Expired after {took:?}; session timeout {timeout:?}"
    );
    eprintln!("ensemble down: Expired after {took:?}");
    restart_all(&zk).await;
    let observer = connect(Client::builder(), &zk.connect_string()).await;
    let expired = Expired {
        c,
        sid,
        password,
        states,
        pending,
        owned,
    };
    // The restored session expires on the server a session timeout after
    // the new leader took over.
    assert_expired_for_good(
        expired,
        &observer,
        zk.client_addr(0),
        &proxies,
        Duration::from_secs(15),
    )
    .await;
}

// ---- 8. no quorum ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_requests_fail_fast_and_the_session_resumes() {
    let Some((_serial, zk)) = start(Ensemble::builder().config("maxSessionTimeout", "20000")).await
    else {
        return;
    };
    let timeout = Duration::from_secs(15);
    let request_timeout = Duration::from_secs(1);
    let c = connect(
        Client::builder()
            .session_timeout(timeout)
            .request_timeout(request_timeout),
        &zk.connect_string(),
    )
    .await;
    assert_eq!(c.session_timeout(), timeout);
    let sid = c.session_id();
    let base = unique("no-quorum");
    let eph = format!("{base}/eph");
    c.create(&base, b"", &CreateOptions::default())
        .await
        .unwrap();
    c.create(&eph, b"", &ephemeral()).await.unwrap();
    let home = c
        .connected_server()
        .and_then(|h| zk.member_of_port(h.port))
        .expect("connected to a member");
    let down: Vec<usize> = (0..3).filter(|&i| i != home).collect();
    let mut states = c.state_stream();
    assert_eq!(
        next_state(&mut states, Duration::from_secs(5)).await,
        Some(SessionState::Connected)
    );
    // Two of three down: the client's own member loses its quorum and drops
    // its clients.
    let t0 = Instant::now();
    let (a, b) = tokio::join!(zk.kill(down[0]), zk.kill(down[1]));
    a.and(b).unwrap();
    assert_eq!(
        next_state(&mut states, Duration::from_secs(10)).await,
        Some(SessionState::Disconnected)
    );
    eprintln!(
        "member {home} left alone; Disconnected after {:?}",
        t0.elapsed()
    );
    // Every request fails with ConnectionLoss within its timeout, one by
    // one and pipelined; nothing hangs.
    let slack = Duration::from_millis(700);
    let mut failed = 0;
    for (what, fut) in issue_all(&c, &base).into_iter().take(2) {
        let began = Instant::now();
        let r = within(what, request_timeout * 3, fut).await;
        let took = began.elapsed();
        assert!(matches!(r, Err(Error::ConnectionLoss)), "{what}: {r:?}");
        assert!(took <= request_timeout + slack, "{what} took {took:?}");
        failed += 1;
    }
    let began = Instant::now();
    for (what, fut) in issue_all(&c, &base) {
        let r = within(what, request_timeout * 3, fut).await;
        assert!(matches!(r, Err(Error::ConnectionLoss)), "{what}: {r:?}");
        failed += 1;
    }
    let took = began.elapsed();
    assert!(
        took <= request_timeout + slack,
        "pipelined batch took {took:?}"
    );
    assert!(!c.state().is_terminal());
    // One member back: quorum restored, the same session resumes.
    within(
        "restart one member",
        Duration::from_secs(45),
        zk.restart(down[0]),
    )
    .await
    .expect("restart");
    let seen = states_until(&mut states, timeout, |s| {
        s.is_connected() || s.is_terminal()
    })
    .await;
    let outage = t0.elapsed();
    eprintln!("{failed} requests failed with ConnectionLoss; quorum back, resumed after {outage:?}: {seen:?}");
    assert_eq!(seen.last(), Some(&SessionState::Connected), "{seen:?}");
    assert_eq!(c.session_id(), sid);
    within("ops after quorum is back", Duration::from_secs(5), async {
        let stat = c.exists(&eph).await.unwrap().expect("ephemeral kept");
        assert_eq!(stat.ephemeral_owner, sid.0);
        c.set_data(&base, b"back", Version::Any).await.unwrap();
        assert_eq!(&c.get_data(&base).await.unwrap().0[..], b"back");
    })
    .await;
}

// ---- 9. soak ------------------------------------------------------------------------

/// How long members are killed and restarted while the clients write.
const SOAK_FOR: Duration = Duration::from_secs(25);

/// One node a worker created (acknowledged create) and what it knows of it.
#[derive(Debug)]
struct Tracked {
    path: String,
    /// The last acknowledged write: (version, payload).
    acked_version: i32,
    acked_payload: Vec<u8>,
    /// Sets with unknown outcome since that write.
    unknown_sets: Vec<Vec<u8>>,
    /// A delete with unknown outcome since that write.
    unknown_delete: bool,
    /// Version for the next conditional write (`None`: read first).
    next_version: Option<i32>,
    /// Definitely deleted (acknowledged delete, or NoNode after an unknown
    /// delete).
    deleted: bool,
}

#[derive(Debug, Default)]
struct Counts {
    creates: usize,
    creates_unknown: usize,
    sets: usize,
    sets_unknown: usize,
    sets_bad_version: usize,
    deletes: usize,
    deletes_unknown: usize,
    reads: usize,
    reads_failed: usize,
}

#[derive(Debug)]
struct WorkerLog {
    id: usize,
    nodes: Vec<Tracked>,
    unknown_creates: Vec<Vec<u8>>,
    counts: Counts,
    violations: Vec<String>,
    slowest: Duration,
}

enum Outcome<T> {
    Ok(T),
    Unknown,
    Failed(Error),
}

/// Runs `fut` under the soak's no-hang limit; `None` ends the worker.
async fn run_op<T>(
    log: &mut WorkerLog,
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, Error>>,
) -> Option<Outcome<T>> {
    let began = Instant::now();
    let r = tokio::time::timeout(limit, fut).await;
    log.slowest = log.slowest.max(began.elapsed());
    match r {
        Err(_) => {
            log.violations
                .push(format!("client {}: {what} hung for {limit:?}", log.id));
            None
        }
        Ok(Ok(v)) => Some(Outcome::Ok(v)),
        Ok(Err(Error::ConnectionLoss)) => Some(Outcome::Unknown),
        Ok(Err(e)) if e.is_session_terminal() => {
            log.violations
                .push(format!("client {}: {what}: session ended: {e:?}", log.id));
            None
        }
        Ok(Err(e)) => Some(Outcome::Failed(e)),
    }
}

/// Checks a read of `n` (by its own writer) against what was acknowledged.
fn check_read(n: &Tracked, version: i32, data: &[u8]) -> Option<String> {
    let bad = if n.unknown_sets.is_empty() {
        version != n.acked_version || data != n.acked_payload.as_slice()
    } else {
        version < n.acked_version
            || version > n.acked_version + n.unknown_sets.len() as i32
            || (data != n.acked_payload.as_slice()
                && !n.unknown_sets.iter().any(|p| p.as_slice() == data))
    };
    bad.then(|| {
        format!(
            "{}: read version {version} data {:?}; acknowledged version {} data {:?}, {} unknown set(s)",
            n.path,
            String::from_utf8_lossy(data),
            n.acked_version,
            String::from_utf8_lossy(&n.acked_payload),
            n.unknown_sets.len()
        )
    })
}

async fn soak_worker(
    id: usize,
    c: Client,
    base: String,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> WorkerLog {
    let mut rng = StdRng::seed_from_u64(rand::random());
    let mut log = WorkerLog {
        id,
        nodes: Vec::new(),
        unknown_creates: Vec::new(),
        counts: Counts::default(),
        violations: Vec::new(),
        slowest: Duration::ZERO,
    };
    let seq_opts = CreateOptions::new(CreateMode::PersistentSequential);
    let prefix = format!("{base}/n-");
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let payload = format!("c{id}-op{seq}-{:016x}", rng.random::<u64>()).into_bytes();
        let live: Vec<usize> = (0..log.nodes.len())
            .filter(|&i| !log.nodes[i].deleted)
            .collect();
        let roll = rng.random_range(0..100);
        if live.is_empty() || roll < 25 || (live.len() < 4 && roll < 50) {
            let fut = c.create(&prefix, &payload, &seq_opts);
            match run_op(&mut log, limit, "create", fut).await {
                None => break,
                Some(Outcome::Ok((path, stat))) => {
                    log.counts.creates += 1;
                    if stat.version != 0 {
                        log.violations
                            .push(format!("{path}: created with version {}", stat.version));
                    }
                    log.nodes.push(Tracked {
                        path,
                        acked_version: 0,
                        acked_payload: payload,
                        unknown_sets: Vec::new(),
                        unknown_delete: false,
                        next_version: Some(0),
                        deleted: false,
                    });
                }
                Some(Outcome::Unknown) => {
                    log.counts.creates_unknown += 1;
                    log.unknown_creates.push(payload);
                }
                Some(Outcome::Failed(e)) => {
                    log.violations.push(format!("create failed: {e:?}"));
                }
            }
            continue;
        }
        let i = live[rng.random_range(0..live.len())];
        let path = log.nodes[i].path.clone();
        let next = log.nodes[i].next_version;
        match next {
            Some(v) if roll < 70 => {
                let fut = c.set_data(&path, &payload, Version::Exact(v));
                let outcome = run_op(&mut log, limit, "set_data", fut).await;
                let n = &mut log.nodes[i];
                match outcome {
                    None => break,
                    Some(Outcome::Ok(stat)) => {
                        log.counts.sets += 1;
                        if stat.version != v + 1 {
                            log.violations.push(format!(
                                "{path}: set on version {v} gave version {}",
                                stat.version
                            ));
                        }
                        n.acked_version = stat.version;
                        n.acked_payload = payload;
                        n.unknown_sets.clear();
                        n.unknown_delete = false;
                        n.next_version = Some(stat.version);
                    }
                    Some(Outcome::Unknown) => {
                        log.counts.sets_unknown += 1;
                        n.unknown_sets.push(payload);
                        n.next_version = None;
                    }
                    Some(Outcome::Failed(Error::BadVersion))
                        if !n.unknown_sets.is_empty() || n.unknown_delete =>
                    {
                        log.counts.sets_bad_version += 1;
                        n.next_version = None;
                    }
                    Some(Outcome::Failed(Error::NoNode)) if n.unknown_delete => {
                        n.deleted = true;
                    }
                    Some(Outcome::Failed(e)) => {
                        log.violations
                            .push(format!("{path}: set on version {v}: {e:?}"));
                        n.next_version = None;
                    }
                }
            }
            Some(v) if roll >= 88 => {
                let fut = c.delete(&path, Version::Exact(v));
                let outcome = run_op(&mut log, limit, "delete", fut).await;
                let n = &mut log.nodes[i];
                match outcome {
                    None => break,
                    Some(Outcome::Ok(())) => {
                        log.counts.deletes += 1;
                        n.deleted = true;
                    }
                    Some(Outcome::Unknown) => {
                        log.counts.deletes_unknown += 1;
                        n.unknown_delete = true;
                        n.next_version = None;
                    }
                    Some(Outcome::Failed(Error::NoNode)) if n.unknown_delete => {
                        n.deleted = true;
                    }
                    Some(Outcome::Failed(Error::BadVersion)) if !n.unknown_sets.is_empty() => {
                        n.next_version = None;
                    }
                    Some(Outcome::Failed(e)) => {
                        log.violations
                            .push(format!("{path}: delete on version {v}: {e:?}"));
                        n.next_version = None;
                    }
                }
            }
            _ => {
                let fut = c.get_data(&path);
                let outcome = run_op(&mut log, limit, "get_data", fut).await;
                let n = &mut log.nodes[i];
                match outcome {
                    None => break,
                    Some(Outcome::Ok((data, stat))) => {
                        log.counts.reads += 1;
                        if let Some(v) = check_read(n, stat.version, &data) {
                            log.violations.push(format!("read-your-writes: {v}"));
                        }
                        n.next_version = Some(stat.version);
                    }
                    Some(Outcome::Unknown) => log.counts.reads_failed += 1,
                    Some(Outcome::Failed(Error::NoNode)) if n.unknown_delete => {
                        n.deleted = true;
                    }
                    Some(Outcome::Failed(e)) => {
                        log.counts.reads_failed += 1;
                        log.violations.push(format!("{path}: get_data: {e:?}"));
                    }
                }
            }
        }
    }
    log
}

/// Compares a worker's acknowledged writes with the final state under `base`.
async fn verify_worker(c: &Client, base: &str, log: &WorkerLog) -> Vec<String> {
    let mut bad = Vec::new();
    c.sync(base).await.unwrap();
    let (children, _) = c.get_children(base).await.unwrap();
    let mut present = HashMap::new();
    for child in children {
        let path = format!("{base}/{child}");
        let (data, stat) = c.get_data(&path).await.unwrap();
        present.insert(path, (data, stat));
    }
    for n in &log.nodes {
        match present.remove(&n.path) {
            None if n.deleted || n.unknown_delete => {}
            None => bad.push(format!(
                "{}: acknowledged create (last acknowledged version {}) is missing",
                n.path, n.acked_version
            )),
            Some(_) if n.deleted => bad.push(format!("{}: deleted but present", n.path)),
            Some((data, stat)) => {
                if let Some(v) = check_read(n, stat.version, &data) {
                    bad.push(format!("final state: {v}"));
                }
            }
        }
    }
    // The rest must come from creates with unknown outcome, once each.
    let mut used = HashSet::new();
    for (path, (data, stat)) in present {
        let known = log.unknown_creates.iter().any(|p| p[..] == data[..]);
        if !known || !used.insert(data.clone()) || stat.version != 0 {
            bad.push(format!(
                "{path}: unexplained node (data {:?}, version {})",
                String::from_utf8_lossy(&data),
                stat.version
            ));
        }
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_acknowledged_writes_survive_member_crashes() {
    let Some((_serial, zk)) = start(Ensemble::builder().config("maxSessionTimeout", "20000")).await
    else {
        return;
    };
    let timeout = Duration::from_secs(8);
    let op_limit = timeout * 2;
    let base = unique("soak");
    let setup = connect(Client::builder(), &zk.connect_string()).await;
    setup
        .create(&base, b"", &CreateOptions::default())
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut sessions = Vec::new();
    for id in 0..3 {
        let dir = format!("{base}/c{id}");
        setup
            .create(&dir, b"", &CreateOptions::default())
            .await
            .unwrap();
        let c = connect(
            Client::builder().session_timeout(timeout),
            &zk.connect_string(),
        )
        .await;
        sessions.push((c.clone(), c.session_id()));
        workers.push(tokio::spawn(soak_worker(
            id,
            c,
            dir,
            stop.clone(),
            op_limit,
        )));
    }
    setup.close().await.unwrap();

    let began = Instant::now();
    let mut rng = StdRng::seed_from_u64(rand::random());
    let mut kills = Vec::new();
    while began.elapsed() < SOAK_FOR {
        // Every other round the leader, otherwise the follower killed least.
        let leader = zk.leader().await.unwrap_or(0);
        let victim = if kills.len() % 2 == 0 {
            leader
        } else {
            (0..3)
                .filter(|&i| i != leader)
                .min_by_key(|&i| kills.iter().filter(|&&k| k == i).count())
                .expect("two followers")
        };
        zk.kill(victim).await.unwrap();
        kills.push(victim);
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        within(
            "restart a member",
            Duration::from_secs(45),
            zk.restart(victim),
        )
        .await
        .unwrap();
        wait_healthy(&zk).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..800))).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for w in workers {
        logs.push(
            within("a soak worker to stop", op_limit * 2, w)
                .await
                .expect("soak worker panicked"),
        );
    }
    wait_healthy(&zk).await;

    let fresh = connect(Client::builder(), &zk.connect_string()).await;
    let mut violations = Vec::new();
    for log in &logs {
        violations.extend(log.violations.iter().cloned());
        violations.extend(verify_worker(&fresh, &format!("{base}/c{}", log.id), log).await);
    }
    let mut total = Counts::default();
    for log in &logs {
        let c = &log.counts;
        eprintln!(
            "client {}: creates {} (+{} unknown), sets {} (+{} unknown, {} bad version), deletes {} (+{} unknown), reads {} ({} failed), slowest op {:?}",
            log.id, c.creates, c.creates_unknown, c.sets, c.sets_unknown, c.sets_bad_version,
            c.deletes, c.deletes_unknown, c.reads, c.reads_failed, log.slowest
        );
        total.creates += c.creates;
        total.creates_unknown += c.creates_unknown;
        total.sets += c.sets;
        total.sets_unknown += c.sets_unknown;
        total.deletes += c.deletes;
        total.deletes_unknown += c.deletes_unknown;
        total.reads += c.reads;
    }
    let kept = sessions
        .iter()
        .filter(|(c, sid)| c.session_id() == *sid && c.state() == SessionState::Connected)
        .count();
    eprintln!(
        "soak: {} kills {kills:?} in {:?}; acknowledged creates {}, sets {}, deletes {}, reads {}; unknown creates {}, sets {}, deletes {}; sessions kept {kept}/3",
        kills.len(),
        began.elapsed(),
        total.creates,
        total.sets,
        total.deletes,
        total.reads,
        total.creates_unknown,
        total.sets_unknown,
        total.deletes_unknown
    );
    assert!(
        violations.is_empty(),
        "{} violation(s):\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert!(kills.len() >= 3, "only {} kills", kills.len());
    assert!(total.creates > 0 && total.sets > 0 && total.deletes > 0);
    assert_eq!(kept, 3, "a session was lost during the soak");
}
