//! Recipe inspection: reads the znode layouts that zkit-recipes, Curator and
//! kazoo share (see recipes/src and RECIPES.md) without taking part.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use zkit::{Bytes, Stat};
use zkit_recipes::discovery::ServiceInstance;
use zkit_recipes::leader::LeaderObserver;
use zkit_recipes::scheduler::{Jobs, RunRecord, Schedule};

use crate::args::{JobsArgs, PathArg, QueueArgs, SemaphoreArgs, ServicesArgs};
use crate::conn::Ctx;
use crate::error::CliError;
use crate::output::{
    data_json, data_preview, format_age, format_size, format_time, join, now_ms, owner_json,
    session_hex, Table,
};

// Layout facts of the recipes, from the recipes themselves.
use zkit_recipes::barrier::layout as barrier_layout;
use zkit_recipes::delay_queue::layout as delay_layout;
use zkit_recipes::lock::CONTENDER_MARKERS;
use zkit_recipes::semaphore::layout as semaphore_layout;

/// Fragments of contenders that share the lock with each other (readers).
const READER_MARKERS: &[&str] = &["__READ__", "__rlock__"];

/// The sequence suffix ZooKeeper appended (`%010d` of a signed counter, so
/// `-` and digits after the wrap).
fn sequence(name: &str) -> Option<i32> {
    let digits = name.len().checked_sub(10)?;
    let tail = name.get(digits..)?;
    if tail.bytes().all(|b| b.is_ascii_digit()) {
        // `-2147483648` has 11 characters: a sign before 10 digits that
        // follows a separator.
        let value: i64 = tail.parse().ok()?;
        let signed = value >= 1_000_000_000
            && (name[..digits].ends_with("--") || name[..digits].ends_with("_-"));
        return i32::try_from(if signed { -value } else { value }).ok();
    }
    if tail.starts_with('-') && tail[1..].bytes().all(|b| b.is_ascii_digit()) {
        return tail.parse().ok();
    }
    None
}

/// A lock or election contender: one child node.
#[derive(Debug)]
struct Contender {
    name: String,
    seq: i32,
    reader: bool,
    stat: Stat,
    data: Bytes,
}

/// The contenders under `path` in lock order (wrap-safe: by distance from
/// the earliest sequence number), with their stats and data.
async fn contenders(ctx: &Ctx, path: &str, what: &str) -> Result<Vec<Contender>, CliError> {
    let (children, _) = ctx.zk.get_children(path).await.map_err(ctx.err(what))?;
    contenders_among(ctx, path, children, what).await
}

/// As [`contenders`], an absent `path` having none.
async fn contenders_or_none(ctx: &Ctx, path: &str, what: &str) -> Result<Vec<Contender>, CliError> {
    match ctx.zk.get_children(path).await {
        Ok((children, _)) => contenders_among(ctx, path, children, what).await,
        Err(zkit::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(ctx.err(what)(e)),
    }
}

/// The contenders among `children` of `path`, in lock order.
async fn contenders_among(
    ctx: &Ctx,
    path: &str,
    children: Vec<String>,
    what: &str,
) -> Result<Vec<Contender>, CliError> {
    let mut named: Vec<(String, i32)> = children
        .into_iter()
        .filter(|c| CONTENDER_MARKERS.iter().any(|m| c.contains(m)))
        .filter_map(|c| sequence(&c).map(|s| (c, s)))
        .collect();
    if let Some(anchor) =
        named
            .iter()
            .map(|(_, s)| *s)
            .reduce(|a, b| if b.wrapping_sub(a) < 0 { b } else { a })
    {
        named.sort_by_key(|(name, s)| (s.wrapping_sub(anchor) as u32, name.clone()));
    }
    let calls: Vec<_> = named
        .iter()
        .map(|(n, _)| ctx.zk.get_data(&join(path, n)))
        .collect();
    let mut out = Vec::new();
    for ((name, seq), call) in named.into_iter().zip(calls) {
        match call.await {
            Ok((data, stat)) => out.push(Contender {
                reader: READER_MARKERS.iter().any(|m| name.contains(m)),
                name,
                seq,
                stat,
                data,
            }),
            // Released meanwhile.
            Err(zkit::Error::NoNode) => {}
            Err(e) => return Err(ctx.err(what)(e)),
        }
    }
    Ok(out)
}

/// How many leading contenders hold the lock: the first writer alone, or
/// every reader before the first writer.
fn holders(cs: &[Contender]) -> usize {
    match cs.first() {
        None => 0,
        Some(c) if !c.reader => 1,
        Some(_) => cs.iter().take_while(|c| c.reader).count(),
    }
}

/// `locks`.
pub(crate) async fn locks(ctx: &Ctx, a: PathArg) -> Result<(), CliError> {
    let cs = contenders(ctx, &a.path, &format!("locks {}", a.path)).await?;
    let held = holders(&cs);
    let now = now_ms();
    if ctx.out.json {
        let list: Vec<Value> = cs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (data, encoding) = data_json(&c.data);
                json!({
                    "position": i + 1,
                    "role": if i < held { "holder" } else { "waiter" },
                    "kind": if c.reader { "read" } else { "write" },
                    "node": c.name,
                    "sequence": c.seq,
                    "session": owner_json(c.stat.ephemeral_owner),
                    "created_ms": c.stat.ctime,
                    "data": data,
                    "encoding": encoding,
                })
            })
            .collect();
        ctx.out
            .json(&json!({"path": a.path, "held": held > 0, "contenders": list}));
        return Ok(());
    }
    match cs.first() {
        None => println!("{}: free (no contenders)", a.path),
        Some(c) => println!(
            "{}: held by session {} for {}, {} waiting",
            a.path,
            session_hex(c.stat.ephemeral_owner),
            format_age(now - c.stat.ctime),
            cs.len() - held
        ),
    }
    if cs.is_empty() {
        return Ok(());
    }
    let mut t = Table::new(&["#", "ROLE", "KIND", "SESSION", "SINCE", "NODE", "DATA"]);
    for (i, c) in cs.iter().enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            if i < held { "holder" } else { "waiter" }.into(),
            if c.reader { "read" } else { "write" }.into(),
            session_hex(c.stat.ephemeral_owner),
            format_age(now - c.stat.ctime),
            c.name.clone(),
            data_preview(&c.data, 32),
        ]);
    }
    t.print();
    Ok(())
}

/// `leader`.
pub(crate) async fn leader(ctx: &Ctx, a: PathArg) -> Result<(), CliError> {
    let what = format!("leader {}", a.path);
    // Who leads, as zkit-recipes' observer decides it (any layout).
    let observer = LeaderObserver::observe(&ctx.zk, a.path.clone());
    tokio::time::timeout(Duration::from_secs(10), observer.initialized())
        .await
        .map_err(|_| ctx.err(&what)(zkit::Error::Timeout))?
        .map_err(ctx.err(&what))?;
    let current = observer.current();
    drop(observer);
    // The observer names the leader's node by its path.
    let leader_node = current
        .as_ref()
        .map(|l| l.node.rsplit('/').next().unwrap_or(&l.node).to_string());
    let cs = match contenders(ctx, &a.path, &what).await {
        Err(e) if e.exit_code() == crate::error::EXIT_ZOOKEEPER => Vec::new(),
        r => r?,
    };
    let leader_stat = current.as_ref().and_then(|_| {
        cs.iter()
            .find(|c| Some(&c.name) == leader_node.as_ref())
            .map(|c| &c.stat)
    });
    let now = now_ms();
    if ctx.out.json {
        let leader = current.as_ref().map(|l| {
            json!({
                "id": l.id,
                "node": l.node,
                "fencing_token": l.fencing_token,
                "session": leader_stat.map_or(Value::Null, |s| owner_json(s.ephemeral_owner)),
                "since_ms": leader_stat.map(|s| s.ctime),
            })
        });
        let participants: Vec<Value> = cs
            .iter()
            .map(|c| {
                json!({
                    "id": String::from_utf8_lossy(&c.data),
                    "node": c.name,
                    "sequence": c.seq,
                    "session": owner_json(c.stat.ephemeral_owner),
                    "leader": leader_node.as_ref() == Some(&c.name),
                })
            })
            .collect();
        ctx.out
            .json(&json!({"path": a.path, "leader": leader, "participants": participants}));
        return Ok(());
    }
    match &current {
        None => println!("{}: no leader", a.path),
        Some(l) => println!(
            "{}: leader {:?} (session {}, for {}, fencing token {:#x})",
            a.path,
            l.id,
            leader_stat.map_or("?".into(), |s| session_hex(s.ephemeral_owner)),
            leader_stat.map_or("?".into(), |s| format_age(now - s.ctime)),
            l.fencing_token
        ),
    }
    if !cs.is_empty() {
        let mut t = Table::new(&["#", "ID", "SESSION", "SINCE", "NODE"]);
        for (i, c) in cs.iter().enumerate() {
            let id = String::from_utf8_lossy(&c.data).into_owned();
            let mark = if leader_node.as_ref() == Some(&c.name) {
                format!("{id} *")
            } else {
                id
            };
            t.row(vec![
                (i + 1).to_string(),
                mark,
                session_hex(c.stat.ephemeral_owner),
                format_age(now - c.stat.ctime),
                c.name.clone(),
            ]);
        }
        t.print();
    }
    Ok(())
}

/// `queue`: items `qn-<seq>` (Curator) or `entry-<prio>-<seq>` (kazoo),
/// claims `_claims/<item>`, waiting consumers `_waiters/…`.
pub(crate) async fn queue(ctx: &Ctx, a: QueueArgs) -> Result<(), CliError> {
    let what = format!("queue {}", a.path);
    let (children, _) = ctx.zk.get_children(&a.path).await.map_err(ctx.err(&what))?;
    let mut items: Vec<(String, Option<u16>, i32)> = children
        .iter()
        .filter_map(|c| {
            if let Some(rest) = c.strip_prefix("qn-") {
                return sequence(rest).map(|s| (c.clone(), None, s));
            }
            let rest = c.strip_prefix("entry-")?;
            let prio = rest.split('-').next()?.parse().ok()?;
            sequence(c).map(|s| (c.clone(), Some(prio), s))
        })
        .collect();
    // Priority first (kazoo: lower first), then sequence.
    if let Some(anchor) =
        items
            .iter()
            .map(|i| i.2)
            .reduce(|a, b| if b.wrapping_sub(a) < 0 { b } else { a })
    {
        items.sort_by_key(|(n, p, s)| (*p, s.wrapping_sub(anchor) as u32, n.clone()));
    }
    let claims = owners(ctx, &join(&a.path, "_claims"), &what).await?;
    let waiting = owners(ctx, &join(&a.path, "_waiters"), &what).await?.len();
    let shown: Vec<_> = items.iter().take(a.limit).collect();
    let calls: Vec<_> = shown
        .iter()
        .map(|(n, _, _)| ctx.zk.exists(&join(&a.path, n)))
        .collect();
    let mut stats = Vec::new();
    for call in calls {
        stats.push(call.await.map_err(ctx.err(&what))?);
    }
    let now = now_ms();
    let oldest = shown
        .first()
        .zip(stats.first().cloned().flatten())
        .map(|((n, _, _), s)| (n.clone(), s.ctime));
    if ctx.out.json {
        let list: Vec<Value> = shown
            .iter()
            .zip(&stats)
            .map(|((n, p, s), st)| {
                json!({
                    "item": n,
                    "priority": p,
                    "sequence": s,
                    "size": st.as_ref().map(|s| s.data_length),
                    "created_ms": st.as_ref().map(|s| s.ctime),
                    "claimed_by": claims.get(n).map_or(Value::Null, |o| owner_json(*o)),
                })
            })
            .collect();
        let claims: Vec<Value> = claims
            .iter()
            .map(|(n, o)| json!({"item": n, "session": owner_json(*o)}))
            .collect();
        ctx.out.json(&json!({
            "path": a.path,
            "depth": items.len(),
            "oldest": oldest.as_ref().map(|(n, t)| json!({"item": n, "created_ms": t, "age_ms": now - t})),
            "claims": claims,
            "waiting_consumers": waiting,
            "items": list,
        }));
        return Ok(());
    }
    let head = match &oldest {
        Some((n, t)) => format!(", oldest {n} ({} old)", format_age(now - t)),
        None => String::new(),
    };
    println!(
        "{}: {} items{head}, {} claimed, {} consumers waiting",
        a.path,
        items.len(),
        claims.len(),
        waiting
    );
    if !shown.is_empty() {
        let mut t = Table::new(&["#", "ITEM", "SIZE", "AGE", "CLAIMED BY"]);
        for (i, ((n, _, _), st)) in shown.iter().zip(&stats).enumerate() {
            t.row(vec![
                (i + 1).to_string(),
                n.clone(),
                st.as_ref()
                    .map_or("-".into(), |s| format_size(s.data_length.into())),
                st.as_ref()
                    .map_or("-".into(), |s| format_age(now - s.ctime)),
                claims.get(n).map_or("-".into(), |o| session_hex(*o)),
            ]);
        }
        t.print();
        if items.len() > shown.len() {
            println!("... {} more (--limit)", items.len() - shown.len());
        }
    }
    Ok(())
}

/// What a semaphore participant is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseRole {
    /// Holds a lease.
    Holder,
    /// Holds the internal lock: its lease node (if made yet) waits for the
    /// lease count to fall to the maximum.
    Acquiring,
    /// Waits in line for the internal lock.
    Waiter,
}

impl LeaseRole {
    /// The role's name in tables and JSON.
    fn as_str(self) -> &'static str {
        match self {
            Self::Holder => "holder",
            Self::Acquiring => "acquiring",
            Self::Waiter => "waiter",
        }
    }
}

/// `semaphore`: `<path>/leases/…` and `<path>/locks/…`.
///
/// A taker holds the internal lock while its lease node waits for the lease
/// count to reach the maximum, so the lock's holder is acquiring and its
/// lease node is the newest of its session made after its lock node; the
/// maximum itself is not in the layout (`--max-leases`). Once granted, the
/// lock node goes (in the background), so a lease granted a moment ago may
/// still read as acquiring unless `--max-leases` says the count allows it.
pub(crate) async fn semaphore(ctx: &Ctx, a: SemaphoreArgs) -> Result<(), CliError> {
    let what = format!("semaphore {}", a.path);
    if ctx
        .zk
        .exists(&a.path)
        .await
        .map_err(ctx.err(&what))?
        .is_none()
    {
        return Err(ctx.err(&what)(zkit::Error::NoNode));
    }
    let leases = contenders_or_none(ctx, &join(&a.path, semaphore_layout::LEASES), &what).await?;
    let line = contenders_or_none(ctx, &join(&a.path, semaphore_layout::LOCKS), &what).await?;
    // The internal lock holder's lease node, if it made it yet: acquiring
    // while the count is over the maximum (or the maximum is unknown).
    let takers_lease = line.first().and_then(|lock| {
        leases.iter().rposition(|l| {
            l.stat.ephemeral_owner == lock.stat.ephemeral_owner && l.stat.czxid > lock.stat.czxid
        })
    });
    let over_max = a.max_leases.is_none_or(|max| leases.len() > max);
    let taking = takers_lease.filter(|_| over_max);
    let mut rows: Vec<(LeaseRole, &str, &Contender)> = leases
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let role = if Some(i) == taking {
                LeaseRole::Acquiring
            } else {
                LeaseRole::Holder
            };
            (role, semaphore_layout::LEASES, l)
        })
        .collect();
    for (i, c) in line.iter().enumerate() {
        match (i, takers_lease) {
            // The lock's holder is listed by its lease node.
            (0, Some(_)) => {}
            (0, None) => rows.push((LeaseRole::Acquiring, semaphore_layout::LOCKS, c)),
            _ => rows.push((LeaseRole::Waiter, semaphore_layout::LOCKS, c)),
        }
    }
    let count = |role| rows.iter().filter(|r| r.0 == role).count();
    let (held, acquiring, waiting) = (
        count(LeaseRole::Holder),
        count(LeaseRole::Acquiring),
        count(LeaseRole::Waiter),
    );
    let free = a.max_leases.map(|max| max.saturating_sub(held));
    let now = now_ms();
    if ctx.out.json {
        let list: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, (role, dir, c))| {
                let (data, encoding) = data_json(&c.data);
                json!({
                    "position": i + 1,
                    "role": role.as_str(),
                    "node": format!("{dir}/{}", c.name),
                    "sequence": c.seq,
                    "session": owner_json(c.stat.ephemeral_owner),
                    "created_ms": c.stat.ctime,
                    "data": data,
                    "encoding": encoding,
                })
            })
            .collect();
        ctx.out.json(&json!({
            "path": a.path,
            "max_leases": a.max_leases,
            "held": held,
            "free": free,
            "acquiring": acquiring,
            "waiting": waiting,
            "participants": list,
        }));
        return Ok(());
    }
    let held_text = match (a.max_leases, free) {
        (Some(max), Some(free)) => format!("{held} of {max} leases held ({free} free)"),
        _ => format!("{held} leases held (max not recorded: --max-leases)"),
    };
    println!(
        "{}: {held_text}, {acquiring} acquiring, {waiting} waiting",
        a.path
    );
    if !rows.is_empty() {
        let mut t = Table::new(&["#", "ROLE", "SESSION", "SINCE", "NODE", "DATA"]);
        for (i, (role, dir, c)) in rows.iter().enumerate() {
            t.row(vec![
                (i + 1).to_string(),
                role.as_str().into(),
                session_hex(c.stat.ephemeral_owner),
                format_age(now - c.stat.ctime),
                format!("{dir}/{}", c.name),
                data_preview(&c.data, 32),
            ]);
        }
        t.print();
    }
    Ok(())
}

/// `barrier`: a plain barrier is up while `<path>` exists; a double
/// barrier's members are `<path>/<id>` (ephemeral) and `<path>/ready`
/// appears once the expected count has entered.
///
/// A node without children is a plain barrier that is set, unless it has
/// had children (`cversion` > 0): then it is a double barrier everyone has
/// left. The count a double barrier waits for is not in the layout (each
/// member is built with it).
pub(crate) async fn barrier(ctx: &Ctx, a: PathArg) -> Result<(), CliError> {
    let what = format!("barrier {}", a.path);
    let (children, stat) = match ctx.zk.get_children(&a.path).await {
        Ok(c) => c,
        Err(zkit::Error::NoNode) => {
            if ctx.out.json {
                ctx.out
                    .json(&json!({"path": a.path, "kind": "barrier", "state": "clear"}));
            } else {
                println!("{}: barrier clear (no node: waiters pass)", a.path);
            }
            return Ok(());
        }
        Err(e) => return Err(ctx.err(&what)(e)),
    };
    let now = now_ms();
    if children.is_empty() && stat.cversion > 0 {
        if ctx.out.json {
            ctx.out.json(&json!({
                "path": a.path,
                "kind": "double",
                "state": "empty",
                "ready": false,
                "ready_since_ms": null,
                "members": [],
            }));
        } else {
            println!("{}: double barrier, no members (all left)", a.path);
        }
        return Ok(());
    }
    if children.is_empty() {
        if ctx.out.json {
            ctx.out.json(&json!({
                "path": a.path,
                "kind": "barrier",
                "state": "set",
                "since_ms": stat.ctime,
            }));
        } else {
            println!(
                "{}: barrier set for {} (waiters block until the node is removed)",
                a.path,
                format_age(now - stat.ctime)
            );
        }
        return Ok(());
    }
    let ready_path = join(&a.path, barrier_layout::READY);
    let ready_call = ctx.zk.exists(&ready_path);
    let ids: Vec<String> = children
        .into_iter()
        .filter(|c| c != barrier_layout::READY)
        .collect();
    let calls: Vec<_> = ids
        .iter()
        .map(|i| ctx.zk.get_data(&join(&a.path, i)))
        .collect();
    let ready = ready_call.await.map_err(ctx.err(&what))?;
    let mut members = Vec::new();
    for (id, call) in ids.into_iter().zip(calls) {
        match call.await {
            Ok((data, stat)) => members.push((id, data, stat)),
            // Left meanwhile.
            Err(zkit::Error::NoNode) => {}
            Err(e) => return Err(ctx.err(&what)(e)),
        }
    }
    // In the order they entered.
    members.sort_by_key(|(id, _, s)| (s.czxid, id.clone()));
    let state = match (&ready, members.is_empty()) {
        (Some(_), false) => "entered",
        (Some(_), true) => "left",
        (None, _) => "waiting",
    };
    if ctx.out.json {
        let list: Vec<Value> = members
            .iter()
            .map(|(id, data, stat)| {
                let (data, encoding) = data_json(data);
                json!({
                    "id": id,
                    "session": owner_json(stat.ephemeral_owner),
                    "joined_ms": stat.ctime,
                    "data": data,
                    "encoding": encoding,
                })
            })
            .collect();
        ctx.out.json(&json!({
            "path": a.path,
            "kind": "double",
            "state": state,
            "ready": ready.is_some(),
            "ready_since_ms": ready.as_ref().map(|s| s.ctime),
            "members": list,
        }));
        return Ok(());
    }
    let n = members.len();
    let plural = if n == 1 { "" } else { "s" };
    let head = match (state, &ready) {
        ("entered", Some(r)) => format!(
            "{n} member{plural} in, ready (entered {} ago)",
            format_age(now - r.ctime)
        ),
        ("left", _) => "ready, every member has left".to_string(),
        _ => format!("{n} member{plural} waiting to enter (not ready)"),
    };
    println!("{}: double barrier, {head}", a.path);
    if !members.is_empty() {
        let mut t = Table::new(&["#", "MEMBER", "SESSION", "JOINED", "DATA"]);
        for (i, (id, data, stat)) in members.iter().enumerate() {
            t.row(vec![
                (i + 1).to_string(),
                id.clone(),
                session_hex(stat.ephemeral_owner),
                format!("{} ago", format_age(now - stat.ctime)),
                data_preview(data, 32),
            ]);
        }
        t.print();
    }
    Ok(())
}

/// A delay-queue item node: its name, and its due time (ms, as this tool's
/// clock reads times) and sequence number parsed by zkit-recipes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DelayItem {
    name: String,
    due_ms: i64,
    seq: i32,
}

impl DelayItem {
    /// The item named `name`; `None` for a child that is not an item.
    fn parse(name: &str) -> Option<Self> {
        let item = delay_layout::parse_item(name)?;
        Some(Self {
            name: name.to_string(),
            // Never fails: parsed due times fit a Java `long`.
            due_ms: i64::try_from(item.due_ms).ok()?,
            seq: item.seq,
        })
    }
}

/// `delay-queue`: items `queue-|<due>|<seq>` in delivery order (due time,
/// then sequence), claims `_claims|…|/<item>`, waiting consumers
/// `_waiters|…|/…`. Due times are the producers' clocks, compared with
/// this host's.
pub(crate) async fn delay_queue(ctx: &Ctx, a: QueueArgs) -> Result<(), CliError> {
    let what = format!("delay-queue {}", a.path);
    let (children, _) = ctx.zk.get_children(&a.path).await.map_err(ctx.err(&what))?;
    let mut items: Vec<DelayItem> = children
        .iter()
        .filter_map(|c| DelayItem::parse(c))
        .collect();
    if let Some(anchor) =
        items
            .iter()
            .map(|i| i.seq)
            .reduce(|a, b| if b.wrapping_sub(a) < 0 { b } else { a })
    {
        items.sort_by_key(|i| (i.due_ms, i.seq.wrapping_sub(anchor) as u32, i.name.clone()));
    }
    let claims = owners(ctx, &join(&a.path, delay_layout::CLAIMS), &what).await?;
    let waiting = owners(ctx, &join(&a.path, delay_layout::WAITERS), &what)
        .await?
        .len();
    let now = now_ms();
    let due_now = items.iter().filter(|i| i.due_ms <= now).count();
    let shown: Vec<&DelayItem> = items.iter().take(a.limit).collect();
    let calls: Vec<_> = shown
        .iter()
        .map(|i| ctx.zk.get_data(&join(&a.path, &i.name)))
        .collect();
    let mut read = Vec::new();
    for call in calls {
        match call.await {
            Ok((data, stat)) => {
                // The sizes of the items the node holds; `None`: not an item.
                let sizes = delay_layout::framed_items(&data)
                    .map(|items| items.iter().map(|i| i.len()).collect::<Vec<usize>>());
                read.push(Some((sizes, stat)));
            }
            // Taken meanwhile.
            Err(zkit::Error::NoNode) => read.push(None),
            Err(e) => return Err(ctx.err(&what)(e)),
        }
    }
    let oldest = items.first();
    if ctx.out.json {
        let list: Vec<Value> = shown
            .iter()
            .zip(&read)
            .map(|(i, r)| {
                let frames = r.as_ref().and_then(|(f, _)| f.as_ref());
                json!({
                    "item": i.name,
                    "sequence": i.seq,
                    "due_ms": i.due_ms,
                    "due": i.due_ms <= now,
                    "size": frames.map(|f| f.iter().sum::<usize>()),
                    "entries": frames.map(Vec::len),
                    "valid": r.as_ref().map(|(f, _)| f.is_some()),
                    "created_ms": r.as_ref().map(|(_, s)| s.ctime),
                    "claimed_by": claims.get(&i.name).map_or(Value::Null, |o| owner_json(*o)),
                })
            })
            .collect();
        let claims: Vec<Value> = claims
            .iter()
            .map(|(n, o)| json!({"item": n, "session": owner_json(*o)}))
            .collect();
        ctx.out.json(&json!({
            "path": a.path,
            "depth": items.len(),
            "due_now": due_now,
            "oldest": oldest.map(|i| json!({
                "item": i.name,
                "due_ms": i.due_ms,
                "overdue_ms": now - i.due_ms,
            })),
            "claims": claims,
            "waiting_consumers": waiting,
            "items": list,
        }));
        return Ok(());
    }
    let when = |due_ms: i64| {
        if due_ms <= now {
            format!("{} ago", format_age(now - due_ms))
        } else {
            format!("in {}", format_age(due_ms - now))
        }
    };
    let head = match oldest {
        Some(i) => format!(", oldest due {}", when(i.due_ms)),
        None => String::new(),
    };
    println!(
        "{}: {} items, {due_now} due now{head}, {} claimed, {waiting} consumers waiting",
        a.path,
        items.len(),
        claims.len(),
    );
    if !shown.is_empty() {
        let mut t = Table::new(&["#", "ITEM", "DUE AT", "DUE", "SIZE", "CLAIMED BY"]);
        for (n, (i, r)) in shown.iter().zip(&read).enumerate() {
            let size = match r {
                None => "(taken)".to_string(),
                Some((None, _)) => "(not an item)".to_string(),
                Some((Some(f), _)) if f.len() == 1 => format_size(f[0] as i64),
                Some((Some(f), _)) => format!(
                    "{} ({} entries)",
                    format_size(f.iter().sum::<usize>() as i64),
                    f.len()
                ),
            };
            t.row(vec![
                (n + 1).to_string(),
                i.name.clone(),
                format_time(i.due_ms),
                when(i.due_ms),
                size,
                claims.get(&i.name).map_or("-".into(), |o| session_hex(*o)),
            ]);
        }
        t.print();
        if items.len() > shown.len() {
            println!("... {} more (--limit)", items.len() - shown.len());
        }
    }
    Ok(())
}

/// The children of `dir` (absent: none) with their ephemeral owners.
async fn owners(ctx: &Ctx, dir: &str, what: &str) -> Result<BTreeMap<String, i64>, CliError> {
    let children = match ctx.zk.get_children(dir).await {
        Ok((c, _)) => c,
        Err(zkit::Error::NoNode) => return Ok(BTreeMap::new()),
        Err(e) => return Err(ctx.err(what)(e)),
    };
    let calls: Vec<_> = children
        .iter()
        .map(|c| ctx.zk.exists(&join(dir, c)))
        .collect();
    let mut out = BTreeMap::new();
    for (c, call) in children.into_iter().zip(calls) {
        if let Some(s) = call.await.map_err(ctx.err(what))? {
            out.insert(c, s.ephemeral_owner);
        }
    }
    Ok(out)
}

/// `services`: `<base>/<service>/<id>` holding Curator `ServiceInstance` JSON.
pub(crate) async fn services(ctx: &Ctx, a: ServicesArgs) -> Result<(), CliError> {
    let what = format!("services {}", a.base);
    let mut names = match &a.name {
        Some(n) => vec![n.clone()],
        None => {
            ctx.zk
                .get_children(&a.base)
                .await
                .map_err(ctx.err(&what))?
                .0
        }
    };
    names.sort();
    let mut services = Vec::new();
    for name in names {
        let dir = join(&a.base, &name);
        let mut ids = match ctx.zk.get_children(&dir).await {
            Ok((c, _)) => c,
            Err(zkit::Error::NoNode) if a.name.is_none() => continue,
            Err(e) => return Err(ctx.err(&what)(e)),
        };
        ids.sort();
        let calls: Vec<_> = ids
            .iter()
            .map(|i| ctx.zk.get_data(&join(&dir, i)))
            .collect();
        let mut instances = Vec::new();
        for (id, call) in ids.into_iter().zip(calls) {
            match call.await {
                Ok((data, stat)) => {
                    let parsed = serde_json::from_slice::<ServiceInstance<Value>>(&data).ok();
                    instances.push((id, parsed, stat));
                }
                Err(zkit::Error::NoNode) => {}
                Err(e) => return Err(ctx.err(&what)(e)),
            }
        }
        services.push((name, instances));
    }
    if ctx.out.json {
        let list: Vec<Value> = services
            .iter()
            .map(|(name, instances)| {
                let list: Vec<Value> = instances
                    .iter()
                    .map(|(id, i, stat)| match i {
                        Some(i) => json!({
                            "id": id,
                            "address": i.address,
                            "port": i.port,
                            "ssl_port": i.ssl_port,
                            "service_type": i.service_type,
                            "enabled": i.enabled.unwrap_or(true),
                            "registration_time_ms": i.registration_time_utc,
                            "session": owner_json(stat.ephemeral_owner),
                            "payload": i.payload,
                            "valid": true,
                        }),
                        None => json!({"id": id, "session": owner_json(stat.ephemeral_owner), "valid": false}),
                    })
                    .collect();
                json!({"name": name, "instances": list})
            })
            .collect();
        ctx.out.json(&json!({"base": a.base, "services": list}));
        return Ok(());
    }
    let mut t = Table::new(&[
        "SERVICE",
        "ID",
        "ADDRESS",
        "TYPE",
        "ENABLED",
        "SESSION",
        "REGISTERED",
        "PAYLOAD",
    ]);
    for (name, instances) in &services {
        if instances.is_empty() {
            t.row(vec![name.clone(), "(no instances)".into()]);
        }
        for (id, i, stat) in instances {
            let Some(i) = i else {
                t.row(vec![
                    name.clone(),
                    id.clone(),
                    "(not a ServiceInstance)".into(),
                ]);
                continue;
            };
            let mut address = format!(
                "{}:{}",
                i.address.as_deref().unwrap_or("?"),
                i.port.map_or("-".into(), |p| p.to_string())
            );
            if let Some(p) = i.ssl_port {
                address.push_str(&format!(" (ssl {p})"));
            }
            let payload = i.payload.as_ref().map_or(String::new(), |p| {
                data_preview(p.to_string().as_bytes(), 40)
            });
            t.row(vec![
                name.clone(),
                id.clone(),
                address,
                serde_json::to_value(i.service_type)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                if i.enabled.unwrap_or(true) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                if stat.ephemeral_owner == 0 {
                    "-".into()
                } else {
                    session_hex(stat.ephemeral_owner)
                },
                format_time(i.registration_time_utc),
                payload,
            ]);
        }
    }
    if t.is_empty() {
        println!("{}: no services", a.base);
    } else {
        t.print();
    }
    Ok(())
}

/// `members`: `<path>/<member id>`, ephemeral, holding the member's payload.
pub(crate) async fn members(ctx: &Ctx, a: PathArg) -> Result<(), CliError> {
    let what = format!("members {}", a.path);
    let (mut ids, _) = ctx.zk.get_children(&a.path).await.map_err(ctx.err(&what))?;
    ids.sort();
    let calls: Vec<_> = ids
        .iter()
        .map(|i| ctx.zk.get_data(&join(&a.path, i)))
        .collect();
    let mut members = Vec::new();
    for (id, call) in ids.into_iter().zip(calls) {
        match call.await {
            Ok((data, stat)) => members.push((id, data, stat)),
            Err(zkit::Error::NoNode) => {}
            Err(e) => return Err(ctx.err(&what)(e)),
        }
    }
    let now = now_ms();
    if ctx.out.json {
        let list: Vec<Value> = members
            .iter()
            .map(|(id, data, stat)| {
                let (payload, encoding) = data_json(data);
                json!({
                    "id": id,
                    "session": owner_json(stat.ephemeral_owner),
                    "joined_ms": stat.ctime,
                    "payload": payload,
                    "encoding": encoding,
                })
            })
            .collect();
        ctx.out.json(&json!({"path": a.path, "members": list}));
        return Ok(());
    }
    println!("{}: {} members", a.path, members.len());
    if !members.is_empty() {
        let mut t = Table::new(&["MEMBER", "SESSION", "JOINED", "PAYLOAD"]);
        for (id, data, stat) in &members {
            t.row(vec![
                id.clone(),
                if stat.ephemeral_owner == 0 {
                    "-".into()
                } else {
                    session_hex(stat.ephemeral_owner)
                },
                format!("{} ago", format_age(now - stat.ctime)),
                data_preview(data, 40),
            ]);
        }
        t.print();
    }
    Ok(())
}

/// One job's state, as `jobs` shows it.
#[derive(Debug)]
struct JobView {
    name: String,
    schedule: Value,
    schedule_text: String,
    shards: u32,
    misfire: Value,
    anchor_ms: Option<i64>,
    paused: bool,
    disabled: Vec<u32>,
    triggers: usize,
    instances: Vec<String>,
    history: Vec<RunRecord>,
    error: Option<String>,
}

/// `jobs`: `<root>/jobs/<job>` definitions and their operator nodes and run
/// records, read through zkit-recipes' [`Jobs`].
pub(crate) async fn jobs(ctx: &Ctx, a: JobsArgs) -> Result<(), CliError> {
    let what = format!("jobs {}", a.root);
    let jobs = Jobs::new(&ctx.zk, &a.root);
    let names = match &a.job {
        Some(j) => vec![j.clone()],
        None => jobs.list().await.map_err(ctx.err(&what))?,
    };
    let mut views = Vec::new();
    for name in names {
        let dir = format!("{}/jobs/{name}", a.root.trim_end_matches('/'));
        let spec = match jobs.spec(&name).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => {
                return Err(CliError::from_zk(
                    &format!("{what}: job {name}"),
                    &zkit::Error::NoNode,
                    &ctx.host(),
                ))
            }
            Err(zkit::Error::InvalidArgument(e)) => Err(e),
            Err(e) => return Err(ctx.err(&what)(e)),
        };
        let (children, _) = ctx.zk.get_children(&dir).await.map_err(ctx.err(&what))?;
        let mut disabled: Vec<u32> = children
            .iter()
            .filter_map(|c| c.strip_prefix("disabled-")?.parse().ok())
            .collect();
        disabled.sort_unstable();
        let history = jobs.history(&name).await.map_err(ctx.err(&what))?;
        let instances = jobs.instances(&name).await.map_err(ctx.err(&what))?;
        let mut view = JobView {
            name,
            schedule: Value::Null,
            schedule_text: "?".into(),
            shards: 0,
            misfire: Value::Null,
            anchor_ms: None,
            paused: children.iter().any(|c| c == "paused"),
            disabled,
            triggers: children
                .iter()
                .filter(|c| c.starts_with("trigger-"))
                .count(),
            instances,
            history,
            error: None,
        };
        match spec {
            Ok(spec) => {
                (view.schedule, view.schedule_text) = match spec.schedule() {
                    Schedule::Cron(e) => (json!({"cron": e}), format!("cron {e}")),
                    Schedule::Every(d) => (
                        json!({"every_ms": d.as_millis() as u64}),
                        format!("every {}", format_age(d.as_millis() as i64)),
                    ),
                    other => (Value::Null, format!("{other:?}")),
                };
                view.shards = spec.shard_count();
                view.misfire = serde_json::to_value(spec.misfire_policy()).unwrap_or_default();
                view.anchor_ms = spec.anchor();
            }
            Err(e) => view.error = Some(e),
        }
        views.push(view);
    }
    // The latest record of each shard.
    let last_runs = |v: &JobView| -> Vec<RunRecord> {
        let mut last: BTreeMap<u32, &RunRecord> = BTreeMap::new();
        for r in &v.history {
            last.insert(r.shard, r);
        }
        last.into_values().cloned().collect()
    };
    if ctx.out.json {
        let list: Vec<Value> = views
            .iter()
            .map(|v| {
                let mut j = json!({
                    "name": v.name,
                    "schedule": v.schedule,
                    "shards": v.shards,
                    "misfire": v.misfire,
                    "anchor_ms": v.anchor_ms,
                    "paused": v.paused,
                    "disabled_shards": v.disabled,
                    "pending_triggers": v.triggers,
                    "instances": v.instances,
                    "last_runs": last_runs(v),
                    "error": v.error,
                });
                if a.job.is_some() {
                    j["history"] = serde_json::to_value(&v.history).unwrap_or_default();
                }
                j
            })
            .collect();
        ctx.out.json(&json!({"root": a.root, "jobs": list}));
        return Ok(());
    }
    if views.is_empty() {
        println!("{}: no jobs", a.root);
        return Ok(());
    }
    let mut t = Table::new(&[
        "JOB",
        "SCHEDULE",
        "SHARDS",
        "STATE",
        "INSTANCES",
        "LAST RUN",
    ]);
    for v in &views {
        let state = if v.error.is_some() {
            "invalid spec".to_string()
        } else if v.paused {
            "paused".to_string()
        } else if !v.disabled.is_empty() {
            format!(
                "disabled {}",
                v.disabled
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        } else {
            "active".to_string()
        };
        let last = v.history.last().map_or("-".into(), |r| {
            format!("{} {}", format_time(r.fire_ms), outcome_text(r))
        });
        t.row(vec![
            v.name.clone(),
            v.schedule_text.clone(),
            v.shards.to_string(),
            state,
            if v.instances.is_empty() {
                "-".into()
            } else {
                v.instances.join(",")
            },
            last,
        ]);
    }
    t.print();
    if a.job.is_some() {
        for v in &views {
            println!();
            let mut h = Table::new(&[
                "FIRE", "SHARD", "TRIGGER", "INSTANCE", "ATTEMPT", "OUTCOME", "TOOK",
            ]);
            for r in &v.history {
                h.row(vec![
                    format_time(r.fire_ms),
                    r.shard.to_string(),
                    if r.trigger { "yes" } else { "" }.into(),
                    r.instance.clone(),
                    r.attempt.to_string(),
                    outcome_text(r),
                    r.end_ms.map_or("-".into(), |e| format_age(e - r.start_ms)),
                ]);
            }
            if h.is_empty() {
                println!("{}: no runs recorded", v.name);
            } else {
                h.print();
            }
        }
    }
    Ok(())
}

fn outcome_text(r: &RunRecord) -> String {
    match serde_json::to_value(&r.outcome) {
        Ok(Value::Object(o)) => match (o.get("state"), o.get("error")) {
            (Some(Value::String(s)), Some(Value::String(e))) => format!("{s}: {e}"),
            (Some(Value::String(s)), _) => s.clone(),
            _ => "?".into(),
        },
        _ => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_items_parse_as_curator_reads_them() {
        assert_eq!(
            DelayItem::parse("queue-|18BCFE56800|0000000007"),
            Some(DelayItem {
                name: "queue-|18BCFE56800|0000000007".into(),
                due_ms: 1_700_000_000_000,
                seq: 7
            })
        );
        assert_eq!(
            DelayItem::parse("queue-|1|-2147483648").map(|i| (i.due_ms, i.seq)),
            Some((1, i32::MIN))
        );
        assert_eq!(DelayItem::parse("_claims|FFFFFFFFFFFF|"), None);
        assert_eq!(DelayItem::parse("queue-|xyz|0000000001"), None);
        assert_eq!(DelayItem::parse("queue-|1|123"), None);
        assert_eq!(DelayItem::parse("qn-0000000001"), None);
    }

    #[test]
    fn sequences() {
        assert_eq!(sequence("_c_x-lock-0000000007"), Some(7));
        assert_eq!(sequence("_c_x-lock--2147483648"), Some(i32::MIN));
        assert_eq!(sequence("x__lock__-2147483647"), Some(-2_147_483_647));
        assert_eq!(sequence("x-lock-2147483647"), Some(i32::MAX));
        assert_eq!(sequence("x-lock--000000001"), Some(-1));
        assert_eq!(sequence("member"), None);
    }
}
