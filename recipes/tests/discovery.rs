//! Service registry and discovery: Curator's JSON, registration kept
//! across session expiry, malformed nodes skipped, cache and strategies.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{base, client, connect_string, eventually, SOON};
use serde::{Deserialize, Serialize};
use zkit::{Client, CreateOptions};
use zkit_recipes::discovery::{ServiceDiscovery, ServiceInstance, ServiceProvider, Strategy};
use zkit_recipes::Sessions;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Zone {
    zone: String,
}

fn sessions() -> Sessions {
    Sessions::new(
        Client::builder().session_timeout(Duration::from_secs(4)),
        connect_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_register_query_and_balance() {
    let setup = client().await;
    let dir = base(&setup, "disc").await;
    let services = format!("{dir}/services");
    let a = ServiceDiscovery::<Zone>::new(sessions(), services.clone());
    let b = ServiceDiscovery::<Zone>::new(sessions(), services.clone());
    let ra = a
        .register(
            ServiceInstance::new("echo", "10.0.0.1", 8080)
                .id("a")
                .payload(Zone {
                    zone: "eu-1".into(),
                }),
        )
        .await
        .unwrap();
    let rb = b
        .register(ServiceInstance::new("echo", "10.0.0.2", 8080).id("b"))
        .await
        .unwrap();
    let _other = a
        .register(ServiceInstance::new("db", "10.0.0.3", 5432).id("d"))
        .await
        .unwrap();
    assert_eq!(a.query_names().await.unwrap(), vec!["db", "echo"]);
    let echo = b.query_instances("echo").await.unwrap();
    assert_eq!(echo.len(), 2);
    assert_eq!(
        echo[0].payload,
        Some(Zone {
            zone: "eu-1".into()
        })
    );
    // Curator's field order and compat mode (no "enabled").
    let (raw, _) = setup.get_data(&format!("{services}/echo/a")).await.unwrap();
    let text = String::from_utf8(raw.to_vec()).unwrap();
    assert!(text.starts_with(r#"{"name":"echo","id":"a","address":"10.0.0.1","port":8080,"sslPort":null,"payload":{"zone":"eu-1"},"registrationTimeUTC":"#), "{text}");
    assert!(
        text.ends_with(r#","serviceType":"DYNAMIC","uriSpec":null}"#),
        "{text}"
    );
    // A malformed node is skipped, not fatal.
    setup
        .create(
            &format!("{services}/echo/broken"),
            b"{not json",
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(b.query_instances("echo").await.unwrap().len(), 2);

    let cache = a.cache("echo");
    cache.initialized().await;
    assert_eq!(cache.instances().len(), 2, "loaded when initialized");
    let provider = ServiceProvider::new(cache, Strategy::RoundRobin);
    assert!(provider.instance().is_some());
    let picks: Vec<String> = (0..4).map(|_| provider.instance().unwrap().id).collect();
    assert_eq!(picks.iter().collect::<HashSet<_>>().len(), 2, "{picks:?}");
    assert_ne!(picks[0], picks[1], "round robin alternates");
    let sticky = ServiceProvider::new(a.cache("echo"), Strategy::Sticky);
    eventually("sticky cache filled", SOON, || async {
        sticky.instance().is_some()
    })
    .await;
    let first = sticky.instance().unwrap().id;
    assert!((0..5).all(|_| sticky.instance().unwrap().id == first));

    // Disabled instances are skipped by providers.
    let mut disabled = ServiceInstance::new("echo", "10.0.0.2", 8080).id("b");
    disabled.enabled = Some(false);
    rb.update(disabled).await.unwrap();
    eventually("b disabled", SOON, || async {
        (0..4).all(|_| provider.instance().unwrap().id == "a")
    })
    .await;
    // Unregistering removes the node at once.
    ra.unregister().await.unwrap();
    eventually("a gone", SOON, || async {
        b.query_instances("echo")
            .await
            .unwrap()
            .iter()
            .all(|i| i.id != "a")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_survives_session_expiry() {
    let setup = client().await;
    let dir = base(&setup, "discexp").await;
    let services = format!("{dir}/services");
    let first = Client::builder()
        .session_timeout(Duration::from_secs(4))
        .connect(&connect_string())
        .await
        .unwrap();
    let s = Sessions::with_client(first.clone(), Client::builder(), connect_string());
    let d = ServiceDiscovery::<Zone>::new(s.clone(), services.clone());
    let _r = d
        .register(ServiceInstance::new("echo", "10.0.0.1", 80).id("x"))
        .await
        .unwrap();
    let node = format!("{services}/echo/x");
    let owner = setup.exists(&node).await.unwrap().unwrap().ephemeral_owner;
    assert_eq!(owner, first.session_id().0);
    common::expire(&first).await;
    eventually("re-registered on a new session", SOON, || async {
        setup
            .exists(&node)
            .await
            .unwrap()
            .is_some_and(|st| st.ephemeral_owner != owner && st.ephemeral_owner != 0)
    })
    .await;
    // Another live session cannot take the id over.
    let other = ServiceDiscovery::<Zone>::new(sessions(), services.clone());
    let taken = tokio::time::timeout(
        Duration::from_secs(90),
        other.register(ServiceInstance::new("echo", "10.0.0.9", 80).id("x")),
    )
    .await
    .unwrap();
    assert_eq!(taken.unwrap_err(), zkit::Error::NodeExists);
}

/// A registrant that dies without unregistering (its connection is gone
/// and stays gone) disappears once the server expires its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_registrant_disappears_within_its_session_timeout() {
    use zkit_testcontainers::{FaultMode, FaultProxy};
    let setup = client().await;
    let dir = base(&setup, "discdead").await;
    let services = format!("{dir}/services");
    let server = connect_string().split(',').next().unwrap().parse().unwrap();
    let proxy = FaultProxy::start(server).await.unwrap();
    let timeout = Duration::from_secs(2);
    let d = ServiceDiscovery::<Zone>::new(
        Sessions::new(
            Client::builder().session_timeout(timeout),
            proxy.addr().to_string(),
        ),
        services.clone(),
    );
    let _r = d
        .register(ServiceInstance::new("echo", "10.0.0.1", 80).id("dead"))
        .await
        .unwrap();
    let node = format!("{services}/echo/dead");
    assert!(setup.exists(&node).await.unwrap().is_some());
    // The process is cut off for good.
    proxy.set_mode(FaultMode::Refuse);
    proxy.cut();
    let t = std::time::Instant::now();
    eventually("instance gone", Duration::from_secs(10), || async {
        setup.exists(&node).await.unwrap().is_none()
    })
    .await;
    let took = t.elapsed();
    // The negotiated timeout can be raised to the server's minimum (2 ticks).
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_and_registering_again_keeps_the_new_registration() {
    let setup = client().await;
    let dir = base(&setup, "disc-redo").await;
    let services = format!("{dir}/services");
    let disco = ServiceDiscovery::<Zone>::new(sessions(), services.clone());
    let node = format!("{services}/echo/x");
    for round in 0..20 {
        let old = disco
            .register(ServiceInstance::new("echo", "10.0.0.1", 1).id("x"))
            .await
            .unwrap();
        if round == 0 {
            // A second live registration of the id from the same sessions
            // would share the node: refused.
            let twice = disco
                .register(ServiceInstance::new("echo", "10.0.0.9", 9).id("x"))
                .await;
            assert_eq!(twice.unwrap_err(), zkit::Error::NodeExists);
        }
        drop(old);
        let port = 1000 + round;
        let new = disco
            .register(ServiceInstance::new("echo", "10.0.0.1", port).id("x"))
            .await
            .unwrap();
        // Give the dropped registration's background work time to finish.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let (raw, _) = setup
            .get_data(&node)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the new registration is gone: {e}"));
        let text = String::from_utf8(raw.to_vec()).unwrap();
        assert!(text.contains(&format!(r#""port":{port}"#)), "{text}");
        new.unregister().await.unwrap();
        assert!(setup.exists(&node).await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_registration_is_updated_and_removed_by_its_real_name() {
    use zkit_recipes::discovery::ServiceType;
    let setup = client().await;
    let dir = base(&setup, "disc-seq").await;
    let services = format!("{dir}/services");
    let disco = ServiceDiscovery::<Zone>::new(sessions(), services.clone());
    let mut instance = ServiceInstance::new("echo", "10.0.0.1", 80).id("seq-");
    instance.service_type = ServiceType::DynamicSequential;
    let reg = disco.register(instance.clone()).await.unwrap();
    let (kids, _) = setup
        .get_children(&format!("{services}/echo"))
        .await
        .unwrap();
    assert_eq!(kids.len(), 1, "{kids:?}");
    let seq = kids[0].strip_prefix("seq-").expect("id prefix");
    assert!(
        seq.len() == 10 && seq.bytes().all(|b| b.is_ascii_digit()),
        "{kids:?}"
    );
    instance.port = Some(81);
    reg.update(instance.clone()).await.unwrap();
    let found = disco.query_instances("echo").await.unwrap();
    assert_eq!(
        (found.len(), found[0].port),
        (1, Some(81)),
        "updated in place"
    );
    reg.unregister().await.unwrap();
    let (kids, _) = setup
        .get_children(&format!("{services}/echo"))
        .await
        .unwrap();
    assert!(kids.is_empty(), "{kids:?}");
    // Dropping removes it too.
    let reg = disco.register(instance).await.unwrap();
    drop(reg);
    eventually("dropped registration gone", SOON, || async {
        setup
            .get_children(&format!("{services}/echo"))
            .await
            .unwrap()
            .0
            .is_empty()
    })
    .await;
}

// Before 3.9 ZooKeeper keeps one watch mode per session and path
// (ZOOKEEPER-4466): a one-shot watch set on the cache's path from the same
// session used to replace the cache's persistent recursive watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_sees_a_service_that_appears_later_and_after_its_parent_was_reaped() {
    let setup = client().await;
    let dir = base(&setup, "disclate").await;
    let services = format!("{dir}/services");
    let parent = format!("{services}/late");
    let d = ServiceDiscovery::<Zone>::new(sessions(), services.clone());
    let cache = d.cache("late");
    // Queries through the cache's own session must not disturb its watch.
    assert!(d.query_instances("late").await.unwrap().is_empty());
    let registrar = ServiceDiscovery::<Zone>::new(sessions(), services.clone());
    let ids = |c: &zkit_recipes::discovery::ServiceCache<Zone>| {
        c.instances().into_iter().map(|i| i.id).collect::<Vec<_>>()
    };
    // The cache has read the (absent) service before it appears.
    cache.initialized().await;
    assert!(ids(&cache).is_empty());
    let x = registrar
        .register(ServiceInstance::new("late", "10.0.0.1", 80).id("x"))
        .await
        .unwrap();
    eventually("the cache sees x", SOON, || async { ids(&cache) == ["x"] }).await;
    assert_eq!(d.query_instances("late").await.unwrap().len(), 1);
    x.unregister().await.unwrap();
    eventually("the cache sees x leave", SOON, || async {
        ids(&cache).is_empty()
    })
    .await;
    // The server reaps the empty container parent (done here at once, as
    // its reaper would after checkIntervalMs).
    setup.delete(&parent, zkit::Version::Any).await.unwrap();
    assert!(d.query_instances("late").await.unwrap().is_empty());
    tokio::time::sleep(common::QUIET).await;
    let y = registrar
        .register(ServiceInstance::new("late", "10.0.0.2", 80).id("y"))
        .await
        .unwrap();
    eventually("the cache sees y after the reap", SOON, || async {
        ids(&cache) == ["y"]
    })
    .await;
    y.unregister().await.unwrap();
}
