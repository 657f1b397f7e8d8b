//! Client metrics exported to Prometheus: installs the
//! `metrics-exporter-prometheus` recorder, serves `/metrics` over HTTP,
//! runs a small workload and prints what a scrape returns.
//!
//! ```text
//! cargo run --features metrics --example metrics                 # bundled server, prints a scrape
//! cargo run --features metrics --example metrics -- --serve      # and keep serving /metrics
//! cargo run --features metrics --example metrics -- --connect HOST:PORT --listen 127.0.0.1:9464
//! ```

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zkit::{Client, CreateOptions, Version};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Answers every HTTP request on `listener` with the current exposition.
async fn serve(
    listener: tokio::net::TcpListener,
    handle: metrics_exporter_prometheus::PrometheusHandle,
) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
            let body = handle.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, handle.clone()));
    println!("serving Prometheus metrics at http://{addr}/metrics");

    let mut _server = None;
    let cs = match arg("--connect") {
        Some(cs) => cs,
        None => {
            let s = zkit_server::Server::builder().start().await?;
            let cs = s.connect_string();
            _server = Some(s);
            cs
        }
    };
    let zk = Client::connect(&cs).await?;
    let base = format!("/zkit-example-metrics-{}", std::process::id());
    zk.create(&base, b"", &CreateOptions::default()).await?;
    for i in 0..100 {
        let p = format!("{base}/n{i}");
        zk.create(&p, b"x", &CreateOptions::default()).await?;
        zk.get_data(&p).await?;
        zk.set_data(&p, b"y", Version::Any).await?;
    }
    let _ = zk.get_data(&format!("{base}/missing")).await; // NoNode
    zk.delete_all(&base).await?;

    // What Prometheus would scrape.
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await?;
    let mut scraped = String::new();
    conn.read_to_string(&mut scraped).await?;
    for line in scraped.lines().filter(|l| {
        l.starts_with("zkit_requests_total")
            || l.starts_with("zkit_request_duration_seconds{op=\"GetData\"")
            || l.starts_with("zkit_connections_total")
            || l.starts_with("zkit_bytes_")
    }) {
        println!("  {line}");
    }
    if std::env::args().any(|a| a == "--serve") {
        println!("serving until Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    zk.close().await?;
    Ok(())
}
