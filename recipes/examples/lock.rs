//! Exclusive lock: four workers, each with its own session, take turns on
//! one lock and update a shared counter with fenced writes.
//!
//! ```text
//! cargo run -p zkit-recipes --example lock [-- --connect HOST:PORT]
//! ```

mod common;

use std::time::Duration;

use zkit::{Client, CreateOptions, Version};
use zkit_recipes::{Lock, MultiLock};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let admin = Client::connect(&cs).await?;
    let base = format!("/zkit-example-lock-{}", std::process::id());
    admin.create(&base, b"", &CreateOptions::default()).await?;
    let counter = format!("{base}/counter");
    admin
        .create(&counter, b"0", &CreateOptions::default())
        .await?;

    let mut workers = Vec::new();
    for w in 0..4 {
        let zk = Client::connect(&cs).await?;
        let lock = Lock::new(&zk, format!("{base}/lock"));
        let counter = counter.clone();
        workers.push(tokio::spawn(async move {
            for _ in 0..3 {
                let guard = lock.acquire().await?;
                let (data, stat) = zk.get_data(&counter).await?;
                let n: u32 = String::from_utf8_lossy(&data).parse().unwrap_or(0);
                // The write is part of a transaction that first checks we
                // still hold the lock: a worker that lost it cannot write.
                guard
                    .guarded()
                    .set_data(
                        &counter,
                        (n + 1).to_string().as_bytes(),
                        Version::Exact(stat.version),
                    )
                    .commit()
                    .await?;
                println!(
                    "worker {w} holds the lock (fencing token {}), counter {n} -> {}",
                    guard.fencing_token(),
                    n + 1
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                guard.release().await?;
            }
            zk.close().await?;
            Ok::<(), zkit::Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let (data, _) = admin.get_data(&counter).await?;
    println!(
        "counter = {} after 12 turns: nobody overlapped",
        String::from_utf8_lossy(&data)
    );
    // Two locks as one (Curator's InterProcessMultiLock), all or nothing:
    // the counter's write is fenced by both lock nodes.
    let both = MultiLock::new(
        &admin,
        [format!("{counter}-lock-b"), format!("{counter}-lock-a")],
    );
    let guard = both.acquire().await?;
    guard
        .guarded()
        .set_data(&counter, b"done", Version::Any)
        .commit()
        .await?;
    println!(
        "multi-lock: tokens {:?}, counter written under both",
        guard.fencing_tokens()
    );
    guard.release().await?;
    admin.delete(&counter, Version::Any).await?;
    admin.close().await?;
    Ok(())
}
