//! Client metrics (feature `metrics`) through the `metrics` facade:
//! requests by op and outcome, latency, in-flight, bytes, connections and
//! disconnects by cause, session state, watch registrations and events.

mod common;

use std::time::Duration;

use zkit::{Client, CreateOptions, Error};

/// The Prometheus exposition of everything recorded so far.
fn scrape(handle: &metrics_exporter_prometheus::PrometheusHandle) -> String {
    handle.render()
}

#[test]
fn requests_connections_and_watches_are_counted() {
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
        let base = common::base(&c, "metrics").await;
        for i in 0..5 {
            c.create(&format!("{base}/n{i}"), b"x", &CreateOptions::default())
                .await
                .unwrap();
        }
        for _ in 0..3 {
            assert_eq!(
                c.get_data(&format!("{base}/missing")).await.unwrap_err(),
                Error::NoNode
            );
        }
        let (_, _, w) = c.get_data_and_watch(&format!("{base}/n0")).await.unwrap();
        c.set_data(&format!("{base}/n0"), b"y", zkit::Version::Any)
            .await
            .unwrap();
        common::soon("the watch fires", w.changed()).await.unwrap();
        // A reconnect through a proxy that cuts the connection: the watch
        // is replayed.
        let target = common::connect_string()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let proxy = zkit_testcontainers::FaultProxy::start(target)
            .await
            .unwrap();
        let via = Client::connect(&proxy.addr().to_string()).await.unwrap();
        let (_, _w2) = via.exists_and_watch(&format!("{base}/n2")).await.unwrap();
        proxy.cut();
        common::eventually("reconnected", Duration::from_secs(10), || async {
            via.exists(&format!("{base}/n2")).await.is_ok()
        })
        .await;
        // A dropped request is counted as such.
        let dropped = c.get_data(&format!("{base}/n1"));
        drop(dropped);
        // A second session, expired from the server: a state change.
        let doomed = Client::connect(&common::connect_string()).await.unwrap();
        common::expire(&doomed).await;
        common::eventually("the expiry is seen", Duration::from_secs(5), || async {
            doomed.state() == zkit::SessionState::Expired
        })
        .await;
        c.close().await.unwrap();
    });
    let text = scrape(&handle);
    assert!(
        common::prometheus_sample(&text, r#"zkit_requests_total{op="Create2",outcome="ok"}"#)
            >= 6.0,
        "{text}"
    );
    assert_eq!(
        common::prometheus_sample(
            &text,
            r#"zkit_requests_total{op="GetData",outcome="no_node"}"#
        ),
        3.0,
        "{text}"
    );
    assert!(
        common::prometheus_sample(
            &text,
            r#"zkit_request_duration_seconds_count{op="GetData"}"#
        ) >= 4.0,
        "{text}"
    );
    assert_eq!(
        common::prometheus_sample(&text, "zkit_requests_in_flight"),
        0.0,
        "{text}"
    );
    assert!(
        common::prometheus_sample(&text, "zkit_bytes_sent_total") > 0.0,
        "{text}"
    );
    assert!(
        common::prometheus_sample(&text, "zkit_bytes_received_total") > 0.0,
        "{text}"
    );
    assert!(
        common::prometheus_sample(&text, r#"zkit_connections_total{kind="connect"}"#) >= 2.0,
        "{text}"
    );
    assert!(
        common::prometheus_sample(&text, "zkit_connection_attempts_total") >= 2.0,
        "{text}"
    );
    assert_eq!(
        common::prometheus_sample(
            &text,
            r#"zkit_session_state_changes_total{state="expired"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        common::prometheus_sample(&text, r#"zkit_watch_registrations_total{kind="data"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(
        common::prometheus_sample(&text, r#"zkit_watch_registrations_total{kind="exists"}"#),
        1.0,
        "{text}"
    );
    assert!(
        common::prometheus_sample(&text, r#"zkit_connections_total{kind="reconnect"}"#) >= 1.0,
        "{text}"
    );
    assert!(
        common::prometheus_sample(&text, "zkit_watch_replay_frames_total") >= 1.0,
        "{text}"
    );
    assert!(
        common::prometheus_sample(&text, "zkit_watch_replay_paths_count") >= 1.0,
        "{text}"
    );
    assert!(
        common::prometheus_sample(&text, r#"zkit_disconnects_total{cause="eof"}"#)
            + common::prometheus_sample(&text, r#"zkit_disconnects_total{cause="read_error"}"#)
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        common::prometheus_sample(
            &text,
            r#"zkit_watch_events_total{event="node_data_changed"}"#
        ),
        1.0,
        "{text}"
    );
}
