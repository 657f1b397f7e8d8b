//! Low-latency mode (`ClientBuilder::busy_poll`): requests complete with the
//! right answers whether the caller spins and finds its reply, spins in vain
//! and then sleeps, or is a task (which never spins), on both runtimes.

mod common;

use std::time::Duration;

use zkit::{Client, CreateOptions, Error, Version};

/// Sets, reads back and fails on purpose, `n` times one at a time, then a
/// pipelined burst; every answer checked.
async fn exercise(c: &Client, base: &str, n: usize) {
    c.create(base, b"", &CreateOptions::default())
        .await
        .unwrap();
    let node = format!("{base}/n");
    c.create(&node, b"0", &CreateOptions::default())
        .await
        .unwrap();
    for i in 0..n {
        let v = i.to_string();
        let stat = c
            .set_data(&node, v.as_bytes(), Version::Exact(i as i32))
            .await
            .unwrap();
        assert_eq!(stat.version, i as i32 + 1);
        let (data, _) = c.get_data(&node).await.unwrap();
        assert_eq!(&data[..], v.as_bytes());
        assert_eq!(
            c.get_data(&format!("{base}/missing")).await.unwrap_err(),
            Error::NoNode
        );
    }
    let burst: Vec<_> = (0..200).map(|_| c.get_data(&node)).collect();
    for r in futures::future::join_all(burst).await {
        assert_eq!(&r.unwrap().0[..], (n - 1).to_string().as_bytes());
    }
}

fn runtime(multi: bool) -> tokio::runtime::Runtime {
    let mut b = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().unwrap()
}

#[test]
fn answers_are_right_whether_the_caller_spins_or_sleeps() {
    // A budget far above a round trip (replies found while spinning), one
    // far below (every spin gives up and the caller sleeps), and off.
    for budget in [
        Duration::from_millis(20),
        Duration::from_nanos(1),
        Duration::ZERO,
    ] {
        for multi in [true, false] {
            let rt = runtime(multi);
            rt.block_on(async {
                let c = common::connect_with(Client::builder().busy_poll(budget), "").await;
                let base = common::base(&c, "busy-poll").await;
                // In block_on: the caller spins (multi-thread only).
                exercise(&c, &format!("{base}/a"), 50).await;
                // In a task: it never spins.
                let task = c.clone();
                let b2 = format!("{base}/b");
                tokio::spawn(async move { exercise(&task, &b2, 50).await })
                    .await
                    .unwrap();
                c.close().await.unwrap();
            });
        }
    }
}
