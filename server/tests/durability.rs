//! Durability of zkit-server with a data directory: what a client wrote and
//! saw acknowledged survives a graceful restart, a `kill -9` of the server
//! process in the middle of a write load, and sessions (with their
//! ephemerals) live on across a restart as in ZooKeeper.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zkit::{Acl, Client, CreateMode, CreateOptions, Error, SessionState, Stat, Version};
use zkit_server::Server;
use zkit_testcontainers::{FaultMode, FaultProxy};

mod common;

use common::{free_port, Guard, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_zkit-server");
const SOON: Duration = Duration::from_secs(15);

fn builder(dir: &Path) -> zkit_server::ServerBuilder {
    Server::builder()
        .tick_time(Duration::from_millis(200))
        .prealloc_size(1 << 20)
        .data_dir(dir)
}

/// Everything a client can see of a subtree: data, Stat, ACL, per path.
async fn dump(c: &Client, root: &str) -> BTreeMap<String, (Vec<u8>, Stat, Vec<Acl>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_string()];
    while let Some(p) = todo.pop() {
        let (data, stat) = c.get_data(&p).await.unwrap();
        let (acl, _) = c.get_acl(&p).await.unwrap();
        let (kids, _) = c.get_children(&p).await.unwrap();
        for k in kids {
            todo.push(if p == "/" {
                format!("/{k}")
            } else {
                format!("{p}/{k}")
            });
        }
        out.insert(p, (data.to_vec(), stat, acl));
    }
    out
}

/// A workload touching every kind of logged transaction.
async fn workload(c: &Client) {
    let opts = CreateOptions::default();
    c.create("/app", b"v0", &opts).await.unwrap();
    for _ in 0..3 {
        c.create(
            "/app/seq-",
            b"s",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .await
        .unwrap();
    }
    c.delete("/app/seq-0000000001", Version::Any).await.unwrap();
    c.set_data("/app", b"v1", Version::Exact(0)).await.unwrap();
    c.create("/box", b"", &CreateOptions::new(CreateMode::Container))
        .await
        .unwrap();
    c.create("/box/item", b"x", &opts).await.unwrap();
    c.create(
        "/ttl",
        b"t",
        &CreateOptions::new(CreateMode::PersistentWithTtl(Duration::from_secs(3600))),
    )
    .await
    .unwrap();
    c.add_auth("digest", b"alice:secret").await.unwrap();
    c.create(
        "/secure",
        b"private",
        &CreateOptions::default().acl(Acl::creator_all()),
    )
    .await
    .unwrap();
    c.set_acl("/ttl", &Acl::read_unsafe(), Version::Any)
        .await
        .unwrap();
    c.multi()
        .create("/m1", b"one", &opts)
        .set_data("/m1", b"two", Version::Exact(0))
        .commit()
        .await
        .unwrap();
    // Failed writes take a zxid and change nothing.
    let failed = c
        .multi()
        .create("/m2", b"", &opts)
        .check("/m1", Version::Exact(7))
        .commit()
        .await;
    assert!(failed.is_err());
    assert_eq!(
        c.create("/app", b"", &opts).await.unwrap_err(),
        Error::NodeExists
    );
}

async fn restart_keeps_everything(snap_count: u64) {
    let dir = TempDir::new("restart");
    let server = builder(&dir.0)
        .snap_count(snap_count)
        .start()
        .await
        .unwrap();
    let c = Client::connect(&server.connect_string()).await.unwrap();
    workload(&c).await;
    let before = dump(&c, "/").await;
    let zxid = server.last_zxid();
    c.close().await.unwrap();
    let zxid_closed = server.last_zxid();
    assert!(zxid_closed > zxid);
    server.shutdown().await;

    let server = builder(&dir.0)
        .snap_count(snap_count)
        .start()
        .await
        .unwrap();
    assert_eq!(server.last_zxid(), zxid_closed, "zxid recovered");
    let c = Client::connect(&server.connect_string()).await.unwrap();
    c.add_auth("digest", b"alice:secret").await.unwrap();
    let after = dump(&c, "/").await;
    assert_eq!(after, before, "the tree as clients see it");
    // The sequence counter, the container and the TTL node carry on.
    let (p, stat) = c
        .create(
            "/app/seq-",
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .await
        .unwrap();
    assert_eq!(p, "/app/seq-0000000003");
    assert!(stat.czxid > zxid_closed);
    c.delete("/box/item", Version::Any).await.unwrap();
    assert!(c.exists("/box").await.unwrap().is_some());
    c.close().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn state_survives_a_restart_from_the_log_alone() {
    restart_keeps_everything(1_000_000).await;
}

#[tokio::test]
async fn state_survives_a_restart_from_snapshots_and_log() {
    // A snapshot every 3 transactions: recovery = newest snapshot + tail.
    restart_keeps_everything(3).await;
    let dir = TempDir::new("files");
    let server = builder(&dir.0).snap_count(3).start().await.unwrap();
    let c = Client::connect(&server.connect_string()).await.unwrap();
    for i in 0..40 {
        c.create(&format!("/n{i}"), b"", &CreateOptions::default())
            .await
            .unwrap();
    }
    c.close().await.unwrap();
    server.shutdown().await;
    // Old snapshots and log segments are purged: 3 snapshots kept.
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let snaps = names.iter().filter(|n| n.starts_with("snapshot.")).count();
    let logs = names.iter().filter(|n| n.starts_with("log.")).count();
    assert_eq!(snaps, 3, "{names:?}");
    assert!(logs <= 5, "{names:?}");
}

#[tokio::test]
async fn a_second_server_cannot_use_the_same_data_dir() {
    let dir = TempDir::new("lock");
    let server = builder(&dir.0).start().await.unwrap();
    let err = builder(&dir.0).start().await.unwrap_err();
    assert!(
        err.to_string().contains("in use by another server"),
        "{err}"
    );
    server.shutdown().await;
    // Free again once the first one stopped.
    builder(&dir.0).start().await.unwrap().shutdown().await;
}

#[tokio::test]
async fn sessions_and_ephemerals_survive_a_restart() {
    let dir = TempDir::new("sessions");
    let server = builder(&dir.0).start().await.unwrap();
    let addr = server.local_addr();
    let c = Client::builder()
        .session_timeout(Duration::from_secs(4))
        .connect(&addr.to_string())
        .await
        .unwrap();
    let session = c.session_id();
    c.create("/mine", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    // A second session reached through a proxy that will never let it
    // back: after the restart it must expire and lose its ephemeral.
    let proxy = FaultProxy::start(addr).await.unwrap();
    let gone = Client::builder()
        .session_timeout(Duration::from_secs(2))
        .connect(&proxy.addr().to_string())
        .await
        .unwrap();
    gone.create("/theirs", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    proxy.set_mode(FaultMode::Blackhole);
    server.shutdown().await;

    let server = builder(&dir.0).listen(addr).start().await.unwrap();
    // `c` reconnects on its own and finds its session.
    let deadline = Instant::now() + SOON;
    while c.exists("/mine").await.is_err() {
        assert!(Instant::now() < deadline, "no resume: {:?}", c.state());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.session_id(), session);
    assert_eq!(c.state(), SessionState::Connected);
    let stat = c.exists("/mine").await.unwrap().unwrap();
    assert_eq!(stat.ephemeral_owner, session.0);
    // The silent session expires after its timeout, counted from the start.
    let deadline = Instant::now() + SOON;
    while c.exists("/theirs").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "restored session never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(gone);
    c.close().await.unwrap();
    let check = Client::connect(&addr.to_string()).await.unwrap();
    assert!(check.exists("/mine").await.unwrap().is_none());
    check.close().await.unwrap();
    server.shutdown().await;

    // And a closed or expired session stays dead after another restart.
    let server = builder(&dir.0).listen(addr).start().await.unwrap();
    assert_eq!(server.session_count(), 0);
    server.shutdown().await;
}

// ---- kill -9 of the server process ----------------------------------------------

/// A `zoo.cfg` in `dir` for a durable server on a free port (`extra`
/// appended); returns its path and the client address.
fn durable_config(dir: &TempDir, extra: &str) -> (std::path::PathBuf, SocketAddr) {
    let port = free_port();
    let cfg = dir.0.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=200\nclientPort={port}\nclientPortAddress=127.0.0.1\ndataDir={}\n{extra}",
            dir.0.join("data").display()
        ),
    )
    .unwrap();
    (cfg, format!("127.0.0.1:{port}").parse().unwrap())
}

fn spawn(cfg: &Path) -> Guard {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.starts_with("zkit-server listening on"), "{line:?}");
    Guard(child)
}

#[derive(Debug, Default, Clone)]
struct Acked {
    /// Created paths with their data.
    created: BTreeMap<String, Vec<u8>>,
    /// Per counter node, the highest value whose setData was acknowledged.
    counters: BTreeMap<String, u64>,
}

/// One writer: creates and counter updates until the first error.
async fn writer(c: Client, id: usize, acked: Arc<Mutex<Acked>>, round: usize) {
    let counter = format!("/load/counter-{round}-{id}");
    match c.create(&counter, b"0", &CreateOptions::default()).await {
        Ok(_) | Err(Error::NodeExists) => {}
        Err(_) => return,
    }
    for n in 1u64.. {
        let path = format!("/load/r{round}-w{id}-{n}");
        let data = format!("{round}:{id}:{n}").into_bytes();
        // Pipelined: a create and a counter update in flight together.
        let create = c.create(&path, &data, &CreateOptions::default());
        let set = c.set_data(&counter, n.to_string().as_bytes(), Version::Any);
        let (cr, sr) = tokio::join!(create, set);
        let mut a = acked.lock().unwrap();
        if cr.is_ok() {
            a.created.insert(path, data);
        }
        if sr.is_ok() {
            let v = a.counters.entry(counter.clone()).or_default();
            *v = (*v).max(n);
        }
        if cr.is_err() || sr.is_err() {
            return;
        }
    }
}

/// kill -9 of the server process mid-load, `ZKIT_DURABILITY_ROUNDS` times
/// (default 6; the long run in issue 13's note used 200). Each round checks
/// the previous round's acknowledged writes; the end checks all of them.
/// Prints one JSON line: rounds, writes, recovery times (start of the
/// process to serving, which includes log replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_write_load_loses_no_acknowledged_write() {
    let dir = TempDir::new("kill9");
    let (cfg, addr) = durable_config(&dir, "snapCount=300\npreAllocSize=256\n");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let rounds: usize = std::env::var("ZKIT_DURABILITY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut recovery_ms = Vec::with_capacity(rounds);
    let mut last_round = Acked::default();
    for round in 0..rounds {
        let t0 = std::time::Instant::now();
        let server = spawn(&cfg);
        recovery_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let setup = Client::connect(&addr.to_string()).await.unwrap();
        // Everything acknowledged in the round before is here (all rounds
        // are checked at the end).
        verify(&setup, &last_round).await;
        let before_round = acked.lock().unwrap().clone();
        match setup.create("/load", b"", &CreateOptions::default()).await {
            Ok(_) | Err(Error::NodeExists) => {}
            Err(e) => panic!("{e}"),
        }
        let mut tasks = Vec::new();
        for id in 0..4 {
            let c = Client::builder()
                .session_timeout(Duration::from_secs(2))
                .connect(&addr.to_string())
                .await
                .unwrap();
            tasks.push(tokio::spawn(writer(c, id, acked.clone(), round)));
        }
        setup.close().await.unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let run = Duration::from_millis(200 + seed % 600);
        tokio::time::sleep(run).await;
        let before = acked.lock().unwrap().created.len();
        drop(server); // SIGKILL, mid-load
        for t in tasks {
            tokio::time::timeout(SOON, t).await.unwrap().unwrap();
        }
        let now = acked.lock().unwrap().clone();
        let after = now.created.len();
        assert!(
            after > before_round.created.len() && before > 0,
            "round {round}: the load did not run"
        );
        last_round = Acked {
            created: now
                .created
                .into_iter()
                .filter(|(p, _)| !before_round.created.contains_key(p))
                .collect(),
            counters: now.counters,
        };
    }
    let server = spawn(&cfg);
    let c = Client::connect(&addr.to_string()).await.unwrap();
    let a = acked.lock().unwrap().clone();
    verify(&c, &a).await;
    assert!(a.created.len() > 100, "only {} writes", a.created.len());
    recovery_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| recovery_ms[((recovery_ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{{\"test\":\"kill9_durability\",\"rounds\":{rounds},\"acknowledged_creates\":{},\"lost\":0,\"recovery_ms_p50\":{:.1},\"recovery_ms_p99\":{:.1},\"recovery_ms_max\":{:.1}}}",
        a.created.len(),
        pct(0.5),
        pct(0.99),
        recovery_ms[recovery_ms.len() - 1]
    );
    c.close().await.unwrap();
    drop(server);
}

async fn verify(c: &Client, acked: &Acked) {
    for (path, data) in &acked.created {
        match c.get_data(path).await {
            Ok((d, _)) => assert_eq!(&d[..], &data[..], "{path}"),
            Err(e) => panic!("acknowledged create of {path} lost: {e}"),
        }
    }
    for (path, n) in &acked.counters {
        let (d, _) = c.get_data(path).await.unwrap();
        let v: u64 = std::str::from_utf8(&d).unwrap().parse().unwrap();
        assert!(v >= *n, "{path}: {v} < acknowledged {n}");
    }
}

/// A full disk (the server process limited to a file size with
/// `RLIMIT_FSIZE`, `SIGXFSZ` ignored so writes fail with EFBIG): the log
/// write fails, the server stops serving and exits with a failure status
/// and a clear message (ZooKeeper exits too), nothing acknowledged is lost,
/// the log is not corrupted, and the server recovers once space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_server_without_losing_acknowledged_writes() {
    if !Path::new("/usr/bin/prlimit").exists() {
        eprintln!("SKIPPED: prlimit (util-linux) is needed");
        return;
    }
    let dir = TempDir::new("fulldisk");
    let (cfg, addr) = durable_config(&dir, "snapCount=1000000\npreAllocSize=64\n");
    // 600 KB of log, then no more space.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; exec /usr/bin/prlimit --fsize=600000 \"$0\" --config \"$1\"")
        .arg(BIN)
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("zkit-server listening on"), "{line:?}");
    let guard = Guard(child);
    let c = Client::builder()
        .session_timeout(Duration::from_secs(4))
        .connect(&addr.to_string())
        .await
        .unwrap();
    c.create("/fill", b"", &CreateOptions::default())
        .await
        .unwrap();
    let value = vec![7u8; 1000];
    let mut acked = Vec::new();
    let mut first_error = None;
    for i in 0..5000 {
        let path = format!("/fill/n{i}");
        match c.create(&path, &value, &CreateOptions::default()).await {
            Ok(_) => acked.push(path),
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    let e = first_error.expect("the disk filled up");
    assert!(
        matches!(e, Error::ConnectionLoss | Error::SessionExpired),
        "{e}"
    );
    assert!(acked.len() > 100, "only {} writes fitted", acked.len());
    // The server exits with a failure status and says why.
    let mut guard = guard;
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + SOON;
        loop {
            if let Some(s) = guard.0.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
                return (s, err);
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(!status.0.success(), "{:?}", status.0);
    assert!(
        status.1.contains("transaction log write failed"),
        "stderr: {}",
        status.1
    );
    drop(c);
    // Space is back: the same data directory recovers everything
    // acknowledged, and takes writes again.
    let server = spawn(&cfg);
    let c = Client::connect(&addr.to_string()).await.unwrap();
    for path in &acked {
        let (d, _) = c
            .get_data(path)
            .await
            .unwrap_or_else(|e| panic!("acknowledged {path} lost: {e}"));
        assert_eq!(d.len(), 1000);
    }
    c.create("/after", b"x", &CreateOptions::default())
        .await
        .unwrap();
    c.close().await.unwrap();
    drop(server);
}

#[tokio::test]
async fn a_tree_thousands_of_levels_deep_survives_snapshots_and_a_restart() {
    // Nothing about a deep path may recurse once per level: not the
    // snapshot written every 500 transactions, not the recovery.
    const DEPTH: usize = 3_000;
    let dir = TempDir::new("deep");
    let server = builder(&dir.0).snap_count(500).start().await.unwrap();
    let c = Client::connect(&server.connect_string()).await.unwrap();
    let mut path = String::new();
    for _ in 0..DEPTH {
        path.push_str("/d");
        c.create(&path, b"", &CreateOptions::default())
            .await
            .unwrap();
    }
    c.set_data(&path, b"bottom", Version::Any).await.unwrap();
    c.close().await.unwrap();
    server.shutdown().await;
    let snaps = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("snapshot.")
        })
        .count();
    assert!(snaps >= 1, "no snapshot was written");
    let server = builder(&dir.0).snap_count(500).start().await.unwrap();
    let c = Client::connect(&server.connect_string()).await.unwrap();
    assert_eq!(&c.get_data(&path).await.unwrap().0[..], b"bottom");
    assert_eq!(
        c.get_all_children_number("/d").await.unwrap(),
        i32::try_from(DEPTH - 1).unwrap()
    );
    c.close().await.unwrap();
    server.shutdown().await;
}
