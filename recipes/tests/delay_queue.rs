//! The delay queue: nothing before its due time, due-time order, early
//! wake-up for an earlier item, several consumers with nothing lost or
//! doubled, redelivery after a consumer's session ends, no claim node left
//! by a dropped take, foreign names and data skipped.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{base, client, eventually, SOON};
use zkit::{Client, CreateMode, CreateOptions};
use zkit_recipes::DelayQueue;

/// How late after its due time an item may be delivered (a few round trips
/// in practice).
const LATE: Duration = Duration::from_millis(1000);

const CLAIMS: &str = "_claims|FFFFFFFFFFFF|";
const WAITERS: &str = "_waiters|FFFFFFFFFFFF|";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Curator's `ItemSerializer` framing, written out by hand.
fn framed(items: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0, 1, 0, 1];
    for i in items {
        out.push(1);
        out.extend_from_slice(&(i.len() as u32).to_be_bytes());
        out.extend_from_slice(i);
    }
    out.push(2);
    out
}

/// Asserts that the wall clock is at or after `due_ms` and at most
/// [`LATE`] past it.
#[track_caller]
fn assert_on_time(what: &str, due_ms: u64) {
    let now = now_ms();
    assert!(now >= due_ms, "{what}: delivered {} ms early", due_ms - now);
    assert!(
        now <= due_ms + LATE.as_millis() as u64,
        "{what}: delivered {} ms late",
        now - due_ms
    );
}

async fn children(c: &Client, path: &str) -> Vec<String> {
    match c.get_children(path).await {
        Ok((k, _)) => k,
        Err(zkit::Error::NoNode) => Vec::new(),
        Err(e) => panic!("{path}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_not_taken_before_they_are_due() {
    let setup = client().await;
    let dir = base(&setup, "delay-due").await;
    let path = format!("{dir}/q");
    let q = DelayQueue::new(&setup, path.clone());
    let due = now_ms() + 1500;
    let item = q.put(b"x", at(due)).await.unwrap();
    // Curator's name and framing.
    assert_eq!(item, format!("{path}/queue-|{due:08X}|0000000000"));
    let (data, _) = setup.get_data(&item).await.unwrap();
    assert_eq!(&data[..], framed(&[b"x"]));

    assert_eq!(q.try_take().await.unwrap(), None);
    let started = tokio::time::Instant::now();
    assert_eq!(
        q.take_timeout(Duration::from_millis(400)).await.unwrap(),
        None
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(q
        .take_claimed_timeout(Duration::from_millis(200))
        .await
        .unwrap()
        .is_none());
    assert!(now_ms() < due, "the test ran too slowly to mean anything");
    // A take that timed out left nothing behind: no claim, no place in line.
    eventually("timed-out takes leave no node", SOON, || async {
        children(&setup, &format!("{path}/{CLAIMS}"))
            .await
            .is_empty()
            && children(&setup, &format!("{path}/{WAITERS}"))
                .await
                .is_empty()
    })
    .await;

    assert_eq!(q.take().await.unwrap(), b"x");
    assert_on_time("x", due);
    assert_eq!(q.len().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_come_in_due_order_not_insertion_order() {
    let setup = client().await;
    let dir = base(&setup, "delay-order").await;
    let q = DelayQueue::new(&setup, format!("{dir}/q"));
    let t0 = now_ms();
    let mut dues = Vec::new();
    for (data, due) in [
        ("c", t0 + 1200),
        ("a", t0 + 400),
        ("b", t0 + 800),
        ("past", 1_000_000),
    ] {
        q.put(data.as_bytes(), at(due)).await.unwrap();
        dues.push((data, due));
    }
    q.put(b"now", Duration::ZERO).await.unwrap();
    dues.push(("now", now_ms()));
    assert_eq!(q.len().await.unwrap(), 5);
    for want in ["past", "now", "a", "b", "c"] {
        let got = q.take().await.unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), want);
        let due = dues.iter().find(|(d, _)| *d == want).unwrap().1;
        if due > t0 {
            assert_on_time(want, due);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_item_wakes_a_sleeping_taker() {
    let setup = client().await;
    let dir = base(&setup, "delay-wake").await;
    let path = format!("{dir}/q");
    let q = DelayQueue::new(&setup, path.clone());
    q.put(b"late", Duration::from_secs(30)).await.unwrap();
    let consumer = client().await;
    let taker_q = DelayQueue::new(&consumer, path.clone());
    let taker = tokio::spawn(async move { taker_q.take().await.unwrap() });
    // The taker is first in line, asleep until the late item.
    eventually("the taker waits in line", SOON, || async {
        children(&setup, &format!("{path}/{WAITERS}")).await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!taker.is_finished());
    let due = now_ms() + 500;
    q.put(b"early", at(due)).await.unwrap();
    let got = tokio::time::timeout(SOON, taker)
        .await
        .expect("woken for the earlier item")
        .unwrap();
    assert_eq!(got, b"early");
    assert_on_time("early", due);
    assert_eq!(q.len().await.unwrap(), 1, "the late item stays");
    consumer.close().await.unwrap();
}

/// Two producers, four consumers (three at-least-once, one at-most-once),
/// due times spread over two seconds in scrambled order: every item is
/// delivered exactly once, never before it is due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_consumers_lose_and_duplicate_nothing() {
    let setup = client().await;
    let dir = base(&setup, "delay-mpmc").await;
    let path = format!("{dir}/q");
    const PER_PRODUCER: u64 = 100;
    let t0 = now_ms() + 300;
    let got: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let early: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut consumers = Vec::new();
    for k in 0..4 {
        let c = client().await;
        let q = DelayQueue::new(&c, path.clone());
        let (got, early) = (got.clone(), early.clone());
        consumers.push(tokio::spawn(async move {
            loop {
                let item = if k == 3 {
                    match q.take_timeout(Duration::from_secs(3)).await.unwrap() {
                        Some(d) => d,
                        None => break,
                    }
                } else {
                    match q
                        .take_claimed_timeout(Duration::from_secs(3))
                        .await
                        .unwrap()
                    {
                        Some(claim) => {
                            let d = claim.data().to_vec();
                            claim.complete().await.unwrap();
                            d
                        }
                        None => break,
                    }
                };
                let s = String::from_utf8(item).unwrap();
                let due: u64 = s.rsplit(':').next().unwrap().parse().unwrap();
                if now_ms() < due {
                    early.lock().unwrap().push(s.clone());
                }
                got.lock().unwrap().push((k, s));
            }
            c.close().await.unwrap();
        }));
    }
    let mut producers = Vec::new();
    for p in 0..2 {
        let c = client().await;
        let q = DelayQueue::new(&c, path.clone());
        producers.push(tokio::spawn(async move {
            for i in 0..PER_PRODUCER {
                let due = t0 + (i * 37 + p * 11) % 100 * 20;
                q.put(format!("{p}:{i}:{due}").as_bytes(), at(due))
                    .await
                    .unwrap();
            }
            c.close().await.unwrap();
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    for c in consumers {
        c.await.unwrap();
    }
    let got = got.lock().unwrap().clone();
    let unique: HashSet<&String> = got.iter().map(|(_, s)| s).collect();
    assert_eq!(unique.len(), got.len(), "an item was delivered twice");
    let want: HashSet<String> = (0..2u64)
        .flat_map(|p| {
            (0..PER_PRODUCER).map(move |i| format!("{p}:{i}:{}", t0 + (i * 37 + p * 11) % 100 * 20))
        })
        .collect();
    let got_set: HashSet<String> = got.iter().map(|(_, s)| s.clone()).collect();
    assert_eq!(got_set, want, "items lost");
    assert!(
        early.lock().unwrap().is_empty(),
        "{:?}",
        early.lock().unwrap()
    );
    let busy = (0..4).filter(|k| got.iter().any(|(c, _)| c == k)).count();
    assert!(busy >= 2, "only {busy} consumer(s) got items");
    assert_eq!(
        DelayQueue::new(&setup, path.clone()).len().await.unwrap(),
        0
    );
}

/// A consumer dies holding a claim: the item is not delivered while the
/// claim lives, and is delivered again (to a consumer already waiting) once
/// the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_claim_is_redelivered() {
    let setup = client().await;
    let dir = base(&setup, "delay-claims").await;
    let path = format!("{dir}/q");
    let q = DelayQueue::new(&setup, path.clone());
    q.put(b"job", Duration::ZERO).await.unwrap();

    let a = client().await;
    let claim = DelayQueue::new(&a, path.clone())
        .take_claimed()
        .await
        .unwrap();
    assert_eq!(claim.data(), b"job");
    let item = claim.item().to_string();
    assert_eq!(
        children(&setup, &format!("{path}/{CLAIMS}")).await,
        [item.rsplit('/').next().unwrap()]
    );
    // Crash while processing: no complete, no abandon.
    std::mem::forget(claim);

    let b = client().await;
    let qb = DelayQueue::new(&b, path.clone());
    assert!(qb
        .take_claimed_timeout(Duration::from_millis(300))
        .await
        .unwrap()
        .is_none());
    let waiting = tokio::spawn(async move {
        let c = qb.take_claimed().await.unwrap();
        (qb, c)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "taken while claimed");
    a.close().await.unwrap();
    let (qb, claim) = tokio::time::timeout(SOON, waiting)
        .await
        .expect("redelivered once the claim is gone")
        .unwrap();
    assert_eq!(claim.data(), b"job");
    assert_eq!(claim.item(), item);
    claim.complete().await.unwrap();
    assert!(qb.is_empty().await.unwrap());
    assert!(children(&setup, &format!("{path}/{CLAIMS}"))
        .await
        .is_empty());
    b.close().await.unwrap();
}

// One thread, so a take can be dropped at any of its steps: after k polls
// with replies arriving and the driver running in between. No claim node
// may stay behind, and every item ends up either taken by a finished take
// or still in the queue, exactly once.
#[tokio::test(flavor = "current_thread")]
async fn dropped_takes_leave_no_claim_node_and_lose_no_item() {
    let zk = client().await;
    let dir = base(&zk, "delay-drop").await;
    let path = format!("{dir}/q");
    let q = DelayQueue::new(&zk, path.clone());
    const N: usize = 90;
    for i in 0..N {
        q.put(format!("item-{i}").as_bytes(), at(1_000_000 + i as u64))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    let mut dropped = 0;
    for round in 0..N {
        let done = if round % 2 == 0 {
            let mut take = std::pin::pin!(q.take());
            let mut done = None;
            for _ in 0..=(round % 18) {
                if let std::task::Poll::Ready(r) = futures::poll!(take.as_mut()) {
                    done = Some(r.unwrap());
                    break;
                }
                std::thread::sleep(Duration::from_micros(30));
                tokio::task::yield_now().await;
            }
            done
        } else {
            let mut take = std::pin::pin!(q.take_claimed());
            let mut done = None;
            for _ in 0..=(round % 18) {
                if let std::task::Poll::Ready(r) = futures::poll!(take.as_mut()) {
                    done = Some(r.unwrap());
                    break;
                }
                std::thread::sleep(Duration::from_micros(30));
                tokio::task::yield_now().await;
            }
            match done {
                Some(claim) => {
                    let d = claim.data().to_vec();
                    claim.complete().await.unwrap();
                    Some(d)
                }
                None => None,
            }
        };
        match done {
            Some(item) => got.push(item),
            None => dropped += 1,
        }
    }
    assert!(dropped > 0);
    let claims = format!("{path}/{CLAIMS}");
    eventually("no claim node left", SOON, || async {
        children(&zk, &claims).await.is_empty()
    })
    .await;
    // Let put-backs land, then drain.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Some(item) = q.try_take().await.unwrap() {
        got.push(item);
    }
    let names: BTreeSet<String> = got
        .iter()
        .map(|b| String::from_utf8(b.clone()).unwrap())
        .collect();
    assert_eq!(names.len(), got.len(), "an item was taken twice");
    let want: BTreeSet<String> = (0..N).map(|i| format!("item-{i}")).collect();
    assert_eq!(names, want, "{dropped} takes dropped");
    assert!(children(&zk, &claims).await.is_empty());
}

/// Children that are not delay-queue items (other layouts, garbage) and
/// items whose data is not Curator's framing are skipped and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_names_and_data_are_skipped() {
    let setup = client().await;
    let dir = base(&setup, "delay-foreign").await;
    let path = format!("{dir}/q");
    let persistent = CreateOptions::new(CreateMode::Persistent);
    let sequential = CreateOptions::new(CreateMode::PersistentSequential);
    setup.create(&path, b"", &persistent).await.unwrap();
    let frame = framed(&[b"foreign"]);
    let mut foreign = Vec::new();
    for (name, opts) in [
        ("foo", &persistent),
        ("queue-", &sequential),            // Curator DistributedQueue
        ("qn-", &sequential),               // SimpleDistributedQueue
        ("queue-|XYZ|", &sequential),       // not hex
        ("queue-||", &sequential),          // no due time
        ("queue-|0F4240|abc", &persistent), // no sequence
    ] {
        let (p, _) = setup
            .create(&format!("{path}/{name}"), &frame, opts)
            .await
            .unwrap();
        foreign.push(p);
    }
    // The right name, but raw data.
    let (raw, _) = setup
        .create(&format!("{path}/queue-|0F4240|"), b"raw", &sequential)
        .await
        .unwrap();
    foreign.push(raw);
    let q = DelayQueue::new(&setup, path.clone());
    assert_eq!(q.len().await.unwrap(), 1);
    assert_eq!(q.try_take().await.unwrap(), None);
    q.put(b"good", Duration::ZERO).await.unwrap();
    assert_eq!(
        q.take_timeout(SOON).await.unwrap().as_deref(),
        Some(&b"good"[..])
    );
    assert_eq!(q.try_take().await.unwrap(), None);
    assert!(q
        .take_claimed_timeout(Duration::from_millis(200))
        .await
        .unwrap()
        .is_none());
    for p in &foreign {
        assert!(setup.exists(p).await.unwrap().is_some(), "{p} was touched");
    }
    // A fresh value (no memory of the bad node) skips it too.
    let fresh = DelayQueue::new(&setup, path.clone());
    assert_eq!(fresh.try_take().await.unwrap(), None);
    assert!(children(&setup, &format!("{path}/{CLAIMS}"))
        .await
        .is_empty());
}

/// A node holding several items (Curator's `putMulti`): a claim shows them
/// all; `take` returns them one per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_item_nodes_are_delivered_whole() {
    let setup = client().await;
    let dir = base(&setup, "delay-multi").await;
    let path = format!("{dir}/q");
    let q = DelayQueue::new(&setup, path.clone());
    q.put(b"last", Duration::ZERO).await.unwrap();
    let sequential = CreateOptions::new(CreateMode::PersistentSequential);
    for items in [[&b"m1"[..], b"m2"], [b"n1", b"n2"]] {
        setup
            .create(
                &format!("{path}/queue-|0F4240|"),
                &framed(&items),
                &sequential,
            )
            .await
            .unwrap();
    }
    let claim = q.take_claimed().await.unwrap();
    assert_eq!(claim.items(), [b"m1".to_vec(), b"m2".to_vec()]);
    assert_eq!(claim.data(), b"m1");
    claim.complete().await.unwrap();
    assert_eq!(q.take().await.unwrap(), b"n1");
    assert_eq!(q.len().await.unwrap(), 1, "the node was taken whole");
    assert_eq!(q.clone().take().await.unwrap(), b"n2");
    assert_eq!(q.take().await.unwrap(), b"last");
}
