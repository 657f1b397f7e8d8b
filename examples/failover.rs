//! Failover benchmark on a real 3-node ZooKeeper 3.8 ensemble.
//!
//! ```text
//! cargo run --release --example failover [-- --rounds R]
//! ```
//!
//! Starts the ensemble with `zkit-testcontainers` (Debian's `zookeeper`
//! package; run `scripts/install-zookeeper.sh` once), connects one client,
//! then per round:
//! 1. kills -9 the member the client is connected to and times until the
//!    next operation succeeds (then restarts the member);
//! 2. pauses (SIGSTOP) the member the client is connected to and times until
//!    the client reports `Disconnected` and until it is connected elsewhere
//!    (then resumes the member).
//!
//! Prints one JSON line: `peer` ("zkit-failover"), `ok`, `rounds`,
//! `session_kept`, `resume_p50_ms`, `resume_p99_ms`, `resume_max_ms`,
//! `detect_pause_ms` (median), `session_timeout_ms`, and details.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Map, Value};
use zkit::{Client, SessionState};
use zkit_testcontainers::Ensemble;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 1e2
}

async fn connected_member(zk: &Ensemble, client: &Client) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(h) = client.connected_server() {
            return zk.member_of_port(h.port);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Waits until every member serves and there is one leader, so each fault
/// starts from a healthy ensemble (a resumed or restarted member may still be
/// rejoining the quorum).
async fn wait_healthy(zk: &Ensemble) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut serving = 0;
        let mut leaders = 0;
        for i in 0..zk.size() {
            if let Ok(m) = zk.mode(i).await {
                serving += usize::from(m.is_serving());
                leaders += usize::from(m == zkit_testcontainers::Mode::Leader);
            }
        }
        if serving == zk.size() && leaders == 1 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("ensemble did not become healthy".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(
    rounds: usize,
    out: &mut Map<String, Value>,
) -> Result<bool, Box<dyn std::error::Error>> {
    let zk = Ensemble::builder().size(3).start().await?;
    let client = Client::builder()
        .session_timeout(Duration::from_secs(4))
        .connect(&zk.connect_string())
        .await?;
    let sid = client.session_id();
    let timeout = client.session_timeout();
    out.insert(
        "session_timeout_ms".into(),
        json!(timeout.as_millis() as u64),
    );
    out.insert(
        "server".into(),
        json!(zk.server_version().await?.to_string()),
    );

    let mut resume = Vec::new();
    let mut resume_leader = Vec::new();
    let mut detect = Vec::new();
    let mut move_on = Vec::new();
    let mut kept = 0usize;
    for _ in 0..rounds {
        let mut round_ok = true;
        wait_healthy(&zk).await?;
        // --- kill -9 the connected member ---
        let victim = connected_member(&zk, &client)
            .await
            .ok_or("client not connected")?;
        let was_leader = zk.leader().await == Some(victim);
        let t0 = Instant::now();
        zk.kill(victim).await?;
        let deadline = t0 + Duration::from_secs(20);
        loop {
            match client.exists("/").await {
                Ok(_) => break,
                Err(e) if e.is_retryable() && Instant::now() < deadline => continue,
                Err(e) => return Err(format!("no resume after kill: {e}").into()),
            }
        }
        let took = t0.elapsed();
        if was_leader {
            resume_leader.push(ms(took));
        } else {
            resume.push(ms(took));
        }
        round_ok &= client.session_id() == sid;
        zk.restart(victim).await?;

        // --- pause the connected member ---
        wait_healthy(&zk).await?;
        let victim = connected_member(&zk, &client)
            .await
            .ok_or("client not connected")?;
        let mut states = client.state_stream();
        assert_eq!(states.next().await, Some(SessionState::Connected));
        let t0 = Instant::now();
        zk.pause(victim)?;
        let mut detected = None;
        while let Some(s) = states.next().await {
            match s {
                SessionState::Disconnected if detected.is_none() => detected = Some(t0.elapsed()),
                SessionState::Connected => break,
                s if s.is_terminal() => return Err(format!("session ended: {s:?}").into()),
                _ => {}
            }
        }
        let moved = t0.elapsed();
        client.exists("/").await?;
        zk.resume(victim)?;
        detect.push(ms(detected.unwrap_or(moved)));
        move_on.push(ms(moved));
        round_ok &= client.session_id() == sid;
        kept += usize::from(round_ok);
    }
    client.close().await?;

    let mut all = resume.clone();
    all.extend(&resume_leader);
    for v in [
        &mut all,
        &mut resume,
        &mut detect,
        &mut move_on,
        &mut resume_leader,
    ] {
        v.sort_by(f64::total_cmp);
    }
    out.insert("rounds".into(), json!(rounds));
    out.insert("session_kept".into(), json!(kept));
    out.insert("resume_p50_ms".into(), json!(percentile(&all, 0.5)));
    out.insert("resume_p99_ms".into(), json!(percentile(&all, 0.99)));
    out.insert(
        "resume_max_ms".into(),
        json!(all.last().copied().unwrap_or(0.0)),
    );
    out.insert("resume_follower_ms".into(), json!(resume));
    out.insert("resume_leader_ms".into(), json!(resume_leader));
    out.insert("detect_pause_ms".into(), json!(percentile(&detect, 0.5)));
    out.insert(
        "detect_pause_max_ms".into(),
        json!(detect.last().copied().unwrap_or(0.0)),
    );
    out.insert("move_on_after_pause_ms".into(), json!(move_on));
    Ok(kept == rounds)
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut out = Map::new();
    out.insert("peer".into(), json!("zkit-failover"));
    out.insert(
        "client".into(),
        json!(format!("zkit {}", env!("CARGO_PKG_VERSION"))),
    );
    let t0 = Instant::now();
    let code = match rt.block_on(run(rounds, &mut out)) {
        Ok(all_kept) => {
            out.insert("ok".into(), json!(true));
            out.insert("verified".into(), json!(all_kept));
            0
        }
        Err(e) => {
            out.insert("ok".into(), json!(false));
            out.insert("error".into(), json!(e.to_string()));
            1
        }
    };
    out.insert(
        "elapsed_s".into(),
        json!((t0.elapsed().as_secs_f64() * 100.0).round() / 100.0),
    );
    println!("{}", Value::Object(out));
    std::process::exit(code);
}
