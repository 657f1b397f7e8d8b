//! A first tour of the zkit client: sessions, nodes, watches, a transaction,
//! ephemeral nodes and the state stream.
//!
//! ```text
//! cargo run --example quickstart                          # on the bundled server, in-process
//! cargo run --example quickstart -- --connect HOST:PORT   # against your ensemble
//! cargo run --example quickstart -- --zookeeper           # starts a local ZooKeeper 3.8
//! ```
//!
//! Without `--connect` it starts the bundled `zkit-server` inside the
//! process (nothing to install); `--zookeeper` launches Apache ZooKeeper
//! from the Debian `zookeeper` package on a free loopback port instead (run
//! `scripts/install-zookeeper.sh` once). Either stops at the end.

use std::time::Duration;

use futures::StreamExt;
use zkit::{AddWatchMode, Client, CreateMode, CreateOptions, Version};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let connect = args
        .iter()
        .position(|a| a == "--connect")
        .and_then(|i| args.get(i + 1).cloned());
    // Whichever server we start lives until the end of `main`.
    let mut _zookeeper = None;
    let mut _bundled = None;
    let connect = match connect {
        Some(c) => c,
        None if args.iter().any(|a| a == "--zookeeper") => {
            println!("starting a local Apache ZooKeeper (Debian package) ...");
            let zk = zkit_testcontainers::standalone().await?;
            let cs = zk.connect_string();
            _zookeeper = Some(zk);
            cs
        }
        None => {
            let server = zkit_server::Server::builder().start().await?;
            println!("started the bundled zkit-server at {}", server.local_addr());
            let cs = server.connect_string();
            _bundled = Some(server);
            cs
        }
    };

    let zk = Client::builder()
        .session_timeout(Duration::from_secs(6))
        .connect(&connect)
        .await?;
    println!(
        "connected to {connect}: session {} (timeout {:?})",
        zk.session_id(),
        zk.session_timeout()
    );
    let mut states = zk.state_stream();
    println!("state: {:?}", states.next().await);

    let base = format!("/zkit-quickstart-{}", std::process::id());
    zk.create(&base, b"", &CreateOptions::default()).await?;

    // A one-shot watch fires once, for the next change.
    zk.create(&format!("{base}/config"), b"v1", &CreateOptions::default())
        .await?;
    let (data, stat, watcher) = zk.get_data_and_watch(&format!("{base}/config")).await?;
    println!(
        "config = {:?} (version {})",
        String::from_utf8_lossy(&data),
        stat.version
    );
    zk.set_data(
        &format!("{base}/config"),
        b"v2",
        Version::Exact(stat.version),
    )
    .await?;
    let event = watcher.changed().await?;
    println!("watch fired: {:?} on {}", event.event_type, event.path);

    // A persistent-recursive watch sees everything below a path.
    let mut tree = zk
        .add_watch(&base, AddWatchMode::PersistentRecursive)
        .await?;

    // Ephemeral sequential nodes: the classic membership / queue building block.
    let mut members = Vec::new();
    for _ in 0..3 {
        let (path, _) = zk
            .create(
                &format!("{base}/member-"),
                b"",
                &CreateOptions::new(CreateMode::EphemeralSequential),
            )
            .await?;
        members.push(path);
    }
    println!("ephemeral members: {members:?}");
    for _ in 0..3 {
        if let Some(ev) = tree.next().await {
            println!("recursive watch: {:?} {}", ev.event_type, ev.path);
        }
    }

    // An atomic transaction: all or nothing.
    let failed = zk
        .multi()
        .create(&format!("{base}/a"), b"", &CreateOptions::default())
        .check(&format!("{base}/config"), Version::Exact(0)) // wrong version
        .commit()
        .await;
    println!("multi with a stale check: {failed:?}");
    println!(
        "{base}/a exists after the failed multi? {}",
        zk.exists(&format!("{base}/a")).await?.is_some()
    );

    // Clean up; closing the session removes its ephemeral nodes.
    drop(tree);
    let observer = Client::connect(&connect).await?;
    zk.close().await?;
    println!("state after close: {:?}", states.next().await);
    let (children, _) = observer.get_children(&base).await?;
    println!("children after the session closed: {children:?} (ephemerals gone)");
    for c in children {
        observer
            .delete(&format!("{base}/{c}"), Version::Any)
            .await?;
    }
    observer.delete(&base, Version::Any).await?;
    observer.close().await?;
    Ok(())
}
