//! Frames the server writes: replies, notifications, bare records.

use bytes::{Bytes, BytesMut};
use zkit_proto::codes::keeper_state;
use zkit_proto::{encode_frame, Encode, ReplyHeader, WatcherEvent};

/// Room most frames fit in (a length, a reply header and a Stat take 100
/// bytes): one allocation instead of a growth from empty per frame.
const FRAME_CAPACITY: usize = 128;

/// A whole frame: reply header plus an optional body.
pub(crate) fn reply_frame(hdr: ReplyHeader, body: Option<&dyn Encode>) -> Bytes {
    let mut buf = BytesMut::with_capacity(FRAME_CAPACITY);
    encode_reply(&mut buf, &hdr, body);
    buf.freeze()
}

/// Appends a reply frame (header plus optional body) to `buf`.
fn encode_reply(buf: &mut BytesMut, hdr: &ReplyHeader, body: Option<&dyn Encode>) {
    encode_frame(buf, |b| {
        hdr.encode(b);
        if let Some(body) = body {
            body.encode(b);
        }
    });
}

/// Bytes a connection's reply chunk is allocated with (see [`reply_in`]).
const ARENA_CHUNK: usize = 4 * 1024;

/// A reply frame encoded at the end of `arena` and split off it: replies
/// share one allocation per [`ARENA_CHUNK`] instead of taking one (two, with
/// the shared header `Bytes` adds) each. A chunk is reused once every frame
/// cut from it is gone, else a fresh one is taken; a large reply grows the
/// chunk to its size, and leaves with it.
pub(crate) fn reply_in(arena: &mut BytesMut, hdr: ReplyHeader, body: Option<&dyn Encode>) -> Bytes {
    if arena.capacity() < FRAME_CAPACITY {
        arena.reserve(ARENA_CHUNK);
    }
    encode_reply(arena, &hdr, body);
    arena.split().freeze()
}

/// A notification frame: `(-1, zxid, 0)` + WatcherEvent (zxid -1 on 3.8
/// and for SetWatches events).
pub(crate) fn notification(ev: &WatcherEvent, zxid: i64) -> Bytes {
    let ev = WatcherEvent {
        event_type: ev.event_type,
        state: keeper_state::SYNC_CONNECTED,
        path: ev.path.clone(),
    };
    reply_frame(
        ReplyHeader {
            xid: -1,
            zxid,
            err: 0,
        },
        Some(&ev),
    )
}

/// A frame holding one record and nothing else (the ConnectResponse).
pub(crate) fn record_frame(rec: &dyn Encode) -> Bytes {
    let mut buf = BytesMut::with_capacity(FRAME_CAPACITY);
    encode_frame(&mut buf, |b| rec.encode(b));
    buf.freeze()
}
