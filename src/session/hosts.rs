//! Connect strings and the host rotation (`StaticHostProvider`).

use std::fmt;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::error::Error;

/// Default ZooKeeper client port.
pub const DEFAULT_PORT: u16 = 2181;

/// One `host:port` of a connect string. The host is resolved at dial time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostAddr {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A parsed connect string: `host[:port][,host[:port]...][/chroot]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectString {
    /// The hosts, in the order given.
    pub hosts: Vec<HostAddr>,
    /// The chroot, if any (validated, no trailing slash; `None` for "/").
    pub chroot: Option<String>,
}

impl ConnectString {
    /// Parses a connect string. IPv6 hosts are written `[addr]:port`.
    ///
    /// # Errors
    /// [`Error::NoHosts`] if no host is given or a port is invalid;
    /// [`Error::InvalidPath`] for a bad chroot.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let (hosts_part, chroot) = match s.find('/') {
            Some(i) => (&s[..i], Some(&s[i..])),
            None => (s, None),
        };
        let chroot = match chroot {
            None | Some("/") => None,
            Some(c) => {
                crate::path::validate_path(c, false)?;
                Some(c.to_string())
            }
        };
        let mut hosts = Vec::new();
        for part in hosts_part
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            hosts.push(parse_host(part)?);
        }
        if hosts.is_empty() {
            return Err(Error::NoHosts(format!("no host in connect string {s:?}")));
        }
        Ok(Self { hosts, chroot })
    }
}

fn parse_host(part: &str) -> Result<HostAddr, Error> {
    let bad = || Error::NoHosts(format!("invalid host {part:?} in connect string"));
    let (host, port) = if let Some(rest) = part.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(bad)?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (host, port)
    } else {
        match part.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(bad()), // bare IPv6 needs brackets
            None => (part, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    Ok(HostAddr {
        host: host.to_string(),
        port,
    })
}

/// The rotation over hosts: shuffled once (seeded), round robin, with a pause
/// only after every host has failed since the last success.
#[derive(Debug)]
pub(crate) struct HostList {
    hosts: Vec<HostAddr>,
    /// Index of the host to dial next.
    next: usize,
    /// Consecutive failed attempts since the last established connection.
    failures: u32,
}

impl HostList {
    pub(crate) fn new(mut hosts: Vec<HostAddr>, rng: &mut impl Rng) -> Self {
        hosts.shuffle(rng);
        Self {
            hosts,
            next: 0,
            failures: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.hosts.len()
    }

    /// The host to dial now; advances the rotation.
    pub(crate) fn next_host(&mut self) -> (usize, HostAddr) {
        let i = self.next % self.hosts.len();
        self.next = (i + 1) % self.hosts.len();
        (i, self.hosts[i].clone())
    }

    /// A connection was established on host `i`: the next attempt (after a
    /// later disconnect) starts with the host after it.
    /// The failure count is kept until the connection proves stable
    /// ([`on_disconnected`](Self::on_disconnected)), so a flapping server
    /// still meets growing pauses.
    pub(crate) fn on_connected(&mut self, i: usize) {
        self.next = (i + 1) % self.hosts.len();
    }

    /// An attempt failed. Returns the pause before the next attempt: none
    /// while untried hosts remain in this cycle, then an exponential pause
    /// (50 ms doubling up to `cap`, itself at most 1 s) plus up to 50 ms of
    /// jitter after each full cycle.
    pub(crate) fn on_failed(
        &mut self,
        rng: &mut impl Rng,
        cap: std::time::Duration,
    ) -> std::time::Duration {
        self.failures += 1;
        let n = self.hosts.len() as u32;
        if !self.failures.is_multiple_of(n) {
            return std::time::Duration::ZERO;
        }
        let cycle = self.failures / n;
        let cap_ms = (cap.as_millis() as u64).clamp(50, 1000);
        let base_ms = (50u64 << (cycle - 1).min(5)).min(cap_ms);
        std::time::Duration::from_millis(base_ms + rng.random_range(0..50))
    }

    /// A connection dropped after having been up long enough to count as
    /// stable: the failure count restarts, no pause before the next host.
    pub(crate) fn on_disconnected(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Duration;

    #[test]
    fn parses_hosts_ports_ipv6_and_chroot() {
        let c = ConnectString::parse("a:1,b,[::1]:3,10.0.0.1:4/app/x").unwrap();
        assert_eq!(
            c.hosts,
            vec![
                HostAddr {
                    host: "a".into(),
                    port: 1
                },
                HostAddr {
                    host: "b".into(),
                    port: 2181
                },
                HostAddr {
                    host: "::1".into(),
                    port: 3
                },
                HostAddr {
                    host: "10.0.0.1".into(),
                    port: 4
                },
            ]
        );
        assert_eq!(c.chroot.as_deref(), Some("/app/x"));
        assert_eq!(ConnectString::parse("h:1/").unwrap().chroot, None);
    }

    #[test]
    fn rejects_bad_connect_strings() {
        for bad in [
            "", "/app", "h:0", "h:70000", "h:x", "::1:2181", "[::1", "h:1/app/",
        ] {
            assert!(ConnectString::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_pauses_only_after_full_cycle() {
        let mut rng = StdRng::seed_from_u64(7);
        let hosts: Vec<_> = (1..=3)
            .map(|p| HostAddr {
                host: "h".into(),
                port: p,
            })
            .collect();
        let mut l = HostList::new(hosts, &mut rng);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            seen.insert(l.next_host().1.port);
        }
        assert_eq!(seen.len(), 3, "each host once per cycle");
        assert_eq!(
            l.on_failed(&mut rng, Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            l.on_failed(&mut rng, Duration::from_secs(1)),
            Duration::ZERO
        );
        let pause = l.on_failed(&mut rng, Duration::from_secs(1));
        assert!(pause >= Duration::from_millis(50) && pause < Duration::from_millis(100));
        // after a connection on host 1, the next dial goes to host 2
        l.on_connected(1);
        assert_eq!(l.next_host().0, 2);
    }
}
