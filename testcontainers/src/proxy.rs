//! A TCP fault proxy between a client and a server, for network fault tests.
//!
//! Each accepted connection is paired with a fresh connection to the target
//! and bytes are pumped both ways. The proxy's [`FaultMode`] decides what
//! happens to them, and can be changed at any time:
//!
//! - [`FaultMode::Pass`]: forward everything;
//! - [`FaultMode::Blackhole`]: accept and keep connections open but forward
//!   nothing (bytes wait, as in a partition where TCP keeps retransmitting);
//!   switching back to `Pass` delivers them;
//! - [`FaultMode::Delay`]: forward every chunk after a delay, in order;
//! - [`FaultMode::Refuse`]: close new connections at once (open ones pass).
//!
//! One-off faults: [`FaultProxy::cut`] closes every open connection (both
//! sides); [`FaultProxy::cut_after_downstream`] lets N more server-to-client
//! bytes through and then cuts, to lose a reply mid-flight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultMode {
    /// Forward everything.
    Pass,
    /// Forward nothing; connections stay open and bytes wait.
    Blackhole,
    /// Forward every chunk after this delay.
    Delay(Duration),
    /// Close new connections immediately; existing ones behave as `Pass`.
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    mode: FaultMode,
    /// Incremented by `cut`: connections from an older epoch close.
    epoch: u64,
    /// `Some((before, n))`: connections accepted before the `before`-th
    /// let n more downstream bytes through, then close. Later connections
    /// are not affected.
    cut_after: Option<(usize, usize)>,
}

/// A running fault proxy; stops (and closes its connections) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    control: watch::Sender<Control>,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Closing every connection: bump the epoch.
        self.control.send_modify(|c| c.epoch += 1);
    }
}

impl FaultProxy {
    /// Starts a proxy on a free 127.0.0.1 port forwarding to `target`.
    ///
    /// # Errors
    /// If no local port can be bound.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (control, rx) = watch::channel(Control {
            mode: FaultMode::Pass,
            epoch: 0,
            cut_after: None,
        });
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            target,
            rx,
            open.clone(),
            accepted.clone(),
        ));
        Ok(Self {
            addr,
            target,
            control,
            open,
            accepted,
            task,
        })
    }

    /// The proxy's listening address (give this to the client).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Sets the mode for open and new connections.
    pub fn set_mode(&self, mode: FaultMode) {
        self.control.send_modify(|c| c.mode = mode);
    }

    /// The current mode.
    pub fn mode(&self) -> FaultMode {
        self.control.borrow().mode
    }

    /// Closes every open connection (both sides). New connections are
    /// handled according to the mode.
    pub fn cut(&self) {
        self.control.send_modify(|c| c.epoch += 1);
    }

    /// Lets `n` more bytes flow from server to client on the open
    /// connections, then cuts them: a reply is lost mid-flight.
    pub fn cut_after_downstream(&self, n: usize) {
        let accepted = self.accepted.load(Ordering::SeqCst);
        self.control
            .send_modify(|c| c.cut_after = Some((accepted, n)));
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start.
    pub fn accepted_connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A connect string through the given proxies.
pub fn proxy_connect_string(proxies: &[FaultProxy]) -> String {
    proxies
        .iter()
        .map(|p| p.addr().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    control: watch::Receiver<Control>,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let conn_id = accepted.fetch_add(1, Ordering::SeqCst);
        let ctl = *control.borrow();
        if ctl.mode == FaultMode::Refuse {
            drop(client);
            continue;
        }
        let control = control.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return; // target down: the client sees a closed connection
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            open.fetch_add(1, Ordering::SeqCst);
            let epoch = ctl.epoch;
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = pump(cr, sw, control.clone(), epoch, None);
            let down = pump(sr, cw, control, epoch, Some(conn_id));
            // When either direction ends, both sockets close.
            tokio::select! {
                () = up => {}
                () = down => {}
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Copies `from` to `to` under the proxy's control until EOF, an error, or a cut.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut control: watch::Receiver<Control>,
    epoch: u64,
    // `Some(connection id)` for the server-to-client direction.
    downstream: Option<usize>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut cut_budget: Option<usize> = None;
    loop {
        // Wait until forwarding is allowed (or we are cut).
        loop {
            let c = *control.borrow_and_update();
            if c.epoch != epoch {
                return;
            }
            if let (Some(id), Some((before, n))) = (downstream, c.cut_after) {
                if id < before && cut_budget.is_none() {
                    cut_budget = Some(n);
                }
            }
            if c.mode != FaultMode::Blackhole {
                break;
            }
            if control.changed().await.is_err() {
                return;
            }
        }
        if cut_budget == Some(0) {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            r = control.changed() => {
                if r.is_err() { return; }
                continue;
            }
        };
        let mut chunk = &buf[..n];
        // Re-check the mode for the chunk just read: a blackhole holds it.
        loop {
            let c = *control.borrow_and_update();
            if c.epoch != epoch {
                return;
            }
            match c.mode {
                FaultMode::Blackhole => {
                    if control.changed().await.is_err() {
                        return;
                    }
                }
                FaultMode::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                _ => break,
            }
        }
        if let Some(budget) = cut_budget.as_mut() {
            if chunk.len() >= *budget {
                chunk = &chunk[..*budget];
                let _ = to.write_all(chunk).await;
                let _ = to.flush().await;
                return;
            }
            *budget -= chunk.len();
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}
