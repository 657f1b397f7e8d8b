//! Feeds the input to `decode_frame` in chunks, as a socket would.
//!
//! The first two bytes pick the frame limit and the chunk size. Invariants: no
//! panic; a frame is never longer than the limit and is exactly the bytes after
//! its prefix; `Ok(None)` and errors consume nothing; an error is final and
//! matches the prefix; the frames found do not depend on the chunking.
//!
//! `cargo +nightly fuzz run decode_frame`

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use zkit::proto::{decode_frame, FrameError, DEFAULT_JUTE_MAXBUFFER};

/// Drains `buf`; returns the frames and the error that stopped it, if any.
fn drain(buf: &mut BytesMut, max: usize) -> (Vec<Bytes>, Option<FrameError>) {
    let mut frames = Vec::new();
    loop {
        let before = buf.clone();
        match decode_frame(buf, max) {
            Ok(Some(f)) => {
                let len = u32::from_be_bytes([before[0], before[1], before[2], before[3]]) as usize;
                assert!(len <= max && f.len() == len);
                assert_eq!(&f[..], &before[4..4 + len]);
                assert_eq!(&buf[..], &before[4 + len..]);
                frames.push(f);
            }
            Ok(None) => {
                assert_eq!(&buf[..], &before[..]);
                return (frames, None);
            }
            Err(e) => {
                assert_eq!(&buf[..], &before[..]);
                let p = i32::from_be_bytes([before[0], before[1], before[2], before[3]]);
                match e {
                    FrameError::NegativeLength(n) => assert!(n == p && n < 0),
                    FrameError::TooLarge { len, max: m } => {
                        assert!(m == max && len > max && len as i64 == i64::from(p));
                    }
                    _ => {}
                }
                return (frames, Some(e));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [m, c, stream @ ..] = data else {
        return;
    };
    let max = match m % 4 {
        0 => usize::from(*m / 4),
        1 => usize::from(*m) * 64,
        2 => DEFAULT_JUTE_MAXBUFFER,
        _ => usize::from(*m) << 12,
    };
    let chunk = usize::from(*c).max(1);

    // All at once.
    let mut whole = BytesMut::from(stream);
    let (all, all_err) = drain(&mut whole, max);

    // In chunks: the same frames, and the same error.
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut err = None;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        let (frames, e) = drain(&mut buf, max);
        got.extend(frames);
        if e.is_some() {
            err = e;
            break;
        }
    }
    assert_eq!(got, all);
    assert_eq!(err, all_err);
    if err.is_none() {
        assert_eq!(buf, whole);
    }
});
