//! Hostile and careless clients: sockets that never finish a handshake or a
//! frame, thousands of connections, a client that never reads its replies.
//! Each is contained to its own connection while a well-behaved client
//! keeps being served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit::proto::codes::OpCode;
use zkit::proto::{ConnectResponse, Encode, PathWatchRequest, RequestHeader};
use zkit::{Client, CreateOptions};
use zkit_server::{RunningServer, Server, ServerBuilder};

mod common;

use common::{frame, raw_session};

const SOON: Duration = Duration::from_secs(5);

fn builder() -> ServerBuilder {
    Server::builder().tick_time(Duration::from_millis(100))
}

/// Sessions that outlive seconds of a busy machine (the server's default
/// maximum here is 2 s): for tests whose point is not expiry.
const LONG: Duration = Duration::from_secs(30);

/// A client with a [`LONG`] session on `srv` (started with
/// `max_session_timeout(LONG)`).
async fn patient(srv: &RunningServer) -> Client {
    Client::builder()
        .session_timeout(LONG)
        .connect(&srv.connect_string())
        .await
        .unwrap()
}

/// Whether the server closes `s` within `within` (EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut sink = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn handshake(srv: &RunningServer, timeout_ms: i32) -> (TcpStream, ConnectResponse) {
    raw_session(srv, timeout_ms, None).await
}

/// A well-behaved client does a round of operations.
async fn still_serves(c: &Client, tag: &str) {
    let path = format!("/probe-{tag}");
    c.create(&path, tag.as_bytes(), &CreateOptions::default())
        .await
        .unwrap();
    let (data, _) = c.get_data(&path).await.unwrap();
    assert_eq!(&data[..], tag.as_bytes());
}

#[tokio::test]
async fn connections_that_never_finish_a_handshake_are_closed() {
    let srv = builder()
        .handshake_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let c = Client::connect(&srv.connect_string()).await.unwrap();
    // Silent sockets, half a length prefix, and a trickle of a frame.
    let mut idle = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(srv.local_addr()).await.unwrap();
        if i % 2 == 0 {
            s.write_all(&[0, 0]).await.unwrap();
        }
        idle.push(s);
    }
    let mut trickle = TcpStream::connect(srv.local_addr()).await.unwrap();
    let started = Instant::now();
    let trickler = tokio::spawn(async move {
        // 44 bytes would be a ConnectRequest; one byte every 50 ms.
        for b in [0u8, 0, 0, 44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] {
            if trickle.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        closed_within(&mut trickle, SOON).await
    });
    still_serves(&c, "during").await;
    for s in &mut idle {
        assert!(closed_within(s, SOON).await, "idle socket left open");
    }
    assert!(trickler.await.unwrap(), "trickling socket left open");
    assert!(started.elapsed() < Duration::from_secs(4));
    still_serves(&c, "after").await;
    c.close().await.unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn a_session_that_sends_half_a_frame_expires_and_is_closed() {
    let srv = builder().start().await.unwrap();
    let (mut s, resp) = handshake(&srv, 400).await;
    assert_eq!(resp.timeout, 400);
    s.write_all(&[0, 0, 0, 40, 1, 2]).await.unwrap();
    assert!(closed_within(&mut s, SOON).await, "stalled session kept");
    assert_eq!(srv.session_count(), 0);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_and_a_client_still_served() {
    // The raw sessions never ping: they must outlive opening all 2,000
    // on a slow machine.
    let srv = builder()
        .max_connections(2500)
        .handshake_timeout(Duration::from_secs(60))
        .max_session_timeout(LONG)
        .start()
        .await
        .unwrap();
    let c = patient(&srv).await;
    let mut conns = Vec::new();
    for i in 0..2000 {
        if i % 2 == 0 {
            conns.push(handshake(&srv, 30_000).await.0);
        } else {
            conns.push(TcpStream::connect(srv.local_addr()).await.unwrap());
        }
    }
    assert!(srv.session_count() >= 1001, "{}", srv.session_count());
    for i in 0..20 {
        still_serves(&c, &format!("crowd-{i}")).await;
    }
    // Every handshaken connection is alive: a ping each gets its answer.
    let ping = frame(|b| {
        RequestHeader {
            xid: -2,
            op: OpCode::Ping.code(),
        }
        .encode(b)
    });
    for s in conns.iter_mut().step_by(2) {
        s.write_all(&ping).await.unwrap();
        let mut reply = [0u8; 20];
        tokio::time::timeout(SOON, s.read_exact(&mut reply))
            .await
            .unwrap()
            .unwrap();
    }
    drop(conns);
    still_serves(&c, "dispersed").await;
    c.close().await.unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let srv = builder()
        .max_connections(20)
        .max_session_timeout(LONG)
        .start()
        .await
        .unwrap();
    let mut kept = Vec::new();
    for _ in 0..20 {
        kept.push(handshake(&srv, 30_000).await.0);
    }
    let mut extra = TcpStream::connect(srv.local_addr()).await.unwrap();
    assert!(closed_within(&mut extra, SOON).await);
    // The first twenty are untouched.
    for s in &mut kept {
        assert!(!closed_within(s, Duration::from_millis(10)).await);
    }
    drop(kept);
    // Room again once they are gone.
    let deadline = Instant::now() + SOON;
    loop {
        let c = Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .connect(&srv.connect_string())
            .await;
        if let Ok(c) = c {
            still_serves(&c, "room").await;
            c.close().await.unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "no room after the crowd left");
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_held_back_not_buffered() {
    // Building and pushing 10 MB of requests takes seconds of CPU on a slow
    // machine, beside the other tests: the well-behaved client gets a
    // session that outlives that, so what is checked is back-pressure and
    // service, not scheduling luck.
    let srv = builder().max_session_timeout(LONG).start().await.unwrap();
    let c = patient(&srv).await;
    c.create("/big", &vec![7u8; 512 * 1024], &CreateOptions::default())
        .await
        .unwrap();
    let (mut s, _) = handshake(&srv, 30_000).await;
    // 400,000 getData of a 512 KiB node (10 MB of requests, more than the
    // socket buffers hold): 200 GiB of replies if served.
    let mut reqs = Vec::new();
    for xid in 1..=400_000 {
        reqs.extend(frame(|b| {
            RequestHeader {
                xid,
                op: OpCode::GetData.code(),
            }
            .encode(b);
            PathWatchRequest {
                path: "/big".into(),
                watch: false,
            }
            .encode(b);
        }));
    }
    // The server stops reading once replies pile up, so the sender blocks.
    let sent = tokio::time::timeout(Duration::from_secs(3), s.write_all(&reqs)).await;
    assert!(
        sent.is_err(),
        "the server read every request without back-pressure"
    );
    // Others are unaffected, and shutdown does not wait for the stuck client.
    still_serves(&c, "beside").await;
    c.close().await.unwrap();
    tokio::time::timeout(SOON, srv.shutdown())
        .await
        .expect("shutdown despite a client that does not read");
}

async fn wchs(srv: &RunningServer) -> String {
    let mut s = TcpStream::connect(srv.local_addr()).await.unwrap();
    s.write_all(b"wchs").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_200k_watches_leaves_nothing_behind_when_it_closes() {
    let srv = builder()
        .four_letter_words(zkit_server::FourLetterWords::all())
        .max_session_timeout(LONG)
        .start()
        .await
        .unwrap();
    let other = patient(&srv).await;
    let abuser = patient(&srv).await;
    let mut watchers = Vec::new();
    for batch in 0..20 {
        let futs: Vec<_> = (0..10_000)
            .map(|i| abuser.exists_and_watch(&format!("/absent-{batch}-{i}")))
            .collect();
        for r in futures::future::join_all(futs).await {
            watchers.push(r.unwrap().1);
        }
    }
    assert!(
        wchs(&srv)
            .await
            .starts_with("1 connections watching 200000 paths"),
        "{}",
        wchs(&srv).await
    );
    still_serves(&other, "beside-200k-watches").await;
    abuser.close().await.unwrap();
    // The watches go with the connection (freed in slices), none fires.
    let deadline = Instant::now() + SOON;
    while !wchs(&srv)
        .await
        .starts_with("0 connections watching 0 paths")
    {
        assert!(Instant::now() < deadline, "{}", wchs(&srv).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other
        .create("/absent-3-7", b"", &CreateOptions::default())
        .await
        .unwrap();
    still_serves(&other, "after-200k-watches").await;
    drop(watchers);
    other.close().await.unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn a_chain_thousands_deep_under_a_recursive_watch_is_served() {
    let srv = builder().max_session_timeout(LONG).start().await.unwrap();
    let c = patient(&srv).await;
    c.create("/deep", b"", &CreateOptions::default())
        .await
        .unwrap();
    let mut w = c
        .add_watch("/deep", zkit::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let mut path = String::from("/deep");
    for _ in 0..3_000 {
        path.push_str("/d");
        c.create(&path, b"", &CreateOptions::default())
            .await
            .unwrap();
    }
    for _ in 0..3_000 {
        let ev = tokio::time::timeout(SOON, w.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev.event_type, zkit::EventType::NodeCreated);
    }
    c.set_data(&path, b"x", zkit::Version::Any).await.unwrap();
    let ev = tokio::time::timeout(SOON, w.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path.len()),
        (zkit::EventType::NodeDataChanged, path.len())
    );
    assert_eq!(c.get_all_children_number("/deep").await.unwrap(), 3_000);
    still_serves(&c, "deep").await;
    c.close().await.unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn a_transaction_just_under_the_frame_limit_applies_whole_or_not_at_all() {
    let srv = builder().max_session_timeout(LONG).start().await.unwrap();
    let c = patient(&srv).await;
    c.create("/m", b"", &CreateOptions::default())
        .await
        .unwrap();
    let mut txn = c.multi();
    for i in 0..17_000 {
        txn = txn.create(&format!("/m/n{i:05}"), b"", &CreateOptions::default());
    }
    assert_eq!(txn.commit().await.unwrap().len(), 17_000);
    let mut failing = c.multi();
    for i in 0..16_999 {
        failing = failing.create(&format!("/m/f{i:05}"), b"", &CreateOptions::default());
    }
    let r = failing
        .set_data("/m/absent", b"", zkit::Version::Any)
        .commit()
        .await;
    assert!(
        matches!(r, Err(zkit::Error::MultiFailed { index: 16_999, .. })),
        "{r:?}"
    );
    assert_eq!(c.get_all_children_number("/m").await.unwrap(), 17_000);
    let mut too_big = c.multi();
    for i in 0..40_000 {
        too_big = too_big.create(&format!("/m/t{i:05}"), b"", &CreateOptions::default());
    }
    assert!(matches!(
        too_big.commit().await,
        Err(zkit::Error::RequestTooLarge { .. })
    ));
    still_serves(&c, "after-multis").await;
    c.close().await.unwrap();
    srv.shutdown().await;
}
