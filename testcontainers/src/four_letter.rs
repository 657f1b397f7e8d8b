//! ZooKeeper "four letter words" (`ruok`, `srvr`, `stat`, `mntr`, ...) over a plain TCP socket.
//!
//! The server reads the four bytes, writes its reply and closes the connection, so the client
//! reads to EOF. Only words in `4lw.commands.whitelist` are answered; the fixture whitelists
//! all of them.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::FixtureError;

/// Sends `word` to `addr` and returns the whole reply; fails with
/// [`io::ErrorKind::TimedOut`] when the exchange takes longer than `limit` (a paused server
/// accepts the connection in the kernel but never answers).
pub(crate) async fn send(addr: SocketAddr, word: &str, limit: Duration) -> io::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(word.as_bytes()).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply within {limit:?}"),
            ))
        })
}

/// A server's role as reported by the `Mode:` line of `srvr`/`stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// A standalone server (`ZooKeeperServerMain`).
    Standalone,
    /// The ensemble leader.
    Leader,
    /// An ensemble follower.
    Follower,
    /// An observer (never configured by this fixture, but reported if present).
    Observer,
    /// A read-only server (`readonlymode.enabled`, partitioned from the quorum).
    ReadOnly,
    /// The process answers but does not serve requests (starting, or looking for a leader).
    NotServing,
}

impl Mode {
    /// Parses the reply to `srvr` or `stat`.
    pub(crate) fn from_srvr(reply: &str) -> Result<Mode, FixtureError> {
        if reply.contains("not currently serving requests") {
            return Ok(Mode::NotServing);
        }
        let mode = reply
            .lines()
            .find_map(|line| line.strip_prefix("Mode:"))
            .map(str::trim)
            .ok_or_else(|| FixtureError::Protocol(format!("no `Mode:` line in {reply:?}")))?;
        match mode {
            "standalone" => Ok(Mode::Standalone),
            "leader" => Ok(Mode::Leader),
            "follower" => Ok(Mode::Follower),
            "observer" => Ok(Mode::Observer),
            "read-only" => Ok(Mode::ReadOnly),
            other => Err(FixtureError::Protocol(format!("unknown mode {other:?}"))),
        }
    }

    /// True for the modes in which the member answers client requests as part of a quorum
    /// (or alone): standalone, leader, follower, observer.
    pub fn is_serving(self) -> bool {
        matches!(
            self,
            Mode::Standalone | Mode::Leader | Mode::Follower | Mode::Observer
        )
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Standalone => "standalone",
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::ReadOnly => "read-only",
            Mode::NotServing => "not serving",
        })
    }
}

/// A ZooKeeper server version, parsed from the `Zookeeper version:` line of `srvr`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ServerVersion {
    /// Major version (`3` in `3.8.0`).
    pub major: u32,
    /// Minor version (`8` in `3.8.0`).
    pub minor: u32,
    /// Patch version (`0` in `3.8.0`).
    pub patch: u32,
    /// The whole version token as reported: `3.8.0-5a02a05eddb59aee6ac762f7ea82e92a68eb9c0f`
    /// upstream, the unexpanded `3.8.0-${mvngit.commit.id}` from Debian's package.
    pub full: String,
}

impl ServerVersion {
    /// Parses the reply to `srvr` or `stat`.
    pub(crate) fn from_srvr(reply: &str) -> Result<ServerVersion, FixtureError> {
        let bad =
            || FixtureError::Protocol(format!("no parseable `Zookeeper version:` in {reply:?}"));
        let full = reply
            .lines()
            .find_map(|line| line.strip_prefix("Zookeeper version:"))
            .map(|rest| rest.split(',').next().unwrap_or("").trim())
            .filter(|v| !v.is_empty())
            .ok_or_else(bad)?;
        let numeric = full.split(['-', ' ']).next().unwrap_or("");
        let mut parts = numeric.split('.').map(str::parse::<u32>);
        let mut next = || parts.next().and_then(Result::ok);
        let (Some(major), Some(minor), patch) = (next(), next(), next()) else {
            return Err(bad());
        };
        Ok(ServerVersion {
            major,
            minor,
            patch: patch.unwrap_or(0),
            full: full.to_string(),
        })
    }

    /// True when this version is `major.minor` or newer.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRVR: &str = "Zookeeper version: 3.8.0-5a02a05eddb59aee6ac762f7ea82e92a68eb9c0f, built on 2022-02-25 08:49 UTC\n\
        Latency min/avg/max: 0/0.0/0\nReceived: 1\nSent: 0\nConnections: 1\nOutstanding: 0\n\
        Zxid: 0x0\nMode: follower\nNode count: 5\n";

    #[test]
    fn parses_mode_and_version() {
        assert_eq!(Mode::from_srvr(SRVR).unwrap(), Mode::Follower);
        let v = ServerVersion::from_srvr(SRVR).unwrap();
        assert_eq!((v.major, v.minor, v.patch), (3, 8, 0));
        assert_eq!(v.full, "3.8.0-5a02a05eddb59aee6ac762f7ea82e92a68eb9c0f");
        assert!(v.at_least(3, 8) && v.at_least(3, 7) && !v.at_least(3, 9));
        assert_eq!(v.to_string(), v.full);
    }

    #[test]
    fn parses_the_debian_version_string() {
        let reply = "Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 1970-01-01 00:00 UTC\nMode: standalone\n";
        let v = ServerVersion::from_srvr(reply).unwrap();
        assert_eq!((v.major, v.minor, v.patch), (3, 8, 0));
        assert_eq!(v.full, "3.8.0-${mvngit.commit.id}");
    }

    #[test]
    fn not_serving_reply_is_a_mode() {
        let reply = "This ZooKeeper instance is not currently serving requests\n";
        assert_eq!(Mode::from_srvr(reply).unwrap(), Mode::NotServing);
        assert!(!Mode::NotServing.is_serving());
        assert!(ServerVersion::from_srvr(reply).is_err());
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(matches!(
            Mode::from_srvr("Mode: weird\n"),
            Err(FixtureError::Protocol(_))
        ));
        assert!(matches!(
            Mode::from_srvr(""),
            Err(FixtureError::Protocol(_))
        ));
        assert!(ServerVersion::from_srvr("Zookeeper version: x.y\n").is_err());
    }
}
