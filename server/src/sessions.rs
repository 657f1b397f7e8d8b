//! Session bookkeeping: timeout negotiation, session ids and passwords, and
//! tick-bucket expiry, as ZooKeeper 3.8's `SessionTrackerImpl`,
//! `ExpiryQueue` and `ZooKeeperServer` (`processConnectRequest`,
//! `generatePasswd`, `checkPasswd`, `reopenSession`) do it (PROTOCOL.md §4.2,
//! §4.10).
//!
//! Pure and synchronous: the caller passes the time in, as milliseconds on a
//! monotonic clock of its choosing (ZooKeeper uses `Time.currentElapsedTime()`,
//! i.e. `System.nanoTime() / 1_000_000`, for both expiry and the initial
//! session id).
//!
//! Lifecycle, as the network layer is expected to drive it:
//!
//! 1. ConnectRequest with session id 0: [`SessionConfig::negotiate`] the
//!    timeout, [`SessionTracker::create_session`], reply with the id, the
//!    negotiated timeout and [`generate_password`].
//! 2. ConnectRequest with a session id: negotiate again, then
//!    [`SessionTracker::reopen`]; on `false` reply with the zeroed
//!    ConnectResponse (timeout 0, id 0, 16 zero bytes) and close.
//! 3. Every packet: [`SessionTracker::touch`].
//! 4. Periodically (at [`SessionTracker::next_expiration`]):
//!    [`SessionTracker::expired`], then for each id remove its ephemerals and
//!    watches and [`SessionTracker::close`] it.
//! 5. closeSession request: [`SessionTracker::set_closing`], clean up, then
//!    [`SessionTracker::close`].

use std::collections::{BTreeMap, BTreeSet};

use zkit_proto::codes::err;

use crate::{ErrorCode, ServerResult};

/// A session id (`long` on the wire).
pub type ServerSessionId = i64;

/// `ZooKeeperServer.superSecret`: XORed into the session id to seed the
/// password generator.
pub const SUPER_SECRET: i64 = 0xB341_5C00;

/// Length of a session password.
pub const PASSWORD_LEN: usize = 16;

/// `EphemeralType.CONTAINER_EPHEMERAL_OWNER`: never handed out as a session id.
const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;

/// Session settings of a server (`tickTime`, `minSessionTimeout`,
/// `maxSessionTimeout`, `myid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// `tickTime` in ms: the expiry bucket width. Must be positive.
    pub tick_time: i32,
    /// Smallest negotiated timeout in ms (ZooKeeper default `2 * tickTime`).
    pub min_session_timeout: i32,
    /// Largest negotiated timeout in ms (ZooKeeper default `20 * tickTime`).
    pub max_session_timeout: i32,
    /// Server id, the top byte of every session id (a standalone
    /// `ZooKeeperServer` uses `createSessionTrackerServerId`, 1).
    pub server_id: i64,
}

impl SessionConfig {
    /// Settings for `tick_time` ms with ZooKeeper's defaults: timeouts in
    /// `[2, 20]` ticks, server id 1.
    pub fn new(tick_time: i32) -> Self {
        Self {
            tick_time,
            min_session_timeout: tick_time.saturating_mul(2),
            max_session_timeout: tick_time.saturating_mul(20),
            server_id: 1,
        }
    }

    /// Clamps a requested timeout like `processConnectRequest`: first raised
    /// to the minimum, then lowered to the maximum (so the maximum wins if
    /// the two are misconfigured).
    pub fn negotiate(&self, requested: i32) -> i32 {
        let mut timeout = requested;
        if timeout < self.min_session_timeout {
            timeout = self.min_session_timeout;
        }
        if timeout > self.max_session_timeout {
            timeout = self.max_session_timeout;
        }
        timeout
    }
}

impl Default for SessionConfig {
    /// `tickTime` 2000 (the sample `zoo.cfg`, and the server the
    /// observations in PROTOCOL.md §4.17 were made on).
    fn default() -> Self {
        Self::new(2000)
    }
}

/// The first session id of a tracker (`SessionTrackerImpl.initializeNextSessionId`):
/// `(serverId << 56) | ((time << 24) >>> 8)`, i.e. the server id in the top
/// byte, the low 40 bits of the time in ms in the next five, and two zero
/// bytes; bumped by one if that is `Long.MIN_VALUE` (the container owner
/// marker).
pub fn initial_session_id(server_id: i64, now_ms: u64) -> ServerSessionId {
    let time_bits = ((now_ms << 24) >> 8) as i64;
    let mut id = time_bits | (server_id << 56);
    if id == CONTAINER_EPHEMERAL_OWNER {
        id += 1;
    }
    id
}

/// The password of a session (`ZooKeeperServer.generatePasswd`): 16 bytes of
/// `new java.util.Random(sessionId ^ 0xB3415C00).nextBytes(...)`.
pub fn generate_password(id: ServerSessionId) -> [u8; PASSWORD_LEN] {
    let mut passwd = [0u8; PASSWORD_LEN];
    JavaRandom::new(id ^ SUPER_SECRET).next_bytes(&mut passwd);
    passwd
}

/// `ZooKeeperServer.checkPasswd`: the id is not 0 and the password is exactly
/// [`generate_password`] of it.
pub fn check_password(id: ServerSessionId, passwd: &[u8]) -> bool {
    id != 0 && passwd == generate_password(id)
}

/// `java.util.Random`'s 48-bit linear congruential generator, bit-exact.
#[derive(Debug, Clone)]
struct JavaRandom {
    seed: u64,
}

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const ADDEND: u64 = 0xB;
    const MASK: u64 = (1 << 48) - 1;

    /// `new Random(seed)` (initialScramble).
    fn new(seed: i64) -> Self {
        Self {
            seed: (seed as u64 ^ Self::MULTIPLIER) & Self::MASK,
        }
    }

    /// `next(bits)`: `(int) (seed >>> (48 - bits))` after one LCG step.
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = self
            .seed
            .wrapping_mul(Self::MULTIPLIER)
            .wrapping_add(Self::ADDEND)
            & Self::MASK;
        (self.seed >> (48 - bits)) as i32
    }

    /// `nextInt()`.
    fn next_int(&mut self) -> i32 {
        self.next(32)
    }

    /// `nextBytes(bytes)`: one `nextInt()` per 4 bytes, low byte first.
    fn next_bytes(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(4) {
            let mut rnd = self.next_int();
            for b in chunk {
                *b = rnd as u8;
                rnd >>= 8;
            }
        }
    }
}

/// One tracked session.
#[derive(Debug, Clone, Copy)]
struct Session {
    /// Timeout the session was created (or restored) with: what ZooKeeper
    /// keeps in `sessionsWithTimeout` and snapshots.
    timeout: i32,
    /// Timeout touches use: the negotiated timeout of the session's current
    /// connection (`cnxn.getSessionTimeout()`), which a reconnect may change.
    touch_timeout: i32,
    /// Bucket (ms) the session expires in.
    expires_at: u64,
    /// Expired or closed by the client; no longer touchable.
    closing: bool,
}

/// All sessions of a server and their expiry buckets (`SessionTrackerImpl`
/// plus `ExpiryQueue`).
///
/// A session expires at `((lastTouch + timeout) / tickTime + 1) * tickTime`
/// (`ExpiryQueue.roundToNextInterval`), i.e. somewhere in
/// `(timeout, timeout + tickTime]` after its last packet.
#[derive(Debug, Clone)]
pub struct SessionTracker {
    config: SessionConfig,
    next_session_id: ServerSessionId,
    sessions: BTreeMap<ServerSessionId, Session>,
    /// Expiry time → sessions due then.
    buckets: BTreeMap<u64, BTreeSet<ServerSessionId>>,
}

impl SessionTracker {
    /// An empty tracker whose first session id derives from `now_ms`
    /// ([`initial_session_id`]).
    ///
    /// # Panics
    ///
    /// If `config.tick_time` is not positive (ZooKeeper refuses to start).
    pub fn new(config: SessionConfig, now_ms: u64) -> Self {
        assert!(config.tick_time > 0, "tickTime must be positive");
        Self {
            config,
            next_session_id: initial_session_id(config.server_id, now_ms),
            sessions: BTreeMap::new(),
            buckets: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// [`SessionConfig::negotiate`] with this tracker's settings.
    pub fn negotiate(&self, requested: i32) -> i32 {
        self.config.negotiate(requested)
    }

    /// Creates a session with an already negotiated `timeout`
    /// (`SessionTrackerImpl.createSession`): takes the next id and starts its
    /// expiry clock at `now_ms`. Its password is [`generate_password`] of the
    /// id.
    ///
    /// Unlike ZooKeeper, ids still in use (e.g. restored after a restart
    /// within the same millisecond) are skipped.
    pub fn create_session(&mut self, timeout: i32, now_ms: u64) -> ServerSessionId {
        while self.sessions.contains_key(&self.next_session_id) {
            self.next_session_id = self.next_session_id.wrapping_add(1);
        }
        let id = self.next_session_id;
        self.next_session_id = self.next_session_id.wrapping_add(1);
        self.track(id, timeout, now_ms);
        id
    }

    /// Re-adds a session from a snapshot or log (`trackSession`); an already
    /// tracked session only has its expiry refreshed with `timeout`.
    pub fn restore(&mut self, id: ServerSessionId, timeout: i32, now_ms: u64) {
        self.track(id, timeout, now_ms);
    }

    fn track(&mut self, id: ServerSessionId, timeout: i32, now_ms: u64) {
        let session = self.sessions.entry(id).or_insert(Session {
            timeout,
            touch_timeout: timeout,
            expires_at: 0,
            closing: false,
        });
        let old = session.expires_at;
        let new = Self::round_to_next_interval(self.config.tick_time, now_ms, timeout);
        session.expires_at = new;
        self.move_bucket(id, old, new);
    }

    /// `ExpiryQueue.roundToNextInterval(now + timeout)`.
    fn round_to_next_interval(tick_time: i32, now_ms: u64, timeout: i32) -> u64 {
        let tick = tick_time as u64;
        let time = now_ms.saturating_add(timeout.max(0) as u64);
        (time / tick + 1) * tick
    }

    fn move_bucket(&mut self, id: ServerSessionId, old: u64, new: u64) {
        if old == new {
            return;
        }
        if let Some(set) = self.buckets.get_mut(&old) {
            set.remove(&id);
            if set.is_empty() {
                self.buckets.remove(&old);
            }
        }
        self.buckets.entry(new).or_default().insert(id);
    }

    /// A packet arrived on the session's connection
    /// (`ZooKeeperServer.touch` / `touchSession`): moves its expiry to
    /// `now_ms + timeout`, rounded up to the next tick. `false` if the session
    /// is unknown or closing: ZooKeeper then drops the request.
    pub fn touch(&mut self, id: ServerSessionId, now_ms: u64) -> bool {
        let Some(session) = self.sessions.get(&id) else {
            return false;
        };
        if session.closing {
            return false;
        }
        let timeout = session.touch_timeout;
        self.touch_with(id, timeout, now_ms);
        true
    }

    fn touch_with(&mut self, id: ServerSessionId, timeout: i32, now_ms: u64) {
        let new = Self::round_to_next_interval(self.config.tick_time, now_ms, timeout);
        if let Some(session) = self.sessions.get_mut(&id) {
            let old = session.expires_at;
            session.expires_at = new;
            session.touch_timeout = timeout;
            self.move_bucket(id, old, new);
        }
    }

    /// A client reconnects to session `id` with `passwd`, having negotiated
    /// `timeout` (`reopenSession` + `revalidateSession`): checks the password
    /// ([`check_password`]) and touches the session with the new timeout,
    /// which later touches keep using. `false` (wrong password, unknown,
    /// expired or closing session) means: answer with the zeroed
    /// ConnectResponse and close.
    pub fn reopen(
        &mut self,
        id: ServerSessionId,
        passwd: &[u8],
        timeout: i32,
        now_ms: u64,
    ) -> bool {
        if !check_password(id, passwd) || !self.is_valid(id) {
            return false;
        }
        self.touch_with(id, timeout, now_ms);
        true
    }

    /// Sessions whose expiry bucket is at or before `now_ms`
    /// (`ExpiryQueue.poll` run until caught up), oldest bucket first. They are
    /// marked closing (`setSessionClosing`), so touches and reconnects fail
    /// from now on; the caller removes their ephemerals and then calls
    /// [`close`](Self::close).
    pub fn expired(&mut self, now_ms: u64) -> Vec<ServerSessionId> {
        let mut out = Vec::new();
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            out.extend(entry.remove());
        }
        for id in &out {
            if let Some(session) = self.sessions.get_mut(id) {
                session.closing = true;
            }
        }
        out
    }

    /// When the next bucket is due (ms), if any session is tracked: the time
    /// to call [`expired`](Self::expired) next (`ExpiryQueue.getWaitTime`).
    pub fn next_expiration(&self) -> Option<u64> {
        self.buckets.keys().next().copied()
    }

    /// The bucket session `id` expires in.
    pub fn expiry_time(&self, id: ServerSessionId) -> Option<u64> {
        self.sessions.get(&id).map(|s| s.expires_at)
    }

    /// Marks a session closing (`setSessionClosing`, as the closeSession
    /// request does before its txn is applied). `false` if unknown.
    pub fn set_closing(&mut self, id: ServerSessionId) -> bool {
        match self.sessions.get_mut(&id) {
            Some(session) => {
                session.closing = true;
                true
            }
            None => false,
        }
    }

    /// Forgets a session (`removeSession`), after its ephemerals are gone.
    /// `false` if it was not tracked.
    pub fn close(&mut self, id: ServerSessionId) -> bool {
        let Some(session) = self.sessions.remove(&id) else {
            return false;
        };
        if let Some(set) = self.buckets.get_mut(&session.expires_at) {
            set.remove(&id);
            if set.is_empty() {
                self.buckets.remove(&session.expires_at);
            }
        }
        true
    }

    /// Tracked and not closing.
    pub fn is_valid(&self, id: ServerSessionId) -> bool {
        self.sessions.get(&id).is_some_and(|s| !s.closing)
    }

    /// Tracked, closing or not (`isTrackingSession`).
    pub fn is_tracking(&self, id: ServerSessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Tracked but expired or being closed.
    pub fn is_closing(&self, id: ServerSessionId) -> bool {
        self.sessions.get(&id).is_some_and(|s| s.closing)
    }

    /// `checkSession` without the owner part: unknown →
    /// `UnknownSession` (-12), closing → `SessionExpired` (-112).
    /// (`checkGlobalSession`, used for ephemeral creates, turns unknown into
    /// `SessionExpired` too.)
    pub fn check_session(&self, id: ServerSessionId) -> ServerResult<()> {
        match self.sessions.get(&id) {
            None => Err(ErrorCode(err::UNKNOWN_SESSION)),
            Some(s) if s.closing => Err(ErrorCode(err::SESSION_EXPIRED)),
            Some(_) => Ok(()),
        }
    }

    /// The timeout the session was created or restored with (what ZooKeeper
    /// snapshots; a reconnect with another timeout does not change it).
    pub fn timeout(&self, id: ServerSessionId) -> Option<i32> {
        self.sessions.get(&id).map(|s| s.timeout)
    }

    /// Every tracked session (closing ones included) with its
    /// [`timeout`](Self::timeout), in id order: what a snapshot saves, to be
    /// fed back through [`restore`](Self::restore).
    pub fn sessions(&self) -> impl Iterator<Item = (ServerSessionId, i32)> + '_ {
        self.sessions.iter().map(|(&id, s)| (id, s.timeout))
    }

    /// The expiry buckets, soonest first: (expiry time in ms, sessions), as
    /// ZooKeeper's `dump` lists them.
    pub fn expiry_buckets(&self) -> Vec<(u64, Vec<ServerSessionId>)> {
        self.buckets
            .iter()
            .map(|(t, ids)| (*t, ids.iter().copied().collect()))
            .collect()
    }

    /// Number of tracked sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// No session is tracked.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The id the next [`create_session`](Self::create_session) will try.
    pub fn next_session_id(&self) -> ServerSessionId {
        self.next_session_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // Vectors below were printed by OpenJDK 17's jshell with
    // `new Random(id ^ 0XB3415C00L).nextBytes(new byte[16])` etc.

    #[test]
    fn java_random_next_int_matches_jdk() {
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_int(), -1_170_105_035);
        assert_eq!(r.next_int(), 234_785_527);
        assert_eq!(r.next_int(), -1_360_544_799);
    }

    #[test]
    fn java_random_next_bytes_partial_word_matches_jdk() {
        let mut b = [0u8; 7];
        JavaRandom::new(-7).next_bytes(&mut b);
        assert_eq!(hex(&b), "8c2ae544838bc8");
    }

    #[test]
    fn passwords_match_zookeeper_generate_passwd() {
        let vectors: [(i64, &str); 9] = [
            (0, "f22acd4a97e69d6d20a49bb638eadb38"),
            (1, "054cc74a37327db215e702e20c73f005"),
            (-1, "20f62cb5648dc2d771471c8a2486a9ee"),
            (i64::MIN, "f22acd4a97e69d6d20a49bb638eadb38"),
            (0x0123_4567_89ab_cdef, "f7cd1b8b3f946c477425d41be3f667c6"),
            (0x0100_0000_0000_0000, "f22acd4a97e69d6d20a49bb638eadb38"),
            (0x0100_0a2b_3c4d_0000, "a92640f4827d6da02f083ac59bfe0500"),
            (0x0100_0a2b_3c4d_0001, "bc473af422c94ce5244ba1f06f871acd"),
            (0xB341_5C00, "60b420bb3851d9d47acb933dbe70399b"),
        ];
        for (id, want) in vectors {
            assert_eq!(hex(&generate_password(id)), want, "id {id:#x}");
        }
    }

    #[test]
    fn check_password_rules() {
        let id = 0x0100_0a2b_3c4d_0000;
        let pw = generate_password(id);
        assert!(check_password(id, &pw));
        assert!(!check_password(id + 1, &pw));
        assert!(!check_password(id, &[0; 16]));
        assert!(!check_password(id, &pw[..15]));
        let mut long = pw.to_vec();
        long.push(0);
        assert!(!check_password(id, &long));
        // Session id 0 never checks out, even with its "password".
        assert!(!check_password(0, &generate_password(0)));
    }

    #[test]
    fn initial_session_ids_match_zookeeper() {
        // (time ms, expected) for server id 1, from jshell.
        let vectors: [(u64, i64); 6] = [
            (0, 0x0100_0000_0000_0000),
            (1_700_000_000_000, 0x018b_cfe5_6800_0000),
            (1_234_567, 0x0100_0012_d687_0000),
            (0xFF_FFFF_FFFF, 0x01ff_ffff_ffff_0000),
            // Only the low 40 bits of the time survive.
            (0x100_0000_0000, 0x0100_0000_0000_0000),
            (0x80_0000_0000, 0x0180_0000_0000_0000),
        ];
        for (t, want) in vectors {
            assert_eq!(initial_session_id(1, t), want, "t {t:#x}");
        }
        // Server id 128 at time 0 would be Long.MIN_VALUE: bumped.
        assert_eq!(initial_session_id(128, 0), i64::MIN + 1);
        assert_eq!(initial_session_id(128, 5) as u64, 0x8000_0000_0005_0000);
        assert_eq!(
            initial_session_id(255, 1_700_000_000_000) as u64,
            0xff8b_cfe5_6800_0000
        );
    }

    #[test]
    fn ids_increment_per_session() {
        let mut t = SessionTracker::new(SessionConfig::default(), 1_700_000_000_000);
        let a = t.create_session(4000, 0);
        let b = t.create_session(4000, 0);
        assert_eq!(a, 0x018b_cfe5_6800_0000);
        assert_eq!(b, a + 1);
        assert_eq!(t.next_session_id(), a + 2);
        assert_eq!(a >> 56, 1);
    }

    #[test]
    fn create_skips_ids_in_use() {
        let mut t = SessionTracker::new(SessionConfig::default(), 0);
        let first = t.next_session_id();
        t.restore(first, 4000, 0);
        t.restore(first + 1, 4000, 0);
        assert_eq!(t.create_session(4000, 0), first + 2);
    }

    #[test]
    fn negotiation_clamps_like_zookeeper() {
        let c = SessionConfig::new(2000);
        assert_eq!(
            (c.min_session_timeout, c.max_session_timeout),
            (4000, 40000)
        );
        // Observed on 3.8 with tickTime 2000.
        assert_eq!(c.negotiate(1000), 4000);
        assert_eq!(c.negotiate(1_000_000), 40000);
        assert_eq!(c.negotiate(10_000), 10_000);
        assert_eq!(c.negotiate(4000), 4000);
        assert_eq!(c.negotiate(40000), 40000);
        assert_eq!(c.negotiate(0), 4000);
        assert_eq!(c.negotiate(-5), 4000);
        assert_eq!(c.negotiate(i32::MAX), 40000);
        // Misconfigured min > max: max wins (min applied first).
        let odd = SessionConfig {
            min_session_timeout: 9000,
            max_session_timeout: 5000,
            ..c
        };
        assert_eq!(odd.negotiate(1), 5000);
        assert_eq!(SessionConfig::new(3000).negotiate(1), 6000);
        assert_eq!(SessionConfig::default(), c);
        let t = SessionTracker::new(c, 0);
        assert_eq!(t.negotiate(1000), 4000);
        assert_eq!(t.config().server_id, 1);
    }

    #[test]
    fn bucket_rounding() {
        let r = |now, timeout| SessionTracker::round_to_next_interval(2000, now, timeout);
        assert_eq!(r(0, 4000), 6000);
        assert_eq!(r(1, 4000), 6000);
        assert_eq!(r(1999, 4000), 6000);
        assert_eq!(r(2000, 4000), 8000);
        assert_eq!(r(10_500, 4000), 16_000);
        assert_eq!(r(0, 0), 2000);
        assert_eq!(r(100, -1), 2000);
    }

    #[test]
    fn expiry_at_tick_boundaries() {
        let mut t = SessionTracker::new(SessionConfig::default(), 0);
        let id = t.create_session(4000, 1000);
        assert_eq!(t.expiry_time(id), Some(6000));
        assert_eq!(t.next_expiration(), Some(6000));
        assert!(t.expired(5999).is_empty());
        assert!(t.is_valid(id));
        assert_eq!(t.expired(6000), vec![id]);
        assert!(!t.is_valid(id));
        assert!(t.is_closing(id));
        assert!(t.is_tracking(id));
        // Reported once only.
        assert!(t.expired(100_000).is_empty());
        assert_eq!(t.next_expiration(), None);
        // Closing sessions cannot be touched or reopened.
        assert!(!t.touch(id, 6001));
        assert!(!t.reopen(id, &generate_password(id), 4000, 6001));
        assert_eq!(t.check_session(id), Err(ErrorCode(err::SESSION_EXPIRED)));
        assert!(t.close(id));
        assert!(!t.is_tracking(id));
        assert!(!t.close(id));
        assert_eq!(t.check_session(id), Err(ErrorCode(err::UNKNOWN_SESSION)));
    }

    #[test]
    fn expiry_window_is_timeout_to_timeout_plus_tick() {
        // Last packet at `last`: expires strictly after last + timeout and
        // no later than last + timeout + tick.
        for last in [0u64, 1, 999, 1999, 2000, 2001, 12_345] {
            let mut t = SessionTracker::new(SessionConfig::default(), 0);
            let id = t.create_session(4000, last);
            let at = t.expiry_time(id).unwrap();
            assert!(at > last + 4000 && at <= last + 6000, "last {last}: {at}");
            assert!(t.expired(at - 1).is_empty());
            assert_eq!(t.expired(at), vec![id]);
        }
    }

    #[test]
    fn touch_moves_bucket() {
        let mut t = SessionTracker::new(SessionConfig::default(), 0);
        let id = t.create_session(4000, 0);
        assert_eq!(t.expiry_time(id), Some(6000));
        assert!(t.touch(id, 3000));
        assert_eq!(t.expiry_time(id), Some(8000));
        // Same bucket: unchanged.
        assert!(t.touch(id, 3999));
        assert_eq!(t.expiry_time(id), Some(8000));
        assert!(t.expired(6000).is_empty());
        assert!(t.expired(7999).is_empty());
        assert_eq!(t.expired(8000), vec![id]);
        assert!(!t.touch(12345, 0), "unknown session");
    }

    #[test]
    fn expired_returns_all_due_buckets_in_order() {
        let mut t = SessionTracker::new(SessionConfig::default(), 0);
        let a = t.create_session(10_000, 0); // 12000
        let b = t.create_session(4000, 0); // 6000
        let c = t.create_session(4000, 500); // 6000
        let d = t.create_session(40_000, 0); // 42000
        assert_eq!(t.expired(20_000), vec![b, c, a]);
        assert!(t.is_valid(d));
        assert_eq!(t.next_expiration(), Some(42_000));
        assert_eq!(t.len(), 4, "expired sessions stay until closed");
        for id in [a, b, c] {
            assert!(t.close(id));
        }
        assert_eq!(t.len(), 1);
        assert!(t.close(d));
        assert!(t.is_empty());
        assert_eq!(t.next_expiration(), None);
    }

    #[test]
    fn reopen_checks_password_and_adopts_new_timeout() {
        let mut t = SessionTracker::new(SessionConfig::default(), 0);
        let id = t.create_session(4000, 0);
        assert!(!t.reopen(id, &[0; 16], 10_000, 1000));
        assert!(!t.reopen(id + 1, &generate_password(id + 1), 10_000, 1000));
        assert_eq!(t.expiry_time(id), Some(6000));
        assert!(t.reopen(id, &generate_password(id), 10_000, 1000));
        assert_eq!(t.expiry_time(id), Some(12_000));
        // Later touches use the reconnect's timeout...
        assert!(t.touch(id, 5000));
        assert_eq!(t.expiry_time(id), Some(16_000));
        // ...but the snapshot keeps the creation timeout, as ZooKeeper does.
        assert_eq!(t.timeout(id), Some(4000));
        assert_eq!(t.check_session(id), Ok(()));
    }

    #[test]
    fn set_closing_blocks_touches() {
        let mut t = SessionTracker::new(SessionConfig::default(), 0);
        let id = t.create_session(4000, 0);
        assert!(t.set_closing(id));
        assert!(!t.touch(id, 1));
        assert!(!t.is_valid(id));
        assert!(!t.set_closing(id + 1));
        // Still in its bucket: reported as expired later, then closed.
        assert_eq!(t.expired(6000), vec![id]);
        assert!(t.close(id));
    }

    #[test]
    fn snapshot_and_restore_round_trip() {
        let mut t = SessionTracker::new(SessionConfig::default(), 1_700_000_000_000);
        let a = t.create_session(4000, 0);
        let b = t.create_session(30_000, 0);
        let saved: Vec<_> = t.sessions().collect();
        assert_eq!(saved, vec![(a, 4000), (b, 30_000)]);

        let mut r = SessionTracker::new(SessionConfig::default(), 1_700_000_100_000);
        for &(id, timeout) in &saved {
            r.restore(id, timeout, 50_000);
        }
        assert_eq!(r.sessions().collect::<Vec<_>>(), saved);
        assert_eq!(r.expiry_time(a), Some(56_000));
        assert_eq!(r.expiry_time(b), Some(82_000));
        assert!(r.is_valid(a) && r.is_valid(b));
        // Restoring again only refreshes expiry, keeping the first timeout.
        r.restore(a, 9000, 60_000);
        assert_eq!(r.timeout(a), Some(4000));
        assert_eq!(r.expiry_time(a), Some(70_000));
        assert_eq!(r.expired(70_000), vec![a]);
    }

    #[test]
    #[should_panic(expected = "tickTime")]
    fn zero_tick_time_panics() {
        let _ = SessionTracker::new(SessionConfig::new(0), 0);
    }
}
