//! `dump` and `restore`: a subtree as one JSON document.
//!
//! ```json
//! {"format": "zkit-dump", "version": 1, "root": "/app", "nodes": [
//!   {"path": "/app", "data": "<base64>", "acl": [{"scheme": "world", "id": "anyone", "perms": "cdrwa"}],
//!    "stat": {...}}, ...]}
//! ```
//!
//! Nodes are listed parents first. Restore creates what is missing, sets
//! the data and ACL of nodes that differ, and leaves equal nodes alone, so
//! running it twice changes nothing the second time. Ephemeral nodes are
//! dumped (marked by `stat.ephemeral_owner`) but never restored: their
//! sessions are gone.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;
use zkit::{Acl, CreateOptions, Version};

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
    /// The data, base64.
    data: String,
    acl: Vec<DumpAcl>,
    /// The node's stat when dumped (informative; restore does not need it).
    #[serde(default)]
    stat: Value,
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
                        nodes.push(DumpNode {
                            path: p.clone(),
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
    let doc = Dump {
        format: FORMAT.into(),
        version: VERSION,
        root: a.path.clone(),
        nodes,
    };
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| CliError::usage(format!("cannot encode the dump: {e}")))?;
    println!("{text}");
    eprintln!("dumped {} nodes under {}", doc.nodes.len(), a.path);
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
        let ephemeral = n.stat.get("ephemeral_owner").is_some_and(|o| !o.is_null());
        plan.push((path, data, acl, ephemeral));
    }
    let bar = progress(Some(plan.len() as u64), a.quiet, "restore");
    let mut pacer = Pacer::new(a.rate);
    let mut counts = [0usize; 4];
    for (path, data, acl, ephemeral) in &plan {
        let outcome = if *ephemeral {
            Outcome::SkippedEphemeral
        } else {
            restore_node(ctx, &mut pacer, path, data, acl).await?
        };
        counts[outcome as usize] += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let [created, updated, unchanged, skipped] = counts;
    if ctx.out.json {
        ctx.out.json(&json!({
            "root": target,
            "created": created,
            "updated": updated,
            "unchanged": unchanged,
            "skipped_ephemeral": skipped,
        }));
    } else {
        println!(
            "restored {} nodes under {target}: {created} created, {updated} updated, {unchanged} unchanged, {skipped} ephemeral skipped",
            plan.len()
        );
    }
    Ok(())
}

/// Makes the node at `path` hold `data` and `acl`: create it, or update
/// what differs (a node the dump's root maps onto may already exist: its
/// parents are created as needed).
async fn restore_node(
    ctx: &Ctx,
    pacer: &mut Pacer,
    path: &str,
    data: &[u8],
    acl: &[Acl],
) -> Result<Outcome, CliError> {
    let what = format!("restore {path}");
    let options = CreateOptions::default().acl(acl.to_vec());
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
