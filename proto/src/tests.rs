//! Tests of the jute codec.
//!
//! * [`golden`]: frames captured from a real ZooKeeper 3.8.0 (Debian package,
//!   standalone, tickTime 2000, `-Dzookeeper.extendedTypesEnabled=true`, fresh
//!   data directory) by a throwaway raw-socket script that encodes requests the
//!   way the Java client does. Our encoders must produce the request bytes
//!   exactly; our decoders must read every reply, and re-encoding a reply must
//!   give the server's bytes back (except for CESU-8 strings, which we
//!   read but write as UTF-8).
//! * [`props`]: seeded random tests: round trips of random records, truncations,
//!   byte flips and random bytes through every decoder and `decode_frame`.

use bytes::{Bytes, BytesMut};

use super::codes::{err, xid, OpCode};
use super::*;

/// Hex to bytes at compile time (a wrong length or a non-hex digit fails the build).
const fn hex<const N: usize>(s: &str) -> [u8; N] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lower-case hex digit"),
        }
    }
    let s = s.as_bytes();
    assert!(
        s.len() == 2 * N,
        "hex string length does not match the array"
    );
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// Encodes `parts` back to back as one frame.
fn frame(parts: &[&dyn Encode]) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_frame(&mut b, |b| {
        for p in parts {
            p.encode(b);
        }
    });
    b.to_vec()
}

/// A request frame as the Java client writes it: header, then the record (if any).
fn request(xid: i32, op: i32, body: Option<&dyn Encode>) -> Vec<u8> {
    let h = RequestHeader { xid, op };
    match body {
        Some(b) => frame(&[&h, b]),
        None => frame(&[&h]),
    }
}

/// The payload of one whole captured frame, split with `decode_frame`.
fn payload(captured: &[u8]) -> Bytes {
    let mut buf = BytesMut::from(captured);
    let p = decode_frame(&mut buf, DEFAULT_JUTE_MAXBUFFER)
        .expect("frame accepted")
        .expect("frame complete");
    assert!(buf.is_empty(), "one frame per capture");
    p
}

/// A record with no bytes: the body of header-only replies.
#[derive(Debug, PartialEq, Eq)]
struct Empty;

impl Encode for Empty {
    fn encode(&self, _: &mut BytesMut) {}
}

impl Decode for Empty {
    fn decode(_: &mut Bytes) -> DecodeResult<Self> {
        Ok(Self)
    }
}

/// Decodes a captured reply: header and exactly one `T`, and checks that
/// re-encoding both gives the captured bytes.
fn reply<T: Decode + Encode>(captured: &[u8]) -> (ReplyHeader, T) {
    let (h, body) = reply_lossy::<T>(captured);
    assert_eq!(
        frame(&[&h, &body]),
        captured,
        "re-encoding is not canonical"
    );
    (h, body)
}

/// [`reply`] without the re-encoding check (for CESU-8 strings).
fn reply_lossy<T: Decode>(captured: &[u8]) -> (ReplyHeader, T) {
    let mut p = payload(captured);
    let h = ReplyHeader::decode(&mut p).expect("reply header");
    let body = decode_exact::<T>(p).expect("reply body");
    (h, body)
}

fn header(xid: i32, zxid: i64, err: i32) -> ReplyHeader {
    ReplyHeader { xid, zxid, err }
}

fn open_acl() -> Vec<Acl> {
    Acl::open_unsafe()
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn b(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

mod golden {
    //! Whole frames (length prefix included), captured once from ZooKeeper
    //! 3.8.0 on a fresh data directory, so zxids count from 1. `*_REQ` is what
    //! the capture script sent, `*_REP` the server's reply, `*_NOTIFICATION` a
    //! watch event that arrived before that reply. Session ids, passwords and
    //! times are whatever the server chose that day.
    //!
    //! * Connection A (Java-style handshake with readOnly, xids 1..=22): ping,
    //!   create2 `/golden`, getData, exists `/golden/w` with watch (NoNode),
    //!   create `/golden/w` (notification), exists, getChildren2, setData,
    //!   getACL, failing multi, multi of create2/create/setData/check/delete,
    //!   multiRead, addWatch recursive, createTTL (notification), whoAmI, auth
    //!   digest `u:p`, whoAmI, getEphemerals, getAllChildrenNumber, getChildren,
    //!   sync, removeWatches (NoWatcher), setWatches2 (notification), op 999
    //!   (Unimplemented, then EOF).
    //! * Connection B: handshake without readOnly (36-byte reply), closeSession
    //!   (reply, then EOF).
    //! * Connection C: resumes B's closed session: zeroed reply, then EOF.
    //! * Connection D: auth and an ACL with U+1F600, which the server writes
    //!   back as CESU-8.
    use super::*;
    use crate::Perms;

    const CONNECT_REQ: [u8; 49] = hex(concat!(
        "0000002d00000000000000000000000000002710000000000000000000000010",
        "0000000000000000000000000000000000",
    ));
    const CONNECT_REP: [u8; 41] = hex(concat!(
        "000000250000000000002710010000344621000000000010e55c97150e7d9934",
        "cb9e9d6007478dc200",
    ));
    const PING_REQ: [u8; 12] = hex("00000008fffffffe0000000b");
    const PING_REP: [u8; 20] = hex("00000010fffffffe000000000000000100000000");
    const CREATE2_REQ: [u8; 63] = hex(concat!(
        "0000003b000000010000000f000000072f676f6c64656e0000000568656c6c6f",
        "000000010000001f00000005776f726c6400000006616e796f6e6500000000",
    ));
    const CREATE2_REP: [u8; 99] = hex(concat!(
        "0000005f00000001000000000000000200000000000000072f676f6c64656e00",
        "000000000000020000000000000002000001a200bc6ea7000001a200bc6ea700",
        "0000000000000000000000000000000000000000000005000000000000000000",
        "000002",
    ));
    const GET_DATA_REQ: [u8; 24] = hex("000000140000000200000004000000072f676f6c64656e00");
    const GET_DATA_REP: [u8; 97] = hex(concat!(
        "0000005d000000020000000000000002000000000000000568656c6c6f000000",
        "00000000020000000000000002000001a200bc6ea7000001a200bc6ea7000000",
        "0000000000000000000000000000000000000000050000000000000000000000",
        "02",
    ));
    const EXISTS_NONODE_WATCH_REQ: [u8; 26] =
        hex("000000160000000300000003000000092f676f6c64656e2f7701");
    const EXISTS_NONODE_WATCH_REP: [u8; 20] = hex("00000010000000030000000000000002ffffff9b");
    const CREATE_FIRES_WATCH_REQ: [u8; 60] = hex(concat!(
        "000000380000000400000001000000092f676f6c64656e2f7700000000000000",
        "010000001f00000005776f726c6400000006616e796f6e6500000000",
    ));
    const CREATE_FIRES_WATCH_NOTIFICATION: [u8; 41] = hex(concat!(
        "00000025ffffffffffffffffffffffff00000000000000010000000300000009",
        "2f676f6c64656e2f77",
    ));
    const CREATE_FIRES_WATCH_REP: [u8; 33] = hex(concat!(
        "0000001d00000004000000000000000300000000000000092f676f6c64656e2f",
        "77",
    ));
    const EXISTS_OK_REQ: [u8; 26] = hex("000000160000000500000003000000092f676f6c64656e2f7700");
    const EXISTS_OK_REP: [u8; 88] = hex(concat!(
        "0000005400000005000000000000000300000000000000000000000300000000",
        "00000003000001a200bc6eb7000001a200bc6eb7000000000000000000000000",
        "000000000000000000000000000000000000000000000003",
    ));
    const GET_CHILDREN2_REQ: [u8; 24] = hex("00000014000000060000000c000000072f676f6c64656e00");
    const GET_CHILDREN2_REP: [u8; 97] = hex(concat!(
        "0000005d00000006000000000000000300000000000000010000000177000000",
        "00000000020000000000000002000001a200bc6ea7000001a200bc6ea7000000",
        "0000000001000000000000000000000000000000050000000100000000000000",
        "03",
    ));
    const SET_DATA_REQ: [u8; 36] = hex(concat!(
        "000000200000000700000005000000072f676f6c64656e00000005776f726c64",
        "00000000",
    ));
    const SET_DATA_REP: [u8; 88] = hex(concat!(
        "0000005400000007000000000000000400000000000000000000000200000000",
        "00000004000001a200bc6ea7000001a200bc6ebf000000010000000100000000",
        "000000000000000000000005000000010000000000000003",
    ));
    const GET_ACL_REQ: [u8; 23] = hex("000000130000000800000006000000072f676f6c64656e");
    const GET_ACL_REP: [u8; 115] = hex(concat!(
        "0000006f00000008000000000000000400000000000000010000001f00000005",
        "776f726c6400000006616e796f6e650000000000000002000000000000000400",
        "0001a200bc6ea7000001a200bc6ebf0000000100000001000000000000000000",
        "00000000000005000000010000000000000003",
    ));
    const MULTI_FAIL_REQ: [u8; 135] = hex(concat!(
        "00000083000000090000000e0000000100ffffffff0000000a2f676f6c64656e",
        "2f6d310000000178000000010000001f00000005776f726c6400000006616e79",
        "6f6e65000000000000000d00ffffffff000000072f676f6c64656e0000000500",
        "00000500ffffffff000000092f676f6c64656e2f770000000179ffffffffffff",
        "ffff01ffffffff",
    ));
    const MULTI_FAIL_REP: [u8; 68] = hex(concat!(
        "0000004000000009000000000000000500000000ffffffff0000000000000000",
        "00ffffffff00ffffff99ffffff99ffffffff00fffffffefffffffeffffffff01",
        "ffffffff",
    ));
    const MULTI_OK_REQ: [u8; 232] = hex(concat!(
        "000000e40000000a0000000e0000000f00ffffffff0000000a2f676f6c64656e",
        "2f6d3200000003657068000000010000001f00000005776f726c640000000661",
        "6e796f6e65000000010000000100ffffffff0000000a2f676f6c64656e2f6d33",
        "ffffffff000000010000001f00000005776f726c6400000006616e796f6e6500",
        "0000020000000500ffffffff000000092f676f6c64656e2f770000000179ffff",
        "ffff0000000d00ffffffff000000072f676f6c64656e000000010000000200ff",
        "ffffff000000142f676f6c64656e2f6d3330303030303030303032ffffffffff",
        "ffffff01ffffffff",
    ));
    const MULTI_OK_REP: [u8; 180] = hex(concat!(
        "000000b00000000a000000000000000600000000000000010000000000000000",
        "0a2f676f6c64656e2f6d32000000010000000000000000142f676f6c64656e2f",
        "6d33303030303030303030320000000500000000000000000000000003000000",
        "0000000006000001a200bc6eb7000001a200bc6ed20000000100000000000000",
        "000000000000000000000000010000000000000000000000030000000d000000",
        "0000000000020000000000ffffffff01ffffffff",
    ));
    const MULTI_READ_REQ: [u8; 94] = hex(concat!(
        "0000005a0000000b000000160000000400ffffffff000000092f676f6c64656e",
        "2f77000000000800ffffffff000000072f676f6c64656e000000000400ffffff",
        "ff0000000f2f676f6c64656e2f6d697373696e6700ffffffff01ffffffff",
    ));
    const MULTI_READ_REP: [u8; 148] = hex(concat!(
        "000000900000000b000000000000000600000000000000040000000000000000",
        "017900000000000000030000000000000006000001a200bc6eb7000001a200bc",
        "6ed2000000010000000000000000000000000000000000000001000000000000",
        "00000000000300000008000000000000000002000000026d320000000177ffff",
        "ffff00ffffff9bffffff9bffffffff01ffffffff",
    ));
    const ADD_WATCH_REQ: [u8; 27] = hex("000000170000000c0000006a000000072f676f6c64656e00000001");
    const ADD_WATCH_REP: [u8; 24] = hex("000000140000000c00000000000000060000000000000000");
    const CREATE_TTL_REQ: [u8; 70] = hex(concat!(
        "000000420000000d000000150000000b2f676f6c64656e2f74746c0000000000",
        "0000010000001f00000005776f726c6400000006616e796f6e65000000050000",
        "00000000ea60",
    ));
    const CREATE_TTL_NOTIFICATION: [u8; 43] = hex(concat!(
        "00000027ffffffffffffffffffffffff0000000000000001000000030000000b",
        "2f676f6c64656e2f74746c",
    ));
    const CREATE_TTL_REP: [u8; 103] = hex(concat!(
        "000000630000000d0000000000000007000000000000000b2f676f6c64656e2f",
        "74746c00000000000000070000000000000007000001a200bc6ede000001a200",
        "bc6ede0000000000000000000000000000000000000000000000000000000000",
        "00000000000007",
    ));
    const WHO_AM_I_ANON_REQ: [u8; 12] = hex("000000080000000e0000006b");
    const WHO_AM_I_ANON_REP: [u8; 43] = hex(concat!(
        "000000270000000e000000000000000700000000000000010000000269700000",
        "00093132372e302e302e31",
    ));
    const AUTH_REQ: [u8; 33] = hex(concat!(
        "0000001dfffffffc00000064000000000000000664696765737400000003753a",
        "70",
    ));
    const AUTH_REP: [u8; 20] = hex("00000010fffffffc000000000000000000000000");
    const WHO_AM_I_REQ: [u8; 12] = hex("000000080000000f0000006b");
    const WHO_AM_I_REP: [u8; 58] = hex(concat!(
        "000000360000000f000000000000000700000000000000020000000269700000",
        "00093132372e302e302e31000000066469676573740000000175",
    ));
    const GET_EPHEMERALS_REQ: [u8; 23] = hex("000000130000001000000067000000072f676f6c64656e");
    const GET_EPHEMERALS_REP: [u8; 38] = hex(concat!(
        "0000002200000010000000000000000700000000000000010000000a2f676f6c",
        "64656e2f6d32",
    ));
    const GET_ALL_CHILDREN_NUMBER_REQ: [u8; 23] =
        hex("000000130000001100000068000000072f676f6c64656e");
    const GET_ALL_CHILDREN_NUMBER_REP: [u8; 24] =
        hex("000000140000001100000000000000070000000000000003");
    const GET_CHILDREN_REQ: [u8; 24] = hex("000000140000001200000008000000072f676f6c64656e00");
    const GET_CHILDREN_REP: [u8; 42] = hex(concat!(
        "000000260000001200000000000000070000000000000003000000026d320000",
        "000374746c0000000177",
    ));
    const SYNC_REQ: [u8; 23] = hex("000000130000001300000009000000072f676f6c64656e");
    const SYNC_REP: [u8; 31] =
        hex("0000001b00000013000000000000000700000000000000072f676f6c64656e");
    const REMOVE_WATCHES_NONE_REQ: [u8; 29] =
        hex("000000190000001400000012000000092f676f6c64656e2f7700000001");
    const REMOVE_WATCHES_NONE_REP: [u8; 20] = hex("00000010000000140000000000000007ffffff87");
    const SET_WATCHES2_REQ: [u8; 80] = hex(concat!(
        "0000004c0000001500000069000000000000000100000001000000072f676f6c",
        "64656e000000010000000c2f676f6c64656e2f6e6f7065000000000000000000",
        "000001000000092f676f6c64656e2f77",
    ));
    const SET_WATCHES2_NOTIFICATION: [u8; 39] = hex(concat!(
        "00000023ffffffffffffffffffffffff00000000000000030000000300000007",
        "2f676f6c64656e",
    ));
    const SET_WATCHES2_REP: [u8; 20] = hex("0000001000000015000000000000000700000000");
    const UNKNOWN_OP_REQ: [u8; 12] = hex("0000000800000016000003e7");
    const UNKNOWN_OP_REP: [u8; 20] = hex("0000001000000016fffffffffffffffffffffffa");
    const CONNECT_NO_RO_REQ: [u8; 48] = hex(concat!(
        "0000002c000000000000000000000000000f4240000000000000000000000010",
        "00000000000000000000000000000000",
    ));
    const CONNECT_NO_RO_REP: [u8; 40] = hex(concat!(
        "000000240000000000009c40010000344621000100000010f87d9115aec87879",
        "c0e1048cdbcfa18f",
    ));
    const CLOSE_SESSION_REQ: [u8; 12] = hex("0000000800000001fffffff5");
    const CLOSE_SESSION_REP: [u8; 20] = hex("0000001000000001000000000000000900000000");
    const CONNECT_EXPIRED_REQ: [u8; 49] = hex(concat!(
        "0000002d00000000000000000000000000002710010000344621000100000010",
        "f87d9115aec87879c0e1048cdbcfa18f00",
    ));
    const CONNECT_EXPIRED_REP: [u8; 41] = hex(concat!(
        "0000002500000000000000000000000000000000000000100000000000000000",
        "000000000000000000",
    ));
    const CONNECT_D_REQ: [u8; 49] = hex(concat!(
        "0000002d00000000000000000000000000002710000000000000000000000010",
        "0000000000000000000000000000000000",
    ));
    const CONNECT_D_REP: [u8; 41] = hex(concat!(
        "000000250000000000002710010000344621000200000010bf1aa315cee5daaa",
        "e118cf096035642800",
    ));
    const AUTH_CESU_REQ: [u8; 37] = hex(concat!(
        "00000021fffffffc0000006400000000000000066469676573740000000775f0",
        "9f98803a70",
    ));
    const AUTH_CESU_REP: [u8; 20] = hex("00000010fffffffc000000000000000000000000");
    const WHO_AM_I_CESU_REQ: [u8; 12] = hex("00000008000000010000006b");
    const WHO_AM_I_CESU_REP: [u8; 64] = hex(concat!(
        "0000003c00000001000000000000000a00000000000000020000000269700000",
        "00093132372e302e302e31000000066469676573740000000775eda0bdedb880",
    ));
    const CREATE_CESU_ACL_REQ: [u8; 83] = hex(concat!(
        "0000004f0000000200000001000000052f63657375ffffffff00000002000000",
        "1f00000005776f726c6400000006616e796f6e65000000010000000664696765",
        "73740000000978f09f98803a61626300000000",
    ));
    const CREATE_CESU_ACL_REP: [u8; 29] =
        hex("0000001900000002000000000000000b00000000000000052f63657375");
    const GET_ACL_CESU_REQ: [u8; 21] = hex("000000110000000300000006000000052f63657375");
    const GET_ACL_CESU_REP: [u8; 144] = hex(concat!(
        "0000008c00000003000000000000000b00000000000000020000001f00000005",
        "776f726c6400000006616e796f6e650000000100000006646967657374000000",
        "0b78eda0bdedb8803a616263000000000000000b000000000000000b000001a2",
        "00bc6f0c000001a200bc6f0c0000000000000000000000000000000000000000",
        "0000000000000000000000000000000b",
    ));

    /// Checks the Stat fields that do not depend on the wall clock.
    #[allow(clippy::too_many_arguments)]
    fn assert_stat(
        st: &Stat,
        czxid: i64,
        mzxid: i64,
        version: i32,
        cversion: i32,
        data_length: i32,
        num_children: i32,
        pzxid: i64,
    ) {
        assert_eq!(
            (st.czxid, st.mzxid, st.version, st.cversion, st.aversion),
            (czxid, mzxid, version, cversion, 0),
            "{st:?}"
        );
        assert_eq!(
            (
                st.data_length,
                st.num_children,
                st.pzxid,
                st.ephemeral_owner
            ),
            (data_length, num_children, pzxid, 0),
            "{st:?}"
        );
        // Wall-clock ms since the epoch.
        assert!(
            st.ctime > 1_700_000_000_000 && st.mtime >= st.ctime,
            "{st:?}"
        );
        if czxid == mzxid {
            assert_eq!(st.ctime, st.mtime);
        }
    }

    fn new_session_request(timeout: i32, read_only: Option<bool>) -> ConnectRequest {
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only,
        }
    }

    fn connect_response(captured: &[u8], len: usize) -> ConnectResponse {
        assert_eq!(captured.len(), 4 + len);
        let r = decode_exact::<ConnectResponse>(payload(captured)).unwrap();
        assert_eq!(frame(&[&r]), captured);
        r
    }

    #[test]
    fn handshake_with_read_only_flag() {
        let req = new_session_request(10_000, Some(false));
        assert_eq!(frame(&[&req]), CONNECT_REQ);
        assert_eq!(CONNECT_REQ.len(), 4 + 45);
        assert_eq!(
            decode_exact::<ConnectRequest>(payload(&CONNECT_REQ)).unwrap(),
            req
        );

        let r = connect_response(&CONNECT_REP, 37);
        assert_eq!(r.protocol_version, 0);
        assert_eq!(r.timeout, 10_000);
        // Standalone server id 1 in the top byte; the first session of the server.
        assert_eq!(r.session_id >> 56, 1);
        assert_eq!(r.session_id, 0x0100_0034_4621_0000);
        assert_eq!(r.passwd.len(), 16);
        assert_eq!(r.read_only, Some(false));

        assert_eq!(frame(&[&req]), CONNECT_D_REQ);
        let d = connect_response(&CONNECT_D_REP, 37);
        assert_eq!(d.session_id, r.session_id + 2);
    }

    #[test]
    fn handshake_without_read_only_flag() {
        // An old client omits readOnly; the server then omits it too (36 bytes),
        // and clamps the timeout to 20 ticks.
        let req = new_session_request(1_000_000, None);
        assert_eq!(frame(&[&req]), CONNECT_NO_RO_REQ);
        assert_eq!(CONNECT_NO_RO_REQ.len(), 4 + 44);
        assert_eq!(
            decode_exact::<ConnectRequest>(payload(&CONNECT_NO_RO_REQ)).unwrap(),
            req
        );

        let r = connect_response(&CONNECT_NO_RO_REP, 36);
        assert_eq!(r.timeout, 40_000);
        assert_eq!(r.session_id, 0x0100_0034_4621_0001);
        assert_eq!(r.read_only, None);

        // closeSession: header only both ways, then EOF.
        assert_eq!(
            request(1, OpCode::CloseSession.code(), None),
            CLOSE_SESSION_REQ
        );
        assert_eq!(reply::<Empty>(&CLOSE_SESSION_REP).0, header(1, 9, 0));
    }

    #[test]
    fn handshake_for_a_closed_session() {
        let closed = connect_response(&CONNECT_NO_RO_REP, 36);
        let req = ConnectRequest {
            timeout: 10_000,
            session_id: closed.session_id,
            passwd: closed.passwd,
            ..new_session_request(0, Some(false))
        };
        assert_eq!(frame(&[&req]), CONNECT_EXPIRED_REQ);
        // Expired: timeout 0, session 0, 16 zero bytes, then EOF.
        let r = connect_response(&CONNECT_EXPIRED_REP, 37);
        assert_eq!(
            r,
            ConnectResponse {
                protocol_version: 0,
                timeout: 0,
                session_id: 0,
                passwd: Bytes::from_static(&[0; 16]),
                read_only: Some(false),
            }
        );
    }

    #[test]
    fn ping() {
        assert_eq!(request(xid::PING, OpCode::Ping.code(), None), PING_REQ);
        // Zxid 1: the createSession txn.
        assert_eq!(reply::<Empty>(&PING_REP).0, header(xid::PING, 1, 0));
    }

    #[test]
    fn create2_and_get_data() {
        let req = CreateRequest {
            path: s("/golden"),
            data: Some(b(b"hello")),
            acl: open_acl(),
            flags: 0,
        };
        assert_eq!(request(1, OpCode::Create2.code(), Some(&req)), CREATE2_REQ);
        let (h, r) = reply::<Create2Response>(&CREATE2_REP);
        assert_eq!(h, header(1, 2, 0));
        assert_eq!(r.path, "/golden");
        assert_stat(&r.stat, 2, 2, 0, 0, 5, 0, 2);

        let req = PathWatchRequest {
            path: s("/golden"),
            watch: false,
        };
        assert_eq!(request(2, OpCode::GetData.code(), Some(&req)), GET_DATA_REQ);
        let (h, r2) = reply::<GetDataResponse>(&GET_DATA_REP);
        assert_eq!(h, header(2, 2, 0));
        assert_eq!(r2.data.as_deref(), Some(&b"hello"[..]));
        assert_eq!(r2.stat, r.stat);
    }

    #[test]
    fn exists_watch_then_create_notifies_before_the_reply() {
        let req = PathWatchRequest {
            path: s("/golden/w"),
            watch: true,
        };
        assert_eq!(
            request(3, OpCode::Exists.code(), Some(&req)),
            EXISTS_NONODE_WATCH_REQ
        );
        // An error reply is the header alone.
        let (h, Empty) = reply(&EXISTS_NONODE_WATCH_REP);
        assert_eq!(h, header(3, 2, err::NO_NODE));

        let req = CreateRequest {
            path: s("/golden/w"),
            data: Some(Bytes::new()),
            acl: open_acl(),
            flags: 0,
        };
        assert_eq!(
            request(4, OpCode::Create.code(), Some(&req)),
            CREATE_FIRES_WATCH_REQ
        );
        // The notification (zxid -1 on 3.8) arrived before the create's reply.
        let (h, ev) = reply::<WatcherEvent>(&CREATE_FIRES_WATCH_NOTIFICATION);
        assert_eq!(h, header(xid::NOTIFICATION, -1, 0));
        assert_eq!(
            ev,
            WatcherEvent {
                event_type: codes::EventType::NodeCreated.code(),
                state: codes::keeper_state::SYNC_CONNECTED,
                path: s("/golden/w"),
            }
        );
        let (h, r) = reply::<CreateResponse>(&CREATE_FIRES_WATCH_REP);
        assert_eq!(h, header(4, 3, 0));
        assert_eq!(r.path, "/golden/w");

        let req = PathWatchRequest {
            path: s("/golden/w"),
            watch: false,
        };
        assert_eq!(request(5, OpCode::Exists.code(), Some(&req)), EXISTS_OK_REQ);
        let (h, r) = reply::<StatResponse>(&EXISTS_OK_REP);
        assert_eq!(h, header(5, 3, 0));
        // Empty (not null) data: dataLength 0.
        assert_stat(&r.stat, 3, 3, 0, 0, 0, 0, 3);
    }

    #[test]
    fn get_children2_set_data_get_acl() {
        let req = PathWatchRequest {
            path: s("/golden"),
            watch: false,
        };
        assert_eq!(
            request(6, OpCode::GetChildren2.code(), Some(&req)),
            GET_CHILDREN2_REQ
        );
        let (h, r) = reply::<GetChildren2Response>(&GET_CHILDREN2_REP);
        assert_eq!(h, header(6, 3, 0));
        assert_eq!(r.children, vec!["w"]);
        assert_stat(&r.stat, 2, 2, 0, 1, 5, 1, 3);

        let req = SetDataRequest {
            path: s("/golden"),
            data: Some(b(b"world")),
            version: 0,
        };
        assert_eq!(request(7, OpCode::SetData.code(), Some(&req)), SET_DATA_REQ);
        let (h, set) = reply::<StatResponse>(&SET_DATA_REP);
        assert_eq!(h, header(7, 4, 0));
        assert_stat(&set.stat, 2, 4, 1, 1, 5, 1, 3);
        assert!(set.stat.mtime > set.stat.ctime);

        let req = PathRequest { path: s("/golden") };
        assert_eq!(request(8, OpCode::GetAcl.code(), Some(&req)), GET_ACL_REQ);
        let (h, r) = reply::<GetAclResponse>(&GET_ACL_REP);
        assert_eq!(h, header(8, 4, 0));
        assert_eq!(r.acl, open_acl());
        assert_eq!(r.stat, set.stat);
    }

    #[test]
    fn failed_multi() {
        let req = MultiRequest {
            ops: vec![
                MultiOp::Create {
                    op: OpCode::Create,
                    req: CreateRequest {
                        path: s("/golden/m1"),
                        data: Some(b(b"x")),
                        acl: open_acl(),
                        flags: 0,
                    },
                },
                MultiOp::Check(CheckVersionRequest {
                    path: s("/golden"),
                    version: 5,
                }),
                MultiOp::SetData(SetDataRequest {
                    path: s("/golden/w"),
                    data: Some(b(b"y")),
                    version: -1,
                }),
            ],
        };
        assert_eq!(request(9, OpCode::Multi.code(), Some(&req)), MULTI_FAIL_REQ);
        assert_eq!(
            decode_exact::<MultiRequest>(payload(&MULTI_FAIL_REQ).slice(8..)).unwrap(),
            req
        );

        // Header err 0; every result an error: 0 before the failing op, its code,
        // -2 after it. The zxid (5) was consumed although nothing was applied.
        let (h, r) = reply::<MultiResponse>(&MULTI_FAIL_REP);
        assert_eq!(h, header(9, 5, 0));
        assert_eq!(
            r.results,
            vec![
                MultiResult::Error(0),
                MultiResult::Error(err::BAD_VERSION),
                MultiResult::Error(err::RUNTIME_INCONSISTENCY),
            ]
        );
    }

    #[test]
    fn successful_multi() {
        let req = MultiRequest {
            ops: vec![
                MultiOp::Create {
                    op: OpCode::Create2,
                    req: CreateRequest {
                        path: s("/golden/m2"),
                        data: Some(b(b"eph")),
                        acl: open_acl(),
                        flags: codes::create_flags::EPHEMERAL,
                    },
                },
                MultiOp::Create {
                    op: OpCode::Create,
                    req: CreateRequest {
                        path: s("/golden/m3"),
                        data: None,
                        acl: open_acl(),
                        flags: codes::create_flags::PERSISTENT_SEQUENTIAL,
                    },
                },
                MultiOp::SetData(SetDataRequest {
                    path: s("/golden/w"),
                    data: Some(b(b"y")),
                    version: -1,
                }),
                MultiOp::Check(CheckVersionRequest {
                    path: s("/golden"),
                    version: 1,
                }),
                MultiOp::Delete(DeleteRequest {
                    path: s("/golden/m30000000002"),
                    version: -1,
                }),
            ],
        };
        assert_eq!(request(10, OpCode::Multi.code(), Some(&req)), MULTI_OK_REQ);
        assert_eq!(
            decode_exact::<MultiRequest>(payload(&MULTI_OK_REQ).slice(8..)).unwrap(),
            req
        );

        let (h, r) = reply::<MultiResponse>(&MULTI_OK_REP);
        assert_eq!(h, header(10, 6, 0));
        let [MultiResult::Create(c2), MultiResult::Create(c), MultiResult::SetData(set), MultiResult::Check, MultiResult::Delete] =
            &r.results[..]
        else {
            panic!("{r:?}")
        };
        // 3.8 answers a create2 op as type 1, path only. The sequence suffix is the
        // parent's create count (w, m2).
        assert_eq!(c2.path, "/golden/m2");
        assert_eq!(c.path, "/golden/m30000000002");
        assert_stat(&set.stat, 3, 6, 1, 0, 1, 0, 3);
    }

    #[test]
    fn multi_read() {
        let req = MultiRequest {
            ops: vec![
                MultiOp::GetData(PathWatchRequest {
                    path: s("/golden/w"),
                    watch: false,
                }),
                MultiOp::GetChildren(PathWatchRequest {
                    path: s("/golden"),
                    watch: false,
                }),
                MultiOp::GetData(PathWatchRequest {
                    path: s("/golden/missing"),
                    watch: false,
                }),
            ],
        };
        assert_eq!(
            request(11, OpCode::MultiRead.code(), Some(&req)),
            MULTI_READ_REQ
        );
        let (h, r) = reply::<MultiResponse>(&MULTI_READ_REP);
        assert_eq!(h, header(11, 6, 0));
        let [MultiResult::GetData(d), MultiResult::GetChildren(c), MultiResult::Error(e)] =
            &r.results[..]
        else {
            panic!("{r:?}")
        };
        assert_eq!(d.data.as_deref(), Some(&b"y"[..]));
        assert_stat(&d.stat, 3, 6, 1, 0, 1, 0, 3);
        assert_eq!(c.children, vec!["m2", "w"]);
        // Not atomic: a per-op error with header err 0.
        assert_eq!(*e, err::NO_NODE);
    }

    #[test]
    fn add_watch_then_create_ttl_notifies() {
        let req = AddWatchRequest {
            path: s("/golden"),
            mode: codes::AddWatchMode::PersistentRecursive.code(),
        };
        assert_eq!(
            request(12, OpCode::AddWatch.code(), Some(&req)),
            ADD_WATCH_REQ
        );
        // addWatch answers a 4-byte ErrorResponse{0}.
        let (h, r) = reply::<IntResponse>(&ADD_WATCH_REP);
        assert_eq!((h, r.value), (header(12, 6, 0), 0));

        let req = CreateTtlRequest {
            path: s("/golden/ttl"),
            data: Some(Bytes::new()),
            acl: open_acl(),
            flags: codes::create_flags::PERSISTENT_WITH_TTL,
            ttl: 60_000,
        };
        assert_eq!(
            request(13, OpCode::CreateTtl.code(), Some(&req)),
            CREATE_TTL_REQ
        );
        let (h, ev) = reply::<WatcherEvent>(&CREATE_TTL_NOTIFICATION);
        assert_eq!(h, header(xid::NOTIFICATION, -1, 0));
        assert_eq!((ev.event_type, ev.path.as_str()), (1, "/golden/ttl"));
        let (h, r) = reply::<Create2Response>(&CREATE_TTL_REP);
        assert_eq!(h, header(13, 7, 0));
        assert_eq!(r.path, "/golden/ttl");
        // ephemeralOwner of a TTL node is 0 for clients (checked by assert_stat).
        assert_stat(&r.stat, 7, 7, 0, 0, 0, 0, 7);
    }

    #[test]
    fn auth_and_who_am_i() {
        assert_eq!(request(14, OpCode::WhoAmI.code(), None), WHO_AM_I_ANON_REQ);
        let (h, r) = reply::<WhoAmIResponse>(&WHO_AM_I_ANON_REP);
        assert_eq!(h, header(14, 7, 0));
        let ip = ClientInfo {
            auth_scheme: s("ip"),
            user: s("127.0.0.1"),
        };
        assert_eq!(r.client_info, vec![ip.clone()]);

        let auth = AuthPacket {
            auth_type: 0,
            scheme: s("digest"),
            auth: b(b"u:p"),
        };
        assert_eq!(
            request(xid::AUTH, OpCode::Auth.code(), Some(&auth)),
            AUTH_REQ
        );
        // Auth replies carry zxid 0.
        assert_eq!(reply::<Empty>(&AUTH_REP).0, header(xid::AUTH, 0, 0));

        assert_eq!(request(15, OpCode::WhoAmI.code(), None), WHO_AM_I_REQ);
        let (h, r) = reply::<WhoAmIResponse>(&WHO_AM_I_REP);
        assert_eq!(h, header(15, 7, 0));
        let digest = ClientInfo {
            auth_scheme: s("digest"),
            user: s("u"),
        };
        assert_eq!(r.client_info, vec![ip, digest]);
    }

    #[test]
    fn ephemerals_children_number_children_sync() {
        let req = PathRequest { path: s("/golden") };
        assert_eq!(
            request(16, OpCode::GetEphemerals.code(), Some(&req)),
            GET_EPHEMERALS_REQ
        );
        let (h, r) = reply::<GetChildrenResponse>(&GET_EPHEMERALS_REP);
        assert_eq!(h, header(16, 7, 0));
        // Full paths, not child names.
        assert_eq!(r.children, vec!["/golden/m2"]);

        assert_eq!(
            request(17, OpCode::GetAllChildrenNumber.code(), Some(&req)),
            GET_ALL_CHILDREN_NUMBER_REQ
        );
        let (h, r) = reply::<IntResponse>(&GET_ALL_CHILDREN_NUMBER_REP);
        assert_eq!((h, r.value), (header(17, 7, 0), 3));

        let watch = PathWatchRequest {
            path: s("/golden"),
            watch: false,
        };
        assert_eq!(
            request(18, OpCode::GetChildren.code(), Some(&watch)),
            GET_CHILDREN_REQ
        );
        let (h, r) = reply::<GetChildrenResponse>(&GET_CHILDREN_REP);
        assert_eq!(h, header(18, 7, 0));
        assert_eq!(r.children, vec!["m2", "ttl", "w"]);

        assert_eq!(request(19, OpCode::Sync.code(), Some(&req)), SYNC_REQ);
        let (h, r) = reply::<PathResponse>(&SYNC_REP);
        assert_eq!((h, r.path.as_str()), (header(19, 7, 0), "/golden"));
    }

    #[test]
    fn remove_watches_none() {
        let req = WatchesRequest {
            path: s("/golden/w"),
            watcher_type: codes::WatcherType::Children.code(),
        };
        assert_eq!(
            request(20, OpCode::RemoveWatches.code(), Some(&req)),
            REMOVE_WATCHES_NONE_REQ
        );
        assert_eq!(
            reply::<Empty>(&REMOVE_WATCHES_NONE_REP).0,
            header(20, 7, err::NO_WATCHER)
        );
    }

    #[test]
    fn set_watches2_fires_missed_change() {
        let req = SetWatches2 {
            relative_zxid: 1,
            data_watches: vec![s("/golden")],
            exist_watches: vec![s("/golden/nope")],
            child_watches: vec![],
            persistent_watches: vec![],
            persistent_recursive_watches: vec![s("/golden/w")],
        };
        assert_eq!(
            request(21, OpCode::SetWatches2.code(), Some(&req)),
            SET_WATCHES2_REQ
        );
        // mzxid 4 > relativeZxid 1: NodeDataChanged before the reply.
        let (h, ev) = reply::<WatcherEvent>(&SET_WATCHES2_NOTIFICATION);
        assert_eq!(h, header(xid::NOTIFICATION, -1, 0));
        assert_eq!(
            (ev.event_type, ev.state, ev.path.as_str()),
            (3, 3, "/golden")
        );
        assert_eq!(reply::<Empty>(&SET_WATCHES2_REP).0, header(21, 7, 0));
    }

    #[test]
    fn unknown_op_code() {
        assert_eq!(OpCode::from_code(999), None);
        assert_eq!(request(22, 999, None), UNKNOWN_OP_REQ);
        // zxid -1, Unimplemented; then the server closed the connection.
        assert_eq!(
            reply::<Empty>(&UNKNOWN_OP_REP).0,
            header(22, -1, err::UNIMPLEMENTED)
        );
    }

    #[test]
    fn non_bmp_strings_arrive_as_cesu8() {
        let auth = AuthPacket {
            auth_type: 0,
            scheme: s("digest"),
            auth: b("u\u{1F600}:p".as_bytes()),
        };
        assert_eq!(
            request(xid::AUTH, OpCode::Auth.code(), Some(&auth)),
            AUTH_CESU_REQ
        );
        assert_eq!(reply::<Empty>(&AUTH_CESU_REP).0, header(xid::AUTH, 0, 0));

        assert_eq!(request(1, OpCode::WhoAmI.code(), None), WHO_AM_I_CESU_REQ);
        let (h, r) = reply_lossy::<WhoAmIResponse>(&WHO_AM_I_CESU_REP);
        assert_eq!(h, header(1, 10, 0));
        assert_eq!(r.client_info[1].user, "u\u{1F600}");
        // We write UTF-8 (4 bytes), the server wrote CESU-8 (6 bytes).
        let ours = frame(&[&h, &r]);
        assert_eq!(ours.len() + 2, WHO_AM_I_CESU_REP.len());
        assert_eq!(
            &WHO_AM_I_CESU_REP[WHO_AM_I_CESU_REP.len() - 6..],
            b"\xed\xa0\xbd\xed\xb8\x80"
        );
        assert_eq!(reply::<WhoAmIResponse>(&ours).1, r);

        let digest = Acl::new(Perms::READ, "digest", "x\u{1F600}:abc");
        let req = CreateRequest {
            path: s("/cesu"),
            data: None,
            acl: vec![open_acl().remove(0), digest.clone()],
            flags: 0,
        };
        assert_eq!(
            request(2, OpCode::Create.code(), Some(&req)),
            CREATE_CESU_ACL_REQ
        );
        let (h, r) = reply::<CreateResponse>(&CREATE_CESU_ACL_REP);
        assert_eq!((h, r.path.as_str()), (header(2, 11, 0), "/cesu"));

        let req = PathRequest { path: s("/cesu") };
        assert_eq!(
            request(3, OpCode::GetAcl.code(), Some(&req)),
            GET_ACL_CESU_REQ
        );
        let (h, r) = reply_lossy::<GetAclResponse>(&GET_ACL_CESU_REP);
        assert_eq!(h, header(3, 11, 0));
        assert_eq!(r.acl, vec![open_acl().remove(0), digest]);
        // Created with null data: dataLength 0.
        assert_stat(&r.stat, 11, 11, 0, 0, 0, 0, 11);
    }

    /// Every frame the server sent on connection A, as one byte stream.
    const STREAM_A: &[&[u8]] = &[
        &CONNECT_REP,
        &PING_REP,
        &CREATE2_REP,
        &GET_DATA_REP,
        &EXISTS_NONODE_WATCH_REP,
        &CREATE_FIRES_WATCH_NOTIFICATION,
        &CREATE_FIRES_WATCH_REP,
        &EXISTS_OK_REP,
        &GET_CHILDREN2_REP,
        &SET_DATA_REP,
        &GET_ACL_REP,
        &MULTI_FAIL_REP,
        &MULTI_OK_REP,
        &MULTI_READ_REP,
        &ADD_WATCH_REP,
        &CREATE_TTL_NOTIFICATION,
        &CREATE_TTL_REP,
        &WHO_AM_I_ANON_REP,
        &AUTH_REP,
        &WHO_AM_I_REP,
        &GET_EPHEMERALS_REP,
        &GET_ALL_CHILDREN_NUMBER_REP,
        &GET_CHILDREN_REP,
        &SYNC_REP,
        &REMOVE_WATCHES_NONE_REP,
        &SET_WATCHES2_NOTIFICATION,
        &SET_WATCHES2_REP,
        &UNKNOWN_OP_REP,
    ];

    #[test]
    fn reply_stream_split_at_every_chunk_size() {
        let all: Vec<u8> = STREAM_A.concat();
        for chunk in 1..=all.len().min(200) {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in all.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(f) = decode_frame(&mut buf, DEFAULT_JUTE_MAXBUFFER).unwrap() {
                    got.push(f);
                }
            }
            assert!(buf.is_empty());
            assert_eq!(got.len(), STREAM_A.len());
            for (f, want) in got.iter().zip(STREAM_A) {
                assert_eq!(&f[..], &want[4..]);
            }
        }
        // The largest frame is rejected from its prefix by a smaller limit.
        let mut buf = BytesMut::from(&MULTI_OK_REP[..]);
        assert_eq!(
            decode_frame(&mut buf, 100),
            Err(FrameError::TooLarge { len: 176, max: 100 })
        );
    }
}

mod props {
    //! Seeded random tests without extra crates. Every test is deterministic: a
    //! failure names the seed-independent iteration and the input bytes.

    use std::fmt::Debug;

    use bytes::{Bytes, BytesMut};
    use rand::rngs::SmallRng;
    use rand::{Rng, RngCore, SeedableRng};

    use super::super::codes::OpCode;
    use super::super::*;

    /// The generator: seeded, so every run sees the same inputs. `SmallRng`
    /// rather than `StdRng`: ChaCha in an unoptimised test build took 60% of the
    /// run time.
    type TestRng = SmallRng;

    /// Iterations per decoder and per kind of input.
    const ITERS: usize = 20_000;

    /// Random valid values.
    trait Arb: Sized {
        /// Whether a proper prefix of an encoding can itself be a valid encoding
        /// (the optional trailing `readOnly` of the handshake records).
        const OPTIONAL_TAIL: bool = false;
        fn arb(r: &mut TestRng) -> Self;
    }

    impl Arb for i32 {
        fn arb(r: &mut TestRng) -> Self {
            match r.random_range(0..8) {
                0 => [0, -1, 1, i32::MIN, i32::MAX][r.random_range(0..5)],
                1..=3 => r.random_range(-200..200),
                _ => r.random(),
            }
        }
    }

    impl Arb for i64 {
        fn arb(r: &mut TestRng) -> Self {
            match r.random_range(0..8) {
                0 => [0, -1, 1, i64::MIN, i64::MAX][r.random_range(0..5)],
                1..=3 => r.random_range(-200..200),
                _ => r.random(),
            }
        }
    }

    impl Arb for bool {
        fn arb(r: &mut TestRng) -> Self {
            r.random()
        }
    }

    /// Characters of every UTF-8 length, NUL, and the BMP edges Java cares about.
    const CHARS: &[char] = &[
        'a',
        'z',
        '/',
        '.',
        ':',
        '0',
        '\0',
        '\u{7f}',
        '\u{80}',
        'é',
        '\u{7ff}',
        '\u{800}',
        '中',
        '\u{d7ff}',
        '\u{e000}',
        '\u{fffd}',
        '\u{ffff}',
        '\u{10000}',
        '😀',
        '\u{10ffff}',
    ];

    impl Arb for String {
        fn arb(r: &mut TestRng) -> Self {
            let len = match r.random_range(0..32) {
                0..=3 => 0,
                4 => r.random_range(0..300),
                _ => r.random_range(0..10),
            };
            let mut out = String::with_capacity(len);
            for _ in 0..len {
                // One draw per char: half ASCII letters, half from CHARS.
                let x = r.next_u32();
                out.push(if x & 1 == 0 {
                    char::from(b'a' + ((x >> 1) % 26) as u8)
                } else {
                    CHARS[(x >> 1) as usize % CHARS.len()]
                });
            }
            out
        }
    }

    impl Arb for Bytes {
        fn arb(r: &mut TestRng) -> Self {
            let len = match r.random_range(0..32) {
                0..=3 => 0,
                4 => r.random_range(0..600),
                _ => r.random_range(0..20),
            };
            let mut v = vec![0u8; len];
            r.fill(&mut v[..]);
            Bytes::from(v)
        }
    }

    impl Arb for Option<Bytes> {
        fn arb(r: &mut TestRng) -> Self {
            r.random_bool(0.75).then(|| Bytes::arb(r))
        }
    }

    impl<T: Arb> Arb for Vec<T> {
        fn arb(r: &mut TestRng) -> Self {
            let len = match r.random_range(0..32) {
                0..=5 => 0,
                6 => r.random_range(0..16),
                _ => r.random_range(0..4),
            };
            (0..len).map(|_| T::arb(r)).collect()
        }
    }

    macro_rules! arb_records {
    ($($t:ident { $($f:ident),* $(,)? })*) => {$(
        impl Arb for $t {
            fn arb(r: &mut TestRng) -> Self {
                Self { $($f: Arb::arb(r)),* }
            }
        }
    )*};
}

    arb_records! {
        Id { scheme, id }
        Acl { perms, id }
        Stat { czxid, mzxid, ctime, mtime, version, cversion, aversion, ephemeral_owner, data_length,
               num_children, pzxid }
        ClientInfo { auth_scheme, user }
        RequestHeader { xid, op }
        ReplyHeader { xid, zxid, err }
        WatcherEvent { event_type, state, path }
        AuthPacket { auth_type, scheme, auth }
        SetWatches { relative_zxid, data_watches, exist_watches, child_watches }
        SetWatches2 { relative_zxid, data_watches, exist_watches, child_watches, persistent_watches,
                      persistent_recursive_watches }
        CreateRequest { path, data, acl, flags }
        CreateTtlRequest { path, data, acl, flags, ttl }
        DeleteRequest { path, version }
        PathWatchRequest { path, watch }
        PathRequest { path }
        SetDataRequest { path, data, version }
        SetAclRequest { path, acl, version }
        CheckVersionRequest { path, version }
        AddWatchRequest { path, mode }
        WatchesRequest { path, watcher_type }
        ReconfigRequest { joining_servers, leaving_servers, new_members, cur_config_id }
        CreateResponse { path }
        Create2Response { path, stat }
        StatResponse { stat }
        GetDataResponse { data, stat }
        GetAclResponse { acl, stat }
        GetChildrenResponse { children }
        GetChildren2Response { children, stat }
        PathResponse { path }
        IntResponse { value }
        WhoAmIResponse { client_info }
        SaslToken { token }
        MultiHeader { op, done, err }
    }

    impl Arb for ConnectRequest {
        const OPTIONAL_TAIL: bool = true;
        fn arb(r: &mut TestRng) -> Self {
            Self {
                protocol_version: Arb::arb(r),
                last_zxid_seen: Arb::arb(r),
                timeout: Arb::arb(r),
                session_id: Arb::arb(r),
                passwd: Arb::arb(r),
                read_only: r.random_bool(0.7).then(|| r.random()),
            }
        }
    }

    impl Arb for ConnectResponse {
        const OPTIONAL_TAIL: bool = true;
        fn arb(r: &mut TestRng) -> Self {
            Self {
                protocol_version: Arb::arb(r),
                timeout: Arb::arb(r),
                session_id: Arb::arb(r),
                passwd: Arb::arb(r),
                read_only: r.random_bool(0.7).then(|| r.random()),
            }
        }
    }

    impl Arb for MultiOp {
        fn arb(r: &mut TestRng) -> Self {
            match r.random_range(0..9) {
                0 => Self::Create {
                    op: OpCode::Create,
                    req: Arb::arb(r),
                },
                1 => Self::Create {
                    op: OpCode::Create2,
                    req: Arb::arb(r),
                },
                2 => Self::Create {
                    op: OpCode::CreateContainer,
                    req: Arb::arb(r),
                },
                3 => Self::CreateTtl(Arb::arb(r)),
                4 => Self::Delete(Arb::arb(r)),
                5 => Self::SetData(Arb::arb(r)),
                6 => Self::Check(Arb::arb(r)),
                7 => Self::GetData(Arb::arb(r)),
                _ => Self::GetChildren(Arb::arb(r)),
            }
        }
    }

    impl Arb for MultiRequest {
        fn arb(r: &mut TestRng) -> Self {
            Self { ops: Arb::arb(r) }
        }
    }

    impl Arb for MultiResult {
        fn arb(r: &mut TestRng) -> Self {
            match r.random_range(0..8) {
                0 => Self::Create(Arb::arb(r)),
                1 => Self::Create2(Arb::arb(r)),
                2 => Self::Delete,
                3 => Self::SetData(Arb::arb(r)),
                4 => Self::Check,
                5 => Self::GetData(Arb::arb(r)),
                6 => Self::GetChildren(Arb::arb(r)),
                _ => Self::Error(Arb::arb(r)),
            }
        }
    }

    impl Arb for MultiResponse {
        fn arb(r: &mut TestRng) -> Self {
            Self {
                results: Arb::arb(r),
            }
        }
    }

    /// Runs `$check::<T>(name, seed)` for every record type with a `Decode` impl.
    macro_rules! for_each_record {
    ($check:ident) => {
        for_each_record!(@ $check;
            Id, Acl, Stat, ClientInfo, ConnectRequest, ConnectResponse, RequestHeader, ReplyHeader,
            WatcherEvent, AuthPacket, SetWatches, SetWatches2, CreateRequest, CreateTtlRequest,
            DeleteRequest, PathWatchRequest, PathRequest, SetDataRequest, SetAclRequest,
            CheckVersionRequest, AddWatchRequest, WatchesRequest, ReconfigRequest, CreateResponse,
            Create2Response, StatResponse, GetDataResponse, GetAclResponse, GetChildrenResponse,
            GetChildren2Response, PathResponse, IntResponse, WhoAmIResponse, SaslToken, MultiHeader,
            MultiRequest, MultiResponse,
        )
    };
    (@ $check:ident; $($t:ident),* $(,)?) => {{
        let mut n = 0u64;
        $(
            n += 1;
            $check::<$t>(stringify!($t), 0x5eed_0000 + n);
        )*
        n
    }};
}

    fn encode<T: Encode>(v: &T) -> Bytes {
        let mut b = BytesMut::new();
        v.encode(&mut b);
        b.freeze()
    }

    /// Decodes untrusted bytes (a panic fails the test). On success the value
    /// must survive its own encoding, which is never longer than what was read
    /// (CESU-8 pairs shrink, null strings and vectors read as empty).
    fn decode_any<T: Decode + Encode + PartialEq + Debug>(name: &str, input: &[u8]) -> Option<T> {
        let mut buf = Bytes::copy_from_slice(input);
        let v = T::decode(&mut buf).ok()?;
        let consumed = input.len() - buf.len();
        let re = encode(&v);
        assert!(re.len() <= consumed, "{name}: {input:02x?}");
        match decode_exact::<T>(re.clone()) {
            Ok(back) => assert_eq!(back, v, "{name}: {input:02x?}"),
            Err(e) => panic!("{name}: re-encoding {re:02x?} of {v:?} does not decode: {e}"),
        }
        // The exact variant agrees with the streaming one.
        match decode_exact::<T>(Bytes::copy_from_slice(input)) {
            Ok(exact) => {
                assert_eq!(consumed, input.len(), "{name}");
                assert_eq!(exact, v, "{name}");
            }
            Err(DecodeError::Invalid(_)) => assert!(consumed < input.len(), "{name}"),
            Err(e) => panic!("{name}: {e} after a successful decode of {input:02x?}"),
        }
        Some(v)
    }

    /// A proper prefix of a valid encoding: `Truncated`, with an honest `needed`.
    /// Only the handshake records may instead decode (without `readOnly`).
    fn check_prefix<T: Arb + Decode + Encode + PartialEq + Debug>(
        name: &str,
        full: &Bytes,
        k: usize,
    ) {
        let prefix = full.slice(..k);
        match T::decode(&mut prefix.clone()) {
            Err(DecodeError::Truncated { needed, .. }) => {
                assert!(
                    (1..=full.len() - k).contains(&needed),
                    "{name}: needed {needed} at {k}/{}",
                    full.len()
                );
            }
            Ok(v) if T::OPTIONAL_TAIL && k + 1 == full.len() => assert_eq!(encode(&v), prefix),
            other => panic!(
                "{name}: prefix {k}/{} of {full:02x?} gave {other:?}",
                full.len()
            ),
        }
    }

    fn check_round_trip<T: Arb + Decode + Encode + PartialEq + Debug + Clone>(
        name: &str,
        seed: u64,
    ) {
        let mut r = TestRng::seed_from_u64(seed);
        for _ in 0..ITERS {
            let v = T::arb(&mut r);
            let enc = encode(&v);
            match decode_exact::<T>(enc.clone()) {
                Ok(back) => assert_eq!(back, v, "{name}: {enc:02x?}"),
                Err(e) => panic!("{name}: {v:?} encoded as {enc:02x?} does not decode: {e}"),
            }
            // The streaming decoder stops at the record's end.
            let mut more = BytesMut::from(&enc[..]);
            more.extend_from_slice(&[0xde, 0xad]);
            let mut more = more.freeze();
            if !T::OPTIONAL_TAIL {
                assert_eq!(T::decode(&mut more).unwrap(), v, "{name}");
                assert_eq!(&more[..], &[0xde, 0xad], "{name}");
            }
        }
    }

    fn check_truncations<T: Arb + Decode + Encode + PartialEq + Debug>(name: &str, seed: u64) {
        let mut r = TestRng::seed_from_u64(seed);
        for i in 0..ITERS {
            let enc = encode(&T::arb(&mut r));
            if i % 50 == 0 {
                // Every prefix of some values.
                for k in 0..enc.len() {
                    check_prefix::<T>(name, &enc, k);
                }
            } else if !enc.is_empty() {
                let k = r.random_range(0..enc.len());
                check_prefix::<T>(name, &enc, k);
            }
        }
    }

    fn check_mutations<T: Arb + Decode + Encode + PartialEq + Debug>(name: &str, seed: u64) {
        let mut r = TestRng::seed_from_u64(seed);
        let mut decoded = 0;
        for _ in 0..ITERS {
            let mut m = encode(&T::arb(&mut r)).to_vec();
            if m.is_empty() {
                continue;
            }
            for _ in 0..r.random_range(1..=3) {
                let at = r.random_range(0..m.len());
                match r.random_range(0..4) {
                    0 => m[at] ^= 1 << r.random_range(0..8),
                    1 => m[at] = 0xff,
                    2 => m[at] = r.random(),
                    _ => m[at] = m[at].wrapping_add(1),
                }
            }
            if r.random_bool(0.2) {
                let cut = r.random_range(0..=m.len());
                m.truncate(cut);
            }
            decoded += usize::from(decode_any::<T>(name, &m).is_some());
        }
        // Most flips land in values, not lengths: the decoder mostly still succeeds.
        assert!(decoded > 0, "{name}: no mutation decoded");
    }

    fn check_random_bytes<T: Arb + Decode + Encode + PartialEq + Debug>(name: &str, seed: u64) {
        let mut r = TestRng::seed_from_u64(seed);
        let mut input = Vec::new();
        for _ in 0..ITERS {
            let len = match r.random_range(0..4) {
                0 => r.random_range(0..8),
                1 | 2 => r.random_range(0..96),
                _ => r.random_range(0..600),
            };
            input.resize(len, 0);
            r.fill(&mut input[..]);
            // Small lengths and counts (and -1) are where structure hides.
            if len >= 4 && r.random_bool(0.5) {
                let at = r.random_range(0..=len - 4);
                let v: i32 = [-1, 0, 1, 2, 3, r.random_range(-2..40)][r.random_range(0..6)];
                input[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            decode_any::<T>(name, &input);
        }
    }

    #[test]
    fn random_records_round_trip() {
        assert_eq!(for_each_record!(check_round_trip), 37);
    }

    #[test]
    fn truncated_records_are_truncated() {
        for_each_record!(check_truncations);
    }

    #[test]
    fn mutated_records_never_panic() {
        for_each_record!(check_mutations);
    }

    #[test]
    fn random_bytes_never_panic() {
        for_each_record!(check_random_bytes);
    }

    #[test]
    fn multi_results_canonicalise_create_types() {
        // 3.9 never sends types 19/21 in a MultiResponse (Java's deserializer
        // rejects them); we read them as Create2 and write 15.
        let mut r = TestRng::seed_from_u64(7);
        let c2 = Create2Response::arb(&mut r);
        for op in [OpCode::CreateContainer, OpCode::CreateTtl] {
            let mut b = BytesMut::new();
            MultiHeader {
                op: op.code(),
                done: false,
                err: 0,
            }
            .encode(&mut b);
            c2.encode(&mut b);
            MultiHeader {
                op: -1,
                done: true,
                err: -1,
            }
            .encode(&mut b);
            let got = decode_any::<MultiResponse>("MultiResponse", &b).unwrap();
            assert_eq!(got.results, vec![MultiResult::Create2(c2.clone())]);
        }
    }

    /// A `max` for `decode_frame`: tiny, small, the default, or anything up to 16 MiB.
    fn random_max(r: &mut TestRng) -> usize {
        match r.random_range(0..5) {
            0 => r.random_range(0..16),
            1 => r.random_range(0..4096),
            2 => DEFAULT_JUTE_MAXBUFFER,
            3 => 2 * DEFAULT_JUTE_MAXBUFFER,
            _ => r.random_range(0..1 << 24),
        }
    }

    /// Drains `buf` with `decode_frame`, checking every answer against the bytes.
    fn drain_frames(buf: &mut BytesMut, max: usize) -> (Vec<Bytes>, Option<FrameError>) {
        let mut frames = Vec::new();
        loop {
            let before = buf.clone();
            let prefix = (before.len() >= 4)
                .then(|| i32::from_be_bytes([before[0], before[1], before[2], before[3]]));
            match decode_frame(buf, max) {
                Ok(Some(f)) => {
                    let len = usize::try_from(prefix.unwrap()).unwrap();
                    assert!(len <= max);
                    assert_eq!(f.len(), len);
                    assert_eq!(&f[..], &before[4..4 + len]);
                    assert_eq!(&buf[..], &before[4 + len..]);
                    frames.push(f);
                }
                Ok(None) => {
                    assert_eq!(&buf[..], &before[..], "Ok(None) must not consume");
                    if let Some(p) = prefix {
                        let len = usize::try_from(p).unwrap();
                        assert!(len <= max && 4 + len > before.len());
                    }
                    return (frames, None);
                }
                Err(e) => {
                    assert_eq!(&buf[..], &before[..], "errors must not consume");
                    let p = prefix.unwrap();
                    match e {
                        FrameError::NegativeLength(n) => assert!(n < 0 && n == p),
                        FrameError::TooLarge { len, max: m } => {
                            assert_eq!((i64::try_from(len).unwrap(), m), (i64::from(p), max));
                            assert!(len > max);
                        }
                    }
                    return (frames, Some(e));
                }
            }
        }
    }

    #[test]
    fn decode_frame_random_bytes_and_maxima() {
        let mut r = TestRng::seed_from_u64(0xf7a3e);
        let mut input = Vec::new();
        for _ in 0..ITERS {
            let len = r.random_range(0..64);
            input.resize(len, 0);
            r.fill(&mut input[..]);
            if len >= 4 && r.random_bool(0.5) {
                // A plausible length so that some frames complete.
                let n = r.random_range(0..len as u32) as i32;
                input[..4].copy_from_slice(&n.to_be_bytes());
            }
            let max = random_max(&mut r);
            let mut buf = BytesMut::from(&input[..]);
            drain_frames(&mut buf, max);
        }
    }

    #[test]
    fn frames_round_trip_in_random_chunks() {
        let mut r = TestRng::seed_from_u64(0xc4a2c);
        for _ in 0..2_000 {
            let payloads: Vec<Bytes> = (0..r.random_range(0..8))
                .map(|_| Bytes::arb(&mut r))
                .collect();
            let mut wire = BytesMut::new();
            for p in &payloads {
                assert_eq!(encode_frame(&mut wire, |b| b.extend_from_slice(p)), p.len());
            }
            let largest = payloads.iter().map(Bytes::len).max().unwrap_or(0);
            let max = if r.random_bool(0.2) {
                usize::MAX
            } else {
                largest + r.random_range(0..3)
            };
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let n = r.random_range(1..=rest.len().min(64));
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                let (frames, err) = drain_frames(&mut buf, max);
                assert_eq!(err, None);
                got.extend(frames);
            }
            assert!(buf.is_empty());
            assert_eq!(got, payloads);
            // A limit one below the largest frame rejects it.
            if largest > 0 {
                let mut buf = BytesMut::from(&wire[..]);
                let (_, err) = drain_frames(&mut buf, largest - 1);
                assert!(matches!(err, Some(FrameError::TooLarge { .. })));
            }
        }
    }
}
