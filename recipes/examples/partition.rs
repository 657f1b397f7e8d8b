//! Work partitioning: three workers share twelve items, a fourth joins,
//! one crashes; its items move to the others, never owned twice.
//!
//! ```text
//! cargo run -p zkit-recipes --example partition [-- --connect HOST:PORT]
//! ```

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zkit::Client;
use zkit_recipes::{PartitionEvent, Partitioner};

type Shares = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// A worker's application: works on its grant until it is revoked.
fn worker(
    mut part: Partitioner,
    name: &'static str,
    shares: Shares,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(event) = part.next().await {
            match event {
                PartitionEvent::Acquired(grant) => {
                    let items: Vec<String> = grant.items().map(str::to_string).collect();
                    println!("{name}: generation {} owns {items:?}", grant.generation());
                    shares.lock().unwrap().insert(name.to_string(), items);
                    // Work until revoked; then stop and drop the grant.
                    grant.revoked().await;
                    shares.lock().unwrap().remove(name);
                }
                PartitionEvent::Released { generation, why } => {
                    println!("{name}: generation {generation} released ({why:?})");
                }
                _ => {}
            }
        }
    })
}

async fn until(
    shares: &Shares,
    what: &str,
    check: impl Fn(&BTreeMap<String, Vec<String>>) -> bool,
) {
    for _ in 0..400 {
        if check(&shares.lock().unwrap()) {
            println!("-- {what}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 20 s");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let path = format!("/zkit-example-partition-{}", std::process::id());
    let items: Vec<String> = (0..12).map(|i| format!("shard-{i:02}")).collect();
    let shares: Shares = Arc::default();
    let owned = |n: usize| {
        move |s: &BTreeMap<String, Vec<String>>| {
            s.len() == n && s.values().map(Vec::len).sum::<usize>() == 12
        }
    };
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for name in ["worker-a", "worker-b", "worker-c"] {
        let zk = Client::builder()
            .session_timeout(Duration::from_secs(4))
            .connect(&cs)
            .await?;
        tasks.push(worker(
            Partitioner::new(&zk, &path, name, items.clone())?,
            name,
            shares.clone(),
        ));
        clients.push(zk);
    }
    until(&shares, "three workers own four items each", owned(3)).await;
    let zk = Client::connect(&cs).await?;
    tasks.push(worker(
        Partitioner::new(&zk, &path, "worker-d", items.clone())?,
        "worker-d",
        shares.clone(),
    ));
    until(&shares, "worker-d joined: 3, 3, 3, 3", owned(4)).await;
    // worker-b's process dies: its session ends, its locks go with it.
    tasks[1].abort();
    clients.remove(1).close().await?;
    shares.lock().unwrap().remove("worker-b");
    until(&shares, "worker-b's items moved: 4, 4, 4", owned(3)).await;
    Ok(())
}
