//! Four-letter words: a connection whose first four bytes are one of them
//! gets a text answer and is closed (`NIOServerCnxn.checkFourLetterWord`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::state::Shared;
use crate::VERSION;

/// Every four-letter word ZooKeeper 3.8 knows (`FourLetterCommands`):
/// the first four bytes of a connection are only taken as a command when
/// they are one of these.
const KNOWN: [&[u8; 4]; 18] = [
    b"conf", b"cons", b"crst", b"dump", b"envi", b"gtmk", b"ruok", b"stmk", b"srst", b"srvr",
    b"stat", b"wchc", b"wchp", b"wchs", b"mntr", b"isro", b"hash", b"dirs",
];

/// The answer to the four-letter word starting `input` (the bytes read so
/// far: `stmk` takes its 8-byte mask from them, as ZooKeeper reads it from
/// the same packet), or `None` if it is not a four-letter word this server
/// answers. A known word missing from the whitelist
/// (`4lw.commands.whitelist`) gets ZooKeeper's refusal text.
pub(crate) fn answer(input: &[u8], shared: &Shared) -> Option<String> {
    let word = input.get(..4)?;
    if !KNOWN.iter().any(|k| &k[..] == word) {
        return None;
    }
    let name = std::str::from_utf8(word).ok()?;
    if !shared.settings.four_letter_words.allows(name) {
        tracing::debug!("Command {name} is not executed because it is not in the whitelist.");
        return Some(format!(
            "{name} is not executed because it is not in the whitelist.\n"
        ));
    }
    let text = match word {
        b"ruok" => "imok".to_string(),
        b"isro" => "rw".to_string(),
        b"srvr" => srvr(shared, false),
        b"stat" => srvr(shared, true),
        b"mntr" => mntr(shared),
        b"conf" => conf(shared),
        b"envi" => envi(),
        b"cons" => cons(shared),
        b"wchs" => wchs(shared),
        b"wchc" => wchc(shared, false),
        b"wchp" => wchc(shared, true),
        b"dump" => dump(shared),
        b"crst" => {
            for h in shared.lock().conns.values() {
                h.stats.reset();
            }
            "Connection stats reset.\n".to_string()
        }
        b"srst" => "Server stats reset.\n".to_string(),
        b"dirs" => dirs(shared),
        b"gtmk" => shared.trace_mask.load(Ordering::Relaxed).to_string(),
        // Without its mask ZooKeeper fails to read one and answers nothing.
        b"stmk" => match input.get(4..12).and_then(|b| b.try_into().ok()) {
            Some(mask) => {
                let mask = u64::from_be_bytes(mask);
                shared.trace_mask.store(mask, Ordering::Relaxed);
                mask.to_string()
            }
            None => String::new(),
        },
        b"hash" => String::new(),
        _ => return None,
    };
    Some(text)
}

fn srvr(shared: &Shared, with_clients: bool) -> String {
    let (min, avg, max) = crate::metrics::latency(shared);
    let st = shared.lock();
    let mut s = format!("Zookeeper version: {VERSION}, built on 01/01/2022 00:00 GMT\n");
    if with_clients {
        s.push_str("Clients:\n");
        for h in st.conns.values() {
            connection_line(&mut s, h, None);
        }
        s.push('\n');
    }
    let _ = writeln!(s, "Latency min/avg/max: {min}/{avg:?}/{max}");
    let _ = writeln!(s, "Received: {}", shared.received.load(Ordering::Relaxed));
    let _ = writeln!(s, "Sent: {}", shared.sent.load(Ordering::Relaxed));
    let _ = writeln!(
        s,
        "Connections: {}",
        shared.connections.load(Ordering::Relaxed)
    );
    let _ = writeln!(s, "Outstanding: {}", st.outstanding());
    let _ = writeln!(s, "Zxid: {:#x}", st.zxid);
    let _ = writeln!(s, "Mode: standalone");
    let _ = writeln!(s, "Node count: {}", st.tree.node_count());
    s
}

/// `mntr`: every metric as `zk_<name>\t<value>` (see `metrics.rs`).
fn mntr(shared: &Shared) -> String {
    crate::metrics::gather(shared).mntr()
}

fn conf(shared: &Shared) -> String {
    let st = shared.lock();
    let c = st.sessions.config();
    let mut s = String::new();
    let _ = writeln!(s, "clientPort={}", shared.local_addr.port());
    let _ = writeln!(s, "clientPortAddress={}", shared.local_addr.ip());
    if let (Some(data), Some(log)) = (&shared.settings.data_dir, shared.settings.log_dir()) {
        let _ = writeln!(s, "dataDir={}", data.display());
        let _ = writeln!(s, "dataLogDir={}", log.display());
    }
    let _ = writeln!(s, "tickTime={}", c.tick_time);
    // ZooKeeper reports the per-IP limit under this name.
    let _ = writeln!(
        s,
        "maxClientCnxns={}",
        shared.settings.max_connections_per_ip
    );
    let _ = writeln!(s, "minSessionTimeout={}", c.min_session_timeout);
    let _ = writeln!(s, "maxSessionTimeout={}", c.max_session_timeout);
    let _ = writeln!(s, "serverId=0");
    s
}

fn envi() -> String {
    format!(
        "Environment:\nzookeeper.version={VERSION}, built on 01/01/2022 00:00 GMT\nos.name={}\nos.arch={}\n",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// `cons`: a line per connection with its statistics.
fn cons(shared: &Shared) -> String {
    let st = shared.lock();
    let mut s = String::new();
    for h in st.conns.values() {
        connection_line(&mut s, h, Some(st.sessions.timeout(h.session).unwrap_or(0)));
    }
    s.push('\n');
    s
}

/// One connection as ZooKeeper's `dumpConnectionInfo` writes it: the
/// counters, then (with the session timeout: `cons`, not `stat`) the session
/// and the last request's facts.
fn connection_line(s: &mut String, h: &crate::state::ConnHandle, timeout: Option<i32>) {
    let c = &h.stats;
    let r = Ordering::Relaxed;
    let _ = write!(
        s,
        " /{}[1](queued={},recved={},sent={}",
        h.peer,
        c.outstanding.load(r),
        c.packets_received.load(r),
        c.packets_sent.load(r)
    );
    if let Some(timeout) = timeout {
        let _ = write!(
            s,
            ",sid={:#x},lop={},est={},to={}",
            h.session,
            c.last_op(),
            c.established_ms,
            timeout
        );
        let cxid = c.last_cxid.load(r);
        if cxid >= 0 {
            let _ = write!(s, ",lcxid={cxid:#x}");
        }
        let _ = write!(
            s,
            ",lzxid={:#x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            c.last_zxid.load(r),
            c.last_response_ms.load(r),
            c.last_latency.load(r),
            c.min_latency(),
            c.avg_latency(),
            c.max_latency.load(r)
        );
    }
    s.push_str(")\n");
}

fn wchs(shared: &Shared) -> String {
    // Counts only: no copy of the watched paths under the lock.
    let (conns, paths, total) = shared.lock().watches.data_watch_summary();
    format!("{conns} connections watching {paths} paths\nTotal watches:{total}\n")
}

/// `wchc` (by session) and `wchp` (by path) over the data watches.
fn wchc(shared: &Shared, by_path: bool) -> String {
    let st = shared.lock();
    let session_of = |c| st.conns.get(&c).map_or(0, |h| h.session);
    let mut s = String::new();
    let by_conn = st.watches.data_watches_by_conn();
    if by_path {
        let mut paths: std::collections::BTreeMap<&String, Vec<i64>> = Default::default();
        for (c, ps) in &by_conn {
            for p in ps {
                paths.entry(p).or_default().push(session_of(*c));
            }
        }
        for (p, sessions) in paths {
            let _ = writeln!(s, "{p}");
            for id in sessions {
                let _ = writeln!(s, "\t0x{id:x}");
            }
        }
    } else {
        for (c, ps) in &by_conn {
            let _ = writeln!(s, "0x{:x}", session_of(*c));
            for p in ps {
                let _ = writeln!(s, "\t{p}");
            }
        }
    }
    s.push('\n');
    s
}

/// `dump`: sessions by expiry bucket and ephemerals by session.
fn dump(shared: &Shared) -> String {
    let st = shared.lock();
    let mut s = String::from("SessionTracker dump:\n");
    let buckets = st.sessions.expiry_buckets();
    let _ = writeln!(
        s,
        "Session Sets ({})/({}):",
        buckets.len(),
        st.sessions.len()
    );
    for (at, ids) in &buckets {
        let _ = writeln!(s, "{} expire at {}:", ids.len(), java_date(*at));
        for id in ids {
            let _ = writeln!(s, "\t0x{id:x}");
        }
    }
    s.push_str("ephemeral nodes dump:\n");
    let mut owners = st.tree.sessions_with_ephemerals();
    // ZooKeeper iterates a ConcurrentHashMap<Long, ..>: bucket order.
    let mut table = 16usize;
    while owners.len() > table * 3 / 4 {
        table *= 2;
    }
    owners.sort_by_key(|&id| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let h = (id ^ ((id as u64) >> 32) as i64) as i32;
        #[allow(clippy::cast_sign_loss)]
        let spread = ((h ^ ((h as u32) >> 16) as i32) & 0x7fff_ffff) as usize;
        spread & (table - 1)
    });
    let _ = writeln!(s, "Sessions with Ephemerals ({}):", owners.len());
    for owner in owners {
        let _ = writeln!(s, "0x{owner:x}:");
        for p in st.tree.get_ephemerals(owner, "/") {
            let _ = writeln!(s, "\t{p}");
        }
    }
    let _ = writeln!(s, "Connections dump:");
    let _ = writeln!(s, "Connections Sets (0)/({}):", st.conns.len());
    s
}

/// `dirs`: bytes in the data and log directories (0 in memory).
fn dirs(shared: &Shared) -> String {
    let (data, log) = dir_sizes(shared);
    format!("datadir_size: {data}\nlogdir_size: {log}\n")
}

/// Bytes in the files of the data and log directories (0 in memory).
pub(crate) fn dir_sizes(shared: &Shared) -> (u64, u64) {
    fn size(dir: Option<&std::path::PathBuf>) -> u64 {
        let Some(dir) = dir else { return 0 };
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .filter(std::fs::Metadata::is_file)
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
    (
        size(shared.settings.data_dir.as_ref()),
        size(shared.settings.log_dir()),
    )
}

/// `java.util.Date.toString()` in UTC: `Wed Dec 02 04:06:54 UTC 2026`.
fn java_date(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m, sec) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {day:02} {h:02}:{m:02}:{sec:02} UTC {year}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::java_date;

    #[test]
    fn dates_print_like_java() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        // 2026-12-02T04:06:54Z, as ZooKeeper's dump printed it.
        assert_eq!(java_date(1_796_184_414_000), "Wed Dec 02 04:06:54 UTC 2026");
        assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    }
}
