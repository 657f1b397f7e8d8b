//! The fixture against the real Apache ZooKeeper installed on the machine
//! (`scripts/install-zookeeper.sh`). These run with `ZKIT_TEST_BACKEND=zookeeper` and skip,
//! loudly, otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};
use zkit_testcontainers::{Ensemble, EnsembleBuilder, FixtureError, Mode};

/// The machine may have two cores: one ensemble (three JVMs) at a time keeps elections and
/// start times predictable.
static SERIAL: Mutex<()> = Mutex::const_new(());

async fn start(builder: EnsembleBuilder) -> Option<(MutexGuard<'static, ()>, Ensemble)> {
    let guard = SERIAL.lock().await;
    let began = Instant::now();
    let zk = builder.start_or_skip().await?;
    eprintln!(
        "ZooKeeper {} x{} serving at {} after {:?}",
        zk.server_version().await.expect("server version"),
        zk.size(),
        zk.connect_string(),
        began.elapsed()
    );
    Some((guard, zk))
}

/// Polls `leader()` until it returns a member satisfying `accept`, or panics after `limit`.
async fn wait_for_leader(zk: &Ensemble, limit: Duration, accept: impl Fn(usize) -> bool) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(leader) = zk.leader().await.filter(|&l| accept(l)) {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "no acceptable leader within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn proc_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn standalone_answers_ruok_and_reports_version_3_8() {
    let Some((_guard, zk)) = start(Ensemble::builder().config("minSessionTimeout", "1000")).await
    else {
        return;
    };
    assert_eq!(zk.size(), 1);
    assert!(zk.is_standalone());
    assert_eq!(zk.connect_string(), zk.client_addr(0).to_string());
    assert_eq!(zk.member_of(zk.client_addr(0)), Some(0));
    assert_eq!(zk.member_of_port(zk.client_addr(0).port()), Some(0));

    assert_eq!(zk.four_letter(0, "ruok").await.unwrap(), "imok");
    let srvr = zk.four_letter(0, "srvr").await.unwrap();
    assert!(srvr.contains("Mode: standalone"), "{srvr}");
    assert_eq!(zk.mode(0).await.unwrap(), Mode::Standalone);
    assert_eq!(zk.leader().await, Some(0));

    let version = zk.server_version().await.unwrap();
    assert_eq!((version.major, version.minor), (3, 8), "{version}");

    // Builder overrides reach zoo.cfg and the JVM command line.
    let conf = zk.four_letter(0, "conf").await.unwrap();
    assert!(conf.contains("minSessionTimeout=1000"), "{conf}");
    let pid = zk.pid(0).unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        cmdline.contains("-Dzookeeper.extendedTypesEnabled=true"),
        "{cmdline}"
    );
    assert!(cmdline.contains("ZooKeeperServerMain"), "{cmdline}");

    // The member log is written (Debian needs the slf4j-log4j12 binding on the classpath).
    let log = std::fs::read_to_string(zk.member_dir(0).join("zookeeper.log")).unwrap();
    assert!(log.contains("binding to port"), "{log}");
}

#[tokio::test]
async fn ensemble_reelects_after_leader_kill_and_restarted_member_follows() {
    let Some((_guard, zk)) = start(Ensemble::builder().size(3)).await else {
        return;
    };
    assert_eq!(zk.size(), 3);
    assert_eq!(zk.connect_string().split(',').count(), 3);

    let mut modes = Vec::new();
    for i in 0..3 {
        modes.push(zk.mode(i).await.unwrap());
    }
    assert_eq!(
        modes.iter().filter(|&&m| m == Mode::Leader).count(),
        1,
        "{modes:?}"
    );
    assert_eq!(
        modes.iter().filter(|&&m| m == Mode::Follower).count(),
        2,
        "{modes:?}"
    );
    let old = zk.leader().await.expect("leader");
    assert_eq!(modes[old], Mode::Leader);

    let killed_at = Instant::now();
    zk.kill(old).await.unwrap();
    assert!(!zk.is_running(old));
    assert!(zk.four_letter(old, "ruok").await.is_err());
    let new = wait_for_leader(&zk, Duration::from_secs(10), |l| l != old).await;
    eprintln!(
        "member {new} elected {:?} after killing leader {old}",
        killed_at.elapsed()
    );

    let restarted_at = Instant::now();
    zk.restart(old).await.unwrap();
    eprintln!(
        "member {old} serving again after {:?}",
        restarted_at.elapsed()
    );
    assert!(zk.is_running(old));
    assert_eq!(zk.mode(old).await.unwrap(), Mode::Follower);
    assert_eq!(zk.leader().await, Some(new));
}

#[tokio::test]
async fn paused_member_is_silent_until_resumed() {
    let Some((_guard, zk)) = start(Ensemble::builder()).await else {
        return;
    };
    zk.pause(0).unwrap();
    assert!(zk.is_paused(0) && zk.is_running(0));
    let silent = tokio::time::timeout(Duration::from_secs(1), zk.four_letter(0, "ruok")).await;
    assert!(silent.is_err(), "a paused server answered: {silent:?}");
    assert_eq!(zk.leader().await, None);

    zk.resume(0).unwrap();
    assert!(!zk.is_paused(0));
    let reply = tokio::time::timeout(Duration::from_secs(20), zk.four_letter(0, "ruok")).await;
    assert_eq!(reply.expect("answer after resume").unwrap(), "imok");

    // A graceful stop of a paused member, then a restart on the same port and data.
    zk.pause(0).unwrap();
    let pid = zk.pid(0).unwrap();
    zk.stop(0).await.unwrap();
    assert!(!zk.is_running(0) && !proc_exists(pid));
    assert!(matches!(zk.pause(0), Err(FixtureError::NotRunning(0))));
    zk.restart(0).await.unwrap();
    assert_eq!(zk.four_letter(0, "ruok").await.unwrap(), "imok");
}

#[tokio::test]
async fn drop_kills_every_process_and_deletes_the_directory() {
    let Some((_guard, zk)) = start(Ensemble::builder().size(3)).await else {
        return;
    };
    let pids: Vec<u32> = (0..3).map(|i| zk.pid(i).expect("running")).collect();
    assert!(pids.iter().all(|&pid| proc_exists(pid)));
    let root = zk.root_dir().to_path_buf();
    assert!(root.join("node3/data/myid").exists());
    // A paused member must not survive either.
    zk.pause(1).unwrap();
    drop(zk);
    for pid in pids {
        assert!(!proc_exists(pid), "pid {pid} outlived the fixture");
    }
    if std::env::var("ZKIT_KEEP_FIXTURE_DIRS").as_deref() != Ok("1") {
        assert!(!root.exists(), "{} not deleted", root.display());
    }
}

#[tokio::test]
async fn missing_java_or_jars_is_one_clear_error() {
    let err = Ensemble::builder()
        .java("/nonexistent/bin/java")
        .classpath("/nonexistent/zookeeper.jar")
        .start()
        .await
        .unwrap_err();
    let FixtureError::NotInstalled(what) = &err else {
        panic!("expected NotInstalled, got {err:?}");
    };
    assert!(what.contains("/nonexistent/bin/java"), "{what}");
    assert!(what.contains("/nonexistent/zookeeper.jar"), "{what}");
    assert!(
        err.to_string().contains("scripts/install-zookeeper.sh"),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_settings_are_rejected_before_launch() {
    for builder in [
        Ensemble::builder().size(0),
        Ensemble::builder().size(255),
        Ensemble::builder().tick_time(Duration::ZERO),
        Ensemble::builder().config("a=b", "c"),
        Ensemble::builder().config("key", "two\nlines"),
    ] {
        let err = builder.start().await.unwrap_err();
        assert!(matches!(err, FixtureError::InvalidConfig(_)), "{err:?}");
    }
}

#[tokio::test]
async fn failed_start_reports_the_log_tail() {
    if zkit_testcontainers::skip_without_real_zookeeper("the JVM start-failure test") {
        return;
    }
    // An option the JVM rejects: it exits at once and says why on stderr.
    let result = Ensemble::builder()
        .jvm_arg("-XX:NoSuchJvmOption")
        .start_timeout(Duration::from_secs(10))
        .start()
        .await;
    let err = match result {
        Ok(_) => panic!("a JVM with an unknown -XX option started"),
        Err(err) => err,
    };
    let FixtureError::Start {
        member,
        reason,
        log_tail,
        ..
    } = &err
    else {
        panic!("expected Start, got {err:?}");
    };
    assert_eq!(*member, 0);
    assert!(reason.contains("exited"), "{reason}");
    assert!(log_tail.contains("NoSuchJvmOption"), "{log_tail}");
    eprintln!("{err}");
}

/// Set in the child process of `fixture_dies_with_a_test_process_that_never_drops_it`.
const CHILD_ENV: &str = "ZKIT_TC_LEAK_CHILD";

/// Not a test on its own: the child half of the test below (it only acts with `CHILD_ENV`).
#[tokio::test]
#[ignore = "helper, run by fixture_dies_with_a_test_process_that_never_drops_it"]
async fn leak_child() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    let zk = Ensemble::builder().start().await.expect("start");
    println!(
        "LEAK pid={} dir={}",
        zk.pid(0).unwrap(),
        zk.root_dir().display()
    );
    // Exit without running destructors, as a killed test process or a `static` fixture would.
    std::process::exit(0);
}

/// Alive and not a zombie (a container's PID 1 may never reap re-parented orphans).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit(") ").next().map(|rest| !rest.starts_with('Z')))
        .unwrap_or(false)
}

#[tokio::test]
async fn fixture_dies_with_a_test_process_that_never_drops_it() {
    if zkit_testcontainers::skip_without_real_zookeeper("the leaked-fixture test") {
        return;
    }
    let _guard = SERIAL.lock().await;
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "leak_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env_remove("ZKIT_KEEP_FIXTURE_DIRS")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("LEAK ").map(|(_, rest)| rest));
    let Some(line) = line else {
        panic!("child did not start a fixture:\n{stdout}\n{stderr}");
    };
    let (pid, dir) = line.split_once(' ').unwrap();
    let pid: u32 = pid.strip_prefix("pid=").unwrap().parse().unwrap();
    let dir = Path::new(dir.strip_prefix("dir=").unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) || dir.exists() {
        assert!(
            Instant::now() < deadline,
            "leaked JVM {pid} alive={} dir {} exists={}",
            alive(pid),
            dir.display(),
            dir.exists()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
