//! Recipe metrics (feature `metrics`, through the `metrics` facade; names
//! in the README's metric table). Without the feature every function is
//! empty.

use std::time::Duration;

#[cfg(feature = "metrics")]
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// An acquire of a lock of `kind` (`mutex`, `read`, `write`) ended after
/// `waited`: `outcome` is `acquired`, `timeout` or an error.
pub(crate) fn lock_acquire(kind: &'static str, waited: Duration, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("zkit_lock_acquires_total", "kind" => kind, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("zkit_lock_wait_seconds", "kind" => kind).record(secs(waited));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, waited, outcome);
}

/// A lock of `kind` held for `held` was released (or its guard dropped).
pub(crate) fn lock_release(kind: &'static str, held: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("zkit_lock_hold_seconds", "kind" => kind).record(secs(held));
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, held);
}

/// A leadership change of a `recipe` (`latch`, `selector`): `event` is
/// `acquired` or `lost` / `suspended` / `returned`.
pub(crate) fn leadership(recipe: &'static str, event: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("zkit_leadership_changes_total", "recipe" => recipe, "event" => event)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (recipe, event);
}

/// A queue take (`mode`: `at_most_once`, `claimed`) ended after `waited`.
pub(crate) fn queue_take(mode: &'static str, waited: Duration, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("zkit_queue_takes_total", "mode" => mode, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("zkit_queue_take_seconds", "mode" => mode).record(secs(waited));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (mode, waited, outcome);
}

/// A claimed queue item was given back without completing it (abandoned,
/// or its claim dropped): it will be delivered again.
pub(crate) fn queue_redelivery() {
    #[cfg(feature = "metrics")]
    metrics::counter!("zkit_queue_redeliveries_total").increment(1);
}

/// A scheduled run of `job` ended with `outcome` (`ok`, `failed`,
/// `unrecorded`), having started `lag` after its fire time.
pub(crate) fn scheduler_run(job: &str, outcome: &'static str, lag: Duration) {
    #[cfg(feature = "metrics")]
    {
        let job = job.to_string();
        metrics::counter!("zkit_scheduler_runs_total", "job" => job.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("zkit_scheduler_lag_seconds", "job" => job).record(secs(lag));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (job, outcome, lag);
}

/// Missed fires of `job` were handled by its misfire policy.
pub(crate) fn scheduler_misfire(job: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("zkit_scheduler_misfires_total", "job" => job.to_string()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = job;
}

/// Outcome label of a recipe operation's result.
pub(crate) fn outcome<T>(r: &Result<T, zkit::Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(zkit::Error::Closed) => "closed",
        Err(zkit::Error::SessionExpired) => "session_expired",
        Err(zkit::Error::ConnectionLoss) => "connection_loss",
        Err(_) => "error",
    }
}
