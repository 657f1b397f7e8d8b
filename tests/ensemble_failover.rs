//! Failover on a real 3-node ZooKeeper 3.8 ensemble: kill -9 and SIGSTOP of
//! the member a client is connected to, watches and credentials across the
//! move, changes made while the client is disconnected, a reply lost
//! mid-flight and requests issued while no member is reachable.
//!
//! Each test starts its own ensemble (tickTime 200 ms, so a requested 4 s
//! session timeout is granted as is) and holds a file-wide lock while it
//! runs: ensembles never run in parallel within this file. Every await on the
//! client is bounded; a hang fails the test.
//!
//! `RUST_LOG=zkit=debug cargo test --test ensemble_failover -- --nocapture`
//! shows the client's view.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use zkit::{
    Acl, AddWatchMode, Client, ClientBuilder, CreateMode, CreateOptions, Error, EventType, Perms,
    PersistentWatcher, SessionState, StateStream, Version, WatchedEvent, WatcherType,
};
use zkit_testcontainers::{proxy_connect_string, Ensemble, FaultMode, FaultProxy, Mode};

/// One ensemble at a time (2 CPU cores).
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Requested (and, with tickTime 200 ms, granted) session timeout.
const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
/// Bound for anything that should happen without waiting for a timeout.
const SOON: Duration = Duration::from_secs(10);
/// How long we wait to conclude that no (further) event comes.
const QUIET: Duration = Duration::from_millis(500);
/// A connection must live this long to count as stable for the client's host
/// rotation (`FLAP_WINDOW` in the session: shorter-lived connections count as
/// failed attempts and earn growing pauses). Waited before a fault whose
/// timing the test asserts, so the client dials at once.
const STABLE: Duration = Duration::from_millis(1100);
/// Bound on moving to the next member once a connection is known dead
/// (observed: 5-30 ms). The client must dial at once, without Java's random
/// 0-1 s pause: such a pause would break this bound half the time, and
/// several tests check it.
const FAILOVER_BOUND: Duration = Duration::from_millis(500);
/// The request timeout of the clients in the proxy tests.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(800);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn builder() -> ClientBuilder {
    Client::builder().session_timeout(SESSION_TIMEOUT)
}

/// Awaits `fut`, failing the test if it takes longer than `limit`.
async fn within<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    let t0 = Instant::now();
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!(
            "{what}: nothing within {limit:?} (hang; {:?})",
            t0.elapsed()
        ),
    }
}

/// Awaits `fut` with the [`SOON`] bound and unwraps its result.
async fn ok<T, F>(what: &str, fut: F) -> T
where
    F: Future<Output = zkit::Result<T>>,
{
    match within(what, SOON, fut).await {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

async fn start_ensemble() -> Option<Ensemble> {
    let t0 = Instant::now();
    let zk = Ensemble::builder().size(3).start_or_skip().await?;
    wait_healthy(&zk).await;
    eprintln!(
        "ensemble {} serving after {:?}",
        zk.connect_string(),
        t0.elapsed()
    );
    Some(zk)
}

/// Waits until every member serves and exactly one leads.
async fn wait_healthy(zk: &Ensemble) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut modes = Vec::new();
        for i in 0..zk.size() {
            modes.push(zk.mode(i).await.ok());
        }
        let serving = modes.iter().flatten().filter(|m| m.is_serving()).count();
        let leaders = modes
            .iter()
            .flatten()
            .filter(|m| **m == Mode::Leader)
            .count();
        if serving == zk.size() && leaders == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ensemble not healthy within 30 s: {modes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The member `c` is connected to right now (it must be connected directly).
fn member_of(zk: &Ensemble, c: &Client) -> usize {
    let server = c
        .connected_server()
        .unwrap_or_else(|| panic!("client not connected (state {:?})", c.state()));
    zk.member_of_port(server.port)
        .unwrap_or_else(|| panic!("{server} is no member of the ensemble"))
}

/// The proxy `c` is connected through right now.
fn proxy_of(proxies: &[FaultProxy], c: &Client) -> usize {
    let server = c
        .connected_server()
        .unwrap_or_else(|| panic!("client not connected (state {:?})", c.state()));
    proxies
        .iter()
        .position(|p| p.addr().port() == server.port)
        .unwrap_or_else(|| panic!("{server} is none of the proxies"))
}

/// A client (with `b`'s settings, all members in its connect string)
/// connected to the leader (`leader == true`) or to a follower. The client
/// shuffles its hosts, so this connects until it lands where we want.
async fn connect_to(zk: &Ensemble, b: &ClientBuilder, leader: bool) -> (Client, usize) {
    let lead = zk.leader().await.expect("a healthy ensemble has a leader");
    for _ in 0..40 {
        let c = ok("connect", b.clone().connect(&zk.connect_string())).await;
        let m = member_of(zk, &c);
        if (m == lead) == leader {
            return (c, m);
        }
        ok("close a client on the wrong member", c.close()).await;
    }
    panic!(
        "40 clients in a row avoided the {} ",
        if leader { "leader" } else { "followers" }
    );
}

/// A client connected only to the members other than `victim`.
async fn observer(zk: &Ensemble, victim: usize, b: ClientBuilder) -> Client {
    let cs: Vec<String> = (0..zk.size())
        .filter(|i| *i != victim)
        .map(|i| zk.client_addr(i).to_string())
        .collect();
    ok("connect the observer", b.connect(&cs.join(","))).await
}

/// Reads `states` until `want`, failing on a terminal state or after
/// `limit`. Returns the time since `t0` and the states passed on the way.
async fn await_state(
    states: &mut StateStream,
    want: SessionState,
    t0: Instant,
    limit: Duration,
) -> (Duration, Vec<SessionState>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let s = match tokio::time::timeout_at(deadline, states.next_state()).await {
            Ok(Some(s)) => s,
            Ok(None) => panic!("state stream ended waiting for {want:?}; saw {seen:?}"),
            Err(_) => panic!(
                "no {want:?} within {limit:?} ({:?} since t0); saw {seen:?}",
                t0.elapsed()
            ),
        };
        seen.push(s);
        if s == want {
            return (t0.elapsed(), seen);
        }
        assert!(
            !s.is_terminal(),
            "session ended waiting for {want:?}: {seen:?}"
        );
    }
}

/// A fresh state stream, past the current (connected) state.
async fn connected_states(c: &Client) -> StateStream {
    let mut states = c.state_stream();
    let first = within("current state", SOON, states.next_state()).await;
    assert_eq!(first, Some(SessionState::Connected));
    states
}

/// Retries `op` on `ConnectionLoss` until it succeeds or `limit` passes.
async fn retry<T, F, Fut>(what: &str, limit: Duration, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = zkit::Result<T>>,
{
    let t0 = Instant::now();
    loop {
        match within(what, SOON, op()).await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() && t0.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{what}: {e:?} after {:?}", t0.elapsed()),
        }
    }
}

/// Asserts that the ephemeral `path` exists, owned by `owner`'s session, as
/// seen by `other` after a sync.
async fn assert_ephemeral(other: &Client, path: &str, owner: &Client) {
    let sid = owner.session_id();
    retry("sync before the ephemeral check", SOON, || other.sync(path)).await;
    let stat = retry("ephemeral check", SOON, || other.exists(path))
        .await
        .unwrap_or_else(|| panic!("ephemeral {path} of session {sid} is gone"));
    assert_eq!(
        stat.ephemeral_owner, sid.0,
        "{path} owned by {:#x}, expected {sid}",
        stat.ephemeral_owner
    );
}

fn eph() -> CreateOptions {
    CreateOptions::new(CreateMode::Ephemeral)
}

fn kind(e: &WatchedEvent) -> (EventType, &str) {
    (e.event_type, e.path.as_str())
}

async fn next_event(what: &str, w: &mut PersistentWatcher) -> WatchedEvent {
    ok(what, w.changed()).await
}

/// Fails if `w` delivers anything within [`QUIET`].
async fn assert_quiet(what: &str, w: &mut PersistentWatcher) {
    if let Ok(ev) = tokio::time::timeout(QUIET, w.changed()).await {
        panic!("{what}: unexpected extra event {ev:?}");
    }
}

// ---- 1. kill -9 -----------------------------------------------------------------

#[tokio::test]
async fn kill_of_connected_follower_moves_session_to_next_member_at_once() {
    init_tracing();
    let _serial = SERIAL.lock().await;
    let Some(zk) = start_ensemble().await else {
        return;
    };
    let (a, victim) = connect_to(&zk, &builder(), false).await;
    let sid = a.session_id();
    assert_eq!(
        a.session_timeout(),
        SESSION_TIMEOUT,
        "negotiated session timeout"
    );
    ok("create ephemeral", a.create("/kill-f", b"x", &eph())).await;
    let b = observer(&zk, victim, builder()).await;
    assert_ephemeral(&b, "/kill-f", &a).await;

    let mut states = connected_states(&a).await;
    let t0 = Instant::now();
    zk.kill(victim)
        .await
        .expect("kill -9 the connected follower");
    let killed = t0.elapsed();
    let (lost, _) = await_state(&mut states, SessionState::Disconnected, t0, SOON).await;
    let (back, seen) = await_state(&mut states, SessionState::Connected, t0, SOON).await;
    eprintln!("killed member {victim} in {killed:?}; Disconnected after {lost:?}, Connected after {back:?}");
    assert_eq!(seen, [SessionState::Connected], "states after Disconnected");
    assert!(
        back < FAILOVER_BOUND,
        "reconnect after killing a follower took {back:?} (kill itself {killed:?}, \
         Disconnected after {lost:?}): the next host must be dialled at once"
    );

    // The very next operation succeeds, on another member, in the same session.
    let t1 = Instant::now();
    let stat = ok("exists after failover", a.exists("/kill-f"))
        .await
        .expect("own ephemeral visible after failover");
    let write = ok(
        "write after failover",
        a.create("/kill-f-after", b"", &CreateOptions::default()),
    )
    .await;
    eprintln!("first read + write after failover took {:?}", t1.elapsed());
    assert_eq!(write.0, "/kill-f-after");
    assert_eq!(stat.ephemeral_owner, sid.0);
    assert_eq!(a.session_id(), sid, "session id after failover");
    let now_on = member_of(&zk, &a);
    assert_ne!(now_on, victim, "still on the killed member?");
    assert_eq!(a.state(), SessionState::Connected);
    assert_ephemeral(&b, "/kill-f", &a).await;
}

#[tokio::test]
async fn kill_of_connected_leader_keeps_the_session() {
    init_tracing();
    let _serial = SERIAL.lock().await;
    let Some(zk) = start_ensemble().await else {
        return;
    };
    let (a, victim) = connect_to(&zk, &builder(), true).await;
    let sid = a.session_id();
    ok("create ephemeral", a.create("/kill-l", b"x", &eph())).await;
    let b = observer(&zk, victim, builder()).await;

    let mut states = connected_states(&a).await;
    let t0 = Instant::now();
    zk.kill(victim).await.expect("kill -9 the leader");
    // The survivors elect a new leader; the session must live through it
    // (the client gives up after 4/3 of the session timeout without a server).
    let (lost, _) = await_state(&mut states, SessionState::Disconnected, t0, SOON).await;
    let (back, seen) = await_state(&mut states, SessionState::Connected, t0, SOON).await;
    eprintln!("leader {victim} killed: Disconnected after {lost:?}, Connected after {back:?}");
    assert_eq!(seen, [SessionState::Connected], "states after Disconnected");
    let stat = retry("exists after leader failover", SOON, || a.exists("/kill-l"))
        .await
        .expect("own ephemeral visible after leader failover");
    retry("write after leader failover", SOON, || {
        a.set_data("/kill-l", b"y", Version::Any)
    })
    .await;
    eprintln!(
        "first read + write succeeded {:?} after the kill",
        t0.elapsed()
    );
    assert_eq!(stat.ephemeral_owner, sid.0);
    assert_eq!(a.session_id(), sid, "session id after leader failover");
    assert_ne!(member_of(&zk, &a), victim);
    assert_ephemeral(&b, "/kill-l", &a).await;
    let new_leader = zk.leader().await;
    assert!(
        new_leader.is_some_and(|l| l != victim),
        "new leader {new_leader:?}"
    );
}

// ---- 2. SIGSTOP -----------------------------------------------------------------

#[tokio::test]
async fn pause_of_connected_member_is_detected_within_read_timeout_and_session_moves() {
    init_tracing();
    let _serial = SERIAL.lock().await;
    let Some(zk) = start_ensemble().await else {
        return;
    };
    // A follower: pausing the leader stalls the whole ensemble until the
    // followers give up on it (syncLimit) and elect a new one.
    let (a, victim) = connect_to(&zk, &builder(), false).await;
    let sid = a.session_id();
    let negotiated = a.session_timeout();
    ok("create ephemeral", a.create("/pause", b"x", &eph())).await;
    let b = observer(&zk, victim, builder()).await;

    tokio::time::sleep(STABLE).await;
    let mut states = connected_states(&a).await;
    let t0 = Instant::now();
    zk.pause(victim).expect("SIGSTOP the connected member");
    let (lost, _) = await_state(&mut states, SessionState::Disconnected, t0, SOON).await;
    let (back, seen) = await_state(&mut states, SessionState::Connected, t0, SOON).await;
    eprintln!(
        "paused member {victim}: Disconnected after {lost:?}, Connected after {back:?} \
         (negotiated {negotiated:?})"
    );
    assert!(
        lost < negotiated / 2,
        "Disconnected {lost:?} after the pause, not within half the session timeout {negotiated:?}"
    );
    assert_eq!(seen, [SessionState::Connected], "states after Disconnected");
    assert!(
        back - lost < FAILOVER_BOUND,
        "moving on took {:?} after Disconnected",
        back - lost
    );
    assert_ne!(
        member_of(&zk, &a),
        victim,
        "connected to the paused member?"
    );
    let stat = ok("exists after pause failover", a.exists("/pause"))
        .await
        .expect("own ephemeral visible");
    ok(
        "write after pause failover",
        a.set_data("/pause", b"y", Version::Any),
    )
    .await;
    assert_eq!(stat.ephemeral_owner, sid.0);
    assert_eq!(a.session_id(), sid, "session id after pause failover");
    assert_ephemeral(&b, "/pause", &a).await;
    zk.resume(victim).expect("SIGCONT");
    wait_healthy(&zk).await;
}

// ---- 3. watches -----------------------------------------------------------------

#[tokio::test]
async fn every_watch_kind_survives_kill_of_connected_member_and_fires_once() {
    init_tracing();
    let _serial = SERIAL.lock().await;
    let Some(zk) = start_ensemble().await else {
        return;
    };
    let (a, victim) = connect_to(&zk, &builder(), false).await;
    let sid = a.session_id();
    let b = observer(&zk, victim, builder()).await;
    let d = CreateOptions::default();
    for p in ["/w", "/w/data", "/w/kids", "/w/p", "/w/r"] {
        ok("create", b.create(p, b"0", &d)).await;
    }
    ok("sync", a.sync("/w")).await;

    let (_, _, data_w) = ok("data watch", a.get_data_and_watch("/w/data")).await;
    let (none, exist_w) = ok("exist watch", a.exists_and_watch("/w/missing")).await;
    assert!(none.is_none());
    let (kids, _, child_w) = ok("child watch", a.get_children_and_watch("/w/kids")).await;
    assert!(kids.is_empty());
    let mut pers = ok(
        "persistent watch",
        a.add_watch("/w/p", AddWatchMode::Persistent),
    )
    .await;
    let mut rec = ok(
        "recursive watch",
        a.add_watch("/w/r", AddWatchMode::PersistentRecursive),
    )
    .await;

    let mut states = connected_states(&a).await;
    let t0 = Instant::now();
    zk.kill(victim)
        .await
        .expect("kill -9 the connected follower");
    let (back, _) = await_state(&mut states, SessionState::Connected, t0, SOON).await;
    assert!(
        back < FAILOVER_BOUND,
        "reconnect took {back:?} after the kill"
    );
    // SetWatches goes out before queued requests and replies come in order:
    // once this returns, every watch is re-registered on the new member.
    ok("round trip after reconnect", a.exists("/w")).await;
    eprintln!(
        "reconnected after {back:?}, watches re-registered after {:?}",
        t0.elapsed()
    );
    assert_eq!(a.session_id(), sid);
    assert_ne!(member_of(&zk, &a), victim);

    // Changes from another client; each watch fires with the right event.
    let mut data_w = Box::pin(data_w.changed());
    let mut exist_w = Box::pin(exist_w.changed());
    let mut child_w = Box::pin(child_w.changed());
    // Nothing fired on the reconnect itself (nothing changed).
    for (what, fut) in [
        ("data", &mut data_w),
        ("exist", &mut exist_w),
        ("child", &mut child_w),
    ] {
        if let Ok(ev) = tokio::time::timeout(Duration::from_millis(100), fut).await {
            panic!("{what} watch fired on reconnect without a change: {ev:?}");
        }
    }
    ok("set /w/data", b.set_data("/w/data", b"1", Version::Any)).await;
    let ev = ok("data watch after failover", data_w).await;
    assert_eq!(kind(&ev), (EventType::NodeDataChanged, "/w/data"));
    ok("create /w/missing", b.create("/w/missing", b"", &d)).await;
    let ev = ok("exist watch after failover", exist_w).await;
    assert_eq!(kind(&ev), (EventType::NodeCreated, "/w/missing"));
    ok("create /w/kids/c1", b.create("/w/kids/c1", b"", &d)).await;
    let ev = ok("child watch after failover", child_w).await;
    assert_eq!(kind(&ev), (EventType::NodeChildrenChanged, "/w/kids"));

    ok("set /w/p", b.set_data("/w/p", b"1", Version::Any)).await;
    let ev = next_event("persistent: data", &mut pers).await;
    assert_eq!(kind(&ev), (EventType::NodeDataChanged, "/w/p"));
    ok("create /w/p/c", b.create("/w/p/c", b"", &d)).await;
    let ev = next_event("persistent: children", &mut pers).await;
    assert_eq!(kind(&ev), (EventType::NodeChildrenChanged, "/w/p"));

    ok("create /w/r/a", b.create("/w/r/a", b"", &d)).await;
    let ev = next_event("recursive: create", &mut rec).await;
    assert_eq!(kind(&ev), (EventType::NodeCreated, "/w/r/a"));
    ok("set /w/r/a", b.set_data("/w/r/a", b"1", Version::Any)).await;
    let ev = next_event("recursive: data", &mut rec).await;
    assert_eq!(kind(&ev), (EventType::NodeDataChanged, "/w/r/a"));

    // Persistent watches keep firing; nothing fired twice.
    assert_quiet("persistent watch", &mut pers).await;
    assert_quiet("recursive watch", &mut rec).await;
    ok("set /w/p again", b.set_data("/w/p", b"2", Version::Any)).await;
    let ev = next_event("persistent: second data", &mut pers).await;
    assert_eq!(kind(&ev), (EventType::NodeDataChanged, "/w/p"));
    ok("delete /w/r/a", b.delete("/w/r/a", Version::Any)).await;
    let ev = next_event("recursive: delete", &mut rec).await;
    assert_eq!(kind(&ev), (EventType::NodeDeleted, "/w/r/a"));
    assert_quiet("persistent watch", &mut pers).await;
    assert_quiet("recursive watch", &mut rec).await;

    // The one-shot watches were consumed on the server too: a change now
    // reaches no one, and a fresh watch sees only the next change.
    let (_, _, again) = ok("data watch again", a.get_data_and_watch("/w/data")).await;
    let mut again = Box::pin(again.changed());
    if let Ok(ev) = tokio::time::timeout(QUIET, &mut again).await {
        panic!("fresh data watch got a stale or duplicate event: {ev:?}");
    }
    ok(
        "set /w/data again",
        b.set_data("/w/data", b"2", Version::Any),
    )
    .await;
    let ev = ok("fresh data watch", again).await;
    assert_eq!(kind(&ev), (EventType::NodeDataChanged, "/w/data"));
    for (path, t) in [
        ("/w/data", WatcherType::Data),
        ("/w/missing", WatcherType::Data),
        ("/w/kids", WatcherType::Children),
    ] {
        match within("check_watches", SOON, a.check_watches(path, t)).await {
            Err(Error::NoWatcher) => {}
            other => panic!("consumed one-shot watch on {path} still on the server: {other:?}"),
        }
    }
}

#[tokio::test]
async fn oneshot_watch_fires_once_on_reconnect_for_change_made_while_disconnected() {
    init_tracing();
    let _serial = SERIAL.lock().await;
    let Some(zk) = start_ensemble().await else {
        return;
    };
    let mut proxies = Vec::new();
    for addr in zk.client_addrs() {
        proxies.push(FaultProxy::start(addr).await.expect("start proxy"));
    }
    let a = ok(
        "connect via proxies",
        builder().connect(&proxy_connect_string(&proxies)),
    )
    .await;
    let sid = a.session_id();
    let b = ok("connect directly", builder().connect(&zk.connect_string())).await;
    ok("create /d", b.create("/d", b"0", &CreateOptions::default())).await;
    ok("sync", a.sync("/d")).await;
    let (_, _, data_w) = ok("data watch", a.get_data_and_watch("/d")).await;
    let (_, _, child_w) = ok("child watch", a.get_children_and_watch("/d")).await;
    let mut data_w = Box::pin(data_w.changed());
    let mut child_w = Box::pin(child_w.changed());
    // A persistent watch elsewhere makes the re-registration a SetWatches2
    // (Java's rule), carrying the one-shot watches too.
    ok(
        "create /other",
        b.create("/other", b"0", &CreateOptions::default()),
    )
    .await;
    let mut pers = ok(
        "persistent watch",
        a.add_watch("/other", AddWatchMode::Persistent),
    )
    .await;

    // Partition: connections through the proxies are cut, new ones hang.
    tokio::time::sleep(STABLE).await;
    let mut states = connected_states(&a).await;
    let t0 = Instant::now();
    for p in &proxies {
        p.set_mode(FaultMode::Blackhole);
        p.cut();
    }
    let (lost, _) = await_state(&mut states, SessionState::Disconnected, t0, SOON).await;
    assert!(lost < Duration::from_secs(1), "cut noticed after {lost:?}");

    ok(
        "change while disconnected",
        b.set_data("/d", b"1", Version::Any),
    )
    .await;
    ok(
        "child while disconnected",
        b.create("/d/c", b"", &CreateOptions::default()),
    )
    .await;
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(200), &mut data_w).await {
        panic!("data watch fired while disconnected: {ev:?}");
    }
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(10), &mut child_w).await {
        panic!("child watch fired while disconnected: {ev:?}");
    }
    assert_eq!(
        a.state(),
        SessionState::Disconnected,
        "must still be disconnected when the change is made"
    );

    let t1 = Instant::now();
    for p in &proxies {
        p.cut(); // drop the hanging attempts (and their stale bytes)
        p.set_mode(FaultMode::Pass);
    }
    let (back, seen) = await_state(&mut states, SessionState::Connected, t1, SOON).await;
    assert_eq!(seen, [SessionState::Connected]);
    assert!(
        back < FAILOVER_BOUND,
        "reconnect took {back:?} after the heal"
    );
    let ev = ok("data watch on reconnect", data_w).await;
    let ev_child = ok("child watch on reconnect", child_w).await;
    eprintln!(
        "disconnected {:?} in total; reconnected {back:?} after the heal, watches fired {:?} after it",
        t0.elapsed(),
        t1.elapsed()
    );
    assert_eq!(kind(&ev), (EventType::NodeDataChanged, "/d"));
    assert_eq!(kind(&ev_child), (EventType::NodeChildrenChanged, "/d"));
    assert_eq!(a.session_id(), sid);

    // Exactly once: a fresh watch does not get the event again, only the
    // next change.
    let (data, _, again) = ok("data watch again", a.get_data_and_watch("/d")).await;
    assert_eq!(&data[..], b"1");
    let mut again = Box::pin(again.changed());
    if let Ok(ev) = tokio::time::timeout(QUIET, &mut again).await {
        panic!("the change made while disconnected was delivered twice: {ev:?}");
    }
    ok("next change", b.set_data("/d", b"2", Version::Any)).await;
    let ev = ok("fresh data watch", again).await;
    assert_eq!(kind(&ev), (EventType::NodeDataChanged, "/d"));
    // The persistent watch was re-registered too (nothing happened to it
    // while disconnected, so nothing is due).
    assert_quiet("persistent watch after reconnect", &mut pers).await;
    ok("change /other", b.set_data("/other", b"1", Version::Any)).await;
    let ev = next_event("persistent watch after reconnect", &mut pers).await;
    assert_eq!(kind(&ev), (EventType::NodeDataChanged, "/other"));
    // No further disconnect happened on the way.
    if let Ok(s) = tokio::time::timeout(Duration::from_millis(10), states.next_state()).await {
        panic!("unexpected state change {s:?}");
    }
}

// ---- 4. auth --------------------------------------------------------------------

#[tokio::test]
async fn credentials_are_resent_after_failover_for_reads_and_watches() {
    init_tracing();
    let _serial = SERIAL.lock().await;
    let Some(zk) = start_ensemble().await else {
        return;
    };
    let (a, victim) = connect_to(&zk, &builder(), false).await;
    let sid = a.session_id();
    ok("add_auth", a.add_auth("digest", b"u:p")).await;
    let acl = vec![Acl::digest(Perms::ALL, "u", "p")];
    ok(
        "create protected node",
        a.create("/secure", b"s0", &CreateOptions::default().acl(acl)),
    )
    .await;
    let b = observer(&zk, victim, builder().digest_auth("u", "p")).await;
    let stranger = observer(&zk, victim, builder()).await;
    match within("read without auth", SOON, stranger.get_data("/secure")).await {
        Err(Error::NoAuth) => {}
        other => panic!("the ACL does not protect /secure: {other:?}"),
    }
    let (data, _, w) = ok("watch protected node", a.get_data_and_watch("/secure")).await;
    assert_eq!(&data[..], b"s0");
    let mut w = Box::pin(w.changed());

    let mut states = connected_states(&a).await;
    let t0 = Instant::now();
    zk.kill(victim).await.expect("kill -9 the connected member");
    // Issued at once: written to the dead connection (ConnectionLoss) or
    // queued until the resume, and then sent after the credentials.
    let early = a.get_data("/secure");
    let (back, _) = await_state(&mut states, SessionState::Connected, t0, SOON).await;
    eprintln!("reconnected {back:?} after the kill");
    match within("read issued right after the kill", SOON, early).await {
        Ok((data, _)) => assert_eq!(&data[..], b"s0"),
        Err(Error::ConnectionLoss) => {}
        Err(e) => panic!("read issued right after the kill: {e:?}"),
    }
    assert!(
        back < FAILOVER_BOUND,
        "reconnect took {back:?} after the kill"
    );
    assert_eq!(a.session_id(), sid);
    assert_ne!(member_of(&zk, &a), victim);

    let (data, _) = ok("read protected node after failover", a.get_data("/secure")).await;
    assert_eq!(&data[..], b"s0");
    let ids = ok("whoami after failover", a.who_am_i()).await;
    assert!(
        ids.iter()
            .any(|i| i.auth_scheme == "digest" && i.user == "u"),
        "identities after failover: {ids:?}"
    );
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(100), &mut w).await {
        panic!("watch on the protected node fired without a change: {ev:?}");
    }
    ok(
        "change protected node",
        b.set_data("/secure", b"s1", Version::Any),
    )
    .await;
    let ev = ok("watch on protected node after failover", w).await;
    assert_eq!(kind(&ev), (EventType::NodeDataChanged, "/secure"));
    ok(
        "write protected node",
        a.set_data("/secure", b"s2", Version::Any),
    )
    .await;
}

// ---- 5. lost replies and requests while disconnected ----------------------------

/// Three proxies (one per member), a client through them with the short
/// request timeout, and a client connected directly.
async fn proxied(zk: &Ensemble) -> (Vec<FaultProxy>, Client, Client) {
    let mut proxies = Vec::new();
    for addr in zk.client_addrs() {
        proxies.push(FaultProxy::start(addr).await.expect("start proxy"));
    }
    let a = ok(
        "connect via proxies",
        builder()
            .request_timeout(REQUEST_TIMEOUT)
            .connect(&proxy_connect_string(&proxies)),
    )
    .await;
    let b = ok("connect directly", builder().connect(&zk.connect_string())).await;
    (proxies, a, b)
}

#[tokio::test]
async fn reply_lost_mid_flight_fails_fast_and_session_resumes() {
    init_tracing();
    let _serial = SERIAL.lock().await;
    let Some(zk) = start_ensemble().await else {
        return;
    };
    let (proxies, a, b) = proxied(&zk).await;
    let sid = a.session_id();
    ok("create ephemeral", a.create("/lost", b"v", &eph())).await;

    // A setData reply is 88 bytes: with a budget below that it cannot
    // arrive; with 100 it can (and the cut follows on a later reply). The
    // request itself may still succeed with a small budget when the client
    // notices the cut before it writes the request: it is then queued and
    // sent after the resume.
    let mut losses = 0;
    for n in [0usize, 4, 100] {
        tokio::time::sleep(STABLE).await;
        let mut states = connected_states(&a).await;
        let via = proxy_of(&proxies, &a);
        let value = format!("n{n}");
        let t0 = Instant::now();
        proxies[via].cut_after_downstream(n);
        let r = within(
            &format!("setData with reply budget {n}"),
            SOON,
            a.set_data("/lost", value.as_bytes(), Version::Any),
        )
        .await;
        let took = t0.elapsed();
        eprintln!("budget {n}: setData -> {r:?} after {took:?}");
        match &r {
            Ok(_) => {}
            Err(Error::ConnectionLoss) => assert!(
                took < Duration::from_secs(1),
                "ConnectionLoss took {took:?} after the cut"
            ),
            Err(e) => panic!("budget {n}: setData failed with {e:?}, not ConnectionLoss"),
        }
        if n < 88 && r.is_err() {
            losses += 1;
        }
        // The connection is cut (now or after `n` more bytes): the session
        // resumes on the next proxy.
        let (lost, _) = await_state(&mut states, SessionState::Disconnected, t0, SOON).await;
        // The fixture keeps the budget for connections opened later through
        // this proxy in the same epoch; a (no-op) cut starts a new epoch.
        proxies[via].cut();
        let (back, seen) = await_state(&mut states, SessionState::Connected, t0, SOON).await;
        eprintln!("budget {n}: Disconnected after {lost:?}, Connected after {back:?}");
        assert_eq!(seen, [SessionState::Connected]);
        assert!(
            back - lost < FAILOVER_BOUND,
            "resume took {:?} after Disconnected",
            back - lost
        );
        assert_eq!(a.session_id(), sid, "budget {n}: session id");
        let (data, _) = ok("read after resume", a.get_data("/lost")).await;
        if r.is_ok() {
            assert_eq!(&data[..], value.as_bytes(), "acknowledged write lost");
        }
        ok(
            "write after resume",
            a.set_data("/lost", value.as_bytes(), Version::Any),
        )
        .await;
        assert_ephemeral(&b, "/lost", &a).await;
    }
    assert!(losses > 0, "no reply was ever lost: the fault did not bite");
}

#[tokio::test]
async fn requests_issued_while_disconnected_complete_after_resume_or_fail_in_bounded_time() {
    init_tracing();
    let _serial = SERIAL.lock().await;
    let Some(zk) = start_ensemble().await else {
        return;
    };
    let (proxies, a, b) = proxied(&zk).await;
    let sid = a.session_id();
    ok("create ephemeral", a.create("/q", b"v", &eph())).await;
    let heal = |proxies: &[FaultProxy]| {
        for p in proxies {
            p.cut(); // drop hanging attempts and any bytes they hold
            p.set_mode(FaultMode::Pass);
        }
    };

    // (a) Disconnected, requests wait, then complete once the session resumes.
    tokio::time::sleep(STABLE).await;
    let mut states = connected_states(&a).await;
    let t0 = Instant::now();
    for p in &proxies {
        p.set_mode(FaultMode::Blackhole);
        p.cut();
    }
    await_state(&mut states, SessionState::Disconnected, t0, SOON).await;
    let t1 = Instant::now();
    let set = a.set_data("/q", b"queued", Version::Any);
    let create = a.create("/q-made", b"", &CreateOptions::default());
    let read = a.get_data("/q");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.state(), SessionState::Disconnected);
    heal(&proxies);
    let stat = ok("setData queued while disconnected", set).await;
    ok("create queued while disconnected", create).await;
    let (data, _) = ok("getData queued while disconnected", read).await;
    let took = t1.elapsed();
    eprintln!("queued requests completed {took:?} after they were issued (healed after 300 ms)");
    assert_eq!(&data[..], b"queued", "reads queued after a write see it");
    assert_eq!(stat.version, 1);
    assert!(took < REQUEST_TIMEOUT, "queued requests took {took:?}");
    await_state(&mut states, SessionState::Connected, t0, SOON).await;
    assert_eq!(a.session_id(), sid);
    assert_ephemeral(&b, "/q", &a).await;

    // (b) No member reachable (connections refused) for longer than the
    // request timeout: queued requests fail with ConnectionLoss after it.
    tokio::time::sleep(STABLE).await;
    let t0 = Instant::now();
    for p in &proxies {
        p.set_mode(FaultMode::Refuse);
        p.cut();
    }
    await_state(&mut states, SessionState::Disconnected, t0, SOON).await;
    let t1 = Instant::now();
    let read = a.get_data("/q");
    let write = a.set_data("/q", b"refused", Version::Any);
    let r1 = within("getData while refused", SOON, read).await;
    let r2 = within("setData while refused", SOON, write).await;
    let took = t1.elapsed();
    eprintln!("while refused: {r1:?} / {r2:?} after {took:?}");
    assert!(
        matches!(r1, Err(Error::ConnectionLoss)) && matches!(r2, Err(Error::ConnectionLoss)),
        "requests while refused: {r1:?} / {r2:?} after {took:?}"
    );
    assert!(
        took >= REQUEST_TIMEOUT - Duration::from_millis(50)
            && took < REQUEST_TIMEOUT + Duration::from_millis(700),
        "ConnectionLoss after {took:?}, expected about the request timeout {REQUEST_TIMEOUT:?}"
    );
    assert_eq!(
        a.state(),
        SessionState::Disconnected,
        "session must not end"
    );
    let t2 = Instant::now();
    for p in &proxies {
        p.set_mode(FaultMode::Pass);
    }
    let (back, _) = await_state(&mut states, SessionState::Connected, t2, SOON).await;
    eprintln!(
        "refused for {:?}; reconnected {back:?} after the heal",
        t0.elapsed()
    );
    // The client may be in its longest pause so far (up to 800 ms + jitter
    // after five refused rounds).
    assert!(
        back < Duration::from_millis(1500),
        "reconnect took {back:?} after the heal"
    );
    assert_eq!(a.session_id(), sid);
    let (data, _) = ok("read after refusal", a.get_data("/q")).await;
    assert_eq!(
        &data[..],
        b"queued",
        "a request failed as unsent was applied"
    );
    assert_ephemeral(&b, "/q", &a).await;

    // (c) Partition while a request is in flight: it fails with
    // ConnectionLoss once the read timeout declares the connection dead.
    tokio::time::sleep(STABLE).await;
    let t0 = Instant::now();
    for p in &proxies {
        p.set_mode(FaultMode::Blackhole);
    }
    let r = within("getData into a blackhole", SOON, a.get_data("/q")).await;
    let took = t0.elapsed();
    let negotiated = a.session_timeout();
    eprintln!("in-flight request into a blackhole: {r:?} after {took:?}");
    assert!(
        matches!(r, Err(Error::ConnectionLoss)),
        "in-flight request into a blackhole: {r:?} after {took:?}"
    );
    assert!(
        took < negotiated / 2,
        "in-flight request failed after {took:?}, not within half the session timeout"
    );
    assert!(!a.state().is_connected(), "state {:?}", a.state());
    let t2 = Instant::now();
    heal(&proxies);
    let (back, _) = await_state(&mut states, SessionState::Connected, t2, SOON).await;
    eprintln!(
        "blackholed for {:?}; reconnected {back:?} after the heal",
        t0.elapsed()
    );
    assert!(
        back < FAILOVER_BOUND,
        "reconnect took {back:?} after the heal"
    );
    assert_eq!(a.session_id(), sid);
    ok("read after blackhole", a.get_data("/q")).await;
    assert_ephemeral(&b, "/q", &a).await;
}
