//! The driver against a scripted server over in-memory streams, with paused
//! time: what the session's unit tests cannot see (the task, the channels,
//! the transport, tokio's clock). Each test plays the server by hand on the
//! far end of a `tokio::io::duplex`, handed out by a test [`Connect`].

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::proto::codes::{err, xid, OpCode};
use crate::proto::{
    decode_frame, encode_frame, ConnectRequest, ConnectResponse, Decode, Encode, GetDataResponse,
    PathWatchRequest, ReplyHeader, RequestHeader, Stat,
};
use crate::{BoxedIo, Client, Connect, ConnectFuture, Error, HostAddr, SessionState};

const SID: i64 = 0x1234_5678;
const PASSWD: [u8; 16] = [7; 16];

/// Hands out one duplex per dial (the far end goes to the test), or refuses
/// the dial when the script says so.
struct Scripted {
    dials: mpsc::UnboundedSender<(HostAddr, DuplexStream)>,
    /// `true` = refuse the next dial; empty = accept.
    refusals: Arc<Mutex<VecDeque<bool>>>,
}

impl Connect for Scripted {
    fn connect(&self, host: &HostAddr) -> ConnectFuture {
        let refuse = self.refusals.lock().unwrap().pop_front().unwrap_or(false);
        if refuse {
            let host = host.clone();
            let _ = self.dials.send((host, tokio::io::duplex(1).1));
            return Box::pin(async {
                Err(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"))
            });
        }
        let (near, far) = tokio::io::duplex(1 << 16);
        let _ = self.dials.send((host.clone(), far));
        Box::pin(async move { Ok(Box::new(near) as BoxedIo) })
    }
}

/// The server's end of one connection.
struct Peer {
    io: DuplexStream,
    buf: BytesMut,
}

impl Peer {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
        }
    }

    /// The next whole frame, or `None` at EOF.
    async fn frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, 1 << 20).unwrap() {
                return Some(f);
            }
            if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                return None;
            }
        }
    }

    async fn send(&mut self, body: impl FnOnce(&mut BytesMut)) {
        let mut out = BytesMut::new();
        encode_frame(&mut out, body);
        self.io.write_all(&out).await.unwrap();
    }

    /// Reads the ConnectRequest and answers it.
    async fn handshake(&mut self, session_id: i64, timeout_ms: i32) -> ConnectRequest {
        let mut f = self.frame().await.expect("a ConnectRequest");
        let req = ConnectRequest::decode(&mut f).unwrap();
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout: timeout_ms,
            session_id,
            passwd: if session_id == 0 {
                Bytes::from_static(&[0; 16])
            } else {
                Bytes::from_static(&PASSWD)
            },
            read_only: Some(false),
        };
        self.send(|b| resp.encode(b)).await;
        req
    }

    /// The next request (pings included): header and body.
    async fn request(&mut self) -> (RequestHeader, Bytes) {
        let mut f = self.frame().await.expect("a request");
        let hdr = RequestHeader::decode(&mut f).unwrap();
        (hdr, f)
    }

    /// The next request that is not a ping (pings are answered).
    async fn request_no_ping(&mut self) -> (RequestHeader, Bytes) {
        loop {
            let (hdr, body) = self.request().await;
            if hdr.xid == xid::PING {
                self.reply(xid::PING, 0, 0, None).await;
                continue;
            }
            return (hdr, body);
        }
    }

    async fn reply(&mut self, xid: i32, zxid: i64, err: i32, body: Option<&dyn Encode>) {
        self.send(|b| {
            ReplyHeader { xid, zxid, err }.encode(b);
            if let Some(body) = body {
                body.encode(b);
            }
        })
        .await;
    }

    async fn reply_data(&mut self, xid: i32, zxid: i64, data: &'static [u8]) {
        let r = GetDataResponse {
            data: Some(Bytes::from_static(data)),
            stat: Stat::default(),
        };
        self.reply(xid, zxid, 0, Some(&r)).await;
    }
}

/// A client on the scripted transport, connecting in a task of its own.
struct Rig {
    dials: mpsc::UnboundedReceiver<(HostAddr, DuplexStream)>,
    refusals: Arc<Mutex<VecDeque<bool>>>,
    connecting: tokio::task::JoinHandle<crate::Result<Client>>,
}

impl Rig {
    fn start(hosts: &str, refusals: &[bool]) -> Self {
        let (tx, dials) = mpsc::unbounded_channel();
        let refusals = Arc::new(Mutex::new(refusals.iter().copied().collect()));
        let connector = Scripted {
            dials: tx,
            refusals: refusals.clone(),
        };
        let builder = Client::builder()
            .session_timeout(Duration::from_secs(10))
            .seed(7)
            .connector(connector);
        let hosts = hosts.to_string();
        let connecting = tokio::spawn(async move { builder.connect(&hosts).await });
        Self {
            dials,
            refusals,
            connecting,
        }
    }

    /// The next dial the client makes.
    async fn dial(&mut self) -> (HostAddr, Peer) {
        let (host, io) = tokio::time::timeout(Duration::from_secs(60), self.dials.recv())
            .await
            .expect("a dial within a minute")
            .expect("the connector lives");
        (host, Peer::new(io))
    }

    /// Connects through a first handshake (session `SID`, 10 s).
    async fn connected(hosts: &str) -> (Self, Client, Peer) {
        let mut rig = Self::start(hosts, &[]);
        let (_, mut peer) = rig.dial().await;
        peer.handshake(SID, 10_000).await;
        let client = (&mut rig.connecting).await.unwrap().unwrap();
        (rig, client, peer)
    }
}

fn path_of(mut body: Bytes) -> String {
    PathWatchRequest::decode(&mut body).unwrap().path
}

#[tokio::test(start_paused = true)]
async fn connect_sends_a_fresh_handshake_and_reports_the_session() {
    let mut rig = Rig::start("h1:2181", &[]);
    let (host, mut peer) = rig.dial().await;
    assert_eq!((host.host.as_str(), host.port), ("h1", 2181));
    let req = peer.handshake(SID, 8_000).await;
    assert_eq!(req.session_id, 0);
    assert_eq!(req.timeout, 10_000);
    assert_eq!(req.last_zxid_seen, 0);
    assert_eq!(&req.passwd[..], &[0; 16]);
    let client = rig.connecting.await.unwrap().unwrap();
    assert_eq!(client.session_id().0, SID);
    assert_eq!(&client.session_password()[..], &PASSWD);
    assert_eq!(client.session_timeout(), Duration::from_secs(8));
    assert_eq!(client.state(), SessionState::Connected);
}

#[tokio::test(start_paused = true)]
async fn pipelined_requests_go_out_in_call_order_and_match_their_replies() {
    let (_rig, client, mut peer) = Rig::connected("h1:2181").await;
    // Called in this order, awaited in another.
    let a = client.get_data("/a");
    let b = client.get_data("/b");
    let c = client.get_data("/c");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (hdr, body) = peer.request_no_ping().await;
        assert_eq!(hdr.op, OpCode::GetData.code());
        seen.push((hdr.xid, path_of(body)));
    }
    assert_eq!(
        seen,
        vec![(1, "/a".into()), (2, "/b".into()), (3, "/c".into())]
    );
    peer.reply_data(1, 10, b"A").await;
    peer.reply_data(2, 11, b"B").await;
    peer.reply_data(3, 12, b"C").await;
    let (c, b, a) = (c.await.unwrap(), b.await.unwrap(), a.await.unwrap());
    assert_eq!(
        (&a.0[..], &b.0[..], &c.0[..]),
        (&b"A"[..], &b"B"[..], &b"C"[..])
    );
    assert_eq!(client.last_zxid(), 12);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_fails_in_flight_requests_and_the_session_resumes() {
    let (mut rig, client, mut peer) = Rig::connected("h1:2181,h2:2181").await;
    let mut states = client.state_stream();
    assert_eq!(states.next_state().await, Some(SessionState::Connected));
    let first = client.get_data("/first");
    let (hdr, _) = peer.request_no_ping().await;
    peer.reply_data(hdr.xid, 42, b"1").await;
    first.await.unwrap();
    let lost = client.get_data("/lost");
    let _ = peer.request_no_ping().await;
    drop(peer); // the server goes away with the request unanswered
    assert_eq!(lost.await.unwrap_err(), Error::ConnectionLoss);
    assert_eq!(states.next_state().await, Some(SessionState::Disconnected));
    // The client dials again and resumes the same session.
    let (_, mut peer) = rig.dial().await;
    let req = peer.handshake(SID, 10_000).await;
    assert_eq!(req.session_id, SID);
    assert_eq!(&req.passwd[..], &PASSWD);
    assert_eq!(req.last_zxid_seen, 42);
    assert_eq!(states.next_state().await, Some(SessionState::Connected));
    let after = client.get_data("/after");
    let (hdr, body) = peer.request_no_ping().await;
    assert_eq!(path_of(body), "/after");
    peer.reply_data(hdr.xid, 43, b"2").await;
    assert_eq!(&after.await.unwrap().0[..], b"2");
    assert_eq!(client.session_id().0, SID);
}

#[tokio::test(start_paused = true)]
async fn an_expired_answer_to_the_resume_is_final() {
    let (mut rig, client, peer) = Rig::connected("h1:2181").await;
    drop(peer);
    let (_, mut peer) = rig.dial().await;
    // ZooKeeper's answer for a session it no longer knows.
    let req = peer.handshake(0, 0).await;
    assert_eq!(req.session_id, SID);
    let mut states = client.state_stream();
    loop {
        match states.next_state().await {
            Some(SessionState::Expired) => break,
            Some(s) => assert!(!s.is_connected(), "{s:?}"),
            None => panic!("the stream ended before Expired"),
        }
    }
    assert_eq!(
        client.get_data("/x").await.unwrap_err(),
        Error::SessionExpired
    );
    // No new session behind the user's back.
    assert!(
        tokio::time::timeout(Duration::from_secs(30), rig.dial())
            .await
            .is_err(),
        "dialled again after expiry"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_dial_moves_on_to_the_next_host() {
    let mut rig = Rig::start("h1:2181,h2:2181,h3:2181", &[true, true]);
    let (first, _) = rig.dial().await;
    let (second, _) = rig.dial().await;
    let (third, mut peer) = rig.dial().await;
    let hosts: std::collections::HashSet<_> = [&first, &second, &third]
        .iter()
        .map(|h| h.host.clone())
        .collect();
    assert_eq!(hosts.len(), 3, "each attempt tried another host");
    peer.handshake(SID, 10_000).await;
    let client = rig.connecting.await.unwrap().unwrap();
    assert_eq!(client.connected_server(), Some(third));
    assert!(rig.refusals.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_pings_and_a_silent_server_is_left() {
    let (mut rig, client, mut peer) = Rig::connected("h1:2181").await;
    // Negotiated 10 s: a ping after 1 s of idleness (1/10).
    let t0 = Instant::now();
    let (hdr, _) = peer.request().await;
    assert_eq!((hdr.xid, hdr.op), (xid::PING, OpCode::Ping.code()));
    assert_eq!(t0.elapsed(), Duration::from_secs(1));
    peer.reply(xid::PING, 0, err::OK, None).await;
    let answered = Instant::now();
    // The server stops answering: after 2/5 of the timeout without a byte,
    // the client gives the connection up and dials again.
    let (hdr, _) = peer.request().await;
    assert_eq!(hdr.xid, xid::PING);
    let (_, mut next) = rig.dial().await;
    assert_eq!(answered.elapsed(), Duration::from_secs(4));
    let old = tokio::time::timeout(Duration::from_secs(5), peer.frame()).await;
    assert_eq!(old, Ok(None), "the old connection is closed");
    let req = next.handshake(SID, 10_000).await;
    assert_eq!(req.session_id, SID);
    assert_eq!(client.session_id().0, SID);
}
