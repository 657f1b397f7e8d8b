//! Network-level tests of the bundled server: robustness against garbage,
//! four-letter words, handshake corner cases and session expiry.

use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit::proto::codes::{create_flags, err, perms, EventType, OpCode};
use zkit::proto::{
    Acl, ConnectRequest, ConnectResponse, CreateRequest, Decode, Encode, Id, PathWatchRequest,
    ReplyHeader, RequestHeader, WatcherEvent,
};
use zkit::{Client, CreateOptions};
use zkit_server::{FourLetterWords, RunningServer, Server};

mod common;

use common::{frame, raw_session, read_frame};

const SOON: Duration = Duration::from_secs(5);

async fn server() -> RunningServer {
    Server::builder()
        .tick_time(Duration::from_millis(100))
        .four_letter_words(FourLetterWords::all())
        .start()
        .await
        .expect("server starts")
}

/// Waits for the server to close the connection.
async fn assert_closed(s: &mut TcpStream) {
    let mut rest = Vec::new();
    let r = tokio::time::timeout(SOON, s.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "connection not closed within {SOON:?}");
}

async fn request(s: &mut TcpStream, xid: i32, op: OpCode, rec: Option<&dyn Encode>) {
    let f = frame(|b| {
        RequestHeader { xid, op: op.code() }.encode(b);
        if let Some(r) = rec {
            r.encode(b);
        }
    });
    s.write_all(&f).await.unwrap();
}

fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

#[tokio::test]
async fn garbage_and_huge_frames_close_only_that_connection() {
    let srv = server().await;
    let c = Client::connect(&srv.connect_string()).await.unwrap();
    c.create("/keep", b"x", &CreateOptions::default())
        .await
        .unwrap();

    // A length prefix far above jute.maxbuffer.
    let mut huge = TcpStream::connect(srv.local_addr()).await.unwrap();
    huge.write_all(&[0x7f, 0xff, 0xff, 0xf0, 1, 2, 3])
        .await
        .unwrap();
    assert_closed(&mut huge).await;

    // A negative length.
    let mut neg = TcpStream::connect(srv.local_addr()).await.unwrap();
    neg.write_all(&[0xff, 0xff, 0xff, 0xfe]).await.unwrap();
    assert_closed(&mut neg).await;

    // A well-framed but undecodable ConnectRequest.
    let mut bad = TcpStream::connect(srv.local_addr()).await.unwrap();
    bad.write_all(&[0, 0, 0, 3, 9, 9, 9]).await.unwrap();
    assert_closed(&mut bad).await;

    // Garbage after a good handshake.
    let (mut s, resp) = raw_session(&srv, 4000, Some(false)).await;
    assert_ne!(resp.session_id, 0);
    s.write_all(&[0, 0, 0, 2, 0xde, 0xad]).await.unwrap();
    assert_closed(&mut s).await;

    // The well-behaved client never noticed.
    let (data, _) = c.get_data("/keep").await.unwrap();
    assert_eq!(&data[..], b"x");
    c.close().await.unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn four_letter_words() {
    let srv = server().await;
    for (word, want) in [
        ("ruok", "imok"),
        ("isro", "rw"),
        ("srvr", "Zookeeper version: 3.8.0"),
        ("stat", "Mode: standalone"),
        ("mntr", "zk_server_state\tstandalone"),
        ("conf", "tickTime=100"),
        ("envi", "Environment:"),
        ("wchs", "Total watches:"),
    ] {
        let mut s = TcpStream::connect(srv.local_addr()).await.unwrap();
        s.write_all(word.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(SOON, s.read_to_string(&mut out))
            .await
            .expect("answer and close")
            .unwrap();
        assert!(out.contains(want), "{word}: {out:?}");
    }
    srv.shutdown().await;
}

/// Sends a four-letter word and reads the answer up to the close.
async fn four_letter(srv: &RunningServer, word: &str) -> String {
    let mut s = TcpStream::connect(srv.local_addr()).await.unwrap();
    s.write_all(word.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(SOON, s.read_to_string(&mut out))
        .await
        .expect("answer and close")
        .unwrap();
    out
}

#[tokio::test]
async fn four_letter_whitelist() {
    // Default: only srvr (ZooKeeper 3.5.3+).
    let srv = Server::builder().start().await.unwrap();
    assert!(four_letter(&srv, "srvr").await.contains("Mode: standalone"));
    for word in ["ruok", "isro", "mntr", "dump"] {
        assert_eq!(
            four_letter(&srv, word).await,
            format!("{word} is not executed because it is not in the whitelist.\n")
        );
    }
    srv.shutdown().await;

    let srv = Server::builder()
        .four_letter_words(FourLetterWords::parse("ruok, conf"))
        .start()
        .await
        .unwrap();
    assert_eq!(four_letter(&srv, "ruok").await, "imok");
    assert!(four_letter(&srv, "conf").await.contains("tickTime="));
    assert!(four_letter(&srv, "srvr")
        .await
        .contains("Zookeeper version"));
    assert!(four_letter(&srv, "stat")
        .await
        .ends_with("is not in the whitelist.\n"));
    // The whitelist does not get in the way of real clients.
    let c = Client::connect(&srv.connect_string()).await.unwrap();
    c.create("/w", b"x", &CreateOptions::default())
        .await
        .unwrap();
    c.close().await.unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn max_connections_per_ip() {
    let srv = Server::builder()
        .max_connections_per_ip(2)
        .start()
        .await
        .unwrap();
    let a = Client::connect(&srv.connect_string()).await.unwrap();
    let (_b, _) = raw_session(&srv, 1000, None).await;
    // The third connection from 127.0.0.1 is closed at once.
    let mut third = TcpStream::connect(srv.local_addr()).await.unwrap();
    assert_closed(&mut third).await;
    a.close().await.unwrap();
    // A slot frees up once a connection ends.
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let mut s = TcpStream::connect(srv.local_addr()).await.unwrap();
        s.write_all(b"srvr").await.unwrap();
        let mut out = String::new();
        let _ = tokio::time::timeout(SOON, s.read_to_string(&mut out)).await;
        if out.contains("Zookeeper version") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn handshake_echoes_read_only_presence_and_rejects_bad_sessions() {
    let srv = server().await;
    let (_a, with) = raw_session(&srv, 100, Some(false)).await;
    assert_eq!(with.read_only, Some(false));
    assert_eq!(with.timeout, 200, "clamped to 2 ticks");
    let (_b, without) = raw_session(&srv, 1_000_000, None).await;
    assert_eq!(without.read_only, None);
    assert_eq!(without.timeout, 2000, "clamped to 20 ticks");

    // Wrong password: zeroed 37-byte answer, then close.
    let mut s = TcpStream::connect(srv.local_addr()).await.unwrap();
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout: 1000,
        session_id: with.session_id,
        passwd: Bytes::from_static(&[7; 16]),
        read_only: Some(false),
    };
    s.write_all(&frame(|b| req.encode(b))).await.unwrap();
    let body = read_frame(&mut s).await.expect("zeroed response");
    assert_eq!(body.len(), 37);
    let resp = ConnectResponse::decode(&mut body.clone()).unwrap();
    assert_eq!((resp.timeout, resp.session_id), (0, 0));
    assert_closed(&mut s).await;

    // lastZxidSeen ahead of the server: closed without an answer.
    let mut s = TcpStream::connect(srv.local_addr()).await.unwrap();
    let req = ConnectRequest {
        last_zxid_seen: 1 << 40,
        session_id: 0,
        ..req
    };
    s.write_all(&frame(|b| req.encode(b))).await.unwrap();
    assert!(read_frame(&mut s).await.is_none());
    srv.shutdown().await;
}

#[tokio::test]
async fn unknown_op_is_unimplemented_then_closed() {
    let srv = server().await;
    let (mut s, _) = raw_session(&srv, 1000, Some(false)).await;
    let f = frame(|b| RequestHeader { xid: 5, op: 999 }.encode(b));
    s.write_all(&f).await.unwrap();
    let mut body = read_frame(&mut s).await.expect("reply");
    let hdr = ReplyHeader::decode(&mut body).unwrap();
    assert_eq!((hdr.xid, hdr.zxid, hdr.err), (5, -1, err::UNIMPLEMENTED));
    assert_closed(&mut s).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn session_expiry_removes_ephemerals_and_fires_watches() {
    let srv = server().await;
    let watcher = Client::connect(&srv.connect_string()).await.unwrap();

    // A raw session that creates an ephemeral and then goes silent.
    let (mut s, resp) = raw_session(&srv, 200, Some(false)).await;
    assert_eq!(resp.timeout, 200);
    let create = CreateRequest {
        path: "/eph".into(),
        data: Some(Bytes::from_static(b"e")),
        acl: open_acl(),
        flags: create_flags::EPHEMERAL,
    };
    request(&mut s, 1, OpCode::Create, Some(&create)).await;
    let mut body = read_frame(&mut s).await.expect("create reply");
    let hdr = ReplyHeader::decode(&mut body).unwrap();
    assert_eq!(hdr.err, 0);

    let (stat, w) = watcher.exists_and_watch("/eph").await.unwrap();
    assert_eq!(stat.unwrap().ephemeral_owner, resp.session_id);
    assert_eq!(srv.session_count(), 2);

    // The silent session expires; its connection is closed.
    assert_closed(&mut s).await;
    let ev = tokio::time::timeout(SOON, w.changed())
        .await
        .expect("NodeDeleted within SOON")
        .unwrap();
    assert_eq!(ev.event_type, zkit::EventType::NodeDeleted);
    assert!(watcher.exists("/eph").await.unwrap().is_none());
    assert_eq!(srv.session_count(), 1);
    watcher.close().await.unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn notification_precedes_the_reply_of_the_write() {
    let srv = server().await;
    let (mut s, _) = raw_session(&srv, 1000, Some(false)).await;
    let exists = PathWatchRequest {
        path: "/n".into(),
        watch: true,
    };
    request(&mut s, 1, OpCode::Exists, Some(&exists)).await;
    let mut body = read_frame(&mut s).await.unwrap();
    let hdr = ReplyHeader::decode(&mut body).unwrap();
    assert_eq!((hdr.xid, hdr.err), (1, err::NO_NODE));

    let create = CreateRequest {
        path: "/n".into(),
        data: None,
        acl: open_acl(),
        flags: 0,
    };
    request(&mut s, 2, OpCode::Create2, Some(&create)).await;
    let mut body = read_frame(&mut s).await.unwrap();
    let hdr = ReplyHeader::decode(&mut body).unwrap();
    assert_eq!((hdr.xid, hdr.zxid), (-1, -1), "notification first");
    let ev = WatcherEvent::decode(&mut body).unwrap();
    assert_eq!(
        (ev.event_type, ev.state, ev.path.as_str()),
        (EventType::NodeCreated.code(), 3, "/n")
    );
    let mut body = read_frame(&mut s).await.unwrap();
    let hdr = ReplyHeader::decode(&mut body).unwrap();
    assert_eq!((hdr.xid, hdr.err), (2, 0));
    assert_eq!(hdr.zxid, srv.last_zxid());

    // Ping: (-2, lastZxid, 0) and no body.
    request(&mut s, -2, OpCode::Ping, None).await;
    let mut body = read_frame(&mut s).await.unwrap();
    let hdr = ReplyHeader::decode(&mut body).unwrap();
    assert_eq!((hdr.xid, hdr.zxid, hdr.err), (-2, srv.last_zxid(), 0));
    assert_eq!(body.remaining(), 0);

    // closeSession: reply, then EOF.
    request(&mut s, 3, OpCode::CloseSession, None).await;
    let mut body = read_frame(&mut s).await.expect("closeSession reply");
    let hdr = ReplyHeader::decode(&mut body).unwrap();
    assert_eq!((hdr.xid, hdr.err), (3, 0));
    assert_closed(&mut s).await;
    srv.shutdown().await;
}

/// A tiny deterministic generator (no extra crates).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test]
async fn random_requests_never_take_the_server_down() {
    let srv = server().await;
    let c = Client::connect(&srv.connect_string()).await.unwrap();
    let ops = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 100, 101, 103, 104,
        105, 106, 107,
    ];
    let mut rng = Lcg(0x5eed);
    for round in 0..300 {
        let (mut s, _) = raw_session(&srv, 1000, Some(false)).await;
        let op = ops[(rng.next() as usize) % ops.len()];
        let len = (rng.next() % 40) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Sometimes a plausible path string first, so that decoding gets further.
        if round % 2 == 0 {
            let path = b"/fz";
            let mut p = (path.len() as i32).to_be_bytes().to_vec();
            p.extend_from_slice(path);
            p.extend_from_slice(&body);
            body = p;
        }
        let f = frame(|b| {
            RequestHeader { xid: 1, op }.encode(b);
            b.extend_from_slice(&body);
        });
        s.write_all(&f).await.unwrap();
        // Whatever happens (reply, close), the connection settles.
        let _ = tokio::time::timeout(Duration::from_millis(200), read_frame(&mut s)).await;
    }
    c.create("/still-alive", b"", &CreateOptions::default())
        .await
        .unwrap();
    assert!(c.exists("/still-alive").await.unwrap().is_some());
    c.close().await.unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn v3_9_notifications_carry_the_txn_zxid() {
    let srv = Server::builder()
        .compat(zkit_server::Compat::V3_9)
        .start()
        .await
        .unwrap();
    let (mut s, _) = raw_session(&srv, 4000, Some(false)).await;
    let exists = PathWatchRequest {
        path: "/z".into(),
        watch: true,
    };
    request(&mut s, 1, OpCode::Exists, Some(&exists)).await;
    read_frame(&mut s).await.unwrap();
    let create = CreateRequest {
        path: "/z".into(),
        data: None,
        acl: open_acl(),
        flags: 0,
    };
    request(&mut s, 2, OpCode::Create, Some(&create)).await;
    let mut note = read_frame(&mut s).await.unwrap();
    let note = ReplyHeader::decode(&mut note).unwrap();
    let mut reply = read_frame(&mut s).await.unwrap();
    let reply = ReplyHeader::decode(&mut reply).unwrap();
    assert_eq!(note.xid, -1);
    assert_eq!((reply.xid, reply.err), (2, 0));
    assert_eq!(note.zxid, reply.zxid);
    srv.shutdown().await;
}

/// An in-memory server that restarted has lost every session: a client
/// resuming its session there is told Expired at once (ZooKeeper's zeroed
/// ConnectResponse), not left retrying until its own expiry timer (4/3 of
/// its 20 s timeout), although the new server is behind the zxid the client
/// has seen.
#[tokio::test]
async fn a_restarted_in_memory_server_expires_resuming_sessions_at_once() {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let first = Server::builder().listen(addr).start().await.unwrap();
    let c = Client::builder()
        .session_timeout(Duration::from_secs(20))
        .connect(&addr.to_string())
        .await
        .unwrap();
    for i in 0..3 {
        c.create(&format!("/n{i}"), b"x", &CreateOptions::default())
            .await
            .unwrap();
    }
    let mut states = c.state_stream();
    first.shutdown().await;
    let second = Server::builder().listen(addr).start().await.unwrap();
    let started = std::time::Instant::now();
    let expired = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(s) = states.next_state().await {
            if s == zkit::SessionState::Expired {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        expired,
        Ok(true),
        "not expired within 10 s (client-side expiry would take 26 s)"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(second.session_count(), 0);
    second.shutdown().await;
}

#[tokio::test]
async fn a_session_that_moved_ignores_what_its_old_connection_still_sends() {
    // The raw session never pings: a long timeout keeps a busy machine
    // from expiring it before it moves.
    let srv = Server::builder()
        .max_session_timeout(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let (mut old, resp) = raw_session(&srv, 30_000, None).await;
    // The client takes its session to a new connection (as after a
    // reconnect); the old one is closed and nothing more it sends applies,
    // or it would land after the new connection's requests.
    let moved = Client::builder()
        .session(zkit::SessionId(resp.session_id), resp.passwd.clone())
        .connect(&srv.connect_string())
        .await
        .unwrap();
    let late = CreateRequest {
        path: "/late".into(),
        data: None,
        acl: open_acl(),
        flags: 0,
    };
    // The write may already fail: the server closed the connection.
    let f = frame(|b| {
        RequestHeader {
            xid: 1,
            op: OpCode::Create.code(),
        }
        .encode(b);
        late.encode(b);
    });
    let _ = old.write_all(&f).await;
    assert_closed(&mut old).await;
    moved.sync("/").await.unwrap();
    assert_eq!(moved.exists("/late").await.unwrap(), None);
    moved.close().await.unwrap();
    srv.shutdown().await;
}
