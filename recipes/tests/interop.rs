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

/// The rest of the line that starts with `prefix` (the next line must).
async fn line_after(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    prefix: &str,
) -> String {
    let line = next_line(lines).await;
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix:?}…, got {line:?}"))
        .to_string()
}

/// Data and ephemeral owner of `path`, `None` when absent.
async fn node_at(c: &Client, path: &str) -> Option<(String, i64)> {
    match c.get_data(path).await {
        Ok((d, s)) => Some((String::from_utf8_lossy(&d).into_owned(), s.ephemeral_owner)),
        Err(Error::NoNode) => None,
        Err(e) => panic!("read {path}: {e:?}"),
    }
}

/// A Curator `PersistentNode` (`pnode` mode) at `path` with `data`:
/// the process, its stdin, its lines and its session id.
async fn curator_persistent_node(
    classes: &Path,
    path: &str,
    data: &str,
) -> (
    tokio::process::Child,
    tokio::process::ChildStdin,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    bool,
    i64,
) {
    let mut cmd = curator(classes, &["pnode", &connect_string(), path, data]);
    cmd.stdin(Stdio::piped());
    let (mut child, mut lines) = spawn(cmd);
    let stdin = child.stdin.take().unwrap();
    let created = line_after(&mut lines, "created ").await;
    let parts: Vec<&str> = created.split(' ').collect();
    assert_eq!(parts.len(), 3, "{created:?}");
    assert_eq!(parts[1], path, "Curator's actual path");
    (
        child,
        stdin,
        lines,
        parts[0] == "true",
        parts[2].parse().unwrap(),
    )
}

/// A Curator `PersistentNode` (EPHEMERAL) holds the name: a zkit
/// `PersistentNode` for it reports `Conflict` with the Java session as
/// owner and leaves the node alone; it takes the name (with its data) once
/// Curator closes its node, and again once a killed Curator process's
/// session expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zkit_persistent_node_waits_out_a_curator_persistent_node() {
    use zkit::{CreateMode, SessionId};
    use zkit_recipes::{NodeState, PersistentNode};
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    let setup = client().await;
    let dir = base(&setup, "curatorpnode").await;
    let path = format!("{dir}/holder");
    let z = client().await;
    for kill in [false, true] {
        let (mut child, stdin, lines, ok, java) =
            curator_persistent_node(&classes, &path, "java-data").await;
        assert!(ok, "Curator created its node");
        let before = setup.exists(&path).await.unwrap().expect("Curator's node");
        assert_eq!(before.ephemeral_owner, java);
        let node = PersistentNode::new(&z, path.clone(), CreateMode::Ephemeral, b"zkit-data");
        let mut states = node.states();
        let conflict = tokio::time::timeout(
            Duration::from_secs(10),
            states.wait_for(|s| !matches!(s, NodeState::Creating)),
        )
        .await
        .expect("a state after Creating")
        .unwrap()
        .clone();
        assert_eq!(
            conflict,
            NodeState::Conflict {
                owner: SessionId(java)
            }
        );
        // Never written nor deleted while Curator's session holds it.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(node.state(), conflict);
        let after = setup.exists(&path).await.unwrap().expect("still there");
        assert_eq!(
            (
                after.czxid,
                after.mzxid,
                after.version,
                after.ephemeral_owner
            ),
            (before.czxid, before.mzxid, before.version, java),
            "zkit touched Curator's node"
        );
        assert_eq!(
            node_at(&setup, &path).await,
            Some(("java-data".into(), java))
        );
        let t = tokio::time::Instant::now();
        if kill {
            // The session (2 s timeout) expires on the server.
            child.kill().await.unwrap();
            drop((stdin, lines));
        } else {
            drop(stdin);
            worker_done(child, lines).await;
        }
        assert!(node
            .wait_for_initial_create(Duration::from_secs(20))
            .await
            .unwrap());
        eprintln!(
            "zkit took the name {:?} after Curator {}",
            t.elapsed(),
            if kill { "was killed" } else { "closed" }
        );
        assert_eq!(
            node_at(&setup, &path).await,
            Some(("zkit-data".into(), z.session_id().0))
        );
        node.close().await.unwrap();
        assert_eq!(node_at(&setup, &path).await, None);
    }
    z.close().await.unwrap();
}

/// The reverse: zkit's `PersistentNode` (EPHEMERAL) holds the name when a
/// Curator `PersistentNode` starts. Curator adopts it (NODEEXISTS: it
/// writes its own data into zkit's node, RECIPES.md §5.10) and reports it
/// created; zkit keeps it (it leaves other writers' data alone). When zkit
/// closes (deleting its own node), Curator re-creates the name for its
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curator_persistent_node_adopts_a_zkit_persistent_node() {
    use tokio::io::AsyncWriteExt;
    use zkit::CreateMode;
    use zkit_recipes::{NodeState, PersistentNode};
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    let setup = client().await;
    let dir = base(&setup, "curatoradopt").await;
    let path = format!("{dir}/holder");
    let z = client().await;
    let zs = z.session_id().0;
    let node = PersistentNode::new(&z, path.clone(), CreateMode::Ephemeral, b"zkit-data");
    assert!(node
        .wait_for_initial_create(Duration::from_secs(10))
        .await
        .unwrap());
    let before = setup.exists(&path).await.unwrap().expect("zkit's node");
    let (child, mut stdin, mut lines, ok, java) =
        curator_persistent_node(&classes, &path, "java-data").await;
    // Curator reports its node created, at the path, but the node is
    // zkit's (same incarnation, zkit's session) with Curator's data in it.
    assert!(ok, "Curator's waitForInitialCreate on an adopted node");
    assert_ne!(java, zs);
    let after = setup.exists(&path).await.unwrap().expect("still there");
    assert_eq!(
        (after.czxid, after.ephemeral_owner),
        (before.czxid, zs),
        "the same node"
    );
    assert_eq!(
        node_at(&setup, &path).await,
        Some(("java-data".into(), zs)),
        "Curator wrote its data into zkit's node"
    );
    stdin.write_all(b"show\n").await.unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(
        next_line(&mut lines).await,
        format!("node java-data {zs}"),
        "Curator sees it the same way"
    );
    // zkit leaves another writer's data alone and still holds it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node.state(), NodeState::Created(path.clone()));
    assert_eq!(node.data(), b"zkit-data");
    assert_eq!(node_at(&setup, &path).await, Some(("java-data".into(), zs)));
    // zkit's close deletes its own node; Curator's watch sees it go and
    // Curator creates one of its own session.
    node.close().await.unwrap();
    eventually(
        "Curator re-creates the name for its session",
        Duration::from_secs(10),
        || async { node_at(&setup, &path).await == Some(("java-data".into(), java)) },
    )
    .await;
    drop(stdin);
    worker_done(child, lines).await;
    assert_eq!(node_at(&setup, &path).await, None, "Curator's close");
    z.close().await.unwrap();
}

/// A server of its own for the TTL test: extended types on, and the
/// container/TTL check every 200 ms instead of the shared fixture's 60 s.
enum TtlServer {
    Bundled(#[allow(dead_code)] zkit_server::RunningServer),
    ZooKeeper(#[allow(dead_code)] zkit_testcontainers::Ensemble),
}

async fn ttl_server() -> (TtlServer, String) {
    const CHECK_MS: u64 = 200;
    if common::bundled() {
        let s = zkit_server::Server::builder()
            .tick_time(common::TICK)
            .extended_types(true)
            .container_check_interval(Duration::from_millis(CHECK_MS))
            .start()
            .await
            .expect("bundled server");
        let cs = s.connect_string();
        (TtlServer::Bundled(s), cs)
    } else {
        let zk = zkit_testcontainers::Ensemble::builder()
            .size(1)
            .tick_time(common::TICK)
            .jvm_prop("znode.container.checkIntervalMs", CHECK_MS.to_string())
            .jvm_prop("zookeeper.extendedTypesEnabled", "true")
            .start()
            .await
            .expect("a ZooKeeper server");
        let cs = zk.connect_string();
        (TtlServer::ZooKeeper(zk), cs)
    }
}

/// Curator's and zkit's `PersistentTtlNode`s side by side, as a zkit
/// client sees them: the parent with the data and one child `touch`, no
/// ephemeral owner on either, the same parent and child incarnations over
/// four TTLs while the child's mtime and version advance (touched every
/// TTL/2). After the owner stops (Curator killed, zkit closed), the child
/// expires and the parent goes with it. With a 60 s TTL, emptying the
/// parent of a stopped node makes the server reap it at once: a container
/// on both sides (a persistent or 60 s TTL parent would stay).
///
/// Curator's `waitForInitialCreate` returns once the parent exists; its
/// first touch comes TTL/2 later (`scheduleAtFixedRate(ttl/2, ttl/2)`),
/// with the client's default data (the local address). zkit's waits for
/// the first touch, which writes no data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkit_and_curator_persistent_ttl_nodes_share_a_layout() {
    use zkit_recipes::PersistentTtlNode;
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    const TTL: Duration = Duration::from_millis(1000);
    const LONG: Duration = Duration::from_secs(60);
    let (_server, cs) = ttl_server().await;
    let c = tokio::time::timeout(Duration::from_secs(10), Client::connect(&cs))
        .await
        .expect("connect")
        .unwrap();
    c.create("/ttl", b"", &CreateOptions::default())
        .await
        .unwrap();
    let (jq, jl, zq, zl) = (
        "/ttl/curator",
        "/ttl/curator-long",
        "/ttl/zkit",
        "/ttl/zkit-long",
    );
    let mut cmd = curator(
        &classes,
        &[
            "ttlnode",
            &cs,
            "alive",
            &format!("{jq}={}", TTL.as_millis()),
            &format!("{jl}={}", LONG.as_millis()),
        ],
    );
    cmd.stdin(Stdio::piped());
    let (mut child, mut lines) = spawn(cmd);
    assert_eq!(line_after(&mut lines, "created ").await, "true true");
    let z = PersistentTtlNode::new(&c, zq, TTL, b"alive".to_vec());
    let zlong = PersistentTtlNode::new(&c, zl, LONG, b"alive".to_vec());
    for n in [&z, &zlong] {
        assert!(n
            .wait_for_initial_create(Duration::from_secs(10))
            .await
            .unwrap());
    }
    assert_eq!(z.child_path(), format!("{zq}/touch"));

    // (parent Stat, child Stat) with the layout checked.
    let layout = |p: &'static str| {
        let c = c.clone();
        async move {
            let (data, parent) = c.get_data(p).await.unwrap();
            assert_eq!(&data[..], b"alive", "{p}: the parent holds the data");
            let (kids, _) = c.get_children(p).await.unwrap();
            assert_eq!(kids, ["touch"], "{p}");
            let (touch_data, child) = c.get_data(&format!("{p}/touch")).await.unwrap();
            assert_eq!(
                (parent.ephemeral_owner, child.ephemeral_owner),
                (0, 0),
                "{p}: container and TTL nodes show no owner"
            );
            (parent, child, touch_data)
        }
    };
    // Curator touches TTL/2 after its start.
    eventually("Curator's first touch", TTL * 2, || async {
        c.exists(&format!("{jq}/touch")).await.unwrap().is_some()
    })
    .await;
    let mut before = Vec::new();
    for p in [jq, zq] {
        let (parent, child, touch_data) = layout(p).await;
        eprintln!(
            "{p}: touch data {:?}, version {}",
            String::from_utf8_lossy(&touch_data),
            child.version
        );
        before.push((parent, child));
    }
    assert!(layout(zq).await.2.is_empty(), "zkit's touch writes no data");
    // The 60 s nodes: Curator's has no child for 30 s; a child of ours
    // under each (emptied later) shows what kind the parents are.
    for p in [jl, zl] {
        let (data, stat) = c.get_data(p).await.unwrap();
        assert_eq!((&data[..], stat.ephemeral_owner), (&b"alive"[..], 0), "{p}");
        c.create(&format!("{p}/probe"), b"", &CreateOptions::default())
            .await
            .unwrap();
    }
    tokio::time::sleep(TTL * 4).await;
    for (p, (parent, child)) in [jq, zq].into_iter().zip(&before) {
        let (parent_now, child_now, _) = layout(p).await;
        assert_eq!(parent_now.czxid, parent.czxid, "{p}: parent kept");
        assert_eq!(child_now.czxid, child.czxid, "{p}: child never expired");
        assert!(child_now.mtime > child.mtime, "{p}: child touched");
        assert!(
            child_now.version >= child.version + 4,
            "{p}: touched every TTL/2: {} → {}",
            child.version,
            child_now.version
        );
        eprintln!(
            "{p}: touch version {} → {}",
            child.version, child_now.version
        );
    }

    // The owners stop: nothing deletes the nodes, they expire.
    child.kill().await.unwrap();
    z.close().await.unwrap();
    zlong.close().await.unwrap();
    let t = tokio::time::Instant::now();
    let gone = |p: &'static str| {
        let c = c.clone();
        async move { c.exists(p).await.unwrap().is_none() }
    };
    eventually(
        "both short TTL nodes expired",
        TTL * 3 + Duration::from_secs(5),
        || async { gone(jq).await && gone(zq).await },
    )
    .await;
    eprintln!(
        "short TTL nodes gone {:?} after their owners stopped",
        t.elapsed()
    );
    for p in [jl, zl] {
        assert!(!gone(p).await, "{p}: kept by its children");
        let (kids, _) = c.get_children(p).await.unwrap();
        for k in kids {
            c.delete(&format!("{p}/{k}"), Version::Any).await.unwrap();
        }
    }
    let t = tokio::time::Instant::now();
    eventually(
        "childless container parents reaped",
        Duration::from_secs(5),
        || async { gone(jl).await && gone(zl).await },
    )
    .await;
    eprintln!("emptied 60 s parents reaped after {:?}", t.elapsed());
    drop(lines);
    c.close().await.unwrap();
}

/// Protected names: a zkit `PersistentNode` in EphemeralSequential mode
/// (always protected) and a protected non-sequential one are recognised
/// by Curator's `ProtectedUtils` (protected, the GUID, the name without
/// the prefix), and a protected EPHEMERAL_SEQUENTIAL Curator
/// `PersistentNode` in the same directory has the same shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curator_recognises_protected_zkit_persistent_node_names() {
    use tokio::io::AsyncWriteExt;
    use zkit::CreateMode;
    use zkit_recipes::persistent::PersistentNodeOptions;
    use zkit_recipes::{NodeState, PersistentNode};
    let Some(classes) = curator_worker() else {
        require(false, "Curator (libcurator-recipes-java) or javac");
        return;
    };
    let setup = client().await;
    let dir = base(&setup, "curatorprotected").await;
    let z = client().await;
    let created = |n: &PersistentNode| {
        let mut rx = n.states();
        async move {
            let s =
                tokio::time::timeout(Duration::from_secs(10), rx.wait_for(NodeState::is_created))
                    .await
                    .expect("created")
                    .unwrap()
                    .clone();
            match s {
                NodeState::Created(p) => p,
                _ => unreachable!(),
            }
        }
    };
    let seq = PersistentNode::with_options(
        &z,
        format!("{dir}/worker-"),
        b"z",
        PersistentNodeOptions::new(CreateMode::EphemeralSequential),
    );
    let fixed = PersistentNode::with_options(
        &z,
        format!("{dir}/fixed"),
        b"z",
        PersistentNodeOptions::new(CreateMode::Ephemeral).protected(true),
    );
    let seq_path = created(&seq).await;
    let fixed_path = created(&fixed).await;
    let name = |p: &str| p.rsplit_once('/').unwrap().1.to_string();
    let (seq_name, fixed_name) = (name(&seq_path), name(&fixed_path));
    // `_c_` + 36-character UUID + `-` + the name (+ 10 digits).
    let shape = |n: &str, base: &str, digits: usize| {
        let rest = n.strip_prefix("_c_")?;
        let (uuid, tail) = (rest.get(..36)?, rest.get(36..)?);
        let tail = tail.strip_prefix('-')?.strip_prefix(base)?;
        let ok = uuid.split('-').map(str::len).eq([8, 4, 4, 4, 12])
            && uuid.chars().all(|ch| ch == '-' || ch.is_ascii_hexdigit())
            && tail.len() == digits
            && tail.chars().all(|ch| ch.is_ascii_digit());
        ok.then(|| uuid.to_string())
    };
    let seq_uuid = shape(&seq_name, "worker-", 10).unwrap_or_else(|| panic!("{seq_name}"));
    let fixed_uuid = shape(&fixed_name, "fixed", 0).unwrap_or_else(|| panic!("{fixed_name}"));

    let mut cmd = curator(
        &classes,
        &[
            "protected",
            &connect_string(),
            &dir,
            &seq_name,
            &fixed_name,
            "worker-0000000001",
        ],
    );
    cmd.stdin(Stdio::piped());
    let (mut child, mut lines) = spawn(cmd);
    let mut stdin = child.stdin.take().unwrap();
    let normalized_seq = format!("worker-{}", &seq_name[seq_name.len() - 10..]);
    assert_eq!(
        line_after(&mut lines, "check ").await,
        format!("{seq_name} true {seq_uuid} {normalized_seq}")
    );
    assert_eq!(
        line_after(&mut lines, "check ").await,
        format!("{fixed_name} true {fixed_uuid} fixed")
    );
    assert_eq!(
        line_after(&mut lines, "check ").await,
        "worker-0000000001 false - worker-0000000001",
        "an unprotected name"
    );
    let java = line_after(&mut lines, "created ").await;
    let (java_path, java_session) = java.split_once(' ').unwrap();
    let java_name = name(java_path);
    assert!(java_path.starts_with(&format!("{dir}/")), "{java_path}");
    assert!(
        shape(&java_name, "worker-", 10).is_some(),
        "Curator's protected sequential name {java_name} has zkit's shape"
    );
    assert_eq!(
        node_at(&setup, java_path).await,
        Some(("j".into(), java_session.parse().unwrap()))
    );

    // Lost nodes: both re-create under the same full name (GUID kept),
    // in the non-sequential mode. Curator 5.4 re-creates at `<base
    // path><last 10 characters>` with protection on, and its cached
    // create builder keeps the GUID, so the name comes back whole.
    let java_session: i64 = java_session.parse().unwrap();
    let java_czxid = setup.exists(java_path).await.unwrap().unwrap().czxid;
    setup.delete(&seq_path, Version::Any).await.unwrap();
    setup.delete(java_path, Version::Any).await.unwrap();
    eventually("both nodes back", Duration::from_secs(10), || async {
        node_at(&setup, &seq_path).await == Some(("z".into(), z.session_id().0))
            && node_at(&setup, java_path).await == Some(("j".into(), java_session))
    })
    .await;
    let again = setup.exists(java_path).await.unwrap().unwrap();
    assert!(again.czxid > java_czxid, "Curator re-created its node");
    stdin.write_all(b"path\n").await.unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(line_after(&mut lines, "path ").await, java_path);
    let (mut kids, _) = setup.get_children(&dir).await.unwrap();
    kids.sort();
    let mut want = vec![seq_name.clone(), fixed_name.clone(), java_name.clone()];
    want.sort();
    assert_eq!(kids, want, "no other name appeared");
    drop(stdin);
    worker_done(child, lines).await;
    seq.close().await.unwrap();
    fixed.close().await.unwrap();
    z.close().await.unwrap();
}
