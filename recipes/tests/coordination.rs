//! Counters, IDs and barriers.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{base, client, SOON};
use zkit_recipes::{Barrier, DoubleBarrier, IdGenerator, SharedCount};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_count_takes_every_increment_once() {
    let setup = client().await;
    let dir = base(&setup, "count").await;
    let path = format!("{dir}/hits");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = client().await;
        let count = SharedCount::new(&c, path.clone(), 0);
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                count.add(1).await.unwrap();
            }
            c.close().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let count = SharedCount::new(&setup, path.clone(), 0);
    assert_eq!(count.get().await.unwrap().value, 4000);
    // Curator's format: 4-byte big-endian.
    count.set(258).await.unwrap();
    let (raw, _) = setup.get_data(&path).await.unwrap();
    assert_eq!(&raw[..], &[0, 0, 1, 2]);
    let v = count.get().await.unwrap();
    assert!(count.try_set(v, 7).await.unwrap());
    assert!(
        !count.try_set(v, 8).await.unwrap(),
        "stale version must fail"
    );
    assert_eq!(count.get().await.unwrap().value, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_unique_and_increasing() {
    let setup = client().await;
    let dir = base(&setup, "ids").await;
    let path = format!("{dir}/gen");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = client().await;
        let mut ids = IdGenerator::new(&c, path.clone(), 100);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(2500);
            for _ in 0..2500 {
                out.push(ids.next_id().await.unwrap());
            }
            c.close().await.unwrap();
            out
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        let ids = t.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "not increasing");
        for id in ids {
            assert!(all.insert(id), "duplicate id {id}");
        }
    }
    assert_eq!(all.len(), 10_000);
    let (left, _) = setup.get_children(&path).await.unwrap();
    assert!(left.len() <= 4, "block nodes are deleted: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_holds_waiters_until_removed() {
    let setup = client().await;
    let dir = base(&setup, "barrier").await;
    let barrier = Barrier::new(&setup, format!("{dir}/gate"));
    barrier.set().await.unwrap();
    let released = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for _ in 0..3 {
        let c = client().await;
        let b = Barrier::new(&c, format!("{dir}/gate"));
        let released = released.clone();
        waiters.push(tokio::spawn(async move {
            b.wait().await.unwrap();
            released.fetch_add(1, Ordering::SeqCst);
            c.close().await.unwrap();
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(released.load(Ordering::SeqCst), 0);
    barrier.remove().await.unwrap();
    for w in waiters {
        tokio::time::timeout(SOON, w).await.unwrap().unwrap();
    }
    assert_eq!(released.load(Ordering::SeqCst), 3);
}

/// Ten members: nobody passes `enter` before all ten are in; one member's
/// session dies inside; the other nine still leave together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_barrier_with_a_killed_member() {
    let setup = client().await;
    let dir = base(&setup, "double").await;
    let path = format!("{dir}/batch");
    let entered = Arc::new(AtomicUsize::new(0));
    let passed_early = Arc::new(AtomicUsize::new(0));
    let left = Arc::new(AtomicUsize::new(0));
    let (gone_tx, gone_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let c = client().await;
        let b = DoubleBarrier::new(&c, path.clone(), 10);
        let (entered, passed_early, left) = (entered.clone(), passed_early.clone(), left.clone());
        let mut gone = gone_rx.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20 * i as u64)).await;
            entered.fetch_add(1, Ordering::SeqCst);
            b.enter().await.unwrap();
            if entered.load(Ordering::SeqCst) < 10 {
                passed_early.fetch_add(1, Ordering::SeqCst);
            }
            if i == 9 {
                // This member dies inside the barrier.
                c.close().await.unwrap();
                return;
            }
            let _ = gone.wait_for(|g| *g).await;
            b.leave().await.unwrap();
            left.fetch_add(1, Ordering::SeqCst);
            c.close().await.unwrap();
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    gone_tx.send(true).unwrap();
    for t in tasks {
        tokio::time::timeout(SOON, t).await.unwrap().unwrap();
    }
    assert_eq!(
        passed_early.load(Ordering::SeqCst),
        0,
        "entered before all arrived"
    );
    assert_eq!(left.load(Ordering::SeqCst), 9);
    let (kids, _) = setup.get_children(&path).await.unwrap();
    assert!(kids.is_empty(), "{kids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_follows_joins_and_leaves() {
    use zkit_recipes::{GroupMember, MemberSet};
    let setup = client().await;
    let dir = base(&setup, "group").await;
    let path = format!("{dir}/workers");
    let mut set = MemberSet::watch(&setup, &path);
    let a = client().await;
    let b = client().await;
    let c = client().await;
    let ma = GroupMember::join(&a, &path, "a", b"10.0.0.1")
        .await
        .unwrap();
    let mb = GroupMember::join(&b, &path, "b", b"10.0.0.2")
        .await
        .unwrap();
    let _mc = GroupMember::join(&c, &path, "c", b"10.0.0.3")
        .await
        .unwrap();
    // Another session cannot take over a live member's id.
    assert_eq!(
        GroupMember::join(&a, &path, "b", b"x").await.unwrap_err(),
        zkit::Error::NodeExists
    );
    // Nor can a second handle of the same session share one: either
    // handle's leave would end the other's membership.
    assert_eq!(
        GroupMember::join(&a, &path, "a", b"10.0.0.9")
            .await
            .unwrap_err(),
        zkit::Error::NodeExists
    );
    let (d, _) = setup.get_data(&format!("{path}/a")).await.unwrap();
    assert_eq!(&d[..], b"10.0.0.1", "the refused join wrote nothing");
    // Leaving by drop and joining again at once keeps the new membership.
    drop(ma);
    let ma = GroupMember::join(&a, &path, "a", b"10.0.0.1")
        .await
        .unwrap();
    let members = |set: &MemberSet| set.borrow().keys().cloned().collect::<Vec<_>>();
    let deadline = tokio::time::Instant::now() + SOON;
    while members(&set) != ["a", "b", "c"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            members(&set)
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), set.changed()).await;
    }
    // A new set is complete once initialized, without waiting for changes.
    let fresh = MemberSet::watch(&setup, &path);
    fresh.initialized().await.unwrap();
    assert_eq!(members(&fresh), ["a", "b", "c"]);
    drop(fresh);
    mb.leave().await.unwrap();
    c.close().await.unwrap(); // c's membership ends with its session
    let deadline = tokio::time::Instant::now() + SOON;
    while members(&set) != ["a"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            members(&set)
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), set.changed()).await;
    }
    ma.update(b"10.0.0.7").await.unwrap();
    let (d, _) = setup.get_data(&format!("{path}/a")).await.unwrap();
    assert_eq!(&d[..], b"10.0.0.7");
    // The set sees the payload update with nobody joining or leaving.
    let deadline = tokio::time::Instant::now() + SOON;
    while set.borrow().get("a").map(|p| &p[..]) != Some(&b"10.0.0.7"[..]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "update not seen: {:?}",
            set.borrow()
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), set.changed()).await;
    }
    assert_eq!(members(&set), ["a"]);
    ma.leave().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

// One thread: a join polled once has sent its create but cannot have seen
// the reply, so round 0 is always cut short; later rounds poll it more
// often before dropping it (somewhere in the create, or done).
#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_join_leaves_no_member_behind() {
    use zkit_recipes::GroupMember;
    let setup = client().await;
    let dir = base(&setup, "group-cancel").await;
    let path = format!("{dir}/workers");
    setup
        .create(&path, b"", &zkit::CreateOptions::default())
        .await
        .unwrap();
    let a = client().await;
    let node = format!("{path}/a");
    let mut cancelled = 0;
    for round in 0..40u64 {
        let done = {
            let mut join = std::pin::pin!(GroupMember::join(&a, &path, "a", b"x"));
            let mut done = None;
            for _ in 0..=round {
                if let std::task::Poll::Ready(r) = futures::poll!(join.as_mut()) {
                    done = Some(r);
                    break;
                }
                tokio::task::yield_now().await;
            }
            done
            // An unfinished join is dropped here.
        };
        match done {
            Some(member) => {
                member.unwrap().leave().await.unwrap();
                continue;
            }
            None => cancelled += 1,
        }
        if round % 2 == 0 {
            // Nobody joins again: the node must go.
            let deadline = tokio::time::Instant::now() + SOON;
            while setup.exists(&node).await.unwrap().is_some() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "round {round}: orphan member node"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else {
            // Joining again at once: the new membership is kept.
            let m = GroupMember::join(&a, &path, "a", b"y").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (d, s) = setup.get_data(&node).await.unwrap();
            assert_eq!(
                (&d[..], s.ephemeral_owner),
                (&b"y"[..], a.session_id().0),
                "round {round}"
            );
            m.leave().await.unwrap();
        }
    }
    assert!(cancelled >= 1);
    a.close().await.unwrap();
}

// One thread: a call polled once has sent its create and is dropped before
// the reply; later rounds let it run further before dropping it.
#[tokio::test(flavor = "current_thread")]
async fn cancelled_id_calls_leave_no_block_node_and_never_repeat_an_id() {
    let setup = client().await;
    let dir = base(&setup, "ids-cancel").await;
    let path = format!("{dir}/gen");
    let mut ids = IdGenerator::new(&setup, &path, 1);
    let mut seen = HashSet::new();
    let mut cancelled = 0;
    for round in 0..30 {
        let done = {
            let mut call = std::pin::pin!(ids.next_id());
            let mut done = None;
            for _ in 0..=round {
                if let std::task::Poll::Ready(r) = futures::poll!(call.as_mut()) {
                    done = Some(r);
                    break;
                }
                tokio::task::yield_now().await;
            }
            done
        };
        match done {
            Some(id) => assert!(seen.insert(id.unwrap()), "repeated id"),
            None => cancelled += 1,
        }
        let id = ids.next_id().await.unwrap();
        assert!(seen.insert(id), "repeated id");
    }
    assert!(cancelled >= 1);
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let (kids, _) = setup.get_children(&path).await.unwrap();
        if kids.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "block nodes left behind: {kids:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_double_barrier_entry_is_not_counted() {
    let setup = client().await;
    let dir = base(&setup, "double-cancel").await;
    let path = format!("{dir}/batch");
    let a = DoubleBarrier::new(&setup, path.clone(), 3);
    // A gives up waiting: it withdraws.
    let r = tokio::time::timeout(Duration::from_millis(200), a.enter()).await;
    assert!(r.is_err(), "entered alone");
    let mut members = Vec::new();
    for _ in 0..3 {
        let c = client().await;
        members.push((DoubleBarrier::new(&c, path.clone(), 3), c));
    }
    let entered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (b, c) in members.drain(..2) {
        let entered = entered.clone();
        tasks.push(tokio::spawn(async move {
            b.enter().await.unwrap();
            entered.fetch_add(1, Ordering::SeqCst);
            (b, c)
        }));
    }
    // Two live members and A's withdrawn entry: nobody may pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(entered.load(Ordering::SeqCst), 0, "A's entry was counted");
    let (third, c3) = members.pop().unwrap();
    third.enter().await.unwrap();
    for t in tasks {
        let (b, c) = tokio::time::timeout(SOON, t).await.unwrap().unwrap();
        drop(b);
        c.close().await.unwrap();
    }
    drop(third);
    c3.close().await.unwrap();
}
