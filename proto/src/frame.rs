//! Length-prefixed framing: every message is an `int32` big-endian length and
//! that many bytes (`NIOServerCnxn.readLength`, `ClientCnxnSocket.readLength`).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A frame that cannot be accepted. The connection must be closed: the
/// stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is negative.
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    /// The length prefix exceeds the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
}

/// Splits one complete frame payload off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed (a normal condition, not an
/// error). A length above `max` is rejected as soon as the 4-byte prefix is
/// read, so a hostile length never makes us buffer or allocate.
///
/// # Errors
/// [`FrameError`] for a negative or oversized length.
pub fn decode_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 {
        return Err(FrameError::NegativeLength(len));
    }
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Appends one frame to `buf`: a length placeholder, whatever `body` writes,
/// then the patched length. Returns the payload length.
pub fn encode_frame(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) -> usize {
    let start = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = buf.len() - start - 4;
    let prefix = i32::try_from(len).unwrap_or(i32::MAX).to_be_bytes();
    buf[start..start + 4].copy_from_slice(&prefix);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_then_complete() {
        let mut out = BytesMut::new();
        encode_frame(&mut out, |b| b.put_slice(b"hello"));
        encode_frame(&mut out, |b| b.put_slice(b"!"));
        let all = out.freeze();
        let mut buf = BytesMut::new();
        for (i, byte) in all.iter().enumerate() {
            buf.put_u8(*byte);
            let f = decode_frame(&mut buf, 100).unwrap();
            if i == 8 {
                assert_eq!(f.unwrap(), &b"hello"[..]);
            } else if i == 13 {
                assert_eq!(f.unwrap(), &b"!"[..]);
            } else {
                assert!(f.is_none(), "byte {i}");
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_and_negative_rejected_from_prefix() {
        let mut buf = BytesMut::from(&[0x00, 0x10, 0x00, 0x00][..]);
        assert_eq!(
            decode_frame(&mut buf, 1024),
            Err(FrameError::TooLarge {
                len: 0x100000,
                max: 1024
            })
        );
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            decode_frame(&mut buf, 1024),
            Err(FrameError::NegativeLength(-1))
        );
    }
}
