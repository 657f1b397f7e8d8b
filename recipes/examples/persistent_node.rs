//! Persistent and TTL nodes: a registration that comes back when deleted
//! and after its session expired, that never takes over another live
//! session's node, and a TTL node kept alive by touching it.
//!
//! ```text
//! cargo run -p zkit-recipes --example persistent_node [-- --connect HOST:PORT]
//! ```

mod common;

use std::time::Duration;

use zkit::{Client, CreateMode, CreateOptions, Version};
use zkit_recipes::{NodeState, PersistentNode, PersistentTtlNode};

async fn until(node: &PersistentNode, what: &str, pred: impl Fn(&NodeState) -> bool) {
    let mut states = node.states();
    let state = tokio::time::timeout(Duration::from_secs(10), states.wait_for(|s| pred(s)))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|s| s.clone());
    match state {
        Some(s) => println!("  {what}: {s:?}"),
        None => panic!("{what}: not within 10 s (now {:?})", node.state()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let base = format!("/zkit-example-nodes-{}", std::process::id());
    let admin = Client::connect(&cs).await?;
    let zk = Client::connect(&cs).await?;

    println!("an ephemeral registration, kept:");
    let me = format!("{base}/workers/worker-1");
    let node = PersistentNode::new(
        &zk,
        me.clone(),
        CreateMode::Ephemeral,
        b"host-a:8080".to_vec(),
    );
    until(&node, "created", NodeState::is_created).await;
    admin.delete(&me, Version::Any).await?;
    println!("  an operator deleted it");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (data, stat) = admin.get_data(&me).await?;
    println!(
        "  back: {:?}, owned by our session: {}",
        String::from_utf8_lossy(&data),
        stat.ephemeral_owner == zk.session_id().0
    );
    node.set_data(b"host-a:9090").await?;
    println!(
        "  new data: {:?}",
        String::from_utf8_lossy(&admin.get_data(&me).await?.0)
    );

    println!("another live session's node is not taken over:");
    let other = Client::connect(&cs).await?;
    let theirs = format!("{base}/workers/worker-2");
    other
        .create(
            &theirs,
            b"someone else",
            &CreateOptions::new(CreateMode::Ephemeral),
        )
        .await?;
    let second = PersistentNode::new(
        &zk,
        theirs.clone(),
        CreateMode::Ephemeral,
        b"host-a:7070".to_vec(),
    );
    until(&second, "state", |s| {
        matches!(s, NodeState::Conflict { .. })
    })
    .await;
    other.close().await?;
    println!("  the other session ended");
    until(&second, "then", NodeState::is_created).await;

    println!("a TTL node touched while we live:");
    let ttl = PersistentTtlNode::new(
        &zk,
        format!("{base}/alive/job-7"),
        Duration::from_secs(2),
        b"running".to_vec(),
    );
    ttl.wait_for_initial_create(Duration::from_secs(5)).await?;
    let (_, before) = admin.get_data(ttl.child_path()).await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, after) = admin.get_data(ttl.child_path()).await?;
    println!(
        "  {} touched {} times in 2.5 s (TTL 2 s): still there",
        ttl.child_path(),
        after.version - before.version
    );
    ttl.close_and_delete().await?;
    node.close().await?;
    second.close().await?;
    println!(
        "  closed: worker-1 exists: {}",
        admin.exists(&me).await?.is_some()
    );
    admin.delete_all(&base).await?;
    zk.close().await?;
    admin.close().await?;
    Ok(())
}
