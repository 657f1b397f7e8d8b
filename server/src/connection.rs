//! One client connection: framing, handshake (or a four-letter word), then
//! requests until EOF, an error or a close order.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use zkit_proto::{decode_frame, ConnectRequest, ConnectResponse, Decode};

use crate::acl::AuthInfo;
use crate::clock::Reading;
use crate::dispatch::{self, Flow};
use crate::persist::RecordKind;
use crate::sessions::generate_password;
use crate::state::{Conn, ConnHandle, ConnStats, Out, Shared};
use crate::watches::ConnId;
use crate::wire::record_frame;

/// Frames waiting to be written beyond which a connection stops reading
/// requests.
const MAX_QUEUED_FRAMES: usize = 4096;

/// The smallest and the largest room a connection's reads are given.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 16 * 1024;
/// The most bytes of frames written in one system call (unless one frame is
/// larger): the write buffer a connection keeps stays this small.
const WRITE_KEEP: usize = 16 * 1024;

/// The room for the next read, after a read of `n` bytes into `room`: twice
/// as much when it filled it, half when it used under a quarter. A client
/// with a thousand requests in flight is then read 16 KiB per system call
/// instead of 4 KiB (its system time per request fell by about half), and an idle one
/// keeps a small buffer. Not more: the replies to a read's requests leave
/// after all of them are applied, and with 64 KiB the client sat idle
/// meanwhile (fewer requests per second for less CPU).
fn next_read_size(size: usize, n: usize, room: usize) -> usize {
    if n >= room {
        (size * 2).min(READ_MAX)
    } else if n < size / 4 {
        (size / 2).max(READ_MIN)
    } else {
        size
    }
}

/// Bytes waiting to be written beyond which a connection stops reading
/// requests.
const PAUSE_READING_BYTES: usize = 4 << 20;

/// Watches of a closed connection freed per hold of the state lock.
const REAP_SLICE: usize = 4096;

/// Bytes waiting to be written beyond which a connection is closed (a
/// client that never reads while its watches keep firing).
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// Serves one connection until it ends. Never panics on client input.
/// `auth` holds the ids the transport established (the peer's `ip`, and
/// `x509` for a verified client certificate).
pub(crate) async fn serve<IO>(
    mut io: IO,
    peer: SocketAddr,
    auth: AuthInfo,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let mut buf = BytesMut::with_capacity(READ_MIN);
    // How much room a read is given: grows while reads fill it (a client
    // pipelining many requests), shrinks back when they do not.
    let mut read_size = READ_MIN;
    let mut conn: Option<Conn> = None;
    let mut closing = false;
    // Frames wait here until the zxid they depend on is durable (always at
    // once for an in-memory server); they leave in order.
    let mut queue: VecDeque<Out> = VecDeque::new();
    let mut queued_bytes = 0usize;
    let mut durable = shared.durable.clone();
    // ZooKeeper closes a connection that has not completed its handshake
    // after `zookeeper.nio.sessionlessCnxnTimeout` (10 s by default).
    let handshake_deadline = tokio::time::Instant::now() + shared.settings.handshake_timeout;
    // Requests awaiting their reply, oldest first, for the latency metrics
    // (ZooKeeper's `readlatency`/`updatelatency`): replies leave in request
    // order; notifications (xid -1) and the ConnectResponse are not replies.
    let stats = Arc::new(ConnStats::new(shared.clock.wall_ms().max(0) as u64));
    let mut pending = Pending::new(stats.clone());
    // The batch being written, reused (its capacity kept) from batch to batch.
    let mut wbuf = BytesMut::with_capacity(WRITE_KEEP);
    'outer: loop {
        if !queue.is_empty() {
            let released = durable
                .as_mut()
                .map_or(i64::MAX, |d| *d.borrow_and_update());
            wbuf.clear();
            let mut close = false;
            // More frames to write after this batch (which is kept under
            // WRITE_KEEP bytes unless one frame is larger).
            let mut more = false;
            // One clock read for the batch's replies.
            let now = shared.clock.read();
            while let Some(out) = queue.front() {
                match out {
                    Out::Frame(_, after) if *after > released => break,
                    Out::Frame(f, _) if !wbuf.is_empty() && wbuf.len() + f.len() > WRITE_KEEP => {
                        more = true;
                        break;
                    }
                    Out::Frame(f, _) => {
                        shared.sent.fetch_add(1, Ordering::Relaxed);
                        stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                        pending.replied(f, &shared, &now);
                        queued_bytes -= f.len();
                        wbuf.extend_from_slice(f);
                    }
                    Out::Close => close = true,
                }
                queue.pop_front();
                if close {
                    break;
                }
            }
            if !wbuf.is_empty() {
                // A client that stops reading blocks only its own task, and
                // never a shutdown.
                let written = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = async {
                        io.write_all(&wbuf).await?;
                        io.flush().await
                    } => r,
                };
                if written.is_err() {
                    break;
                }
                if wbuf.capacity() > WRITE_KEEP {
                    // A frame larger than a batch went out: give its memory
                    // back.
                    wbuf = BytesMut::with_capacity(WRITE_KEEP);
                }
            }
            if close {
                break;
            }
            if more {
                continue;
            }
        }
        if queued_bytes > MAX_QUEUED_BYTES {
            // Only notifications can pile up like this (requests stop being
            // read, below): a watcher that does not read its socket.
            tracing::warn!(%peer, queued_bytes, "client does not read its replies and notifications, closing");
            break;
        }
        let blocked = !queue.is_empty();
        // Back-pressure: no new requests while many replies wait (for the
        // log, or for the client to read them).
        let readable =
            !closing && queue.len() < MAX_QUEUED_FRAMES && queued_bytes < PAUSE_READING_BYTES;
        if readable && buf.capacity() - buf.len() < read_size / 2 {
            buf.reserve(read_size);
        }
        let room = buf.capacity() - buf.len();
        tokio::select! {
            _ = cancel.cancelled() => break,
            () = tokio::time::sleep_until(handshake_deadline), if conn.is_none() && !closing => {
                tracing::warn!(%peer, "no complete handshake in {:?}, closing", shared.settings.handshake_timeout);
                break;
            }
            out = rx.recv() => {
                let Some(out) = out else { break };
                let mut push = |out: Out| {
                    if let Out::Frame(f, _) = &out {
                        queued_bytes += f.len();
                    }
                    queue.push_back(out);
                };
                push(out);
                while let Ok(out) = rx.try_recv() {
                    push(out);
                }
            }
            changed = durable_changed(&mut durable), if blocked => {
                if changed.is_err() {
                    // The log writer is gone: nothing more becomes durable.
                    break;
                }
            }
            n = io.read_buf(&mut buf), if readable => {
                let n = match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                read_size = next_read_size(read_size, n, room);
                let arrival = shared.clock.read();
                // Process every complete frame in the buffer.
                loop {
                    if conn.is_none() && buf.len() >= 4 {
                        // The word, and what came with it (`stmk`'s mask).
                        if let Some(answer) = crate::fourlw::answer(&buf, &shared) {
                            let _ = io.write_all(answer.as_bytes()).await;
                            let _ = io.flush().await;
                            break 'outer;
                        }
                    }
                    let frame = match decode_frame(&mut buf, shared.settings.max_frame) {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "Len error, closing connection");
                            break 'outer;
                        }
                    };
                    shared.received.fetch_add(1, Ordering::Relaxed);
                    stats.packets_received.fetch_add(1, Ordering::Relaxed);
                    match conn.as_mut() {
                        None => match handshake(frame, peer, &auth, &shared, &tx, &stats) {
                            Some(c) => {
                                pending.skip_connect_response = true;
                                conn = Some(c);
                            }
                            None => {
                                closing = true;
                                break;
                            }
                        },
                        Some(c) => {
                            pending.requested(&frame, arrival.at);
                            if dispatch::handle(c, frame, &shared, &arrival) == Flow::Close {
                                closing = true;
                                let _ = tx.send(Out::Close);
                                break;
                            }
                        }
                    }
                }
                if read_size == READ_MIN && room > 2 * READ_MIN && buf.is_empty() {
                    // Back to small reads, every frame handled: the buffer
                    // shrinks with them.
                    buf = BytesMut::with_capacity(READ_MIN);
                }
            }
        }
    }
    if let Some(c) = conn {
        {
            let mut st = shared.lock();
            st.watches.drop_connection(c.id);
            st.conns.remove(&c.id);
            if st.session_conn.get(&c.session) == Some(&c.id) {
                st.session_conn.remove(&c.session);
            }
        }
        // Its watches are freed a slice at a time, the lock released in
        // between: a million of them do not stall everyone else. The pause
        // between slices is what lets the others in: the lock is not fair,
        // and a task that only yielded would take it back before a thread
        // woken to wait for it runs (a reader saw 0.6 s stalls so).
        while !shared.lock().watches.reap(REAP_SLICE) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let _ = io.shutdown().await;
    // Lingering close: a socket closed with unread input is reset, and the
    // reset can destroy our last frames (an AuthFailed reply, say) before
    // the client reads them. Read and drop what the client still sends until
    // it closes too, for a moment.
    if !cancel.is_cancelled() {
        let mut sink = [0u8; 4096];
        let linger = async {
            let mut total = 0usize;
            while let Ok(n) = io.read(&mut sink).await {
                if n == 0 || total > (1 << 20) {
                    break;
                }
                total += n;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), linger).await;
    }
}

/// Handles the ConnectRequest. `None`: a reply (if any) and a close are
/// queued.
fn handshake(
    frame: Bytes,
    peer: SocketAddr,
    auth: &AuthInfo,
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Out>,
    stats: &Arc<ConnStats>,
) -> Option<Conn> {
    let mut body = frame;
    let req = match ConnectRequest::decode(&mut body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "bad ConnectRequest, closing");
            let _ = tx.send(Out::Close);
            return None;
        }
    };
    let read_only = req.read_only.map(|_| false);
    let mut st = shared.lock();
    if req.last_zxid_seen > st.zxid {
        if req.session_id != 0 && st.sessions.timeout(req.session_id).is_none() {
            // ZooKeeper closes the connection of a client ahead of it, so
            // that the client tries a server that has caught up. A single
            // server never catches up with a history it lost (an in-memory
            // server restarted), and it does not know the session: answer
            // as ZooKeeper answers an unknown session, at once, instead of
            // leaving the client to its own expiry timer.
            tracing::info!(
                %peer,
                session = format_args!("{:#x}", req.session_id),
                "unknown session from a client ahead of this server (zxid {:#x} > {:#x}): expired",
                req.last_zxid_seen,
                st.zxid
            );
            let _ = tx.send(Out::Frame(record_frame(&expired(read_only)), st.gate()));
            let _ = tx.send(Out::Close);
            return None;
        }
        tracing::info!(
            %peer,
            "client has seen zxid {:#x}, server only {:#x}; closing",
            req.last_zxid_seen,
            st.zxid
        );
        let _ = tx.send(Out::Close);
        return None;
    }
    let timeout = st.sessions.negotiate(req.timeout);
    let now = shared.clock.monotonic_ms();
    let session = if req.session_id == 0 {
        let id = st.sessions.create_session(timeout, now);
        st.next_zxid();
        st.log(
            shared.clock.wall_ms(),
            id,
            RecordKind::CreateSession { timeout },
        );
        shared.session_added.notify_one();
        id
    } else {
        // One connection per session: ZooKeeper closes the old one *before*
        // checking the password (`processConnectRequest`).
        if let Some(old) = st.session_conn.remove(&req.session_id) {
            if let Some(h) = st.conns.get(&old) {
                let _ = h.tx.send(Out::Close);
            }
        }
        if !st
            .sessions
            .reopen(req.session_id, &req.passwd, timeout, now)
        {
            let _ = tx.send(Out::Frame(record_frame(&expired(read_only)), st.gate()));
            let _ = tx.send(Out::Close);
            return None;
        }
        shared.session_added.notify_one();
        req.session_id
    };
    let id = ConnId(st.next_conn);
    st.next_conn += 1;
    st.conns.insert(
        id,
        ConnHandle {
            tx: tx.clone(),
            session,
            peer,
            stats: stats.clone(),
        },
    );
    st.session_conn.insert(session, id);
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout,
        session_id: session,
        passwd: Bytes::copy_from_slice(&generate_password(session)),
        read_only,
    };
    // Queued under the lock: a handshake for the same session on another
    // connection (which closes this one) must find the response queued
    // before its close order, or this client would see the connection
    // close with no answer.
    let _ = tx.send(Out::Frame(record_frame(&resp), st.gate()));
    drop(st);
    Some(Conn {
        id,
        session,
        auth: auth.clone(),
        tx: tx.clone(),
        sasl: crate::sasl::SaslServer::Start,
        frames: bytes::BytesMut::new(),
    })
}

/// ZooKeeper's answer to a session it does not know: timeout 0, id 0, a
/// zeroed password.
fn expired(read_only: Option<bool>) -> ConnectResponse {
    ConnectResponse {
        protocol_version: 0,
        timeout: 0,
        session_id: 0,
        passwd: Bytes::from_static(&[0u8; 16]),
        read_only,
    }
}

/// Waits for the durable zxid to move (never, for an in-memory server).
async fn durable_changed(
    durable: &mut Option<watch::Receiver<i64>>,
) -> Result<(), watch::error::RecvError> {
    match durable {
        Some(d) => d.changed().await,
        None => std::future::pending().await,
    }
}

/// A connection's requests still awaiting their reply, oldest first: their
/// receive times for the latency metrics (ZooKeeper's `readlatency` /
/// `updatelatency`) and the connection's statistics. Replies leave in
/// request order; notifications (xid -1) are not replies.
#[derive(Debug)]
struct Pending {
    /// The next non-notification frame is the ConnectResponse.
    skip_connect_response: bool,
    /// `(received, writes a transaction, op's short name)`, oldest first.
    queue: VecDeque<(std::time::Instant, bool, [u8; 4])>,
    stats: Arc<ConnStats>,
}

impl Pending {
    /// Requests beyond which receive times are not kept (a client whose
    /// requests get no reply must not grow this without bound).
    const MAX: usize = 65_536;

    fn new(stats: Arc<ConnStats>) -> Self {
        Self {
            skip_connect_response: false,
            queue: VecDeque::new(),
            stats,
        }
    }

    /// A request (its frame: header, then body) was received.
    fn requested(&mut self, frame: &[u8], at: std::time::Instant) {
        self.stats.outstanding.fetch_add(1, Ordering::Relaxed);
        if self.queue.len() >= Self::MAX {
            return;
        }
        let op = frame
            .get(4..8)
            .map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        self.queue.push_back((at, is_write_op(op), short_name(op)));
    }

    /// A frame (length prefix included) is being written: a reply records
    /// its request's latency.
    fn replied(&mut self, frame: &[u8], shared: &Shared, now: &Reading) {
        let xid = frame
            .get(4..8)
            .map_or(-1, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if xid == zkit_proto::codes::xid::NOTIFICATION {
            return;
        }
        if std::mem::take(&mut self.skip_connect_response) {
            // ZooKeeper's createSession: cxid 0, the zxid of the moment.
            let zxid = shared.lock().zxid;
            self.stats.replied(*b"SESS", 0, zxid, wall_ms(now), 0);
            return;
        }
        let _ = self
            .stats
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if let Some((at, write, op)) = self.queue.pop_front() {
            let elapsed = now.at.saturating_duration_since(at);
            let m = &shared.metrics;
            let summary = if write {
                &m.update_latency
            } else {
                &m.read_latency
            };
            summary.record(elapsed);
            let zxid = frame.get(8..16).map_or(-1, |b| {
                i64::from_be_bytes(b.try_into().unwrap_or([0xff; 8]))
            });
            let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            self.stats.replied(op, xid, zxid, wall_ms(now), ms);
        }
    }
}

/// A reading's wall clock as the connection statistics keep it.
fn wall_ms(now: &Reading) -> u64 {
    u64::try_from(now.wall_ms).unwrap_or(0)
}

/// ZooKeeper's short name of an op (`FinalRequestProcessor`'s `lastOp`).
fn short_name(op: i32) -> [u8; 4] {
    use zkit_proto::codes::OpCode;
    let name: &[u8; 4] = match OpCode::from_code(op) {
        Some(OpCode::Ping) => b"PING",
        Some(OpCode::Multi) => b"MULT",
        Some(OpCode::MultiRead) => b"MLTR",
        Some(OpCode::Create | OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl) => {
            b"CREA"
        }
        Some(OpCode::Delete | OpCode::DeleteContainer) => b"DELE",
        Some(OpCode::SetData) => b"SETD",
        Some(OpCode::Reconfig) => b"RECO",
        Some(OpCode::SetAcl) => b"SETA",
        Some(OpCode::CloseSession) => b"CLOS",
        Some(OpCode::Sync) => b"SYNC",
        Some(OpCode::Check) => b"CHEC",
        Some(OpCode::Exists) => b"EXIS",
        Some(OpCode::GetData) => b"GETD",
        Some(OpCode::SetWatches | OpCode::SetWatches2) => b"SETW",
        Some(OpCode::AddWatch) => b"ADDW",
        Some(OpCode::GetAcl) => b"GETA",
        Some(OpCode::GetChildren | OpCode::GetChildren2) => b"GETC",
        Some(OpCode::CheckWatches) => b"CHKW",
        Some(OpCode::RemoveWatches) => b"REMW",
        Some(OpCode::WhoAmI) => b"HOMI",
        Some(OpCode::GetEphemerals) => b"GETE",
        Some(OpCode::GetAllChildrenNumber) => b"GETN",
        Some(OpCode::Auth) => b"AUTH",
        Some(OpCode::Sasl) => b"SASL",
        _ => b"NA  ",
    };
    *name
}

/// Whether a request of this op code writes a transaction (ZooKeeper
/// counts its latency under `updatelatency`, the others under `readlatency`).
fn is_write_op(op: i32) -> bool {
    use zkit_proto::codes::OpCode;
    matches!(
        OpCode::from_code(op),
        Some(
            OpCode::Create
                | OpCode::Delete
                | OpCode::SetData
                | OpCode::SetAcl
                | OpCode::Multi
                | OpCode::Create2
                | OpCode::Reconfig
                | OpCode::CreateContainer
                | OpCode::DeleteContainer
                | OpCode::CreateTtl
                | OpCode::CloseSession
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_room_grows_with_full_reads_and_shrinks_with_small_ones() {
        let mut size = READ_MIN;
        // Reads that fill their room double it, up to the maximum.
        for _ in 0..10 {
            size = next_read_size(size, size, size);
        }
        assert_eq!(size, READ_MAX);
        // A read that filled most but not all of it keeps the size.
        assert_eq!(next_read_size(size, size / 2, size), size);
        // Small reads halve it, down to the minimum.
        for _ in 0..10 {
            size = next_read_size(size, 100, size);
        }
        assert_eq!(size, READ_MIN);
    }
}
