//! `dump` and `restore`: a subtree as one JSON document.
//!
//! ```json
//! {"format": "zkit-dump", "version": 1, "root": "/app", "nodes": [
//!   {"path": "/app", "mode": "persistent", "data": "<base64>",
//!    "acl": [{"scheme": "world", "id": "anyone", "perms": "cdrwa"}], "stat": {...}},
//!   {"path": "/app/locks", "mode": "container", ...},
//!   {"path": "/app/beat", "mode": "ttl", "ttl_ms": 60000, ...}, ...]}
//! ```
//!
//! Nodes are listed parents first. Restore creates what is missing, sets
//! the data and ACL of nodes that differ, and leaves equal nodes alone, so
//! running it twice changes nothing the second time.
//!
//! **Modes.** Each node carries its mode, and restore creates a missing
//! node in it (createContainer, createTTL; the TTL counts from the
//! restore). ZooKeeper hides containers and TTL nodes from clients: their
//! Stat reads `ephemeralOwner` 0, as a persistent node's does
//! (`DataNode.getClientEphemeralOwner`; PROTOCOL.md §4.9), and no request
//! reveals them. So a dump records `container` and `ttl` only for the nodes
//! the operator names (`--container`, `--ttl`); every other node with
//! owner 0 is recorded `persistent`. An existing node keeps its mode
//! (ZooKeeper cannot change it). Dumps written before modes were recorded
//! have no `mode`: their nodes are ephemeral when `stat.ephemeral_owner` is
//! set, else persistent.
//!
//! **Ephemerals** are dumped (mode `ephemeral`, the owner in
//! `stat.ephemeral_owner`) unless `--no-ephemerals`, and never restored:
//! their sessions are gone.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;
use zkit::{Acl, CreateMode, CreateOptions, Stat, Version};

use crate::args::{DumpArgs, RestoreArgs};
use crate::conn::Ctx;
use crate::error::CliError;
use crate::output::{base64_decode, base64_encode, join, parse_perms, stat_json};

const FORMAT: &str = "zkit-dump";
const VERSION: u32 = 1;

/// The dump document.
#[derive(Debug, Serialize, Deserialize)]
struct Dump {
    format: String,
    version: u32,
    root: String,
    nodes: Vec<DumpNode>,
}

/// One node of a dump.
#[derive(Debug, Serialize, Deserialize)]
struct DumpNode {
    path: String,
    /// How to create the node; absent in dumps made before modes were
    /// recorded (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<Mode>,
    /// The TTL of a `ttl` node, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
    /// The data, base64.
    data: String,
    acl: Vec<DumpAcl>,
    /// The node's stat when dumped (informative; restore does not need it).
    #[serde(default)]
    stat: Value,
}

/// A node's mode as a dump records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// A plain persistent node (sequential ones are restored under their
    /// full name, so they are persistent too).
    Persistent,
    /// Owned by a session; never restored.
    Ephemeral,
    /// Deleted by the server once its last child is gone.
    Container,
    /// Deleted by the server once childless and unmodified for `ttl_ms`.
    Ttl,
}

/// What a dump is told about modes the server does not show: nodes that
/// are containers, and nodes that are TTL nodes (with their TTL).
#[derive(Debug, Default)]
struct Declared {
    containers: Vec<Pattern>,
    ttls: Vec<(Pattern, u64)>,
}

/// A `--container` / `--ttl` path pattern, with how many nodes it matched.
#[derive(Debug)]
struct Pattern {
    text: String,
    matched: usize,
}

impl Declared {
    /// Parses `--container PATTERN` and `--ttl PATTERN=MS`.
    fn parse(containers: &[String], ttls: &[String]) -> Result<Self, CliError> {
        let pattern = |flag: &str, p: &str| {
            if p.starts_with('/') {
                Ok(Pattern {
                    text: p.to_string(),
                    matched: 0,
                })
            } else {
                Err(CliError::usage(format!(
                    "{flag} {p:?}: a pattern is an absolute path (with * and **)"
                )))
            }
        };
        let mut declared = Self::default();
        for c in containers {
            declared.containers.push(pattern("--container", c)?);
        }
        for t in ttls {
            let (p, ms) = t
                .rsplit_once('=')
                .ok_or_else(|| CliError::usage(format!("--ttl {t:?}: expected PATTERN=MS")))?;
            let ms = ms
                .parse::<u64>()
                .ok()
                .filter(|ms| valid_ttl(*ms))
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "--ttl {t:?}: the TTL is 1 ..= {} milliseconds",
                        zkit::MAX_TTL.as_millis()
                    ))
                })?;
            declared.ttls.push((pattern("--ttl", p)?, ms));
        }
        Ok(declared)
    }

    /// The mode to record for the node at `path` with `stat`: ephemeral
    /// as the server shows it, else as declared, else persistent.
    fn mode(&mut self, path: &str, stat: &Stat) -> Result<(Mode, Option<u64>), CliError> {
        let mut container = false;
        for p in &mut self.containers {
            if glob_match(&p.text, path) {
                p.matched += 1;
                container = true;
            }
        }
        let mut ttl = None;
        for (p, ms) in &mut self.ttls {
            if glob_match(&p.text, path) {
                p.matched += 1;
                ttl.get_or_insert(*ms);
            }
        }
        if stat.ephemeral_owner != 0 {
            if container || ttl.is_some() {
                eprintln!(
                    "zkit: {path} is ephemeral (owner {:#x}): recorded as ephemeral, not as declared",
                    stat.ephemeral_owner
                );
            }
            return Ok((Mode::Ephemeral, None));
        }
        match (container, ttl) {
            (true, Some(_)) => Err(CliError::usage(format!(
                "{path} matches both --container and --ttl"
            ))),
            (true, None) => Ok((Mode::Container, None)),
            (false, Some(ms)) => Ok((Mode::Ttl, Some(ms))),
            (false, None) => Ok((Mode::Persistent, None)),
        }
    }

    /// Warns about patterns that matched no node (likely a typo).
    fn warn_unmatched(&self) {
        let flags = self
            .containers
            .iter()
            .map(|p| ("--container", p))
            .chain(self.ttls.iter().map(|(p, _)| ("--ttl", p)));
        for (flag, p) in flags {
            if p.matched == 0 {
                eprintln!("zkit: {flag} {} matched no node", p.text);
            }
        }
    }
}

/// Whether `ms` is a TTL ZooKeeper accepts (1 ms ..= 2^40 - 1 ms).
fn valid_ttl(ms: u64) -> bool {
    ms > 0 && u128::from(ms) <= zkit::MAX_TTL.as_millis()
}

/// Whether `path` matches `pattern`: `**` matches any characters, `*`
/// any except `/`, everything else itself.
fn glob_match(pattern: &str, path: &str) -> bool {
    /// Matches pattern bytes `p` against path bytes `s`.
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p {
            [] => s.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| go(rest, &s[i..])),
            [b'*', rest @ ..] => {
                let segment = s.iter().position(|&b| b == b'/').unwrap_or(s.len());
                (0..=segment).any(|i| go(rest, &s[i..]))
            }
            [c, rest @ ..] => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

/// One ACL entry: `perms` in `cdrwa` letters.
#[derive(Debug, Serialize, Deserialize)]
struct DumpAcl {
    scheme: String,
    id: String,
    perms: String,
}

/// Spaces operations out to at most `rate` per second.
#[derive(Debug)]
struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    fn new(rate: Option<u32>) -> Self {
        Self {
            interval: rate
                .filter(|r| *r > 0)
                .map(|r| Duration::from_secs_f64(1.0 / f64::from(r))),
            next: Instant::now(),
        }
    }

    /// Waits for the next operation's turn.
    async fn tick(&mut self) {
        if let Some(interval) = self.interval {
            tokio::time::sleep_until(self.next).await;
            self.next = self.next.max(Instant::now()) + interval;
        }
    }

    /// How many operations may be in flight at once: one when paced.
    fn window(&self) -> usize {
        if self.interval.is_some() {
            1
        } else {
            crate::basic::WINDOW
        }
    }
}

/// A progress bar on stderr when it is a terminal (and not `--quiet`).
fn progress(len: Option<u64>, quiet: bool, what: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match len {
        Some(n) => {
            let bar = ProgressBar::new(n);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:40}] {pos}/{len} nodes ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{prefix} {spinner} {pos} nodes ({per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(what.to_string());
            bar
        }
    }
}

/// `dump`.
pub(crate) async fn dump(ctx: &Ctx, a: DumpArgs) -> Result<(), CliError> {
    let what = format!("dump {}", a.path);
    let mut declared = Declared::parse(&a.containers, &a.ttls)?;
    // The size for the bar (ZooKeeper 3.6+; a spinner otherwise).
    let total = ctx
        .zk
        .get_all_children_number(&a.path)
        .await
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .map(|n| n + 1);
    let bar = progress(total, a.quiet, "dump");
    let mut pacer = Pacer::new(a.rate);
    let mut nodes = Vec::new();
    let mut level = vec![a.path.clone()];
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(pacer.window()) {
            let mut calls = Vec::new();
            for p in chunk {
                pacer.tick().await;
                // Pipelined: each request is sent when called.
                calls.push((
                    ctx.zk.get_data(p),
                    ctx.zk.get_acl(p),
                    ctx.zk.get_children(p),
                ));
            }
            for (p, (data, acl, children)) in chunk.iter().zip(calls) {
                let node =
                    async { Ok::<_, zkit::Error>((data.await?, acl.await?, children.await?)) };
                match node.await {
                    Ok(((data, stat), (acl, _), (mut children, _))) => {
                        children.sort();
                        // ZooKeeper's own subtree (quotas, config) is not data.
                        next.extend(
                            children
                                .iter()
                                .map(|c| join(p, c))
                                .filter(|c| c != "/zookeeper"),
                        );
                        bar.inc(1);
                        if a.no_ephemerals && stat.ephemeral_owner != 0 {
                            continue;
                        }
                        let (mode, ttl_ms) = match declared.mode(p, &stat) {
                            Ok(m) => m,
                            Err(e) => {
                                bar.abandon();
                                return Err(e);
                            }
                        };
                        nodes.push(DumpNode {
                            path: p.clone(),
                            mode: Some(mode),
                            ttl_ms,
                            data: base64_encode(&data),
                            acl: acl
                                .iter()
                                .map(|e| DumpAcl {
                                    scheme: e.id.scheme.clone(),
                                    id: e.id.id.clone(),
                                    perms: crate::output::perms_string(e.perms),
                                })
                                .collect(),
                            stat: stat_json(&stat),
                        });
                    }
                    // Deleted while we walked (the root must exist).
                    Err(zkit::Error::NoNode) if *p != a.path => {}
                    Err(e) => {
                        bar.abandon();
                        return Err(ctx.err(&what)(e));
                    }
                }
            }
        }
        level = next;
    }
    bar.finish_and_clear();
    declared.warn_unmatched();
    let doc = Dump {
        format: FORMAT.into(),
        version: VERSION,
        root: a.path.clone(),
        nodes,
    };
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| CliError::usage(format!("cannot encode the dump: {e}")))?;
    println!("{text}");
    let count = |m: Mode| doc.nodes.iter().filter(|n| n.mode == Some(m)).count();
    let mut modes = Vec::new();
    for (n, what) in [
        (count(Mode::Container), "container"),
        (count(Mode::Ttl), "TTL"),
    ] {
        if n > 0 {
            modes.push(format!("{n} {what}"));
        }
    }
    let modes = if modes.is_empty() {
        String::new()
    } else {
        format!(" ({} as declared)", modes.join(", "))
    };
    eprintln!("dumped {} nodes under {}{modes}", doc.nodes.len(), a.path);
    Ok(())
}

/// What restore did to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    Updated,
    Unchanged,
    SkippedEphemeral,
}

/// One node to restore: where, what, and in which mode (`None`: an
/// ephemeral, skipped).
#[derive(Debug)]
struct Planned {
    path: String,
    data: Vec<u8>,
    acl: Vec<Acl>,
    mode: Option<CreateMode>,
}

/// The create mode of a dumped node: its `mode` (with `ttl_ms`), or for
/// dumps without modes, ephemeral when it had an owner, else persistent.
/// `None` for ephemerals.
fn create_mode(n: &DumpNode) -> Result<Option<CreateMode>, CliError> {
    let mode = n.mode.unwrap_or_else(|| {
        if n.stat.get("ephemeral_owner").is_some_and(|o| !o.is_null()) {
            Mode::Ephemeral
        } else {
            Mode::Persistent
        }
    });
    Ok(match mode {
        Mode::Persistent => Some(CreateMode::Persistent),
        Mode::Ephemeral => None,
        Mode::Container => Some(CreateMode::Container),
        Mode::Ttl => {
            let ms = n.ttl_ms.filter(|ms| valid_ttl(*ms)).ok_or_else(|| {
                CliError::usage(format!(
                    "node {}: mode \"ttl\" needs \"ttl_ms\" in 1 ..= {}",
                    n.path,
                    zkit::MAX_TTL.as_millis()
                ))
            })?;
            Some(CreateMode::PersistentWithTtl(Duration::from_millis(ms)))
        }
    })
}

/// `restore`.
pub(crate) async fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<(), CliError> {
    let text = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(&a.file)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", a.file.display())))?
    };
    let doc: Dump = serde_json::from_str(&text)
        .map_err(|e| CliError::usage(format!("{}: not a zkit dump: {e}", a.file.display())))?;
    if doc.format != FORMAT || doc.version != VERSION {
        return Err(CliError::usage(format!(
            "{}: format {:?} version {} (expected {FORMAT:?} version {VERSION})",
            a.file.display(),
            doc.format,
            doc.version
        )));
    }
    let target = a.to.clone().unwrap_or_else(|| doc.root.clone());
    // Decode everything first: a bad file changes nothing.
    let mut plan = Vec::with_capacity(doc.nodes.len());
    for n in &doc.nodes {
        let rel = n
            .path
            .strip_prefix(doc.root.trim_end_matches('/'))
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| {
                CliError::usage(format!(
                    "node {} is not under the root {}",
                    n.path, doc.root
                ))
            })?;
        let path = if rel.is_empty() {
            target.clone()
        } else {
            format!("{}{rel}", target.trim_end_matches('/'))
        };
        let data = base64_decode(&n.data)
            .map_err(|e| CliError::usage(format!("node {}: data: {e}", n.path)))?;
        let acl = n
            .acl
            .iter()
            .map(|e| {
                parse_perms(&e.perms)
                    .map(|p| Acl::new(zkit::Perms(p), e.scheme.as_str(), e.id.as_str()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CliError::usage(format!("node {}: acl: {e}", n.path)))?;
        let mode = create_mode(n)?;
        plan.push(Planned {
            path,
            data,
            acl,
            mode,
        });
    }
    let bar = progress(Some(plan.len() as u64), a.quiet, "restore");
    let mut pacer = Pacer::new(a.rate);
    let mut counts = [0usize; 4];
    let (mut containers, mut ttls) = (0, 0);
    for node in &plan {
        let outcome = match node.mode {
            None => Outcome::SkippedEphemeral,
            Some(mode) => restore_node(ctx, &mut pacer, node, mode).await?,
        };
        if outcome == Outcome::Created {
            match node.mode {
                Some(CreateMode::Container) => containers += 1,
                Some(CreateMode::PersistentWithTtl(_)) => ttls += 1,
                _ => {}
            }
        }
        counts[outcome as usize] += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let [created, updated, unchanged, skipped] = counts;
    if ctx.out.json {
        ctx.out.json(&json!({
            "root": target,
            "created": created,
            "created_containers": containers,
            "created_ttl": ttls,
            "updated": updated,
            "unchanged": unchanged,
            "skipped_ephemeral": skipped,
        }));
    } else {
        let mut modes = Vec::new();
        if containers > 0 {
            modes.push(format!("{containers} container"));
        }
        if ttls > 0 {
            modes.push(format!("{ttls} TTL"));
        }
        let modes = if modes.is_empty() {
            String::new()
        } else {
            format!(" ({})", modes.join(", "))
        };
        println!(
            "restored {} nodes under {target}: {created} created{modes}, {updated} updated, {unchanged} unchanged, {skipped} ephemeral skipped",
            plan.len()
        );
    }
    Ok(())
}

/// Makes the node at `node.path` hold its data and ACL: create it in
/// `mode`, or update what differs (a node the dump's root maps onto may
/// already exist: its parents are created as needed, persistent). An
/// existing node keeps its mode: ZooKeeper neither shows nor changes it.
async fn restore_node(
    ctx: &Ctx,
    pacer: &mut Pacer,
    node: &Planned,
    mode: CreateMode,
) -> Result<Outcome, CliError> {
    let (path, data, acl) = (node.path.as_str(), node.data.as_slice(), &node.acl);
    let what = format!("restore {path}");
    let options = CreateOptions::new(mode).acl(acl.to_vec());
    pacer.tick().await;
    match ctx.zk.create_all(path, data, &options).await {
        Ok(_) => return Ok(Outcome::Created),
        Err(zkit::Error::NodeExists) => {}
        Err(e) => return Err(ctx.err(&what)(e)),
    }
    pacer.tick().await;
    let (current, _) = ctx.zk.get_data(path).await.map_err(ctx.err(&what))?;
    pacer.tick().await;
    let (current_acl, _) = ctx.zk.get_acl(path).await.map_err(ctx.err(&what))?;
    let mut outcome = Outcome::Unchanged;
    if current.as_ref() != data {
        pacer.tick().await;
        ctx.zk
            .set_data(path, data, Version::Any)
            .await
            .map_err(ctx.err(&what))?;
        outcome = Outcome::Updated;
    }
    if !same_acl(&current_acl, acl) {
        pacer.tick().await;
        ctx.zk
            .set_acl(path, acl, Version::Any)
            .await
            .map_err(ctx.err(&what))?;
        outcome = Outcome::Updated;
    }
    Ok(outcome)
}

/// ACLs compared as sets of entries.
fn same_acl(a: &[Acl], b: &[Acl]) -> bool {
    let key = |acl: &[Acl]| {
        let mut v: Vec<(String, String, i32)> = acl
            .iter()
            .map(|e| (e.id.scheme.clone(), e.id.id.clone(), e.perms))
            .collect();
        v.sort();
        v
    };
    key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_within_and_across_segments() {
        assert!(glob_match("/app/locks", "/app/locks"));
        assert!(!glob_match("/app/locks", "/app/locks/a"));
        assert!(glob_match("/app/locks/*", "/app/locks/db"));
        assert!(!glob_match(
            "/app/locks/*",
            "/app/locks/db/_c_1-lock-0000000001"
        ));
        assert!(!glob_match("/app/locks/*", "/app/locks"));
        assert!(glob_match("/app/*/x", "/app/a/x"));
        assert!(glob_match("/app/**", "/app/a/b/c"));
        assert!(glob_match("/app/**/beat", "/app/a/b/beat"));
        assert!(glob_match("/app/job-*", "/app/job-0000000001"));
        assert!(!glob_match("/app/job-*", "/app/task-1"));
    }

    /// A dump node from its JSON.
    fn node(json: Value) -> DumpNode {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn modes_are_read_with_a_fallback_for_old_dumps() {
        let base = |extra: Value| {
            let mut v = json!({"path": "/a", "data": "", "acl": []});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            node(v)
        };
        assert_eq!(
            create_mode(&base(json!({"mode": "container"}))).unwrap(),
            Some(CreateMode::Container)
        );
        assert_eq!(
            create_mode(&base(json!({"mode": "ttl", "ttl_ms": 5000}))).unwrap(),
            Some(CreateMode::PersistentWithTtl(Duration::from_secs(5)))
        );
        assert!(create_mode(&base(json!({"mode": "ttl"}))).is_err());
        assert!(create_mode(&base(json!({"mode": "ttl", "ttl_ms": 0}))).is_err());
        assert_eq!(
            create_mode(&base(json!({"mode": "ephemeral"}))).unwrap(),
            None
        );
        // No mode (dumps made before modes were recorded).
        assert_eq!(
            create_mode(&base(json!({"stat": {"ephemeral_owner": null}}))).unwrap(),
            Some(CreateMode::Persistent)
        );
        assert_eq!(
            create_mode(&base(json!({"stat": {"ephemeral_owner": "0x1234567"}}))).unwrap(),
            None
        );
        assert!(serde_json::from_value::<DumpNode>(
            json!({"path": "/a", "mode": "sequential", "data": "", "acl": []})
        )
        .is_err());
    }

    #[test]
    fn declarations_give_modes_but_never_override_an_ephemeral() {
        let mut d = Declared::parse(&["/app/locks/*".into()], &["/app/beat=60000".into()]).unwrap();
        let persistent = Stat::default();
        let ephemeral = Stat {
            ephemeral_owner: 0x1234,
            ..Stat::default()
        };
        assert_eq!(
            d.mode("/app/locks/db", &persistent).unwrap(),
            (Mode::Container, None)
        );
        assert_eq!(
            d.mode("/app/beat", &persistent).unwrap(),
            (Mode::Ttl, Some(60_000))
        );
        assert_eq!(
            d.mode("/app/other", &persistent).unwrap(),
            (Mode::Persistent, None)
        );
        assert_eq!(
            d.mode("/app/locks/eph", &ephemeral).unwrap(),
            (Mode::Ephemeral, None)
        );
        let mut both = Declared::parse(&["/x".into()], &["/x=5".into()]).unwrap();
        assert!(both.mode("/x", &persistent).is_err());
        assert!(Declared::parse(&["app".into()], &[]).is_err());
        assert!(Declared::parse(&[], &["/a=0".into()]).is_err());
        assert!(Declared::parse(&[], &["/a".into()]).is_err());
        assert!(Declared::parse(&[], &["/a=1099511627776".into()]).is_err());
    }
}
