//! Recipe metrics (feature `metrics`): lock waits and holds, leadership
//! changes, queue takes and redeliveries, scheduled runs.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use zkit::Error;
use zkit_recipes::scheduler::{JobSpec, Jobs, Scheduler, SchedulerEvent};
use zkit_recipes::{LeaderSelector, Lock, Queue};

#[test]
fn recipes_report_waits_holds_leaders_takes_and_runs() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder of this binary");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = common::client().await;
        let base = common::base(&c, "recipe-metrics").await;
        // Locks: one holder, one waiter.
        let lock = Lock::new(&c, format!("{base}/lock"));
        let g = lock.acquire().await.unwrap();
        let waiter = {
            let lock = lock.clone();
            tokio::spawn(async move { lock.acquire().await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        g.release().await.unwrap();
        let g2 = waiter.await.unwrap().unwrap();
        drop(g2);
        assert!(lock.try_acquire().await.unwrap().is_some());
        // A selector's term.
        let sel = LeaderSelector::new(&c, format!("{base}/leader"), "me").auto_requeue(false);
        sel.run(|_leader| async {}).await.unwrap();
        // Queue: two takes, one claim given back.
        let q = Queue::new(&c, format!("{base}/q"));
        q.put(b"a").await.unwrap();
        q.put(b"b").await.unwrap();
        assert_eq!(q.take().await.unwrap(), b"a");
        let claim = q.take_claimed().await.unwrap();
        claim.abandon().await.unwrap();
        assert_eq!(
            q.poll(Duration::from_millis(50)).await.unwrap().unwrap(),
            b"b"
        );
        assert!(q.poll(Duration::from_millis(50)).await.unwrap().is_none());
        // Scheduler: a few runs.
        let root = format!("{base}/sched");
        Jobs::new(&c, &root)
            .define(&JobSpec::every("m", Duration::from_millis(50)).unwrap())
            .await
            .unwrap();
        let s = Scheduler::new(&c, &root, "solo")
            .handle("m", |_ctx| async { Ok::<(), Error>(()) })
            .start()
            .unwrap();
        let mut events = s.events();
        let mut runs = 0;
        while runs < 3 {
            if let Ok(SchedulerEvent::Finished { recorded: true, .. }) = events.recv().await {
                runs += 1;
            }
        }
        s.close().await;
    });
    let text = handle.render();
    let has = |series: &str, min: f64| {
        let v = common::prometheus_sample(&text, series);
        assert!(v >= min, "{series} = {v} (want >= {min})\n{text}");
    };
    has(
        r#"zkit_lock_acquires_total{kind="mutex",outcome="acquired"}"#,
        3.0,
    );
    has(r#"zkit_lock_wait_seconds_count{kind="mutex"}"#, 3.0);
    has(r#"zkit_lock_hold_seconds_count{kind="mutex"}"#, 3.0);
    // The waiter waited about 200 ms: the largest wait says so.
    has(r#"zkit_lock_wait_seconds{kind="mutex",quantile="1"}"#, 0.15);
    has(
        r#"zkit_leadership_changes_total{recipe="selector",event="acquired"}"#,
        1.0,
    );
    has(
        r#"zkit_leadership_changes_total{recipe="selector",event="returned"}"#,
        1.0,
    );
    has(
        r#"zkit_queue_takes_total{mode="at_most_once",outcome="taken"}"#,
        2.0,
    );
    has(
        r#"zkit_queue_takes_total{mode="at_most_once",outcome="empty"}"#,
        1.0,
    );
    has(
        r#"zkit_queue_takes_total{mode="claimed",outcome="taken"}"#,
        1.0,
    );
    has("zkit_queue_redeliveries_total", 1.0);
    has(r#"zkit_scheduler_runs_total{job="m",outcome="ok"}"#, 3.0);
    has(r#"zkit_scheduler_lag_seconds_count{job="m"}"#, 3.0);
    // And the client's own, through the same recorder.
    has(r#"zkit_requests_total{op="Create2",outcome="ok"}"#, 1.0);
}
