//! The server's two clocks.
//!
//! - **Monotonic** (tokio's [`Instant`](tokio::time::Instant), so that
//!   paused-time tests drive it): session expiry, as ZooKeeper's
//!   `Time.currentElapsedTime()` (`System.nanoTime()`). A step of the system
//!   clock neither expires every session at once nor stops expiry.
//! - **Wall** (milliseconds since the Unix epoch): znode `ctime`/`mtime`, TTL
//!   and container ages, transaction times in the log, the seed of session
//!   ids — the values ZooKeeper takes from `Time.currentWallTime()`.
//!   Replaceable ([`ServerBuilder::wall_clock`](crate::ServerBuilder::wall_clock))
//!   for tests and simulation.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time: milliseconds since the Unix epoch.
pub(crate) type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Both clocks of one server.
#[derive(Clone)]
pub(crate) struct Clock {
    /// Origin of the monotonic milliseconds.
    base: tokio::time::Instant,
    /// `None`: the system clock.
    wall: Option<WallClock>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("base", &self.base)
            .field("custom_wall", &self.wall.is_some())
            .finish()
    }
}

impl Clock {
    /// Monotonic milliseconds count from now; `wall` replaces the system
    /// clock when given.
    pub(crate) fn new(wall: Option<WallClock>) -> Self {
        Self {
            base: tokio::time::Instant::now(),
            wall,
        }
    }

    /// Milliseconds on the monotonic clock (since the server was built).
    pub(crate) fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Both clocks and a latency timer, read once for a batch of frames
    /// (the requests of one read from a socket, the frames of one write).
    pub(crate) fn read(&self) -> Reading {
        Reading {
            at: std::time::Instant::now(),
            wall_ms: self.wall_ms(),
            monotonic_ms: self.monotonic_ms(),
        }
    }

    /// Milliseconds since the Unix epoch, on the wall clock.
    pub(crate) fn wall_ms(&self) -> i64 {
        match &self.wall {
            Some(f) => f(),
            None => system_ms(),
        }
    }
}

/// The clocks at one moment ([`Clock::read`]): read once for every frame of
/// a batch (per request they were a tenth of a small request's cost;
/// ZooKeeper's times are milliseconds anyway).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    /// For latency measurements.
    pub(crate) at: std::time::Instant,
    /// Wall-clock milliseconds: transaction times, last response times.
    pub(crate) wall_ms: i64,
    /// Monotonic milliseconds: a session's last activity.
    pub(crate) monotonic_ms: u64,
}

/// The system clock in milliseconds since the Unix epoch.
pub(crate) fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
