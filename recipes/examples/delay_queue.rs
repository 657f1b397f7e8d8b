//! Delay queue: items put with different delays come out when due,
//! earliest first, not in the order they were put; a consumer that takes an
//! item and dies gives it back.
//!
//! ```text
//! cargo run -p zkit-recipes --example delay_queue [-- --connect HOST:PORT]
//! ```

mod common;

use std::time::{Duration, Instant};

use zkit::Client;
use zkit_recipes::DelayQueue;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let path = format!("/zkit-example-delay-{}", std::process::id());
    let zk = Client::connect(&cs).await?;
    let q = DelayQueue::new(&zk, path.clone());
    let start = Instant::now();
    for (name, ms) in [("reminder", 1500), ("retry", 500), ("report", 1000)] {
        q.put(name.as_bytes(), Duration::from_millis(ms)).await?;
        println!("put {name:<8} due in {ms} ms");
    }
    // A consumer takes the first item due and dies before completing it.
    let doomed = Client::connect(&cs).await?;
    let claim = DelayQueue::new(&doomed, path.clone())
        .take_claimed()
        .await?;
    println!(
        "{:>5} ms  a consumer took {:?} and died",
        start.elapsed().as_millis(),
        String::from_utf8_lossy(claim.data())
    );
    drop(claim);
    doomed.close().await?; // its claim (an ephemeral node) goes with its session
    let mut order = Vec::new();
    for _ in 0..3 {
        let claim = q.take_claimed().await?;
        let item = String::from_utf8_lossy(claim.data()).into_owned();
        let late = claim.due().elapsed().map(|d| d.as_millis()).unwrap_or(0);
        println!(
            "{:>5} ms  took {item:<8} ({late} ms after it was due)",
            start.elapsed().as_millis()
        );
        claim.complete().await?; // removed only now: at-least-once
        order.push(item);
    }
    println!(
        "order by due time: {order:?}, queue empty: {}",
        q.is_empty().await?
    );
    zk.delete_all(&path).await?;
    zk.close().await?;
    Ok(())
}
