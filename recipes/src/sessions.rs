//! [`Sessions`]: where long-lived recipes get a session, and a new one after
//! the old one expired.
//!
//! A zkit [`Client`]'s session expiry is final. A subscription or a service
//! registration that must outlive it takes a `Sessions`: it hands out the
//! current client while its session lives and builds a fresh one (same
//! builder settings, same connect string) once it has expired or closed.

use std::sync::Arc;
use std::time::Duration;

use zkit::{Client, ClientBuilder, Error};

use crate::internal::protected::backoff;

/// A source of live sessions (see the module docs). Cheap to clone: clones
/// share the current client.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    builder: ClientBuilder,
    connect: String,
    current: tokio::sync::Mutex<Option<Client>>,
    /// Every session id handed out so far.
    past: std::sync::Mutex<Vec<i64>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("connect", &self.inner.connect)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions built with `builder` against `connect` (the first one on
    /// first use).
    pub fn new(builder: ClientBuilder, connect: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                builder,
                connect: connect.into(),
                current: tokio::sync::Mutex::new(None),
                past: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    /// Starts from an existing client; later sessions come from `builder`
    /// and `connect`.
    pub fn with_client(client: Client, builder: ClientBuilder, connect: impl Into<String>) -> Self {
        let s = Self::new(builder, connect);
        s.remember(client.session_id().0);
        if let Ok(mut cur) = s.inner.current.try_lock() {
            *cur = Some(client);
        }
        s
    }

    /// Identifies this source of sessions (shared by its clones) while it
    /// lives.
    pub(crate) fn scope(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// The live client: the current one, or a new session when it ended.
    ///
    /// # Errors
    /// The connect error of a new session (e.g. no server reachable).
    pub async fn client(&self) -> Result<Client, Error> {
        let mut cur = self.inner.current.lock().await;
        if let Some(c) = cur.as_ref() {
            if !c.state().is_terminal() {
                return Ok(c.clone());
            }
        }
        let c = self
            .inner
            .builder
            .clone()
            .connect(&self.inner.connect)
            .await?;
        tracing::info!(session = %c.session_id(), "new session for a long-lived recipe");
        self.remember(c.session_id().0);
        *cur = Some(c.clone());
        Ok(c)
    }

    fn remember(&self, id: i64) {
        self.inner
            .past
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id);
    }

    /// Whether `session` is one this source handed out (e.g. the owner of
    /// an ephemeral node left by our expired session).
    pub fn was_ours(&self, session: i64) -> bool {
        self.inner
            .past
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&session)
    }

    /// Like [`client`](Self::client), retrying a failed connect with
    /// back-off until it succeeds.
    pub(crate) async fn client_retrying(&self) -> Client {
        let mut delays = backoff();
        loop {
            match self.client().await {
                Ok(c) => return c,
                Err(e) => {
                    tracing::debug!(error = %e, "no session yet");
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
            }
        }
    }
}
