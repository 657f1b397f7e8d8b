use zkit::{Client, CreateMode, CreateOptions, Version};
#[tokio::main]
async fn main() -> zkit::Result<()> {
    let zk = Client::connect(&std::env::args().nth(1).unwrap()).await?;
    println!(
        "session {} timeout {:?}",
        zk.session_id(),
        zk.session_timeout()
    );
    let _ = zk.delete("/smoke", Version::Any).await;
    let (p, st) = zk
        .create("/smoke", b"hi", &CreateOptions::default())
        .await?;
    println!("{p} {st:?}");
    let (d, _, w) = zk.get_data_and_watch("/smoke").await?;
    println!("data {:?}", d);
    zk.set_data("/smoke", b"x", Version::Any).await?;
    println!("event {:?}", w.changed().await?);
    let (p, _) = zk
        .create(
            "/smoke/s-",
            b"",
            &CreateOptions::new(CreateMode::EphemeralSequential),
        )
        .await?;
    println!("{p}");
    println!("{:?}", zk.get_children("/smoke").await?);
    println!("{:?}", zk.who_am_i().await?);
    zk.close().await
}
