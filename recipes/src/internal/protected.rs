//! Protected creation of sequential ephemerals (Curator's protected mode,
//! RECIPES.md §4.1), container parents (§4.2) and background deletes (§4.3).
//!
//! A protected node is named `_c_<uuid>-<prefix><seq>`. When a create's
//! reply is lost (ConnectionLoss), the node may or may not exist; the next
//! attempt first lists the parent for our GUID and adopts a node found
//! there only if its `ephemeralOwner` is our session. A node left behind —
//! found under another session, or created by an attempt that was given up
//! or cancelled — is deleted in the background. A GUID is used for one
//! creation only.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use zkit::{Client, CreateMode, CreateOptions, Error, Stat, Version};

/// Back-off between retries of an operation that failed with
/// ConnectionLoss: 10 ms doubling to 1 s, forever (the session's end stops
/// it with SessionExpired or Closed).
pub(crate) fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .with_jitter_seed(crate::random::u64())
        .without_max_times()
        .build()
}

/// A fresh random GUID prefix, `_c_<uuid v4 canonical>-`.
pub(crate) fn new_guid() -> String {
    let mut b = [0u8; 16];
    crate::random::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "_c_{}-{}-{}-{}-{}-",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `parent/child`.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// The last segment of a path.
pub(crate) fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Creates `path` and its missing ancestors as containers (empty data),
/// tolerating concurrent creators (`ZKPaths.mkdirs` with containers).
pub(crate) async fn ensure_containers(client: &Client, path: &str) -> Result<(), Error> {
    ensure_parents(client, path, CreateMode::Container).await
}

/// Creates the parent of `path` and its missing ancestors as containers
/// (nothing to do for a top-level `path`).
pub(crate) async fn ensure_parent_containers(client: &Client, path: &str) -> Result<(), Error> {
    match path.rsplit_once('/') {
        Some((parent, _)) if !parent.is_empty() => ensure_containers(client, parent).await,
        _ => Ok(()),
    }
}

/// Creates `path` and its missing ancestors with `mode` (empty data),
/// tolerating concurrent creators and retrying through connection losses.
pub(crate) async fn ensure_parents(
    client: &Client,
    path: &str,
    mode: CreateMode,
) -> Result<(), Error> {
    let mut at = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        at.push('/');
        at.push_str(seg);
        let mut delays = backoff();
        loop {
            match client.create(&at, b"", &CreateOptions::new(mode)).await {
                Ok(_) | Err(Error::NodeExists) => break,
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// What [`create_or_adopt`] ended with.
pub(crate) enum Claimed {
    /// Created, or found ours and given `data`: its Stat.
    Ours(Stat),
    /// Another session's node under the name: left alone.
    Taken(Stat),
}

/// Creates `node` (a caller-chosen name) with `data` in `mode`, its
/// parents as containers. When the name is taken, a node of this session
/// (a lost create reply, an earlier join) — or any node, for a persistent
/// `mode` — is adopted by writing `data` into it. Retries through
/// connection losses.
pub(crate) async fn create_or_adopt(
    client: &Client,
    node: &str,
    data: &[u8],
    mode: CreateMode,
) -> Result<Claimed, Error> {
    let session = client.session_id().0;
    let mut delays = backoff();
    loop {
        match client.create(node, data, &CreateOptions::new(mode)).await {
            Ok((_, stat)) => return Ok(Claimed::Ours(stat)),
            Err(Error::NoNode) => ensure_parent_containers(client, node).await?,
            Err(e) if e == Error::NodeExists || e.is_retryable() => {
                if e.is_retryable() {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                match client.exists(node).await {
                    Ok(Some(s))
                        if s.ephemeral_owner == session || mode == CreateMode::Persistent =>
                    {
                        match client.set_data(node, data, Version::Any).await {
                            Ok(stat) => return Ok(Claimed::Ours(stat)),
                            // Gone or unknown meanwhile: create again.
                            Err(e) if e == Error::NoNode || e.is_retryable() => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(Some(s)) => return Ok(Claimed::Taken(s)),
                    Ok(None) => {}
                    Err(e) if e.is_retryable() => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A node created by [`create_protected`].
#[derive(Debug, Clone)]
pub(crate) struct Created {
    /// Full path.
    pub(crate) path: String,
    /// Its Stat at creation (czxid = fencing token).
    pub(crate) stat: Stat,
}

/// After a create whose reply was lost and which we then made again: on an
/// ensemble the first request can still apply after we reconnected and
/// looked for it (it was on its way to the leader), leaving a second node
/// of ours under the same GUID that would sit in the line until our session
/// ends. Looks twice, a little later, and deletes any such node of our
/// session other than `keep`.
fn sweep_late_duplicates(client: &Client, parent: &str, guid: &str, keep: &str, session: i64) {
    let (client, parent, guid, keep) = (
        client.clone(),
        parent.to_string(),
        guid.to_string(),
        keep.to_string(),
    );
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        for wait in [Duration::from_secs(1), Duration::from_secs(5)] {
            tokio::time::sleep(wait).await;
            let Ok(Some((path, stat))) = find(&client, &parent, &guid, Some(&keep)).await else {
                continue;
            };
            if stat.ephemeral_owner == session {
                tracing::info!(%path, "deleting our late-created duplicate node");
                let _ = client.delete(&path, zkit::Version::Any).await;
            }
        }
    });
}

/// Finds the child of `parent` carrying `guid` (other than `except`), with
/// its Stat.
async fn find(
    client: &Client,
    parent: &str,
    guid: &str,
    except: Option<&str>,
) -> Result<Option<(String, Stat)>, Error> {
    let children = match client.get_children(parent).await {
        Ok((c, _)) => c,
        Err(Error::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    for c in children.into_iter().filter(|c| c.starts_with(guid)) {
        let path = join(parent, &c);
        if except == Some(path.as_str()) {
            continue;
        }
        if let Some(stat) = client.exists(&path).await? {
            return Ok(Some((path, stat)));
        }
    }
    Ok(None)
}

/// Deletes whatever node carries `guid` under `parent`, retrying through
/// connection losses until it is gone or the session ended.
async fn find_and_delete(client: Client, parent: String, guid: String) {
    let mut delays = backoff();
    loop {
        let r = match find(&client, &parent, &guid, None).await {
            Ok(Some((path, _))) => client.delete(&path, Version::Any).await,
            Ok(None) => return,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) | Err(Error::NoNode) => return,
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(e) => {
                tracing::debug!(%parent, %guid, error = %e, "orphan cleanup ends");
                return;
            }
        }
    }
}

/// Deletes `path` in the background (guaranteed delete): retries through
/// connection losses; stops when the node or the session is gone.
///
/// The first delete is sent before this returns, so it reaches the server
/// ahead of anything this client sends later (a re-join or re-registration
/// under the same name right after a drop is not undone by it). Retries
/// are fenced like [`delete_retrying`]'s. Without a tokio runtime the
/// first delete is still sent, but nothing retries it.
pub(crate) fn delete_in_background(client: Client, path: String) {
    let delete = delete_retrying(&client, &path);
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::debug!(%path, "no tokio runtime: the delete is sent but not retried");
        return;
    };
    rt.spawn(async move {
        if let Err(e) = delete.await {
            tracing::debug!(%path, error = %e, "background delete ends");
        }
    });
}

/// Deletes `path`, retrying through connection losses. `Ok` also when it
/// was already gone; `Err` when the session ended first.
///
/// The first attempt is sent at once (call order on the wire). After a
/// ConnectionLoss the outcome is unknown and the name may meanwhile belong
/// to a newer node (a re-join by this client, another session's claim), so
/// a retry deletes only a node that existed when the delete was decided:
/// its czxid must not exceed the last zxid this client had seen then, and
/// it is deleted at the version just read.
///
/// Not an `async fn`: the first delete goes out when this is called, not
/// when the returned future is first polled.
pub(crate) fn delete_retrying(
    client: &Client,
    path: &str,
) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'static {
    let fence = client.last_zxid();
    let first = client.delete(path, Version::Any);
    let (client, path) = (client.clone(), path.to_string());
    async move {
        match first.await {
            Ok(()) | Err(Error::NoNode) => Ok(()),
            Err(e) if e.is_retryable() => delete_fenced(&client, &path, fence).await,
            Err(e) => Err(e),
        }
    }
}

/// The retry half of [`delete_retrying`]: deletes `path` only while it is
/// an incarnation created at or before zxid `fence`.
pub(crate) async fn delete_fenced(client: &Client, path: &str, fence: i64) -> Result<(), Error> {
    let mut delays = backoff();
    loop {
        let r = match client.exists(path).await {
            Ok(None) => return Ok(()),
            Ok(Some(stat)) if stat.czxid > fence => {
                tracing::debug!(%path, czxid = stat.czxid, fence, "a newer node has the name: kept");
                return Ok(());
            }
            Ok(Some(stat)) => client.delete(path, Version::Exact(stat.version)).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) | Err(Error::NoNode) => return Ok(()),
            // Changed between our read and our delete: look again.
            Err(Error::BadVersion) => {}
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Deletes a node of ours (a contender, a lease, a barrier member) in the
/// background when dropped, unless disarmed: for work that did not
/// complete (error, cancellation).
pub(crate) struct NodeGuard {
    pub(crate) client: Client,
    pub(crate) path: Option<String>,
}

impl NodeGuard {
    /// Keeps the node: it is the caller's now.
    pub(crate) fn disarm(&mut self) -> String {
        self.path.take().unwrap_or_default()
    }

    /// Deletes the node now.
    pub(crate) async fn release(&mut self) -> Result<(), Error> {
        match self.path.take() {
            Some(p) => delete_retrying(&self.client, &p).await,
            None => Ok(()),
        }
    }
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            delete_in_background(self.client.clone(), p);
        }
    }
}

/// Deletes the node of a GUID whose creation did not complete (error,
/// cancellation), unless disarmed.
struct OrphanGuard {
    client: Client,
    parent: String,
    guid: String,
    armed: bool,
}

impl Drop for OrphanGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(find_and_delete(
            self.client.clone(),
            std::mem::take(&mut self.parent),
            std::mem::take(&mut self.guid),
        ));
    }
}

/// Creates `parent/_c_<guid>-<prefix><seq>` (EPHEMERAL_SEQUENTIAL, `data`),
/// creating `parent` and its ancestors as containers when missing (also when
/// they are reaped between attempts), and resolving lost replies as
/// described in the module docs.
///
/// # Cancel safety
/// Dropping the future leaves no node behind: whatever our GUID created is
/// found and deleted in the background.
pub(crate) async fn create_protected(
    client: &Client,
    parent: &str,
    prefix: &str,
    data: &[u8],
) -> Result<Created, Error> {
    create_protected_under(client, parent, CreateMode::Container, prefix, data).await
}

/// [`create_protected`] with missing parents created in `parent_mode`
/// (persistent where a reaped parent would restart the sequence).
pub(crate) async fn create_protected_under(
    client: &Client,
    parent: &str,
    parent_mode: CreateMode,
    prefix: &str,
    data: &[u8],
) -> Result<Created, Error> {
    let session = client.session_id().0;
    let mut guard = OrphanGuard {
        client: client.clone(),
        parent: parent.to_string(),
        guid: new_guid(),
        armed: false,
    };
    let mut delays = backoff();
    let mut uncertain = false;
    // Whether a create of ours went out with its outcome unknown.
    let mut sent_before = false;
    loop {
        if uncertain {
            match find(client, parent, &guard.guid, None).await {
                Ok(Some((path, stat))) if stat.ephemeral_owner == session => {
                    tracing::debug!(%path, "adopted our node after a lost create reply");
                    guard.armed = false;
                    return Ok(Created { path, stat });
                }
                Ok(Some((path, _))) => {
                    // Another session's node with our GUID (CURATOR-498):
                    // remove it and start over under a new GUID.
                    delete_in_background(client.clone(), path);
                    guard.armed = false;
                    guard.guid = new_guid();
                }
                Ok(None) => {}
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            uncertain = false;
        }
        let path = join(parent, &format!("{}{prefix}", guard.guid));
        guard.armed = true;
        match client
            .create(
                &path,
                data,
                &CreateOptions::new(CreateMode::EphemeralSequential),
            )
            .await
        {
            Ok((path, stat)) => {
                guard.armed = false;
                if sent_before {
                    sweep_late_duplicates(client, parent, &guard.guid, &path, session);
                }
                return Ok(Created { path, stat });
            }
            Err(Error::NoNode) => {
                guard.armed = false;
                ensure_parents(client, parent, parent_mode).await?;
            }
            Err(e) if e.is_retryable() => {
                uncertain = true;
                sent_before = true;
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(e) => {
                guard.armed = false;
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_canonical_v4_and_distinct() {
        let a = new_guid();
        let b = new_guid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 36 + 1);
        assert!(a.starts_with("_c_") && a.ends_with('-'));
        let uuid = &a[3..39];
        assert_eq!(uuid.as_bytes()[14], b'4');
        assert!(matches!(uuid.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        assert_eq!(uuid.matches('-').count(), 4);
        assert!(uuid.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()));
    }

    async fn bundled() -> (zkit_server::RunningServer, Client) {
        let server = zkit_server::Server::builder()
            .listen("127.0.0.1:0".parse().expect("address"))
            .start()
            .await
            .expect("bundled server");
        let client = Client::connect(&server.connect_string())
            .await
            .expect("connect");
        (server, client)
    }

    #[tokio::test]
    async fn a_fenced_retry_keeps_a_newer_node_under_the_same_name() {
        let (_server, zk) = bundled().await;
        let opts = CreateOptions::new(CreateMode::Persistent);
        let before = zk.last_zxid();
        zk.create("/n", b"", &opts).await.unwrap();
        // Decided before /n existed: /n is a newer incarnation, kept.
        delete_fenced(&zk, "/n", before).await.unwrap();
        assert!(zk.exists("/n").await.unwrap().is_some());
        // Decided after: deleted, even when modified since.
        let after = zk.last_zxid();
        zk.set_data("/n", b"x", Version::Any).await.unwrap();
        delete_fenced(&zk, "/n", after).await.unwrap();
        assert!(zk.exists("/n").await.unwrap().is_none());
        // Already gone is fine.
        delete_fenced(&zk, "/n", after).await.unwrap();
    }

    #[tokio::test]
    async fn a_background_delete_goes_out_before_a_later_create() {
        let (_server, zk) = bundled().await;
        let opts = CreateOptions::new(CreateMode::Ephemeral);
        for _ in 0..50 {
            zk.create("/member", b"", &opts).await.unwrap();
            delete_in_background(zk.clone(), "/member".into());
            // Leave and re-join at once: the delete is already on the wire.
            zk.create("/member", b"again", &opts).await.unwrap();
            zk.sync("/").await.unwrap();
            tokio::task::yield_now().await;
            let (data, _) = zk.get_data("/member").await.unwrap();
            assert_eq!(&data[..], b"again");
            zk.delete("/member", Version::Any).await.unwrap();
        }
    }

    #[test]
    fn paths_join_and_split() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/locks/x", "a"), "/locks/x/a");
        assert_eq!(name_of("/locks/x/a"), "a");
    }
}
