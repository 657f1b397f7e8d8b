//! The transport seam: how the session's driver opens a byte stream to a
//! server. Plain TCP ([`TcpConnector`]) is the default; a custom
//! [`Connect`] (set with [`ClientBuilder::connector`](crate::ClientBuilder::connector))
//! can tunnel, wrap the stream in TLS, inject faults, or hand out in-memory
//! streams in tests.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::session::HostAddr;

/// A byte stream to a server: anything readable and writable that can move
/// to the driver's task.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`], what a [`Connect`] hands out.
pub type BoxedIo = Box<dyn Io>;

/// The future of one connection attempt.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<BoxedIo>> + Send + 'static>>;

/// Opens connections to servers for a session.
///
/// The session calls [`connect`](Self::connect) once per attempt, for the
/// host its rotation picked, and then speaks ZooKeeper's protocol over the
/// stream (the handshake first). A connector must:
///
/// - return a stream that is connected end to end (for TLS: after the
///   handshake), or an error: an error counts as a failed attempt, and the
///   session moves on to the next host, as after a refused TCP connection;
/// - not retry on its own: the session owns the rotation, the back-off and
///   the time-outs.
///
/// The session's attempt time-out bounds each attempt: when it passes (or
/// the session gives up, or the client closes), the future is dropped, so it
/// must be cancel safe (dropping it closes whatever it opened).
///
/// ```
/// use std::io;
/// use zkit::{BoxedIo, Connect, ConnectFuture, HostAddr, TcpConnector};
///
/// /// Logs every dial, then connects over plain TCP.
/// struct Logged(TcpConnector);
///
/// impl Connect for Logged {
///     fn connect(&self, host: &HostAddr) -> ConnectFuture {
///         println!("dialing {host}");
///         self.0.connect(host)
///     }
/// }
///
/// # async fn demo() -> zkit::Result<()> {
/// let zk = zkit::Client::builder()
///     .connector(Logged(TcpConnector))
///     .connect("127.0.0.1:2181")
///     .await?;
/// # drop(zk);
/// # Ok(()) }
/// ```
pub trait Connect: Send + Sync + 'static {
    /// Starts a connection attempt to `host`.
    fn connect(&self, host: &HostAddr) -> ConnectFuture;
}

/// The default [`Connect`]: TCP, to each address `host` resolves to in
/// turn, with `TCP_NODELAY` set (requests are small and latency-bound).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connect for TcpConnector {
    fn connect(&self, host: &HostAddr) -> ConnectFuture {
        let host = host.clone();
        Box::pin(async move {
            let stream = dial_tcp(&host).await?;
            Ok(Box::new(stream) as BoxedIo)
        })
    }
}

/// Resolves `host` and connects to the first address that accepts.
async fn dial_tcp(host: &HostAddr) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{host} resolved to nothing"),
    );
    for addr in tokio::net::lookup_host((host.host.as_str(), host.port)).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl fmt::Debug for dyn Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Connect")
    }
}
