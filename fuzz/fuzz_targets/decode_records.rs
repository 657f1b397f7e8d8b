//! Decodes the input as every jute record type.
//!
//! Invariants: no panic; a decoded value survives its own encoding, which is
//! never longer than the bytes it was read from (CESU-8 pairs shrink; null
//! strings and vectors read as empty); `decode_exact` agrees with `decode`.
//!
//! `cargo +nightly fuzz run decode_records`

#![no_main]

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use zkit::proto::*;

fn check<T: Decode + Encode + PartialEq + Debug>(data: &[u8]) {
    let mut buf = Bytes::copy_from_slice(data);
    let Ok(v) = T::decode(&mut buf) else {
        return;
    };
    let consumed = data.len() - buf.len();
    let mut re = BytesMut::new();
    v.encode(&mut re);
    assert!(re.len() <= consumed, "{v:?} grew on re-encoding");
    let back = decode_exact::<T>(re.freeze()).expect("re-encoding decodes");
    assert_eq!(back, v);
    match decode_exact::<T>(Bytes::copy_from_slice(data)) {
        Ok(exact) => {
            assert_eq!(consumed, data.len());
            assert_eq!(exact, v);
        }
        Err(DecodeError::Invalid(_)) => assert!(consumed < data.len()),
        Err(e) => panic!("decode_exact failed with {e} where decode succeeded"),
    }
}

macro_rules! check_all {
    ($data:expr; $($t:ident),* $(,)?) => {
        $(check::<$t>($data);)*
    };
}

fuzz_target!(|data: &[u8]| {
    check_all!(data;
        Id, Acl, Stat, ClientInfo, ConnectRequest, ConnectResponse, RequestHeader, ReplyHeader,
        WatcherEvent, AuthPacket, SetWatches, SetWatches2, CreateRequest, CreateTtlRequest,
        DeleteRequest, PathWatchRequest, PathRequest, SetDataRequest, SetAclRequest,
        CheckVersionRequest, AddWatchRequest, WatchesRequest, ReconfigRequest, CreateResponse,
        Create2Response, StatResponse, GetDataResponse, GetAclResponse, GetChildrenResponse,
        GetChildren2Response, PathResponse, IntResponse, WhoAmIResponse, SaslToken, MultiHeader,
        MultiRequest, MultiResponse,
    );
});
