//! Config subscription: the final value after 1000 rapid updates, catching
//! up after a disconnection and after the session expired, CAS publish.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{base, client, connect_string, SOON};
use serde::{Deserialize, Serialize};
use zkit::{Client, Error, Version};
use zkit_recipes::{config, ConfigSubscription, Sessions};
use zkit_testcontainers::{FaultMode, FaultProxy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Limits {
    rate: u32,
    name: String,
}

fn limits(rate: u32) -> Limits {
    Limits {
        rate,
        name: format!("v{rate}"),
    }
}

async fn wait_rate(sub: &mut ConfigSubscription<Limits>, rate: u32) {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        if sub.current().is_some_and(|v| v.value.rate == rate) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck at {:?}, want rate {rate}",
            sub.current().map(|v| v.value.rate)
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), sub.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_ends_on_the_last_of_1000_updates_and_never_goes_back() {
    let setup = client().await;
    let dir = base(&setup, "cfg").await;
    let path = format!("{dir}/limits");
    config::publish(&setup, &path, &limits(0), Version::Any)
        .await
        .unwrap();
    let sub = ConfigSubscription::<Limits>::start(
        Sessions::new(Client::builder(), connect_string()),
        path.clone(),
    );
    let mut rx = sub.receiver();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while rx.changed().await.is_ok() {
            let v = rx.borrow_and_update().clone();
            if let Some(v) = v {
                seen.push(v.value.rate);
                if v.value.rate == 999 {
                    break;
                }
            }
        }
        seen
    });
    let publisher = client().await;
    for rate in 1..1000 {
        config::publish(&publisher, &path, &limits(rate), Version::Any)
            .await
            .unwrap();
    }
    let seen = tokio::time::timeout(SOON, watcher).await.unwrap().unwrap();
    assert_eq!(seen.last(), Some(&999));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "went backwards");
    assert_eq!(sub.current().unwrap().value, limits(999));
    publisher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_subscriber_catches_up() {
    let setup = client().await;
    let dir = base(&setup, "cfgcut").await;
    let path = format!("{dir}/limits");
    config::publish(&setup, &path, &limits(1), Version::Any)
        .await
        .unwrap();
    let server = connect_string().split(',').next().unwrap().parse().unwrap();
    let proxy = FaultProxy::start(server).await.unwrap();
    let sessions = Sessions::new(
        Client::builder().session_timeout(Duration::from_secs(10)),
        proxy.addr().to_string(),
    );
    let mut sub = ConfigSubscription::<Limits>::start(sessions, path.clone());
    wait_rate(&mut sub, 1).await;
    // Partition the subscriber, publish meanwhile, heal.
    proxy.set_mode(FaultMode::Blackhole);
    for rate in 2..=50 {
        config::publish(&setup, &path, &limits(rate), Version::Any)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    proxy.set_mode(FaultMode::Pass);
    wait_rate(&mut sub, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_whose_session_expired_continues_on_a_new_one() {
    let setup = client().await;
    let dir = base(&setup, "cfgexp").await;
    let path = format!("{dir}/limits");
    config::publish(&setup, &path, &limits(1), Version::Any)
        .await
        .unwrap();
    let first = Client::connect(&connect_string()).await.unwrap();
    let sessions = Sessions::with_client(first.clone(), Client::builder(), connect_string());
    let mut sub = ConfigSubscription::<Limits>::start(sessions.clone(), path.clone());
    wait_rate(&mut sub, 1).await;
    common::expire(&first).await;
    config::publish(&setup, &path, &limits(2), Version::Any)
        .await
        .unwrap();
    wait_rate(&mut sub, 2).await;
    let now = sessions.client().await.unwrap();
    assert_ne!(
        now.session_id(),
        first.session_id(),
        "a new session was made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_compare_and_set() {
    let setup = client().await;
    let dir = base(&setup, "cfgcas").await;
    let path = format!("{dir}/deep/limits");
    let v0 = config::publish(&setup, &path, &limits(1), Version::Any)
        .await
        .unwrap();
    let v1 = config::publish(&setup, &path, &limits(2), Version::Exact(v0))
        .await
        .unwrap();
    assert_eq!(v1, v0 + 1);
    assert_eq!(
        config::publish(&setup, &path, &limits(3), Version::Exact(v0)).await,
        Err(Error::BadVersion)
    );
    let (raw, _) = setup.get_data(&path).await.unwrap();
    assert_eq!(serde_json::from_slice::<Limits>(&raw).unwrap(), limits(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialized_tells_a_read_value_or_absence_from_not_read_yet() {
    let setup = client().await;
    let dir = base(&setup, "cfginit").await;
    let present = format!("{dir}/present");
    config::publish(&setup, &present, &limits(7), Version::Any)
        .await
        .unwrap();
    let sessions = Sessions::new(Client::builder(), connect_string());
    let sub = ConfigSubscription::<Limits>::start(sessions.clone(), present);
    sub.initialized().await;
    assert_eq!(sub.current().unwrap().value, limits(7));
    let absent = ConfigSubscription::<Limits>::start(sessions, format!("{dir}/absent"));
    absent.initialized().await;
    assert!(absent.current().is_none());
}
