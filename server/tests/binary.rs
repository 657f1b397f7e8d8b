//! The `zkit-server` binary: zoo.cfg, startup, a real client, SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zkit::{Client, CreateOptions};

mod common;

use common::{free_port, Guard, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_zkit-server");
const SOON: Duration = Duration::from_secs(10);

async fn srvr(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"srvr").await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(SOON, s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(out)
}

async fn four_letter(addr: SocketAddr, word: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(word.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(SOON, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn serves_a_zoo_cfg_and_exits_cleanly_on_sigterm() {
    let dir = TempDir::new("cfg");
    let port = free_port();
    let cfg = dir.0.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "# test config\ntickTime=100\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             4lw.commands.whitelist=srvr,ruok\ninitLimit=10\n"
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // The startup line names the address.
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert_eq!(line.trim(), format!("zkit-server listening on {addr}"));

    let deadline = Instant::now() + SOON;
    let answer = loop {
        if let Some(out) = srvr(addr).await {
            break out;
        }
        assert!(Instant::now() < deadline, "no srvr answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(answer.contains("Mode: standalone"), "{answer}");
    assert_eq!(four_letter(addr, "ruok").await, "imok");
    assert!(four_letter(addr, "conf")
        .await
        .contains("not in the whitelist"));

    let c = Client::connect(&addr.to_string()).await.unwrap();
    c.create("/from-binary", b"hi", &CreateOptions::default())
        .await
        .unwrap();
    let (data, _) = c.get_data("/from-binary").await.unwrap();
    assert_eq!(&data[..], b"hi");
    c.close().await.unwrap();

    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + SOON;
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn reports_bad_config_values_and_prints_help() {
    let dir = TempDir::new("bad");
    let cfg = dir.0.join("zoo.cfg");
    std::fs::write(&cfg, "clientPort=0\n\ntickTime=soon\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("tickTime"), "{err}");

    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--four-letter-words"));
}
