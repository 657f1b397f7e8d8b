//! Shared counter (Curator `SharedCount` format), a distributed atomic long
//! (Curator `DistributedAtomicLong` format) and unique IDs.
//!
//! ```text
//! cargo run -p zkit-recipes --example counter [-- --connect HOST:PORT]
//! ```

mod common;

use zkit::Client;
use zkit_recipes::{AtomicLong, IdGenerator, SharedCount};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let base = format!("/zkit-example-counter-{}", std::process::id());
    let mut tasks = Vec::new();
    for w in 0..4 {
        let zk = Client::connect(&cs).await?;
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let hits = SharedCount::new(&zk, format!("{base}/hits"), 0);
            let bytes = AtomicLong::new(&zk, format!("{base}/bytes"))
                .promoted_to_lock(format!("{base}/bytes-lock"));
            for _ in 0..25 {
                hits.add(1).await?;
                // Optimistic, then under the lock: it may still lose every
                // race, and says so.
                let r = bytes.add(1 << 20).await?;
                if !r.succeeded {
                    println!("client {w}: an update lost every race ({r:?})");
                }
            }
            let mut ids = IdGenerator::new(&zk, format!("{base}/ids"), 10);
            let first = ids.next_id().await?;
            let second = ids.next_id().await?;
            println!("client {w}: ids {first:#x}, {second:#x}");
            zk.close().await?;
            Ok::<(), zkit::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let zk = Client::connect(&cs).await?;
    let hits = SharedCount::new(&zk, format!("{base}/hits"), 0)
        .get()
        .await?;
    println!(
        "4 clients x 25 increments = {} (compare-and-set, none lost)",
        hits.value
    );
    let bytes = AtomicLong::new(&zk, format!("{base}/bytes")).get().await?;
    println!("atomic long: {bytes} bytes counted (8-byte big-endian i64)");
    zk.close().await?;
    Ok(())
}
