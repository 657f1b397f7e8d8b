//! Deterministic tests of the sans-IO session core (quinn-proto `Pair` style).
//!
//! [`Pair`] couples a [`Session`] with a scripted fake server and a virtual
//! clock. The fake server decodes every frame the client writes
//! ([`Sent`]); tests answer with hand-built frames (`ConnectResponse`,
//! `ReplyHeader` + body, notifications with xid -1) delivered through
//! `handle_data`, whole or in arbitrary chunks. Time only moves when a test
//! calls [`Pair::advance`], which fires every deadline `poll_timeout` reports
//! on the way. No sockets, no tokio, no sleeps.
//!
//! The harness also checks invariants on every event: no request completes
//! twice, nothing is written without an open transport, and nothing but
//! replies to late calls follows a terminal state.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    Event, HostAddr, Request, RequestId, Session, SessionConfig, WatchAction, WatchKind, WatcherId,
    FLAP_WINDOW, SET_WATCHES_MAX_LENGTH,
};
use crate::error::Error;
use crate::proto::codes::{err, xid, EventType, OpCode, WatcherType};
use crate::proto::{
    decode_exact, decode_frame, encode_frame, AddWatchRequest, AuthPacket, ConnectRequest,
    ConnectResponse, Decode, Encode, PathWatchRequest, ReplyHeader, RequestHeader, SaslToken,
    SetWatches, SetWatches2, WatcherEvent, WatchesRequest,
};
use crate::types::{SessionState, WatchedEvent};

// ---- harness ------------------------------------------------------------------

const SID: i64 = 0x0100_0000_0000_0042;
const PASSWD: [u8; 16] = [0xAB; 16];
const MS: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn host(i: usize) -> HostAddr {
    HostAddr {
        host: format!("zk{i}"),
        port: 2181,
    }
}

/// `n` hosts, a 10 s requested timeout and a fixed seed.
fn config(n: usize) -> SessionConfig {
    let mut cfg = SessionConfig::new((0..n).map(host).collect());
    cfg.session_timeout = Duration::from_secs(10);
    cfg.connect_timeout = Duration::from_secs(10);
    cfg.request_timeout = Duration::from_secs(10);
    cfg.seed = 1;
    cfg
}

/// A frame the client wrote, as the fake server decoded it.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    /// The first frame of a connection.
    Connect { req: ConnectRequest, len: usize },
    /// Any later frame: header and the rest of the payload.
    Request { xid: i32, op: i32, body: Bytes },
}

impl Sent {
    fn request(&self) -> (i32, i32, &Bytes) {
        match self {
            Sent::Request { xid, op, body } => (*xid, *op, body),
            Sent::Connect { .. } => panic!("expected a request, got {self:?}"),
        }
    }
}

/// The server side of the transport: decodes what the client writes.
#[derive(Debug, Default)]
struct FakeServer {
    inbuf: BytesMut,
    handshake_read: bool,
    frames: VecDeque<Sent>,
}

impl FakeServer {
    fn new_connection(&mut self) {
        self.inbuf.clear();
        self.handshake_read = false;
    }

    fn receive(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
        while let Some(mut f) = decode_frame(&mut self.inbuf, usize::MAX).expect("client frame") {
            let len = f.len();
            if self.handshake_read {
                let h = RequestHeader::decode(&mut f).expect("request header");
                self.frames.push_back(Sent::Request {
                    xid: h.xid,
                    op: h.op,
                    body: f,
                });
            } else {
                self.handshake_read = true;
                let req = decode_exact::<ConnectRequest>(f).expect("ConnectRequest");
                self.frames.push_back(Sent::Connect { req, len });
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Link {
    Idle,
    Dialing(HostAddr),
    Open(HostAddr),
}

/// A session, a fake server and a virtual clock.
struct Pair {
    session: Session,
    base: Instant,
    now: Instant,
    server: FakeServer,
    link: Link,
    /// Events not yet taken by the test.
    events: Vec<Event>,
    /// Every Dial: (time since start, host).
    dials: Vec<(Duration, HostAddr)>,
    replied: HashSet<RequestId>,
    terminal: bool,
}

impl Pair {
    fn new(cfg: SessionConfig) -> Self {
        let base = Instant::now();
        let mut p = Self {
            session: Session::new(cfg, base),
            base,
            now: base,
            server: FakeServer::default(),
            link: Link::Idle,
            events: Vec::new(),
            dials: Vec::new(),
            replied: HashSet::new(),
            terminal: false,
        };
        p.drive();
        p
    }

    /// A session connected (negotiated `timeout_ms`) with all events and
    /// frames of the handshake taken.
    fn connected(cfg: SessionConfig, timeout_ms: i32) -> Self {
        let mut p = Self::new(cfg);
        p.dial_ok();
        p.accept(timeout_ms);
        assert!(p.session.state().is_connected());
        p.take_events();
        p.take_frames();
        p
    }

    fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Moves events and bytes between the session and the fake server until
    /// neither has anything more.
    fn drive(&mut self) {
        loop {
            let mut progress = false;
            while let Some(ev) = self.session.poll_event() {
                progress = true;
                self.observe(&ev);
                self.events.push(ev);
            }
            let mut out = BytesMut::new();
            if self.session.poll_transmit(self.now, &mut out) {
                progress = true;
                assert!(
                    matches!(self.link, Link::Open(_)),
                    "wrote {} bytes without an open transport ({:?})",
                    out.len(),
                    self.link
                );
                self.server.receive(&out);
            }
            if !progress {
                return;
            }
        }
    }

    fn observe(&mut self, ev: &Event) {
        if self.terminal {
            assert!(
                matches!(ev, Event::Reply { .. } | Event::WatchAbandoned(_)),
                "{ev:?} after a terminal state"
            );
        }
        match ev {
            Event::Dial { host } => {
                self.link = Link::Dialing(host.clone());
                self.dials.push((self.elapsed(), host.clone()));
            }
            Event::CloseTransport => {
                self.link = Link::Idle;
                self.server.new_connection();
            }
            Event::Reply { id, .. } => {
                assert!(self.replied.insert(*id), "{id:?} completed twice");
            }
            Event::State(s) if s.is_terminal() => self.terminal = true,
            _ => {}
        }
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn take_frames(&mut self) -> Vec<Sent> {
        self.server.frames.drain(..).collect()
    }

    /// Frames written since the last take, all of which must be requests.
    fn take_requests(&mut self) -> Vec<(i32, i32, Bytes)> {
        self.take_frames()
            .iter()
            .map(|f| {
                let (x, op, body) = f.request();
                (x, op, body.clone())
            })
            .collect()
    }

    fn dial_ok(&mut self) {
        let Link::Dialing(h) = self.link.clone() else {
            panic!("no dial in progress: {:?}", self.link);
        };
        self.link = Link::Open(h);
        self.server.new_connection();
        self.session.handle_connected(self.now);
        self.drive();
    }

    fn dial_fail(&mut self) {
        assert!(matches!(self.link, Link::Dialing(_)), "{:?}", self.link);
        self.link = Link::Idle;
        self.session.handle_connect_failed(self.now, "refused");
        self.drive();
    }

    fn eof(&mut self) {
        self.link = Link::Idle;
        self.session.handle_disconnected(self.now);
        self.drive();
    }

    fn submit(&mut self, req: Request) -> RequestId {
        let id = self.session.submit(self.now, req);
        self.drive();
        id
    }

    fn add_auth(&mut self, scheme: &str, credential: &str) -> RequestId {
        let id = self.session.add_auth(
            self.now,
            scheme.to_string(),
            Bytes::copy_from_slice(credential.as_bytes()),
        );
        self.drive();
        id
    }

    /// Bytes from the server, in one piece.
    fn deliver(&mut self, bytes: &[u8]) {
        self.session.handle_data(self.now, bytes);
        self.drive();
    }

    /// Bytes from the server, cut into pieces of the given sizes (the rest
    /// in one last piece).
    fn deliver_chunks(&mut self, bytes: &[u8], sizes: &[usize]) {
        let mut rest = bytes;
        for &n in sizes {
            let n = n.min(rest.len());
            self.deliver(&rest[..n]);
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            self.deliver(rest);
        }
    }

    fn accept(&mut self, timeout_ms: i32) {
        self.deliver(&connect_response(&ConnectResponse {
            protocol_version: 0,
            timeout: timeout_ms,
            session_id: SID,
            passwd: Bytes::from_static(&PASSWD),
            read_only: Some(false),
        }));
    }

    fn reply(&mut self, xid: i32, zxid: i64, code: i32, body: &[u8]) {
        self.deliver(&reply_frame(xid, zxid, code, body));
    }

    fn notify(&mut self, t: EventType, path: &str, zxid: i64) {
        self.deliver(&notification(t, path, zxid));
    }

    /// Submits `req`, checks it is written alone and answers it.
    fn roundtrip(&mut self, req: Request, zxid: i64, code: i32) -> RequestId {
        let id = self.submit(req);
        let sent = self.take_requests();
        assert_eq!(sent.len(), 1, "{sent:?}");
        self.reply(sent[0].0, zxid, code, b"");
        id
    }

    /// Advances the clock by `d`, firing every deadline on the way, then
    /// wakes the session once more at the target time (a driver may call
    /// `handle_timeout` early or spuriously; that must be harmless).
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        let mut spins = 0;
        while let Some(t) = self.session.poll_timeout() {
            if t > target {
                break;
            }
            spins += 1;
            assert!(spins < 10_000, "timer at {t:?} never clears");
            self.now = self.now.max(t);
            self.session.handle_timeout(self.now);
            self.drive();
        }
        self.now = target;
        self.session.handle_timeout(self.now);
        self.drive();
    }

    /// Keeps the connection up for `d`: advances the clock deadline by
    /// deadline and answers every ping the session sends (other frames stay
    /// for the test to take). Used to get past [`FLAP_WINDOW`], so a later
    /// drop counts as a lost connection rather than a failed attempt.
    fn live_for(&mut self, d: Duration) {
        assert!(matches!(self.link, Link::Open(_)), "{:?}", self.link);
        let target = self.now + d;
        let mut spins = 0;
        while self.now < target {
            spins += 1;
            assert!(spins < 10_000, "live_for never reaches its target");
            let left = target - self.now;
            let step = self.next_timeout().map_or(left, |t| t.min(left));
            self.advance(step);
            let before = self.server.frames.len();
            self.server
                .frames
                .retain(|f| !matches!(f, Sent::Request { xid: xid::PING, .. }));
            for _ in self.server.frames.len()..before {
                self.reply(xid::PING, 0, 0, b"");
            }
            assert!(self.session.state().is_connected(), "dropped while alive");
        }
    }

    /// Fails dials and sits out pauses until the session is terminal.
    /// Returns when that happened (time since start).
    fn fail_until_terminal(&mut self) -> Duration {
        for _ in 0..10_000 {
            if self.session.is_terminal() {
                return self.elapsed();
            }
            if matches!(self.link, Link::Dialing(_)) {
                self.dial_fail();
            } else {
                let next = self.next_timeout().expect("a deadline");
                self.advance(next);
            }
        }
        panic!("never terminal");
    }

    /// Time until the next deadline.
    fn next_timeout(&self) -> Option<Duration> {
        self.session.poll_timeout().map(|t| t - self.now)
    }
}

fn connect_response(resp: &ConnectResponse) -> Bytes {
    let mut b = BytesMut::new();
    encode_frame(&mut b, |b| resp.encode(b));
    b.freeze()
}

fn reply_frame(xid: i32, zxid: i64, code: i32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    encode_frame(&mut b, |b| {
        ReplyHeader {
            xid,
            zxid,
            err: code,
        }
        .encode(b);
        b.put_slice(body);
    });
    b.freeze()
}

fn notification(t: EventType, path: &str, zxid: i64) -> Bytes {
    let mut b = BytesMut::new();
    encode_frame(&mut b, |b| {
        ReplyHeader {
            xid: xid::NOTIFICATION,
            zxid,
            err: 0,
        }
        .encode(b);
        WatcherEvent {
            event_type: t.code(),
            state: 3,
            path: path.into(),
        }
        .encode(b);
    });
    b.freeze()
}

// ---- requests -------------------------------------------------------------------

fn encoded(r: &impl Encode) -> Bytes {
    let mut b = BytesMut::new();
    r.encode(&mut b);
    b.freeze()
}

fn path_watch(op: OpCode, path: &str, watch: Option<(u64, WatchKind)>) -> Request {
    Request {
        op,
        body: encoded(&PathWatchRequest {
            path: path.into(),
            watch: watch.is_some(),
        }),
        watch: watch.map(|(w, kind)| WatchAction::Register {
            id: WatcherId(w),
            kind,
            path: path.into(),
        }),
    }
}

fn get_data(path: &str) -> Request {
    path_watch(OpCode::GetData, path, None)
}

fn get_data_watch(path: &str, w: u64) -> Request {
    path_watch(OpCode::GetData, path, Some((w, WatchKind::Data)))
}

fn exists_watch(path: &str, w: u64) -> Request {
    path_watch(OpCode::Exists, path, Some((w, WatchKind::Exist)))
}

fn children_watch(path: &str, w: u64) -> Request {
    path_watch(OpCode::GetChildren, path, Some((w, WatchKind::Child)))
}

fn add_watch(path: &str, recursive: bool, w: u64) -> Request {
    Request {
        op: OpCode::AddWatch,
        body: encoded(&AddWatchRequest {
            path: path.into(),
            mode: i32::from(recursive),
        }),
        watch: Some(WatchAction::Register {
            id: WatcherId(w),
            kind: if recursive {
                WatchKind::PersistentRecursive
            } else {
                WatchKind::Persistent
            },
            path: path.into(),
        }),
    }
}

fn auth_packet(scheme: &str, credential: &str) -> AuthPacket {
    AuthPacket {
        auth_type: 0,
        scheme: scheme.into(),
        auth: Bytes::copy_from_slice(credential.as_bytes()),
    }
}

// ---- event helpers --------------------------------------------------------------

fn replies(events: &[Event]) -> Vec<(RequestId, Result<Bytes, Error>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reply { id, result, .. } => Some((*id, result.clone())),
            _ => None,
        })
        .collect()
}

fn states(events: &[Event]) -> Vec<SessionState> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::State(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn dialed(events: &[Event]) -> Vec<HostAddr> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Dial { host } => Some(host.clone()),
            _ => None,
        })
        .collect()
}

fn watch_events(events: &[Event]) -> Vec<(Vec<WatcherId>, WatchedEvent)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Watch { watchers, event } => {
                let mut w = watchers.clone();
                w.sort();
                Some((w, event.clone()))
            }
            _ => None,
        })
        .collect()
}

fn position(events: &[Event], pred: impl Fn(&Event) -> bool) -> usize {
    events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("event missing in {events:?}"))
}

fn ids(v: &[u64]) -> Vec<WatcherId> {
    v.iter().map(|i| WatcherId(*i)).collect()
}

// ---- handshake ------------------------------------------------------------------

#[test]
fn new_session_sends_45_byte_connect_request_with_zero_password() {
    for read_only in [false, true] {
        let mut cfg = config(1);
        cfg.read_only = read_only;
        let mut p = Pair::new(cfg);
        assert_eq!(p.take_events(), vec![Event::Dial { host: host(0) }]);
        assert_eq!(p.dials[0].0, Duration::ZERO, "first dial at once");
        assert!(p.take_frames().is_empty());
        p.dial_ok();
        let frames = p.take_frames();
        assert_eq!(
            frames,
            vec![Sent::Connect {
                req: ConnectRequest {
                    protocol_version: 0,
                    last_zxid_seen: 0,
                    timeout: 10_000,
                    session_id: 0,
                    passwd: Bytes::from_static(&[0; 16]),
                    read_only: Some(read_only),
                },
                len: 45,
            }]
        );
    }
}

#[test]
fn nothing_but_connect_request_is_written_before_connect_response() {
    let mut p = Pair::new(config(1));
    let reqs = [
        get_data("/a"),
        exists_watch("/b", 1),
        children_watch("/c", 2),
    ];
    let rids: Vec<_> = reqs.iter().map(|r| p.submit(r.clone())).collect();
    assert_eq!(p.take_events(), vec![Event::Dial { host: host(0) }]);
    p.dial_ok();
    assert!(matches!(p.take_frames()[..], [Sent::Connect { .. }]));
    // Time passes (below the attempt timeout), the driver keeps polling:
    // still nothing, not even a ping.
    p.advance(ms(1500));
    p.drive();
    assert!(p.take_frames().is_empty());
    assert_eq!(p.session.state(), SessionState::Connecting);

    p.accept(10_000);
    let sent = p.take_requests();
    let expect: Vec<_> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| (i as i32 + 1, r.op.code(), r.body.clone()))
        .collect();
    assert_eq!(sent, expect, "submission order, xids 1, 2, 3");
    assert_eq!(p.take_events(), vec![Event::State(SessionState::Connected)]);

    // Replies complete them in order.
    for (i, (x, ..)) in sent.iter().enumerate() {
        p.reply(*x, 10 + i as i64, 0, &[i as u8]);
    }
    let got: Vec<_> = replies(&p.take_events());
    assert_eq!(
        got,
        rids.iter()
            .enumerate()
            .map(|(i, id)| (*id, Ok(Bytes::from(vec![i as u8]))))
            .collect::<Vec<_>>()
    );
}

#[test]
fn negotiated_timeout_drives_ping_and_read_timeout() {
    let mut p = Pair::new(config(1));
    p.dial_ok();
    p.take_frames();
    p.accept(4_000);
    assert_eq!(p.session.negotiated_timeout(), Some(ms(4_000)));
    assert_eq!(p.session.session_id().0, SID);
    assert_eq!(&p.session.session_password()[..], &PASSWD);
    // Requested 10 s would ping after 1 s; negotiated 4 s pings after
    // 400 ms (1/10).
    assert_eq!(p.session.ping_interval(), ms(400));
    assert_eq!(p.session.read_timeout(), ms(1_600));
    assert_eq!(p.next_timeout(), Some(ms(400)));
    p.advance(ms(399));
    assert!(p.take_frames().is_empty());
    p.advance(MS);
    assert_eq!(
        p.take_requests()[..],
        [(xid::PING, OpCode::Ping.code(), Bytes::new())]
    );
    // Read timeout 2/5 of 4 s after the handshake, the ping outstanding.
    assert_eq!(p.next_timeout(), Some(ms(1_200)));
    p.advance(ms(1_199));
    assert_eq!(p.session.state(), SessionState::Connected);
    p.advance(MS);
    assert_eq!(p.session.state(), SessionState::Disconnected);
}

#[test]
fn ping_interval_is_a_tenth_of_the_timeout_capped_at_10_s() {
    for (timeout_ms, ping, read) in [
        (2_000, ms(200), ms(800)),
        (10_000, ms(1_000), ms(4_000)),
        (40_000, ms(4_000), ms(16_000)),
        (120_000, ms(10_000), ms(48_000)),
    ] {
        let mut p = Pair::connected(config(1), timeout_ms);
        assert_eq!(p.session.ping_interval(), ping, "{timeout_ms}");
        assert_eq!(p.session.read_timeout(), read, "{timeout_ms}");
        assert_eq!(p.next_timeout(), Some(ping), "{timeout_ms}");
        p.advance(ping - MS);
        assert!(p.take_frames().is_empty(), "{timeout_ms}");
        p.advance(MS);
        assert_eq!(p.take_requests()[0].0, xid::PING, "{timeout_ms}");
    }
    // Before a timeout is negotiated the requested one counts.
    let p = Pair::new(config(1));
    assert_eq!(p.session.ping_interval(), ms(1_000));
}

#[test]
fn connect_responses_of_36_and_37_bytes_are_accepted() {
    for (ro, len) in [(None, 36), (Some(false), 37)] {
        let mut p = Pair::new(config(1));
        p.dial_ok();
        p.take_events();
        let frame = connect_response(&ConnectResponse {
            protocol_version: 0,
            timeout: 6_000,
            session_id: SID,
            passwd: Bytes::from_static(&PASSWD),
            read_only: ro,
        });
        assert_eq!(frame.len(), 4 + len);
        p.deliver(&frame);
        assert_eq!(p.take_events(), vec![Event::State(SessionState::Connected)]);
        assert_eq!(p.session.negotiated_timeout(), Some(ms(6_000)));
    }
}

#[test]
fn read_only_server_gives_connected_read_only() {
    let mut cfg = config(1);
    cfg.read_only = true;
    let mut p = Pair::new(cfg);
    p.dial_ok();
    p.deliver(&connect_response(&ConnectResponse {
        protocol_version: 0,
        timeout: 6_000,
        session_id: SID,
        passwd: Bytes::from_static(&PASSWD),
        read_only: Some(true),
    }));
    assert_eq!(
        states(&p.take_events()),
        vec![SessionState::ConnectedReadOnly]
    );
}

#[test]
fn refused_new_session_tries_next_host() {
    let mut p = Pair::new(config(2));
    p.dial_ok();
    p.take_events();
    p.deliver(&connect_response(&ConnectResponse {
        passwd: Bytes::from_static(&[0; 16]),
        read_only: Some(false),
        ..ConnectResponse::default()
    }));
    let ev = p.take_events();
    assert!(ev.contains(&Event::CloseTransport), "{ev:?}");
    assert_eq!(dialed(&ev).len(), 1, "{ev:?}");
    assert_eq!(states(&ev), vec![], "a new session cannot expire");
    assert!(!p.session.is_terminal());
}

// ---- FIFO xid matching --------------------------------------------------------------

#[test]
fn replies_complete_requests_in_fifo_order() {
    let mut p = Pair::connected(config(1), 10_000);
    let a = p.submit(get_data("/a"));
    let b = p.submit(get_data("/b"));
    let c = p.submit(get_data("/c"));
    let sent = p.take_requests();
    assert_eq!(sent.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    p.reply(1, 10, 0, b"one");
    p.reply(2, 11, err::NO_NODE, b"");
    p.reply(3, 12, 0, b"three");
    assert_eq!(
        replies(&p.take_events()),
        vec![
            (a, Ok(Bytes::from_static(b"one"))),
            (b, Err(Error::NoNode)),
            (c, Ok(Bytes::from_static(b"three"))),
        ]
    );
    assert_eq!(p.session.last_zxid(), 12);
}

#[test]
fn out_of_order_reply_fails_every_pending_request_and_redials() {
    let mut p = Pair::connected(config(3), 10_000);
    let first_host = p.dials[0].1.clone();
    let rids: Vec<_> = (0..3).map(|_| p.submit(get_data("/a"))).collect();
    p.take_frames();
    p.reply(2, 10, 0, b"");
    let ev = p.take_events();
    assert_eq!(
        replies(&ev),
        rids.iter()
            .map(|id| (*id, Err(Error::ConnectionLoss)))
            .collect::<Vec<_>>()
    );
    assert_eq!(states(&ev), vec![SessionState::Disconnected]);
    let close = position(&ev, |e| *e == Event::CloseTransport);
    let dial = position(&ev, |e| matches!(e, Event::Dial { .. }));
    assert!(close < dial, "{ev:?}");
    assert_ne!(dialed(&ev), vec![first_host]);
    assert_eq!(p.session.last_zxid(), 0, "the bad reply is not trusted");
}

#[test]
fn reply_without_a_pending_request_closes_connection() {
    let mut p = Pair::connected(config(1), 10_000);
    p.reply(1, 10, 0, b"");
    let ev = p.take_events();
    assert!(ev.contains(&Event::CloseTransport), "{ev:?}");
    assert_eq!(states(&ev), vec![SessionState::Disconnected]);
}

// ---- ping and read timeout ------------------------------------------------------------

#[test]
fn ping_after_send_idleness_and_reply_clears_it() {
    // Ping after 1 s (1/10 of 10 s), read timeout 4 s.
    let mut p = Pair::connected(config(1), 10_000);
    // A request at 0.5 s resets send idleness.
    p.advance(ms(500));
    p.submit(get_data("/a"));
    let (x, ..) = p.take_requests()[0].clone();
    p.reply(x, 7, 0, b"");
    p.take_events();
    p.advance(ms(999));
    assert!(p.take_frames().is_empty(), "no ping before 1 s of idleness");
    p.advance(MS);
    assert_eq!(
        p.take_frames(),
        vec![Sent::Request {
            xid: xid::PING,
            op: OpCode::Ping.code(),
            body: Bytes::new()
        }]
    );
    // The reply clears it and does not count as a zxid.
    p.advance(ms(300));
    p.reply(xid::PING, 500, 0, b"");
    assert!(p.take_events().is_empty());
    assert_eq!(p.session.last_zxid(), 7);
    // Next ping 1 s after the previous one was sent (at 1.5 s): at 2.5 s.
    assert_eq!(p.elapsed(), ms(1_800));
    p.advance(ms(699));
    assert!(p.take_frames().is_empty());
    p.advance(MS);
    assert_eq!(p.take_requests()[0].0, xid::PING);
    assert_eq!(p.session.state(), SessionState::Connected);
    // Unanswered: other server traffic keeps the connection alive, but no
    // second ping goes out while this one is outstanding (one would be due
    // at 3.5 s, 4.5 s, ...).
    p.advance(ms(500));
    p.notify(EventType::NodeDataChanged, "/x", -1);
    p.advance(ms(3_999));
    assert!(p.take_frames().is_empty(), "one outstanding ping at a time");
    assert_eq!(p.session.state(), SessionState::Connected);
    // Read timeout 4 s after the last frame (at 3 s).
    p.advance(MS);
    assert_eq!(p.session.state(), SessionState::Disconnected);
}

#[test]
fn read_timeout_fails_pending_and_dials_next_host_without_pause() {
    let mut p = Pair::connected(config(3), 10_000);
    let first = p.dials[0].1.clone();
    let r = p.submit(get_data("/a"));
    p.take_frames();
    // No bytes at all from the server: pings go out, nothing comes back.
    p.advance(ms(3_999));
    assert_eq!(p.session.state(), SessionState::Connected);
    assert!(p.take_events().is_empty());
    p.advance(MS);
    let ev = p.take_events();
    assert_eq!(replies(&ev), vec![(r, Err(Error::ConnectionLoss))]);
    assert_eq!(states(&ev), vec![SessionState::Disconnected]);
    assert!(
        position(&ev, |e| *e == Event::CloseTransport)
            < position(&ev, |e| matches!(e, Event::Dial { .. }))
    );
    let (t, next) = p.dials.last().cloned().unwrap();
    assert_eq!(t, ms(4_000), "dialled immediately");
    assert_ne!(next, first, "the next host, not the dead one");
    // The rotation then visits the third host before coming back.
    p.dial_fail();
    let (t, third) = p.dials.last().cloned().unwrap();
    assert_eq!(t, ms(4_000));
    assert!(third != first && third != next);
}

#[test]
fn ping_reply_restarts_read_timeout() {
    let mut p = Pair::connected(config(1), 10_000);
    p.advance(ms(3_000)); // ping at 1 s, unanswered
    let ping = reply_frame(xid::PING, 1, 0, b"");
    p.deliver(&ping);
    // Read timeout now counts from 3 s.
    p.advance(ms(3_999));
    assert_eq!(p.session.state(), SessionState::Connected);
    p.advance(MS);
    assert_eq!(p.session.state(), SessionState::Disconnected);
}

#[test]
fn slow_large_reply_keeps_the_connection_alive_while_bytes_arrive() {
    let mut p = Pair::connected(config(1), 10_000);
    let r = p.submit(get_data("/big"));
    let (x, ..) = p.take_requests()[0].clone();
    let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let frame = reply_frame(x, 9, 0, &body);
    // A chunk every half read timeout: 10 chunks take 20 s, five read
    // timeouts, but the connection never looks idle.
    let step = p.session.read_timeout() / 2;
    assert_eq!(step, ms(2_000));
    let pieces: Vec<&[u8]> = frame.chunks(frame.len() / 10 + 1).collect();
    assert_eq!(pieces.len(), 10);
    for piece in pieces {
        p.advance(step);
        assert_eq!(p.session.state(), SessionState::Connected);
        assert!(replies(&p.events).is_empty());
        p.deliver(piece);
    }
    assert_eq!(p.elapsed(), ms(20_000));
    let ev = p.take_events();
    assert_eq!(replies(&ev), vec![(r, Ok(Bytes::from(body)))]);
    assert!(states(&ev).is_empty(), "never disconnected: {ev:?}");
    // The ping sent at 1 s is still outstanding: no second one.
    let pings = p.take_frames();
    assert_eq!(pings.len(), 1, "{pings:?}");
    assert_eq!(pings[0].request().0, xid::PING);
    assert_eq!(p.session.last_zxid(), 9);
    // The read timeout counts from the last byte: silence after it still
    // ends the connection.
    p.advance(ms(3_999));
    assert_eq!(p.session.state(), SessionState::Connected);
    p.advance(MS);
    assert_eq!(p.session.state(), SessionState::Disconnected);
}

// ---- reconnect -----------------------------------------------------------------------

#[test]
fn reconnect_resumes_session_with_highest_reply_zxid() {
    let mut p = Pair::connected(config(2), 10_000);
    p.roundtrip(get_data("/a"), 100, 0);
    p.roundtrip(get_data("/a"), 90, 0); // a stale server zxid never lowers it
    p.notify(EventType::NodeDataChanged, "/x", 200);
    p.advance(ms(2_000));
    p.take_frames(); // ping
    p.reply(xid::PING, 300, 0, b"");
    assert_eq!(p.session.last_zxid(), 100);
    p.take_events();

    p.eof();
    let ev = p.take_events();
    assert_eq!(states(&ev), vec![SessionState::Disconnected]);
    assert_eq!(dialed(&ev).len(), 1);
    let queued = [get_data("/q1"), get_data("/q2")];
    let qids: Vec<_> = queued.iter().map(|r| p.submit(r.clone())).collect();
    assert!(p.take_frames().is_empty());

    p.dial_ok();
    assert_eq!(
        p.take_frames(),
        vec![Sent::Connect {
            req: ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: 100,
                timeout: 10_000,
                session_id: SID,
                passwd: Bytes::from_static(&PASSWD),
                read_only: Some(false),
            },
            len: 45,
        }]
    );
    p.accept(10_000);
    assert_eq!(p.take_events(), vec![Event::State(SessionState::Connected)]);
    let sent = p.take_requests();
    assert_eq!(
        sent,
        vec![
            (3, OpCode::GetData.code(), queued[0].body.clone()),
            (4, OpCode::GetData.code(), queued[1].body.clone()),
        ]
    );
    p.reply(3, 101, 0, b"");
    p.reply(4, 102, 0, b"");
    assert_eq!(
        replies(&p.take_events())
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>(),
        qids
    );
}

#[test]
fn unsent_request_fails_after_request_timeout() {
    let mut cfg = config(1);
    cfg.request_timeout = ms(3_000);
    let mut p = Pair::connected(cfg, 10_000);
    p.eof();
    p.take_events();
    let a = p.submit(get_data("/a"));
    p.advance(ms(1_000));
    let b = p.submit(get_data("/b"));
    // The redial (after the flap pause) hangs; the request times out first.
    p.advance(ms(1_999));
    assert!(replies(&p.take_events()).is_empty());
    p.advance(MS);
    assert_eq!(
        replies(&p.take_events()),
        vec![(a, Err(Error::ConnectionLoss))]
    );
    p.advance(ms(1_000));
    assert_eq!(
        replies(&p.take_events()),
        vec![(b, Err(Error::ConnectionLoss))]
    );
    // Nothing left to send once a connection is back.
    p.advance(ms(1_000));
    if !matches!(p.link, Link::Dialing(_)) {
        p.advance(p.next_timeout().unwrap());
    }
    p.dial_ok();
    p.accept(10_000);
    assert!(
        matches!(p.take_frames()[..], [Sent::Connect { .. }]),
        "expired requests are not sent"
    );
}

// ---- auth ------------------------------------------------------------------------------

#[test]
fn auth_is_replayed_before_set_watches_and_queued_requests() {
    let mut cfg = config(1);
    cfg.auth = vec![("digest".into(), Bytes::from_static(b"u:p"))];
    let mut p = Pair::new(cfg);
    p.dial_ok();
    p.take_frames();
    p.accept(10_000);
    let sent = p.take_requests();
    assert_eq!(
        sent,
        vec![(
            xid::AUTH,
            OpCode::Auth.code(),
            encoded(&auth_packet("digest", "u:p"))
        )]
    );
    p.reply(xid::AUTH, 0, 0, b"");
    let added = p.add_auth("digest", "v:q");
    assert_eq!(
        p.take_requests(),
        vec![(
            xid::AUTH,
            OpCode::Auth.code(),
            encoded(&auth_packet("digest", "v:q"))
        )]
    );
    p.reply(xid::AUTH, 0, 0, b"");
    assert_eq!(replies(&p.take_events()), vec![(added, Ok(Bytes::new()))]);
    p.roundtrip(get_data_watch("/w", 1), 5, 0);
    p.take_events();

    p.live_for(FLAP_WINDOW);
    p.eof();
    let q = p.submit(get_data("/q"));
    p.dial_ok();
    p.take_frames();
    p.accept(10_000);
    let sent = p.take_requests();
    let ops: Vec<_> = sent.iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(
        ops,
        vec![
            (xid::AUTH, OpCode::Auth.code()),
            (xid::AUTH, OpCode::Auth.code()),
            (2, OpCode::SetWatches.code()),
            (3, OpCode::GetData.code()),
        ]
    );
    assert_eq!(sent[0].2, encoded(&auth_packet("digest", "u:p")));
    assert_eq!(sent[1].2, encoded(&auth_packet("digest", "v:q")));
    p.reply(xid::AUTH, 0, 0, b"");
    p.reply(xid::AUTH, 0, 0, b"");
    p.reply(2, 6, 0, b"");
    p.reply(3, 6, 0, b"x");
    assert_eq!(
        replies(&p.take_events()),
        vec![(q, Ok(Bytes::from_static(b"x")))],
        "the add_auth waiter completed once, on the first connection"
    );
}

#[test]
fn auth_failure_is_terminal_and_fails_everything_with_auth_failed() {
    let mut cfg = config(2);
    cfg.auth = vec![("digest".into(), Bytes::from_static(b"bad"))];
    let mut p = Pair::new(cfg);
    let waiter = p.add_auth("digest", "other");
    p.dial_ok();
    p.accept(10_000);
    let r = p.submit(get_data("/a"));
    let sent = p.take_frames();
    assert_eq!(sent.len(), 4, "connect, two auths, one request: {sent:?}");
    p.take_events();
    let dials = p.dials.len();

    p.reply(xid::AUTH, 0, err::AUTH_FAILED, b"");
    let ev = p.take_events();
    let mut got = replies(&ev);
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(
        got,
        vec![
            (waiter, Err(Error::AuthFailed)),
            (r, Err(Error::AuthFailed))
        ]
    );
    assert_eq!(states(&ev), vec![SessionState::AuthFailed]);
    assert!(ev.contains(&Event::CloseTransport));
    assert!(p.session.is_terminal());
    assert_eq!(p.session.poll_timeout(), None);
    p.advance(Duration::from_secs(60));
    assert_eq!(p.dials.len(), dials, "no redial after AuthFailed");
    let late = p.submit(get_data("/b"));
    assert_eq!(
        replies(&p.take_events()),
        vec![(late, Err(Error::AuthFailed))]
    );
}

#[test]
fn add_auth_waiter_completes_on_success() {
    let mut p = Pair::new(config(1));
    let a = p.add_auth("digest", "u:p");
    p.dial_ok();
    p.accept(10_000);
    p.take_events();
    assert_eq!(p.take_frames()[1].request().0, xid::AUTH);
    p.reply(xid::AUTH, 0, 0, b"");
    assert_eq!(
        p.take_events(),
        vec![Event::Reply {
            id: a,
            xid: None,
            result: Ok(Bytes::new())
        }]
    );
}

#[test]
fn add_auth_is_written_in_call_order() {
    let mut cfg = config(1);
    cfg.auth = vec![("digest".into(), Bytes::from_static(b"cfg:pw"))];
    let mut p = Pair::new(cfg);
    let a = p.submit(get_data("/a"));
    let au = p.add_auth("digest", "u:p");
    let b = p.submit(get_data("/b"));
    p.dial_ok();
    p.take_frames();
    p.accept(10_000);
    // Config auth first (it belongs to the connection), then the queue in
    // call order.
    let sent = p.take_requests();
    assert_eq!(
        sent,
        vec![
            (
                xid::AUTH,
                OpCode::Auth.code(),
                encoded(&auth_packet("digest", "cfg:pw"))
            ),
            (1, OpCode::GetData.code(), get_data("/a").body),
            (
                xid::AUTH,
                OpCode::Auth.code(),
                encoded(&auth_packet("digest", "u:p"))
            ),
            (2, OpCode::GetData.code(), get_data("/b").body),
        ]
    );
    p.reply(xid::AUTH, 0, 0, b"");
    p.reply(1, 5, 0, b"a");
    p.reply(xid::AUTH, 0, 0, b"");
    p.reply(2, 6, 0, b"b");
    assert_eq!(
        replies(&p.take_events()),
        vec![
            (a, Ok(Bytes::from_static(b"a"))),
            (au, Ok(Bytes::new())),
            (b, Ok(Bytes::from_static(b"b"))),
        ]
    );

    // Connected, several calls before the driver polls: same order.
    let c = p.session.submit(p.now, get_data("/c"));
    let av = p
        .session
        .add_auth(p.now, "digest".into(), Bytes::from_static(b"v:q"));
    let d = p.session.submit(p.now, get_data("/d"));
    p.drive();
    let sent = p.take_requests();
    assert_eq!(
        sent.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        vec![
            (3, OpCode::GetData.code()),
            (xid::AUTH, OpCode::Auth.code()),
            (4, OpCode::GetData.code()),
        ]
    );
    assert_eq!(sent[1].2, encoded(&auth_packet("digest", "v:q")));
    p.reply(3, 7, 0, b"");
    p.reply(xid::AUTH, 0, err::AUTH_FAILED, b"");
    let ev = p.take_events();
    let mut got = replies(&ev);
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(
        got,
        vec![
            (c, Ok(Bytes::new())),
            (av, Err(Error::AuthFailed)),
            (d, Err(Error::AuthFailed)),
        ]
    );
    assert_eq!(states(&ev), vec![SessionState::AuthFailed]);
}

#[test]
fn reconnect_replays_sent_auths_first_and_sends_unsent_ones_in_queue_order() {
    let mut p = Pair::connected(config(1), 10_000);
    let a = p.add_auth("digest", "a:1");
    assert_eq!(p.take_requests()[0].0, xid::AUTH);
    p.reply(xid::AUTH, 0, 0, b"");
    assert_eq!(replies(&p.take_events()), vec![(a, Ok(Bytes::new()))]);
    p.roundtrip(get_data_watch("/w", 1), 5, 0);
    p.take_events();

    p.live_for(FLAP_WINDOW);
    p.eof();
    p.take_events();
    let q1 = p.submit(get_data("/q1"));
    let b = p.add_auth("digest", "b:2");
    let q2 = p.submit(get_data("/q2"));
    p.dial_ok();
    p.take_frames();
    p.accept(10_000);
    let sent = p.take_requests();
    assert_eq!(
        sent.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        vec![
            (xid::AUTH, OpCode::Auth.code()),
            (2, OpCode::SetWatches.code()),
            (3, OpCode::GetData.code()),
            (xid::AUTH, OpCode::Auth.code()),
            (4, OpCode::GetData.code()),
        ],
        "sent auth replayed first; the unsent one keeps its queue place"
    );
    assert_eq!(sent[0].2, encoded(&auth_packet("digest", "a:1")));
    assert_eq!(sent[3].2, encoded(&auth_packet("digest", "b:2")));
    p.reply(xid::AUTH, 0, 0, b"");
    p.reply(2, 6, 0, b"");
    p.reply(3, 7, 0, b"");
    p.reply(xid::AUTH, 0, 0, b"");
    p.reply(4, 8, 0, b"");
    assert_eq!(
        replies(&p.take_events()),
        vec![
            (q1, Ok(Bytes::new())),
            (b, Ok(Bytes::new())),
            (q2, Ok(Bytes::new()))
        ],
        "the first auth's waiter is not answered again"
    );

    // Both have been sent now: both are replayed, in call order, before
    // the watches.
    let sent = reconnect(&mut p);
    assert_eq!(
        sent.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        vec![
            (xid::AUTH, OpCode::Auth.code()),
            (xid::AUTH, OpCode::Auth.code()),
            (5, OpCode::SetWatches.code()),
        ]
    );
    assert_eq!(sent[0].2, encoded(&auth_packet("digest", "a:1")));
    assert_eq!(sent[1].2, encoded(&auth_packet("digest", "b:2")));
    p.take_events();
    p.reply(xid::AUTH, 0, 0, b"");
    p.reply(xid::AUTH, 0, 0, b"");
    p.reply(5, 9, 0, b"");
    assert!(p.take_events().is_empty(), "no waiter answered twice");
}

#[test]
fn auth_sent_but_unanswered_is_replayed_and_its_waiter_completes_once() {
    let mut p = Pair::connected(config(1), 10_000);
    let a = p.add_auth("digest", "u:p");
    assert_eq!(p.take_requests()[0].0, xid::AUTH);
    p.live_for(FLAP_WINDOW);
    p.eof();
    assert!(replies(&p.take_events()).is_empty());
    p.dial_ok();
    p.take_frames();
    p.accept(10_000);
    let sent = p.take_requests();
    assert_eq!(
        sent,
        vec![(
            xid::AUTH,
            OpCode::Auth.code(),
            encoded(&auth_packet("digest", "u:p"))
        )]
    );
    p.reply(xid::AUTH, 0, 0, b"");
    assert_eq!(replies(&p.take_events()), vec![(a, Ok(Bytes::new()))]);
}

#[test]
fn queued_auth_that_times_out_fails_once_and_is_not_replayed() {
    let mut cfg = config(1);
    cfg.request_timeout = ms(3_000);
    let mut p = Pair::connected(cfg, 10_000);
    p.live_for(FLAP_WINDOW);
    p.eof(); // the redial hangs
    p.take_events();
    let a = p.add_auth("digest", "u:p");
    p.advance(ms(2_999));
    assert!(replies(&p.take_events()).is_empty());
    p.advance(MS);
    assert_eq!(
        replies(&p.take_events()),
        vec![(a, Err(Error::ConnectionLoss))]
    );
    // The hanging dial finally connects: no auth goes out.
    p.dial_ok();
    p.take_frames();
    p.accept(10_000);
    assert!(
        p.take_frames().is_empty(),
        "the timed-out auth is forgotten"
    );
    assert!(reconnect(&mut p).is_empty(), "and never replayed");
    // Closing does not answer the timed-out auth a second time (the
    // harness checks).
    p.session.close(p.now);
    p.drive();
    let (x, op, _) = p.take_requests()[0].clone();
    assert_eq!(op, OpCode::CloseSession.code());
    p.reply(x, 5, 0, b"");
    assert!(replies(&p.take_events()).is_empty());
    assert_eq!(p.session.state(), SessionState::Closed);
}

// ---- watches ----------------------------------------------------------------------------

/// Registers one watch of every kind (and one failed registration).
fn register_all_kinds(p: &mut Pair) {
    p.roundtrip(get_data_watch("/d", 1), 5, 0);
    p.roundtrip(exists_watch("/e", 2), 6, err::NO_NODE); // exist watch on NoNode
    p.roundtrip(exists_watch("/d2", 3), 7, 0); // exists on a node: data watch
    p.roundtrip(children_watch("/c", 4), 8, 0);
    p.roundtrip(add_watch("/p", false, 5), 9, 0);
    p.roundtrip(add_watch("/r", true, 6), 10, 0);
    p.roundtrip(get_data_watch("/gone", 7), 11, err::NO_NODE);
    let ev = p.take_events();
    assert!(ev.contains(&Event::WatchAbandoned(WatcherId(7))), "{ev:?}");
    assert_eq!(p.session.watcher_count(), 6);
}

/// Drops the connection after it lived a full flap window (so the next host
/// is dialled at once) and reconnects; returns the requests written.
fn reconnect(p: &mut Pair) -> Vec<(i32, i32, Bytes)> {
    p.live_for(FLAP_WINDOW);
    p.eof();
    p.dial_ok();
    p.take_frames();
    p.accept(10_000);
    p.take_requests()
}

#[test]
fn reconnect_replays_every_watch_kind_with_set_watches2() {
    let mut p = Pair::connected(config(1), 10_000);
    register_all_kinds(&mut p);
    let sent = reconnect(&mut p);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        states(&p.take_events()),
        vec![SessionState::Disconnected, SessionState::Connected]
    );
    let (x, op, body) = sent[0].clone();
    assert_eq!((x, op), (8, OpCode::SetWatches2.code()));
    let sw = decode_exact::<SetWatches2>(body).expect("SetWatches2");
    assert_eq!(
        sw,
        SetWatches2 {
            relative_zxid: 11,
            data_watches: vec!["/d".into(), "/d2".into()],
            exist_watches: vec!["/e".into()],
            child_watches: vec!["/c".into()],
            persistent_watches: vec!["/p".into()],
            persistent_recursive_watches: vec!["/r".into()],
        }
    );
    // Its reply is internal; the next request takes the next xid.
    p.reply(8, 12, 0, b"");
    assert!(p.take_events().is_empty());
    let r = p.submit(get_data("/x"));
    assert_eq!(p.take_requests()[0].0, 9);
    p.reply(9, 13, 0, b"");
    assert_eq!(replies(&p.take_events()), vec![(r, Ok(Bytes::new()))]);
}

#[test]
fn one_shot_watches_alone_replay_with_set_watches() {
    let mut p = Pair::connected(config(1), 10_000);
    p.roundtrip(get_data_watch("/d", 1), 5, 0);
    p.roundtrip(exists_watch("/e", 2), 6, err::NO_NODE);
    p.roundtrip(children_watch("/c", 3), 7, 0);
    let sent = reconnect(&mut p);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, OpCode::SetWatches.code());
    assert_eq!(
        decode_exact::<SetWatches>(sent[0].2.clone()).expect("SetWatches"),
        SetWatches {
            relative_zxid: 7,
            data_watches: vec!["/d".into()],
            exist_watches: vec!["/e".into()],
            child_watches: vec!["/c".into()],
        }
    );
}

#[test]
fn no_set_watches_without_watches() {
    let mut p = Pair::connected(config(1), 10_000);
    p.roundtrip(get_data("/a"), 5, 0);
    assert!(reconnect(&mut p).is_empty());
}

#[test]
fn large_watch_sets_replay_in_several_batches() {
    let mut p = Pair::connected(config(1), 10_000);
    let long = |i: usize| format!("/{}{i:05}", "x".repeat(1_000));
    for i in 0..300 {
        p.roundtrip(get_data_watch(&long(i), i as u64), i as i64 + 1, 0);
    }
    p.roundtrip(add_watch("/p", false, 1_000), 400, 0);
    p.take_events();
    let sent = reconnect(&mut p);
    assert!(sent.len() >= 3, "{} batches", sent.len());
    let mut data = Vec::new();
    let mut persistent = Vec::new();
    for (i, (x, op, body)) in sent.iter().enumerate() {
        assert_eq!(*x, 302 + i as i32, "consecutive normal xids");
        let b = decode_exact::<SetWatches2>(body.clone())
            .or_else(|_| {
                decode_exact::<SetWatches>(body.clone()).map(|s| SetWatches2 {
                    relative_zxid: s.relative_zxid,
                    data_watches: s.data_watches,
                    exist_watches: s.exist_watches,
                    child_watches: s.child_watches,
                    ..SetWatches2::default()
                })
            })
            .expect("a SetWatches record");
        let has_persistent = !b.persistent_watches.is_empty();
        let expect_op = if has_persistent {
            OpCode::SetWatches2
        } else {
            OpCode::SetWatches
        };
        assert_eq!(*op, expect_op.code(), "batch {i}");
        assert_eq!(b.relative_zxid, 400);
        let len: usize = b
            .data_watches
            .iter()
            .chain(&b.persistent_watches)
            .map(String::len)
            .sum();
        if i + 1 < sent.len() {
            assert!(len >= SET_WATCHES_MAX_LENGTH, "batch {i}: {len}");
        }
        assert!(body.len() < SET_WATCHES_MAX_LENGTH + 4_096);
        data.extend(b.data_watches);
        persistent.extend(b.persistent_watches);
    }
    assert_eq!(data, (0..300).map(long).collect::<Vec<_>>());
    assert_eq!(persistent, vec!["/p".to_string()]);
}

#[test]
fn notifications_fire_one_shot_once_and_persistent_always_with_chroot_stripped() {
    let mut cfg = config(1);
    cfg.chroot = Some("/app".into());
    let mut p = Pair::connected(cfg, 10_000);
    // The client marshals server paths; the session strips them on the way out.
    p.roundtrip(get_data_watch("/app/a", 1), 5, 0);
    p.roundtrip(add_watch("/app/a", false, 2), 6, 0);
    p.roundtrip(add_watch("/app", true, 3), 7, 0);
    p.roundtrip(children_watch("/app", 4), 8, 0);
    p.roundtrip(exists_watch("/app/new", 5), 9, err::NO_NODE);
    p.take_events();
    let ev = |t, path: &str, zxid| WatchedEvent {
        event_type: t,
        path: path.into(),
        zxid,
    };

    p.notify(EventType::NodeDataChanged, "/app/a", -1);
    assert_eq!(
        watch_events(&p.take_events()),
        vec![(ids(&[1, 2, 3]), ev(EventType::NodeDataChanged, "/a", -1))]
    );
    p.notify(EventType::NodeDataChanged, "/app/a", 20);
    assert_eq!(
        watch_events(&p.take_events()),
        vec![(ids(&[2, 3]), ev(EventType::NodeDataChanged, "/a", 20))],
        "the data watch was one-shot"
    );
    p.notify(EventType::NodeChildrenChanged, "/app", -1);
    assert_eq!(
        watch_events(&p.take_events()),
        vec![(ids(&[4]), ev(EventType::NodeChildrenChanged, "/", -1))],
        "recursive watches skip NodeChildrenChanged"
    );
    p.notify(EventType::NodeChildrenChanged, "/app", -1);
    assert!(p.take_events().is_empty());
    p.notify(EventType::NodeCreated, "/app/new", 21);
    assert_eq!(
        watch_events(&p.take_events()),
        vec![(ids(&[3, 5]), ev(EventType::NodeCreated, "/new", 21))]
    );
    // "/app" is not an ancestor of "/apple", and it is not stripped.
    p.notify(EventType::NodeCreated, "/apple", 22);
    assert!(p.take_events().is_empty());
    assert_eq!(p.session.watcher_count(), 2);
    assert_eq!(
        p.session.last_zxid(),
        9,
        "notification zxids are not tracked"
    );
}

#[test]
fn unwatching_last_persistent_watcher_removes_server_watch() {
    let mut p = Pair::connected(config(1), 10_000);
    p.roundtrip(add_watch("/p", false, 1), 5, 0);
    p.roundtrip(add_watch("/p", false, 2), 6, 0);
    p.take_events();
    p.session.unwatch(p.now, WatcherId(1));
    p.drive();
    assert!(p.take_frames().is_empty(), "another watcher remains");
    p.session.unwatch(p.now, WatcherId(2));
    p.drive();
    let sent = p.take_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, OpCode::RemoveWatches.code());
    assert_eq!(
        decode_exact::<WatchesRequest>(sent[0].2.clone()).unwrap(),
        WatchesRequest {
            path: "/p".into(),
            watcher_type: WatcherType::Any.code(),
        }
    );
    p.reply(sent[0].0, 7, err::NO_WATCHER, b"");
    assert!(p.take_events().is_empty());
    assert_eq!(p.session.watcher_count(), 0);
    assert!(reconnect(&mut p).is_empty(), "nothing left to replay");
}

#[test]
fn one_shot_watcher_dropped_before_its_reply_is_not_registered() {
    let mut p = Pair::connected(config(1), 10_000);
    // Dropped while its request is pending.
    let r = p.submit(get_data_watch("/a", 1));
    let (x, ..) = p.take_requests()[0].clone();
    p.session.unwatch(p.now, WatcherId(1));
    p.drive();
    assert!(
        p.take_frames().is_empty(),
        "nothing to remove for a one-shot"
    );
    p.reply(x, 5, 0, b"data");
    assert_eq!(
        p.take_events(),
        vec![Event::Reply {
            id: r,
            xid: Some(x),
            result: Ok(Bytes::from_static(b"data"))
        }],
        "the reply still completes; no watch event"
    );
    assert_eq!(p.session.watcher_count(), 0);
    p.notify(EventType::NodeDataChanged, "/a", -1);
    assert!(p.take_events().is_empty(), "no watcher fires");

    // Dropped while its request is still queued (disconnected).
    p.live_for(FLAP_WINDOW);
    p.eof();
    p.take_events();
    let r = p.submit(exists_watch("/b", 2));
    p.session.unwatch(p.now, WatcherId(2));
    p.drive();
    p.dial_ok();
    p.take_frames();
    p.accept(10_000);
    p.take_events();
    let sent = p.take_requests();
    assert_eq!(sent.len(), 1, "the request still goes: {sent:?}");
    assert_eq!(sent[0].1, OpCode::Exists.code());
    p.reply(sent[0].0, 6, err::NO_NODE, b"");
    let ev = p.take_events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(replies(&ev), vec![(r, Err(Error::NoNode))]);
    assert_eq!(p.session.watcher_count(), 0);
    p.notify(EventType::NodeCreated, "/b", -1);
    assert!(p.take_events().is_empty());
    assert!(reconnect(&mut p).is_empty(), "nothing to replay");
}

#[test]
fn persistent_watcher_dropped_before_its_reply_removes_the_server_watch() {
    for recursive in [false, true] {
        let mut p = Pair::connected(config(1), 10_000);
        let r = p.submit(add_watch("/p", recursive, 5));
        let (x, ..) = p.take_requests()[0].clone();
        p.session.unwatch(p.now, WatcherId(5));
        p.drive();
        assert!(p.take_frames().is_empty(), "nothing before the reply");
        p.reply(x, 6, 0, b"");
        assert_eq!(replies(&p.take_events()), vec![(r, Ok(Bytes::new()))]);
        assert_eq!(p.session.watcher_count(), 0);
        let sent = p.take_requests();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let (rx, op, body) = sent[0].clone();
        assert_eq!((rx, op), (x + 1, OpCode::RemoveWatches.code()));
        assert_eq!(
            decode_exact::<WatchesRequest>(body).unwrap(),
            WatchesRequest {
                path: "/p".into(),
                watcher_type: WatcherType::Any.code(),
            }
        );
        p.notify(EventType::NodeDataChanged, "/p", -1);
        p.reply(rx, 7, 0, b"");
        assert!(p.take_events().is_empty(), "recursive {recursive}");
        assert!(reconnect(&mut p).is_empty(), "nothing to replay");
    }

    // Queued while disconnected: same, once the reply comes.
    let mut p = Pair::connected(config(1), 10_000);
    p.live_for(FLAP_WINDOW);
    p.eof();
    let r = p.submit(add_watch("/q", true, 6));
    p.session.unwatch(p.now, WatcherId(6));
    p.dial_ok();
    p.take_frames();
    p.accept(10_000);
    let sent = p.take_requests();
    assert_eq!(sent.len(), 1, "no SetWatches, just the addWatch: {sent:?}");
    let (x, op, _) = sent[0].clone();
    assert_eq!(op, OpCode::AddWatch.code());
    p.take_events();
    p.reply(x, 6, 0, b"");
    assert_eq!(
        p.take_events(),
        vec![Event::Reply {
            id: r,
            xid: Some(x),
            result: Ok(Bytes::new())
        }]
    );
    let sent = p.take_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, OpCode::RemoveWatches.code());
    assert_eq!(p.session.watcher_count(), 0);

    // Another local watcher remains on the path: the server watch stays.
    let mut p = Pair::connected(config(1), 10_000);
    p.roundtrip(add_watch("/p", false, 1), 5, 0);
    p.submit(add_watch("/p", false, 2));
    let (x, ..) = p.take_requests()[0].clone();
    p.session.unwatch(p.now, WatcherId(2));
    p.reply(x, 6, 0, b"");
    assert!(p.take_frames().is_empty(), "watcher 1 still needs it");
    assert_eq!(p.session.watcher_count(), 1);
    p.take_events();
    p.notify(EventType::NodeDataChanged, "/p", -1);
    assert_eq!(
        watch_events(&p.take_events()),
        vec![(
            ids(&[1]),
            WatchedEvent {
                event_type: EventType::NodeDataChanged,
                path: "/p".into(),
                zxid: -1
            }
        )]
    );
}

#[test]
fn dropping_a_persistent_watcher_keeps_the_server_watch_of_one_registering() {
    let mut p = Pair::connected(config(1), 10_000);
    p.submit(add_watch("/p", false, 1));
    p.submit(add_watch("/p", false, 2));
    let mut written = p.take_requests();
    p.session.unwatch(p.now, WatcherId(1));
    p.reply(written[0].0, 5, 0, b"");
    written.extend(p.take_requests());
    p.reply(written[1].0, 6, 0, b"");
    written.extend(p.take_requests());
    assert_eq!(p.session.watcher_count(), 1, "watcher 2 is registered");
    // What the server was told about "/p", in order: it must end with the
    // watch in place.
    let last = written.last().unwrap();
    assert_ne!(
        last.1,
        OpCode::RemoveWatches.code(),
        "the server drops watcher 2's watch: {written:?}"
    );
}

// ---- expiry --------------------------------------------------------------------------------

#[test]
fn expired_connect_response_on_resume_is_terminal() {
    for (timeout, sid) in [(0, 0), (0, SID), (10_000, 0)] {
        let mut p = Pair::connected(config(2), 10_000);
        let pending = p.submit(get_data("/a"));
        assert_eq!(p.take_requests().len(), 1);
        p.eof();
        assert_eq!(
            replies(&p.take_events()),
            vec![(pending, Err(Error::ConnectionLoss))]
        );
        let queued = p.submit(get_data("/b"));
        p.dial_ok();
        p.deliver(&connect_response(&ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: sid,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        }));
        let ev = p.take_events();
        assert_eq!(
            replies(&ev),
            vec![(queued, Err(Error::SessionExpired))],
            "{timeout} {sid}"
        );
        assert_eq!(states(&ev), vec![SessionState::Expired]);
        assert!(ev.contains(&Event::CloseTransport));
        assert!(dialed(&ev).is_empty());
        assert!(p
            .take_frames()
            .iter()
            .all(|f| matches!(f, Sent::Connect { .. })));
        let dials = p.dials.len();
        p.advance(Duration::from_secs(60));
        assert_eq!(p.dials.len(), dials, "no dial after expiry");
        let late = p.submit(get_data("/c"));
        let late_watch = p.submit(get_data_watch("/c", 9));
        assert_eq!(
            p.take_events(),
            vec![
                Event::Reply {
                    id: late,
                    xid: None,
                    result: Err(Error::SessionExpired)
                },
                Event::WatchAbandoned(WatcherId(9)),
                Event::Reply {
                    id: late_watch,
                    xid: None,
                    result: Err(Error::SessionExpired)
                },
            ]
        );
        assert_eq!(p.session.terminal_error(), Some(Error::SessionExpired));
    }
}

#[test]
fn session_expired_reply_is_terminal() {
    let mut p = Pair::connected(config(1), 10_000);
    let a = p.submit(get_data("/a"));
    let b = p.submit(get_data("/b"));
    p.take_frames();
    p.reply(1, 5, err::SESSION_EXPIRED, b"");
    let ev = p.take_events();
    assert_eq!(
        replies(&ev),
        vec![
            (a, Err(Error::SessionExpired)),
            (b, Err(Error::SessionExpired))
        ]
    );
    assert_eq!(states(&ev), vec![SessionState::Expired]);
    assert!(ev.contains(&Event::CloseTransport));
    assert!(dialed(&ev).is_empty());
}

#[test]
fn client_side_expiry_after_four_thirds_of_timeout_without_a_server() {
    let mut p = Pair::connected(config(3), 6_000);
    p.advance(ms(1_000));
    p.take_frames(); // the ping at 0.6 s
    p.roundtrip(get_data("/a"), 5, 0); // last heard at 1 s
    let r = p.submit(get_data("/b"));
    p.eof();
    assert_eq!(p.session.state(), SessionState::Disconnected);
    let mut expired_at = None;
    for _ in 0..10_000 {
        if p.session.is_terminal() {
            break;
        }
        if matches!(p.link, Link::Dialing(_)) {
            p.dial_fail();
        } else {
            let next = p.next_timeout().expect("a deadline");
            p.advance(next);
        }
        if p.session.is_terminal() && expired_at.is_none() {
            expired_at = Some(p.elapsed());
        }
    }
    assert_eq!(
        expired_at,
        Some(ms(1_000 + 8_000)),
        "4/3 of 6 s after last reply"
    );
    let ev = p.take_events();
    let expired = position(&ev, |e| *e == Event::State(SessionState::Expired));
    assert!(dialed(&ev[expired..]).is_empty());
    assert!(p.dials.len() > 3, "kept trying meanwhile");
    assert!(replies(&ev).contains(&(r, Err(Error::ConnectionLoss))));
    assert_eq!(p.session.session_id().0, SID, "no new session");
    assert_eq!(p.session.terminal_error(), Some(Error::SessionExpired));
}

/// The causes of a `NoServerReachable` after `timeout`, one per host.
fn unreachable_causes(e: &Error, timeout: Duration) -> Vec<String> {
    match e {
        Error::NoServerReachable {
            timeout: t,
            attempts,
        } if *t == timeout => {
            let hosts: std::collections::HashSet<_> = attempts.iter().map(|a| &a.host).collect();
            assert_eq!(hosts.len(), attempts.len(), "one entry per host: {e}");
            attempts.iter().map(|a| a.cause.clone()).collect()
        }
        other => panic!("expected NoServerReachable after {timeout:?}, got {other:?}"),
    }
}

#[test]
fn new_session_gives_up_after_connect_timeout() {
    let mut cfg = config(2);
    cfg.connect_timeout = ms(3_000);
    cfg.request_timeout = Duration::from_secs(60);
    let mut p = Pair::new(cfg);
    let r = p.submit(get_data("/a"));
    // One host hangs in the handshake, the other refuses.
    p.dial_ok();
    p.advance(ms(2_000));
    p.take_frames();
    if matches!(p.link, Link::Dialing(_)) {
        p.dial_fail();
    }
    p.advance(ms(999));
    assert!(!p.session.is_terminal());
    assert!(replies(&p.events).is_empty());
    p.advance(ms(1));
    let ev = p.take_events();
    let err = p.session.terminal_error().unwrap();
    // The hanging handshake is the only attempt (its own time-out, 4 s, is
    // later than the connect timeout): it is named, with why.
    assert_eq!(
        unreachable_causes(&err, ms(3_000)),
        vec!["no answer to the handshake".to_string()],
        "{err}"
    );
    assert_eq!(replies(&ev), vec![(r, Err(err.clone()))]);
    assert_eq!(states(&ev), vec![SessionState::Closed]);
    let late = p.submit(get_data("/late"));
    assert_eq!(replies(&p.take_events()), vec![(late, Err(err))]);
    let dials = p.dials.len();
    p.advance(Duration::from_secs(60));
    assert_eq!(p.dials.len(), dials);
    assert_eq!(p.session.poll_timeout(), None);
}

#[test]
fn a_host_that_failed_keeps_its_cause_while_a_retry_is_under_way_at_the_deadline() {
    let mut cfg = config(1);
    cfg.connect_timeout = ms(3_000);
    let mut p = Pair::new(cfg);
    // The one host refuses; the retries refuse too, until one hangs in its
    // dial when the connect timeout runs out.
    p.dial_fail();
    while !p.session.is_terminal() {
        let next = p.next_timeout().expect("a deadline");
        p.advance(next);
    }
    let err = p.session.terminal_error().unwrap();
    assert_eq!(
        unreachable_causes(&err, ms(3_000)),
        vec!["refused".to_string()],
        "{err}"
    );
}

#[test]
fn resumed_session_that_never_reaches_a_server_times_out() {
    let mut cfg = config(2);
    cfg.connect_timeout = ms(3_000);
    cfg.resume = Some((SID, Bytes::from_static(&PASSWD)));
    let mut p = Pair::new(cfg);
    assert_eq!(p.session.session_id().0, SID);
    let r = p.submit(get_data("/a"));
    // One host hangs in the handshake (which offers the resumed session),
    // the other refuses.
    p.dial_ok();
    assert!(matches!(
        p.take_frames()[..],
        [Sent::Connect { ref req, .. }] if req.session_id == SID && req.passwd[..] == PASSWD
    ));
    assert_eq!(p.fail_until_terminal(), ms(3_000), "the connect timeout");
    let ev = p.take_events();
    let err = p.session.terminal_error().unwrap();
    assert_eq!(
        unreachable_causes(&err, ms(3_000)),
        vec!["no answer to the handshake".to_string()],
        "{err}"
    );
    assert_eq!(replies(&ev), vec![(r, Err(err.clone()))]);
    assert_eq!(states(&ev), vec![SessionState::Closed], "not Expired");
    let late = p.submit(get_data("/late"));
    assert_eq!(replies(&p.take_events()), vec![(late, Err(err))]);
    assert_eq!(p.session.poll_timeout(), None);
}

// ---- close --------------------------------------------------------------------------------

#[test]
fn close_flushes_queue_then_sends_close_session() {
    let mut p = Pair::connected(config(1), 10_000);
    let a = p.session.submit(p.now, get_data("/a"));
    let b = p.session.submit(p.now, get_data("/b"));
    p.session.close(p.now);
    p.drive();
    let sent = p.take_requests();
    assert_eq!(
        sent.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        vec![
            (1, OpCode::GetData.code()),
            (2, OpCode::GetData.code()),
            (3, OpCode::CloseSession.code())
        ]
    );
    assert!(sent[2].2.is_empty(), "closeSession is header only");
    let late = p.submit(get_data("/late"));
    assert_eq!(replies(&p.take_events()), vec![(late, Err(Error::Closed))]);
    p.reply(1, 5, 0, b"");
    p.reply(2, 6, 0, b"");
    p.reply(3, 7, 0, b"");
    let ev = p.take_events();
    assert_eq!(
        replies(&ev),
        vec![(a, Ok(Bytes::new())), (b, Ok(Bytes::new()))]
    );
    assert_eq!(states(&ev), vec![SessionState::Closed]);
    assert!(ev.contains(&Event::CloseTransport));
    assert_eq!(p.session.poll_timeout(), None);
}

#[test]
fn a_close_ends_the_session_however_the_close_ends() {
    // EOF, read timeout, or a -112 reply instead of the closeSession reply.
    for end in 0..3 {
        let mut p = Pair::connected(config(1), 10_000);
        p.session.close(p.now);
        p.drive();
        assert_eq!(p.take_requests()[0].1, OpCode::CloseSession.code());
        match end {
            0 => p.eof(),
            1 => p.advance(ms(4_000)),
            _ => p.reply(1, 5, err::SESSION_EXPIRED, b""),
        }
        let ev = p.take_events();
        assert!(replies(&ev).is_empty(), "case {end}");
        assert!(p.session.is_terminal(), "case {end}");
        let want = if end == 2 {
            SessionState::Expired
        } else {
            SessionState::Closed
        };
        assert_eq!(states(&ev), vec![want], "case {end}");
        assert_eq!(p.session.poll_timeout(), None, "case {end}");
    }
}

#[test]
fn close_without_an_established_session_closes_at_once() {
    // A brand-new session that never got a ConnectResponse, and a resumed
    // one that never heard from a server: nothing to deliver closeSession to.
    for resume in [false, true] {
        let mut cfg = config(2);
        if resume {
            cfg.resume = Some((SID, Bytes::from_static(&PASSWD)));
        }
        let mut p = Pair::new(cfg);
        p.dial_fail();
        p.dial_ok(); // the handshake hangs
        let q = p.submit(get_data("/a"));
        let a = p.add_auth("digest", "u:p");
        p.take_events();
        p.take_frames();
        p.session.close(p.now);
        p.drive();
        let ev = p.take_events();
        let mut got = replies(&ev);
        got.sort_by_key(|(id, _)| *id);
        assert_eq!(
            got,
            vec![(q, Err(Error::Closed)), (a, Err(Error::Closed))],
            "resume {resume}"
        );
        assert_eq!(states(&ev), vec![SessionState::Closed]);
        assert!(ev.contains(&Event::CloseTransport));
        assert!(dialed(&ev).is_empty());
        assert!(p.take_frames().is_empty());
        assert_eq!(p.session.poll_timeout(), None);
        assert_eq!(p.session.terminal_error(), Some(Error::Closed));
        // Closing twice changes nothing.
        p.session.close(p.now);
        p.drive();
        assert!(p.take_events().is_empty());
        assert_eq!(p.session.state(), SessionState::Closed);
    }
}

#[test]
fn close_while_disconnected_delivers_close_session_after_reconnect() {
    let mut p = Pair::connected(config(1), 10_000);
    p.live_for(FLAP_WINDOW);
    p.eof();
    p.take_events();
    let q = p.submit(get_data("/q"));
    p.session.close(p.now);
    p.drive();
    // Not closed yet: it keeps dialling for up to the read timeout.
    assert!(p.take_events().is_empty());
    assert!(!p.session.is_terminal());
    let late = p.submit(get_data("/late"));
    assert_eq!(replies(&p.take_events()), vec![(late, Err(Error::Closed))]);
    // A closeSession cannot be lost to a failed attempt either.
    p.dial_fail();
    let pause = p.next_timeout().unwrap();
    p.advance(pause);
    assert_eq!(dialed(&p.take_events()).len(), 1);
    p.advance(ms(1_000));
    p.dial_ok();
    assert!(
        matches!(p.take_frames()[..], [Sent::Connect { ref req, .. }] if req.session_id == SID)
    );
    p.accept(10_000);
    // Queued requests first, then closeSession.
    let sent = p.take_requests();
    assert_eq!(
        sent.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        vec![
            (1, OpCode::GetData.code()),
            (2, OpCode::CloseSession.code())
        ]
    );
    assert_eq!(states(&p.take_events()), vec![SessionState::Connected]);
    p.reply(1, 5, 0, b"q");
    p.reply(2, 6, 0, b"");
    let ev = p.take_events();
    assert_eq!(replies(&ev), vec![(q, Ok(Bytes::from_static(b"q")))]);
    assert_eq!(states(&ev), vec![SessionState::Closed]);
    assert!(ev.contains(&Event::CloseTransport));
    assert_eq!(p.session.poll_timeout(), None);
    assert_eq!(p.session.terminal_error(), Some(Error::Closed));
}

#[test]
fn close_while_disconnected_gives_up_after_read_timeout() {
    // 3 hosts: attempts time out after 10/3 s, unlike the 4 s read timeout.
    let mut p = Pair::connected(config(3), 10_000);
    p.live_for(FLAP_WINDOW);
    p.eof();
    let q = p.submit(get_data("/q"));
    p.take_events();
    p.session.close(p.now);
    p.drive();
    let closed_at = p.now + p.session.read_timeout();
    // The dial hangs for 3 s and then fails; the next host is dialled (its
    // attempt would time out at 6.33 s), but the close gives up at 4 s.
    p.advance(ms(3_000));
    assert!(!p.session.is_terminal());
    p.dial_fail();
    assert!(matches!(p.link, Link::Dialing(_)));
    assert_eq!(p.session.poll_timeout(), Some(closed_at));
    p.advance(ms(999));
    assert!(p
        .take_events()
        .iter()
        .all(|e| matches!(e, Event::Dial { .. } | Event::CloseTransport)));
    p.advance(MS);
    let ev = p.take_events();
    let mut got = replies(&ev);
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(got, vec![(q, Err(Error::Closed))]);
    assert_eq!(states(&ev), vec![SessionState::Closed]);
    assert!(ev.contains(&Event::CloseTransport));
    assert!(p.take_frames().is_empty(), "no connection: nothing written");
    assert_eq!(p.session.poll_timeout(), None);
    let dials = p.dials.len();
    p.advance(Duration::from_secs(60));
    assert_eq!(p.dials.len(), dials, "no dial after the close gave up");

    // Every dial refused at once: the pauses between them do not hide the
    // deadline either.
    let mut p = Pair::connected(config(1), 10_000);
    p.live_for(FLAP_WINDOW);
    p.eof();
    p.session.close(p.now);
    let closed_at = p.elapsed() + p.session.read_timeout();
    assert_eq!(p.fail_until_terminal(), closed_at);
    assert!(p.dials.len() > 5, "kept dialling: {}", p.dials.len());
    assert!(replies(&p.take_events()).is_empty());
    assert_eq!(p.session.state(), SessionState::Closed);
}

// ---- backoff -------------------------------------------------------------------------------

/// Fails `n` dials in a row, returning the gaps between consecutive dials.
fn failing_dial_gaps(cfg: SessionConfig, n: usize) -> Vec<Duration> {
    let mut p = Pair::new(cfg);
    for _ in 0..n {
        p.dial_fail();
        if !matches!(p.link, Link::Dialing(_)) {
            // The pause is the only deadline before the next dial.
            let next = p.next_timeout().expect("backoff deadline");
            p.advance(next);
        }
    }
    assert!(!p.session.is_terminal());
    p.dials.windows(2).map(|w| w[1].0 - w[0].0).collect()
}

#[test]
fn backoff_grows_and_is_capped_with_one_host() {
    let mut cfg = config(1);
    cfg.connect_timeout = Duration::from_secs(3_600);
    let gaps = failing_dial_gaps(cfg.clone(), 12);
    assert_eq!(gaps.len(), 12);
    // Doubling from 50 ms, capped at 1/20 of the 10 s session timeout.
    let floors = [50, 100, 200, 400, 500, 500, 500, 500, 500, 500, 500, 500];
    for (g, floor) in gaps.iter().zip(floors) {
        assert!((ms(floor)..ms(floor + 50)).contains(g), "{gaps:?}");
    }
    assert_eq!(
        failing_dial_gaps(cfg.clone(), 12),
        gaps,
        "same seed, same pauses"
    );
    cfg.seed = 2;
    assert_ne!(
        failing_dial_gaps(cfg, 12),
        gaps,
        "jitter depends on the seed"
    );
}

#[test]
fn backoff_only_after_a_full_pass_over_the_hosts() {
    let mut cfg = config(3);
    cfg.connect_timeout = Duration::from_secs(3_600);
    let gaps = failing_dial_gaps(cfg, 9);
    let zero = Duration::ZERO;
    assert_eq!(&gaps[..2], &[zero, zero]);
    assert!((ms(50)..ms(100)).contains(&gaps[2]), "{gaps:?}");
    assert_eq!(&gaps[3..5], &[zero, zero]);
    assert!((ms(100)..ms(150)).contains(&gaps[5]), "{gaps:?}");
    assert_eq!(&gaps[6..8], &[zero, zero]);
}

#[test]
fn connection_that_lived_a_flap_window_redials_the_next_host_at_once() {
    let mut p = Pair::connected(config(3), 10_000);
    let first = p.dials[0].1.clone();
    let r = p.submit(get_data("/a"));
    p.take_frames();
    p.live_for(FLAP_WINDOW);
    p.eof();
    let ev = p.take_events();
    assert_eq!(replies(&ev), vec![(r, Err(Error::ConnectionLoss))]);
    assert_eq!(states(&ev), vec![SessionState::Disconnected]);
    let next = dialed(&ev);
    assert_eq!(next.len(), 1, "{ev:?}");
    assert_ne!(next[0], first);
    assert_eq!(p.dials.last().unwrap().0, FLAP_WINDOW, "at once");

    // The window's edge, with one host (where a failed attempt pauses):
    // 999 ms is a flap, 1 s is not.
    for (lived, pauses) in [(FLAP_WINDOW - MS, true), (FLAP_WINDOW, false)] {
        let mut p = Pair::connected(config(1), 10_000);
        p.live_for(lived);
        p.eof();
        let dials = dialed(&p.take_events()).len();
        assert_eq!(dials == 0, pauses, "lived {lived:?}");
        if pauses {
            let pause = p.next_timeout().unwrap();
            assert!((ms(50)..ms(100)).contains(&pause), "{pause:?}");
        }
    }
}

#[test]
fn quick_drop_with_three_hosts_dials_the_next_host_at_once_and_counts_as_a_failure() {
    let mut p = Pair::connected(config(3), 10_000);
    let first = p.dials[0].1.clone();
    p.advance(ms(200));
    p.eof();
    let ev = p.take_events();
    let next = dialed(&ev);
    assert_eq!(next.len(), 1, "first failure of a cycle: no pause");
    assert_ne!(next[0], first);
    assert_eq!(p.dials.last().unwrap().0, ms(200));
    // The flap was the first failed attempt of this cycle: the two other
    // hosts failing completes it, and a pause follows.
    p.dial_fail();
    assert_eq!(p.dials.len(), 3);
    assert_eq!(p.dials[2].0, ms(200), "second failure: no pause");
    let hosts: HashSet<_> = p.dials.iter().map(|d| d.1.clone()).collect();
    assert_eq!(hosts.len(), 3, "each host once per cycle");
    p.dial_fail();
    assert!(!matches!(p.link, Link::Dialing(_)), "third failure pauses");
    let pause = p.next_timeout().unwrap();
    assert!((ms(50)..ms(100)).contains(&pause), "{pause:?}");
    p.advance(pause);
    assert_eq!(p.dials.len(), 4);
    assert_eq!(p.dials[3].1, first, "a new cycle");
}

/// Connects and drops the connection at once, `n` times, over `hosts` hosts.
/// Returns the gaps between consecutive dials.
fn flapping_dial_gaps(hosts: usize, n: usize) -> Vec<Duration> {
    let mut cfg = config(hosts);
    cfg.connect_timeout = Duration::from_secs(3_600);
    let mut p = Pair::new(cfg);
    for _ in 0..n {
        p.dial_ok();
        p.accept(10_000);
        assert!(p.session.state().is_connected());
        p.eof();
        if !matches!(p.link, Link::Dialing(_)) {
            let next = p.next_timeout().expect("backoff deadline");
            p.advance(next);
        }
        assert!(matches!(p.link, Link::Dialing(_)), "{:?}", p.link);
    }
    assert!(!p.session.is_terminal());
    p.dials.windows(2).map(|w| w[1].0 - w[0].0).collect()
}

#[test]
fn flapping_single_host_is_redialled_after_a_pause_every_time() {
    let gaps = flapping_dial_gaps(1, 6);
    assert_eq!(gaps.len(), 6);
    for g in &gaps {
        assert!(*g >= ms(50), "a pause before every redial: {gaps:?}");
    }
}

// A flapping host meets the same growing pauses as one that refuses dials
// (the failure count survives short-lived connections).
#[test]
fn flapping_single_host_is_redialled_after_growing_pauses() {
    let gaps = flapping_dial_gaps(1, 6);
    assert_eq!(gaps.len(), 6);
    // Like a host that refuses every dial: 50, 100, 200, ... ms plus jitter,
    // capped at 1/20 of the 10 s session timeout.
    let floors = [50, 100, 200, 400, 500, 500];
    for (g, floor) in gaps.iter().zip(floors) {
        assert!((ms(floor)..ms(floor + 50)).contains(g), "{gaps:?}");
    }
}

// With several hosts that all flap, a pause follows every full cycle: no
// tight reconnect loop over the ensemble.
#[test]
fn flapping_hosts_pause_after_each_full_cycle() {
    // Every host accepts the handshake and drops the connection at once:
    // that is a full cycle of failed attempts, so a pause must follow.
    let gaps = flapping_dial_gaps(3, 6);
    let zero = Duration::ZERO;
    assert_eq!(&gaps[..2], &[zero, zero], "{gaps:?}");
    assert!(gaps[2] >= ms(50), "pause after a full cycle: {gaps:?}");
    assert_eq!(&gaps[3..5], &[zero, zero], "{gaps:?}");
    assert!(gaps[5] >= ms(100), "growing: {gaps:?}");
}

#[test]
fn hanging_dial_times_out_and_moves_on() {
    let mut p = Pair::new(config(2));
    let first = p.dials[0].1.clone();
    p.take_events();
    // 10 s shared by 2 hosts, capped at the 4 s read timeout.
    assert_eq!(p.next_timeout(), Some(ms(4_000)));
    p.advance(ms(4_000));
    let ev = p.take_events();
    assert!(ev.contains(&Event::CloseTransport));
    assert_eq!(dialed(&ev).len(), 1);
    assert_ne!(p.dials[1].1, first);
}

// ---- bad input ------------------------------------------------------------------------------

#[test]
fn oversized_or_negative_length_prefix_closes_connection() {
    // Beyond any reply read past, negative, or oversized with a header
    // that answers no request.
    for prefix in [0x7fff_ffff_u32, 1_025, 0xffff_ffff] {
        let mut cfg = config(1);
        cfg.max_reply = 1_024;
        let mut p = Pair::connected(cfg, 10_000);
        let r = p.submit(get_data("/a"));
        let mut bytes = prefix.to_be_bytes().to_vec();
        if prefix == 1_025 {
            bytes.extend_from_slice(&[0, 0, 0x30, 0x39, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        }
        p.deliver(&bytes);
        let ev = p.take_events();
        assert_eq!(
            replies(&ev),
            vec![(r, Err(Error::ConnectionLoss))],
            "{prefix:#x}"
        );
        assert_eq!(states(&ev), vec![SessionState::Disconnected]);
        assert!(ev.contains(&Event::CloseTransport));
        // The connection died within the flap window and there is only one
        // host: a pause before the redial.
        assert!(dialed(&ev).is_empty(), "{prefix:#x}");
        let pause = p.next_timeout().unwrap();
        assert!((ms(50)..ms(100)).contains(&pause), "{pause:?}");
        p.advance(pause);
        assert_eq!(dialed(&p.take_events()).len(), 1, "{prefix:#x}");
    }
    // Exactly max_reply is fine (and waits for the rest).
    let mut cfg = config(1);
    cfg.max_reply = 1_024;
    let mut p = Pair::connected(cfg, 10_000);
    p.deliver(&1_024u32.to_be_bytes());
    assert!(p.take_events().is_empty());
}

#[test]
fn garbage_reply_header_closes_connection() {
    let mut p = Pair::connected(config(1), 10_000);
    let r = p.submit(get_data("/a"));
    p.deliver(&[0, 0, 0, 3, 1, 2, 3]);
    let ev = p.take_events();
    assert_eq!(replies(&ev), vec![(r, Err(Error::ConnectionLoss))]);
    assert_eq!(states(&ev), vec![SessionState::Disconnected]);

    // A notification with a truncated body, and an auth reply nobody asked for.
    for frame in [
        reply_frame(xid::NOTIFICATION, -1, 0, &[0, 0, 0, 1]),
        reply_frame(xid::AUTH, 0, 0, b""),
    ] {
        let mut p = Pair::connected(config(1), 10_000);
        p.deliver(&frame);
        assert_eq!(states(&p.take_events()), vec![SessionState::Disconnected]);
    }
}

#[test]
fn garbage_connect_response_fails_the_attempt() {
    let mut p = Pair::new(config(2));
    p.dial_ok();
    p.take_events();
    p.deliver(&[0, 0, 0, 5, 0, 0, 0, 0, 0]);
    let ev = p.take_events();
    assert!(ev.contains(&Event::CloseTransport));
    assert_eq!(dialed(&ev).len(), 1);
    assert!(states(&ev).is_empty());
}

#[test]
fn frames_split_at_every_byte_boundary() {
    let handshake = connect_response(&ConnectResponse {
        protocol_version: 0,
        timeout: 10_000,
        session_id: SID,
        passwd: Bytes::from_static(&PASSWD),
        read_only: Some(false),
    });
    let mut replies_bytes = BytesMut::new();
    replies_bytes.extend_from_slice(&reply_frame(1, 5, 0, b"data-of-a"));
    replies_bytes.extend_from_slice(&reply_frame(xid::PING, 5, 0, b""));
    replies_bytes.extend_from_slice(&reply_frame(2, 6, err::NO_NODE, b""));
    replies_bytes.extend_from_slice(&notification(EventType::NodeDeleted, "/a", 7));
    let replies_bytes = replies_bytes.freeze();

    let run = |hs: &[usize], rs: &[usize]| {
        let mut p = Pair::new(config(1));
        p.submit(get_data_watch("/a", 1));
        p.submit(get_data("/b"));
        p.dial_ok();
        p.deliver_chunks(&handshake, hs);
        p.deliver_chunks(&replies_bytes, rs);
        assert!(p.session.state().is_connected());
        (p.take_events(), p.take_frames())
    };
    let reference = run(&[], &[]);
    assert_eq!(
        watch_events(&reference.0),
        vec![(
            ids(&[1]),
            WatchedEvent {
                event_type: EventType::NodeDeleted,
                path: "/a".into(),
                zxid: 7
            }
        )]
    );
    for split in 0..=handshake.len() {
        assert_eq!(run(&[split], &[]), reference, "handshake split at {split}");
    }
    for split in 0..=replies_bytes.len() {
        assert_eq!(run(&[], &[split]), reference, "replies split at {split}");
    }
    let ones = vec![1; replies_bytes.len().max(handshake.len())];
    assert_eq!(run(&ones, &ones), reference, "one byte at a time");
}

#[test]
fn random_bytes_from_the_server_never_panic() {
    // Counts of what the noise provoked, to show the loop reaches real paths.
    let (mut ok_replies, mut losses, mut terminal) = (0, 0, 0);
    for seed in 0..48u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cfg = config(2);
        cfg.max_reply = 4_096;
        cfg.seed = seed;
        let mut p = Pair::connected(cfg, 10_000);
        p.roundtrip(get_data_watch("/a", 1), 3, 0);
        p.roundtrip(add_watch("/", true, 2), 4, 0);
        for step in 0..60 {
            if p.session.is_terminal() {
                break;
            }
            match &p.link {
                Link::Dialing(_) => {
                    p.dial_ok();
                    p.take_frames();
                    p.accept(rng.random_range(-1..20_000));
                    p.take_events();
                    continue;
                }
                Link::Idle => {
                    p.advance(p.next_timeout().unwrap_or(ms(1)));
                    continue;
                }
                Link::Open(_) => {}
            }
            if rng.random_bool(0.3) {
                p.submit(get_data("/b"));
            }
            let bytes: Vec<u8> = if rng.random_bool(0.3) {
                // Raw noise.
                let n = rng.random_range(0..40);
                (0..n).map(|_| rng.random()).collect()
            } else {
                // A well-framed reply with plausible header values and a
                // random tail.
                let x = *[-1, -2, -4, -8, 0, 1, 2, 3, step, rng.random()]
                    .get(rng.random_range(0..10))
                    .unwrap();
                let code = *[0, -101, -112, -115, -4, rng.random()]
                    .get(rng.random_range(0..6))
                    .unwrap();
                let tail: Vec<u8> = (0..rng.random_range(0..24)).map(|_| rng.random()).collect();
                reply_frame(x, rng.random(), code, &tail).to_vec()
            };
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len());
                p.deliver(&rest[..n]);
                rest = &rest[n..];
            }
            if rng.random_bool(0.2) {
                p.advance(ms(rng.random_range(0..3_000)));
            }
            for e in p.take_events() {
                match e {
                    Event::Reply { result: Ok(_), .. } => ok_replies += 1,
                    Event::State(SessionState::Disconnected) => losses += 1,
                    _ => {}
                }
            }
            p.take_frames();
        }
        terminal += usize::from(p.session.is_terminal());
    }
    assert!(
        ok_replies > 10 && losses > 10 && terminal > 0,
        "{ok_replies} {losses} {terminal}"
    );
}

// ---- limits ---------------------------------------------------------------------------------

#[test]
fn request_too_large_fails_at_once_and_writes_nothing() {
    let mut cfg = config(1);
    cfg.max_request = 100;
    let mut p = Pair::connected(cfg, 10_000);
    let req = |n: usize, w: Option<u64>| Request {
        op: OpCode::SetData,
        body: Bytes::from(vec![7; n]),
        watch: w.map(|w| WatchAction::Register {
            id: WatcherId(w),
            kind: WatchKind::Data,
            path: "/a".into(),
        }),
    };
    let id = p.submit(req(93, Some(4)));
    assert_eq!(
        p.take_events(),
        vec![
            Event::WatchAbandoned(WatcherId(4)),
            Event::Reply {
                id,
                xid: None,
                result: Err(Error::RequestTooLarge {
                    size: 101,
                    limit: 100
                })
            }
        ]
    );
    assert!(p.take_frames().is_empty());
    // 92 bytes + 8 header bytes is exactly the limit.
    p.submit(req(92, None));
    let sent = p.take_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2.len(), 92);
}

#[test]
fn a_one_shot_watch_beside_a_persistent_one_is_served_locally() {
    // ZOOKEEPER-4466: never register a one-shot watch on a path that has a
    // persistent watch of this session; serve it from the persistent one.
    let mut p = Pair::connected(config(1), 10_000);
    p.roundtrip(add_watch("/a", true, 1), 5, 0);
    let watch_flags = |p: &mut Pair| {
        p.take_requests()
            .into_iter()
            .map(|(x, _, mut body)| (x, PathWatchRequest::decode(&mut body).unwrap().watch))
            .collect::<Vec<_>>()
    };
    p.submit(get_data_watch("/a", 2));
    p.submit(children_watch("/a", 3));
    p.submit(get_data_watch("/b", 4));
    let sent = watch_flags(&mut p);
    assert_eq!(
        sent.iter().map(|s| s.1).collect::<Vec<_>>(),
        vec![false, false, true],
        "only /b, with no persistent watch, is registered on the server"
    );
    for (x, _) in sent {
        p.reply(x, 6, 0, b"");
    }
    p.take_events();
    assert_eq!(
        p.session.watcher_count(),
        4,
        "registered locally all the same"
    );
    let ev = |t, path: &str| WatchedEvent {
        event_type: t,
        path: path.into(),
        zxid: 7,
    };
    // A child created: the recursive watcher sees it, and the child watch
    // on /a gets the NodeChildrenChanged the server will not send.
    p.notify(EventType::NodeCreated, "/a/x", 7);
    assert_eq!(
        watch_events(&p.take_events()),
        vec![
            (ids(&[3]), ev(EventType::NodeChildrenChanged, "/a")),
            (ids(&[1]), ev(EventType::NodeCreated, "/a/x")),
        ]
    );
    p.notify(EventType::NodeDataChanged, "/a", 7);
    assert_eq!(
        watch_events(&p.take_events()),
        vec![(ids(&[1, 2]), ev(EventType::NodeDataChanged, "/a"))]
    );
    // Also while the persistent watch is still being set up.
    p.submit(add_watch("/c", false, 5));
    p.submit(get_data_watch("/c", 6));
    let sent = p.take_requests();
    let mut body = sent[1].2.clone();
    assert!(!PathWatchRequest::decode(&mut body).unwrap().watch);
    // A persistent registration that failed leaves nothing behind: a later
    // one-shot watch on its path is registered on the server as usual.
    p.reply(sent[0].0, 8, err::NO_AUTH, b"");
    p.reply(sent[1].0, 8, 0, b"");
    p.take_events();
    p.submit(add_watch("/d", false, 7));
    let sent = p.take_requests();
    p.reply(sent[0].0, 9, err::NO_AUTH, b"");
    p.submit(get_data_watch("/d", 8));
    let sent = p.take_requests();
    let mut body = sent[0].2.clone();
    assert!(PathWatchRequest::decode(&mut body).unwrap().watch);
}

#[test]
fn sasl_runs_before_anything_else_and_a_refusal_is_final() {
    let mut cfg = config(1);
    cfg.sasl = Some(("bob".into(), "bob-secret".into()));
    cfg.auth = vec![("digest".into(), Bytes::from_static(b"u:p"))];
    let mut p = Pair::new(cfg);
    p.dial_ok();
    p.take_frames();
    let q = p.submit(get_data("/a"));
    p.accept(10_000);
    // Only the first SASL token (empty, DIGEST-MD5) goes out; the digest
    // credentials and the queued request wait.
    let sent = p.take_requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, OpCode::Sasl.code());
    let mut body = sent[0].2.clone();
    assert!(SaslToken::decode(&mut body).unwrap().token.is_empty());
    assert!(
        states(&p.take_events()).is_empty(),
        "not Connected before SASL"
    );
    // The server refuses: the session ends, AuthFailed, and the queued
    // request fails with it.
    p.reply(sent[0].0, 0, err::AUTH_FAILED, &[0xff, 0xff, 0xff, 0xff]);
    let ev = p.take_events();
    assert_eq!(states(&ev), vec![SessionState::AuthFailed]);
    assert_eq!(replies(&ev), vec![(q, Err(Error::AuthFailed))]);
    assert!(p.take_requests().is_empty());
}

fn sasl_steps(ev: &[Event]) -> Vec<(u64, Option<Bytes>)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::SaslStep { generation, input } => Some((
                *generation,
                match input {
                    super::SaslInput::Start(_) => None,
                    super::SaslInput::Token(t) => Some(t.clone()),
                },
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn an_external_sasl_mechanism_runs_first_on_every_connection() {
    let mut cfg = config(1);
    cfg.sasl_external = true;
    let mut p = Pair::new(cfg);
    p.dial_ok();
    p.take_frames();
    let q = p.submit(get_data("/a"));
    p.accept(10_000);
    // The driver is asked for the first token; nothing goes out meanwhile.
    let ev = p.take_events();
    let steps = sasl_steps(&ev);
    assert_eq!(steps.len(), 1, "{ev:?}");
    let (g1, first) = steps[0].clone();
    assert_eq!(first, None, "a new exchange starts without a token");
    assert!(states(&ev).is_empty(), "not Connected before SASL");
    p.drive();
    assert!(p.take_requests().is_empty());
    // The mechanism's token goes out as op 102; the server's answer comes
    // back as the next step.
    p.session
        .handle_sasl_step(p.now, g1, Ok(Some(b"ap-req".to_vec())));
    p.drive();
    let sent = p.take_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, OpCode::Sasl.code());
    let mut body = sent[0].2.clone();
    assert_eq!(&SaslToken::decode(&mut body).unwrap().token[..], b"ap-req");
    let mut reply = BytesMut::new();
    SaslToken {
        token: Bytes::from_static(b"offer"),
    }
    .encode(&mut reply);
    p.reply(sent[0].0, 0, 0, &reply);
    let ev = p.take_events();
    assert_eq!(
        sasl_steps(&ev),
        vec![(g1, Some(Bytes::from_static(b"offer")))]
    );
    // Done: Connected, then the queued request.
    p.session.handle_sasl_step(p.now, g1, Ok(None));
    p.drive();
    assert_eq!(states(&p.take_events()), vec![SessionState::Connected]);
    let sent = p.take_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, OpCode::GetData.code());
    p.reply(sent[0].0, 5, 0, b"");
    assert_eq!(replies(&p.take_events()).len(), 1);
    let _ = q;
    // A new connection starts a new exchange; a late step of the old one
    // is ignored.
    p.eof();
    p.advance(ms(1_000)); // past the back-off before the same host
    p.take_events();
    p.dial_ok();
    p.take_frames();
    p.accept(10_000);
    let steps = sasl_steps(&p.take_events());
    assert_eq!(steps.len(), 1);
    let g2 = steps[0].0;
    assert_ne!(g1, g2);
    p.session
        .handle_sasl_step(p.now, g1, Ok(Some(b"stale".to_vec())));
    p.drive();
    assert!(p.take_requests().is_empty(), "a stale step sends nothing");
    // A failed step ends the session as AuthFailed.
    let q2 = p.submit(get_data("/b"));
    p.session
        .handle_sasl_step(p.now, g2, Err("no Kerberos ticket".into()));
    p.drive();
    let ev = p.take_events();
    assert_eq!(states(&ev), vec![SessionState::AuthFailed]);
    assert_eq!(replies(&ev), vec![(q2, Err(Error::AuthFailed))]);
}

#[test]
fn an_oversized_reply_fails_its_request_and_the_connection_goes_on() {
    let mut cfg = config(1);
    cfg.max_reply = 1_000;
    let mut p = Pair::connected(cfg, 10_000);
    let big = p.submit(children_watch("/crowded", 7));
    let next = p.submit(get_data("/small"));
    let sent = p.take_requests();
    assert_eq!(sent.len(), 2);
    // 5,000 bytes of children, in pieces, then the next reply in the same
    // piece as the oversized reply's tail.
    let mut bytes = reply_frame(sent[0].0, 90, err::OK, &[b'x'; 5_000]).to_vec();
    bytes.extend_from_slice(&reply_frame(sent[1].0, 91, err::OK, b"fine"));
    p.deliver_chunks(&bytes, &[3, 10, 700, 2_000, 2_300]);
    let ev = p.take_events();
    assert!(!ev.contains(&Event::CloseTransport), "{ev:?}");
    let r = replies(&ev);
    assert_eq!(r.len(), 2, "{ev:?}");
    assert_eq!(r[0].0, big);
    assert_eq!(
        r[0].1,
        Err(Error::ResponseTooLarge {
            size: 5_016,
            limit: 1_000
        })
    );
    assert!(ev.contains(&Event::WatchAbandoned(WatcherId(7))), "{ev:?}");
    assert_eq!(r[1], (next, Ok(Bytes::from_static(b"fine"))));
    assert!(p.session.state().is_connected());
    assert_eq!(p.session.last_zxid(), 91);
}

#[test]
fn an_oversized_frame_that_answers_nothing_closes_the_connection() {
    let mut cfg = config(1);
    cfg.max_reply = 1_000;
    let mut p = Pair::connected(cfg, 10_000);
    let id = p.submit(get_data("/a"));
    let sent = p.take_requests();
    p.deliver(&reply_frame(sent[0].0 + 5, 90, err::OK, &[0; 2_000]));
    let ev = p.take_events();
    assert!(ev.contains(&Event::CloseTransport), "{ev:?}");
    assert_eq!(replies(&ev), [(id, Err(Error::ConnectionLoss))]);
}
