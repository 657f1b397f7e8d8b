//! Configuration subscription: a typed value (JSON, through serde) at a
//! path, kept current by a background task, and a compare-and-set publish.
//!
//! The subscription never misses the latest value: after every change
//! event, after every reconnect (events may have coalesced) and after a
//! session expired (a new session comes from [`Sessions`]) it reads the node
//! again. Values only move forward (by `mzxid`, like Curator's
//! `SharedValue`), even when a new session lands on a lagging server. A
//! value that does not decode is logged and skipped; the last good one stays.
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::{config, ConfigSubscription, Sessions};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
//! struct Limits { rate: u32 }
//!
//! let v = config::publish(&zk, "/config/limits", &Limits { rate: 10 }, zkit::Version::Any).await?;
//! let sessions = Sessions::new(zkit::Client::builder(), "zk1:2181,zk2:2181");
//! let mut limits = ConfigSubscription::<Limits>::start(sessions, "/config/limits");
//! limits.changed().await?;
//! println!("rate = {:?}", limits.current().map(|c| c.value.rate));
//! # let _ = v;
//! # Ok(())
//! # }
//! ```

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use zkit::{Client, CreateOptions, Error, SessionState, Version};

use crate::internal::protected::{backoff, ensure_parent_containers};
use crate::sessions::Sessions;

/// A value with the node version and modification zxid it was read at.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Versioned<T> {
    /// The decoded value.
    pub value: T,
    /// The node's data version (for a compare-and-set [`publish`]).
    pub version: i32,
    /// The zxid of the change that wrote it.
    pub mzxid: i64,
}

/// Writes `value` as JSON at `path`: unconditionally with
/// [`Version::Any`] (creating the node and its parents if absent), or only
/// if the node is at `Version::Exact(v)`. Returns the new version.
///
/// # Errors
/// [`Error::BadVersion`] when the version did not match (nothing written);
/// [`Error::NoNode`] for an exact version on an absent node; session and
/// ACL errors; [`Error::InvalidArgument`] if the value does not serialise.
pub async fn publish<T: Serialize>(
    client: &Client,
    path: &str,
    value: &T,
    version: Version,
) -> Result<i32, Error> {
    let data = serde_json::to_vec(value).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    loop {
        match client.set_data(path, &data, version).await {
            Ok(stat) => return Ok(stat.version),
            Err(Error::NoNode) if version == Version::Any => {
                ensure_parent_containers(client, path).await?;
                match client.create(path, &data, &CreateOptions::default()).await {
                    Ok((_, stat)) => return Ok(stat.version),
                    Err(Error::NodeExists) => continue, // raced: set it
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A live view of the value at a path (see the module docs).
#[derive(Debug)]
pub struct ConfigSubscription<T> {
    rx: watch::Receiver<Option<Versioned<T>>>,
    ready: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    _t: PhantomData<fn() -> T>,
}

impl<T> ConfigSubscription<T>
where
    T: DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Starts following the value at `path`, with sessions from `sessions`.
    pub fn start(sessions: Sessions, path: impl Into<String>) -> Self {
        let (tx, rx) = watch::channel(None);
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(follow(sessions, path.into(), tx, ready_tx));
        Self {
            rx,
            ready,
            task,
            _t: PhantomData,
        }
    }

    /// Waits until the node has been read once: then
    /// [`current`](Self::current) is the value (or `None`: no node), not
    /// merely "not read yet".
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn initialized(&self) {
        let mut r = self.ready.clone();
        let _ = r.wait_for(|ok| *ok).await;
    }

    /// The latest value (`None` while the node is absent or before the
    /// first read).
    pub fn current(&self) -> Option<Versioned<T>> {
        self.rx.borrow().clone()
    }

    /// Waits for the next value.
    ///
    /// # Errors
    /// [`Error::Closed`] if the subscription's task ended.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn changed(&mut self) -> Result<(), Error> {
        self.rx.changed().await.map_err(|_| Error::Closed)
    }

    /// A receiver of the values.
    pub fn receiver(&self) -> watch::Receiver<Option<Versioned<T>>> {
        self.rx.clone()
    }
}

/// Dropping the subscription stops its background task (and with it the
/// watch on the node); receivers from [`receiver`](ConfigSubscription::receiver)
/// keep the last value and see the channel closed.
impl<T> Drop for ConfigSubscription<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow<T: DeserializeOwned>(
    sessions: Sessions,
    path: String,
    tx: watch::Sender<Option<Versioned<T>>>,
    ready: watch::Sender<bool>,
) {
    // The newest change seen (mzxid), or the zxid at which the node was
    // found absent; nothing older is published.
    let mut newest = i64::MIN;
    'session: loop {
        let Ok(client) = sessions.client_retrying().await else {
            return; // closed
        };
        let mut states = client.state_stream();
        let mut delays = backoff();
        loop {
            let read = match client.get_data_and_watch(&path).await {
                Ok((data, stat, w)) => {
                    if stat.mzxid > newest {
                        newest = stat.mzxid;
                        match serde_json::from_slice::<T>(&data) {
                            Ok(value) => {
                                tx.send_replace(Some(Versioned {
                                    value,
                                    version: stat.version,
                                    mzxid: stat.mzxid,
                                }));
                            }
                            Err(e) => {
                                tracing::warn!(%path, error = %e, "undecodable config value skipped");
                            }
                        }
                    }
                    Ok(w)
                }
                Err(Error::NoNode) => match client.exists_and_watch(&path).await {
                    Ok((None, w)) => {
                        if tx.borrow().is_some() {
                            tx.send_replace(None);
                        }
                        Ok(w)
                    }
                    Ok((Some(_), _)) => continue, // created meanwhile: read it
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            let watcher = match read {
                Ok(w) => {
                    ready.send_if_modified(|r| !std::mem::replace(r, true));
                    w
                }
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(_) => continue 'session, // expired or closed: a new session
            };
            let changed = watcher.changed();
            tokio::pin!(changed);
            let mut was_disconnected = false;
            loop {
                tokio::select! {
                    r = &mut changed => match r {
                        Ok(_) => break,
                        Err(e) if e.is_retryable() => break,
                        Err(_) => continue 'session,
                    },
                    s = states.next_state() => match s {
                        Some(SessionState::Disconnected | SessionState::Connecting) => was_disconnected = true,
                        Some(SessionState::Connected | SessionState::ConnectedReadOnly) => {
                            if was_disconnected {
                                break; // read again: events may have coalesced
                            }
                        }
                        _ => continue 'session,
                    },
                }
            }
        }
    }
}
