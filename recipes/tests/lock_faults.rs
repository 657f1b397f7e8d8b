//! The lock across server faults: on a real 3-node ensemble (the holder's
//! member killed), or with `ZKIT_TEST_BACKEND=bundled` on one durable
//! bundled server killed and restarted. The session survives, so the lock
//! does: the guard goes Suspended, then Reconfirmed, and fenced writes work
//! again; no other contender gets in meanwhile.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::bundled;
use zkit::{Client, CreateOptions, Version};
use zkit_recipes::{Lock, LockState};
use zkit_testcontainers::{Backend, Ensemble};

const SOON: Duration = Duration::from_secs(20);

async fn fixture() -> Ensemble {
    let b = if bundled() {
        Ensemble::builder().backend(Backend::Bundled)
    } else {
        Ensemble::builder().size(3)
    };
    b.tick_time(Duration::from_millis(200))
        .start()
        .await
        .expect("fixture starts")
}

/// A session with a 4 s timeout: long enough to outlive a server restart.
async fn session(connect: &str) -> Client {
    Client::builder()
        .session_timeout(Duration::from_secs(4))
        .connect(connect)
        .await
        .expect("connect")
}

async fn wait_state(guard: &zkit_recipes::LockGuard, want: LockState) {
    let mut rx = guard.state_watch();
    tokio::time::timeout(SOON, rx.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("state {:?}, want {want:?}", guard.state()))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_outlives_its_server_and_is_reconfirmed() {
    let zk = fixture().await;
    let connect = zk.connect_string();
    let holder = session(&connect).await;
    let other = session(&connect).await;
    holder
        .create("/fenced", b"0", &CreateOptions::default())
        .await
        .unwrap();
    let guard = Lock::new(&holder, "/locks/faults").acquire().await.unwrap();
    assert_eq!(guard.state(), LockState::Held);
    let rival = tokio::spawn({
        let other = other.clone();
        async move { Lock::new(&other, "/locks/faults").acquire().await }
    });

    // Crash the server the holder talks to.
    let member = holder
        .connected_server()
        .and_then(|h| zk.member_of_port(h.port))
        .expect("connected");
    let t0 = Instant::now();
    zk.kill(member).await.unwrap();
    wait_state(&guard, LockState::Suspended).await;
    if zk.is_standalone() {
        zk.restart(member).await.unwrap();
    }
    wait_state(&guard, LockState::Reconfirmed).await;
    eprintln!("reconfirmed {:?} after the kill", t0.elapsed());
    assert!(guard.is_held());
    guard
        .guarded()
        .set_data("/fenced", b"1", Version::Any)
        .commit()
        .await
        .unwrap();
    assert!(
        !rival.is_finished(),
        "the rival got in while we held the lock"
    );
    guard.release().await.unwrap();
    let g = tokio::time::timeout(SOON, rival)
        .await
        .expect("rival acquires after the release")
        .unwrap()
        .unwrap();
    g.release().await.unwrap();
    holder.close().await.unwrap();
    other.close().await.unwrap();
}

/// A leader whose server dies is suspended (not leading) until the session
/// is back, then leads again with the same token; the other participant
/// never leads meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latch_leadership_is_suspended_then_restored() {
    use zkit_recipes::{LeaderLatch, Leadership};
    let zk = fixture().await;
    let connect = zk.connect_string();
    let a = session(&connect).await;
    let b = session(&connect).await;
    let la = LeaderLatch::start(&a, "/election/faults", "a")
        .await
        .unwrap();
    la.await_leadership().await.unwrap();
    let lb = LeaderLatch::start(&b, "/election/faults", "b")
        .await
        .unwrap();
    let token = la.fencing_token().unwrap();
    let mut wa = la.leadership_watch();
    let member = a
        .connected_server()
        .and_then(|h| zk.member_of_port(h.port))
        .expect("connected");
    zk.kill(member).await.unwrap();
    tokio::time::timeout(SOON, wa.wait_for(|s| *s == Leadership::Suspended))
        .await
        .expect("suspended")
        .unwrap();
    assert!(!la.is_leader());
    if zk.is_standalone() {
        zk.restart(member).await.unwrap();
    }
    tokio::time::timeout(SOON, la.await_leadership())
        .await
        .expect("leading again")
        .unwrap();
    assert_eq!(la.fencing_token(), Some(token), "same term, same node");
    assert!(!lb.is_leader());
    la.close().await.unwrap();
    tokio::time::timeout(SOON, lb.await_leadership())
        .await
        .unwrap()
        .unwrap();
    lb.close().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A semaphore lease and a read lock held across the crash of their
/// server: both are suspended, then reconfirmed; the semaphore never
/// hands out more leases than it has meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_read_locks_are_reconfirmed_after_a_crash() {
    use zkit_recipes::{ReadWriteLock, Semaphore};
    let zk = fixture().await;
    let connect = zk.connect_string();
    let holder = session(&connect).await;
    let other = session(&connect).await;
    let lease = Semaphore::new(&holder, "/sem/faults", 1)
        .acquire()
        .await
        .unwrap();
    let read = ReadWriteLock::new(&holder, "/rw/faults")
        .read()
        .acquire()
        .await
        .unwrap();
    let member = holder
        .connected_server()
        .and_then(|h| zk.member_of_port(h.port))
        .expect("connected");
    zk.kill(member).await.unwrap();
    wait_state(&lease, LockState::Suspended).await;
    wait_state(&read, LockState::Suspended).await;
    if zk.is_standalone() {
        zk.restart(member).await.unwrap();
    }
    wait_state(&lease, LockState::Reconfirmed).await;
    wait_state(&read, LockState::Reconfirmed).await;
    // The only lease is still ours: nobody else gets one.
    let rival = Semaphore::new(&other, "/sem/faults", 1);
    assert!(rival
        .acquire_timeout(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
    // Readers still share; a writer waits.
    let rw = ReadWriteLock::new(&other, "/rw/faults");
    let r2 = rw
        .read()
        .try_acquire()
        .await
        .unwrap()
        .expect("readers share");
    assert!(rw.write().try_acquire().await.unwrap().is_none());
    r2.release().await.unwrap();
    read.release().await.unwrap();
    lease.release().await.unwrap();
    let l2 = rival
        .acquire_timeout(SOON)
        .await
        .unwrap()
        .expect("free now");
    l2.release().await.unwrap();
    holder.close().await.unwrap();
    other.close().await.unwrap();
}
