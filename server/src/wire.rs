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
    encode_frame(&mut buf, |b| {
        hdr.encode(b);
        if let Some(body) = body {
            body.encode(b);
        }
    });
    buf.freeze()
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
