//! Feeds the input to the bundled server as the byte stream of one client
//! connection, after a valid handshake when the first byte is even (so the
//! request decoder and every op's handler are reached), raw otherwise
//! (handshake and four-letter-word parsing).
//!
//! Invariants: no panic anywhere in the server (the fuzzer's panic hook
//! aborts, also inside server tasks); the connection ends once the input
//! does; the server still serves a new session afterwards.
//!
//! `cargo +nightly fuzz run server_requests -- -detect_leaks=0` (the server and
//! its runtime live in a static for the whole run, which LeakSanitizer reports
//! at exit).

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use zkit::proto::codes::OpCode;
use zkit::proto::{encode_frame, ConnectRequest, Encode, RequestHeader};
use zkit_server::{FourLetterWords, RunningServer, Server};

struct Fixture {
    rt: Runtime,
    server: RunningServer,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt.block_on(async {
            Server::builder()
                .tick_time(Duration::from_millis(100))
                .four_letter_words(FourLetterWords::all())
                .handshake_timeout(Duration::from_millis(50))
                .start()
                .await
                .expect("server")
        });
        Fixture { rt, server }
    })
}

fn handshake() -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, |b| {
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout: 4000,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        }
        .encode(b)
    });
    buf.to_vec()
}

/// Runs one connection with `input` as everything the client sends and
/// returns what the server answered until it closed the connection or went
/// quiet for 20 ms (the connection then ends from the client side).
async fn session(server: &RunningServer, input: &[u8]) -> Vec<u8> {
    let (client, server_side) = tokio::io::duplex(1 << 16);
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    server.serve_connection(server_side, peer);
    let (mut read, mut write) = tokio::io::split(client);
    let writer = async {
        let _ = write.write_all(input).await;
    };
    let mut out = Vec::new();
    let reader = async {
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_millis(20), read.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(writer, reader) }).await;
    out
}

/// A closeSession request: the server answers and closes the connection,
/// so a run need not wait for it to go quiet.
fn close_session() -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, |b| {
        RequestHeader {
            xid: 0x7fff_fff0,
            op: OpCode::CloseSession.code(),
        }
        .encode(b)
    });
    buf.to_vec()
}

/// A fresh session still gets its ConnectResponse.
async fn still_serving(server: &RunningServer) -> bool {
    let (mut client, server_side) = tokio::io::duplex(1 << 16);
    let peer: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
    server.serve_connection(server_side, peer);
    let check = async {
        client.write_all(&handshake()).await.ok()?;
        let mut len = [0u8; 4];
        client.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        client.read_exact(&mut body).await.ok()?;
        Some(body.len() >= 36)
    };
    tokio::time::timeout(Duration::from_secs(5), check)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    f.rt.block_on(async {
        let mut input = Vec::new();
        let handshaken = data.first().is_some_and(|b| b % 2 == 0);
        if handshaken {
            input.extend(handshake());
        }
        input.extend_from_slice(data.get(1..).unwrap_or_default());
        if handshaken {
            input.extend(close_session());
        }
        session(&f.server, &input).await;
        assert!(still_serving(&f.server).await, "no ConnectResponse after the input");
    });
});
