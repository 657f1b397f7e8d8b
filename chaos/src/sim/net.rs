//! The simulated network between the clients and the bundled server, on
//! tokio's paused (virtual) clock: every connection is a pair of in-memory
//! pipes joined by two relay tasks that deliver each chunk after a delay
//! drawn from the schedule's seed, and that the nemesis can cut, freeze or
//! slow down.
//!
//! ```text
//!  client ── duplex ── relay (up) ── duplex ── server.serve_connection
//!         ◀─ duplex ── relay (down) ◀─ duplex ─
//! ```
//!
//! Three host names (`sim0`, `sim1`, `sim2`) all lead to the one server, so
//! that a client partitioned from one host fails over to another.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zkit::{Connect, ConnectFuture, HostAddr};
use zkit_server::RunningServer;

use crate::workloads::lock;

/// Hosts in every simulated connect string.
pub(crate) const HOSTS: usize = 3;

/// The connect string naming the simulated hosts.
pub(crate) fn connect_string() -> String {
    (0..HOSTS)
        .map(|h| format!("sim{h}:2181"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One connection's controls, shared by its two relays and the nemesis.
struct Link {
    client: usize,
    host: usize,
    /// Both directions end now; what is in flight is lost.
    cut: CancellationToken,
    /// The client's side ends now, but what is already on its way to the
    /// server still arrives, `late` later than it would have, then the
    /// server's side ends: bytes of an old connection reach the server
    /// after the client moved on.
    half_cut: CancellationToken,
    late: Mutex<Duration>,
    /// A half cut waiting for the next request bytes (their delay then).
    armed: Mutex<Option<Duration>>,
    /// While true nothing is delivered either way (a partition that TCP
    /// has not noticed).
    frozen: watch::Sender<bool>,
    /// This link's delays (one generator per link, so that how the tasks
    /// interleave does not change which delay a chunk gets).
    rng: Mutex<StdRng>,
}

/// Extra delay per chunk while a slow-down is on: (lo, hi) microseconds.
#[derive(Debug, Clone, Copy)]
struct Delay(u64, u64);

/// The base one-way latency, microseconds.
const BASE: Delay = Delay(20, 1_500);

struct State {
    server: Option<Arc<RunningServer>>,
    links: Vec<Arc<Link>>,
    /// (client, host) pairs that cannot reach each other.
    partitioned: HashSet<(usize, usize)>,
    /// Per client: the delay in force, when not the base one.
    delay: HashMap<usize, Delay>,
    /// Dials are refused (the server is down).
    down: bool,
    rng: StdRng,
    seed: u64,
    dials: u64,
}

/// The network: hands out connections (a [`Connect`] per client) and takes
/// the nemesis's orders.
#[derive(Clone)]
pub(crate) struct Net {
    state: Arc<Mutex<State>>,
}

impl Net {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                server: None,
                links: Vec::new(),
                partitioned: HashSet::new(),
                delay: HashMap::new(),
                down: false,
                rng: StdRng::seed_from_u64(seed),
                seed,
                dials: 0,
            })),
        }
    }

    pub(crate) fn set_server(&self, server: Arc<RunningServer>) {
        lock(&self.state).server = Some(server);
    }

    /// The connector of client `client`.
    pub(crate) fn connector(&self, client: usize) -> SimConnector {
        SimConnector {
            net: self.clone(),
            client,
        }
    }

    /// Connections made so far.
    pub(crate) fn dials(&self) -> u64 {
        lock(&self.state).dials
    }

    fn links_of(&self, client: Option<usize>, host: Option<usize>) -> Vec<Arc<Link>> {
        let mut st = lock(&self.state);
        st.links
            .retain(|l| !l.cut.is_cancelled() && !l.half_cut.is_cancelled());
        st.links
            .iter()
            .filter(|l| client.is_none_or(|c| l.client == c) && host.is_none_or(|h| l.host == h))
            .cloned()
            .collect()
    }

    /// Ends client `client`'s connections (all of them with `None`), losing
    /// what is in flight.
    pub(crate) fn cut(&self, client: Option<usize>) -> usize {
        let links = self.links_of(client, None);
        for l in &links {
            l.cut.cancel();
        }
        links.len()
    }

    /// Ends client `client`'s connections on its side only, the moment it
    /// next sends something: those bytes still reach the server, `late`
    /// later, after the client has seen the loss (and maybe reconnected).
    pub(crate) fn half_cut(&self, client: usize, late: Duration) -> usize {
        let links = self.links_of(Some(client), None);
        for l in &links {
            *lock(&l.armed) = Some(late);
        }
        links.len()
    }

    /// Partitions `client` from `host` (every host with `None`): its open
    /// connections there freeze, new dials there hang.
    pub(crate) fn partition(&self, client: usize, host: Option<usize>) {
        {
            let mut st = lock(&self.state);
            for h in 0..HOSTS {
                if host.is_none_or(|x| x == h) {
                    st.partitioned.insert((client, h));
                }
            }
        }
        for l in self.links_of(Some(client), host) {
            l.frozen.send_replace(true);
        }
    }

    /// Slows client `client`'s traffic down to `lo..hi` µs per chunk.
    pub(crate) fn slow(&self, client: usize, lo: u64, hi: u64) {
        lock(&self.state)
            .delay
            .insert(client, Delay(lo, hi.max(lo + 1)));
    }

    /// The server goes down: every connection ends, dials are refused.
    pub(crate) fn server_down(&self) {
        lock(&self.state).down = true;
        self.cut(None);
    }

    /// Everything back to normal: partitions, slow-downs, the server.
    pub(crate) fn heal(&self) {
        {
            let mut st = lock(&self.state);
            st.partitioned.clear();
            st.delay.clear();
            st.down = false;
        }
        for l in self.links_of(None, None) {
            l.frozen.send_replace(false);
        }
    }

    /// A one-way delay for client `client`'s next chunk, drawn by `rng`
    /// (the network's own when `None`).
    fn delay(&self, client: usize, rng: Option<&Mutex<StdRng>>) -> Duration {
        let mut st = lock(&self.state);
        let Delay(lo, hi) = st.delay.get(&client).copied().unwrap_or(BASE);
        let us = match rng {
            Some(r) => lock(r).random_range(lo..hi),
            None => st.rng.random_range(lo..hi),
        };
        Duration::from_micros(us)
    }

    fn dial(&self, client: usize, host: usize) -> Result<Option<DuplexStream>, io::Error> {
        let mut st = lock(&self.state);
        st.dials += 1;
        if st.down {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "simulated server down",
            ));
        }
        if st.partitioned.contains(&(client, host)) {
            return Ok(None);
        }
        let Some(server) = st.server.clone() else {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "no server",
            ));
        };
        let (client_end, up_in) = tokio::io::duplex(64 << 10);
        let (up_out, server_end) = tokio::io::duplex(64 << 10);
        let link = Arc::new(Link {
            client,
            host,
            cut: CancellationToken::new(),
            half_cut: CancellationToken::new(),
            late: Mutex::new(Duration::ZERO),
            armed: Mutex::new(None),
            frozen: watch::channel(false).0,
            rng: Mutex::new(StdRng::seed_from_u64(
                st.seed ^ (client as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ st.dials,
            )),
        });
        st.links.push(link.clone());
        drop(st);
        // Each client dials from an address of its own.
        let ip = Ipv4Addr::new(
            10,
            0,
            u8::try_from(client / 250).unwrap_or(255),
            u8::try_from(client % 250 + 1).unwrap_or(255),
        );
        server.serve_connection(server_end, SocketAddr::new(IpAddr::V4(ip), 40_000));
        let (up_read, down_write) = tokio::io::split(up_in);
        let (down_read, up_write) = tokio::io::split(up_out);
        tokio::spawn(relay(self.clone(), link.clone(), up_read, up_write, true));
        tokio::spawn(relay(self.clone(), link, down_read, down_write, false));
        Ok(Some(client_end))
    }
}

/// Carries chunks one way, each after its delay, in order; an end of
/// stream is delivered the same way (a partition hides it too).
async fn relay<R, W>(net: Net, link: Arc<Link>, mut from: R, mut to: W, upstream: bool)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 << 10];
    let mut last = Instant::now();
    let mut frozen = link.frozen.subscribe();
    loop {
        let n = tokio::select! {
            () = link.cut.cancelled() => return,
            () = link.half_cut.cancelled() => {
                if !upstream {
                    // The client sees its connection end now.
                    let _ = to.shutdown().await;
                }
                return;
            }
            r = from.read(&mut buf) => r.unwrap_or(0),
        };
        if upstream && n > 0 {
            if let Some(late) = lock(&link.armed).take() {
                *lock(&link.late) = late;
                link.half_cut.cancel();
            }
        }
        let at = last.max(Instant::now() + net.delay(link.client, Some(&link.rng)));
        last = at;
        // A half cut lets a chunk already on its way to the server arrive
        // (late); the replies on their way back are lost.
        let half = async {
            if upstream {
                std::future::pending::<()>().await;
            } else {
                link.half_cut.cancelled().await;
            }
        };
        tokio::select! {
            () = link.cut.cancelled() => return,
            () = half => {
                let _ = to.shutdown().await;
                return;
            }
            () = tokio::time::sleep_until(at) => {}
        }
        if upstream && link.half_cut.is_cancelled() {
            let late = *lock(&link.late);
            tokio::select! {
                () = link.cut.cancelled() => return,
                () = tokio::time::sleep_until(at + late) => {}
            }
        }
        while *frozen.borrow_and_update() {
            tokio::select! {
                () = link.cut.cancelled() => return,
                r = frozen.changed() => if r.is_err() { return },
            }
        }
        if link.cut.is_cancelled() {
            return;
        }
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            let _ = to.shutdown().await;
            return;
        }
        if upstream && link.half_cut.is_cancelled() {
            // The late chunk is delivered; the server's side ends.
            let _ = to.shutdown().await;
            return;
        }
    }
}

/// The [`Connect`] of one simulated client.
pub(crate) struct SimConnector {
    net: Net,
    client: usize,
}

impl Connect for SimConnector {
    fn connect(&self, host: &HostAddr) -> ConnectFuture {
        let net = self.net.clone();
        let client = self.client;
        let idx = host
            .host
            .strip_prefix("sim")
            .and_then(|h| h.parse::<usize>().ok())
            .unwrap_or(0);
        Box::pin(async move {
            // The TCP handshake: one round trip.
            let rtt = net.delay(client, None) + net.delay(client, None);
            tokio::time::sleep(rtt).await;
            match net.dial(client, idx)? {
                Some(io) => Ok(Box::new(io) as zkit::BoxedIo),
                // Partitioned: the SYN goes nowhere; the session's attempt
                // time-out drops this future.
                None => std::future::pending().await,
            }
        })
    }
}
