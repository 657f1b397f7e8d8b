//! ZooKeeper's wire protocol: jute records, framing, codes, path rules and
//! the `digest` ACL scheme.
//!
//! This crate is the boundary between the `zkit` client and `zkit-server`:
//! both depend on it and on nothing of each other. It is sans-IO (no runtime,
//! no sockets, no clocks). Decoding untrusted bytes never panics: every
//! failure is a [`DecodeError`] or a [`FrameError`].
//!
//! Records mirror `zookeeper-jute/src/main/resources/zookeeper.jute` field by
//! field; their wire layout is documented in the project's PROTOCOL.md §4.5.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use zkit_proto::{decode_exact, Encode, PathWatchRequest};
//!
//! let req = PathWatchRequest { path: "/app".into(), watch: false };
//! let mut buf = BytesMut::new();
//! req.encode(&mut buf);
//! let back: PathWatchRequest = decode_exact(buf.freeze()).unwrap();
//! assert_eq!(back.path, "/app");
//! # let _ = Bytes::new();
//! ```

mod acl;
pub mod codes;
mod digest;
pub mod frame;
pub mod jute;
mod path;
mod records;
pub mod sasl;

pub use acl::Perms;
pub use digest::{digest_id, generate_digest};
pub use frame::{decode_frame, encode_frame, FrameError};
pub use jute::{DecodeError, DecodeResult};
pub use path::{is_ancestor, parent, validate_path, PathError};
pub use records::*;

use bytes::{Bytes, BytesMut};

/// ZooKeeper's default `jute.maxbuffer` (0xfffff = 1,048,575 bytes): the
/// largest request frame a default server accepts before closing the
/// connection with "Len error".
pub const DEFAULT_JUTE_MAXBUFFER: usize = 0xfffff;

/// A record that can be written in jute encoding.
pub trait Encode {
    /// Appends the record's encoding to `buf`.
    fn encode(&self, buf: &mut BytesMut);
}

/// A record that can be read from jute encoding.
pub trait Decode: Sized {
    /// Reads one record from the front of `buf`, advancing it.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if `buf` ends early, [`DecodeError::Invalid`]
    /// if the bytes cannot be this record.
    fn decode(buf: &mut Bytes) -> DecodeResult<Self>;
}

/// Decodes a whole record from `buf` and fails if bytes are left over.
///
/// # Errors
/// Any [`DecodeError`] of the record, or [`DecodeError::Invalid`] for trailing bytes.
pub fn decode_exact<T: Decode>(mut buf: Bytes) -> DecodeResult<T> {
    let v = T::decode(&mut buf)?;
    if buf.is_empty() {
        Ok(v)
    } else {
        Err(DecodeError::Invalid(format!(
            "{} trailing bytes after record",
            buf.len()
        )))
    }
}

#[cfg(test)]
mod tests;
