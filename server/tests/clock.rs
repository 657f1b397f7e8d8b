//! Session expiry runs on a monotonic clock, not the wall clock: a wall
//! clock stepped forward must not expire sessions, one stepped backward must
//! not stop expiry. The wall clock still stamps znodes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use zkit::{Client, CreateMode, CreateOptions, SessionState};
use zkit_server::Server;

mod common;

const DAY_MS: i64 = 86_400_000;

fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until `f` holds, for at most `within`.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[tokio::test]
async fn wall_clock_steps_neither_expire_nor_keep_sessions() {
    let offset = Arc::new(AtomicI64::new(0));
    let wall = offset.clone();
    let srv = Server::builder()
        .tick_time(Duration::from_millis(100))
        .wall_clock(move || system_ms() + wall.load(Ordering::SeqCst))
        .start()
        .await
        .unwrap();
    let zk = Client::builder()
        .session_timeout(Duration::from_millis(1000))
        .connect(&srv.connect_string())
        .await
        .unwrap();
    zk.create("/held", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    assert_eq!(srv.session_count(), 1);
    // A session that never sends anything after its handshake.
    let (silent, resp) = common::raw_session(&srv, 2000, None).await;
    let created = Instant::now();
    assert_eq!(resp.timeout, 2000);
    assert_eq!(srv.session_count(), 2);

    // A day forward: an expirer on the wall clock would expire both
    // sessions the next time it wakes (within the pinging session's 1 s
    // timeout at the latest).
    offset.store(DAY_MS, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(srv.session_count(), 2, "a forward step expired a session");
    assert!(zk.exists("/held").await.unwrap().is_some());
    assert_eq!(zk.state(), SessionState::Connected);
    // The wall clock is what stamps znodes.
    zk.create("/stamped", b"", &CreateOptions::default())
        .await
        .unwrap();
    let ctime = zk.exists("/stamped").await.unwrap().unwrap().ctime;
    let expected = system_ms() + DAY_MS;
    assert!(
        (ctime - expected).abs() < 60_000,
        "ctime {ctime} is not the stepped wall clock {expected}"
    );

    // A day backward from where the silent session started: an expirer on
    // the wall clock would not expire it for a day. It must still expire
    // within its timeout plus a tick (and a margin for a loaded machine).
    offset.store(-DAY_MS, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(6), || srv.session_count() == 1).await,
        "a backward step stopped session expiry"
    );
    let took = created.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "expired after {took:?}, before its 2 s timeout"
    );
    drop(silent);
    // The pinging session lived through both steps.
    assert!(zk.exists("/held").await.unwrap().is_some());
    assert_eq!(srv.session_count(), 1);
    zk.close().await.unwrap();
}
