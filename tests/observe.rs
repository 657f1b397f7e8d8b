//! Tracing spans of requests: one `zk.request` span per request with its
//! op, path, session, xid and outcome, entered while the reply is awaited.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use zkit::{CreateOptions, Error};

/// A span's name and fields (as recorded, last value wins).
type Seen = (String, BTreeMap<String, String>);

/// Spans seen.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push((attrs.metadata().name().to_string(), fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(spans.len() - 1);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(i) = span.extensions().get::<usize>().copied() else {
            return;
        };
        let mut spans = self.0.lock().unwrap();
        values.record(&mut Fields(&mut spans[i].1));
    }
}

#[test]
fn every_request_has_a_span_with_op_path_session_xid_and_outcome() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let session = tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let c = common::client().await;
            let base = common::base(&c, "spans").await;
            spans.0.lock().unwrap().clear();
            c.create(&format!("{base}/a"), b"x", &CreateOptions::default())
                .await
                .unwrap();
            assert_eq!(
                c.get_data(&format!("{base}/missing")).await.unwrap_err(),
                Error::NoNode
            );
            c.multi()
                .set_data(&format!("{base}/a"), b"y", zkit::Version::Any)
                .commit()
                .await
                .unwrap();
            c.session_id()
        })
    });
    let spans = spans.0.lock().unwrap().clone();
    let requests: Vec<&BTreeMap<String, String>> = spans
        .iter()
        .filter(|(name, _)| name == "zk.request")
        .map(|(_, f)| f)
        .collect();
    assert_eq!(requests.len(), 3, "{spans:?}");
    let want = [
        ("Create2", Some("/a"), "ok"),
        ("GetData", Some("/missing"), "no_node"),
        ("Multi", None, "ok"),
    ];
    for (f, (op, path, outcome)) in requests.iter().zip(want) {
        assert_eq!(f.get("op").map(String::as_str), Some(op), "{f:?}");
        match path {
            Some(p) => assert!(f.get("path").is_some_and(|v| v.ends_with(p)), "{f:?}"),
            None => assert!(!f.contains_key("path"), "{f:?}"),
        }
        assert_eq!(f.get("outcome").map(String::as_str), Some(outcome), "{f:?}");
        assert_eq!(f.get("session"), Some(&session.to_string()), "{f:?}");
    }
    // The xids the requests went out with: positive, in call order.
    let xids: Vec<i64> = requests
        .iter()
        .map(|f| f.get("xid").and_then(|x| x.parse().ok()).expect("an xid"))
        .collect();
    assert!(
        xids[0] > 0 && xids.windows(2).all(|w| w[0] < w[1]),
        "{xids:?}"
    );
}
