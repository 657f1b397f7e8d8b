//! The exclusive lock against a real ZooKeeper 3.8 (default) or the bundled
//! server (`ZKIT_TEST_BACKEND=bundled`): mutual exclusion under contention
//! with a fenced counter, herd-freedom, try/timeout, cancellation, loss on
//! expiry, fencing, foreign contenders, sequence order.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{base, client, connect_string, eventually, SOON};
use zkit::{Client, CreateMode, CreateOptions, Error, Version};
use zkit_recipes::{Lock, LockState};

async fn children(c: &Client, path: &str) -> Vec<String> {
    match c.get_children(path).await {
        Ok((mut k, _)) => {
            k.sort();
            k
        }
        Err(Error::NoNode) => Vec::new(),
        Err(e) => panic!("{e}"),
    }
}

/// 8 sessions x 200 acquisitions. Under the lock each holder reads a
/// counter node and writes counter + 1 *fenced* (the multi checks our lock
/// node) with the version it read: a second holder at the same time would
/// make one of them fail with BadVersion. At the end the counter must be
/// exactly 1600 and no write may have failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_with_a_fenced_counter() {
    let setup = client().await;
    let dir = base(&setup, "mutex").await;
    let counter = format!("{dir}/counter");
    setup
        .create(&counter, b"0", &CreateOptions::default())
        .await
        .unwrap();
    let lock_path = format!("{dir}/lock");
    let inside = Arc::new(AtomicUsize::new(0));
    let violations = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    const CONTENDERS: usize = 8;
    const ROUNDS: usize = 200;
    let mut last_token = Vec::new();
    for _ in 0..CONTENDERS {
        let c = client().await;
        let lock = Lock::new(&c, lock_path.clone());
        let counter = counter.clone();
        let inside = inside.clone();
        let violations = violations.clone();
        last_token.push(0i64);
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                let guard = lock.acquire().await.unwrap();
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
                let (data, stat) = c.get_data(&counter).await.unwrap();
                let n: u64 = std::str::from_utf8(&data).unwrap().parse().unwrap();
                guard
                    .guarded()
                    .set_data(
                        &counter,
                        (n + 1).to_string().as_bytes(),
                        Version::Exact(stat.version),
                    )
                    .commit()
                    .await
                    .unwrap();
                tokens.push(guard.fencing_token());
                inside.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
            c.close().await.unwrap();
            tokens
        }));
    }
    let mut all_tokens = Vec::new();
    for t in tasks {
        let tokens = t.await.unwrap();
        assert!(
            tokens.windows(2).all(|w| w[0] < w[1]),
            "tokens grow per holder"
        );
        all_tokens.extend(tokens);
    }
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    let (data, _) = setup.get_data(&counter).await.unwrap();
    assert_eq!(&data[..], (CONTENDERS * ROUNDS).to_string().as_bytes());
    all_tokens.sort_unstable();
    all_tokens.dedup();
    assert_eq!(
        all_tokens.len(),
        CONTENDERS * ROUNDS,
        "one token per holder"
    );
    assert!(
        children(&setup, &lock_path).await.is_empty(),
        "no node left"
    );
}

/// One release wakes exactly one waiter: each waiter watches only its
/// predecessor, so deleting the holder's node fires one watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_only_the_next_waiter() {
    let setup = client().await;
    let dir = base(&setup, "herd").await;
    let lock_path = format!("{dir}/lock");
    let holder_client = client().await;
    let lock = Lock::new(&holder_client, lock_path.clone());
    let guard = lock.acquire().await.unwrap();
    let acquired = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let c = client().await;
        let acquired = acquired.clone();
        let lock_path = lock_path.clone();
        waiters.push(tokio::spawn(async move {
            let g = Lock::new(&c, lock_path).acquire().await.unwrap();
            acquired.fetch_add(1, Ordering::SeqCst);
            (c, g)
        }));
    }
    eventually("5 waiters queued", SOON, || async {
        children(&setup, &lock_path).await.len() == 6
    })
    .await;
    // Every waiter watches exactly one node, the one before it, so the six
    // nodes carry six watches on five nodes: the holder's node (its own
    // guard's watch + the first waiter's) and each waiter's node but the
    // last (the next waiter's). A herd would put all five on the holder.
    let addr = connect_string().split(',').next().unwrap().to_string();
    let watches = |wchp: &str| {
        let mut per_node: std::collections::BTreeMap<String, usize> = Default::default();
        let mut current: Option<String> = None;
        for line in wchp.lines() {
            if line.starts_with('\t') {
                if let Some(node) = &current {
                    *per_node.entry(node.clone()).or_default() += 1;
                }
            } else {
                current = line
                    .starts_with(&format!("{lock_path}/"))
                    .then(|| line.to_string());
            }
        }
        per_node
    };
    let deadline = std::time::Instant::now() + SOON;
    let (wchp, per_node) = loop {
        let wchp = four_letter(&addr, "wchp").await;
        let per_node = watches(&wchp);
        if per_node.values().sum::<usize>() >= 6 || std::time::Instant::now() > deadline {
            break (wchp, per_node);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(per_node.len(), 5, "{wchp}");
    assert_eq!(per_node.values().sum::<usize>(), 6, "{wchp}");
    assert_eq!(per_node.values().filter(|&&n| n == 2).count(), 1, "{wchp}");
    guard.release().await.unwrap();
    eventually("one waiter acquired", SOON, || async {
        acquired.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        acquired.load(Ordering::SeqCst),
        1,
        "a release woke more than one"
    );
    // Drain: each release hands over to the next.
    let mut done = 1;
    let mut pending: Vec<_> = waiters;
    while !pending.is_empty() {
        let (finished, _, rest) = futures::future::select_all(pending).await;
        let (c, g) = finished.unwrap();
        g.release().await.unwrap();
        c.close().await.unwrap();
        pending = rest;
        if !pending.is_empty() {
            done += 1;
            eventually("next waiter", SOON, || async {
                acquired.load(Ordering::SeqCst) == done
            })
            .await;
        }
    }
    holder_client.close().await.unwrap();
}

async fn four_letter(addr: &str, word: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(word.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(SOON, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_and_timeout_leave_no_node() {
    let setup = client().await;
    let dir = base(&setup, "try").await;
    let lock_path = format!("{dir}/lock");
    let a = client().await;
    let b = client().await;
    let held = Lock::new(&a, lock_path.clone())
        .try_acquire()
        .await
        .unwrap();
    let held = held.expect("free lock taken at once");
    assert!(held.is_held());
    let lock_b = Lock::new(&b, lock_path.clone());
    assert!(lock_b.try_acquire().await.unwrap().is_none());
    let started = std::time::Instant::now();
    assert!(lock_b
        .acquire_timeout(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        children(&setup, &lock_path).await.len(),
        1,
        "only the holder's node"
    );
    held.release().await.unwrap();
    let g = lock_b
        .acquire_timeout(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("free now");
    g.release().await.unwrap();
    assert!(children(&setup, &lock_path).await.is_empty());
}

/// Dropping an acquire future, while it waits or in the middle of creating
/// its node, leaves no node behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_acquires_leave_no_orphans() {
    let setup = client().await;
    let dir = base(&setup, "cancel").await;
    let lock_path = format!("{dir}/lock");
    let a = client().await;
    let held = Lock::new(&a, lock_path.clone()).acquire().await.unwrap();
    let b = client().await;
    let lock_b = Lock::new(&b, lock_path.clone());
    for i in 0..20u64 {
        // Cancel at different moments: before, during and after the create.
        let wait = Duration::from_micros(i * 300);
        let _ = tokio::time::timeout(wait, lock_b.acquire()).await;
    }
    eventually("orphans deleted", SOON, || async {
        children(&setup, &lock_path).await.len() == 1
    })
    .await;
    // Dropping a guard releases in the background.
    drop(held);
    eventually("dropped guard released", SOON, || async {
        children(&setup, &lock_path).await.is_empty()
    })
    .await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// The holder's session expires: the guard reports Lost and fenced writes
/// are refused; the next contender gets the lock with a larger token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_loses_the_lock_and_fences_the_old_holder() {
    let setup = client().await;
    let dir = base(&setup, "expire").await;
    let lock_path = format!("{dir}/lock");
    let target = format!("{dir}/target");
    setup
        .create(&target, b"", &CreateOptions::default())
        .await
        .unwrap();
    let a = client().await;
    let guard = Lock::new(&a, lock_path.clone()).acquire().await.unwrap();
    let token = guard.fencing_token();
    guard
        .guarded()
        .set_data(&target, b"a", Version::Any)
        .commit()
        .await
        .unwrap();
    common::expire(&a).await;
    tokio::time::timeout(SOON, guard.lost())
        .await
        .expect("loss reported");
    assert_eq!(guard.state(), LockState::Lost);
    let b = client().await;
    let next = Lock::new(&b, lock_path.clone()).acquire().await.unwrap();
    assert!(next.fencing_token() > token);
    // The old holder's fenced write cannot happen (its session is gone, and
    // even through another session the check on its node would fail).
    let stale = setup
        .multi()
        .fence(guard.node(), Version::Any)
        .set_data(&target, b"stale", Version::Any)
        .commit()
        .await;
    assert!(
        matches!(&stale, Err(e @ Error::Fenced { path, .. }) if e.is_fenced() && path == guard.node()),
        "{stale:?}"
    );
    next.release().await.unwrap();
    drop(guard);
    b.close().await.unwrap();
}

/// kazoo and Curator-style nodes already in the directory are contenders:
/// a kazoo-named node with a lower sequence holds the lock first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_contenders_are_respected() {
    let setup = client().await;
    let dir = base(&setup, "foreign").await;
    let lock_path = format!("{dir}/lock");
    setup
        .create(&lock_path, b"", &CreateOptions::new(CreateMode::Container))
        .await
        .unwrap();
    let (kazoo, _) = setup
        .create(
            &format!("{lock_path}/3f2a9c__lock__"),
            b"kazoo",
            &CreateOptions::new(CreateMode::EphemeralSequential),
        )
        .await
        .unwrap();
    // Unrelated children are ignored, never fatal.
    setup
        .create(
            &format!("{lock_path}/README"),
            b"",
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    let c = client().await;
    let lock = Lock::new(&c, lock_path.clone());
    assert!(
        lock.try_acquire().await.unwrap().is_none(),
        "kazoo holds it"
    );
    let waiting = tokio::spawn({
        let lock = lock.clone();
        async move { lock.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    setup.delete(&kazoo, Version::Any).await.unwrap();
    let g = tokio::time::timeout(SOON, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let parts = lock.participants().await.unwrap();
    assert_eq!(parts.len(), 1);
    assert!(
        parts[0].starts_with("_c_") && parts[0].contains("-lock-"),
        "{parts:?}"
    );
    g.release().await.unwrap();
    c.close().await.unwrap();
}

/// The lock directory is a container: once emptied the server may reap it,
/// and the next acquisition re-creates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_survives_its_parent_being_removed() {
    let setup = client().await;
    let dir = base(&setup, "reaped").await;
    let lock_path = format!("{dir}/a/b/lock");
    let c = client().await;
    let lock = Lock::new(&c, lock_path.clone());
    let g = lock.acquire().await.unwrap();
    let stat = setup.exists(&lock_path).await.unwrap().unwrap();
    assert_eq!(stat.ephemeral_owner, 0, "containers look like plain nodes");
    g.release().await.unwrap();
    // What the container reaper would do.
    setup.delete(&lock_path, Version::Any).await.unwrap();
    setup
        .delete(&format!("{dir}/a/b"), Version::Any)
        .await
        .unwrap();
    let g = lock.acquire().await.unwrap();
    assert!(g.is_held());
    g.release().await.unwrap();
    c.close().await.unwrap();
}

/// The reply to our create is lost with the connection: after the session
/// resumes, the protected name finds the node the server did create, so
/// the lock directory never holds two nodes of ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_reply_leaves_no_duplicate() {
    use zkit_testcontainers::{FaultMode, FaultProxy};
    let setup = client().await;
    let dir = base(&setup, "lostreply").await;
    let server: std::net::SocketAddr = connect_string().split(',').next().unwrap().parse().unwrap();
    let proxy = FaultProxy::start(server).await.unwrap();
    let c = Client::builder()
        .session_timeout(Duration::from_secs(10))
        .connect(&proxy.addr().to_string())
        .await
        .unwrap();
    for round in 0..5 {
        let lock_path = format!("{dir}/lock{round}");
        setup
            .create(&lock_path, b"", &CreateOptions::new(CreateMode::Container))
            .await
            .unwrap();
        let lock = Lock::new(&c, lock_path.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Every byte takes 200 ms through the proxy: cut the connection
        // when the create has reached the server but its reply has not
        // come back yet.
        proxy.set_mode(FaultMode::Delay(Duration::from_millis(200)));
        let acquiring = tokio::spawn(async move { lock.acquire().await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.cut();
        proxy.set_mode(FaultMode::Pass);
        let guard = tokio::time::timeout(SOON, acquiring)
            .await
            .expect("acquired after the resume")
            .unwrap()
            .unwrap();
        let kids = children(&setup, &lock_path).await;
        assert_eq!(kids.len(), 1, "round {round}: {kids:?}");
        assert_eq!(format!("{lock_path}/{}", kids[0]), guard.node());
        // The node the server created for the lost request, adopted: the
        // directory's first child.
        assert!(
            guard.node().ends_with("-lock-0000000000"),
            "{}",
            guard.node()
        );
        guard.release().await.unwrap();
    }
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_reads_lost_as_soon_as_its_session_is_closed() {
    let setup = client().await;
    let dir = base(&setup, "lock-closed").await;
    let holder = client().await;
    let guard = Lock::new(&holder, format!("{dir}/lock"))
        .acquire()
        .await
        .unwrap();
    assert!(guard.is_held());
    holder.close().await.unwrap();
    // No wait for the guard's monitor: the session is over, so is the lock.
    assert_eq!(guard.state(), LockState::Lost);
    assert!(!guard.is_held());
}
