//! Ending a client's session on the server, on demand.
//!
//! A second connection presents the session's id and password (ZooKeeper
//! then closes the session's other connection) and sends closeSession. The
//! server removes the session and its ephemeral nodes; when the original
//! client reconnects it is told the session expired. This is a real
//! server-side expiry, without waiting for the timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::FixtureError;

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> FixtureError + '_ {
    move |source| FixtureError::Io {
        context: context.to_string(),
        source,
    }
}

async fn read_frame(s: &mut TcpStream, what: &'static str) -> Result<Vec<u8>, FixtureError> {
    let len = s.read_i32().await.map_err(io_err(what))?;
    if !(0..=1 << 20).contains(&len) {
        return Err(FixtureError::Protocol(format!("frame length {len}")));
    }
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf)
        .await
        .map_err(io_err("reading a frame"))?;
    Ok(buf)
}

/// Ends session `session_id` (with its 16-byte `password`) on the server at
/// `addr`, as if it had expired. Returns `Ok(false)` if the server already
/// considered it expired or unknown.
///
/// # Errors
/// Connection failures or unexpected replies.
pub async fn expire_session(
    addr: SocketAddr,
    session_id: i64,
    password: &[u8],
) -> Result<bool, FixtureError> {
    // The session's owner reconnects as soon as our handshake takes its
    // connection over, and its handshake then closes ours, possibly before
    // our closeSession was answered: try again until the server either
    // answers the closeSession or no longer knows the session.
    let mut inconclusive = false;
    for _ in 0..20 {
        match expire_once(addr, session_id, password).await {
            Ok(killed) => return Ok(killed || inconclusive),
            Err(FixtureError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                inconclusive = true;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(FixtureError::Protocol(
        "the session's owner kept taking it back; not expired".into(),
    ))
}

async fn expire_once(
    addr: SocketAddr,
    session_id: i64,
    password: &[u8],
) -> Result<bool, FixtureError> {
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(io_err("connecting to expire a session"))?;
        // ConnectRequest (PROTOCOL.md §4.2): protocolVersion, lastZxidSeen,
        // timeOut, sessionId, passwd, readOnly.
        let mut req = Vec::with_capacity(64);
        req.extend_from_slice(&0i32.to_be_bytes());
        req.extend_from_slice(&0i64.to_be_bytes());
        req.extend_from_slice(&30_000i32.to_be_bytes());
        req.extend_from_slice(&session_id.to_be_bytes());
        req.extend_from_slice(&(password.len() as i32).to_be_bytes());
        req.extend_from_slice(password);
        req.push(0);
        let mut frame = (req.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&req);
        // closeSession (RequestHeader{xid 1, type -11}) in the same write:
        // the server reads it right after the handshake, before the owner
        // of the session (whose connection the handshake just took over)
        // can reconnect and take the session back, which would close this
        // connection first.
        frame.extend_from_slice(&8i32.to_be_bytes());
        frame.extend_from_slice(&1i32.to_be_bytes());
        frame.extend_from_slice(&(-11i32).to_be_bytes());
        s.write_all(&frame)
            .await
            .map_err(io_err("sending ConnectRequest and closeSession"))?;
        let resp = read_frame(&mut s, "reading the ConnectResponse").await?;
        if resp.len() < 16 {
            return Err(FixtureError::Protocol("short ConnectResponse".into()));
        }
        let timeout = i32::from_be_bytes(resp[4..8].try_into().expect("4 bytes"));
        let sid = i64::from_be_bytes(resp[8..16].try_into().expect("8 bytes"));
        if timeout <= 0 || sid == 0 {
            return Ok(false);
        }
        // Reply header (xid, zxid, err); then the server closes.
        let reply = read_frame(&mut s, "reading the closeSession reply").await?;
        if reply.len() < 16 {
            return Err(FixtureError::Protocol("short closeSession reply".into()));
        }
        Ok(true)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| FixtureError::Protocol("expiring the session timed out".into()))?
}
