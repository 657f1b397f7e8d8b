//! Interop: zkit's lock and leader latch in the same directory as Apache
//! Curator 5.4 (Debian `libcurator-*-java`) and kazoo (Debian
//! `python3-kazoo`) processes. Every holder does a compare-and-set step on a
//! shared counter (read, pause, write with the version read): two holders at
//! once make one of them fail with BadVersion, which every side counts.
//!
//! Needs Java with `javac`, the Curator jars and kazoo; a missing piece fails
//! the test with what to install (`ZKIT_ALLOW_MISSING_ZOOKEEPER=1` skips).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{base, client, connect_string, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use zkit::{Client, CreateOptions, Error, Version};
use zkit_recipes::{AtomicLong, LeaderLatch, Lock, MultiLock};

const JARS: &str = "/usr/share/java";
const PYTHON: &str = "/usr/bin/python3";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// `false` (the test is skipped, loudly) unless `ZKIT_TEST_PEERS=1`; then
/// fails when `ok` is false.
fn require(ok: bool, what: &str) -> bool {
    if zkit_testcontainers::skip_without_peers(what) {
        return false;
    }
    assert!(ok, "{what} is missing: run scripts/install-zookeeper.sh");
    true
}

fn kazoo_installed() -> bool {
    std::process::Command::new(PYTHON)
        .args(["-c", "import kazoo"])
        .status()
        .is_ok_and(|s| s.success())
}

fn classpath() -> String {
    [
        "zookeeper.jar",
        "zookeeper-jute.jar",
        "curator-recipes.jar",
        "curator-framework.jar",
        "curator-client.jar",
        "curator-x-discovery.jar",
        "jackson-databind.jar",
        "jackson-core.jar",
        "jackson-annotations.jar",
        "slf4j-nop.jar",
    ]
    .iter()
    .map(|j| format!("{JARS}/{j}"))
    .collect::<Vec<_>>()
    .join(":")
}

/// Compiles the Curator worker once per test binary; `None` when Curator or
/// javac is missing.
fn curator_worker() -> Option<PathBuf> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap();
    if let Some(p) = built.as_ref() {
        return Some(p.clone());
    }
    // Nothing to build when the peers are off: `require` then skips.
    if std::env::var(zkit_testcontainers::TEST_PEERS_ENV).as_deref() != Ok("1") {
        return None;
    }
    if !Path::new(JARS).join("curator-recipes.jar").exists() {
        return None;
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-java");
    std::fs::create_dir_all(&out).unwrap();
    let status = std::process::Command::new("javac")
        .args(["-nowarn", "-d"])
        .arg(&out)
        .arg("-cp")
        .arg(classpath())
        .arg(interop_dir().join("CuratorWorker.java"))
        .status()
        .ok()?;
    assert!(status.success(), "javac CuratorWorker.java failed");
    *built = Some(out.clone());
    Some(out)
}

/// `java -cp <worker and jars> CuratorWorker <args>`.
fn curator(classes: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!("{}:{}", classes.display(), classpath()))
        .arg("CuratorWorker")
        .args(args);
    cmd
}

/// Runs a worker process; returns its stdout lines as they come.
fn spawn(
    mut cmd: Command,
) -> (
    tokio::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn worker");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = tx.send(l);
        }
    });
    (child, rx)
}

async fn worker_result(
    mut child: tokio::process::Child,
    mut lines: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> usize {
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("worker finished")
        .unwrap();
    let mut violations = None;
    let mut done = false;
    // The output reader ends at EOF: read to the end.
    while let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(10), lines.recv()).await {
        if let Some(n) = l.strip_prefix("violations ") {
            violations = n.trim().parse().ok();
        }
        done |= l == "done";
    }
    assert!(status.success() && done, "worker failed: {status}");
    violations.expect("worker reported its violations")
}

/// One compare-and-set step; `true` on BadVersion (someone else was in).
async fn cas_step(c: &Client, counter: &str) -> bool {
    let (data, stat) = c.get_data(counter).await.unwrap();
    let v: u64 = std::str::from_utf8(&data).unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    match c
        .set_data(
            counter,
            (v + 1).to_string().as_bytes(),
            Version::Exact(stat.version),
        )
        .await
    {
        Ok(_) => false,
        Err(Error::BadVersion) => true,
        Err(e) => panic!("{e}"),
    }
}

/// `n` zkit clients doing `rounds` CAS steps each under the lock at the one
/// path of `paths`, or under a `MultiLock` over all of them.
async fn zkit_lockers(
    paths: &[String],
    counter: &str,
    n: usize,
    rounds: usize,
) -> Vec<tokio::task::JoinHandle<usize>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let c = client().await;
        let (one, many) = match paths {
            [p] => (Some(Lock::new(&c, p.clone())), None),
            _ => (None, Some(MultiLock::new(&c, paths.to_vec()))),
        };
        let counter = counter.to_string();
        out.push(tokio::spawn(async move {
            let mut violations = 0;
            for _ in 0..rounds {
                if let Some(l) = &one {
                    let g = l.acquire().await.unwrap();
                    violations += usize::from(cas_step(&c, &counter).await);
                    g.release().await.unwrap();
                } else if let Some(m) = &many {
                    let g = m.acquire().await.unwrap();
                    violations += usize::from(cas_step(&c, &counter).await);
                    g.release().await.unwrap();
                }
            }
            c.close().await.unwrap();
            violations
        }));
    }
    out
}

async fn setup_counter(name: &str) -> (Client, String, String) {
    let setup = client().await;
    let dir = base(&setup, name).await;
    let counter = format!("{dir}/counter");
    setup
        .create(&counter, b"0", &CreateOptions::default())
        .await
        .unwrap();
    (setup, format!("{dir}/lock"), counter)
}

async fn counter_value(c: &Client, counter: &str) -> usize {
    let (d, _) = c.get_data(counter).await.unwrap();
    std::str::from_utf8(&d).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkit_and_curator_share_a_mutex() {
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    let (setup, lock_path, counter) = setup_counter("curatormutex").await;
    const ROUNDS: usize = 100;
    let rounds = ROUNDS.to_string();
    let cmd = curator(
        &classes,
        &["lock", &connect_string(), &lock_path, &counter, &rounds],
    );
    let (child, lines) = spawn(cmd);
    let ours = zkit_lockers(std::slice::from_ref(&lock_path), &counter, 2, ROUNDS).await;
    let java_violations = worker_result(child, lines).await;
    let mut zkit_violations = 0;
    for t in ours {
        zkit_violations += t.await.unwrap();
    }
    assert_eq!(
        (java_violations, zkit_violations),
        (0, 0),
        "two holders at once"
    );
    assert_eq!(counter_value(&setup, &counter).await, 3 * ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkit_and_curator_share_a_multi_lock() {
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    let (setup, lock_path, counter) = setup_counter("curatormultilock").await;
    let (p1, p2) = (format!("{lock_path}-1"), format!("{lock_path}-2"));
    const ROUNDS: usize = 60;
    let rounds = ROUNDS.to_string();
    // Curator takes them in list order, zkit in sorted order: Curator's
    // list must be sorted too, or a Curator holder of p2 and a zkit holder
    // of p1 wait for each other forever (this test hung so before).
    let both = format!("{p1},{p2}");
    let (child, lines) = spawn(curator(
        &classes,
        &["multilock", &connect_string(), &both, &counter, &rounds],
    ));
    let ours = zkit_lockers(&[p1.clone(), p2.clone()], &counter, 2, ROUNDS).await;
    let java_violations = worker_result(child, lines).await;
    let mut zkit_violations = 0;
    for t in ours {
        zkit_violations += t.await.unwrap();
    }
    assert_eq!(
        (java_violations, zkit_violations),
        (0, 0),
        "two holders at once"
    );
    assert_eq!(counter_value(&setup, &counter).await, 3 * ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkit_and_curator_share_a_distributed_atomic_long() {
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    let setup = client().await;
    let dir = base(&setup, "curatoratomic").await;
    let (counter, lock_path) = (format!("{dir}/value"), format!("{dir}/promoted"));
    const N: usize = 150;
    let n = N.to_string();
    let (child, lines) = spawn(curator(
        &classes,
        &["atomic", &connect_string(), &counter, &lock_path, &n],
    ));
    // Two zkit clients race the Java one; lost races are promoted to the
    // same lock path as Curator's. An update can still fail (every try met
    // another writer): what matters is that none is lost or doubled.
    let mut ours = Vec::new();
    for _ in 0..2 {
        let c = client().await;
        let a = AtomicLong::new(&c, counter.clone())
            .optimistic_tries(3)
            .promoted_to_lock(lock_path.clone());
        ours.push(tokio::spawn(async move {
            let mut posts = Vec::new();
            for _ in 0..N {
                let r = a.increment().await.unwrap();
                if r.succeeded {
                    assert_eq!(r.post_value, r.pre_value + 1);
                    posts.push(r.post_value);
                }
            }
            c.close().await.unwrap();
            posts
        }));
    }
    let java_failures = worker_result(child, lines).await;
    let mut posts = Vec::new();
    for t in ours {
        posts.extend(t.await.unwrap());
    }
    let zkit_successes = posts.len();
    posts.sort_unstable();
    posts.dedup();
    assert_eq!(posts.len(), zkit_successes, "a value written twice");
    assert!(zkit_successes > 0 && java_failures < N);
    // Both read the same 8-byte big-endian value: every successful
    // increment of either side counted once.
    let total = (N - java_failures + zkit_successes) as i64;
    assert_eq!(
        AtomicLong::new(&setup, counter.clone())
            .get()
            .await
            .unwrap(),
        total
    );
    let (raw, _) = setup.get_data(&counter).await.unwrap();
    assert_eq!(&raw[..], &total.to_be_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkit_and_kazoo_share_a_lock() {
    if !require(kazoo_installed(), "kazoo (python3-kazoo)") {
        return;
    }
    let (setup, lock_path, counter) = setup_counter("kazoolock").await;
    const ROUNDS: usize = 100;
    let mut cmd = Command::new(PYTHON);
    cmd.arg(interop_dir().join("kazoo_worker.py"))
        .args([&connect_string(), &lock_path, &counter])
        .arg(ROUNDS.to_string());
    let (child, lines) = spawn(cmd);
    let ours = zkit_lockers(std::slice::from_ref(&lock_path), &counter, 2, ROUNDS).await;
    let kazoo_violations = worker_result(child, lines).await;
    let mut zkit_violations = 0;
    for t in ours {
        zkit_violations += t.await.unwrap();
    }
    assert_eq!(
        (kazoo_violations, zkit_violations),
        (0, 0),
        "two holders at once"
    );
    assert_eq!(counter_value(&setup, &counter).await, 3 * ROUNDS);
}

/// A Curator LeaderLatch leads first; a zkit LeaderLatch in the same
/// election waits, never leads at the same time, and takes over when the
/// Curator latch closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkit_and_curator_share_a_leader_latch() {
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    let (setup, _, counter) = setup_counter("curatorlatch").await;
    let path = format!("{}/election", counter.rsplit_once('/').unwrap().0);
    let cmd = curator(
        &classes,
        &[
            "latch",
            &connect_string(),
            &path,
            &counter,
            "1500",
            "curator-1",
        ],
    );
    let (child, mut lines) = spawn(cmd);
    let first = tokio::time::timeout(Duration::from_secs(60), lines.recv())
        .await
        .expect("Curator leads")
        .unwrap();
    assert_eq!(first, "leader");
    let c = client().await;
    let latch = LeaderLatch::start(&c, path.clone(), "zkit-1")
        .await
        .unwrap();
    let ids = latch.participants().await.unwrap();
    assert_eq!(
        ids,
        vec!["curator-1", "zkit-1"],
        "one election, Curator first"
    );
    // An observer sees the Curator leader, then us after it leaves.
    let mut observer = zkit_recipes::LeaderObserver::observe(&setup, path.clone());
    observer.initialized().await.unwrap();
    assert_eq!(
        observer.current().map(|l| l.id).as_deref(),
        Some("curator-1")
    );
    let violations = Arc::new(AtomicUsize::new(0));
    let steps = Arc::new(AtomicUsize::new(0));
    // While Curator leads, we must not; once it closes, we lead.
    let ours = {
        let (c, counter, violations, steps) = (
            c.clone(),
            counter.clone(),
            violations.clone(),
            steps.clone(),
        );
        let rx = latch.leadership_watch();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while tokio::time::Instant::now() < deadline && steps.load(Ordering::SeqCst) < 50 {
                if matches!(*rx.borrow(), zkit_recipes::Leadership::Leader { .. }) {
                    violations
                        .fetch_add(usize::from(cas_step(&c, &counter).await), Ordering::SeqCst);
                    steps.fetch_add(1, Ordering::SeqCst);
                } else {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };
    let curator_violations = worker_result(child, lines).await;
    tokio::time::timeout(Duration::from_secs(30), latch.await_leadership())
        .await
        .unwrap()
        .unwrap();
    ours.await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while observer.current().map(|l| l.id).as_deref() != Some("zkit-1") {
            observer.changed().await.unwrap();
        }
    })
    .await
    .expect("the observer sees zkit lead after Curator");
    assert_eq!(
        observer.current().map(|l| l.fencing_token),
        latch.fencing_token()
    );
    assert_eq!(
        (curator_violations, violations.load(Ordering::SeqCst)),
        (0, 0),
        "two leaders at once"
    );
    assert!(steps.load(Ordering::SeqCst) >= 50, "zkit never led");
    latch.close().await.unwrap();
    c.close().await.unwrap();
    let _ = setup;
}

/// A Curator ServiceDiscovery finds a zkit-registered instance (with its
/// payload) and zkit finds the Curator one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkit_and_curator_discover_each_other() {
    use zkit_recipes::discovery::{ServiceDiscovery, ServiceInstance};
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-discovery-java) or javac");
        return;
    };
    let setup = client().await;
    let dir = base(&setup, "discovery").await;
    let services = format!("{dir}/services");
    let sessions = zkit_recipes::Sessions::new(Client::builder(), connect_string());
    let d = ServiceDiscovery::<serde_json::Value>::new(sessions, services.clone());
    let _reg = d
        .register(
            ServiceInstance::new("rust-svc", "10.2.2.2", 7070)
                .id("r1")
                .payload(serde_json::json!({"zone": "us-2"})),
        )
        .await
        .unwrap();
    let mut cmd = curator(&classes, &["discovery", &connect_string(), &services]);
    cmd.stdin(Stdio::piped());
    let (mut child, mut lines) = spawn(cmd);
    assert_eq!(next_line(&mut lines).await, "registered");
    assert_eq!(
        next_line(&mut lines).await,
        "found r1 10.2.2.2:7070 zone=us-2"
    );
    let java = d.query_instances("java-svc").await.unwrap();
    assert_eq!(java.len(), 1, "{java:?}");
    let j = &java[0];
    assert_eq!(
        (j.id.as_str(), j.address.as_deref(), j.port),
        ("j1", Some("10.1.1.1"), Some(9090))
    );
    assert_eq!(j.payload.as_ref().unwrap()["zone"], "eu-1");
    drop(child.stdin.take()); // tell the worker to finish
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

/// A Curator `GroupMember`'s payload update (`setThisData`) reaches a zkit
/// `MemberSet` (it used to watch the children only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_set_sees_a_curator_members_payload_update() {
    use tokio::io::AsyncWriteExt;
    use zkit_recipes::{GroupMember, MemberSet};
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    let setup = client().await;
    let dir = base(&setup, "groupcur").await;
    let path = format!("{dir}/members");
    let mut cmd = curator(&classes, &["group", &connect_string(), &path]);
    cmd.stdin(Stdio::piped());
    let (mut child, mut lines) = spawn(cmd);
    assert_eq!(next_line(&mut lines).await, "joined");
    let z = client().await;
    let _z1 = GroupMember::join(&z, &path, "z1", b"pz1").await.unwrap();
    let set = MemberSet::watch(&setup, &path);
    let view = |set: &MemberSet| {
        set.borrow()
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            .collect::<Vec<_>>()
    };
    let want = ["j1=pj1", "z1=pz1"];
    eventually("both members", Duration::from_secs(10), || async {
        view(&set) == want
    })
    .await;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"update\n").await.unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(next_line(&mut lines).await, "updated");
    let want = ["j1=pj1-v2", "z1=pz1"];
    eventually("Curator's update seen", Duration::from_secs(10), || async {
        view(&set) == want
    })
    .await;
    drop(stdin);
    assert_eq!(next_line(&mut lines).await, "done");
    eventually("j1 left", Duration::from_secs(10), || async {
        view(&set) == ["z1=pz1"]
    })
    .await;
    z.close().await.unwrap();
}

/// A zkit `ServiceCache` started before its service exists sees an
/// instance Curator registers later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_cache_sees_a_late_curator_registration() {
    use zkit_recipes::discovery::ServiceDiscovery;
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-discovery-java) or javac");
        return;
    };
    let setup = client().await;
    let dir = base(&setup, "latecur").await;
    let services = format!("{dir}/services");
    let sessions = zkit_recipes::Sessions::new(Client::builder(), connect_string());
    let d = ServiceDiscovery::<serde_json::Value>::new(sessions, services.clone());
    let cache = d.cache("late");
    assert!(d.query_instances("late").await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cmd = curator(
        &classes,
        &["register", &connect_string(), &services, "late", "j7"],
    );
    cmd.stdin(Stdio::piped());
    let (mut child, mut lines) = spawn(cmd);
    assert_eq!(next_line(&mut lines).await, "registered");
    eventually("the cache sees j7", Duration::from_secs(10), || async {
        cache
            .instances()
            .iter()
            .map(|i| i.id.clone())
            .collect::<Vec<_>>()
            == ["j7"]
    })
    .await;
    drop(child.stdin.take());
    assert_eq!(next_line(&mut lines).await, "done");
    eventually(
        "the cache sees j7 leave",
        Duration::from_secs(10),
        || async { cache.instances().is_empty() },
    )
    .await;
}

async fn next_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(60), lines.recv())
        .await
        .expect("worker output")
        .expect("worker alive")
}

/// Runs `body` in a kazoo process with `q` = kazoo's `Queue` at `path`;
/// returns its stdout.
async fn kazoo_queue_script(path: &str, body: &str) -> String {
    let script = format!(
        "from kazoo.client import KazooClient\n\
         zk = KazooClient(hosts='{cs}'); zk.start()\n\
         q = zk.Queue('{path}')\n\
         {body}\n",
        cs = connect_string()
    );
    let out = Command::new(PYTHON)
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// kazoo's `Queue` and zkit's priority queue share one queue: kazoo puts,
/// zkit takes in kazoo's order; zkit puts, kazoo gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkit_and_kazoo_share_a_priority_queue() {
    if !require(kazoo_installed(), "kazoo (python3-kazoo)") {
        return;
    }
    let setup = client().await;
    let dir = base(&setup, "kazooqueue").await;
    let path = format!("{dir}/q");
    kazoo_queue_script(
        &path,
        "q.put(b'k-low', priority=200); q.put(b'k-high', priority=3)",
    )
    .await;
    let q = zkit_recipes::Queue::priority(&setup, path.clone());
    assert_eq!(q.take().await.unwrap(), b"k-high");
    assert_eq!(q.take().await.unwrap(), b"k-low");
    q.put_with_priority(b"z-mid", 50).await.unwrap();
    q.put_with_priority(b"z-top", 1).await.unwrap();
    let out = kazoo_queue_script(&path, "print(q.get().decode()); print(q.get().decode())").await;
    assert_eq!(out, "z-top\nz-mid\n");
}

/// Curator's SimpleDistributedQueue and zkit's Queue share one queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkit_and_curator_share_a_fifo_queue() {
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    let setup = client().await;
    let dir = base(&setup, "curatorqueue").await;
    let path = format!("{dir}/q");
    let q = zkit_recipes::Queue::new(&setup, path.clone());
    let cmd = curator(&classes, &["queue", &connect_string(), &path]);
    let (child, mut lines) = spawn(cmd);
    assert_eq!(next_line(&mut lines).await, "offered");
    // zkit takes Curator's items in order, then gives it one.
    assert_eq!(q.take().await.unwrap(), b"j1");
    q.put(b"z1").await.unwrap();
    let next = next_line(&mut lines).await;
    // Curator takes the head: j2 (still queued) — then z1 stays for us.
    assert_eq!(next, "took j2");
    worker_done(child, lines).await;
    assert_eq!(q.take().await.unwrap(), b"z1");
}

async fn worker_done(
    mut child: tokio::process::Child,
    mut lines: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let mut done = false;
    // The output reader ends at EOF: read to the end.
    while let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(10), lines.recv()).await {
        done |= l == "done";
    }
    assert!(done);
}

/// Curator's `DistributedDelayQueue` and zkit's `DelayQueue` share one
/// queue. Curator puts two items (the later-due one first): zkit takes
/// each at its due time, earliest first. zkit puts two items while its
/// claims and waiting-line nodes sit in the queue path: Curator's default
/// consumer (no lockPath) receives each at its due time, earliest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkit_and_curator_share_a_delay_queue() {
    use tokio::io::AsyncWriteExt;
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let on_time = |what: &str, due: u64, at: u64| {
        assert!(at >= due, "{what}: {} ms early", due - at);
        assert!(at <= due + 1000, "{what}: {} ms late", at - due);
        eprintln!("{what}: delivered {} ms after its due time", at - due);
    };
    let setup = client().await;
    let dir = base(&setup, "curatordelay").await;
    let path = format!("{dir}/q");
    let q = zkit_recipes::DelayQueue::new(&setup, path.clone());
    let mut cmd = curator(&classes, &["delayqueue", &connect_string(), &path]);
    cmd.stdin(Stdio::piped());
    let (mut child, mut lines) = spawn(cmd);
    let mut stdin = child.stdin.take().unwrap();

    // Curator → zkit.
    let put = next_line(&mut lines).await;
    let dues: Vec<u64> = put
        .strip_prefix("put ")
        .unwrap_or_else(|| panic!("{put}"))
        .split(' ')
        .map(|d| d.parse().unwrap())
        .collect();
    let (early, late) = (dues[0], dues[1]);
    let claim = q.take_claimed().await.unwrap();
    on_time("Curator's j-early, zkit take_claimed", early, now_ms());
    assert_eq!(claim.data(), b"j-early");
    assert_eq!(
        claim.due(),
        std::time::UNIX_EPOCH + Duration::from_millis(early)
    );
    claim.complete().await.unwrap();
    assert_eq!(q.take().await.unwrap(), b"j-late");
    on_time("Curator's j-late, zkit take", late, now_ms());

    // zkit → Curator, with zkit's claims and line present (and non-empty,
    // so that no container reaping removes them meanwhile): Curator must
    // still sleep until the head item is due.
    let claims = format!("{path}/_claims|FFFFFFFFFFFF|");
    let waiters = format!("{path}/_waiters|FFFFFFFFFFFF|");
    let turn = Lock::new(&setup, waiters.clone()).acquire().await.unwrap();
    setup
        .create(
            &format!("{claims}/queue-|0|0000000000"),
            b"",
            &CreateOptions::new(zkit::CreateMode::Ephemeral),
        )
        .await
        .unwrap();
    let t = now_ms();
    let (z_early, z_late) = (t + 1500, t + 3000);
    let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
    q.put(b"z-late", at(z_late)).await.unwrap();
    q.put(b"z-early", at(z_early)).await.unwrap();
    stdin.write_all(b"consume\n").await.unwrap();
    stdin.flush().await.unwrap();
    for (want, due) in [("z-early", z_early), ("z-late", z_late)] {
        let line = next_line(&mut lines).await;
        let rest = line
            .strip_prefix(&format!("took {want} "))
            .unwrap_or_else(|| panic!("expected {want}, got {line:?}"));
        on_time(
            &format!("zkit's {want}, Curator consumer"),
            due,
            rest.parse().unwrap(),
        );
    }
    let (kids, _) = setup.get_children(&path).await.unwrap();
    assert!(
        kids.iter().any(|k| claims.ends_with(k.as_str()))
            && kids.iter().any(|k| waiters.ends_with(k.as_str())),
        "{kids:?}"
    );
    drop(stdin);
    worker_done(child, lines).await;
    turn.release().await.unwrap();
    assert_eq!(q.len().await.unwrap(), 0);
}
