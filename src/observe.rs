//! Observability: `tracing` spans and events, and (feature `metrics`)
//! metrics through the [`metrics`](https://docs.rs/metrics) facade. Every
//! function here is cheap when nothing listens: a span is a callsite check
//! without a subscriber, and without the feature the metric calls compile
//! to nothing.
//!
//! The metric names and labels are listed in the README ("Observability").

#[cfg(feature = "metrics")]
use std::time::Instant;

use crate::Error;

/// A stable, low-cardinality label for a request's outcome.
pub(crate) fn outcome(r: &Result<impl Sized, Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => error_label(e),
    }
}

/// A stable, low-cardinality label for an error.
pub(crate) fn error_label(e: &Error) -> &'static str {
    match e {
        Error::NoNode => "no_node",
        Error::NodeExists => "node_exists",
        Error::BadVersion => "bad_version",
        Error::NotEmpty => "not_empty",
        Error::NoAuth => "no_auth",
        Error::InvalidAcl => "invalid_acl",
        Error::BadArguments | Error::InvalidArgument(_) | Error::InvalidPath { .. } => {
            "bad_arguments"
        }
        Error::Unimplemented => "unimplemented",
        Error::NoWatcher => "no_watcher",
        Error::NotReadOnly => "not_read_only",
        Error::Throttled => "throttled",
        Error::MultiFailed { .. } => "multi_failed",
        Error::Fenced { .. } => "fenced",
        Error::ConnectionLoss => "connection_loss",
        Error::SessionExpired => "session_expired",
        Error::SessionMoved => "session_moved",
        Error::AuthFailed | Error::SessionClosedRequireSaslAuth => "auth_failed",
        Error::Closed => "closed",
        Error::Timeout | Error::RequestTimeout | Error::OperationTimeout => "timeout",
        Error::RequestTooLarge { .. } | Error::ResponseTooLarge { .. } => "too_large",
        _ => "error",
    }
}

/// A client's metric handles, registered once each (with the recorder
/// installed at that moment) instead of looked up by name per request.
#[cfg(feature = "metrics")]
#[derive(Debug)]
pub(crate) struct Registry {
    in_flight: std::sync::OnceLock<metrics::Gauge>,
    /// Per op code (wire codes 0..128; others are registered per request).
    ops: Box<[std::sync::OnceLock<std::sync::Arc<OpMetrics>>]>,
}

/// Without the `metrics` feature: nothing.
#[cfg(not(feature = "metrics"))]
#[derive(Debug, Default)]
pub(crate) struct Registry;

#[cfg(not(feature = "metrics"))]
impl Registry {
    pub(crate) fn new() -> Self {
        Self
    }
}

#[cfg(feature = "metrics")]
const OP_SLOTS: usize = 128;

#[cfg(feature = "metrics")]
impl Default for Registry {
    fn default() -> Self {
        Self {
            in_flight: std::sync::OnceLock::new(),
            ops: (0..OP_SLOTS).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }
}

/// One op's handles.
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct OpMetrics {
    op: &'static str,
    duration: metrics::Histogram,
    ok: metrics::Counter,
    /// Counters of the other outcomes, registered as they occur.
    others: std::sync::Mutex<std::collections::HashMap<&'static str, metrics::Counter>>,
}

#[cfg(feature = "metrics")]
impl OpMetrics {
    fn new(op: &'static str) -> Self {
        Self {
            op,
            duration: metrics::histogram!("zkit_request_duration_seconds", "op" => op),
            ok: metrics::counter!("zkit_requests_total", "op" => op, "outcome" => "ok"),
            others: std::sync::Mutex::default(),
        }
    }

    fn count(&self, outcome: &'static str) {
        if outcome == "ok" {
            self.ok.increment(1);
            return;
        }
        let mut others = self
            .others
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        others
            .entry(outcome)
            .or_insert_with(
                || metrics::counter!("zkit_requests_total", "op" => self.op, "outcome" => outcome),
            )
            .increment(1);
    }
}

#[cfg(feature = "metrics")]
impl Registry {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn in_flight(&self) -> metrics::Gauge {
        self.in_flight
            .get_or_init(|| metrics::gauge!("zkit_requests_in_flight"))
            .clone()
    }

    fn op(&self, op: crate::proto::codes::OpCode) -> std::sync::Arc<OpMetrics> {
        let make = || std::sync::Arc::new(OpMetrics::new(op.name()));
        match usize::try_from(op.code()).ok().filter(|c| *c < OP_SLOTS) {
            Some(i) => self.ops[i].get_or_init(make).clone(),
            None => make(),
        }
    }
}

/// One request in flight: counted in `zkit_requests_in_flight` until it
/// completes or its future is dropped. Without the `metrics` feature it is
/// empty and costs nothing.
#[derive(Debug)]
pub(crate) struct InFlight {
    #[cfg(feature = "metrics")]
    op: std::sync::Arc<OpMetrics>,
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
    #[cfg(feature = "metrics")]
    started: Instant,
    #[cfg(feature = "metrics")]
    done: bool,
}

impl InFlight {
    #[cfg(feature = "metrics")]
    pub(crate) fn start(registry: &Registry, op: crate::proto::codes::OpCode) -> Self {
        let gauge = registry.in_flight();
        gauge.increment(1.0);
        Self {
            op: registry.op(op),
            gauge,
            started: Instant::now(),
            done: false,
        }
    }

    #[cfg(not(feature = "metrics"))]
    pub(crate) fn start(_registry: &Registry, _op: crate::proto::codes::OpCode) -> Self {
        Self {}
    }

    /// The request completed with `outcome`.
    pub(crate) fn finish(#[allow(unused_mut)] mut self, outcome: &'static str) {
        #[cfg(feature = "metrics")]
        {
            self.done = true;
            self.gauge.decrement(1.0);
            self.op.count(outcome);
            self.op
                .duration
                .record(self.started.elapsed().as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = outcome;
    }
}

#[cfg(feature = "metrics")]
impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            // The caller dropped the future: the request may still complete
            // on the server, unobserved.
            self.gauge.decrement(1.0);
            self.op.count("dropped");
        }
    }
}

/// A connection attempt to `host` begins.
pub(crate) fn dial() {
    #[cfg(feature = "metrics")]
    metrics::counter!("zkit_connection_attempts_total").increment(1);
}

/// A connection attempt failed.
pub(crate) fn connect_failed() {
    #[cfg(feature = "metrics")]
    metrics::counter!("zkit_connection_failures_total").increment(1);
}

/// The connection was lost; `cause`: `eof`, `read_error`, `write_error`,
/// `closed_by_session` (a ping or request timeout, a rejected handshake, a
/// move to another host).
pub(crate) fn disconnected(cause: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("zkit_disconnects_total", "cause" => cause).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = cause;
}

/// A session (re)established a connection: `kind` is `connect` (a new
/// session), `reconnect` (the same session, same host) or `failover` (the
/// same session, another host).
pub(crate) fn connected(kind: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("zkit_connections_total", "kind" => kind).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// The session's state changed to `state` (its `Debug` name).
pub(crate) fn state(state: &'static str, connected: bool) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("zkit_session_state_changes_total", "state" => state).increment(1);
        metrics::gauge!("zkit_session_connected").set(if connected { 1.0 } else { 0.0 });
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (state, connected);
}

/// Bytes read from / written to the server.
pub(crate) fn bytes(received: usize, sent: usize) {
    #[cfg(feature = "metrics")]
    {
        if received > 0 {
            metrics::counter!("zkit_bytes_received_total").increment(received as u64);
        }
        if sent > 0 {
            metrics::counter!("zkit_bytes_sent_total").increment(sent as u64);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (received, sent);
}

/// A watcher was registered (`kind`: `data`, `exists`, `children`,
/// `persistent`, `persistent_recursive`).
pub(crate) fn watch_registered(kind: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("zkit_watch_registrations_total", "kind" => kind).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// A watch event was delivered (`event`: its type's `Debug` name).
pub(crate) fn watch_event(event: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("zkit_watch_events_total", "event" => event).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = event;
}

/// Watches replayed (SetWatches/SetWatches2) on a reconnect or failover:
/// `frames` sent, carrying `paths` watched paths.
pub(crate) fn watch_replay(frames: usize, paths: usize) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("zkit_watch_replay_frames_total").increment(frames as u64);
        metrics::histogram!("zkit_watch_replay_paths").record(paths as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (frames, paths);
}
