//! Claims on queue items, shared by [`Queue`](crate::Queue) and
//! [`DelayQueue`](crate::DelayQueue): an ephemeral `<claims>/<item name>`
//! holding a random token, created on a task of its own, completed in one
//! transaction with the item's delete, released by deleting it.
//!
//! **Cancellation.** The create runs on a spawned task ([`detached`]): a
//! take dropped while the create is in flight does not abandon its
//! outcome. A claim nobody receives is an [`ItemClaim`] dropped (in the
//! task, or in the channel with its receiver), and its `Drop` deletes the
//! node in the background, so no orphan claim holds an item until the
//! session ends.
//!
//! **The token.** After a lost create reply the claim found under the name
//! may be ours, another session's, or another handle's of the *same*
//! session (two consumers sharing a client). The owner tells sessions
//! apart; the token, the claim's data, tells handles apart. It also tells,
//! after a lost completion reply, whether the claim still there is ours
//! (the transaction did not apply) or a newer one under the same name.

use std::future::Future;
use std::time::Duration;

use zkit::{Client, CreateMode, CreateOptions, Error, Version};

use crate::internal::protected::{
    backoff, delete_in_background, delete_retrying, ensure_containers, join,
};

/// A claim node of ours on a queue item; deleted in the background when
/// dropped unless completed or released.
#[derive(Debug)]
pub(crate) struct ItemClaim {
    client: Client,
    path: String,
    /// The session that created it (its ephemeral owner).
    session: i64,
    /// The claim's data (see the module docs).
    token: String,
    /// Nothing (left) to delete.
    done: bool,
}

impl ItemClaim {
    /// Claims the item `name` with `<claims>/<name>`, retrying through
    /// connection losses; `None` when another consumer has it. `claims` and
    /// its missing ancestors are created as containers.
    ///
    /// # Cancel safety
    /// The create runs on a task of its own: dropped before it resolves,
    /// the claim, if made, is deleted in the background once the create's
    /// outcome is known.
    pub(crate) async fn create(
        client: &Client,
        claims: &str,
        name: &str,
    ) -> Result<Option<Self>, Error> {
        let mut token = [0u8; 16];
        crate::random::fill(&mut token);
        let claim = Self {
            client: client.clone(),
            path: join(claims, name),
            session: client.session_id().0,
            token: token.iter().map(|b| format!("{b:02x}")).collect(),
            done: true, // nothing to delete yet
        };
        detached(claim.create_node(claims.to_string())).await
    }

    async fn create_node(mut self, claims: String) -> Result<Option<Self>, Error> {
        let client = self.client.clone();
        let mut delays = backoff();
        // Whether a create of ours went out with its outcome unknown.
        let mut sent_before = false;
        loop {
            let opts = CreateOptions::new(CreateMode::Ephemeral);
            match client
                .create(&self.path, self.token.as_bytes(), &opts)
                .await
            {
                Ok(_) => break,
                Err(Error::NoNode) => {
                    ensure_containers(&client, &claims).await?;
                    continue;
                }
                Err(Error::NodeExists) if !sent_before => return Ok(None),
                // Someone's claim, or ours: an earlier create of ours whose
                // reply was lost can apply after we reconnected and looked
                // (on an ensemble).
                Err(Error::NodeExists) => {}
                Err(e) if e.is_retryable() => {
                    sent_before = true;
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(e),
            }
            match self.is_ours().await {
                Ok(Some(true)) => break,
                Ok(Some(false)) => return Ok(None),
                Ok(None) => {} // not (or no longer) there: create it again
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e),
            }
        }
        self.done = false;
        Ok(Some(self))
    }

    /// The client (and session) the claim belongs to.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the claim node is this handle's; `None` when it is gone.
    async fn is_ours(&self) -> Result<Option<bool>, Error> {
        match self.client.get_data(&self.path).await {
            Ok((data, stat)) => Ok(Some(
                stat.ephemeral_owner == self.session && data[..] == *self.token.as_bytes(),
            )),
            Err(Error::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes `item` and the claim in one transaction fenced on the claim
    /// (it must still exist). A lost reply is resolved here: while our
    /// session lives only this transaction deletes our claim, so it is sent
    /// again while the claim is still ours, and counts as applied once the
    /// claim is gone (or another's). `Ok` means the item is gone for good.
    ///
    /// # Errors
    /// [`Error::Fenced`] when the claim was lost; [`Error::MultiFailed`]
    /// with [`Error::NoNode`] when the item was removed by someone ignoring
    /// claims; session errors when the session ended before the outcome was
    /// known.
    ///
    /// # Cancel safety
    /// Dropped before it resolves, the claim stays armed: its `Drop`
    /// deletes it in the background, after anything already sent.
    pub(crate) async fn complete(&mut self, item: &str) -> Result<(), Error> {
        let mut delays = backoff();
        // Whether a transaction of ours went out with its outcome unknown.
        let mut sent_before = false;
        loop {
            let sent = self
                .client
                .multi()
                .fence(&self.path, Version::Exact(0))
                .delete(item, Version::Any)
                .delete(&self.path, Version::Exact(0))
                .commit()
                .await;
            match sent {
                Ok(_) => {
                    self.done = true;
                    return Ok(());
                }
                // Our claim is gone while our session lives: an earlier send
                // of ours applied late (on an ensemble it can land after we
                // reconnected and saw the claim still there).
                Err(e) if sent_before && e.is_fenced() => {
                    self.done = true;
                    tracing::debug!(%item, "completed (an earlier send applied late)");
                    return Ok(());
                }
                Err(e) if e.is_retryable() => sent_before = true,
                Err(e) => return Err(e),
            }
            // Outcome unknown: our claim tells.
            loop {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                match self.is_ours().await {
                    Ok(Some(true)) => break, // did not apply: send again
                    // Gone, or a newer claim under the name (another
                    // consumer can briefly claim the name of an item already
                    // gone, from an older listing): ours was deleted, by
                    // our transaction, which took the item with it.
                    Ok(_) => {
                        self.done = true;
                        tracing::debug!(%item, "completed (reply lost)");
                        return Ok(());
                    }
                    Err(e) if e.is_retryable() => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Deletes the claim now, giving the item back.
    ///
    /// # Errors
    /// Session errors.
    pub(crate) async fn release(&mut self) -> Result<(), Error> {
        self.done = true;
        crate::internal::metrics::queue_redelivery();
        delete_retrying(&self.client, &self.path).await
    }
}

impl Drop for ItemClaim {
    fn drop(&mut self) {
        if !self.done {
            crate::internal::metrics::queue_redelivery();
            delete_in_background(self.client.clone(), self.path.clone());
        }
    }
}

/// Runs `work` on a task of its own and hands its outcome over. A caller
/// that stops waiting does not stop the work; an outcome nobody receives
/// is dropped, so outcomes that own something (a claim node, an item to
/// put back) clean up in their `Drop`, wherever they are dropped: in the
/// task, or inside the channel with the receiver.
pub(crate) async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return work.await;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.await.unwrap_or(Err(Error::Closed))
}
