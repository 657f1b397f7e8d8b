//! The fault proxy against a local echo server (no ZooKeeper needed).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use zkit_testcontainers::{FaultMode, FaultProxy};

async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn roundtrip(s: &mut TcpStream, msg: &[u8], wait: Duration) -> Option<Vec<u8>> {
    s.write_all(msg).await.ok()?;
    let mut got = vec![0u8; msg.len()];
    match timeout(wait, s.read_exact(&mut got)).await {
        Ok(Ok(_)) => Some(got),
        _ => None,
    }
}

#[tokio::test]
async fn pass_blackhole_and_release() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        roundtrip(&mut s, b"hello", Duration::from_secs(2))
            .await
            .as_deref(),
        Some(&b"hello"[..])
    );
    proxy.set_mode(FaultMode::Blackhole);
    assert_eq!(
        roundtrip(&mut s, b"held", Duration::from_millis(300)).await,
        None,
        "nothing passes a black hole"
    );
    proxy.set_mode(FaultMode::Pass);
    let mut got = [0u8; 4];
    timeout(Duration::from_secs(2), s.read_exact(&mut got))
        .await
        .expect("held bytes delivered after release")
        .unwrap();
    assert_eq!(&got, b"held");
    assert_eq!(proxy.open_connections(), 1);
}

#[tokio::test]
async fn cut_closes_open_connections_and_new_ones_work() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(roundtrip(&mut s, b"a", Duration::from_secs(2))
        .await
        .is_some());
    proxy.cut();
    let mut buf = [0u8; 1];
    let n = timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("cut is visible at once");
    assert!(matches!(n, Ok(0) | Err(_)), "connection closed: {n:?}");
    let mut s2 = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(roundtrip(&mut s2, b"b", Duration::from_secs(2))
        .await
        .is_some());
    assert_eq!(proxy.accepted_connections(), 2);
}

#[tokio::test]
async fn cut_after_downstream_bytes_loses_the_rest() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(roundtrip(&mut s, b"x", Duration::from_secs(2))
        .await
        .is_some());
    proxy.cut_after_downstream(3);
    s.write_all(b"123456").await.unwrap();
    let mut got = Vec::new();
    timeout(Duration::from_secs(2), s.read_to_end(&mut got))
        .await
        .expect("closed after the budget")
        .ok();
    assert_eq!(got, b"123", "exactly the budget got through");
}

#[tokio::test]
async fn refuse_and_delay() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    proxy.set_mode(FaultMode::Refuse);
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        roundtrip(&mut s, b"r", Duration::from_millis(500)).await,
        None
    );
    proxy.set_mode(FaultMode::Delay(Duration::from_millis(150)));
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let t0 = Instant::now();
    assert!(roundtrip(&mut s, b"d", Duration::from_secs(3))
        .await
        .is_some());
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "delayed both ways: {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn cut_after_spares_connections_opened_later() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(roundtrip(&mut old, b"x", Duration::from_secs(2))
        .await
        .is_some());
    proxy.cut_after_downstream(0);
    let mut got = Vec::new();
    old.write_all(b"lost").await.unwrap();
    timeout(Duration::from_secs(2), old.read_to_end(&mut got))
        .await
        .expect("old connection cut")
        .ok();
    assert!(got.is_empty());
    let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        roundtrip(&mut new, b"kept", Duration::from_secs(2))
            .await
            .as_deref(),
        Some(&b"kept"[..]),
        "a later connection is not cut"
    );
}
