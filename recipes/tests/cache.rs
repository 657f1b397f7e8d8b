//! Tree cache: initial load, live changes, convergence after a partition.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{base, client, connect_string, SOON};
use zkit::{Client, CreateOptions, Version};
use zkit_recipes::cache::{CacheEvent, TreeCache};
use zkit_recipes::Sessions;
use zkit_testcontainers::{FaultMode, FaultProxy};

/// The subtree as the server has it: path -> data.
async fn server_tree(c: &Client, root: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_string()];
    while let Some(p) = todo.pop() {
        if let Ok((d, _)) = c.get_data(&p).await {
            out.insert(p.clone(), d.to_vec());
            if let Ok((kids, _)) = c.get_children(&p).await {
                todo.extend(kids.into_iter().map(|k| format!("{p}/{k}")));
            }
        }
    }
    out
}

fn cache_tree(cache: &TreeCache) -> BTreeMap<String, Vec<u8>> {
    cache
        .snapshot()
        .into_iter()
        .map(|(p, n)| (p, n.data.to_vec()))
        .collect()
}

async fn converges(cache: &TreeCache, c: &Client, root: &str) {
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let want = server_tree(c, root).await;
        if cache_tree(cache) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cache {:?} != server {want:?}",
            cache_tree(cache)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_cache_follows_changes_and_heals_after_a_partition() {
    let setup = client().await;
    let dir = base(&setup, "cache").await;
    let root = format!("{dir}/app");
    setup
        .create(&root, b"r", &CreateOptions::default())
        .await
        .unwrap();
    setup
        .create(&format!("{root}/a"), b"1", &CreateOptions::default())
        .await
        .unwrap();
    let server = connect_string().split(',').next().unwrap().parse().unwrap();
    let proxy = FaultProxy::start(server).await.unwrap();
    let cache = TreeCache::start(
        Sessions::new(
            Client::builder().session_timeout(Duration::from_secs(10)),
            proxy.addr().to_string(),
        ),
        root.clone(),
    );
    let mut events = cache.events();
    cache.initialized().await;
    assert_eq!(cache.get(&format!("{root}/a")).unwrap().data.as_ref(), b"1");
    assert_eq!(cache.children(&root), vec!["a"]);
    // The first events are the load's, then Initialized.
    let mut seen = Vec::new();
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
        seen.push(ev);
    }
    assert!(seen.contains(&CacheEvent::Initialized), "{seen:?}");

    // Live changes.
    setup
        .create(&format!("{root}/b"), b"2", &CreateOptions::default())
        .await
        .unwrap();
    setup
        .create(&format!("{root}/b/c"), b"3", &CreateOptions::default())
        .await
        .unwrap();
    setup
        .set_data(&format!("{root}/a"), b"1b", Version::Any)
        .await
        .unwrap();
    converges(&cache, &setup, &root).await;
    setup
        .delete(&format!("{root}/b/c"), Version::Any)
        .await
        .unwrap();
    converges(&cache, &setup, &root).await;

    // Changes during a partition are picked up after it heals.
    proxy.set_mode(FaultMode::Blackhole);
    setup
        .delete(&format!("{root}/a"), Version::Any)
        .await
        .unwrap();
    setup
        .create(&format!("{root}/d"), b"4", &CreateOptions::default())
        .await
        .unwrap();
    setup
        .set_data(&format!("{root}/b"), b"2b", Version::Any)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    proxy.set_mode(FaultMode::Pass);
    converges(&cache, &setup, &root).await;
    assert_eq!(cache.children(&root), vec!["b", "d"]);
}
