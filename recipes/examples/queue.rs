//! FIFO queue: two producers, three consumers; at-least-once processing
//! where a consumer that crashes mid-item gives it back.
//!
//! ```text
//! cargo run -p zkit-recipes --example queue [-- --connect HOST:PORT]
//! ```

mod common;

use std::time::Duration;

use zkit::Client;
use zkit_recipes::Queue;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let path = format!("/zkit-example-queue-{}", std::process::id());
    for p in 0..2 {
        let zk = Client::connect(&cs).await?;
        let q = Queue::new(&zk, path.clone());
        for i in 0..4 {
            q.put(format!("order {p}-{i}").as_bytes()).await?;
        }
        zk.close().await?;
    }
    println!("two producers queued 8 orders");

    // A consumer that crashes while processing: its claim dies with it.
    let crashing = Client::connect(&cs).await?;
    let claim = Queue::new(&crashing, path.clone()).take_claimed().await?;
    println!(
        "a consumer claimed {:?} and crashes before finishing",
        String::from_utf8_lossy(claim.data())
    );
    std::mem::forget(claim);
    crashing.close().await?;

    let mut workers = Vec::new();
    for w in 0..3 {
        let zk = Client::connect(&cs).await?;
        let q = Queue::new(&zk, path.clone());
        workers.push(tokio::spawn(async move {
            while let Some(claim) = q.poll_claimed(Duration::from_millis(500)).await? {
                println!(
                    "worker {w} processes {}",
                    String::from_utf8_lossy(claim.data())
                );
                claim.complete().await?;
            }
            zk.close().await?;
            Ok::<(), zkit::Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    println!("queue drained: every order processed once, the crashed one included");
    Ok(())
}
