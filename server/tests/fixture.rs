//! The zkit-testcontainers fixture with `Backend::Bundled`: the `zkit-server`
//! binary behind the same handle as real ZooKeeper, with the same faults.

use std::time::{Duration, Instant};

use zkit::{Client, CreateMode, CreateOptions, SessionState};
use zkit_testcontainers::{Backend, Ensemble, FixtureError, Mode};

const SOON: Duration = Duration::from_secs(15);

async fn bundled() -> Ensemble {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Ensemble::builder()
        .backend(Backend::Bundled)
        .tick_time(Duration::from_millis(200))
        .start()
        .await
        .expect("bundled fixture starts")
}

async fn wait_state(c: &Client, want: SessionState) {
    let deadline = Instant::now() + SOON;
    while c.state() != want {
        assert!(
            Instant::now() < deadline,
            "state {:?}, want {want:?}",
            c.state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_backend_serves_and_survives_kill_pause_and_restart() {
    let zk = bundled().await;
    assert!(zk.is_standalone());
    assert_eq!(zk.mode(0).await.unwrap(), Mode::Standalone);
    assert_eq!(zk.leader().await, Some(0));
    let version = zk.server_version().await.unwrap();
    assert_eq!((version.major, version.minor), (3, 8));
    let c = Client::builder()
        .session_timeout(Duration::from_secs(4))
        .connect(&zk.connect_string())
        .await
        .unwrap();
    let session = c.session_id();
    c.create("/kept", b"1", &CreateOptions::default())
        .await
        .unwrap();
    c.create("/mine", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();

    // kill -9 and restart: durable, the session resumes with its ephemeral.
    let pid = zk.pid(0).unwrap();
    zk.kill(0).await.unwrap();
    assert!(!zk.is_running(0));
    zk.restart(0).await.unwrap();
    assert_ne!(zk.pid(0), Some(pid));
    wait_state(&c, SessionState::Connected).await;
    let deadline = Instant::now() + SOON;
    let stat = loop {
        match c.exists("/mine").await {
            Ok(Some(stat)) => break stat,
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stat.ephemeral_owner, session.0);
    assert_eq!(c.session_id(), session);
    let (data, _) = c.get_data("/kept").await.unwrap();
    assert_eq!(&data[..], b"1");

    // SIGSTOP: the client notices within its read timeout; SIGCONT: it is back.
    zk.pause(0).unwrap();
    assert!(zk.is_paused(0));
    wait_state(&c, SessionState::Disconnected).await;
    zk.resume(0).unwrap();
    wait_state(&c, SessionState::Connected).await;
    assert_eq!(c.session_id(), session);

    // A graceful stop, then a start: still there.
    zk.stop(0).await.unwrap();
    zk.restart(0).await.unwrap();
    wait_state(&c, SessionState::Connected).await;
    let deadline = Instant::now() + SOON;
    while c.get_data("/kept").await.is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.close().await.unwrap();
}

#[tokio::test]
async fn bundled_backend_is_standalone_only() {
    let err = Ensemble::builder()
        .backend(Backend::Bundled)
        .size(3)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, FixtureError::InvalidConfig(_)), "{err}");
    assert!(err.to_string().contains("standalone only"), "{err}");
}
