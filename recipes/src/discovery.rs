//! Service registry and discovery, compatible with Curator's
//! `curator-x-discovery`: instances live at `<base>/<service>/<id>` as
//! Curator's `ServiceInstance` JSON (compat mode: no `enabled` key unless
//! set), so Java and Rust services find each other.
//!
//! - [`ServiceDiscovery::register`] creates the instance node (ephemeral for
//!   `DYNAMIC`) and keeps it registered: after the session expires it is
//!   registered again on a new session (from [`Sessions`]), once the old
//!   session's node is gone — a node of another live session is never taken
//!   over. Updates and unregistration go through the same task, in order.
//! - [`ServiceDiscovery::query_instances`] lists a service; a malformed
//!   node is skipped and logged, never fatal (Curator's query fails on one).
//! - [`ServiceCache`] keeps a service's instances current from watches;
//!   [`ServiceProvider`] picks one (round-robin, random or sticky),
//!   skipping instances marked `enabled: false`.
//!
//! ```no_run
//! # async fn demo() -> zkit::Result<()> {
//! use zkit_recipes::discovery::{ServiceDiscovery, ServiceInstance, ServiceProvider, Strategy};
//! use zkit_recipes::Sessions;
//!
//! let sessions = Sessions::new(zkit::Client::builder(), "zk1:2181");
//! let discovery = ServiceDiscovery::<serde_json::Value>::new(sessions, "/services");
//! let me = ServiceInstance::new("echo", "10.0.0.5", 8080);
//! let _registration = discovery.register(me).await?;
//! let provider = ServiceProvider::new(discovery.cache("echo"), Strategy::RoundRobin);
//! if let Some(i) = provider.instance() {
//!     println!("call {}:{}", i.address.unwrap_or_default(), i.port.unwrap_or(0));
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use zkit::{Client, CreateMode, CreateOptions, Error, Version};

use crate::internal::held::Held;
use crate::internal::protected::{
    backoff, create_or_adopt, ensure_containers, join, new_guid, Claimed,
};
use crate::internal::set_if_changed;
use crate::sessions::Sessions;

/// Curator's `ServiceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ServiceType {
    /// Ephemeral: gone with its session (the default).
    #[default]
    Dynamic,
    /// Persistent.
    Static,
    /// Persistent.
    Permanent,
    /// Ephemeral sequential: the node name gets a sequence suffix.
    DynamicSequential,
}

/// One part of a [`UriSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UriPart {
    /// Literal text, or a variable name.
    pub value: String,
    /// Whether `value` names a variable (`scheme`, `address`, `port`, ...).
    pub variable: bool,
}

/// Curator's `UriSpec`: a URI template as parts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UriSpec {
    /// The parts, in order.
    pub parts: Vec<UriPart>,
}

/// A service instance, field for field (and in Curator's JSON order) as
/// Curator's `ServiceInstance`; `P` is the payload type (any serde type;
/// add a `@class` field yourself if Java consumers deserialise it into a
/// class). Unknown fields are ignored when reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServiceInstance<P> {
    /// Service name (also the parent node's name).
    pub name: String,
    /// Instance id (the node's name; default a random UUID).
    pub id: String,
    /// Host or IP.
    #[serde(default)]
    pub address: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<i32>,
    /// TLS port.
    #[serde(default)]
    pub ssl_port: Option<i32>,
    /// User payload.
    #[serde(default = "none")]
    pub payload: Option<P>,
    /// Registration time, ms since the epoch.
    #[serde(rename = "registrationTimeUTC", default)]
    pub registration_time_utc: i64,
    /// How the node is created.
    #[serde(default)]
    pub service_type: ServiceType,
    /// URI template.
    #[serde(default)]
    pub uri_spec: Option<UriSpec>,
    /// Curator's `enabled` flag; absent (compat mode, the default) means
    /// enabled. Consumers skip instances with `Some(false)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

fn none<P>() -> Option<P> {
    None
}

impl<P> ServiceInstance<P> {
    /// An instance of `name` at `address:port`, with a random id, no
    /// payload, registered now, `DYNAMIC`.
    pub fn new(name: impl Into<String>, address: impl Into<String>, port: u16) -> Self {
        let guid = new_guid();
        Self {
            name: name.into(),
            id: guid[3..guid.len() - 1].to_string(),
            address: Some(address.into()),
            port: Some(i32::from(port)),
            ssl_port: None,
            payload: None,
            registration_time_utc: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            service_type: ServiceType::Dynamic,
            uri_spec: None,
            enabled: None,
        }
    }

    /// With this id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// With this payload.
    pub fn payload(mut self, payload: P) -> Self {
        self.payload = Some(payload);
        self
    }

    /// With this service type.
    pub fn service_type(mut self, t: ServiceType) -> Self {
        self.service_type = t;
        self
    }

    /// Whether consumers should use it (`enabled` absent or true).
    pub fn is_enabled(&self) -> bool {
        self.enabled != Some(false)
    }
}

/// Registers, finds and watches service instances under a base path.
#[derive(Debug)]
pub struct ServiceDiscovery<P> {
    sessions: Sessions,
    base: String,
    _p: std::marker::PhantomData<fn() -> P>,
}

impl<P> ServiceDiscovery<P>
where
    P: Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync + 'static,
{
    /// Discovery under `base` (e.g. `/services`), with sessions from
    /// `sessions`.
    pub fn new(sessions: Sessions, base: impl Into<String>) -> Self {
        Self {
            sessions,
            base: base.into(),
            _p: std::marker::PhantomData,
        }
    }

    /// Registers `instance` and keeps it registered until the returned
    /// [`Registration`] is unregistered or dropped.
    ///
    /// Dropping the future before it resolves unregisters in the
    /// background (the registration may already have been made).
    ///
    /// # Errors
    /// The first registration's error (session, ACL, or
    /// [`Error::NodeExists`] when another live session owns the id, or a
    /// live [`Registration`] from this `ServiceDiscovery`'s sessions has it).
    pub async fn register(&self, instance: ServiceInstance<P>) -> Result<Registration<P>, Error> {
        let node = join(&join(&self.base, &instance.name), &instance.id);
        let held = Held::take(self.sessions.scope(), &node).ok_or(Error::NodeExists)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (first_tx, first_rx) = oneshot::channel();
        let current = Arc::new(Mutex::new(None));
        tokio::spawn(keep_registered(
            self.sessions.clone(),
            node,
            instance,
            rx,
            first_tx,
            current.clone(),
        ));
        // On a first failure the task has ended already.
        first_rx.await.map_err(|_| Error::Closed)??;
        Ok(Registration {
            tx,
            current,
            held: Some(held),
        })
    }

    /// The registered service names.
    ///
    /// # Errors
    /// Session errors.
    pub async fn query_names(&self) -> Result<Vec<String>, Error> {
        let client = self.sessions.client().await?;
        match client.get_children(&self.base).await {
            Ok((mut c, _)) => {
                c.sort();
                Ok(c)
            }
            Err(Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The instances of `name` (malformed nodes skipped, sorted by id).
    ///
    /// # Errors
    /// Session errors.
    pub async fn query_instances(&self, name: &str) -> Result<Vec<ServiceInstance<P>>, Error> {
        let client = self.sessions.client().await?;
        read_instances(&client, &join(&self.base, name)).await
    }

    /// A cache of `name`'s instances, kept current.
    pub fn cache(&self, name: &str) -> ServiceCache<P> {
        let (tx, rx) = watch::channel(Vec::new());
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(follow_service(
            self.sessions.clone(),
            join(&self.base, name),
            tx,
            ready_tx,
        ));
        ServiceCache { rx, ready, task }
    }
}

/// Reads the instances under `path`, setting no watch: a one-shot watch on
/// `path` would replace a cache's persistent recursive watch on it from the
/// same session on ZooKeeper before 3.9 (one watch mode per session and
/// path, ZOOKEEPER-4466), and the cache would stop seeing changes.
async fn read_instances<P: DeserializeOwned>(
    client: &Client,
    path: &str,
) -> Result<Vec<ServiceInstance<P>>, Error> {
    let children = match client.get_children(path).await {
        Ok((c, _)) => c,
        Err(Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(children.len());
    for c in children {
        let node = join(path, &c);
        match client.get_data(&node).await {
            Ok((data, _)) => match serde_json::from_slice::<ServiceInstance<P>>(&data) {
                Ok(i) => out.push(i),
                Err(e) => {
                    tracing::warn!(%node, error = %e, "skipping a malformed service instance")
                }
            },
            Err(Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// What a [`Registration`]'s task is asked to do.
enum Command<P> {
    Update(ServiceInstance<P>, oneshot::Sender<Result<(), Error>>),
    Unregister(oneshot::Sender<Result<(), Error>>),
    /// The handle was dropped after sending a delete itself: finish the
    /// job.
    Dropped,
}

/// The session and node a registration's task registered last.
type Current = Arc<Mutex<Option<(Client, String)>>>;

/// A live registration: keeps the instance registered (across session
/// expiry) until [`unregister`](Self::unregister) or drop.
///
/// Dropping it unregisters: the delete is sent at once (so registering the
/// same id again right away keeps the new registration) and finished in
/// the background.
#[derive(Debug)]
pub struct Registration<P> {
    // The task runs on its own; dropping this sender makes it unregister.
    tx: mpsc::UnboundedSender<Command<P>>,
    current: Current,
    /// The name, held while this handle lives; `unregister` takes it (and
    /// keeps it until its delete is done), so `None` means the task is
    /// deleting already.
    held: Option<Held>,
}

/// Dropping the registration unregisters: the delete of the instance node
/// is sent at once (registering the same id again right away keeps the new
/// registration) and finished in the background; no new session re-creates
/// it.
impl<P> Drop for Registration<P> {
    fn drop(&mut self) {
        if self.held.is_none() {
            return; // unregistered
        }
        let now = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((client, node)) = now {
            // Sent now, in call order, while this handle still holds the
            // name; the task makes sure of it (fenced by our czxid).
            drop(client.delete(&node, Version::Any));
        }
        let _ = self.tx.send(Command::Dropped);
    }
}

impl<P> std::fmt::Debug for Command<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Update(..) => "Update",
            Command::Unregister(_) => "Unregister",
            Command::Dropped => "Dropped",
        })
    }
}

impl<P: Send + 'static> Registration<P> {
    /// Replaces the registered data (same name and id).
    ///
    /// # Errors
    /// Session errors.
    pub async fn update(&self, instance: ServiceInstance<P>) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Update(instance, tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Removes the instance and stops keeping it registered.
    ///
    /// # Errors
    /// Session errors (an ephemeral node is gone with its session anyway).
    pub async fn unregister(mut self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.send(Command::Unregister(tx));
        // Held until the delete is done, so that registering the same id
        // meanwhile is refused rather than undone by it.
        let _held = self.held.take();
        drop(self);
        sent.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

/// The registration's task: (re-)register on every session, apply updates
/// and the final unregister in order (CURATOR-164).
async fn keep_registered<P: Serialize>(
    sessions: Sessions,
    node: String,
    mut instance: ServiceInstance<P>,
    mut commands: mpsc::UnboundedReceiver<Command<P>>,
    first: oneshot::Sender<Result<(), Error>>,
    current: Current,
) {
    use crate::internal::protected::delete_fenced;
    let mut first = Some(first);
    let parent = node.rsplit_once('/').map_or("/", |(p, _)| p).to_string();
    loop {
        let Ok(client) = sessions.client_retrying().await else {
            return; // closed
        };
        let mut states = client.state_stream();
        let registered = register_once(&sessions, &client, &parent, &node, &instance).await;
        if let Ok((path, _)) = &registered {
            // Before the first reply: a handle dropped at once finds it.
            *current.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((client.clone(), path.clone()));
        }
        if let Some(f) = first.take() {
            let outcome = registered.as_ref().map(drop).map_err(Clone::clone);
            let failed = outcome.is_err();
            let _ = f.send(outcome);
            if failed {
                return;
            }
        }
        // Our node's czxid fences every delete of ours: a newer node under
        // the name (registered again after this one was dropped) is kept.
        let (path, czxid) = match registered {
            Ok(registered) => registered,
            Err(e) => {
                tracing::warn!(%node, error = %e, "re-registration failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Serve commands until this session ends.
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Update(i, reply)) => {
                        instance = i;
                        let r = match serde_json::to_vec(&instance) {
                            Ok(data) => client.set_data(&path, &data, Version::Any).await.map(drop),
                            Err(e) => Err(Error::InvalidArgument(e.to_string())),
                        };
                        let _ = reply.send(r);
                    }
                    Some(Command::Unregister(reply)) => {
                        let r = delete_fenced(&client, &path, czxid).await;
                        let _ = reply.send(r);
                        return;
                    }
                    // Dropped (the handle sent a delete already; make
                    // sure), or the register call itself was cancelled.
                    Some(Command::Dropped) | None => {
                        let _ = delete_fenced(&client, &path, czxid).await;
                        return;
                    }
                },
                s = states.next_state() => {
                    if s.is_none_or(|s| s.is_terminal()) {
                        break; // session over: register again on a new one
                    }
                }
            }
        }
    }
}

/// Creates the instance node; adopts our own session's node; waits for a
/// dead session's node to go; refuses a live other session's. Returns the
/// node's path (with its sequence suffix for `DynamicSequential`) and
/// czxid.
async fn register_once<P: Serialize>(
    sessions: &Sessions,
    client: &Client,
    parent: &str,
    node: &str,
    instance: &ServiceInstance<P>,
) -> Result<(String, i64), Error> {
    let data = serde_json::to_vec(instance).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if instance.service_type == ServiceType::DynamicSequential {
        return register_sequential(client, parent, node, &data).await;
    }
    let mode = match instance.service_type {
        ServiceType::Dynamic => CreateMode::Ephemeral,
        _ => CreateMode::Persistent,
    };
    loop {
        match create_or_adopt(client, node, &data, mode).await? {
            Claimed::Ours(stat) => return Ok((node.to_string(), stat.czxid)),
            Claimed::Taken(s) if sessions.was_ours(s.ephemeral_owner) => {
                // Left by our own expired session, which the server has not
                // expired yet: it goes within that session's timeout. Wait
                // for it (never delete it: CURATOR-164).
                let (s, w) = client.exists_and_watch(node).await?;
                if s.is_some() {
                    let _ = tokio::time::timeout(Duration::from_secs(60), w.changed()).await;
                }
            }
            // Another live session's instance: never taken over.
            Claimed::Taken(_) => return Err(Error::NodeExists),
        }
    }
}

/// `DynamicSequential`: an ephemeral sequential `<id><seq>`. After a lost
/// reply, a node of ours carrying the id is adopted (the id is unique
/// per instance, so it plays the part of a protected-mode GUID); extra
/// ones from earlier attempts are deleted.
async fn register_sequential(
    client: &Client,
    parent: &str,
    prefix: &str,
    data: &[u8],
) -> Result<(String, i64), Error> {
    let session = client.session_id().0;
    let id = prefix.rsplit('/').next().unwrap_or_default();
    let mut delays = backoff();
    let mut unsure = false;
    loop {
        if unsure {
            // Did an earlier attempt create it?
            let mine = match ours_by_prefix(client, parent, id, session).await {
                Ok(mine) => mine,
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some((keep, extra)) = mine.split_first() {
                for path in extra {
                    crate::internal::protected::delete_in_background(client.clone(), path.clone());
                }
                match client.set_data(keep, data, Version::Any).await {
                    Ok(stat) => return Ok((keep.clone(), stat.czxid)),
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        match client
            .create(
                prefix,
                data,
                &CreateOptions::new(CreateMode::EphemeralSequential),
            )
            .await
        {
            Ok((path, stat)) => return Ok((path, stat.czxid)),
            Err(Error::NoNode) => ensure_containers(client, parent).await?,
            Err(e) if e.is_retryable() => {
                unsure = true;
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Our session's `<id><10 digits>` children of `parent`, oldest first.
async fn ours_by_prefix(
    client: &Client,
    parent: &str,
    id: &str,
    session: i64,
) -> Result<Vec<String>, Error> {
    let (mut children, _) = match client.get_children(parent).await {
        Ok(c) => c,
        Err(Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    children.retain(|c| {
        c.strip_prefix(id)
            .is_some_and(|seq| seq.len() == 10 && seq.bytes().all(|b| b.is_ascii_digit()))
    });
    children.sort();
    let mut mine = Vec::new();
    for c in children {
        let path = join(parent, &c);
        if let Some(s) = client.exists(&path).await? {
            if s.ephemeral_owner == session {
                mine.push(path);
            }
        }
    }
    Ok(mine)
}

/// A service's instances, kept current by watches (across reconnects and
/// new sessions).
#[derive(Debug)]
pub struct ServiceCache<P> {
    rx: watch::Receiver<Vec<ServiceInstance<P>>>,
    ready: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl<P: Clone> ServiceCache<P> {
    /// Waits until the service's instances have been read once (as
    /// Curator's `ServiceCache.start()`): [`instances`](Self::instances) is
    /// then the registry's list, not merely empty because nothing was read.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn initialized(&self) {
        let mut r = self.ready.clone();
        let _ = r.wait_for(|ok| *ok).await;
    }

    /// The instances now.
    pub fn instances(&self) -> Vec<ServiceInstance<P>> {
        self.rx.borrow().clone()
    }

    /// Waits for the next change.
    ///
    /// # Errors
    /// [`Error::Closed`] when the cache stopped.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn changed(&mut self) -> Result<(), Error> {
        self.rx.changed().await.map_err(|_| Error::Closed)
    }

    /// A receiver of the instance list.
    pub fn receiver(&self) -> watch::Receiver<Vec<ServiceInstance<P>>> {
        self.rx.clone()
    }
}

/// Dropping the cache stops its background task (and its watch); receivers
/// from [`receiver`](ServiceCache::receiver) keep the last list and see the
/// channel closed.
impl<P> Drop for ServiceCache<P> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow_service<P: DeserializeOwned + PartialEq>(
    sessions: Sessions,
    path: String,
    tx: watch::Sender<Vec<ServiceInstance<P>>>,
    ready: watch::Sender<bool>,
) {
    loop {
        let Ok(client) = sessions.client_retrying().await else {
            return; // closed
        };
        let mut states = client.state_stream();
        // Joins, leaves and data changes of every instance: one persistent
        // recursive watch (kept across reconnects by the client); after a
        // reconnect we read again, as missed events are not replayed.
        let mut events = match client
            .add_watch(&path, zkit::AddWatchMode::PersistentRecursive)
            .await
        {
            Ok(w) => w,
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => continue,
        };
        let mut delays = backoff();
        let mut disconnected = false;
        loop {
            match read_instances::<P>(&client, &path).await {
                Ok(list) => {
                    set_if_changed(&tx, list);
                    ready.send_if_modified(|r| !std::mem::replace(r, true));
                }
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(_) => break,
            }
            let again = loop {
                tokio::select! {
                    ev = events.changed() => break ev.is_ok(),
                    s = states.next_state() => match s {
                        Some(zkit::SessionState::Disconnected | zkit::SessionState::Connecting) => disconnected = true,
                        Some(zkit::SessionState::Connected | zkit::SessionState::ConnectedReadOnly) => {
                            if disconnected {
                                disconnected = false;
                                break true;
                            }
                        }
                        _ => break false,
                    },
                }
            };
            if !again {
                break; // session over: a new one
            }
        }
    }
}

/// How a [`ServiceProvider`] picks an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// In turn (Curator's default).
    RoundRobin,
    /// At random.
    Random,
    /// The same one while it is there, else a random one.
    Sticky,
}

/// Client-side load balancing over a [`ServiceCache`].
#[derive(Debug)]
pub struct ServiceProvider<P> {
    cache: ServiceCache<P>,
    strategy: Strategy,
    next: AtomicUsize,
    sticky: Mutex<Option<String>>,
}

impl<P: Clone> ServiceProvider<P> {
    /// A provider over `cache` with `strategy`.
    pub fn new(cache: ServiceCache<P>, strategy: Strategy) -> Self {
        Self {
            cache,
            strategy,
            next: AtomicUsize::new(0),
            sticky: Mutex::new(None),
        }
    }

    /// The cache behind it.
    pub fn cache(&mut self) -> &mut ServiceCache<P> {
        &mut self.cache
    }

    /// An enabled instance, or `None` when there is none.
    pub fn instance(&self) -> Option<ServiceInstance<P>> {
        let all: Vec<ServiceInstance<P>> = self
            .cache
            .instances()
            .into_iter()
            .filter(ServiceInstance::is_enabled)
            .collect();
        if all.is_empty() {
            return None;
        }
        let pick = match self.strategy {
            Strategy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % all.len(),
            Strategy::Random => crate::random::below(all.len()),
            Strategy::Sticky => {
                let mut sticky = self
                    .sticky
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match sticky
                    .as_ref()
                    .and_then(|id| all.iter().position(|i| &i.id == id))
                {
                    Some(i) => i,
                    None => {
                        let i = crate::random::below(all.len());
                        *sticky = Some(all[i].id.clone());
                        i
                    }
                }
            }
        };
        Some(all[pick].clone())
    }
}
