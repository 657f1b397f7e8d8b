//! `watch`: one event (a data watch plus a child watch), or a persistent
//! recursive watch streamed until Ctrl-C.

use serde_json::json;
use zkit::{AddWatchMode, WatchedEvent};

use crate::args::WatchArgs;
use crate::conn::Ctx;
use crate::error::CliError;
use crate::output::{format_clock, now_ms};

fn print_event(ctx: &Ctx, e: &WatchedEvent) {
    let at = now_ms();
    if ctx.out.json {
        ctx.out.json_line(&json!({
            "type": format!("{:?}", e.event_type),
            "path": e.path,
            "zxid": e.zxid,
            "received_ms": at,
        }));
    } else {
        println!(
            "{}  {:<20} {}",
            format_clock(at),
            format!("{:?}", e.event_type),
            e.path
        );
    }
}

/// `watch`.
pub(crate) async fn watch(ctx: &Ctx, a: WatchArgs) -> Result<(), CliError> {
    let what = format!("watch {}", a.path);
    if a.recursive {
        let mut watcher = ctx
            .zk
            .add_watch(&a.path, AddWatchMode::PersistentRecursive)
            .await
            .map_err(ctx.err(&what))?;
        eprintln!(
            "watching {} and its descendants on {}; Ctrl-C to stop",
            a.path,
            ctx.host()
        );
        let mut seen = 0u64;
        loop {
            tokio::select! {
                event = watcher.changed() => {
                    let event = event.map_err(ctx.err(&what))?;
                    print_event(ctx, &event);
                    seen += 1;
                    if a.count.is_some_and(|n| seen >= n) {
                        return Ok(());
                    }
                }
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
    // One-shot: the node's creation, deletion or data change, or a change
    // of its children, whichever comes first.
    let (stat, data_watch) = ctx
        .zk
        .exists_and_watch(&a.path)
        .await
        .map_err(ctx.err(&what))?;
    let child_watch = if stat.is_some() {
        match ctx.zk.get_children_and_watch(&a.path).await {
            Ok((_, _, w)) => Some(w),
            Err(zkit::Error::NoNode) => None,
            Err(e) => return Err(ctx.err(&what)(e)),
        }
    } else {
        None
    };
    eprintln!(
        "watching {} ({}) on {}; Ctrl-C to stop",
        a.path,
        if stat.is_some() { "exists" } else { "absent" },
        ctx.host()
    );
    let children = async move {
        match child_watch {
            Some(w) => w.changed().await,
            None => std::future::pending().await,
        }
    };
    let event = tokio::select! {
        e = data_watch.changed() => e,
        e = children => e,
        _ = tokio::signal::ctrl_c() => return Ok(()),
    };
    print_event(ctx, &event.map_err(ctx.err(&what))?);
    Ok(())
}
