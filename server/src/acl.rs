//! ACLs and authentication, as ZooKeeper 3.8 does them (PROTOCOL.md §4.9,
//! §4.14): the auth ids of a connection ([`AuthInfo`]), the `auth` packet
//! ([`AclPolicy::add_auth`]), ACL validation and `auth` expansion on
//! create/setACL ([`AclPolicy::fixup_acl`], `PrepRequestProcessor.fixupACL`),
//! permission checks ([`AclPolicy::check_perm`], `ZooKeeperServer.checkACL`)
//! and getACL's digest masking ([`AclPolicy::get_acl`],
//! `FinalRequestProcessor`).
//!
//! Providers, as `ProviderRegistry` registers them by default: `ip`
//! (`IPAuthenticationProvider`) and `digest` (`DigestAuthenticationProvider`,
//! unless disabled). `world:anyone` and `auth` are special-cased by
//! fixupACL/checkACL; `super` is an auth id without a provider that bypasses
//! every check. Any other scheme (`x509`, `sasl`, `world:<not anyone>`,
//! `super` in an ACL, ...) is unknown: InvalidACL in an ACL, AuthFailed in an
//! auth packet.
//!
//! Pure and synchronous; no I/O.

use std::borrow::Cow;
use std::net::IpAddr;

use zkit_proto::codes::{err, perms};
use zkit_proto::Perms;
use zkit_proto::{Acl, ClientInfo, Id};

use crate::{ErrorCode, ServerResult};

/// The `ip` scheme.
pub const SCHEME_IP: &str = "ip";
/// The `digest` scheme.
pub const SCHEME_DIGEST: &str = "digest";
/// The `sasl` scheme (SASL-authenticated users).
pub const SCHEME_SASL: &str = "sasl";
/// The x509 scheme: ids are a client certificate's subject DN (RFC 2253).
pub const SCHEME_X509: &str = "x509";
/// The `world` scheme (only `world:anyone` is valid).
pub const SCHEME_WORLD: &str = "world";
/// The `auth` pseudo-scheme: expands to the caller's authenticated ids.
pub const SCHEME_AUTH: &str = "auth";
/// The auth id scheme of a super user (`Id("super", "")`).
pub const SCHEME_SUPER: &str = "super";

/// `DigestAuthenticationProvider.generateDigest(idPassword)`: the text before
/// the first `:` (or all of it), a `:`, and base64 of SHA-1 of the whole
/// string. For `"user:password"` this is `user:base64(sha1("user:password"))`
/// ([`zkit_proto::digest_id`]).
pub fn generate_digest(id_password: &str) -> String {
    zkit_proto::digest_id(id_password)
}

/// The `digest` id for `user` with `password`, as the `digest` auth packet
/// `"user:password"` produces it.
pub fn digest_id(user: &str, password: &str) -> Id {
    zkit_proto::Acl::digest(Perms(0), user, password).id
}

/// How Java prints a peer address (`InetAddress.getHostAddress`): IPv4
/// dotted; IPv4-mapped IPv6 as the IPv4 address (Java hands those out as
/// `Inet4Address`); other IPv6 as eight lowercase hex groups without zero
/// compression, e.g. `0:0:0:0:0:0:0:1`. (Java would append `%scope` for
/// scoped link-local addresses; this does not.)
pub fn java_host_address(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6
                .segments()
                .iter()
                .map(|s| format!("{s:x}"))
                .collect::<Vec<_>>()
                .join(":"),
        },
    }
}

/// The `ip` auth id of a connection from `addr` (`ip:<getHostAddress>`).
pub fn ip_id(addr: IpAddr) -> Id {
    Id {
        scheme: SCHEME_IP.into(),
        id: java_host_address(addr),
    }
}

/// The ids a connection is authenticated as (`ServerCnxn.authInfo`): its
/// `ip` id from the start, plus whatever auth packets added. A set: adding an
/// id twice keeps one (insertion order is kept; ZooKeeper's set is unordered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    peer: IpAddr,
    ids: Vec<Id>,
}

impl AuthInfo {
    /// A new connection from `peer`: just its [`ip_id`].
    pub fn new(peer: IpAddr) -> Self {
        Self {
            peer,
            ids: vec![ip_id(peer)],
        }
    }

    /// The peer address.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// The ids, for [`AclPolicy::fixup_acl`] and [`AclPolicy::check_perm`].
    pub fn ids(&self) -> &[Id] {
        &self.ids
    }

    /// Adds an id (`addAuthInfo`); `false` if it was already there.
    pub fn insert(&mut self, id: Id) -> bool {
        if self.ids.contains(&id) {
            return false;
        }
        self.ids.push(id);
        true
    }

    /// Authenticated as super (has a `super` id): passes every ACL check.
    pub fn is_super(&self) -> bool {
        is_super(&self.ids)
    }
}

fn is_super(ids: &[Id]) -> bool {
    ids.iter().any(|id| id.scheme == SCHEME_SUPER)
}

/// The auth providers and ACL settings of a server (`ProviderRegistry` and
/// system properties), with the operations that use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclPolicy {
    /// `zookeeper.DigestAuthenticationProvider.superDigest`:
    /// `"super:<base64 sha1>"` ([`generate_digest`] of `"super:password"`).
    /// A `digest` auth whose digest equals it also adds the `super` id.
    pub super_digest: Option<String>,
    /// `zookeeper.DigestAuthenticationProvider.enabled` (default true): when
    /// false the `digest` scheme is unknown (AuthFailed, InvalidACL, and
    /// digest ACL entries never match).
    pub digest_enabled: bool,
    /// `zookeeper.skipACL`: every permission check passes.
    pub skip_acl: bool,
    /// Accept IPv6 addresses in `ip` ACLs, as ZooKeeper master does
    /// (ZOOKEEPER-4240, in no release yet). ZooKeeper 3.8/3.9 parse only
    /// IPv4: `ip` ACLs with IPv6 addresses are InvalidACL and IPv6 clients
    /// match no `ip` entry. Default true.
    pub ipv6: bool,
    /// The `sasl` scheme is registered (ZooKeeper's
    /// `authProvider.<n>=org.apache.zookeeper.server.auth.SASLAuthenticationProvider`):
    /// `sasl` ACL ids are valid and match the SASL-authenticated user (or
    /// `super`). Default false, as in ZooKeeper.
    pub sasl_enabled: bool,
    /// The `x509` scheme is registered (a secure client port, or
    /// `authProvider.<n>=org.apache.zookeeper.server.auth.X509AuthenticationProvider`):
    /// `x509` ACL ids are valid and match a verified client certificate's
    /// subject DN exactly. Default false.
    pub x509_enabled: bool,
    /// `zookeeper.X509AuthenticationProvider.superUser`: the subject DN of
    /// a certificate that is also super; `x509` ACL entries match it too.
    pub x509_super_user: Option<String>,
}

impl Default for AclPolicy {
    fn default() -> Self {
        Self {
            super_digest: None,
            digest_enabled: true,
            skip_acl: false,
            ipv6: true,
            sasl_enabled: false,
            x509_enabled: false,
            x509_super_user: None,
        }
    }
}

impl AclPolicy {
    /// Default settings with a super user whose password is `password`
    /// (`superDigest = generateDigest("super:" + password)`).
    pub fn with_super_password(password: &str) -> Self {
        Self {
            super_digest: Some(digest_id(SCHEME_SUPER, password).id),
            ..Self::default()
        }
    }

    /// Whether `scheme` has an auth provider on this server (what
    /// `enforce.auth.schemes` may name): `ip`, plus `digest`, `sasl`, `x509`
    /// as configured.
    pub fn has_provider(&self, scheme: &str) -> bool {
        scheme == SCHEME_IP
            || (scheme == SCHEME_DIGEST && self.digest_enabled)
            || (scheme == SCHEME_SASL && self.sasl_enabled)
            || (scheme == SCHEME_X509 && self.x509_enabled)
    }

    /// Whether ids of `scheme` are authenticated identities
    /// (`isAuthenticated()`: what an `auth` ACL entry expands to): `digest`,
    /// `sasl` and `x509` when registered; not `ip`.
    fn is_authenticated(&self, scheme: &str) -> bool {
        scheme != SCHEME_IP && self.has_provider(scheme)
    }

    /// An `auth` packet (`processPacket`, OpCode.auth): the provider for
    /// `scheme` handles `auth_data`.
    ///
    /// - `digest`: never fails. The data is decoded as Java's `new
    ///   String(bytes)` does (lossy UTF-8), the id is [`generate_digest`] of
    ///   it; if that equals the super digest, `super:` is added first.
    /// - `ip`: (re)adds the connection's own ip id; the data is ignored.
    /// - anything else (or `digest` when disabled): AuthFailed (-115); the
    ///   caller replies `(-4, 0, -115)` and closes the connection.
    ///
    /// Returns the id added (for `digest`, the digest id).
    pub fn add_auth(
        &self,
        auth: &mut AuthInfo,
        scheme: &str,
        auth_data: &[u8],
    ) -> ServerResult<Id> {
        if scheme == SCHEME_IP {
            let id = ip_id(auth.peer);
            auth.insert(id.clone());
            return Ok(id);
        }
        if scheme == SCHEME_DIGEST && self.digest_enabled {
            let text = String::from_utf8_lossy(auth_data);
            let digest = generate_digest(&text);
            if self.super_digest.as_deref() == Some(digest.as_str()) {
                auth.insert(Id {
                    scheme: SCHEME_SUPER.into(),
                    id: String::new(),
                });
            }
            let id = Id {
                scheme: SCHEME_DIGEST.into(),
                id: digest,
            };
            auth.insert(id.clone());
            return Ok(id);
        }
        Err(ErrorCode(err::AUTH_FAILED))
    }

    /// whoAmI (`AuthUtil.getClientInfos`): per auth id, its scheme and user
    /// (`ip`: the address; `digest`: the part before the first `:`; ids
    /// without a provider, such as `super`: empty).
    pub fn who_am_i(&self, auth_ids: &[Id]) -> Vec<ClientInfo> {
        auth_ids
            .iter()
            .map(|id| {
                let user = if id.scheme == SCHEME_IP {
                    id.id.clone()
                } else if id.scheme == SCHEME_DIGEST && self.digest_enabled {
                    id.id.split(':').next().unwrap_or("").to_string()
                } else if (id.scheme == SCHEME_SASL && self.sasl_enabled)
                    || (id.scheme == SCHEME_X509 && self.x509_enabled)
                {
                    id.id.clone()
                } else {
                    String::new()
                };
                ClientInfo {
                    auth_scheme: id.scheme.clone(),
                    user,
                }
            })
            .collect()
    }

    /// Whether an ACL id is well formed for its scheme (provider `isValid`):
    /// `digest` ids have exactly two `:`-separated parts (Java `split(":")`,
    /// trailing empty parts dropped: `u:` and `u:a:b` are invalid, `:h` is
    /// valid); `ip` ids are an address, optionally `/bits` with
    /// `0 <= bits <= address bits`. Unknown schemes are invalid.
    pub fn is_valid_id(&self, id: &Id) -> bool {
        if id.scheme == SCHEME_DIGEST && self.digest_enabled {
            java_split_len(&id.id, ':') == 2
        } else if id.scheme == SCHEME_SASL && self.sasl_enabled {
            // `SASLAuthenticationProvider.isValid`: `new KerberosName(id)`
            // accepts any name without '@'; one with '@' must read
            // `primary[/instance]@REALM` (no other '/' or '@').
            match id.id.split_once('@') {
                None => true,
                Some((principal, realm)) => {
                    !realm.contains(['@', '/']) && principal.matches('/').count() <= 1
                }
            }
        } else if id.scheme == SCHEME_X509 && self.x509_enabled {
            // `new X500Principal(id)` parses: a list of type=value pairs.
            x500_name_is_valid(&id.id)
        } else if id.scheme == SCHEME_IP {
            self.ip_is_valid(&id.id)
        } else {
            false
        }
    }

    /// Validates and expands the ACL of a create or setACL
    /// (`PrepRequestProcessor.fixupACL`):
    ///
    /// 1. exact duplicates are removed; an empty list is InvalidACL (-114);
    /// 2. `world:anyone` is kept as is (`world` with any other id is
    ///    InvalidACL);
    /// 3. `auth` (any id) becomes one entry with its perms per auth id whose
    ///    provider authenticates (`digest`, and `sasl` and `x509` when
    ///    registered; not `ip`, not `super`), in
    ///    auth-id order; none is InvalidACL;
    /// 4. any other entry must pass [`is_valid_id`](Self::is_valid_id), else
    ///    InvalidACL.
    ///
    /// Perms are not validated (ZooKeeper accepts 0 or bits above ALL).
    /// Expansion can produce duplicates; ZooKeeper keeps them.
    pub fn fixup_acl(&self, acl: &[Acl], auth_ids: &[Id]) -> ServerResult<Vec<Acl>> {
        self.fixup_acl_cow(acl, auth_ids).map(Cow::into_owned)
    }

    /// [`fixup_acl`](Self::fixup_acl), borrowing `acl` when it comes out
    /// unchanged (no repeats, no `auth` entry to expand: the usual create).
    ///
    /// # Errors
    /// As [`fixup_acl`](Self::fixup_acl).
    pub fn fixup_acl_cow<'a>(
        &self,
        acl: &'a [Acl],
        auth_ids: &[Id],
    ) -> ServerResult<Cow<'a, [Acl]>> {
        let invalid = ErrorCode(err::INVALID_ACL);
        let unique = crate::tree::dedup_acl(acl);
        if unique.is_empty() {
            return Err(invalid);
        }
        // Every entry but `auth` is kept as given, if valid.
        let kept = |a: &Acl| {
            (a.id.scheme == SCHEME_WORLD && a.id.id == "anyone") || self.is_valid_id(&a.id)
        };
        if unique.iter().all(|a| a.id.scheme != SCHEME_AUTH) {
            // Nothing to expand: the list (deduplicated) is the answer.
            return if unique.iter().all(kept) {
                Ok(unique)
            } else {
                Err(invalid)
            };
        }
        let mut out = Vec::with_capacity(unique.len());
        for a in unique.iter() {
            if a.id.scheme == SCHEME_AUTH {
                let before = out.len();
                out.extend(
                    auth_ids
                        .iter()
                        .filter(|cid| self.is_authenticated(&cid.scheme))
                        .map(|cid| Acl {
                            perms: a.perms,
                            id: cid.clone(),
                        }),
                );
                if out.len() == before {
                    return Err(invalid);
                }
            } else if kept(a) {
                out.push(a.clone());
            } else {
                return Err(invalid);
            }
        }
        Ok(Cow::Owned(out))
    }

    /// Whether `auth_ids` may do `perm` on a node with `acl`
    /// (`ZooKeeperServer.checkACL`); NoAuth (-102) if not.
    ///
    /// Passes when ACLs are skipped, when `acl` is empty (ZooKeeper allows
    /// everything then), for a super user, or when an entry granting any bit
    /// of `perm` is `world:anyone` or matches an auth id of the same scheme:
    /// `digest` exactly, `ip` by address with an optional `/bits` prefix.
    pub fn check_perm(&self, acl: &[Acl], auth_ids: &[Id], perm: i32) -> ServerResult<()> {
        if self.skip_acl || acl.is_empty() || is_super(auth_ids) {
            return Ok(());
        }
        for a in acl {
            if a.perms & perm == 0 {
                continue;
            }
            if a.id.scheme == SCHEME_WORLD && a.id.id == "anyone" {
                return Ok(());
            }
            if !self.has_provider(&a.id.scheme) {
                continue;
            }
            for auth_id in auth_ids {
                if auth_id.scheme == a.id.scheme
                    && self.matches(&a.id.scheme, &auth_id.id, &a.id.id)
                {
                    return Ok(());
                }
            }
        }
        Err(ErrorCode(err::NO_AUTH))
    }

    /// Provider `matches(id, aclExpr)` for a registered scheme.
    fn matches(&self, scheme: &str, id: &str, acl_expr: &str) -> bool {
        if scheme == SCHEME_DIGEST {
            id == acl_expr
        } else if scheme == SCHEME_SASL {
            // `SASLAuthenticationProvider.matches`.
            id == acl_expr || id == "super"
        } else if scheme == SCHEME_X509 {
            // `X509AuthenticationProvider.matches`: the super user's DN
            // matches every x509 entry.
            id == acl_expr || self.x509_super_user.as_deref() == Some(id)
        } else {
            self.ip_matches(id, acl_expr)
        }
    }

    /// getACL (`FinalRequestProcessor`): NoAuth unless the caller has READ or
    /// ADMIN; callers without ADMIN see digest ids masked ([`mask_digests`]).
    pub fn get_acl(&self, acl: &[Acl], auth_ids: &[Id]) -> ServerResult<Vec<Acl>> {
        self.check_perm(acl, auth_ids, perms::READ | perms::ADMIN)?;
        if self.check_perm(acl, auth_ids, perms::ADMIN).is_ok() {
            Ok(acl.to_vec())
        } else {
            Ok(mask_digests(acl))
        }
    }

    // ---- ip provider -------------------------------------------------------

    fn addr_to_bytes(&self, addr: &str) -> Option<Vec<u8>> {
        if self.ipv6 {
            // ZooKeeper master: a ':' means IPv6, else a '.' means IPv4.
            if addr.contains(':') {
                v6_addr_to_bytes(addr).map(|b| b.to_vec())
            } else if addr.contains('.') {
                v4_addr_to_bytes(addr).map(|b| b.to_vec())
            } else {
                None
            }
        } else {
            v4_addr_to_bytes(addr).map(|b| b.to_vec())
        }
    }

    /// `IPAuthenticationProvider.isValid`.
    fn ip_is_valid(&self, id: &str) -> bool {
        let mut parts = id.splitn(2, '/');
        let addr = parts.next().unwrap_or("");
        let Some(bytes) = self.addr_to_bytes(addr) else {
            return false;
        };
        match parts.next() {
            None => true,
            Some(bits) => {
                matches!(java_parse_int(bits, 10), Some(b) if b >= 0 && (b as usize) <= bytes.len() * 8)
            }
        }
    }

    /// `IPAuthenticationProvider.matches`.
    fn ip_matches(&self, id: &str, acl_expr: &str) -> bool {
        let mut parts = acl_expr.splitn(2, '/');
        let Some(mut acl_addr) = self.addr_to_bytes(parts.next().unwrap_or("")) else {
            return false;
        };
        let bits = match parts.next() {
            None => acl_addr.len() * 8,
            Some(text) => match java_parse_int(text, 10) {
                Some(b) if b >= 0 && (b as usize) <= acl_addr.len() * 8 => b as usize,
                _ => return false,
            },
        };
        mask(&mut acl_addr, bits);
        let Some(mut remote) = self.addr_to_bytes(id) else {
            return false;
        };
        mask(&mut remote, bits);
        remote == acl_addr
    }
}

/// Whether `name` reads as an X.500 name the way `new X500Principal(name)`
/// accepts it: comma- (or semicolon-) separated RDNs, each one or more
/// `+`-joined `type=value` with a keyword or dotted OID type; backslash
/// escapes and quoted values allowed.
fn x500_name_is_valid(name: &str) -> bool {
    fn valid_type(t: &str) -> bool {
        let t = t.trim();
        let t = t
            .strip_prefix("OID.")
            .or_else(|| t.strip_prefix("oid."))
            .unwrap_or(t);
        if t.is_empty() {
            return false;
        }
        if t.starts_with(|c: char| c.is_ascii_digit()) {
            t.split('.')
                .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
        } else {
            t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && t.starts_with(|c: char| c.is_ascii_alphabetic())
        }
    }
    if name.trim().is_empty() {
        return true; // the empty DN is a valid principal
    }
    // Split into AVAs at unescaped, unquoted separators.
    let mut avas: Vec<String> = vec![String::new()];
    let (mut escaped, mut quoted) = (false, false);
    for c in name.chars() {
        let cur = avas.last_mut().expect("never empty");
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == '"' {
            cur.push(c);
            quoted = !quoted;
        } else if !quoted && matches!(c, ',' | ';' | '+') {
            avas.push(String::new());
        } else {
            cur.push(c);
        }
    }
    if escaped || quoted {
        return false;
    }
    avas.iter().all(|ava| match ava.split_once('=') {
        Some((t, _)) => valid_type(t),
        None => false,
    })
}

/// getACL's view for callers without ADMIN: in every `digest` id, each `:`
/// and the rest of its line become `:x` (Java `replaceAll(":.*", ":x")`), so
/// `user:hash` reads `user:x`. Other entries are unchanged.
pub fn mask_digests(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme == SCHEME_DIGEST {
                Acl {
                    perms: a.perms,
                    id: Id {
                        scheme: a.id.scheme.clone(),
                        id: java_mask_colon_rest(&a.id.id),
                    },
                }
            } else {
                a.clone()
            }
        })
        .collect()
}

/// `s.replaceAll(":.*", ":x")`: `.` stops at Java's line terminators.
fn java_mask_colon_rest(s: &str) -> String {
    let is_terminator = |c: char| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
    let mut out = String::with_capacity(s.len());
    let mut skipping = false;
    for c in s.chars() {
        if skipping {
            if is_terminator(c) {
                skipping = false;
                out.push(c);
            }
        } else if c == ':' {
            out.push_str(":x");
            skipping = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// `s.split(String.valueOf(sep)).length` in Java: trailing empty parts are
/// dropped, and a string without the separator is one part (even if empty).
fn java_split_len(s: &str, sep: char) -> usize {
    if !s.contains(sep) {
        return 1;
    }
    let mut parts: Vec<&str> = s.split(sep).collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    parts.len()
}

/// `Integer.parseInt(s, radix)` for ASCII digits: optional sign, at least one
/// digit, within `i32`. (Java also accepts non-ASCII Unicode digits.)
fn java_parse_int(s: &str, radix: u32) -> Option<i32> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for c in digits.chars() {
        value = value * i64::from(radix) + i64::from(c.to_digit(radix)?);
        if value > i64::from(i32::MAX) + 1 {
            return None;
        }
    }
    let value = if negative { -value } else { value };
    i32::try_from(value).ok()
}

/// `IPAuthenticationProvider.v4addr2Bytes`: exactly four `.`-separated
/// `parseInt` values in 0..=255 (so `+1` and `001` are accepted).
fn v4_addr_to_bytes(addr: &str) -> Option<[u8; 4]> {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut out = [0u8; 4];
    for (slot, part) in out.iter_mut().zip(parts) {
        *slot = u8::try_from(java_parse_int(part, 10)?).ok()?;
    }
    Some(out)
}

/// ZooKeeper master's `IPAuthenticationProvider.parseV6addr`: eight
/// `:`-separated groups of 1–4 hex digits, or one `::` standing for at least
/// one zero group. No embedded IPv4, no `%scope`.
fn v6_addr_to_bytes(addr: &str) -> Option<[u8; 16]> {
    let halves: Vec<&str> = addr.split("::").collect();
    let (head, tail): (Vec<&str>, Vec<&str>) = match halves.as_slice() {
        [all] => {
            let segments: Vec<&str> = all.split(':').collect();
            if segments.len() != 8 {
                return None;
            }
            (segments, Vec::new())
        }
        [a, b] => {
            let head = if a.is_empty() {
                Vec::new()
            } else {
                a.split(':').collect()
            };
            let tail = if b.is_empty() {
                Vec::new()
            } else {
                b.split(':').collect()
            };
            if head.len() + tail.len() >= 8 {
                return None;
            }
            (head, tail)
        }
        _ => return None,
    };
    let mut out = [0u8; 16];
    let mut put = |start: usize, segments: &[&str]| -> Option<()> {
        for (i, segment) in segments.iter().enumerate() {
            if segment.is_empty() || segment.chars().count() > 4 {
                return None;
            }
            let value = java_parse_int(segment, 16)?;
            out[start + 2 * i] = (value >> 8) as u8;
            out[start + 2 * i + 1] = value as u8;
        }
        Some(())
    };
    put(0, &head)?;
    put(16 - 2 * tail.len(), &tail)?;
    Some(out)
}

/// `IPAuthenticationProvider.mask`: keep the first `bits` bits.
fn mask(bytes: &mut [u8], bits: usize) {
    let start = bits / 8;
    let mut start_mask = !((1u16 << (8 - bits % 8)) - 1) as u8;
    for b in bytes.iter_mut().skip(start) {
        *b &= start_mask;
        start_mask = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const R: i32 = perms::READ;
    const W: i32 = perms::WRITE;
    const C: i32 = perms::CREATE;
    const D: i32 = perms::DELETE;
    const A: i32 = perms::ADMIN;
    const ALL: i32 = perms::ALL;

    fn id(scheme: &str, id: &str) -> Id {
        Id {
            scheme: scheme.into(),
            id: id.into(),
        }
    }

    fn acl(perms: i32, scheme: &str, i: &str) -> Acl {
        Acl {
            perms,
            id: id(scheme, i),
        }
    }

    fn localhost() -> AuthInfo {
        AuthInfo::new(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn no_auth() -> ServerResult<()> {
        Err(ErrorCode(err::NO_AUTH))
    }

    fn invalid<T>() -> ServerResult<T> {
        Err(ErrorCode(err::INVALID_ACL))
    }

    // Digests printed by OpenJDK 17's jshell with ZooKeeper's
    // generateDigest code (split(":", 2)[0] + ":" + base64(SHA1(whole))).
    const U_P: &str = "u:Jq7wMyA/w2Vd5WIDAKdu4OIIFEQ=";
    const SUPER_SECRET_DIGEST: &str = "super:lK75jTNcA+U9vtVEw5vB51mj/w4=";

    #[test]
    fn generate_digest_matches_zookeeper() {
        assert_eq!(generate_digest("u:p"), U_P);
        assert_eq!(
            generate_digest("user:pass:word"),
            "user:yNMcEO4y6Bgll487yEAxpvnMYoo="
        );
        assert_eq!(generate_digest(":p"), ":LlDE5iroUDDm9zdvmLsfjkUvn0k=");
        assert_eq!(generate_digest("u:"), "u:IX23jg4I7W2/R//KoV8VL1UfuBM=");
        assert_eq!(generate_digest("super:secret"), SUPER_SECRET_DIGEST);
        assert_eq!(digest_id("u", "p"), id("digest", U_P));
        // No colon: the whole string is the user and is hashed alone.
        assert_eq!(generate_digest("user"), "user:Et6pb+wgWTVmq3VpLJlJWWgzrck=");
    }

    #[test]
    fn java_host_address_format() {
        assert_eq!(
            java_host_address(Ipv4Addr::new(10, 1, 2, 3).into()),
            "10.1.2.3"
        );
        assert_eq!(
            java_host_address(Ipv6Addr::LOCALHOST.into()),
            "0:0:0:0:0:0:0:1"
        );
        let v6: Ipv6Addr = "fe80::1:ABCD".parse().unwrap();
        assert_eq!(java_host_address(v6.into()), "fe80:0:0:0:0:0:1:abcd");
        let mapped: Ipv6Addr = "::ffff:1.2.3.4".parse().unwrap();
        assert_eq!(java_host_address(mapped.into()), "1.2.3.4");
        assert_eq!(localhost().ids(), &[id("ip", "127.0.0.1")]);
        assert_eq!(localhost().peer(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn digest_auth_never_fails() {
        let p = AclPolicy::default();
        let mut auth = localhost();
        assert_eq!(
            p.add_auth(&mut auth, "digest", b"u:p"),
            Ok(id("digest", U_P))
        );
        assert_eq!(auth.ids(), &[id("ip", "127.0.0.1"), id("digest", U_P)]);
        // Same again: a set.
        assert_eq!(
            p.add_auth(&mut auth, "digest", b"u:p"),
            Ok(id("digest", U_P))
        );
        assert_eq!(auth.ids().len(), 2);
        // Wrong passwords and colon-less data still "succeed".
        assert!(p.add_auth(&mut auth, "digest", b"u:wrong").is_ok());
        assert!(p.add_auth(&mut auth, "digest", b"nocolon").is_ok());
        assert!(p.add_auth(&mut auth, "digest", b"").is_ok());
        assert!(p.add_auth(&mut auth, "digest", &[0xff, b':', b'p']).is_ok());
        assert!(!auth.is_super());
        assert_eq!(auth.ids().len(), 6);
    }

    #[test]
    fn unknown_schemes_fail_auth() {
        let p = AclPolicy::default();
        let mut auth = localhost();
        for scheme in [
            "foo", "world", "super", "auth", "sasl", "x509", "", "DIGEST",
        ] {
            assert_eq!(
                p.add_auth(&mut auth, scheme, b"u:p"),
                Err(ErrorCode(err::AUTH_FAILED)),
                "{scheme}"
            );
        }
        assert_eq!(auth.ids().len(), 1);
        let disabled = AclPolicy {
            digest_enabled: false,
            ..AclPolicy::default()
        };
        assert_eq!(
            disabled.add_auth(&mut auth, "digest", b"u:p"),
            Err(ErrorCode(err::AUTH_FAILED))
        );
    }

    #[test]
    fn ip_auth_readds_own_address() {
        let p = AclPolicy::default();
        let mut auth = localhost();
        assert_eq!(
            p.add_auth(&mut auth, "ip", b"10.0.0.1"),
            Ok(id("ip", "127.0.0.1"))
        );
        assert_eq!(auth.ids(), &[id("ip", "127.0.0.1")]);
    }

    #[test]
    fn super_digest() {
        let p = AclPolicy::with_super_password("secret");
        assert_eq!(p.super_digest.as_deref(), Some(SUPER_SECRET_DIGEST));
        let mut auth = localhost();
        p.add_auth(&mut auth, "digest", b"super:wrong").unwrap();
        assert!(!auth.is_super());
        assert_eq!(
            p.add_auth(&mut auth, "digest", b"super:secret"),
            Ok(id("digest", SUPER_SECRET_DIGEST))
        );
        assert!(auth.is_super());
        assert!(auth.ids().contains(&id("super", "")));
        // Super passes everything, even an ACL that names nobody it has.
        let locked = [acl(R, "digest", U_P)];
        for perm in [R, W, C, D, A] {
            assert_eq!(p.check_perm(&locked, auth.ids(), perm), Ok(()));
        }
        assert_eq!(
            p.check_perm(&[acl(0, "ip", "10.0.0.1")], auth.ids(), A),
            Ok(())
        );
        assert_eq!(p.get_acl(&locked, auth.ids()), Ok(locked.to_vec()));
        // whoAmI: the super id has no provider, so no user.
        let who = p.who_am_i(auth.ids());
        assert!(who.contains(&ClientInfo {
            auth_scheme: "super".into(),
            user: String::new()
        }));
        // An "auth" ACL does not expand to the super id.
        assert_eq!(
            p.fixup_acl(&[acl(ALL, "auth", "")], auth.ids()),
            Ok(vec![
                acl(ALL, "digest", &generate_digest("super:wrong")),
                acl(ALL, "digest", SUPER_SECRET_DIGEST),
            ])
        );
        // Without a super digest configured nobody is super.
        let plain = AclPolicy::default();
        let mut auth = localhost();
        plain
            .add_auth(&mut auth, "digest", b"super:secret")
            .unwrap();
        assert!(!auth.is_super());
    }

    #[test]
    fn who_am_i_reports_users() {
        let p = AclPolicy::default();
        let mut auth = localhost();
        p.add_auth(&mut auth, "digest", b"u:p").unwrap();
        assert_eq!(
            p.who_am_i(auth.ids()),
            vec![
                ClientInfo {
                    auth_scheme: "ip".into(),
                    user: "127.0.0.1".into()
                },
                ClientInfo {
                    auth_scheme: "digest".into(),
                    user: "u".into()
                },
            ]
        );
    }

    #[test]
    fn fixup_empty_and_duplicates() {
        let p = AclPolicy::default();
        let ids = localhost().ids().to_vec();
        assert_eq!(p.fixup_acl(&[], &ids), invalid());
        let world = acl(ALL, "world", "anyone");
        assert_eq!(
            p.fixup_acl(&[world.clone(), world.clone()], &ids),
            Ok(vec![world.clone()])
        );
        // Different perms are different entries.
        let read = acl(R, "world", "anyone");
        assert_eq!(
            p.fixup_acl(&[world.clone(), read.clone()], &ids),
            Ok(vec![world, read])
        );
        // Perms are not validated.
        assert_eq!(
            p.fixup_acl(&[acl(0, "world", "anyone")], &ids),
            Ok(vec![acl(0, "world", "anyone")])
        );
        assert_eq!(
            p.fixup_acl(&[acl(0x7f, "ip", "1.2.3.4")], &ids),
            Ok(vec![acl(0x7f, "ip", "1.2.3.4")])
        );
    }

    #[test]
    fn fixup_world_must_be_anyone() {
        let p = AclPolicy::default();
        let ids = localhost().ids().to_vec();
        assert_eq!(
            p.fixup_acl(&[acl(ALL, "world", "everyone")], &ids),
            invalid()
        );
        assert_eq!(p.fixup_acl(&[acl(ALL, "world", "")], &ids), invalid());
        assert_eq!(p.fixup_acl(&[acl(ALL, "World", "anyone")], &ids), invalid());
    }

    #[test]
    fn fixup_auth_expands_to_authenticated_ids() {
        let p = AclPolicy::default();
        let mut auth = localhost();
        // Only an ip id: not an authenticated provider → InvalidACL.
        assert_eq!(p.fixup_acl(&[acl(ALL, "auth", "")], auth.ids()), invalid());
        p.add_auth(&mut auth, "digest", b"u:p").unwrap();
        p.add_auth(&mut auth, "digest", b"v:q").unwrap();
        let v_q = generate_digest("v:q");
        // The id of the auth entry is ignored; perms carry over.
        assert_eq!(
            p.fixup_acl(&[acl(R | W, "auth", "whatever")], auth.ids()),
            Ok(vec![acl(R | W, "digest", U_P), acl(R | W, "digest", &v_q)])
        );
        // Mixed with others, in order; expansion duplicates are kept.
        assert_eq!(
            p.fixup_acl(
                &[
                    acl(R, "world", "anyone"),
                    acl(ALL, "auth", ""),
                    acl(ALL, "digest", U_P)
                ],
                auth.ids()
            ),
            Ok(vec![
                acl(R, "world", "anyone"),
                acl(ALL, "digest", U_P),
                acl(ALL, "digest", &v_q),
                acl(ALL, "digest", U_P),
            ])
        );
        // One bad entry fails the whole list.
        assert_eq!(
            p.fixup_acl(&[acl(ALL, "auth", ""), acl(ALL, "foo", "bar")], auth.ids()),
            invalid()
        );
    }

    #[test]
    fn fixup_validates_digest_and_ip_ids() {
        let p = AclPolicy::default();
        let ids = localhost().ids().to_vec();
        let ok = |a: Acl| assert_eq!(p.fixup_acl(std::slice::from_ref(&a), &ids), Ok(vec![a]));
        let bad = |a: Acl| {
            assert_eq!(
                p.fixup_acl(std::slice::from_ref(&a), &ids),
                invalid(),
                "{a:?}"
            )
        };
        ok(acl(ALL, "digest", U_P));
        ok(acl(ALL, "digest", "user:anything"));
        ok(acl(ALL, "digest", ":hash"));
        bad(acl(ALL, "digest", "user"));
        bad(acl(ALL, "digest", "user:"));
        bad(acl(ALL, "digest", "a:b:c"));
        bad(acl(ALL, "digest", "a::"));
        bad(acl(ALL, "digest", ":"));
        bad(acl(ALL, "digest", ""));
        ok(acl(ALL, "ip", "127.0.0.1"));
        ok(acl(ALL, "ip", "10.0.0.0/8"));
        ok(acl(ALL, "ip", "10.0.0.0/0"));
        ok(acl(ALL, "ip", "10.0.0.0/32"));
        ok(acl(ALL, "ip", "010.0.0.+1"));
        ok(acl(ALL, "ip", "10.0.0.0/+8"));
        bad(acl(ALL, "ip", "10.0.0.0/33"));
        bad(acl(ALL, "ip", "10.0.0.0/-1"));
        bad(acl(ALL, "ip", "10.0.0.0/"));
        bad(acl(ALL, "ip", "10.0.0.0/x"));
        bad(acl(ALL, "ip", "10.0.0"));
        bad(acl(ALL, "ip", "10.0.0.0."));
        bad(acl(ALL, "ip", "10.0.0.256"));
        bad(acl(ALL, "ip", "localhost"));
        bad(acl(ALL, "ip", ""));
        ok(acl(ALL, "ip", "::1"));
        ok(acl(ALL, "ip", "0:0:0:0:0:0:0:1"));
        ok(acl(ALL, "ip", "2001:db8::/32"));
        ok(acl(ALL, "ip", "fe80::/128"));
        bad(acl(ALL, "ip", "fe80::/129"));
        bad(acl(ALL, "ip", "1:2:3:4:5:6:7:8::"));
        bad(acl(ALL, "ip", "1::2::3"));
        bad(acl(ALL, "ip", "::ffff:1.2.3.4"));
        bad(acl(ALL, "ip", "12345::"));
        bad(acl(ALL, "ip", "1:2:3"));
        for scheme in ["super", "sasl", "x509", "foo", ""] {
            bad(acl(ALL, scheme, "u"));
        }
        // ZooKeeper 3.8: IPv4 only.
        let v4_only = AclPolicy {
            ipv6: false,
            ..AclPolicy::default()
        };
        assert_eq!(v4_only.fixup_acl(&[acl(ALL, "ip", "::1")], &ids), invalid());
        assert!(v4_only
            .fixup_acl(&[acl(ALL, "ip", "1.2.3.4/24")], &ids)
            .is_ok());
        // Digest disabled: digest ACLs are unknown.
        let no_digest = AclPolicy {
            digest_enabled: false,
            ..AclPolicy::default()
        };
        assert_eq!(
            no_digest.fixup_acl(&[acl(ALL, "digest", U_P)], &ids),
            invalid()
        );
    }

    #[test]
    fn check_world_and_empty() {
        let p = AclPolicy::default();
        let ids = localhost().ids().to_vec();
        assert_eq!(
            p.check_perm(&[acl(ALL, "world", "anyone")], &ids, W),
            Ok(())
        );
        assert_eq!(p.check_perm(&[acl(R, "world", "anyone")], &ids, R), Ok(()));
        assert_eq!(
            p.check_perm(&[acl(R, "world", "anyone")], &ids, W),
            no_auth()
        );
        // An empty ACL allows everything (checkACL returns early).
        assert_eq!(p.check_perm(&[], &ids, A), Ok(()));
        // No auth ids at all: only world works.
        assert_eq!(
            p.check_perm(&[acl(R, "ip", "127.0.0.1")], &[], R),
            no_auth()
        );
        assert_eq!(p.check_perm(&[acl(R, "world", "anyone")], &[], R), Ok(()));
        // world with another id, or unknown schemes, match nobody.
        assert_eq!(
            p.check_perm(&[acl(ALL, "world", "everyone")], &ids, R),
            no_auth()
        );
        assert_eq!(
            p.check_perm(
                &[acl(ALL, "foo", "127.0.0.1")],
                &[id("foo", "127.0.0.1")],
                R
            ),
            no_auth()
        );
        // Any bit of a combined perm suffices.
        assert_eq!(
            p.check_perm(&[acl(A, "world", "anyone")], &ids, R | A),
            Ok(())
        );
        // skipACL.
        let skip = AclPolicy {
            skip_acl: true,
            ..AclPolicy::default()
        };
        assert_eq!(skip.check_perm(&[acl(0, "digest", U_P)], &ids, A), Ok(()));
    }

    #[test]
    fn check_digest_exact_match() {
        let p = AclPolicy::default();
        let mut auth = localhost();
        let node = [acl(R | W, "digest", U_P)];
        assert_eq!(p.check_perm(&node, auth.ids(), R), no_auth());
        p.add_auth(&mut auth, "digest", b"u:wrong").unwrap();
        assert_eq!(p.check_perm(&node, auth.ids(), R), no_auth());
        p.add_auth(&mut auth, "digest", b"u:p").unwrap();
        assert_eq!(p.check_perm(&node, auth.ids(), R), Ok(()));
        assert_eq!(p.check_perm(&node, auth.ids(), W), Ok(()));
        assert_eq!(p.check_perm(&node, auth.ids(), D), no_auth());
        // Scheme must match too: an ip id with the same text does not count.
        assert_eq!(p.check_perm(&node, &[id("ip", U_P)], R), no_auth());
        // Digest disabled: never matches.
        let off = AclPolicy {
            digest_enabled: false,
            ..AclPolicy::default()
        };
        assert_eq!(off.check_perm(&node, auth.ids(), R), no_auth());
    }

    #[test]
    fn check_ipv4_and_cidr() {
        let p = AclPolicy::default();
        let client = |s: &str| vec![id("ip", s)];
        let node = |expr: &str| [acl(R, "ip", expr)];
        let yes = |expr: &str, c: &str| {
            assert_eq!(
                p.check_perm(&node(expr), &client(c), R),
                Ok(()),
                "{expr} {c}"
            )
        };
        let no = |expr: &str, c: &str| {
            assert_eq!(
                p.check_perm(&node(expr), &client(c), R),
                no_auth(),
                "{expr} {c}"
            )
        };
        yes("127.0.0.1", "127.0.0.1");
        no("127.0.0.1", "127.0.0.2");
        yes("10.0.0.0/8", "10.255.1.2");
        no("10.0.0.0/8", "11.0.0.1");
        yes("10.1.2.3/8", "10.9.9.9"); // host bits of the ACL are masked too
        yes("192.168.1.0/24", "192.168.1.200");
        no("192.168.1.0/24", "192.168.2.1");
        yes("192.168.1.128/25", "192.168.1.255");
        no("192.168.1.128/25", "192.168.1.127");
        yes("172.16.0.0/12", "172.31.255.255");
        no("172.16.0.0/12", "172.32.0.0");
        yes("1.2.3.4/0", "200.1.1.1");
        yes("1.2.3.4/32", "1.2.3.4");
        no("1.2.3.4/33", "1.2.3.4");
        no("1.2.3.4/", "1.2.3.4");
        no("bogus", "1.2.3.4");
        no("1.2.3.4", "bogus");
        // The connection's own ip id is what matches.
        assert_eq!(
            p.check_perm(&node("127.0.0.0/8"), localhost().ids(), R),
            Ok(())
        );
        // Java parseInt leniency is reproduced.
        yes("001.2.3.4", "1.2.3.+4");
    }

    #[test]
    fn check_ipv6() {
        let p = AclPolicy::default();
        let v6 = AuthInfo::new(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(v6.ids(), &[id("ip", "0:0:0:0:0:0:0:1")]);
        let check = |expr: &str, ids: &[Id]| p.check_perm(&[acl(R, "ip", expr)], ids, R);
        assert_eq!(check("::1", v6.ids()), Ok(()));
        assert_eq!(check("0:0:0:0:0:0:0:1/128", v6.ids()), Ok(()));
        assert_eq!(check("::2", v6.ids()), no_auth());
        assert_eq!(check("::/0", v6.ids()), Ok(()));
        let client = AuthInfo::new("2001:db8:85a3::8a2e:370:7334".parse::<IpAddr>().unwrap());
        assert_eq!(check("2001:db8::/32", client.ids()), Ok(()));
        assert_eq!(check("2001:db8:85a3::/48", client.ids()), Ok(()));
        assert_eq!(check("2001:db9::/32", client.ids()), no_auth());
        assert_eq!(
            check("2001:0DB8:85A3:0:0:8A2E:0370:7334", client.ids()),
            Ok(())
        );
        assert_eq!(
            check("2001:db8:85a3::8a2e:370:7334/127", client.ids()),
            Ok(())
        );
        // v4 vs v6 never match each other, even with /0.
        assert_eq!(check("0.0.0.0/0", v6.ids()), no_auth());
        assert_eq!(check("::/0", localhost().ids()), no_auth());
        // IPv4-mapped clients present as IPv4.
        let mapped = AuthInfo::new("::ffff:10.1.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(check("10.0.0.0/8", mapped.ids()), Ok(()));
        // ZooKeeper 3.8 (IPv4 only): IPv6 never matches.
        let v4_only = AclPolicy {
            ipv6: false,
            ..AclPolicy::default()
        };
        assert_eq!(
            v4_only.check_perm(&[acl(R, "ip", "::1")], v6.ids(), R),
            no_auth()
        );
        assert_eq!(
            v4_only.check_perm(&[acl(R, "ip", "127.0.0.1")], localhost().ids(), R),
            Ok(())
        );
    }

    #[test]
    fn check_scans_all_entries() {
        let p = AclPolicy::default();
        let mut auth = localhost();
        p.add_auth(&mut auth, "digest", b"u:p").unwrap();
        let node = [
            acl(R, "ip", "10.0.0.1"),
            acl(W, "digest", U_P),
            acl(C, "ip", "127.0.0.1"),
            acl(D, "world", "anyone"),
        ];
        assert_eq!(p.check_perm(&node, auth.ids(), R), no_auth());
        assert_eq!(p.check_perm(&node, auth.ids(), W), Ok(()));
        assert_eq!(p.check_perm(&node, auth.ids(), C), Ok(()));
        assert_eq!(p.check_perm(&node, auth.ids(), D), Ok(()));
        assert_eq!(p.check_perm(&node, auth.ids(), A), no_auth());
    }

    #[test]
    fn get_acl_masks_digests_without_admin() {
        let p = AclPolicy::default();
        let node = vec![
            acl(R, "world", "anyone"),
            acl(ALL, "digest", U_P),
            acl(R, "ip", "10.0.0.0/8"),
        ];
        // Reader without ADMIN: digest ids masked, others untouched.
        assert_eq!(
            p.get_acl(&node, localhost().ids()),
            Ok(vec![
                acl(R, "world", "anyone"),
                acl(ALL, "digest", "u:x"),
                acl(R, "ip", "10.0.0.0/8"),
            ])
        );
        // The owner (ADMIN) sees everything.
        let mut owner = localhost();
        p.add_auth(&mut owner, "digest", b"u:p").unwrap();
        assert_eq!(p.get_acl(&node, owner.ids()), Ok(node.clone()));
        // Neither READ nor ADMIN: NoAuth.
        let locked = vec![acl(W, "world", "anyone"), acl(ALL, "digest", U_P)];
        assert_eq!(
            p.get_acl(&locked, localhost().ids()),
            Err(ErrorCode(err::NO_AUTH))
        );
        // ADMIN alone suffices to read the ACL, unmasked.
        let admin_only = vec![acl(A, "world", "anyone"), acl(R, "digest", U_P)];
        assert_eq!(
            p.get_acl(&admin_only, localhost().ids()),
            Ok(admin_only.clone())
        );
        // Empty ACL: allowed, nothing to mask.
        assert_eq!(p.get_acl(&[], localhost().ids()), Ok(vec![]));
    }

    #[test]
    fn mask_like_java_replace_all() {
        assert_eq!(java_mask_colon_rest("bob:abc"), "bob:x");
        assert_eq!(java_mask_colon_rest("bob:a:b"), "bob:x");
        assert_eq!(java_mask_colon_rest(":abc"), ":x");
        assert_eq!(java_mask_colon_rest("nocolon"), "nocolon");
        // Printed by jshell: "bob:abc\nx:y".replaceAll(":.*", ":x").
        assert_eq!(java_mask_colon_rest("bob:abc\nx:y"), "bob:x\nx:x");
        assert_eq!(
            mask_digests(&[acl(1, "ip", "a:b")]),
            vec![acl(1, "ip", "a:b")],
            "only digest ids are masked"
        );
    }

    #[test]
    fn java_helpers() {
        assert_eq!(java_split_len("a:b", ':'), 2);
        assert_eq!(java_split_len("a:", ':'), 1);
        assert_eq!(java_split_len(":b", ':'), 2);
        assert_eq!(java_split_len("a", ':'), 1);
        assert_eq!(java_split_len("", ':'), 1);
        assert_eq!(java_split_len("::", ':'), 0);
        assert_eq!(java_parse_int("+1", 10), Some(1));
        assert_eq!(java_parse_int("-0", 10), Some(0));
        assert_eq!(java_parse_int("01", 10), Some(1));
        assert_eq!(java_parse_int("1_0", 10), None);
        assert_eq!(java_parse_int(" 1", 10), None);
        assert_eq!(java_parse_int("+", 10), None);
        assert_eq!(java_parse_int("", 10), None);
        assert_eq!(java_parse_int("2147483647", 10), Some(i32::MAX));
        assert_eq!(java_parse_int("-2147483648", 10), Some(i32::MIN));
        assert_eq!(java_parse_int("2147483648", 10), None);
        assert_eq!(java_parse_int("fFfF", 16), Some(0xffff));
        let mut b = [0xffu8; 4];
        mask(&mut b, 12);
        assert_eq!(b, [0xff, 0xf0, 0, 0]);
        let mut b = [0xffu8; 4];
        mask(&mut b, 32);
        assert_eq!(b, [0xff; 4]);
        let mut b = [0xffu8; 4];
        mask(&mut b, 0);
        assert_eq!(b, [0; 4]);
        assert_eq!(
            v6_addr_to_bytes("::1").unwrap(),
            Ipv6Addr::LOCALHOST.octets()
        );
        assert_eq!(v6_addr_to_bytes("1::").unwrap()[..2], [0, 1]);
        assert_eq!(v6_addr_to_bytes("::"), Some([0; 16]));
        assert_eq!(v6_addr_to_bytes(":::"), None);
    }

    #[test]
    fn sasl_and_x509_ids_validate_and_match_as_zookeeper() {
        let off = AclPolicy::default();
        let on = AclPolicy {
            sasl_enabled: true,
            x509_enabled: true,
            x509_super_user: Some("CN=admin,O=zkit".into()),
            ..AclPolicy::default()
        };
        // Without their providers the schemes are unknown.
        assert!(!off.is_valid_id(&id("sasl", "bob")));
        assert!(!off.is_valid_id(&id("x509", "CN=a")));
        // KerberosName: anything without '@'; with '@', primary[/instance]@REALM.
        for ok in ["bob", "a/b/c", "svc/host@REALM", "bob@R", ""] {
            assert!(on.is_valid_id(&id("sasl", ok)), "{ok:?}");
        }
        for bad in ["a@b@c", "a/b/c@R", "a@R/x"] {
            assert!(!on.is_valid_id(&id("sasl", bad)), "{bad:?}");
        }
        // X500Principal: type=value pairs.
        for ok in [
            "CN=alice,OU=tests,O=zkit",
            "CN=a+UID=b",
            "1.2.3=#0101",
            "CN=a\\,b",
            "",
        ] {
            assert!(on.is_valid_id(&id("x509", ok)), "{ok:?}");
        }
        for bad in ["alice", "CN=a,bob", "=x", "CN=\"open"] {
            assert!(!on.is_valid_id(&id("x509", bad)), "{bad:?}");
        }
        let x = |i: &str| acl(perms::READ, "x509", i);
        let client = [id("x509", "CN=client,O=zkit")];
        assert_eq!(
            on.check_perm(&[x("CN=client,O=zkit")], &client, perms::READ),
            Ok(())
        );
        assert_eq!(
            on.check_perm(&[x("CN=other")], &client, perms::READ),
            no_auth()
        );
        // The x509 super user matches every x509 entry.
        let admin = [id("x509", "CN=admin,O=zkit")];
        assert_eq!(on.check_perm(&[x("CN=other")], &admin, perms::READ), Ok(()));
        // `auth` expands to sasl and x509 ids, not ip.
        let ids = [id("ip", "127.0.0.1"), id("sasl", "bob"), id("x509", "CN=c")];
        assert_eq!(
            on.fixup_acl(&[acl(perms::ALL, "auth", "")], &ids),
            Ok(vec![
                acl(perms::ALL, "sasl", "bob"),
                acl(perms::ALL, "x509", "CN=c")
            ])
        );
        assert_eq!(
            off.fixup_acl(&[acl(perms::ALL, "auth", "")], &ids),
            invalid()
        );
    }
}
