//! Observability: `tracing` spans and events, and (feature `metrics`)
//! metrics through the [`metrics`](https://docs.rs/metrics) facade. Every
//! function here is cheap when nothing listens: a span is a callsite check
//! without a subscriber, and without the feature the metric calls compile
//! to nothing.
//!
//! Request metrics are kept by the connection driver, which already knows
//! each request's op, when it took it and when its reply came (it reads the
//! clock once per batch of commands and once per read, not per request),
//! through handles registered once per client: a request costs a histogram
//! record and a counter increment, no registry look-up and no extra clock
//! read.
//!
//! The metric names and labels are listed in the README ("Observability").

use crate::Error;

/// The outcome labels: `ok`, the error labels, and `dropped`.
const OUTCOMES: [&str; 24] = [
    "ok",
    "no_node",
    "node_exists",
    "bad_version",
    "not_empty",
    "no_auth",
    "invalid_acl",
    "bad_arguments",
    "unimplemented",
    "no_watcher",
    "not_read_only",
    "throttled",
    "multi_failed",
    "fenced",
    "connection_loss",
    "session_expired",
    "session_moved",
    "auth_failed",
    "closed",
    "timeout",
    "too_large",
    "error",
    "dropped",
    "quota_exceeded",
];

/// `OUTCOMES` index of `ok` and of `dropped`.
const OK: usize = 0;
#[cfg(feature = "metrics")]
const DROPPED: usize = 22;

/// A stable, low-cardinality label for a request's outcome.
pub(crate) fn outcome(r: &Result<impl Sized, Error>) -> &'static str {
    OUTCOMES[outcome_slot(r)]
}

fn outcome_slot(r: &Result<impl Sized, Error>) -> usize {
    match r {
        Ok(_) => OK,
        Err(e) => error_slot(e),
    }
}

/// A stable, low-cardinality label for an error (its `OUTCOMES` index).
fn error_slot(e: &Error) -> usize {
    match e {
        Error::NoNode => 1,
        Error::NodeExists => 2,
        Error::BadVersion => 3,
        Error::NotEmpty => 4,
        Error::NoAuth => 5,
        Error::InvalidAcl => 6,
        Error::BadArguments | Error::InvalidArgument(_) | Error::InvalidPath { .. } => 7,
        Error::Unimplemented => 8,
        Error::NoWatcher => 9,
        Error::NotReadOnly => 10,
        Error::Throttled => 11,
        Error::MultiFailed { .. } => 12,
        Error::Fenced { .. } => 13,
        Error::ConnectionLoss => 14,
        Error::SessionExpired => 15,
        Error::SessionMoved => 16,
        Error::AuthFailed | Error::SessionClosedRequireSaslAuth => 17,
        Error::Closed => 18,
        Error::Timeout | Error::RequestTimeout | Error::OperationTimeout => 19,
        Error::RequestTooLarge { .. } | Error::ResponseTooLarge { .. } => 20,
        Error::QuotaExceeded => 23,
        _ => 21,
    }
}

#[cfg(feature = "metrics")]
/// The watch kinds' labels (`zkit_watch_registrations_total`).
pub(crate) fn watch_kind_label(kind: crate::session::WatchKind) -> &'static str {
    use crate::session::WatchKind;
    match kind {
        WatchKind::Data => "data",
        WatchKind::Exist => "exists",
        WatchKind::Child => "children",
        WatchKind::Persistent => "persistent",
        WatchKind::PersistentRecursive => "persistent_recursive",
    }
}

#[cfg(feature = "metrics")]
/// The event types' labels (`zkit_watch_events_total`).
pub(crate) fn event_label(t: crate::types::EventType) -> &'static str {
    use crate::types::EventType;
    match t {
        EventType::None => "none",
        EventType::NodeCreated => "node_created",
        EventType::NodeDeleted => "node_deleted",
        EventType::NodeDataChanged => "node_data_changed",
        EventType::NodeChildrenChanged => "node_children_changed",
        EventType::DataWatchRemoved => "data_watch_removed",
        EventType::ChildWatchRemoved => "child_watch_removed",
        EventType::PersistentWatchRemoved => "persistent_watch_removed",
        _ => "other",
    }
}

/// A client's metric handles, kept by its driver and registered once each
/// (with the recorder installed at that moment) instead of looked up by
/// name per request. Without the `metrics` feature it is empty and every
/// method compiles to nothing.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    #[cfg(feature = "metrics")]
    handles: handles::Handles,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A request of `op` was answered after `elapsed` with `result`;
    /// `delivered` is false when its caller had dropped the future.
    #[inline]
    pub(crate) fn reply(
        &self,
        op: crate::proto::codes::OpCode,
        elapsed: std::time::Duration,
        result: &Result<impl Sized, Error>,
        delivered: bool,
    ) {
        #[cfg(feature = "metrics")]
        {
            let slot = if delivered {
                outcome_slot(result)
            } else {
                DROPPED
            };
            self.handles.reply(op, elapsed, slot);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (op, elapsed, result, delivered);
    }

    /// `n` requests are waiting for their replies.
    #[inline]
    pub(crate) fn in_flight(&self, n: usize) {
        #[cfg(feature = "metrics")]
        self.handles.in_flight(n);
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }

    /// Bytes read from / written to the server.
    #[inline]
    pub(crate) fn bytes(&self, received: usize, sent: usize) {
        #[cfg(feature = "metrics")]
        self.handles.bytes(received, sent);
        #[cfg(not(feature = "metrics"))]
        let _ = (received, sent);
    }

    /// A watcher was registered.
    #[inline]
    pub(crate) fn watch_registered(&self, kind: crate::session::WatchKind) {
        #[cfg(feature = "metrics")]
        self.handles.watch_registered(kind);
        #[cfg(not(feature = "metrics"))]
        let _ = kind;
    }

    /// A watch event was delivered.
    #[inline]
    pub(crate) fn watch_event(&self, t: crate::types::EventType) {
        #[cfg(feature = "metrics")]
        self.handles.watch_event(t);
        #[cfg(not(feature = "metrics"))]
        let _ = t;
    }
}

#[cfg(feature = "metrics")]
mod handles {
    use std::sync::OnceLock;
    use std::time::Duration;

    use metrics::{Counter, Gauge, Histogram};

    use super::{event_label, watch_kind_label, OUTCOMES};
    use crate::proto::codes::OpCode;

    /// Op codes 0..OP_SLOTS get a slot each; others share the last one's
    /// fallback (registered per request: they do not occur).
    const OP_SLOTS: usize = 128;

    #[derive(Debug)]
    pub(super) struct Handles {
        in_flight: OnceLock<Gauge>,
        received: OnceLock<Counter>,
        sent: OnceLock<Counter>,
        ops: Box<[OnceLock<OpMetrics>]>,
        watch_kinds: [OnceLock<Counter>; 5],
        events: [OnceLock<Counter>; 9],
    }

    impl Default for Handles {
        fn default() -> Self {
            Self {
                in_flight: OnceLock::new(),
                received: OnceLock::new(),
                sent: OnceLock::new(),
                ops: (0..OP_SLOTS).map(|_| OnceLock::new()).collect(),
                watch_kinds: Default::default(),
                events: Default::default(),
            }
        }
    }

    /// One op's handles; the outcome counters are registered as they occur.
    #[derive(Debug)]
    struct OpMetrics {
        op: &'static str,
        duration: Histogram,
        outcomes: [OnceLock<Counter>; OUTCOMES.len()],
    }

    impl OpMetrics {
        fn new(op: &'static str) -> Self {
            Self {
                op,
                duration: metrics::histogram!("zkit_request_duration_seconds", "op" => op),
                outcomes: Default::default(),
            }
        }

        fn record(&self, elapsed: Duration, slot: usize) {
            self.outcomes[slot]
                .get_or_init(|| {
                    metrics::counter!("zkit_requests_total", "op" => self.op, "outcome" => OUTCOMES[slot])
                })
                .increment(1);
            self.duration.record(elapsed.as_secs_f64());
        }
    }

    impl Handles {
        pub(super) fn reply(&self, op: OpCode, elapsed: Duration, slot: usize) {
            match usize::try_from(op.code()).ok().filter(|c| *c < OP_SLOTS) {
                Some(i) => self.ops[i]
                    .get_or_init(|| OpMetrics::new(op.name()))
                    .record(elapsed, slot),
                None => OpMetrics::new(op.name()).record(elapsed, slot),
            }
        }

        pub(super) fn in_flight(&self, n: usize) {
            self.in_flight
                .get_or_init(|| metrics::gauge!("zkit_requests_in_flight"))
                .set(n as f64);
        }

        pub(super) fn bytes(&self, received: usize, sent: usize) {
            if received > 0 {
                self.received
                    .get_or_init(|| metrics::counter!("zkit_bytes_received_total"))
                    .increment(received as u64);
            }
            if sent > 0 {
                self.sent
                    .get_or_init(|| metrics::counter!("zkit_bytes_sent_total"))
                    .increment(sent as u64);
            }
        }

        pub(super) fn watch_registered(&self, kind: crate::session::WatchKind) {
            use crate::session::WatchKind;
            let i = match kind {
                WatchKind::Data => 0,
                WatchKind::Exist => 1,
                WatchKind::Child => 2,
                WatchKind::Persistent => 3,
                WatchKind::PersistentRecursive => 4,
            };
            self.watch_kinds[i]
                .get_or_init(|| {
                    metrics::counter!("zkit_watch_registrations_total", "kind" => watch_kind_label(kind))
                })
                .increment(1);
        }

        pub(super) fn watch_event(&self, t: crate::types::EventType) {
            use crate::types::EventType;
            let i = match t {
                EventType::None => 0,
                EventType::NodeCreated => 1,
                EventType::NodeDeleted => 2,
                EventType::NodeDataChanged => 3,
                EventType::NodeChildrenChanged => 4,
                EventType::DataWatchRemoved => 5,
                EventType::ChildWatchRemoved => 6,
                EventType::PersistentWatchRemoved => 7,
                _ => 8,
            };
            self.events[i]
                .get_or_init(
                    || metrics::counter!("zkit_watch_events_total", "event" => event_label(t)),
                )
                .increment(1);
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
