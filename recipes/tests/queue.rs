//! The FIFO queue: order, no loss and no duplicates under 4 producers and
//! 4 consumers, at-least-once delivery with consumers dying mid-stream,
//! one waiter watching the queue.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{base, client, SOON};
use zkit_recipes::Queue;
use zkit_testcontainers::{FaultMode, FaultProxy};

/// Items per producer (4 producers, 4 consumers).
fn per_producer() -> usize {
    5000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_producer_is_served_in_order() {
    let setup = client().await;
    let dir = base(&setup, "fifo").await;
    let q = Queue::new(&setup, format!("{dir}/q"));
    for i in 0..100u32 {
        q.put(&i.to_be_bytes()).await.unwrap();
    }
    assert_eq!(q.len().await.unwrap(), 100);
    for i in 0..100u32 {
        assert_eq!(q.take().await.unwrap(), i.to_be_bytes());
    }
    assert!(q.try_take().await.unwrap().is_none());
    assert!(q.poll(Duration::from_millis(200)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_producers_four_consumers_nothing_lost_or_doubled() {
    let setup = client().await;
    let dir = base(&setup, "mpmc").await;
    let path = format!("{dir}/q");
    let n = per_producer();
    let got: Arc<Mutex<Vec<(usize, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut producers = Vec::new();
    for p in 0..4 {
        let c = client().await;
        let q = Queue::new(&c, path.clone());
        producers.push(tokio::spawn(async move {
            for i in 0..n {
                q.put(format!("{p}:{i}").as_bytes()).await.unwrap();
            }
            c.close().await.unwrap();
        }));
    }
    let mut consumers = Vec::new();
    for k in 0..4 {
        let c = client().await;
        let q = Queue::new(&c, path.clone());
        let got = got.clone();
        consumers.push(tokio::spawn(async move {
            while let Some(item) = q.poll(Duration::from_secs(3)).await.unwrap() {
                got.lock()
                    .unwrap()
                    .push((k, String::from_utf8(item).unwrap()));
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
    assert_eq!(got.len(), 4 * n, "items lost");
    // Per producer, each consumer sees items in the order they were put.
    let mut last: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (k, s) in &got {
        let (p, i) = s.split_once(':').unwrap();
        let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
        if let Some(prev) = last.insert((*k, p), i) {
            assert!(prev < i, "consumer {k} got {p}:{i} after {p}:{prev}");
        }
    }
    let per_consumer: Vec<usize> = (0..4)
        .map(|k| got.iter().filter(|(c, _)| *c == k).count())
        .collect();
    assert!(
        per_consumer.iter().filter(|&&c| c > 0).count() >= 2,
        "{per_consumer:?}"
    );
}

/// At-least-once: consumers die holding a claim (their session closes
/// before `complete`); the items come back and are completed by others.
/// Every item is completed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_items_survive_dying_consumers() {
    let setup = client().await;
    let dir = base(&setup, "claims").await;
    let path = format!("{dir}/q");
    let q = Queue::new(&setup, path.clone());
    let n = per_producer() / 5;
    for i in 0..n {
        q.put(format!("item-{i}").as_bytes()).await.unwrap();
    }
    let completed: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut consumers = Vec::new();
    for _ in 0..4 {
        let (path, completed) = (path.clone(), completed.clone());
        consumers.push(tokio::spawn(async move {
            let mut deaths = 0;
            loop {
                let c = client().await;
                let q = Queue::new(&c, path.clone());
                let mut handled = 0;
                loop {
                    let Some(claim) = q.poll_claimed(Duration::from_secs(2)).await.unwrap() else {
                        c.close().await.unwrap();
                        return deaths;
                    };
                    handled += 1;
                    if handled == 7 && deaths < 3 {
                        // Crash while processing: no complete, no abandon;
                        // the session's end drops the claim.
                        std::mem::forget(claim);
                        c.close().await.unwrap();
                        deaths += 1;
                        break;
                    }
                    let item = String::from_utf8(claim.data().to_vec()).unwrap();
                    claim.complete().await.unwrap();
                    completed.lock().unwrap().push(item);
                }
            }
        }));
    }
    let mut deaths = 0;
    for c in consumers {
        deaths += c.await.unwrap();
    }
    assert!(deaths >= 4, "only {deaths} crashes");
    let completed = completed.lock().unwrap().clone();
    let unique: HashSet<&String> = completed.iter().collect();
    assert_eq!(unique.len(), completed.len(), "an item was completed twice");
    assert_eq!(completed.len(), n, "items lost");
    assert_eq!(q.len().await.unwrap(), 0);
}

/// Idle consumers line up: a put wakes one of them, not all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_wakes_one_waiting_consumer() {
    let setup = client().await;
    let dir = base(&setup, "herd").await;
    let path = format!("{dir}/q");
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let c = client().await;
        let q = Queue::new(&c, path.clone());
        waiting.push(tokio::spawn(async move {
            let item = q.take().await.unwrap();
            (c, item)
        }));
    }
    common::eventually("5 consumers in line", SOON, || async {
        setup
            .get_children(&format!("{path}/_waiters"))
            .await
            .map(|(k, _)| k.len() == 5)
            .unwrap_or(false)
    })
    .await;
    let q = Queue::new(&setup, path.clone());
    q.put(b"one").await.unwrap();
    let mut woke = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < deadline {
        woke = waiting.iter().filter(|t| t.is_finished()).count();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(woke, 1, "one put, one consumer");
    for i in 0..4u8 {
        q.put(&[i]).await.unwrap();
    }
    for t in waiting {
        let (c, _) = tokio::time::timeout(SOON, t).await.unwrap().unwrap();
        c.close().await.unwrap();
    }
}

/// The priority layout (kazoo's `Queue`): lower priority values first, FIFO
/// within a priority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_queue_orders_by_priority_then_arrival() {
    let setup = client().await;
    let dir = base(&setup, "prio").await;
    let q = Queue::priority(&setup, format!("{dir}/q"));
    for (data, prio) in [
        ("p5", 5),
        ("p1-first", 1),
        ("p9", 9),
        ("p1-second", 1),
        ("default", 100),
    ] {
        q.put_with_priority(data.as_bytes(), prio).await.unwrap();
    }
    let (kids, _) = setup.get_children(&format!("{dir}/q")).await.unwrap();
    assert!(kids.iter().any(|k| k.starts_with("entry-005-")), "{kids:?}");
    let mut got = Vec::new();
    while let Some(d) = q.try_take().await.unwrap() {
        got.push(String::from_utf8(d).unwrap());
    }
    assert_eq!(got, ["p1-first", "p1-second", "p5", "p9", "default"]);
}

// One thread, so a take can be dropped at any of its steps: after k polls
// with replies arriving and the driver running in between. Every item must end up either taken
// by a finished take or still in the queue, exactly once.
#[tokio::test(flavor = "current_thread")]
async fn dropped_takes_lose_no_item() {
    let zk = client().await;
    let dir = base(&zk, "queue-drop").await;
    let q = Queue::new(&zk, format!("{dir}/q"));
    const N: usize = 60;
    for i in 0..N {
        q.put(format!("item-{i}").as_bytes()).await.unwrap();
    }
    let mut got = Vec::new();
    let mut dropped = 0;
    for round in 0..N {
        let done = {
            let mut take = std::pin::pin!(q.take());
            let mut done = None;
            for _ in 0..=(round % 12) {
                if let std::task::Poll::Ready(r) = futures::poll!(take.as_mut()) {
                    done = Some(r);
                    break;
                }
                // Let a reply arrive, and the driver read it.
                std::thread::sleep(Duration::from_micros(30));
                tokio::task::yield_now().await;
            }
            done
        };
        match done {
            Some(item) => got.push(item.unwrap()),
            None => dropped += 1,
        }
    }
    assert!(dropped > 0);
    // Let put-backs land, then drain.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Some(item) = q.try_take().await.unwrap() {
        got.push(item);
    }
    let mut names: Vec<String> = got
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("item-{i}")).collect();
    want.sort();
    assert_eq!(names, want, "{dropped} takes dropped");
}

// One thread, so a claiming take can be dropped at any of its steps:
// after k polls with replies arriving and the driver running in between
// (between a claim's create going out and its reply coming back among
// them). No claim node may stay behind (an orphan would hold its item
// until the session ends), and every item is taken exactly once: by a
// finished take, or by the drain afterwards.
#[tokio::test(flavor = "current_thread")]
async fn dropped_claiming_takes_leave_no_claim_node_and_lose_no_item() {
    let zk = client().await;
    let dir = base(&zk, "queue-drop-claimed").await;
    let path = format!("{dir}/q");
    let q = Queue::new(&zk, path.clone());
    const N: usize = 90;
    for i in 0..N {
        q.put(format!("item-{i}").as_bytes()).await.unwrap();
    }
    // Where each round stops polling: spread over a take's steps, in an
    // order that does not repeat with the round number.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut got = Vec::new();
    let mut dropped = 0;
    for round in 0..N {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let polls = (seed % 20) as usize;
        let done = {
            let mut take = std::pin::pin!(async {
                if round % 3 == 0 {
                    q.poll_claimed(SOON).await.map(Option::unwrap)
                } else {
                    q.take_claimed().await
                }
            });
            let mut done = None;
            for _ in 0..=polls {
                if let std::task::Poll::Ready(r) = futures::poll!(take.as_mut()) {
                    done = Some(r.unwrap());
                    break;
                }
                // Let a reply arrive, and the driver read it.
                std::thread::sleep(Duration::from_micros(30));
                tokio::task::yield_now().await;
            }
            done
        };
        match done {
            Some(claim) => {
                let d = claim.data().to_vec();
                claim.complete().await.unwrap();
                got.push(d);
            }
            None => dropped += 1,
        }
    }
    assert!(dropped > 0);
    eprintln!("{dropped} of {N} claiming takes dropped");
    let claims = format!("{path}/_claims");
    let claimed = || async {
        zk.get_children(&claims)
            .await
            .map(|(k, _)| k)
            .unwrap_or_default()
    };
    let deadline = tokio::time::Instant::now() + SOON;
    let mut left = claimed().await;
    while !left.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = claimed().await;
    }
    assert!(
        left.is_empty(),
        "claim nodes left behind ({dropped} takes dropped): {left:?}"
    );
    while let Some(claim) = q.poll_claimed(Duration::from_millis(100)).await.unwrap() {
        got.push(claim.data().to_vec());
        claim.complete().await.unwrap();
    }
    let names: BTreeSet<String> = got
        .iter()
        .map(|b| String::from_utf8(b.clone()).unwrap())
        .collect();
    assert_eq!(names.len(), got.len(), "an item was taken twice");
    let want: BTreeSet<String> = (0..N).map(|i| format!("item-{i}")).collect();
    assert_eq!(names, want, "{dropped} takes dropped");
    assert_eq!(q.len().await.unwrap(), 0);
    assert!(claimed().await.is_empty());
}

/// A consumer whose session goes through `proxy`.
async fn consumer_via(proxy: &FaultProxy) -> zkit::Client {
    zkit::Client::builder()
        .session_timeout(Duration::from_secs(10))
        .connect(&proxy.addr().to_string())
        .await
        .unwrap()
}

/// `complete()` whose reply is lost resolves the outcome itself: the
/// commit applied (only the reply was cut) or never reached the server (the
/// connection was cut before it was forwarded). Either way it returns `Ok`
/// with the item and the claim gone, on the same live session: the item is
/// never left claimed by a live session with no handle to finish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_resolves_a_lost_reply() {
    let setup = client().await;
    let dir = base(&setup, "qlost").await;
    let path = format!("{dir}/q");
    let server = common::connect_string()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(server).await.unwrap();
    let consumer = consumer_via(&proxy).await;
    let session = consumer.session_id();
    let q = Queue::new(&consumer, path.clone());
    let producer = Queue::new(&setup, path.clone());
    producer.put(b"applied").await.unwrap();
    producer.put(b"never-sent").await.unwrap();
    let claims = format!("{path}/_claims");
    let remaining = || async {
        let (items, _) = setup.get_children(&path).await.unwrap();
        let (claimed, _) = setup.get_children(&claims).await.unwrap();
        let items: Vec<String> = items.into_iter().filter(|i| i.starts_with("qn-")).collect();
        (items, claimed)
    };

    // 1. The commit applies; its reply is cut on the way back.
    let claim = q.take_claimed().await.unwrap();
    assert_eq!(claim.data(), b"applied");
    proxy.cut_after_downstream(0);
    claim
        .complete()
        .await
        .expect("completed despite the lost reply");
    let (items, claimed) = remaining().await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(claimed.is_empty(), "{claimed:?}");

    // 2. The commit never reaches the server: held in the proxy, then the
    // connection is cut and the held bytes die with it.
    let claim = q.take_claimed().await.unwrap();
    assert_eq!(claim.data(), b"never-sent");
    let item = claim.item().to_string();
    proxy.set_mode(FaultMode::Blackhole);
    let completing = tokio::spawn(claim.complete());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        setup.exists(&item).await.unwrap().is_some(),
        "nothing was forwarded"
    );
    proxy.cut();
    proxy.set_mode(FaultMode::Pass);
    tokio::time::timeout(SOON, completing)
        .await
        .expect("complete resolves")
        .unwrap()
        .expect("completed after sending again");
    let (items, claimed) = remaining().await;
    assert!(items.is_empty(), "{items:?}");
    assert!(claimed.is_empty(), "{claimed:?}");
    assert_eq!(consumer.session_id(), session, "one session throughout");
    consumer.close().await.unwrap();
}
