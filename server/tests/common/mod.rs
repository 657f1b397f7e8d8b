//! Helpers shared by the server's integration tests.
#![allow(dead_code, unreachable_pub)] // each test binary uses a part

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit::proto::{encode_frame, ConnectRequest, ConnectResponse, Decode, Encode};

use zkit_server::{FourLetterWords, RunningServer, Server};
use zkit_testcontainers::{Ensemble, DEFAULT_TICK_TIME};

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("zkit-server-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process (the server binary), SIGKILLed and reaped on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real standalone ZooKeeper and a bundled server with the same tick time
/// and every four-letter word allowed; `None` (the test skips) unless
/// `ZKIT_TEST_BACKEND=zookeeper` asks for real ZooKeeper (then a missing
/// ZooKeeper fails). Neither reaps containers during a test
/// (the reapers' timers would not be in step).
pub async fn real_and_bundled() -> Option<(Ensemble, RunningServer)> {
    let real = Ensemble::builder()
        .size(1)
        .jvm_prop("znode.container.checkIntervalMs", "3600000")
        .start_or_skip()
        .await?;
    let bundled = Server::builder()
        .tick_time(DEFAULT_TICK_TIME)
        .container_check_interval(std::time::Duration::from_secs(3600))
        .four_letter_words(FourLetterWords::all())
        .start()
        .await
        .expect("start the bundled server");
    Some((real, bundled))
}

/// A whole frame (length prefix included) around what `body` writes.
pub fn frame(body: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, body);
    buf.to_vec()
}

/// Reads one frame payload, or `None` at EOF (panics after 5 s).
pub async fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len))
        .await
        .expect("frame within 5 s")
        .ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

/// A raw session: sends a ConnectRequest and returns the stream and response.
pub async fn raw_session(
    srv: &RunningServer,
    timeout_ms: i32,
    read_only: Option<bool>,
) -> (TcpStream, ConnectResponse) {
    let mut s = TcpStream::connect(srv.local_addr()).await.unwrap();
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout: timeout_ms,
        session_id: 0,
        passwd: Bytes::from_static(&[0; 16]),
        read_only,
    };
    s.write_all(&frame(|b| req.encode(b))).await.unwrap();
    let mut body = read_frame(&mut s).await.expect("ConnectResponse");
    let resp = ConnectResponse::decode(&mut body).unwrap();
    (s, resp)
}

/// Runs a third-party client, returning its stdout (plus, if it failed, its
/// status and stderr); fails the test after `limit`.
pub async fn run_client(
    mut cmd: tokio::process::Command,
    stdin: Option<&std::path::Path>,
    limit: Duration,
) -> String {
    use std::process::Stdio;
    let desc = format!("{cmd:?}");
    cmd.stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(p).expect("open stdin file")),
        None => Stdio::null(),
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{desc} timed out after {limit:?}"))
        .unwrap_or_else(|e| panic!("wait {desc}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&format!(
            "\n[exit status {}]\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    text
}

/// `false` (the test is skipped, loudly) unless `ZKIT_TEST_PEERS=1`; then
/// fails when the client `what` is not installed.
pub fn require_peer(ok: bool, what: &str) -> bool {
    if zkit_testcontainers::skip_without_peers(what) {
        return false;
    }
    assert!(
        ok,
        "{what} is not installed; run scripts/install-zookeeper.sh \
         (Debian: zookeeper, python3-kazoo, python3-pure-sasl, libzookeeper-mt-dev)"
    );
    true
}
