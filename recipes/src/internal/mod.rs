//! Machinery shared by the recipes: protected creation, container parents,
//! background deletes, sequence parsing and ordering, names held by live
//! handles, claims on queue items.

pub(crate) mod claim;
pub(crate) mod held;
pub(crate) mod metrics;
pub(crate) mod protected;
pub(crate) mod sequence;

/// Publishes `value` unless the channel already holds an equal one, so
/// receivers wake only on a real change.
pub(crate) fn set_if_changed<T: PartialEq>(tx: &tokio::sync::watch::Sender<T>, value: T) {
    tx.send_if_modified(|cur| {
        let changed = *cur != value;
        if changed {
            *cur = value;
        }
        changed
    });
}
