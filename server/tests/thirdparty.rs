//! Differential tests: real third-party ZooKeeper clients (kazoo, zkCli.sh and
//! the C client) run the same scripted workload against the bundled server
//! and against a real standalone ZooKeeper 3.8; the normalised outputs
//! (no zxids, times, session ids or ports) must be identical.
//!
//! Needs Java + ZooKeeper (see `scripts/install-zookeeper.sh`), `python3-kazoo`
//! and `libzookeeper-mt-dev`; a missing client fails with a message saying
//! what to install (`ZKIT_ALLOW_MISSING_ZOOKEEPER=1` turns that into a skip).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;
use zkit_server::{FourLetterWords, RunningServer, Server};
use zkit_testcontainers::{Ensemble, DEFAULT_TICK_TIME};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
const PYTHON: &str = "/usr/bin/python3";
const ZKCLI: &str = "/usr/share/zookeeper/bin/zkCli.sh";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Both servers: the bundled one and a real standalone ZooKeeper.
struct Pair {
    bundled: RunningServer,
    real: Ensemble,
}

async fn start_pair() -> Option<Pair> {
    let real = Ensemble::builder().size(1).start_or_skip().await?;
    let bundled = Server::builder()
        .tick_time(DEFAULT_TICK_TIME)
        .extended_types(true)
        // The fixture's real ZooKeeper runs with 4lw.commands.whitelist=*.
        .four_letter_words(FourLetterWords::all())
        .start()
        .await
        .expect("start bundled server");
    Some(Pair { bundled, real })
}

/// Runs `cmd` (stdout+stderr: 2>&1 into one pipe, so ordering is what the
/// client wrote), failing on timeout.
async fn run(cmd: Command, stdin: Option<&Path>) -> String {
    common::run_client(cmd, stdin, CLIENT_TIMEOUT).await
}

/// Asserts two normalised outputs are identical, printing a line diff.
/// With `ZKIT_THIRDPARTY_DUMP=<dir>`, both outputs are also written there.
fn assert_same(client: &str, real: &str, bundled: &str) {
    if let Some(dir) = std::env::var_os("ZKIT_THIRDPARTY_DUMP") {
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{client}.real.txt")), real);
        let _ = std::fs::write(dir.join(format!("{client}.bundled.txt")), bundled);
    }
    if real == bundled {
        return;
    }
    let r: Vec<&str> = real.lines().collect();
    let b: Vec<&str> = bundled.lines().collect();
    let mut diff = String::new();
    for i in 0..r.len().max(b.len()) {
        let (x, y) = (r.get(i).copied(), b.get(i).copied());
        if x != y {
            diff.push_str(&format!(
                "line {}:\n  real:    {}\n  bundled: {}\n",
                i + 1,
                x.unwrap_or("<none>"),
                y.unwrap_or("<none>")
            ));
        }
    }
    panic!(
        "{client}: bundled server differs from real ZooKeeper\n{diff}\n\
         ---- real ----\n{real}\n---- bundled ----\n{bundled}"
    );
}

/// Replaces every `127.0.0.1:<port>` / `localhost:<port>` with `HOST:PORT`.
fn normalise_ports(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = ["127.0.0.1:", "localhost:"]
        .iter()
        .filter_map(|h| rest.find(h).map(|i| (i, h.len())))
        .min()
    {
        let (start, len) = i;
        out.push_str(&rest[..start]);
        let after = &rest[start + len..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            out.push_str(&rest[start..start + len]);
        } else {
            out.push_str("HOST:PORT");
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// kazoo
// ---------------------------------------------------------------------------

async fn kazoo(connect: String) -> String {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(clients_dir().join("kazoo_workload.py"))
        .arg(&connect);
    normalise_ports(&run(cmd, None).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_matches_real_zookeeper() {
    let kazoo_ok = std::process::Command::new(PYTHON)
        .args(["-c", "import kazoo"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !common::require_peer(kazoo_ok, "kazoo (python3-kazoo)") {
        return;
    }
    let Some(pair) = start_pair().await else {
        return;
    };
    let began = Instant::now();
    let (real, bundled) = tokio::join!(
        kazoo(pair.real.connect_string()),
        kazoo(pair.bundled.connect_string())
    );
    eprintln!("kazoo workload: {:?}", began.elapsed());
    assert!(
        real.contains("\"step\": \"done\""),
        "kazoo vs real ZooKeeper did not finish:\n{real}"
    );
    assert_same("kazoo", &real, &bundled);
}

// ---------------------------------------------------------------------------
// zkCli.sh
// ---------------------------------------------------------------------------

const ZKCLI_COMMANDS: &str = "\
create /cli hello
create /cli/a
get -s /cli
get /cli/missing
set /cli world
set -v 5 /cli bad
set -s /cli again
get -s /cli
ls /cli
ls -s /cli
ls -R /cli
ls /cli/missing
stat /cli
stat /cli/missing
create -e /cli/e eph
stat /cli/e
create -e -s /cli/es- x
create -s /cli/s- y
create -c /cli/cont
create -c /cli/cont/k
create -t 100000 /cli/ttl t
stat /cli/ttl
create -t 100000 -s /cli/ttls- t
create /cli/a
create /nope/x
create /cli/e/child
getAcl /cli
getAcl -s /cli
getAcl /cli/missing
addauth digest bob:pw
create /cli/auth d auth:bob:pw:cdrwa
getAcl /cli/auth
create /cli/dig d digest:carol:UXY3OzXJ2VKTBLkeXFr3wBgwSBE=:r
getAcl /cli/dig
get /cli/dig
setAcl /cli/a world:anyone:r
getAcl -s /cli/a
set /cli/a x
setAcl -v 9 /cli/a world:anyone:cdrwa
setAcl /cli/missing world:anyone:r
create /cli/badacl x foo:bar:cdrwa
delete /cli
delete -v 3 /cli/a
delete /cli/a
delete /cli/missing
sync /cli
whoami
getEphemerals
getEphemerals /cli
getAllChildrenNumber /cli
getAllChildrenNumber /cli/missing
ls /zookeeper
get -s /zookeeper
config
get /zookeeper/config
getAcl /zookeeper/config
create /zookeeper/x
setquota -n 5 /cli
listquota /cli
create /cli/q1 abc
set /cli/q1 abcdef
delete /cli/s-0000000003
listquota /cli
delquota /cli
create /cli/bin
create /cli/trail/
create -s /cli/seqdir/
ls -s /
ls -R /cli
deleteall /cli
ls /
quit
";

fn normalise_zkcli(raw: &str) -> String {
    let mut out = String::new();
    for line in normalise_ports(raw).lines() {
        // The connection's SyncConnected event is printed by the event
        // thread, racing with the first commands: drop it (and blank lines).
        if line.starts_with("SLF4J:")
            || line.is_empty()
            || line == "WATCHER::"
            || line == "WatchedEvent state:SyncConnected type:None path:null"
        {
            continue;
        }
        let line = if let Some((k, _)) = line.split_once(" = ") {
            match k {
                "cZxid" | "mZxid" | "pZxid" => format!("{k} = <zxid>"),
                "ctime" | "mtime" => format!("{k} = <time>"),
                "ephemeralOwner" if !line.ends_with("= 0x0") => format!("{k} = <session>"),
                _ => line.to_string(),
            }
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

async fn zkcli(connect: String, script: &Path) -> String {
    // One JVM for the whole batch: zkCli reads commands from stdin; stderr
    // is merged into stdout by the shell so the interleaving is preserved.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec {ZKCLI} -server {connect} 2>&1"));
    normalise_zkcli(&run(cmd, Some(script)).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkcli_matches_real_zookeeper() {
    if !common::require_peer(
        Path::new(ZKCLI).exists(),
        "zkCli.sh (Debian package zookeeper)",
    ) {
        return;
    }
    let Some(pair) = start_pair().await else {
        return;
    };
    let script = std::env::temp_dir().join(format!("zkit-zkcli-{}.txt", std::process::id()));
    std::fs::write(&script, ZKCLI_COMMANDS).expect("write zkCli script");
    let began = Instant::now();
    let (real, bundled) = tokio::join!(
        zkcli(pair.real.connect_string(), &script),
        zkcli(pair.bundled.connect_string(), &script)
    );
    eprintln!("zkCli workload: {:?}", began.elapsed());
    let _ = std::fs::remove_file(&script);
    assert!(
        real.contains("Created /cli"),
        "zkCli vs real ZooKeeper failed:\n{real}"
    );
    assert_same("zkCli.sh", &real, &bundled);
}

// ---------------------------------------------------------------------------
// C client
// ---------------------------------------------------------------------------

async fn c_client(binary: &Path, connect: String) -> String {
    let mut cmd = Command::new(binary);
    cmd.arg(&connect);
    normalise_ports(&run(cmd, None).await.replace(&connect, "HOST:PORT"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_client_matches_real_zookeeper() {
    if !common::require_peer(
        Path::new("/usr/include/zookeeper/zookeeper.h").exists(),
        "the ZooKeeper C client headers (libzookeeper-mt-dev)",
    ) {
        return;
    }
    let binary = std::env::temp_dir().join(format!("zkit-c-workload-{}", std::process::id()));
    let cc = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("-O1")
        .arg("-o")
        .arg(&binary)
        .arg(clients_dir().join("c_workload.c"))
        .arg("-lzookeeper_mt")
        .output()
        .expect("run cc (a C compiler is needed for the C-client test)");
    assert!(
        cc.status.success(),
        "compiling c_workload.c failed (is libzookeeper-mt-dev installed?):\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let Some(pair) = start_pair().await else {
        return;
    };
    let began = Instant::now();
    let (real, bundled) = tokio::join!(
        c_client(&binary, pair.real.connect_string()),
        c_client(&binary, pair.bundled.connect_string())
    );
    eprintln!("C workload: {:?}", began.elapsed());
    let _ = std::fs::remove_file(&binary);
    assert!(
        real.contains("done"),
        "C client vs real ZooKeeper failed:\n{real}"
    );
    assert_same("C client", &real, &bundled);
}
