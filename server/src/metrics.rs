//! The server's metrics, gathered once for every way they are read: the
//! `mntr` four-letter word (`zk_<name>`), the admin server's
//! `/commands/monitor` (JSON) and `/metrics` (Prometheus text exposition
//! format 0.0.4). The names are ZooKeeper 3.8's (`ServerMetrics`, the
//! gauges `ZooKeeperServer.registerMetrics` adds), so that dashboards built
//! for ZooKeeper work unchanged.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::state::Shared;
use crate::VERSION;

/// Bucket upper bounds (ms) of a [`Summary`]'s histogram, from which its
/// quantiles are estimated; the last bucket is unbounded.
const BOUNDS_MS: [u64; 16] = [
    0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000,
];

/// A distribution of durations in whole milliseconds, as ZooKeeper's
/// `AvgMinMaxCounter`/`AvgMinMaxPercentileCounter` report them: count, sum,
/// min, max, and quantiles estimated from fixed buckets (the bucket's upper
/// bound; ZooKeeper samples a sliding window instead). Lock-free.
#[derive(Debug)]
pub(crate) struct Summary {
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    buckets: [AtomicU64; BOUNDS_MS.len() + 1],
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Summary {
    /// Adds one observation.
    pub(crate) fn record(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(ms, Ordering::Relaxed);
        self.min.fetch_min(ms, Ordering::Relaxed);
        self.max.fetch_max(ms, Ordering::Relaxed);
        let i = BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(BOUNDS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> SummaryValues {
        let count = self.count.load(Ordering::Relaxed);
        let min = self.min.load(Ordering::Relaxed);
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let max = self.max.load(Ordering::Relaxed);
        SummaryValues {
            count,
            sum: self.sum.load(Ordering::Relaxed),
            min: if count == 0 { 0 } else { min },
            max,
            buckets,
        }
    }
}

/// One reading of a [`Summary`].
struct SummaryValues {
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
    buckets: Vec<u64>,
}

impl SummaryValues {
    fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The `q` quantile: the upper bound of the bucket holding that rank
    /// (capped by the maximum seen), 0 when empty.
    fn quantile(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return BOUNDS_MS.get(i).map_or(self.max, |&b| b.min(self.max));
            }
        }
        self.max
    }
}

/// The timing metrics of a server (the counts live in [`Shared`]).
#[derive(Debug, Default)]
pub(crate) struct ServerMetrics {
    /// `readlatency`: requests that changed nothing (reads, pings, sync…).
    pub(crate) read_latency: Summary,
    /// `updatelatency`: requests that wrote a transaction.
    pub(crate) update_latency: Summary,
    /// `fsynctime`: write + sync of a log batch (durable servers); set
    /// once the log is started.
    pub(crate) fsync: Option<Arc<Summary>>,
}

/// How ZooKeeper exposes a metric (its `MetricsContext` kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value read when asked (`registerGauge`).
    Gauge,
    /// A monotonic count (`getCounter`).
    Counter,
}

/// A metric value: ZooKeeper prints integers and doubles differently.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// An integral value.
    Int(i64),
    /// A floating-point value (averages).
    Float(f64),
    /// A string (`version`, `server_state`): JSON and `mntr` only.
    Text(String),
}

impl Value {
    fn prometheus(&self) -> Option<String> {
        match self {
            Self::Int(v) => Some(v.to_string()),
            Self::Float(v) => Some(format!("{v:?}")),
            Self::Text(_) => None,
        }
    }

    /// The value as JSON.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Int(v) => (*v).into(),
            Self::Float(v) => (*v).into(),
            Self::Text(s) => s.clone().into(),
        }
    }
}

/// One named metric.
#[derive(Debug, Clone)]
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) value: Value,
}

/// A summary's several series.
#[derive(Debug)]
pub(crate) struct SummaryMetric {
    /// ZooKeeper's name (`readlatency`).
    name: &'static str,
    /// ADVANCED summaries also have percentiles (ZooKeeper's `DetailLevel`).
    advanced: bool,
    values: SummaryValues,
}

/// Everything the server reports, in `mntr` order.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) metrics: Vec<Metric>,
    summaries: Vec<SummaryMetric>,
}

impl std::fmt::Debug for SummaryValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummaryValues")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// Open file descriptors and their limit (Linux; -1 elsewhere).
fn file_descriptors() -> (i64, i64) {
    let open = std::fs::read_dir("/proc/self/fd").map_or(-1, |d| d.count() as i64);
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1);
    (open, max)
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Int(n.try_into().unwrap_or(i64::MAX))
}

/// The ephemeral znodes of every session, counted.
pub(crate) fn ephemerals_count(st: &crate::state::State) -> usize {
    st.tree
        .sessions_with_ephemerals()
        .iter()
        .map(|id| st.tree.get_ephemerals(*id, "/").len())
        .sum()
}

/// ZooKeeper's request latency (`ServerStats`: min, avg, max in ms) over
/// every request, reads and writes.
fn request_latency(read: &SummaryValues, update: &SummaryValues) -> (u64, f64, u64) {
    let count = read.count + update.count;
    let avg = if count == 0 {
        0.0
    } else {
        (read.sum + update.sum) as f64 / count as f64
    };
    let min = match (read.count, update.count) {
        (0, 0) => 0,
        (0, _) => update.min,
        (_, 0) => read.min,
        _ => read.min.min(update.min),
    };
    (min, avg, read.max.max(update.max))
}

/// The request latency `srvr` reports, without gathering everything else.
pub(crate) fn latency(shared: &Shared) -> (u64, f64, u64) {
    let m = &shared.metrics;
    request_latency(&m.read_latency.snapshot(), &m.update_latency.snapshot())
}

/// Gathers every metric (the state lock is held once, briefly; the
/// approximate data size walks the tree).
pub(crate) fn gather(shared: &Shared) -> Report {
    use Kind::{Counter, Gauge};
    let (znodes, watches, ephemerals, sessions, data_size, zxid, outstanding) = {
        let st = shared.lock();
        (
            st.tree.node_count(),
            st.watches.watch_count(),
            ephemerals_count(&st),
            st.sessions.len(),
            st.tree.approximate_data_size(),
            st.zxid,
            st.outstanding(),
        )
    };
    let m = &shared.metrics;
    let read = m.read_latency.snapshot();
    let update = m.update_latency.snapshot();
    let (all_min, all_avg, all_max) = request_latency(&read, &update);
    let (open_fds, max_fds) = file_descriptors();
    let mut metrics = Vec::new();
    let mut add = |name: &str, kind: Kind, value: Value| {
        metrics.push(Metric {
            name: name.to_string(),
            kind,
            value,
        });
    };
    add(
        "version",
        Gauge,
        Value::Text(format!("{VERSION}, built on 01/01/2022 00:00 GMT")),
    );
    add("server_state", Gauge, Value::Text("standalone".into()));
    add("ephemerals_count", Gauge, int(ephemerals));
    add(
        "num_alive_connections",
        Gauge,
        int(shared.connections.load(Ordering::Relaxed)),
    );
    add("avg_latency", Gauge, Value::Float(all_avg));
    add("outstanding_requests", Gauge, int(outstanding));
    add("znode_count", Gauge, int(znodes));
    add("global_sessions", Gauge, int(sessions));
    add(
        "packets_sent",
        Gauge,
        int(shared.sent.load(Ordering::Relaxed)),
    );
    add(
        "packets_received",
        Gauge,
        int(shared.received.load(Ordering::Relaxed)),
    );
    add("watch_count", Gauge, int(watches));
    add("auth_failed_count", Gauge, int(0));
    add("min_latency", Gauge, int(all_min));
    add("max_file_descriptor_count", Gauge, Value::Int(max_fds));
    add("approximate_data_size", Gauge, int(data_size));
    add("open_file_descriptor_count", Gauge, Value::Int(open_fds));
    add("local_sessions", Gauge, int(0));
    add("uptime", Gauge, int(shared.started.elapsed().as_millis()));
    add("max_latency", Gauge, int(all_max));
    add("last_processed_zxid", Gauge, int(zxid));
    add("commit_count", Counter, int(0));
    let mut summaries = vec![
        SummaryMetric {
            name: "readlatency",
            advanced: true,
            values: read,
        },
        SummaryMetric {
            name: "updatelatency",
            advanced: true,
            values: update,
        },
    ];
    if let Some(fsync) = &m.fsync {
        summaries.push(SummaryMetric {
            name: "fsynctime",
            advanced: false,
            values: fsync.snapshot(),
        });
    }
    Report { metrics, summaries }
}

/// ZooKeeper's percentiles of ADVANCED summaries in `mntr`.
const MNTR_PERCENTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999)];

impl Report {
    /// Flat `(name, value)` pairs as `mntr` and `/commands/monitor` list
    /// them: every metric, then `avg_`/`min_`/`max_`/`cnt_`/`sum_` (and for
    /// ADVANCED summaries `p50_`… `p999_`) of each summary.
    pub(crate) fn flat(&self) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = self
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        for s in &self.summaries {
            let v = &s.values;
            out.push((format!("avg_{}", s.name), Value::Float(v.avg())));
            out.push((format!("min_{}", s.name), int(v.min)));
            out.push((format!("max_{}", s.name), int(v.max)));
            out.push((format!("cnt_{}", s.name), int(v.count)));
            out.push((format!("sum_{}", s.name), int(v.sum)));
            if s.advanced {
                for (p, q) in MNTR_PERCENTILES {
                    out.push((format!("{p}_{}", s.name), int(v.quantile(q))));
                }
            }
        }
        out
    }

    /// The `mntr` four-letter word's text: `zk_<name>\t<value>` lines.
    pub(crate) fn mntr(&self) -> String {
        let mut s = String::new();
        for (name, value) in self.flat() {
            let v = match value {
                Value::Int(v) => v.to_string(),
                // ZooKeeper prints doubles with 4 decimals at most.
                Value::Float(v) => {
                    let t = format!("{v:.4}");
                    let t = t.trim_end_matches('0');
                    if t.ends_with('.') {
                        format!("{t}0")
                    } else {
                        t.to_string()
                    }
                }
                Value::Text(t) => t,
            };
            let _ = writeln!(s, "zk_{name}\t{v}");
        }
        s
    }

    /// Prometheus text exposition format 0.0.4, with ZooKeeper's
    /// Prometheus provider's names: no `zk_` prefix, summaries with
    /// `quantile` labels (0.5 for BASIC; 0.5, 0.9, 0.99 for ADVANCED) plus
    /// `_count` and `_sum`. Text values are left out.
    pub(crate) fn prometheus(&self) -> String {
        let mut s = String::new();
        for m in &self.metrics {
            let Some(v) = m.value.prometheus() else {
                continue;
            };
            let kind = match m.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
            };
            let _ = writeln!(s, "# HELP {0} {0}\n# TYPE {0} {kind}\n{0} {v}", m.name);
        }
        for sm in &self.summaries {
            let v = &sm.values;
            let _ = writeln!(s, "# HELP {0} {0}\n# TYPE {0} summary", sm.name);
            let quantiles: &[f64] = if sm.advanced {
                &[0.5, 0.9, 0.99]
            } else {
                &[0.5]
            };
            for q in quantiles {
                let _ = writeln!(s, "{}{{quantile=\"{q}\"}} {}", sm.name, v.quantile(*q));
            }
            let _ = writeln!(s, "{}_count {}", sm.name, v.count);
            let _ = writeln!(s, "{}_sum {}", sm.name, v.sum);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_estimates_quantiles() {
        let s = Summary::default();
        assert_eq!(s.snapshot().quantile(0.5), 0);
        for ms in [1, 1, 2, 4, 40] {
            s.record(Duration::from_millis(ms));
        }
        let v = s.snapshot();
        assert_eq!((v.count, v.sum, v.min, v.max), (5, 48, 1, 40));
        assert_eq!(v.quantile(0.5), 2);
        assert_eq!(v.quantile(0.99), 40); // bucket bound 50, capped by max
        assert!((v.avg() - 9.6).abs() < 1e-9);
    }
}
