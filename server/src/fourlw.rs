//! Four-letter words: a connection whose first four bytes are one of them
//! gets a text answer and is closed (`NIOServerCnxn.checkFourLetterWord`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::server::{Shared, VERSION};

/// Every four-letter word ZooKeeper 3.8 knows (`FourLetterCommands`):
/// the first four bytes of a connection are only taken as a command when
/// they are one of these.
const KNOWN: [&[u8; 4]; 18] = [
    b"conf", b"cons", b"crst", b"dump", b"envi", b"gtmk", b"ruok", b"stmk", b"srst", b"srvr",
    b"stat", b"wchc", b"wchp", b"wchs", b"mntr", b"isro", b"hash", b"dirs",
];

/// The answer to `word`, or `None` if it is not a four-letter word this
/// server answers. A known word missing from the whitelist
/// (`4lw.commands.whitelist`) gets ZooKeeper's refusal text.
pub(crate) fn answer(word: &[u8], shared: &Shared) -> Option<String> {
    if !KNOWN.iter().any(|k| &k[..] == word) {
        return None;
    }
    let name = std::str::from_utf8(word).ok()?;
    if !shared.four_letter_words.allows(name) {
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
        _ => return None,
    };
    Some(text)
}

fn srvr(shared: &Shared, with_clients: bool) -> String {
    let st = shared.lock();
    let mut s = format!("Zookeeper version: {VERSION}, built on 01/01/2022 00:00 GMT\n");
    if with_clients {
        s.push_str("Clients:\n");
        for h in st.conns.values() {
            let _ = writeln!(s, " /{}[1](queued=0,recved=0,sent=0)", h.peer);
        }
        s.push('\n');
    }
    let _ = writeln!(s, "Latency min/avg/max: 0/0.0/0");
    let _ = writeln!(s, "Received: {}", shared.received.load(Ordering::Relaxed));
    let _ = writeln!(s, "Sent: {}", shared.sent.load(Ordering::Relaxed));
    let _ = writeln!(
        s,
        "Connections: {}",
        shared.connections.load(Ordering::Relaxed)
    );
    let _ = writeln!(s, "Outstanding: 0");
    let _ = writeln!(s, "Zxid: {:#x}", st.zxid);
    let _ = writeln!(s, "Mode: standalone");
    let _ = writeln!(s, "Node count: {}", st.tree.node_count());
    s
}

fn mntr(shared: &Shared) -> String {
    let st = shared.lock();
    let mut s = String::new();
    let _ = writeln!(s, "zk_version\t{VERSION}, built on 01/01/2022 00:00 GMT");
    let _ = writeln!(s, "zk_server_state\tstandalone");
    let _ = writeln!(
        s,
        "zk_num_alive_connections\t{}",
        shared.connections.load(Ordering::Relaxed)
    );
    let _ = writeln!(s, "zk_outstanding_requests\t0");
    let _ = writeln!(s, "zk_znode_count\t{}", st.tree.node_count());
    let _ = writeln!(s, "zk_watch_count\t{}", st.watches.watch_count());
    let _ = writeln!(s, "zk_ephemerals_count\t{}", {
        st.tree
            .sessions_with_ephemerals()
            .iter()
            .map(|id| st.tree.get_ephemerals(*id, "/").len())
            .sum::<usize>()
    });
    let _ = writeln!(s, "zk_global_sessions\t{}", st.sessions.len());
    let _ = writeln!(
        s,
        "zk_packets_received\t{}",
        shared.received.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "zk_packets_sent\t{}",
        shared.sent.load(Ordering::Relaxed)
    );
    let _ = writeln!(s, "zk_uptime\t{}", shared.started.elapsed().as_millis());
    s
}

fn conf(shared: &Shared) -> String {
    let st = shared.lock();
    let c = st.sessions.config();
    let mut s = String::new();
    let _ = writeln!(s, "clientPort={}", shared.local_addr.port());
    let _ = writeln!(s, "clientPortAddress={}", shared.local_addr.ip());
    if let (Some(data), Some(log)) = (&shared.data_dir, &shared.data_log_dir) {
        let _ = writeln!(s, "dataDir={}", data.display());
        let _ = writeln!(s, "dataLogDir={}", log.display());
    }
    let _ = writeln!(s, "tickTime={}", c.tick_time);
    let _ = writeln!(s, "maxClientCnxns={}", shared.max_connections);
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

fn cons(shared: &Shared) -> String {
    let st = shared.lock();
    let mut s = String::new();
    for h in st.conns.values() {
        let _ = writeln!(
            s,
            " /{}[1](queued=0,recved=0,sent=0,sid={:#x})",
            h.peer, h.session
        );
    }
    s.push('\n');
    s
}

fn wchs(shared: &Shared) -> String {
    let st = shared.lock();
    format!(
        "{} connections watching paths\nTotal watches:{}\n",
        st.conns.len(),
        st.watches.watch_count()
    )
}
