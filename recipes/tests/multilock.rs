//! `MultiLock`: all the locks or none, never a deadlock between two
//! multi-locks listing the same paths in opposite orders, mutual exclusion
//! with single locks on any of the paths, fenced writes.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{base, client};
use zkit::{CreateOptions, Error, Version};
use zkit_recipes::{Lock, LockState, MultiLock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_or_nothing_and_no_deadlock_in_opposite_orders() {
    let c = client().await;
    let dir = base(&c, "multilock").await;
    let (a, b) = (format!("{dir}/a"), format!("{dir}/b"));
    // Another client holds b: a multi-lock over a and b waits, and after
    // its time-out holds neither.
    let other = client().await;
    let hold_b = Lock::new(&other, b.clone()).acquire().await.unwrap();
    let ab = MultiLock::new(&c, [a.clone(), b.clone()]);
    assert!(ab
        .acquire_timeout(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
    assert!(
        Lock::new(&other, a.clone())
            .try_acquire()
            .await
            .unwrap()
            .is_some(),
        "a was let go after the time-out"
    );
    hold_b.release().await.unwrap();

    // Two multi-locks listing the paths in opposite orders, and single
    // locks on each path, all increment one counter without ever meeting.
    let counter = format!("{dir}/counter");
    c.create(&counter, b"0", &CreateOptions::default())
        .await
        .unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let zk = client().await;
        let (a, b, counter, inside, overlaps) = (
            a.clone(),
            b.clone(),
            counter.clone(),
            inside.clone(),
            overlaps.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let multi = if w % 2 == 0 {
                MultiLock::new(&zk, [a.clone(), b.clone()])
            } else {
                MultiLock::new(&zk, [b.clone(), a.clone()])
            };
            for _ in 0..15 {
                let g = tokio::time::timeout(Duration::from_secs(30), multi.acquire())
                    .await
                    .expect("no deadlock")
                    .unwrap();
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let (d, stat) = zk.get_data(&counter).await.unwrap();
                let v: u64 = std::str::from_utf8(&d).unwrap().parse().unwrap();
                g.guarded()
                    .set_data(
                        &counter,
                        (v + 1).to_string().as_bytes(),
                        Version::Exact(stat.version),
                    )
                    .commit()
                    .await
                    .unwrap();
                inside.fetch_sub(1, Ordering::SeqCst);
                g.release().await.unwrap();
            }
            zk.close().await.unwrap();
        }));
    }
    // A single lock on b alone excludes them too.
    let single = {
        let zk = client().await;
        let (b, inside, overlaps) = (b.clone(), inside.clone(), overlaps.clone());
        tokio::spawn(async move {
            for _ in 0..15 {
                let g = Lock::new(&zk, b.clone()).acquire().await.unwrap();
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                g.release().await.unwrap();
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    single.await.unwrap();
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two holders at once");
    let (d, _) = c.get_data(&counter).await.unwrap();
    assert_eq!(&d[..], b"60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_fences_the_whole_guard() {
    let c = client().await;
    let dir = base(&c, "multilock-fence").await;
    let target = format!("{dir}/target");
    c.create(&target, b"", &CreateOptions::default())
        .await
        .unwrap();
    let zk = client().await;
    let g = MultiLock::new(
        &zk,
        [format!("{dir}/x"), format!("{dir}/y"), format!("{dir}/x")],
    )
    .acquire()
    .await
    .unwrap();
    assert_eq!(
        g.fencing_tokens().len(),
        2,
        "a path listed twice counts once"
    );
    assert!(g.is_held());
    g.guarded()
        .set_data(&target, b"ok", Version::Any)
        .commit()
        .await
        .unwrap();
    // One of its lock nodes is deleted (an operator, a session cleanup):
    // every fenced write is refused, nothing written.
    let (nodes, _) = c.get_children(&format!("{dir}/y")).await.unwrap();
    c.delete(&format!("{dir}/y/{}", nodes[0]), Version::Any)
        .await
        .unwrap();
    let r = g
        .guarded()
        .set_data(&target, b"stale", Version::Any)
        .commit()
        .await;
    assert!(matches!(&r, Err(e) if e.is_fenced()), "{r:?}");
    let (d, _) = c.get_data(&target).await.unwrap();
    assert_eq!(&d[..], b"ok");
    common::eventually("the guard says lost", Duration::from_secs(5), || {
        let lost = g.state() == LockState::Lost;
        async move { lost }
    })
    .await;
    drop(g);
    assert!(matches!(
        MultiLock::new(&zk, Vec::<String>::new()).acquire().await,
        Err(Error::BadArguments)
    ));
}
