//! The one background task of a session: it owns the transport and the
//! [`Session`], and carries out the session's events. All protocol decisions
//! are the session's; this file only moves bytes, time and messages.
//! Connections come from a [`Connect`] (plain TCP by default).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant as TokioInstant;
use tracing::{debug, trace};

use crate::error::Error;
use crate::sasl::{ExternalMechanism, MechanismFactory};
use crate::session::{Event, HostAddr, Request, RequestId, SaslInput, Session, WatcherId};
use crate::transport::{BoxedIo, Connect, ConnectFuture};
use crate::types::{EventType, SessionId, SessionState, WatchedEvent};

/// Messages from handles to the driver. Sent synchronously at call time, so
/// wire order equals call order.
#[derive(Debug)]
pub(crate) enum Command {
    Submit {
        req: Request,
        reply: oneshot::Sender<Result<Bytes, Error>>,
        watcher: Option<(WatcherId, WatchSink)>,
        /// The caller's `zk.request` span (disabled when nothing listens):
        /// the driver records the xid in it.
        span: tracing::Span,
    },
    /// An addAuth: credentials the session keeps and replays.
    AddAuth {
        scheme: String,
        auth: Bytes,
        reply: oneshot::Sender<Result<Bytes, Error>>,
    },
    Unwatch(WatcherId),
    Subscribe(mpsc::UnboundedSender<SessionState>),
    Close(oneshot::Sender<Result<(), Error>>),
}

/// Where a watcher's events go.
#[derive(Debug)]
pub(crate) enum WatchSink {
    Oneshot(oneshot::Sender<WatchedEvent>),
    Persistent(mpsc::UnboundedSender<WatchedEvent>),
}

/// Session facts the handles read without asking the driver.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionInfo {
    pub(crate) session_id: SessionId,
    pub(crate) password: Bytes,
    pub(crate) negotiated_timeout: Option<std::time::Duration>,
    pub(crate) last_zxid: i64,
    pub(crate) server: Option<HostAddr>,
    /// Why the session ended, once it has.
    pub(crate) terminal: Option<Error>,
}

fn now() -> std::time::Instant {
    // tokio's clock, so paused-time tests control it.
    TokioInstant::now().into_std()
}

/// A request waiting for its reply.
#[derive(Debug)]
struct Waiter {
    tx: oneshot::Sender<Result<Bytes, Error>>,
    span: tracing::Span,
    /// The op (`None`: an addAuth) and when the driver took the request,
    /// for the request metrics.
    op: Option<crate::proto::codes::OpCode>,
    taken: std::time::Instant,
}

/// The requests waiting for replies, by id. Ids are handed out in
/// increasing order and replies mostly come in that order, so a queue
/// indexed from the oldest id does what a hash map would, without hashing:
/// an answered request leaves a hole until those before it are answered.
#[derive(Debug, Default)]
struct Waiters {
    /// The id of `slots[0]`.
    base: u64,
    slots: std::collections::VecDeque<Option<Waiter>>,
    len: usize,
}

impl Waiters {
    /// Adds the waiter of `id` (greater than every id added before).
    fn insert(&mut self, id: RequestId, w: Waiter) {
        if self.slots.is_empty() {
            self.base = id.0;
        }
        let Some(i) =
            id.0.checked_sub(self.base)
                .and_then(|i| usize::try_from(i).ok())
        else {
            debug_assert!(false, "request ids out of order");
            return;
        };
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        if self.slots[i].replace(w).is_none() {
            self.len += 1;
        }
    }

    /// Takes the waiter of `id`, if it is waiting.
    fn remove(&mut self, id: RequestId) -> Option<Waiter> {
        let i = usize::try_from(id.0.checked_sub(self.base)?).ok()?;
        let w = self.slots.get_mut(i)?.take()?;
        self.len -= 1;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(w)
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Takes every waiter.
    fn drain(&mut self) -> impl Iterator<Item = Waiter> + '_ {
        self.len = 0;
        self.slots.drain(..).flatten()
    }
}

pub(crate) struct Driver {
    session: Session,
    /// The time of the driver's last clock read: events a session call
    /// produced happened at it.
    clock: std::time::Instant,
    /// The request metrics' handles (nothing without the `metrics` feature).
    metrics: crate::observe::Registry,
    cmds: mpsc::UnboundedReceiver<Command>,
    state_tx: watch::Sender<SessionState>,
    info: Arc<Mutex<SessionInfo>>,
    replies: Waiters,
    watchers: HashMap<WatcherId, WatchSink>,
    subscribers: Vec<mpsc::UnboundedSender<SessionState>>,
    closers: Vec<oneshot::Sender<Result<(), Error>>>,
    connector: Arc<dyn Connect>,
    reader: Option<ReadHalf<BoxedIo>>,
    writer: Option<WriteHalf<BoxedIo>>,
    connecting: Option<ConnectFuture>,
    inbuf: BytesMut,
    outbuf: BytesMut,
    commands_open: bool,
    /// The external SASL mechanism's factory (GSSAPI), its mechanism for
    /// the current connection, and the step running on a blocking thread.
    sasl: Option<MechanismFactory>,
    sasl_mech: Option<Box<dyn ExternalMechanism>>,
    sasl_step: Option<tokio::task::JoinHandle<SaslStepDone>>,
    /// The host of the last established connection, and whether a session
    /// was ever established (to tell a connect from a reconnect or a
    /// failover in the metrics).
    last_host: Option<String>,
    had_session: bool,
}

/// A finished external SASL step: the generation, the mechanism (to keep
/// for the next step) and its result.
type SaslStepDone = (
    u64,
    Option<Box<dyn ExternalMechanism>>,
    Result<Option<Vec<u8>>, String>,
);

impl Driver {
    pub(crate) fn new(
        session: Session,
        cmds: mpsc::UnboundedReceiver<Command>,
        state_tx: watch::Sender<SessionState>,
        info: Arc<Mutex<SessionInfo>>,
        connector: Arc<dyn Connect>,
        sasl: Option<MechanismFactory>,
    ) -> Self {
        Self {
            session,
            clock: now(),
            metrics: crate::observe::Registry::new(),
            cmds,
            state_tx,
            info,
            replies: Waiters::default(),
            watchers: HashMap::new(),
            subscribers: Vec::new(),
            closers: Vec::new(),
            connector,
            reader: None,
            writer: None,
            connecting: None,
            inbuf: BytesMut::with_capacity(64 * 1024),
            outbuf: BytesMut::with_capacity(64 * 1024),
            commands_open: true,
            sasl,
            sasl_mech: None,
            sasl_step: None,
            last_host: None,
            had_session: false,
        }
    }

    pub(crate) async fn run(mut self) {
        // One timer for the whole session, re-armed lazily: moved earlier at
        // once, but left alone when the deadline moves later (the ping
        // deadline moves with every write); an early wake-up just finds
        // nothing due and re-arms (quinn's `drive_timer`).
        let timer = tokio::time::sleep_until(TokioInstant::now());
        tokio::pin!(timer);
        let mut armed: Option<std::time::Instant> = None;
        loop {
            self.process_events();
            if self.session.is_terminal() {
                // Flush nothing more: the session is over.
                break;
            }
            let t = self.tick();
            self.session.poll_transmit(t, &mut self.outbuf);
            match self.session.poll_timeout() {
                Some(d) if armed.is_none_or(|a| d < a) => {
                    timer.as_mut().reset(TokioInstant::from_std(d));
                    armed = Some(d);
                }
                Some(_) => {}
                None => armed = None,
            }
            let can_write = self.writer.is_some() && !self.outbuf.is_empty();
            tokio::select! {
                biased;
                r = read_some(&mut self.reader, &mut self.inbuf), if self.reader.is_some() => {
                    self.on_read(r);
                }
                r = write_some(&mut self.writer, &mut self.outbuf), if can_write => {
                    if let Ok(n) = r {
                        self.metrics.bytes(0, n);
                    }
                    if let Err(e) = r {
                        debug!(error = %e, "write failed");
                        crate::observe::disconnected("write_error");
                        self.drop_transport();
                        let t = self.tick();
                        self.session.handle_disconnected(t);
                    }
                }
                r = poll_connect(&mut self.connecting), if self.connecting.is_some() => {
                    self.connecting = None;
                    match r {
                        Ok(stream) => {
                            let (r, w) = tokio::io::split(stream);
                            self.reader = Some(r);
                            self.writer = Some(w);
                            let t = self.tick();
                            self.session.handle_connected(t);
                        }
                        Err(e) => {
                            debug!(error = %e, "connect failed");
                            crate::observe::connect_failed();
                            let t = self.tick();
                            self.session.handle_connect_failed(t, &e.to_string());
                        }
                    }
                }
                cmd = self.cmds.recv(), if self.commands_open => {
                    match cmd {
                        Some(cmd) => {
                            // One clock read for the batch.
                            let t = self.tick();
                            self.handle_command(t, cmd);
                            // Batch whatever else is queued so pipelined
                            // requests share one write.
                            for _ in 0..1024 {
                                match self.cmds.try_recv() {
                                    Ok(cmd) => self.handle_command(t, cmd),
                                    Err(_) => break,
                                }
                            }
                        }
                        None => {
                            // Every Client handle is gone: close the session.
                            self.commands_open = false;
                            let t = self.tick();
                            self.session.close(t);
                        }
                    }
                }
                r = poll_sasl(&mut self.sasl_step), if self.sasl_step.is_some() => {
                    self.sasl_step = None;
                    let (generation, mech, result) = match r {
                        Ok(done) => done,
                        Err(e) => (0, None, Err(format!("SASL step panicked: {e}"))),
                    };
                    self.sasl_mech = mech;
                    let t = self.tick();
                    self.session.handle_sasl_step(t, generation, result);
                }
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    let t = self.tick();
                    self.session.handle_timeout(t);
                }
            }
        }
        // Terminal: fail whatever is still waiting.
        let err = self.session.terminal_error().unwrap_or(Error::Closed);
        for w in self.replies.drain() {
            let result = Err(err.clone());
            if let Some(op) = w.op {
                self.metrics.reply(
                    op,
                    self.clock.saturating_duration_since(w.taken),
                    &result,
                    true,
                );
            }
            let _ = w.tx.send(result);
        }
        self.metrics.in_flight(0);
        for tx in self.closers.drain(..) {
            let _ = tx.send(Ok(()));
        }
        self.watchers.clear();
        self.subscribers.clear();
        // Late commands: answer them until every handle is gone.
        while let Some(cmd) = self.cmds.recv().await {
            match cmd {
                Command::Submit { reply, .. } | Command::AddAuth { reply, .. } => {
                    let _ = reply.send(Err(err.clone()));
                }
                Command::Close(tx) => {
                    let _ = tx.send(Ok(()));
                }
                Command::Subscribe(tx) => {
                    let _ = tx.send(*self.state_tx.borrow());
                }
                Command::Unwatch(_) => {}
            }
        }
    }

    /// Bytes read (or the connection lost): into the session.
    fn on_read(&mut self, r: io::Result<usize>) {
        match r {
            Ok(0) | Err(_) => {
                if let Err(e) = &r {
                    debug!(error = %e, "read failed");
                }
                crate::observe::disconnected(if r.is_ok() { "eof" } else { "read_error" });
                self.drop_transport();
                let t = self.tick();
                self.session.handle_disconnected(t);
            }
            Ok(n) => {
                self.metrics.bytes(n, 0);
                let t = self.tick();
                self.session.handle_data(t, &self.inbuf);
                self.inbuf.clear();
            }
        }
    }

    /// Reads the clock (tokio's, so paused-time tests control it).
    fn tick(&mut self) -> std::time::Instant {
        self.clock = now();
        self.clock
    }

    fn handle_command(&mut self, t: std::time::Instant, cmd: Command) {
        match cmd {
            Command::Submit {
                req,
                reply,
                watcher,
                span,
            } => {
                if let Some((id, sink)) = watcher {
                    self.watchers.insert(id, sink);
                }
                if let Some(crate::session::WatchAction::Register { kind, .. }) = &req.watch {
                    self.metrics.watch_registered(*kind);
                }
                let op = req.op;
                let id = self.session.submit(t, req);
                self.replies.insert(
                    id,
                    Waiter {
                        tx: reply,
                        span,
                        op: Some(op),
                        taken: t,
                    },
                );
            }
            Command::AddAuth {
                scheme,
                auth,
                reply,
            } => {
                let id = self.session.add_auth(t, scheme, auth);
                self.replies.insert(
                    id,
                    Waiter {
                        tx: reply,
                        span: tracing::Span::none(),
                        op: None,
                        taken: t,
                    },
                );
            }
            Command::Unwatch(id) => {
                self.watchers.remove(&id);
                self.session.unwatch(t, id);
            }
            Command::Subscribe(tx) => {
                if tx.send(self.session.state()).is_ok() {
                    self.subscribers.push(tx);
                }
            }
            Command::Close(tx) => {
                self.closers.push(tx);
                self.session.close(t);
            }
        }
    }

    /// Runs one external SASL step on a blocking thread (a mechanism may
    /// wait on its KDC); the result comes back through `poll_sasl`.
    fn start_sasl_step(&mut self, generation: u64, input: SaslInput) {
        let Some(factory) = self.sasl.clone() else {
            let t = self.tick();
            self.session.handle_sasl_step(
                t,
                generation,
                Err("no SASL mechanism configured".into()),
            );
            return;
        };
        // A new exchange gets a new mechanism; a step of the current one
        // continues it.
        let mech = match &input {
            SaslInput::Start(_) => None,
            SaslInput::Token(_) => self.sasl_mech.take(),
        };
        // A step of an older connection still running is left to finish
        // and its result dropped (the session would ignore it anyway).
        self.sasl_step = Some(tokio::task::spawn_blocking(move || {
            let (mech, token) = match (mech, input) {
                (_, SaslInput::Start(host)) => (factory(&host), None),
                (Some(m), SaslInput::Token(t)) => (Ok(m), Some(t)),
                (None, SaslInput::Token(_)) => {
                    (Err("a SASL token without an exchange".into()), None)
                }
            };
            let mut mech = match mech {
                Ok(m) => m,
                Err(e) => return (generation, None, Err(e)),
            };
            let result = mech.step(token.as_deref());
            (generation, Some(mech), result)
        }));
    }

    fn drop_transport(&mut self) {
        self.reader = None;
        self.writer = None;
        self.connecting = None;
        self.inbuf.clear();
        self.outbuf.clear();
    }

    fn process_events(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Dial { host } => {
                    debug!(%host, "connecting");
                    crate::observe::dial();
                    self.drop_transport();
                    self.connecting = Some(self.connector.connect(&host));
                }
                Event::CloseTransport => {
                    if self.reader.is_some() || self.connecting.is_some() {
                        crate::observe::disconnected("closed_by_session");
                    }
                    self.drop_transport();
                }
                Event::Reply { id, xid, result } => {
                    if let Some(w) = self.replies.remove(id) {
                        if let (Some(xid), false) = (xid, w.span.is_disabled()) {
                            w.span.record("xid", xid);
                        }
                        let elapsed = self.clock.saturating_duration_since(w.taken);
                        match w.op {
                            Some(op) => {
                                // Only a live caller's reply is counted by
                                // its outcome; an abandoned one as `dropped`.
                                let delivered = !w.tx.is_closed();
                                self.metrics.reply(op, elapsed, &result, delivered);
                                let _ = w.tx.send(result);
                            }
                            None => {
                                let _ = w.tx.send(result);
                            }
                        }
                    }
                }
                Event::Watch { watchers, event } => {
                    for w in watchers {
                        self.deliver(w, &event);
                    }
                }
                Event::WatchAbandoned(w) => {
                    self.watchers.remove(&w);
                }
                Event::SaslStep { generation, input } => self.start_sasl_step(generation, input),
                Event::State(s) => {
                    trace!(?s, "state");
                    self.observe_state(s);
                    self.update_info();
                    self.state_tx.send_replace(s);
                    self.subscribers.retain(|tx| tx.send(s).is_ok());
                }
            }
        }
        self.metrics.in_flight(self.replies.len());
        self.update_info();
    }

    /// Metrics and events for a state change: a connect, a reconnect to the
    /// same host or a failover to another.
    fn observe_state(&mut self, s: SessionState) {
        let connected = matches!(s, SessionState::Connected | SessionState::ConnectedReadOnly);
        let name = match s {
            SessionState::Connecting => "connecting",
            SessionState::Connected => "connected",
            SessionState::ConnectedReadOnly => "connected_read_only",
            SessionState::Disconnected => "disconnected",
            SessionState::Expired => "expired",
            SessionState::AuthFailed => "auth_failed",
            SessionState::Closed => "closed",
        };
        crate::observe::state(name, connected);
        if connected {
            let host = self.session.connected_host().map(ToString::to_string);
            let kind = if !self.had_session {
                "connect"
            } else if host == self.last_host {
                "reconnect"
            } else {
                "failover"
            };
            crate::observe::connected(kind);
            if kind != "connect" {
                let (frames, paths) = self.session.last_watch_replay();
                crate::observe::watch_replay(frames, paths);
            }
            debug!(session = %self.session.session_id(), host = ?host, kind, "connected");
            self.had_session = true;
            self.last_host = host;
        }
    }

    fn deliver(&mut self, w: WatcherId, event: &WatchedEvent) {
        self.metrics.watch_event(event.event_type);
        let removed = matches!(
            event.event_type,
            EventType::PersistentWatchRemoved
                | EventType::DataWatchRemoved
                | EventType::ChildWatchRemoved
        );
        match self.watchers.get(&w) {
            Some(WatchSink::Persistent(tx)) => {
                let alive = tx.send(event.clone()).is_ok();
                if removed {
                    self.watchers.remove(&w);
                } else if !alive {
                    // Receiver gone without an Unwatch reaching us yet.
                    self.watchers.remove(&w);
                    self.session.unwatch(self.clock, w);
                }
            }
            Some(WatchSink::Oneshot(_)) => {
                if let Some(WatchSink::Oneshot(tx)) = self.watchers.remove(&w) {
                    let _ = tx.send(event.clone());
                }
            }
            None => {}
        }
    }

    fn update_info(&self) {
        let mut info = self.info.lock().unwrap_or_else(|e| e.into_inner());
        info.session_id = self.session.session_id();
        if info.password != self.session.session_password() {
            info.password = self.session.session_password().clone();
        }
        info.negotiated_timeout = self.session.negotiated_timeout();
        info.last_zxid = self.session.last_zxid();
        if info.server.as_ref() != self.session.connected_host() {
            info.server = self.session.connected_host().cloned();
        }
        if info.terminal.is_none() {
            info.terminal = self.session.terminal_error();
        }
    }
}

async fn read_some(
    reader: &mut Option<ReadHalf<BoxedIo>>,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    match reader {
        Some(r) => r.read_buf(buf).await,
        None => std::future::pending().await,
    }
}

async fn write_some(
    writer: &mut Option<WriteHalf<BoxedIo>>,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    match writer {
        Some(w) => w.write_buf(buf).await,
        None => std::future::pending().await,
    }
}

async fn poll_sasl(
    step: &mut Option<tokio::task::JoinHandle<SaslStepDone>>,
) -> Result<SaslStepDone, tokio::task::JoinError> {
    match step {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

async fn poll_connect(c: &mut Option<ConnectFuture>) -> io::Result<BoxedIo> {
    match c {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod waiters_tests {
    use super::*;

    fn waiter() -> (Waiter, oneshot::Receiver<Result<Bytes, Error>>) {
        let (tx, rx) = oneshot::channel();
        let w = Waiter {
            tx,
            span: tracing::Span::none(),
            op: None,
            taken: now(),
        };
        (w, rx)
    }

    #[test]
    fn replies_in_any_order_find_their_waiters() {
        let mut ws = Waiters::default();
        let mut rxs = Vec::new();
        for id in 10..15 {
            let (w, rx) = waiter();
            ws.insert(RequestId(id), w);
            rxs.push(rx);
        }
        assert_eq!(ws.len(), 5);
        // Out of order, then the oldest: the queue shrinks past the holes.
        assert!(ws.remove(RequestId(12)).is_some());
        assert!(ws.remove(RequestId(12)).is_none(), "answered once");
        assert!(ws.remove(RequestId(10)).is_some());
        assert!(ws.remove(RequestId(11)).is_some());
        assert_eq!((ws.len(), ws.base, ws.slots.len()), (2, 13, 2));
        assert!(ws.remove(RequestId(9)).is_none(), "before the oldest");
        assert!(ws.remove(RequestId(99)).is_none(), "never added");
        // A gap in the ids (a request answered before it was added).
        let (w, _rx) = waiter();
        ws.insert(RequestId(17), w);
        assert_eq!(ws.len(), 3);
        let left: Vec<_> = ws.drain().collect();
        assert_eq!(left.len(), 3);
        assert_eq!(ws.len(), 0);
        // Empty again: the next id starts the queue afresh.
        let (w, _rx) = waiter();
        ws.insert(RequestId(40), w);
        assert!(ws.remove(RequestId(40)).is_some());
        assert!(ws.slots.is_empty());
    }
}
