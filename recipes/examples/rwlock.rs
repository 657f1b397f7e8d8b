//! Read/write lock: readers share, a writer waits for them and keeps later
//! readers out, then downgrades to a reader.
//!
//! ```text
//! cargo run -p zkit-recipes --example rwlock [-- --connect HOST:PORT]
//! ```

mod common;

use std::time::Duration;

use zkit::Client;
use zkit_recipes::ReadWriteLock;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let path = format!("/zkit-example-rwlock-{}", std::process::id());
    let a = Client::connect(&cs).await?;
    let b = Client::connect(&cs).await?;
    let rw_a = ReadWriteLock::new(&a, path.clone());
    let rw_b = ReadWriteLock::new(&b, path.clone());

    let r1 = rw_a.read().acquire().await?;
    let r2 = rw_b.read().acquire().await?;
    println!("two readers hold the lock together");
    let writer = tokio::spawn({
        let rw = rw_b.clone();
        async move { rw.write().acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!(
        "a writer is waiting: still waiting? {}",
        !writer.is_finished()
    );
    println!(
        "a new reader now? {} (it queues behind the writer)",
        rw_a.read().try_acquire().await?.is_some()
    );
    r1.release().await?;
    r2.release().await?;
    let w = writer.await??;
    println!("readers gone: the writer holds the lock alone");
    let r = w.downgrade().await?;
    println!(
        "the writer downgraded to a reader without letting another writer in: {}",
        r.node()
    );
    r.release().await?;
    a.close().await?;
    b.close().await?;
    Ok(())
}
