//! ZooKeeper basics: `ls`, `get`, `set`, `create`, `delete`, `stat`, `acl`,
//! `sync`, `tree`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};
use zkit::{Client, CreateMode, CreateOptions, Stat, Version};

use crate::args::{
    AclSetArgs, CreateArgs, DataArgs, DataFormat, DeleteArgs, GetArgs, LsArgs, PathArg, SetArgs,
    TreeArgs,
};
use crate::conn::Ctx;
use crate::error::CliError;
use crate::output::{
    acl_json, base64_encode, data_json, format_size, format_time, hex_dump, is_printable, join,
    parse_acl, perms_string, session_hex, stat_json, stat_table, Table,
};

/// Requests in flight at once while walking a tree (they are pipelined:
/// each is sent when issued).
pub(crate) const WINDOW: usize = 256;

/// One node seen by [`walk`]: its stat and sorted child names.
#[derive(Debug)]
pub(crate) struct Walked {
    pub(crate) stat: Stat,
    pub(crate) children: Vec<String>,
}

/// Reads the subtree at `root` level by level, pipelining the listings;
/// nodes deleted meanwhile are skipped. `max_depth` 0 reads `root` alone.
pub(crate) async fn walk(
    ctx: &Ctx,
    root: &str,
    max_depth: Option<usize>,
) -> Result<BTreeMap<String, Walked>, CliError> {
    let mut nodes = BTreeMap::new();
    let mut level = vec![root.to_string()];
    let mut depth = 0;
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(WINDOW) {
            let calls: Vec<_> = chunk.iter().map(|p| ctx.zk.get_children(p)).collect();
            for (path, call) in chunk.iter().zip(calls) {
                match call.await {
                    Ok((mut children, stat)) => {
                        children.sort();
                        if max_depth.is_none_or(|m| depth < m) {
                            next.extend(children.iter().map(|c| join(path, c)));
                        }
                        nodes.insert(path.clone(), Walked { stat, children });
                    }
                    Err(zkit::Error::NoNode) if path != root => {}
                    Err(e) => return Err(ctx.err(format!("ls {path}"))(e)),
                }
            }
        }
        level = next;
        depth += 1;
    }
    Ok(nodes)
}

/// The descendants of `root` in depth-first order (children sorted).
fn depth_first<'a>(nodes: &'a BTreeMap<String, Walked>, root: &str) -> Vec<(&'a str, usize)> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_string(), 0usize)];
    while let Some((path, depth)) = stack.pop() {
        let Some((key, node)) = nodes.get_key_value(&path) else {
            continue;
        };
        out.push((key.as_str(), depth));
        for c in node.children.iter().rev() {
            stack.push((join(&path, c), depth + 1));
        }
    }
    out
}

/// `path` relative to `root` (`b/c` for `/a/b/c` under `/a`).
fn relative<'a>(root: &str, path: &'a str) -> &'a str {
    let prefix = root.trim_end_matches('/').len();
    path.get(prefix..).unwrap_or(path).trim_start_matches('/')
}

fn owner_cell(owner: i64) -> String {
    if owner == 0 {
        "-".into()
    } else {
        session_hex(owner)
    }
}

/// `ls`.
pub(crate) async fn ls(ctx: &Ctx, a: LsArgs) -> Result<(), CliError> {
    if !a.recursive && !a.stat {
        // One listing is enough.
        let (mut children, _) = ctx
            .zk
            .get_children(&a.path)
            .await
            .map_err(ctx.err(format!("ls {}", a.path)))?;
        children.sort();
        if ctx.out.json {
            let children: Vec<Value> = children
                .iter()
                .map(|c| json!({"name": c, "path": join(&a.path, c)}))
                .collect();
            ctx.out.json(&json!({"path": a.path, "children": children}));
        } else {
            for c in &children {
                println!("{c}");
            }
        }
        return Ok(());
    }
    // Each listed node's own listing gives its stat.
    let depth = if a.recursive { None } else { Some(1) };
    let nodes = walk(ctx, &a.path, depth).await?;
    let entries: Vec<(&str, &Stat)> = depth_first(&nodes, &a.path)
        .into_iter()
        .filter(|(_, d)| *d > 0)
        .map(|(p, _)| (p, &nodes[p].stat))
        .collect();
    if ctx.out.json {
        let children: Vec<Value> = entries
            .iter()
            .map(|(p, s)| {
                let mut v = json!({"name": relative(&a.path, p), "path": p});
                if a.stat {
                    v["stat"] = stat_json(s);
                }
                v
            })
            .collect();
        ctx.out.json(&json!({"path": a.path, "children": children}));
    } else if a.stat {
        let mut t = Table::new(&[
            "NAME",
            "VERSION",
            "SIZE",
            "CHILDREN",
            "EPHEMERAL",
            "MODIFIED",
        ]);
        for (p, s) in &entries {
            t.row(vec![
                relative(&a.path, p).to_string(),
                s.version.to_string(),
                format_size(s.data_length.into()),
                s.num_children.to_string(),
                owner_cell(s.ephemeral_owner),
                format_time(s.mtime),
            ]);
        }
        t.print();
    } else {
        for (p, _) in &entries {
            println!("{}", relative(&a.path, p));
        }
    }
    Ok(())
}

/// `get`.
pub(crate) async fn get(ctx: &Ctx, a: GetArgs) -> Result<(), CliError> {
    let (data, stat) = ctx
        .zk
        .get_data(&a.path)
        .await
        .map_err(ctx.err(format!("get {}", a.path)))?;
    if ctx.out.json {
        let (text, encoding) = match a.format {
            DataFormat::Base64 => (json!(base64_encode(&data)), json!("base64")),
            _ => data_json(&data),
        };
        ctx.out.json(&json!({
            "path": a.path,
            "data": text,
            "encoding": encoding,
            "stat": stat_json(&stat),
        }));
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    let written = match a.format {
        DataFormat::Raw => stdout.write_all(&data),
        DataFormat::Auto if is_printable(&data) => {
            let text = String::from_utf8_lossy(&data);
            if text.is_empty() || text.ends_with('\n') {
                stdout.write_all(text.as_bytes())
            } else {
                writeln!(stdout, "{text}")
            }
        }
        DataFormat::Auto | DataFormat::Hex => stdout.write_all(hex_dump(&data).as_bytes()),
        DataFormat::Base64 => writeln!(stdout, "{}", base64_encode(&data)),
    };
    written.map_err(|e| CliError::usage(format!("writing to stdout: {e}")))?;
    if a.stat {
        let _ = stdout.write_all(stat_table(&a.path, &stat).render().as_bytes());
    }
    Ok(())
}

/// The data of `set` / `create`: the argument, a file, or stdin for `-`.
fn read_data(d: &DataArgs) -> Result<Vec<u8>, CliError> {
    if let Some(file) = &d.file {
        return std::fs::read(file)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())));
    }
    match d.data.as_deref() {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
            Ok(buf)
        }
        Some(text) => Ok(text.as_bytes().to_vec()),
    }
}

fn version(v: Option<i32>) -> Version {
    v.map_or(Version::Any, Version::Exact)
}

/// `set`.
pub(crate) async fn set(ctx: &Ctx, a: SetArgs) -> Result<(), CliError> {
    let data = read_data(&a.data)?;
    let stat = ctx
        .zk
        .set_data(&a.path, &data, version(a.version))
        .await
        .map_err(ctx.err(format!("set {}", a.path)))?;
    if ctx.out.json {
        ctx.out
            .json(&json!({"path": a.path, "stat": stat_json(&stat)}));
    } else {
        println!(
            "set {} ({}, version {})",
            a.path,
            format_size(stat.data_length.into()),
            stat.version
        );
    }
    Ok(())
}

/// `create`.
pub(crate) async fn create(ctx: &Ctx, a: CreateArgs) -> Result<(), CliError> {
    let data = read_data(&a.data)?;
    let mode = match (a.ephemeral, a.sequential, a.container, a.ttl) {
        (true, false, _, _) => CreateMode::Ephemeral,
        (true, true, _, _) => CreateMode::EphemeralSequential,
        (false, _, true, _) => CreateMode::Container,
        (false, false, false, Some(ms)) => CreateMode::PersistentWithTtl(Duration::from_millis(ms)),
        (false, true, false, Some(ms)) => {
            CreateMode::PersistentSequentialWithTtl(Duration::from_millis(ms))
        }
        (false, false, false, None) => CreateMode::Persistent,
        (false, true, false, None) => CreateMode::PersistentSequential,
    };
    let mut options = CreateOptions::new(mode);
    if let Some(spec) = &a.acl {
        options = options.acl(parse_acl(spec).map_err(CliError::usage)?);
    }
    let what = format!("create {}", a.path);
    let (path, stat) = if a.parents {
        ctx.zk.create_all(&a.path, &data, &options).await
    } else {
        ctx.zk.create(&a.path, &data, &options).await
    }
    .map_err(ctx.err(what))?;
    if ctx.out.json {
        ctx.out
            .json(&json!({"path": path, "stat": stat_json(&stat)}));
    } else {
        println!("{path}");
    }
    Ok(())
}

/// `delete`.
pub(crate) async fn delete(ctx: &Ctx, a: DeleteArgs) -> Result<(), CliError> {
    let what = format!("delete {}", a.path);
    if a.recursive {
        delete_tree(&ctx.zk, &a.path).await.map_err(ctx.err(what))?;
    } else {
        ctx.zk
            .delete(&a.path, version(a.version))
            .await
            .map_err(ctx.err(what))?;
    }
    if ctx.out.json {
        ctx.out.json(&json!({"path": a.path, "deleted": true}));
    } else {
        println!("deleted {}", a.path);
    }
    Ok(())
}

/// Deletes a subtree; a missing root is `NoNode`, as for a plain delete.
async fn delete_tree(zk: &Client, path: &str) -> zkit::Result<()> {
    if zk.exists(path).await?.is_none() {
        return Err(zkit::Error::NoNode);
    }
    zk.delete_all(path).await
}

/// `stat`.
pub(crate) async fn stat(ctx: &Ctx, a: PathArg) -> Result<(), CliError> {
    let stat = ctx
        .zk
        .exists(&a.path)
        .await
        .map_err(ctx.err(format!("stat {}", a.path)))?
        .ok_or_else(|| {
            CliError::from_zk(
                &format!("stat {}", a.path),
                &zkit::Error::NoNode,
                &ctx.host(),
            )
        })?;
    if ctx.out.json {
        ctx.out
            .json(&json!({"path": a.path, "stat": stat_json(&stat)}));
    } else {
        stat_table(&a.path, &stat).print();
    }
    Ok(())
}

/// `acl get`.
pub(crate) async fn acl_get(ctx: &Ctx, a: PathArg) -> Result<(), CliError> {
    let (acl, stat) = ctx
        .zk
        .get_acl(&a.path)
        .await
        .map_err(ctx.err(format!("acl get {}", a.path)))?;
    if ctx.out.json {
        ctx.out
            .json(&json!({"path": a.path, "acl": acl_json(&acl), "aversion": stat.aversion}));
    } else {
        let mut t = Table::new(&["SCHEME", "ID", "PERMS"]);
        for e in &acl {
            t.row(vec![
                e.id.scheme.clone(),
                e.id.id.clone(),
                perms_string(e.perms),
            ]);
        }
        t.print();
    }
    Ok(())
}

/// `acl set`.
pub(crate) async fn acl_set(ctx: &Ctx, a: AclSetArgs) -> Result<(), CliError> {
    let acl = parse_acl(&a.acl).map_err(CliError::usage)?;
    let stat = ctx
        .zk
        .set_acl(&a.path, &acl, version(a.version))
        .await
        .map_err(ctx.err(format!("acl set {}", a.path)))?;
    if ctx.out.json {
        ctx.out
            .json(&json!({"path": a.path, "acl": acl_json(&acl), "aversion": stat.aversion}));
    } else {
        println!("acl of {} set (aversion {})", a.path, stat.aversion);
    }
    Ok(())
}

/// `sync`.
pub(crate) async fn sync(ctx: &Ctx, a: PathArg) -> Result<(), CliError> {
    ctx.zk
        .sync(&a.path)
        .await
        .map_err(ctx.err(format!("sync {}", a.path)))?;
    if ctx.out.json {
        ctx.out
            .json(&json!({"path": a.path, "synced": true, "server": ctx.host()}));
    } else {
        println!("synced {} on {}", a.path, ctx.host());
    }
    Ok(())
}

/// `tree`.
pub(crate) async fn tree(ctx: &Ctx, a: TreeArgs) -> Result<(), CliError> {
    let nodes = walk(ctx, &a.path, a.depth).await?;
    if ctx.out.json {
        ctx.out.json(&tree_json(&nodes, &a.path, &a.path));
        return Ok(());
    }
    let order = depth_first(&nodes, &a.path);
    // For each depth above the current node's, whether the ancestor there
    // was the last of its siblings (no more `│` below it).
    let mut last_at: Vec<bool> = Vec::new();
    for (i, (path, depth)) in order.iter().enumerate() {
        let node = &nodes[*path];
        let is_last = order[i + 1..]
            .iter()
            .find(|(_, d)| *d <= *depth)
            .is_none_or(|(_, d)| *d < *depth);
        let mut line = String::new();
        if *depth == 0 {
            line.push_str(path);
        } else {
            last_at.truncate(depth - 1);
            for &ancestor_last in &last_at {
                line.push_str(if ancestor_last { "    " } else { "│   " });
            }
            line.push_str(if is_last { "└── " } else { "├── " });
            line.push_str(path.rsplit('/').next().unwrap_or(path));
            last_at.push(is_last);
        }
        let mut notes = vec![format_size(node.stat.data_length.into())];
        if node.stat.ephemeral_owner != 0 {
            notes.push(format!(
                "ephemeral {}",
                session_hex(node.stat.ephemeral_owner)
            ));
        }
        if a.depth == Some(*depth) && !node.children.is_empty() {
            notes.push(format!("{} children not shown", node.children.len()));
        }
        println!("{line}  ({})", notes.join(", "));
    }
    Ok(())
}

fn tree_json(nodes: &BTreeMap<String, Walked>, root: &str, path: &str) -> Value {
    let Some(node) = nodes.get(path) else {
        return Value::Null;
    };
    let children: Vec<Value> = node
        .children
        .iter()
        .map(|c| join(path, c))
        .filter(|p| nodes.contains_key(p))
        .map(|p| tree_json(nodes, root, &p))
        .collect();
    json!({
        "path": path,
        "name": if path == root { path } else { path.rsplit('/').next().unwrap_or(path) },
        "data_length": node.stat.data_length,
        "num_children": node.stat.num_children,
        "ephemeral_owner": crate::output::owner_json(node.stat.ephemeral_owner),
        "children": children,
    })
}
