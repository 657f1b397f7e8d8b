//! Group membership and a tree cache: members join and leave, an observer
//! sees the live member set.
//!
//! ```text
//! cargo run -p zkit-recipes --example membership [-- --connect HOST:PORT]
//! ```

mod common;

use zkit::Client;
use zkit_recipes::cache::TreeCache;
use zkit_recipes::{GroupMember, MemberSet, Sessions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let path = format!("/zkit-example-group-{}", std::process::id());
    let observer = Client::connect(&cs).await?;
    let mut set = MemberSet::watch(&observer, &path);
    let cache = TreeCache::start(Sessions::new(Client::builder(), cs.clone()), path.clone());
    let mut cache_events = cache.events();
    let mut clients = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        let zk = Client::connect(&cs).await?;
        let m =
            GroupMember::join(&zk, &path, name, format!("{name}.local:7000").as_bytes()).await?;
        clients.push((zk, m));
    }
    while set.borrow().len() < 3 {
        set.changed().await?;
    }
    println!("members: {:?}", set.borrow().keys().collect::<Vec<_>>());
    let (zk, _m) = clients.remove(1);
    zk.close().await?; // node-b's process ends
    while set.borrow().len() != 2 {
        set.changed().await?;
    }
    println!(
        "node-b's session ended; members: {:?}",
        set.borrow().keys().collect::<Vec<_>>()
    );
    cache.initialized().await;
    // The cache follows the tree: wait until it has seen node-b go too.
    while cache.children(&path).len() != 2 {
        let _ = cache_events.recv().await;
    }
    for (p, n) in cache.snapshot() {
        println!("tree cache: {p} = {:?}", String::from_utf8_lossy(&n.data));
    }
    Ok(())
}
