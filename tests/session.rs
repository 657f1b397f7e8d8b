//! Sessions against a real ZooKeeper 3.8 server: state stream, timeout
//! negotiation, close and drop, resuming, expiry, connect failures and
//! reconnection after a server restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use zkit::{
    AddWatchMode, Bytes, Client, CreateMode, CreateOptions, Error, EventType, SessionId,
    SessionState, Version,
};

fn eph() -> CreateOptions {
    CreateOptions::new(CreateMode::Ephemeral)
}

#[tokio::test]
async fn state_stream_yields_connected_then_closed_and_ends() {
    let c = client().await;
    assert_eq!(c.state(), SessionState::Connected);
    let mut states = c.state_stream();
    assert_eq!(states.next_state().await, Some(SessionState::Connected));

    let handle = c.clone();
    c.close().await.unwrap();
    assert_eq!(
        soon("Closed", states.next_state()).await,
        Some(SessionState::Closed)
    );
    assert_eq!(soon("end", states.next_state()).await, None);
    assert_eq!(handle.state(), SessionState::Closed);
    // A stream taken after the end reports the terminal state and ends.
    let mut late = handle.state_stream();
    assert_eq!(
        soon("late", late.next_state()).await,
        Some(SessionState::Closed)
    );
    assert_eq!(soon("late end", late.next_state()).await, None);
}

#[tokio::test]
async fn operations_after_close_fail_with_closed() {
    let c = client().await;
    let handle = c.clone();
    c.close().await.unwrap();
    assert_err(handle.get_data("/").await, Error::Closed);
    assert_err(
        handle.create("/x", b"", &CreateOptions::default()).await,
        Error::Closed,
    );
    assert_err(
        handle.multi().check("/", Version::Any).commit().await,
        Error::Closed,
    );
    // Closing again is fine.
    handle.clone().close().await.unwrap();
    handle.close().await.unwrap();
}

#[tokio::test]
async fn requests_issued_before_close_are_still_sent() {
    let c = client().await;
    let base = base(&c, "close-flush").await;
    let p = format!("{base}/written-before-close");
    let create = c.create(&p, b"", &CreateOptions::default());
    let set = c.set_data(&base, b"last words", Version::Any);
    c.close().await.unwrap();
    create.await.unwrap();
    set.await.unwrap();
    let other = client().await;
    assert!(other.exists(&p).await.unwrap().is_some());
    assert_eq!(&other.get_data(&base).await.unwrap().0[..], b"last words");
}

#[tokio::test]
async fn session_ids_are_nonzero_and_distinct() {
    let a = client().await;
    let b = client().await;
    assert_ne!(a.session_id(), SessionId(0));
    assert_ne!(a.session_id(), b.session_id());
    assert_eq!(a.session_password().len(), 16);
    // Standalone server id 1 sits in the top byte.
    assert_eq!((a.session_id().0 as u64) >> 56, 1);
}

#[tokio::test]
async fn session_timeout_is_negotiated_within_2_to_20_ticks() {
    let cases = [
        (Duration::from_millis(100), TICK * 2),
        (Duration::from_millis(1000), Duration::from_millis(1000)),
        (Duration::from_secs(60), TICK * 20),
    ];
    for (asked, granted) in cases {
        let c = connect_with(Client::builder().session_timeout(asked), "").await;
        assert_eq!(c.session_timeout(), granted, "asked {asked:?}");
    }
    // The default (10 s) is clamped to 20 ticks as well.
    let t = client().await.session_timeout();
    assert!(t >= TICK * 2 && t <= TICK * 20, "{t:?}");
}

#[tokio::test]
async fn ephemerals_are_gone_when_close_returns() {
    let c = client().await;
    let base = base(&c, "close-ephemerals").await;
    c.create(&format!("{base}/e"), b"", &eph()).await.unwrap();
    c.create(
        &format!("{base}/s-"),
        b"",
        &CreateOptions::new(CreateMode::EphemeralSequential),
    )
    .await
    .unwrap();
    let other = client().await;
    assert_eq!(other.get_children(&base).await.unwrap().0.len(), 2);
    c.close().await.unwrap();
    let (children, stat) = other.get_children(&base).await.unwrap();
    assert!(children.is_empty(), "{children:?}");
    assert_eq!(stat.num_children, 0);
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_session() {
    let c = client().await;
    let base = base(&c, "drop-ephemerals").await;
    let p = format!("{base}/e");
    c.create(&p, b"", &eph()).await.unwrap();
    let (sid, pw) = (c.session_id(), c.session_password());
    let other = client().await;

    // A remaining clone keeps the session.
    let clone = c.clone();
    drop(c);
    clone.get_data(&p).await.unwrap();
    assert!(other.exists(&p).await.unwrap().is_some());

    drop(clone);
    eventually(
        "ephemeral removed after drop",
        Duration::from_secs(5),
        || async { other.exists(&p).await.unwrap().is_none() },
    )
    .await;
    // The session was closed, not just abandoned.
    let r = Client::builder()
        .session(sid, pw)
        .connect(&connect_string())
        .await;
    assert_err(r, Error::SessionExpired);
}

#[tokio::test]
async fn resuming_a_closed_session_is_session_expired() {
    let c = client().await;
    let (sid, pw) = (c.session_id(), c.session_password());
    c.close().await.unwrap();
    let began = Instant::now();
    let r = Client::builder()
        .session(sid, pw)
        .connect(&connect_string())
        .await;
    assert_err(r, Error::SessionExpired);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn resuming_with_a_wrong_password_is_session_expired() {
    let c = client().await;
    let mut states = c.state_stream();
    assert_eq!(states.next_state().await, Some(SessionState::Connected));
    let r = Client::builder()
        .session(c.session_id(), Bytes::from_static(&[7u8; 16]))
        .connect(&connect_string())
        .await;
    assert_err(r, Error::SessionExpired);
    // ZooKeeper closes the session's current connection *before* checking
    // the password, so the rightful owner is disconnected; it reconnects to
    // its session, which is unharmed.
    assert_eq!(
        soon("owner kicked", states.next_state()).await,
        Some(SessionState::Disconnected)
    );
    assert_eq!(
        soon("owner back", states.next_state()).await,
        Some(SessionState::Connected)
    );
    let sid = c.session_id();
    c.get_data("/").await.unwrap();
    assert_eq!(c.session_id(), sid);
}

/// Retries `op` over ConnectionLoss (two clients sharing a session keep
/// taking the connection from each other).
async fn retry<T, F, Fut>(mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    for _ in 0..50 {
        match op().await {
            Err(Error::ConnectionLoss) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => return other,
        }
    }
    Err(Error::ConnectionLoss)
}

/// Runs a client on a runtime of its own that is shut down without closing
/// the session (as if the process died). Returns what `setup` returned and
/// the session's id, password and negotiated timeout.
fn abandoned_client<T, F, Fut>(timeout: Duration, setup: F) -> (T, SessionId, Bytes, Duration)
where
    T: Send + 'static,
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let cs = connect_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(async {
            let c = Client::builder()
                .session_timeout(timeout)
                .connect(&cs)
                .await
                .unwrap();
            let ids = (c.session_id(), c.session_password(), c.session_timeout());
            let t = setup(c.clone()).await;
            // Never close: the handles are leaked with the runtime.
            std::mem::forget(c);
            (t, ids.0, ids.1, ids.2)
        });
        rt.shutdown_background();
        out
    })
    .join()
    .unwrap()
}

/// Another client can take over a session with its id and password (here
/// of a client that died without closing): it sees and owns the session's
/// ephemerals, and closing it ends the session for good.
#[tokio::test]
async fn another_client_can_resume_an_abandoned_session() {
    let other = client().await;
    let base = base(&other, "resume").await;
    let p = format!("{base}/e");
    let p2 = p.clone();
    let ((), sid, pw, _) = abandoned_client(Duration::from_secs(4), |c| async move {
        c.create(&p2, b"", &eph()).await.unwrap();
    });

    let b = Client::builder()
        .session(sid, pw.clone())
        .connect(&connect_string())
        .await
        .unwrap();
    assert_eq!(b.session_id(), sid);
    assert_eq!(b.session_password(), pw);
    assert_eq!(b.get_ephemerals("/").await.unwrap(), vec![p.clone()]);
    assert_eq!(b.exists(&p).await.unwrap().unwrap().ephemeral_owner, sid.0);

    b.close().await.unwrap();
    assert_eq!(other.exists(&p).await.unwrap(), None);
    let r = Client::builder()
        .session(sid, pw)
        .connect(&connect_string())
        .await;
    assert_err(r, Error::SessionExpired);
}

/// Resuming a session that is in use moves it: ZooKeeper closes the current
/// owner's connection. The owner (seeing Disconnected) reconnects and takes
/// it back, so two live clients keep stealing the session from each other;
/// both keep working, with ConnectionLoss now and then.
#[tokio::test]
async fn resuming_a_live_session_disconnects_its_owner() {
    let a = connect_with(
        Client::builder().session_timeout(Duration::from_secs(1)),
        "",
    )
    .await;
    let base = base(&a, "resume-live").await;
    let p = format!("{base}/e");
    a.create(&p, b"", &eph()).await.unwrap();
    let mut a_states = a.state_stream();
    assert_eq!(a_states.next_state().await, Some(SessionState::Connected));

    let b = Client::builder()
        .session(a.session_id(), a.session_password())
        .connect(&connect_string())
        .await
        .unwrap();
    assert_eq!(b.session_id(), a.session_id());
    assert_eq!(
        a_states.next_state().await,
        Some(SessionState::Disconnected)
    );
    assert_eq!(
        soon("a back", a_states.next_state()).await,
        Some(SessionState::Connected)
    );
    assert_eq!(a.session_id(), b.session_id());
    assert_eq!(
        retry(|| b.get_ephemerals("/")).await.unwrap(),
        vec![p.clone()]
    );
    assert_eq!(
        retry(|| a.get_ephemerals("/")).await.unwrap(),
        vec![p.clone()]
    );

    // However the two closes race with the reconnects, the session ends
    // within about its timeout.
    drop(a_states);
    let _ = b.close().await;
    let _ = a.close().await;
    let other = client().await;
    eventually("session ended", Duration::from_secs(3), || async {
        other.exists(&p).await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn connecting_to_a_port_without_server_times_out() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let began = Instant::now();
    let r = Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .connect(&format!("127.0.0.1:{port}"))
        .await;
    let took = began.elapsed();
    // The error names the host and why it failed.
    match &r {
        Err(e @ Error::NoServerReachable { timeout, attempts }) => {
            assert_eq!(*timeout, Duration::from_millis(500));
            assert_eq!(attempts.len(), 1, "{e}");
            assert_eq!(attempts[0].host, format!("127.0.0.1:{port}"));
            assert!(attempts[0].cause.contains("refused"), "{e}");
            assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        }
        other => panic!("expected NoServerReachable, got {other:?}"),
    }
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_millis(1200), "{took:?}");

    // Several hosts: each named with its own cause (a name that does not
    // resolve, a refused port).
    let r = Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .connect(&format!("no-such-host.invalid:2181,127.0.0.1:{port}"))
        .await;
    match &r {
        Err(e @ Error::NoServerReachable { attempts, .. }) => {
            let hosts: Vec<&str> = attempts.iter().map(|a| a.host.as_str()).collect();
            assert!(hosts.contains(&"no-such-host.invalid:2181"), "{e}");
            assert!(hosts.contains(&format!("127.0.0.1:{port}").as_str()), "{e}");
            assert!(attempts.iter().all(|a| !a.cause.is_empty()), "{e}");
        }
        other => panic!("expected NoServerReachable, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_connect_strings_are_rejected() {
    match Client::connect("").await {
        Err(Error::NoHosts(_)) => {}
        other => panic!("expected NoHosts, got {other:?}"),
    }
    let r = Client::connect(&format!("{}/bad/", connect_string())).await;
    assert!(
        matches!(r, Err(Error::InvalidPath { .. })),
        "{:?}",
        r.map(|c| c.session_id())
    );
}

#[tokio::test]
async fn connect_string_with_a_dead_host_still_connects() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // Several seeds, so both host orders are tried.
    for seed in 0..4 {
        let cs = format!("127.0.0.1:{dead},{}", connect_string());
        let c = soon(
            "connect with one dead host",
            Client::builder().seed(seed).connect(&cs),
        )
        .await
        .unwrap();
        c.get_data("/").await.unwrap();
    }
}

/// A client that vanishes without closing (its runtime is gone) leaves its
/// session to expire on the server: ephemerals disappear after about the
/// session timeout, and resuming is refused.
#[tokio::test]
async fn abandoned_session_expires_on_the_server() {
    let watcher = client().await;
    let base = base(&watcher, "abandoned").await;
    let p = format!("{base}/e");
    let p2 = p.clone();
    let ((), sid, pw, timeout) = abandoned_client(Duration::from_millis(400), |c| async move {
        c.create(&p2, b"", &eph()).await.unwrap();
    });
    assert_eq!(timeout, TICK * 2);
    let gone_after = Instant::now();
    assert!(watcher.exists(&p).await.unwrap().is_some());
    eventually(
        "ephemeral of the abandoned session removed",
        Duration::from_secs(5),
        || async { watcher.exists(&p).await.unwrap().is_none() },
    )
    .await;
    // Expiry needs at least the session timeout after the last packet.
    assert!(
        gone_after.elapsed() >= timeout - TICK,
        "{:?}",
        gone_after.elapsed()
    );
    let r = Client::builder()
        .session(sid, pw)
        .connect(&connect_string())
        .await;
    assert_err(r, Error::SessionExpired);
}

#[tokio::test]
async fn last_zxid_follows_replies() {
    let c = client().await;
    // The ConnectResponse carries no zxid: nothing seen before the first
    // reply.
    assert_eq!(c.last_zxid(), 0);
    let base = base(&c, "zxid").await;
    let stat = c.exists(&base).await.unwrap().unwrap();
    assert!(c.last_zxid() >= stat.czxid);
    // Reads report the server's last zxid too.
    let z1 = c.last_zxid();
    client()
        .await
        .create(&format!("{base}/x"), b"", &CreateOptions::default())
        .await
        .unwrap();
    c.get_data(&base).await.unwrap();
    assert!(c.last_zxid() > z1);
}

/// Kill and restart the (dedicated) server: the client reconnects to the
/// same session, keeps its ephemerals, re-sends its credentials and
/// re-registers its watches (SetWatches2, split in several batches when the
/// paths add up to more than 128 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_server_restart_keeps_session_and_watches() {
    let zk = own_server().await;
    let c = Client::builder()
        .session_timeout(Duration::from_secs(4))
        .connect(&zk.connect_string())
        .await
        .unwrap();
    let sid = c.session_id();
    let base = base(&c, "restart").await;
    let e = format!("{base}/eph");
    c.create(&e, b"", &eph()).await.unwrap();
    let (_, _, data_watch) = c.get_data_and_watch(&base).await.unwrap();
    let (_, exists_watch) = c.exists_and_watch(&format!("{base}/later")).await.unwrap();
    let mut recursive = c
        .add_watch(&base, AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    // Enough exists watches on long paths for more than one batch.
    let long = |i: usize| format!("{base}/{}{i:04}", "w".repeat(400));
    let many: Vec<_> = (0..400).map(|i| c.exists_and_watch(&long(i))).collect();
    let mut many: Vec<_> = futures::future::join_all(many)
        .await
        .into_iter()
        .map(|r| r.unwrap().1)
        .collect();
    // Credentials, and a node only they can read.
    c.add_auth("digest", b"ivan:pw").await.unwrap();
    let secret = format!("{base}/secret");
    c.create(
        &secret,
        b"s",
        &CreateOptions::default().acl(vec![zkit::Acl::digest(zkit::Perms::ALL, "ivan", "pw")]),
    )
    .await
    .unwrap();
    let mut states = c.state_stream();
    assert_eq!(states.next_state().await, Some(SessionState::Connected));

    zk.kill(0).await.unwrap();
    assert_eq!(
        soon("Disconnected", states.next_state()).await,
        Some(SessionState::Disconnected)
    );
    // Requests issued while disconnected wait for the reconnect.
    let pending = c.get_data(&e);
    zk.restart(0).await.unwrap();
    assert_eq!(
        soon("Connected again", states.next_state()).await,
        Some(SessionState::Connected)
    );
    assert_eq!(c.session_id(), sid);
    // The request was either sent after the reconnect or failed while the
    // server was down; both are fine, but it must resolve.
    let _ = soon("pending request", pending).await;
    assert_eq!(c.get_data(&e).await.unwrap().1.ephemeral_owner, sid.0);
    // The credentials were re-sent on the new connection.
    assert_eq!(&c.get_data(&secret).await.unwrap().0[..], b"s");

    let other = Client::connect(&zk.connect_string()).await.unwrap();
    other
        .set_data(&base, b"after restart", Version::Any)
        .await
        .unwrap();
    other
        .create(&format!("{base}/later"), b"", &CreateOptions::default())
        .await
        .unwrap();
    let ev = soon("data watch after reconnect", data_watch.changed())
        .await
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, base.as_str())
    );
    let ev = soon("exists watch after reconnect", exists_watch.changed())
        .await
        .unwrap();
    assert_eq!(ev.event_type, EventType::NodeCreated);
    let mut got = Vec::new();
    while got.len() < 3 {
        let ev = soon("recursive watch after reconnect", recursive.changed())
            .await
            .unwrap();
        got.push((ev.event_type, ev.path));
    }
    assert_eq!(
        got,
        vec![
            (EventType::NodeCreated, secret.clone()),
            (EventType::NodeDataChanged, base.clone()),
            (EventType::NodeCreated, format!("{base}/later")),
        ]
    );
    // Watches from the first and the last SetWatches batch fire.
    let last = many.pop().unwrap();
    let first = many.swap_remove(0);
    for (i, w) in [(0, first), (399, last)] {
        other
            .create(&long(i), b"", &CreateOptions::default())
            .await
            .unwrap();
        let ev = soon("exists watch after reconnect", w.changed())
            .await
            .unwrap();
        assert_eq!((ev.event_type, ev.path), (EventType::NodeCreated, long(i)));
    }
    c.close().await.unwrap();
    assert_eq!(other.exists(&e).await.unwrap(), None);
}

/// With the server frozen (SIGSTOP) the client loses the connection, cannot
/// reach anyone, and declares the session expired on its own after about
/// 4/3 of the session timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_expiry_when_the_server_is_unreachable() {
    let zk = own_server().await;
    let c = Client::builder()
        .session_timeout(Duration::from_millis(400))
        .connect(&zk.connect_string())
        .await
        .unwrap();
    assert_eq!(c.session_timeout(), TICK * 2);
    let mut states = c.state_stream();
    assert_eq!(states.next_state().await, Some(SessionState::Connected));
    zk.pause(0).unwrap();
    let began = Instant::now();
    assert_eq!(
        soon("Disconnected", states.next_state()).await,
        Some(SessionState::Disconnected)
    );
    // A request issued now cannot be answered: it fails, it does not hang.
    let pending = c.get_data("/");
    let next = soon("Expired", async {
        loop {
            match states.next_state().await {
                Some(SessionState::Connecting | SessionState::Disconnected) => {}
                other => return other,
            }
        }
    })
    .await;
    assert_eq!(next, Some(SessionState::Expired));
    let took = began.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_err(c.get_data("/").await, Error::SessionExpired);
    match soon("request issued while disconnected", pending).await {
        Err(Error::ConnectionLoss | Error::SessionExpired) => {}
        other => panic!("expected ConnectionLoss or SessionExpired, got {other:?}"),
    }
    zk.resume(0).unwrap();
}

/// `close()` while the client is reconnecting (here: its server froze long
/// enough for a read timeout, then recovers well within the session
/// timeout). Java queues closeSession and sends it once the pending
/// connection attempt completes, so the session and its ephemerals end at
/// once; a session left open lingers for the whole session timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_while_reconnecting_still_closes_the_session() {
    let zk = own_server().await;
    let c = Client::builder()
        .session_timeout(Duration::from_secs(4))
        .connect(&zk.connect_string())
        .await
        .unwrap();
    assert_eq!(c.session_timeout(), TICK * 20);
    let base = base(&c, "close-reconnecting").await;
    let p = format!("{base}/e");
    c.create(&p, b"", &eph()).await.unwrap();
    let mut states = c.state_stream();
    assert_eq!(states.next_state().await, Some(SessionState::Connected));

    zk.pause(0).unwrap();
    // Read timeout (2/5 of 4 s), then a new attempt hangs in the handshake.
    assert_eq!(
        soon("Disconnected", states.next_state()).await,
        Some(SessionState::Disconnected)
    );
    let close = tokio::spawn(c.close());
    tokio::time::sleep(Duration::from_millis(100)).await;
    zk.resume(0).unwrap();
    let resumed = Instant::now();
    soon("close", close).await.unwrap().unwrap();

    let other = Client::connect(&zk.connect_string()).await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(1), async {
        while other.exists(&p).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if gone.is_err() {
        // Report when it does go: at the session's expiry.
        let mut went = None;
        for _ in 0..120 {
            if other.exists(&p).await.unwrap().is_none() {
                went = Some(resumed.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "close() while reconnecting did not close the session: its ephemeral was still there \
             1 s after the server came back, and went {went:?} after (session expiry)"
        );
    }
}

/// Asking for read-only mode is harmless with a read-write server: the
/// state is Connected, and writes work.
#[tokio::test]
async fn read_only_client_on_a_read_write_server_is_connected() {
    let c = connect_with(Client::builder().read_only(true), "").await;
    assert_eq!(c.state(), SessionState::Connected);
    let base = base(&c, "read-only-flag").await;
    c.set_data(&base, b"w", Version::Any).await.unwrap();
}

#[tokio::test]
async fn many_sessions_at_once() {
    let clients = futures::future::join_all((0..30).map(|_| client())).await;
    let mut ids: Vec<_> = clients.iter().map(|c| c.session_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    let base = base(&clients[0], "many-sessions").await;
    let creates = clients
        .iter()
        .enumerate()
        .map(|(i, c)| c.create(&format!("{base}/{i}"), b"", &eph()));
    for r in futures::future::join_all(creates).await {
        r.unwrap();
    }
    futures::future::join_all(clients.into_iter().map(Client::close)).await;
    assert!(client()
        .await
        .get_children(&base)
        .await
        .unwrap()
        .0
        .is_empty());
}
