//! Jute primitive encoding (`BinaryOutputArchive` / `BinaryInputArchive`).
//!
//! Every read is bounds-checked: a short buffer is [`DecodeError::Truncated`], a
//! value that cannot be valid (negative length other than -1, bad UTF-8, a
//! boolean byte other than 0/1) is [`DecodeError::Invalid`]. Nothing here panics
//! on untrusted bytes.

use bytes::{Buf, BufMut, Bytes};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ended before the record did.
    #[error("truncated record: needed {needed} more bytes while reading {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// The bytes cannot be a valid record.
    #[error("invalid record: {0}")]
    Invalid(String),
}

impl DecodeError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
}

/// Result of a decoding step.
pub type DecodeResult<T> = Result<T, DecodeError>;

pub(crate) fn need(buf: &Bytes, n: usize, what: &'static str) -> DecodeResult<()> {
    if buf.remaining() < n {
        Err(DecodeError::Truncated {
            what,
            needed: n - buf.remaining(),
        })
    } else {
        Ok(())
    }
}

/// Reads a jute `int` (4 bytes, big endian).
pub fn read_i32(buf: &mut Bytes) -> DecodeResult<i32> {
    need(buf, 4, "int")?;
    Ok(buf.get_i32())
}

/// Reads a jute `long` (8 bytes, big endian).
pub fn read_i64(buf: &mut Bytes) -> DecodeResult<i64> {
    need(buf, 8, "long")?;
    Ok(buf.get_i64())
}

/// Reads a jute `boolean` (one byte, 0 or 1).
pub fn read_bool(buf: &mut Bytes) -> DecodeResult<bool> {
    need(buf, 1, "boolean")?;
    match buf.get_u8() {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(DecodeError::invalid(format!("boolean byte {b:#04x}"))),
    }
}

fn read_len(buf: &mut Bytes, what: &'static str) -> DecodeResult<Option<usize>> {
    let len = read_i32(buf)?;
    match len {
        -1 => Ok(None),
        n if n < 0 => Err(DecodeError::invalid(format!("negative {what} length {n}"))),
        n => Ok(Some(n as usize)),
    }
}

/// Reads a jute `buffer`: an int length (-1 = null) and that many bytes.
/// The returned slice shares the input's memory.
pub fn read_buffer(buf: &mut Bytes) -> DecodeResult<Option<Bytes>> {
    match read_len(buf, "buffer")? {
        None => Ok(None),
        Some(n) => {
            need(buf, n, "buffer bytes")?;
            Ok(Some(buf.split_to(n)))
        }
    }
}

/// Reads a jute `buffer`, mapping null to an empty buffer.
pub fn read_buffer_or_empty(buf: &mut Bytes) -> DecodeResult<Bytes> {
    Ok(read_buffer(buf)?.unwrap_or_default())
}

/// Reads a jute `ustring`: an int byte length (-1 = null) and UTF-8 bytes.
///
/// Java's `BinaryOutputArchive.writeString` encodes each UTF-16 unit on its
/// own, so a character outside the BMP arrives as a surrogate pair of two
/// 3-byte sequences (CESU-8; observed on 3.8.0 in whoAmI and getACL replies
/// for digest ids such as `u😀`). Such pairs are decoded to the character;
/// anything else that is not UTF-8 (including a lone surrogate) is
/// [`DecodeError::Invalid`]. Strings are always written as standard UTF-8,
/// which Java decodes to the same string.
pub fn read_ustring(buf: &mut Bytes) -> DecodeResult<Option<String>> {
    match read_len(buf, "ustring")? {
        None => Ok(None),
        Some(n) => {
            need(buf, n, "ustring bytes")?;
            // Read in place (no shared handle taken on the buffer and given
            // back), then stepped over.
            let s = decode_utf8_or_cesu8(&buf[..n])
                .ok_or_else(|| DecodeError::invalid("ustring is not valid UTF-8"))?;
            buf.advance(n);
            Ok(Some(s))
        }
    }
}

/// Decodes UTF-8 in which supplementary characters may also appear as
/// CESU-8 surrogate pairs (`ED A0..AF xx ED B0..BF xx`).
fn decode_utf8_or_cesu8(mut raw: &[u8]) -> Option<String> {
    if let Ok(s) = std::str::from_utf8(raw) {
        // Plain UTF-8, nearly every string: one exact allocation.
        return Some(s.to_owned());
    }
    let mut out = String::new();
    loop {
        match std::str::from_utf8(raw) {
            Ok(s) => {
                out.push_str(s);
                return Some(out);
            }
            Err(e) => {
                let (valid, rest) = raw.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).ok()?);
                let hi = surrogate(rest, 0xA0..=0xAF)?;
                let lo = surrogate(rest.get(3..)?, 0xB0..=0xBF)?;
                out.push(char::from_u32(
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00),
                )?);
                raw = &rest[6..];
            }
        }
    }
}

/// The UTF-16 unit of a 3-byte encoded surrogate (`ED`, `second`, continuation).
fn surrogate(b: &[u8], second: std::ops::RangeInclusive<u8>) -> Option<u32> {
    match *b {
        [0xED, b1, b2, ..] if second.contains(&b1) && (0x80..=0xBF).contains(&b2) => {
            Some(0xD000 | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F))
        }
        _ => None,
    }
}

/// Reads a jute `ustring`, mapping null to the empty string.
pub fn read_string(buf: &mut Bytes) -> DecodeResult<String> {
    Ok(read_ustring(buf)?.unwrap_or_default())
}

/// Reads a jute `vector<T>` (int count, -1 = null) with `item` for each element.
/// Null is returned as an empty vector. The count is checked against the bytes
/// left (every element takes at least `min_item_len` bytes), so a hostile count
/// cannot make us allocate.
pub fn read_vec<T>(
    buf: &mut Bytes,
    min_item_len: usize,
    mut item: impl FnMut(&mut Bytes) -> DecodeResult<T>,
) -> DecodeResult<Vec<T>> {
    let Some(n) = read_len(buf, "vector")? else {
        return Ok(Vec::new());
    };
    if n.saturating_mul(min_item_len.max(1)) > buf.remaining() {
        return Err(DecodeError::Truncated {
            what: "vector elements",
            needed: n.saturating_mul(min_item_len.max(1)) - buf.remaining(),
        });
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(item(buf)?);
    }
    Ok(out)
}

/// Reads a `vector<ustring>`.
pub fn read_string_vec(buf: &mut Bytes) -> DecodeResult<Vec<String>> {
    read_vec(buf, 4, read_string)
}

/// Writes a jute `int`.
pub fn write_i32(buf: &mut impl BufMut, v: i32) {
    buf.put_i32(v);
}

/// Writes a jute `long`.
pub fn write_i64(buf: &mut impl BufMut, v: i64) {
    buf.put_i64(v);
}

/// Writes a jute `boolean`.
pub fn write_bool(buf: &mut impl BufMut, v: bool) {
    buf.put_u8(u8::from(v));
}

/// Writes a jute `buffer` (never null).
pub fn write_buffer(buf: &mut impl BufMut, v: &[u8]) {
    buf.put_i32(len_i32(v.len()));
    buf.put_slice(v);
}

/// Writes a jute `ustring` (never null).
pub fn write_string(buf: &mut impl BufMut, v: &str) {
    write_buffer(buf, v.as_bytes());
}

/// Writes a `vector<ustring>`.
pub fn write_string_vec<S: AsRef<str>>(buf: &mut impl BufMut, v: &[S]) {
    buf.put_i32(len_i32(v.len()));
    for s in v {
        write_string(buf, s.as_ref());
    }
}

/// Encoded length of a `ustring` / `buffer` of `n` bytes.
pub const fn buffer_len(n: usize) -> usize {
    4 + n
}

/// Encoded length of a `vector<ustring>`.
pub fn string_vec_len<S: AsRef<str>>(v: &[S]) -> usize {
    4 + v
        .iter()
        .map(|s| buffer_len(s.as_ref().len()))
        .sum::<usize>()
}

fn len_i32(n: usize) -> i32 {
    // Lengths are bounded by the frame limit long before i32::MAX; saturate
    // rather than wrap so an impossible length is visible to the peer.
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn primitives_round_trip() {
        let mut b = BytesMut::new();
        write_i32(&mut b, -7);
        write_i64(&mut b, 1 << 40);
        write_bool(&mut b, true);
        write_buffer(&mut b, b"abc");
        write_string(&mut b, "/zk");
        write_string_vec(&mut b, &["a", "bc"]);
        let mut r = b.freeze();
        assert_eq!(read_i32(&mut r).unwrap(), -7);
        assert_eq!(read_i64(&mut r).unwrap(), 1 << 40);
        assert!(read_bool(&mut r).unwrap());
        assert_eq!(read_buffer(&mut r).unwrap().unwrap(), &b"abc"[..]);
        assert_eq!(read_string(&mut r).unwrap(), "/zk");
        assert_eq!(read_string_vec(&mut r).unwrap(), vec!["a", "bc"]);
        assert!(r.is_empty());
    }

    #[test]
    fn null_buffer_and_string() {
        let mut r = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(read_buffer(&mut r).unwrap(), None);
        assert_eq!(read_ustring(&mut r).unwrap(), None);
    }

    fn ustring(raw: &[u8]) -> DecodeResult<Option<String>> {
        let mut b = BytesMut::new();
        write_buffer(&mut b, raw);
        let mut r = b.freeze();
        let s = read_ustring(&mut r);
        assert!(s.is_err() || r.is_empty());
        s
    }

    #[test]
    fn cesu8_surrogate_pairs_are_decoded() {
        // U+1F600 as Java writes it (observed from 3.8.0), and as UTF-8.
        let cesu = b"u\xed\xa0\xbd\xed\xb8\x80\x00\xc3\xa9";
        assert_eq!(ustring(cesu).unwrap().unwrap(), "u\u{1F600}\0\u{e9}");
        assert_eq!(
            ustring("u\u{1F600}".as_bytes()).unwrap().unwrap(),
            "u\u{1F600}"
        );
        // Two pairs back to back, mixed with a UTF-8 four-byte char.
        let mixed = b"\xed\xa0\x80\xed\xb0\x80\xf0\x9f\x98\x80\xed\xaf\xbf\xed\xbf\xbf";
        assert_eq!(
            ustring(mixed).unwrap().unwrap(),
            "\u{10000}\u{1F600}\u{10FFFF}"
        );
    }

    #[test]
    fn malformed_utf8_is_invalid() {
        for raw in [
            &b"\xed\xa0\xbd"[..],        // lone high surrogate
            b"\xed\xb8\x80",             // lone low surrogate
            b"\xed\xb8\x80\xed\xa0\xbd", // low before high
            b"\xed\xa0\xbd\xed\xa0\xbd", // two highs
            b"\xed\xa0\xbdx",            // high then ASCII
            b"\xed\xa0\xbd\xed\xb8",     // pair cut short
            b"\xff",
            b"\xc0\x80", // modified UTF-8 NUL: not jute
            b"a\x80",
        ] {
            assert!(
                matches!(ustring(raw), Err(DecodeError::Invalid(_))),
                "{raw:02x?}"
            );
        }
    }

    #[test]
    fn hostile_lengths_are_errors() {
        let mut r = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 1, 2]);
        assert!(matches!(
            read_buffer(&mut r),
            Err(DecodeError::Truncated { .. })
        ));
        let mut r = Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]);
        assert!(matches!(read_buffer(&mut r), Err(DecodeError::Invalid(_))));
        let mut r = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(read_string_vec(&mut r).is_err());
        let mut r = Bytes::from_static(&[2]);
        assert!(read_bool(&mut r).is_err());
    }
}
