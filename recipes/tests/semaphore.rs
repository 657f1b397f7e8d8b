//! The counting semaphore: never more than N holders, leases and the
//! internal lock never orphaned.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{base, client, eventually, SOON};
use zkit_recipes::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_n_holders() {
    let setup = client().await;
    let dir = base(&setup, "sem").await;
    let path = format!("{dir}/sem");
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = client().await;
        let sem = Semaphore::new(&c, path.clone(), 3);
        let (inside, peak) = (inside.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..12 {
                let lease = sem.acquire().await.unwrap();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Long enough for the others to fill the remaining slots.
                tokio::time::sleep(Duration::from_millis(25)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                lease.release().await.unwrap();
            }
            c.close().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 3, "{peak} holders at once");
    assert_eq!(peak, 3, "the leases were never all used");
    let sem = Semaphore::new(&setup, path.clone(), 3);
    assert!(
        sem.leases().await.unwrap().is_empty(),
        "a lease was orphaned"
    );
    let (locks, _) = setup.get_children(&format!("{path}/locks")).await.unwrap();
    assert!(
        locks.is_empty(),
        "the internal lock was orphaned: {locks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_semaphore_try_timeout_and_cancel_leave_nothing() {
    let setup = client().await;
    let dir = base(&setup, "semfull").await;
    let path = format!("{dir}/sem");
    let c = client().await;
    let sem = Semaphore::new(&c, path.clone(), 2);
    let a = sem.acquire().await.unwrap();
    let b = sem.try_acquire().await.unwrap().expect("second lease free");
    assert!(sem.try_acquire().await.unwrap().is_none());
    assert!(sem
        .acquire_timeout(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
    for i in 0..10u64 {
        let _ = tokio::time::timeout(Duration::from_micros(i * 500), sem.acquire()).await;
    }
    eventually("only the two held leases remain", SOON, || async {
        sem.leases().await.unwrap().len() == 2
    })
    .await;
    eventually("internal lock free", SOON, || async {
        setup
            .get_children(&format!("{path}/locks"))
            .await
            .map(|(k, _)| k.is_empty())
            .unwrap_or(true)
    })
    .await;
    // A waiter gets the lease a holder gives back.
    let waiting = tokio::spawn({
        let sem = sem.clone();
        async move { sem.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    a.release().await.unwrap();
    let c2 = tokio::time::timeout(SOON, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    b.release().await.unwrap();
    c2.release().await.unwrap();
    assert!(sem.leases().await.unwrap().is_empty());
    c.close().await.unwrap();
}
