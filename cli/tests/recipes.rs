//! Recipe inspection against locks, elections, queues, semaphores,
//! barriers, delay queues, services, members and jobs made with
//! zkit-recipes in the test.

mod common;

use std::time::{Duration, SystemTime};

use common::{client, fresh_root, hosts, normalise_table, zkit};
use serde_json::json;
use zkit_recipes::discovery::{ServiceDiscovery, ServiceInstance};
use zkit_recipes::scheduler::{JobSpec, Jobs};
use zkit_recipes::{
    Barrier, DelayQueue, DoubleBarrier, GroupMember, LeaderLatch, Lock, Queue, Semaphore, Sessions,
};

#[tokio::test]
async fn locks_show_holder_and_waiters_in_order() {
    let root = fresh_root("locks").await;
    let r = root.as_str();
    let a = client(r).await;
    let b = client(r).await;
    let guard = Lock::new(&a, "/locks/db").acquire().await.unwrap();
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { Lock::new(&b, "/locks/db").acquire().await }
    });
    // Until the waiter's node is there.
    for _ in 0..100 {
        if Lock::new(&a, "/locks/db")
            .participants()
            .await
            .unwrap()
            .len()
            == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = zkit(r, &["locks", "/locks/db", "--json"]).await.json();
    assert_eq!(v["held"], true);
    let cs = v["contenders"].as_array().unwrap();
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0]["role"], "holder");
    assert_eq!(cs[0]["session"], format!("{:#x}", a.session_id().0));
    assert_eq!(cs[0]["node"], guard.node().rsplit('/').next().unwrap());
    assert_eq!(cs[1]["role"], "waiter");
    assert_eq!(cs[1]["session"], format!("{:#x}", b.session_id().0));

    let human = normalise_table(&zkit(r, &["locks", "/locks/db"]).await.ok());
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines[0],
        "/locks/db: held by session <session> for <age>, 1 waiting"
    );
    assert_eq!(lines[1], "#  ROLE  KIND  SESSION  SINCE  NODE  DATA");
    assert!(
        lines[2].starts_with("1  holder  write  <session>  <age>  _c_"),
        "{human}"
    );
    assert!(
        lines[3].starts_with("2  waiter  write  <session>  <age>  _c_"),
        "{human}"
    );

    guard.release().await.unwrap();
    waiter.await.unwrap().unwrap().release().await.unwrap();
    let free = zkit(r, &["locks", "/locks/db"]).await.ok();
    assert_eq!(free, "/locks/db: free (no contenders)\n");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn leader_shows_the_leader_and_participants() {
    let root = fresh_root("leader").await;
    let r = root.as_str();
    let a = client(r).await;
    let b = client(r).await;
    let first = LeaderLatch::start(&a, "/election", "node-a").await.unwrap();
    first.await_leadership().await.unwrap();
    let second = LeaderLatch::start(&b, "/election", "node-b").await.unwrap();
    let v = zkit(r, &["leader", "/election", "--json"]).await.json();
    assert_eq!(v["leader"]["id"], "node-a");
    assert_eq!(v["leader"]["session"], format!("{:#x}", a.session_id().0));
    let ids: Vec<_> = v["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].clone(), p["leader"].clone()))
        .collect();
    assert_eq!(
        ids,
        [
            (json!("node-a"), json!(true)),
            (json!("node-b"), json!(false))
        ]
    );
    let human = normalise_table(&zkit(r, &["leader", "/election"]).await.ok());
    assert!(
        human.starts_with(
            "/election: leader \"node-a\" (session <session>, for <age>, fencing token"
        ),
        "{human}"
    );
    assert!(
        human.contains("\n1  node-a *  <session>  <age>  _c_"),
        "{human}"
    );
    second.close().await.unwrap();
    first.close().await.unwrap();
    let none = zkit(r, &["leader", "/election", "--json"]).await.json();
    assert_eq!(none["leader"], serde_json::Value::Null);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn queue_shows_depth_age_and_claims() {
    let root = fresh_root("queue").await;
    let r = root.as_str();
    let zk = client(r).await;
    let q = Queue::new(&zk, "/q");
    for i in 0..3 {
        q.put(format!("job-{i}").as_bytes()).await.unwrap();
    }
    let claim = q.take_claimed().await.unwrap();
    let v = zkit(r, &["queue", "/q", "--json"]).await.json();
    assert_eq!(v["depth"], 3, "a claimed item stays until completed: {v}");
    assert_eq!(v["oldest"]["item"], "qn-0000000000");
    assert!(v["oldest"]["age_ms"].as_i64().unwrap() >= 0);
    assert_eq!(
        v["claims"][0]["item"],
        claim.item().rsplit('/').next().unwrap()
    );
    assert_eq!(
        v["claims"][0]["session"],
        format!("{:#x}", zk.session_id().0)
    );
    assert_eq!(
        v["items"][0]["claimed_by"],
        format!("{:#x}", zk.session_id().0)
    );
    assert_eq!(v["items"][1]["claimed_by"], serde_json::Value::Null);

    let human = normalise_table(&zkit(r, &["queue", "/q", "--limit", "2"]).await.ok());
    assert_eq!(
        human,
        "/q: 3 items, oldest qn-0000000000 (<age> old), 1 claimed, 0 consumers waiting\n\
         #  ITEM  SIZE  AGE  CLAIMED BY\n\
         1  qn-0000000000  5 B  <age>  <session>\n\
         2  qn-0000000001  5 B  <age>  -\n\
         ... 1 more (--limit)\n"
    );
    claim.complete().await.unwrap();
    let v = zkit(r, &["queue", "/q", "--json"]).await.json();
    assert_eq!(v["depth"], 2);
    zk.close().await.unwrap();
}

#[tokio::test]
async fn services_and_members_are_listed() {
    let root = fresh_root("services").await;
    let r = root.as_str();
    let sessions = Sessions::new(zkit::Client::builder(), format!("{}{r}", hosts()));
    let discovery = ServiceDiscovery::<serde_json::Value>::new(sessions.clone(), "/services");
    let reg = discovery
        .register(
            ServiceInstance::new("echo", "10.0.0.5", 8080)
                .id("echo-1")
                .payload(json!({"zone": "a"})),
        )
        .await
        .unwrap();
    let v = zkit(r, &["services", "/services", "--json"]).await.json();
    let echo = &v["services"][0];
    assert_eq!(echo["name"], "echo");
    let i = &echo["instances"][0];
    assert_eq!(
        (
            i["id"].clone(),
            i["address"].clone(),
            i["port"].clone(),
            i["payload"].clone()
        ),
        (
            json!("echo-1"),
            json!("10.0.0.5"),
            json!(8080),
            json!({"zone": "a"})
        )
    );
    assert_eq!(i["service_type"], "DYNAMIC");
    assert!(i["session"].is_string());
    let human = normalise_table(&zkit(r, &["services", "/services"]).await.ok());
    assert_eq!(
        human,
        "SERVICE  ID  ADDRESS  TYPE  ENABLED  SESSION  REGISTERED  PAYLOAD\n\
         echo  echo-1  10.0.0.5:8080  DYNAMIC  yes  <session>  <time>  {\"zone\":\"a\"}\n"
    );
    reg.unregister().await.unwrap();

    let zk = client(r).await;
    let m1 = GroupMember::join(&zk, "/group", "w1", b"10.0.0.1")
        .await
        .unwrap();
    let m2 = GroupMember::join(&zk, "/group", "w2", b"").await.unwrap();
    let v = zkit(r, &["members", "/group", "--json"]).await.json();
    let ids: Vec<_> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("w1"), json!("w2")]);
    assert_eq!(v["members"][0]["payload"], "10.0.0.1");
    assert_eq!(
        v["members"][0]["session"],
        format!("{:#x}", zk.session_id().0)
    );
    let human = normalise_table(&zkit(r, &["members", "/group"]).await.ok());
    assert_eq!(
        human,
        "/group: 2 members\n\
         MEMBER  SESSION  JOINED  PAYLOAD\n\
         w1  <session>  <age> ago  10.0.0.1\n\
         w2  <session>  <age> ago\n"
    );
    m1.leave().await.unwrap();
    m2.leave().await.unwrap();
    zk.close().await.unwrap();
}

#[tokio::test]
async fn jobs_show_spec_state_and_runs() {
    let root = fresh_root("jobs").await;
    let r = root.as_str();
    let zk = client(r).await;
    let jobs = Jobs::new(&zk, "/sched");
    jobs.define(
        &JobSpec::every("rollup", Duration::from_secs(60))
            .unwrap()
            .shards(2)
            .anchor_ms(1_000),
    )
    .await
    .unwrap();
    jobs.define(&JobSpec::cron("nightly", "0 3 * * *").unwrap())
        .await
        .unwrap();
    jobs.pause("nightly").await.unwrap();
    jobs.disable_shard("rollup", 1).await.unwrap();

    let v = zkit(r, &["jobs", "/sched", "--json"]).await.json();
    let list = v["jobs"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "nightly");
    assert_eq!(list[0]["schedule"], json!({"cron": "0 3 * * *"}));
    assert_eq!(list[0]["paused"], true);
    assert_eq!(list[1]["name"], "rollup");
    assert_eq!(list[1]["schedule"], json!({"every_ms": 60_000}));
    assert_eq!(list[1]["shards"], 2);
    assert_eq!(list[1]["anchor_ms"], 1_000);
    assert_eq!(list[1]["disabled_shards"], json!([1]));
    assert_eq!(list[1]["last_runs"], json!([]));

    let human = normalise_table(&zkit(r, &["jobs", "/sched"]).await.ok());
    assert_eq!(
        human,
        "JOB  SCHEDULE  SHARDS  STATE  INSTANCES  LAST RUN\n\
         nightly  cron 0 3 * * *  1  paused  -  -\n\
         rollup  every <age>  2  disabled 1  -  -\n"
    );
    let missing = zkit(r, &["jobs", "/sched", "nope"]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    zk.close().await.unwrap();
}

/// The JSON of `zkit args...` once `ready` accepts it (the recipes' nodes
/// appear asynchronously), at most 10 s.
async fn json_when(
    r: &str,
    args: &[&str],
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..200 {
        let v = zkit(r, args).await.json();
        if ready(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("zkit {args:?}: never reached the expected state");
}

#[tokio::test]
async fn semaphore_shows_holders_the_taker_and_waiters() {
    let root = fresh_root("semaphore").await;
    let r = root.as_str();
    let clients = [
        client(r).await,
        client(r).await,
        client(r).await,
        client(r).await,
    ];
    let session = |i: usize| format!("{:#x}", clients[i].session_id().0);
    let sem = |i: usize| Semaphore::new(&clients[i], "/sem", 2).data(format!("worker-{i}"));
    let first = sem(0).acquire().await.unwrap();
    let second = sem(1).acquire().await.unwrap();
    // The third holds the internal lock with its lease node made, waiting
    // for a lease; the fourth waits for the internal lock.
    let third = tokio::spawn({
        let s = sem(2);
        async move { s.acquire().await }
    });
    json_when(r, &["semaphore", "/sem", "--json"], |v| {
        v["acquiring"] == 1
            && v["participants"][2]["node"]
                .as_str()
                .is_some_and(|n| n.starts_with("leases/"))
    })
    .await;
    let fourth = tokio::spawn({
        let s = sem(3);
        async move { s.acquire().await }
    });
    let v = json_when(r, &["semaphore", "/sem", "--json"], |v| v["waiting"] == 1).await;
    assert_eq!(
        (v["held"].clone(), v["acquiring"].clone()),
        (json!(2), json!(1)),
        "{v}"
    );
    assert_eq!(v["max_leases"], serde_json::Value::Null);
    let roles: Vec<(String, String)> = v["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["role"].as_str().unwrap().to_string(),
                p["session"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("holder".to_string(), session(0)),
            ("holder".into(), session(1)),
            ("acquiring".into(), session(2)),
            ("waiter".into(), session(3)),
        ]
    );
    let p = &v["participants"];
    assert_eq!(
        p[0]["node"].as_str().unwrap(),
        format!("leases/{}", first.node().rsplit('/').next().unwrap())
    );
    assert_eq!(p[0]["data"], "worker-0");
    assert!(
        p[3]["node"].as_str().unwrap().starts_with("locks/_c_"),
        "{v}"
    );
    let with_max = zkit(r, &["semaphore", "/sem", "--max-leases", "2", "--json"])
        .await
        .json();
    assert_eq!(
        (with_max["max_leases"].clone(), with_max["free"].clone()),
        (json!(2), json!(0))
    );

    let human = normalise_table(&zkit(r, &["semaphore", "/sem"]).await.ok());
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines[0],
        "/sem: 2 leases held (max not recorded: --max-leases), 1 acquiring, 1 waiting"
    );
    assert_eq!(lines[1], "#  ROLE  SESSION  SINCE  NODE  DATA");
    for (line, start, end) in [
        (
            lines[2],
            "1  holder  <session>  <age>  leases/_c_",
            "-lease-0000000000  worker-0",
        ),
        (
            lines[3],
            "2  holder  <session>  <age>  leases/_c_",
            "-lease-0000000001  worker-1",
        ),
        (
            lines[4],
            "3  acquiring  <session>  <age>  leases/_c_",
            "-lease-0000000002  worker-2",
        ),
        (
            lines[5],
            "4  waiter  <session>  <age>  locks/_c_",
            "-lock-0000000003",
        ),
    ] {
        assert!(line.starts_with(start) && line.ends_with(end), "{human}");
    }
    assert_eq!(lines.len(), 6, "{human}");
    let human = zkit(r, &["semaphore", "/sem", "--max-leases", "2"])
        .await
        .ok();
    assert!(
        human.starts_with("/sem: 2 of 2 leases held (0 free), 1 acquiring, 1 waiting\n"),
        "{human}"
    );
    // Were the maximum 3, the taker's lease would be granted already.
    let v = zkit(r, &["semaphore", "/sem", "--max-leases", "3", "--json"])
        .await
        .json();
    assert_eq!(
        (&v["held"], &v["free"], &v["acquiring"], &v["waiting"]),
        (&json!(3), &json!(0), &json!(0), &json!(1)),
        "{v}"
    );

    // A lease comes free: the third takes it, the fourth becomes the taker.
    first.release().await.unwrap();
    let third = third.await.unwrap().unwrap();
    let v = json_when(r, &["semaphore", "/sem", "--json"], |v| {
        v["waiting"] == 0 && v["participants"][2]["role"] == "acquiring"
    })
    .await;
    assert_eq!(v["participants"][0]["session"], session(1));
    assert_eq!(v["participants"][1]["session"], session(2));
    assert_eq!(v["participants"][2]["session"], session(3));
    second.release().await.unwrap();
    third.release().await.unwrap();
    fourth.await.unwrap().unwrap().release().await.unwrap();
    let v = json_when(r, &["semaphore", "/sem", "--json"], |v| {
        v["participants"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert_eq!(v["held"], 0);
    let missing = zkit(r, &["semaphore", "/nope"]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("semaphore /nope: node does not exist (NoNode)"),
        "{}",
        missing.stderr
    );
    for c in clients {
        c.close().await.unwrap();
    }
}

#[tokio::test]
async fn barrier_shows_set_or_clear_and_double_barrier_members() {
    let root = fresh_root("barrier").await;
    let r = root.as_str();
    let zk = client(r).await;
    let gate = Barrier::new(&zk, "/gate");
    assert_eq!(
        zkit(r, &["barrier", "/gate"]).await.ok(),
        "/gate: barrier clear (no node: waiters pass)\n"
    );
    gate.set().await.unwrap();
    let v = zkit(r, &["barrier", "/gate", "--json"]).await.json();
    assert_eq!(
        (v["kind"].clone(), v["state"].clone()),
        (json!("barrier"), json!("set"))
    );
    assert!(v["since_ms"].as_i64().unwrap() > 0);
    assert_eq!(
        normalise_table(&zkit(r, &["barrier", "/gate"]).await.ok()),
        "/gate: barrier set for <age> (waiters block until the node is removed)\n"
    );
    gate.remove().await.unwrap();
    let v = zkit(r, &["barrier", "/gate", "--json"]).await.json();
    assert_eq!(v["state"], "clear");

    // A double barrier for three: two are in and wait.
    let members = [client(r).await, client(r).await, client(r).await];
    let session = |i: usize| format!("{:#x}", members[i].session_id().0);
    let barriers: Vec<_> = members
        .iter()
        .map(|c| std::sync::Arc::new(DoubleBarrier::new(c, "/db", 3)))
        .collect();
    let enter = |i: usize| {
        let b = barriers[i].clone();
        tokio::spawn(async move { b.enter().await })
    };
    let first = enter(0);
    json_when(r, &["barrier", "/db", "--json"], |v| {
        v["members"].as_array().is_some_and(|m| m.len() == 1)
    })
    .await;
    let second = enter(1);
    let v = json_when(r, &["barrier", "/db", "--json"], |v| {
        v["members"].as_array().is_some_and(|m| m.len() == 2)
    })
    .await;
    assert_eq!(
        (v["kind"].clone(), v["state"].clone(), v["ready"].clone()),
        (json!("double"), json!("waiting"), json!(false))
    );
    assert_eq!(v["members"][0]["session"], session(0));
    assert_eq!(v["members"][1]["session"], session(1));
    let human = normalise_table(&zkit(r, &["barrier", "/db"]).await.ok());
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "/db: double barrier, 2 members waiting to enter (not ready)",
            "#  MEMBER  SESSION  JOINED  DATA"
        ],
        "{human}"
    );
    for (i, line) in lines[2..].iter().enumerate() {
        let id = v["members"][i]["id"].as_str().unwrap();
        assert_eq!(*line, format!("{}  {id}  <session>  <age> ago", i + 1));
    }
    assert_eq!(lines.len(), 4, "{human}");

    // The third opens it.
    barriers[2].enter().await.unwrap();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let v = zkit(r, &["barrier", "/db", "--json"]).await.json();
    assert_eq!(
        (v["state"].clone(), v["ready"].clone()),
        (json!("entered"), json!(true))
    );
    assert_eq!(v["members"][2]["session"], session(2));
    assert!(v["ready_since_ms"].as_i64().is_some());
    let human = normalise_table(&zkit(r, &["barrier", "/db"]).await.ok());
    assert!(
        human.starts_with(
            "/db: double barrier, 3 members in, ready (entered <age> ago)\n\
             #  MEMBER  SESSION  JOINED  DATA\n"
        ),
        "{human}"
    );
    // Everyone leaves: the node stays (until reaped) without children.
    let leaving: Vec<_> = barriers
        .iter()
        .map(|b| {
            let b = b.clone();
            tokio::spawn(async move { b.leave().await })
        })
        .collect();
    for l in leaving {
        l.await.unwrap().unwrap();
    }
    let v = zkit(r, &["barrier", "/db", "--json"]).await.json();
    assert_eq!(
        (v["kind"].clone(), v["state"].clone(), v["members"].clone()),
        (json!("double"), json!("empty"), json!([]))
    );
    assert_eq!(
        zkit(r, &["barrier", "/db"]).await.ok(),
        "/db: double barrier, no members (all left)\n"
    );
    for c in members {
        c.close().await.unwrap();
    }
    zk.close().await.unwrap();
}

/// Item names carry their due time in hex (`queue-|18BCFE56800|…`), which
/// changes between runs: replaced by `<due>`.
fn normalise_due(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("queue-|") {
        let (head, tail) = rest.split_at(i + "queue-|".len());
        out.push_str(head);
        match tail.find('|') {
            Some(end) if tail[..end].bytes().all(|b| b.is_ascii_hexdigit()) => {
                out.push_str("<due>");
                rest = &tail[end..];
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn delay_queue_shows_due_items_the_oldest_and_claims() {
    let root = fresh_root("delayq").await;
    let r = root.as_str();
    let a = client(r).await;
    let b = client(r).await;
    let q = DelayQueue::new(&a, "/dq");
    let now = SystemTime::now();
    q.put(b"late", now - Duration::from_secs(30)).await.unwrap();
    q.put(b"soon", Duration::from_secs(600)).await.unwrap();
    q.put(b"also", now - Duration::from_secs(10)).await.unwrap();
    // A node of two items (Curator's putMulti), due in 20 minutes.
    let due = now + Duration::from_secs(1200);
    let due_ms = due
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    a.create(
        &format!("/dq/queue-|{due_ms:X}|"),
        &[
            0, 1, 0, 1, 1, 0, 0, 0, 2, b'h', b'i', 1, 0, 0, 0, 3, b'y', b'o', b'u', 2,
        ],
        &zkit::CreateOptions::new(zkit::CreateMode::PersistentSequential),
    )
    .await
    .unwrap();
    let claim = q.take_claimed().await.unwrap();
    assert_eq!(claim.data(), b"late");

    let v = zkit(r, &["delay-queue", "/dq", "--json"]).await.json();
    assert_eq!(
        (v["depth"].clone(), v["due_now"].clone()),
        (json!(4), json!(2)),
        "{v}"
    );
    let items = v["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["item"].as_str().unwrap()).collect();
    assert_eq!(names[0], claim.item().rsplit('/').next().unwrap());
    assert!(
        names
            .iter()
            .zip(["0000000000", "0000000002", "0000000001", "0000000003"])
            .all(|(n, s)| n.ends_with(s)),
        "due order, not put order: {names:?}"
    );
    assert_eq!(
        items.iter().map(|i| i["due"].clone()).collect::<Vec<_>>(),
        [json!(true), json!(true), json!(false), json!(false)]
    );
    assert_eq!(items[0]["claimed_by"], format!("{:#x}", a.session_id().0));
    assert_eq!(items[1]["claimed_by"], serde_json::Value::Null);
    assert_eq!(
        (items[0]["size"].clone(), items[0]["entries"].clone()),
        (json!(4), json!(1))
    );
    assert_eq!(
        (items[3]["size"].clone(), items[3]["entries"].clone()),
        (json!(5), json!(2))
    );
    assert_eq!(v["oldest"]["item"], names[0]);
    assert!(v["oldest"]["overdue_ms"].as_i64().unwrap() >= 30_000, "{v}");
    assert_eq!(v["claims"][0]["item"], names[0]);
    assert_eq!(v["waiting_consumers"], 0);

    let human = normalise_due(&normalise_table(
        &zkit(r, &["delay-queue", "/dq", "--limit", "3"]).await.ok(),
    ));
    assert_eq!(
        human,
        "/dq: 4 items, 2 due now, oldest due <age> ago, 1 claimed, 0 consumers waiting\n\
         #  ITEM  DUE AT  DUE  SIZE  CLAIMED BY\n\
         1  queue-|<due>|0000000000  <time>  <age> ago  4 B  <session>\n\
         2  queue-|<due>|0000000002  <time>  <age> ago  4 B  -\n\
         3  queue-|<due>|0000000001  <time>  in <age>  4 B  -\n\
         ... 1 more (--limit)\n"
    );
    let all = normalise_due(&normalise_table(
        &zkit(r, &["delay-queue", "/dq"]).await.ok(),
    ));
    assert!(
        all.ends_with("4  queue-|<due>|0000000003  <time>  in <age>  5 B (2 entries)  -\n"),
        "{all}"
    );

    // Another consumer claims the other due item, then waits in line for
    // the next.
    let qb = DelayQueue::new(&b, "/dq");
    let also = qb.take_claimed().await.unwrap();
    assert_eq!(also.data(), b"also");
    let waiting =
        tokio::spawn(async move { qb.take_claimed().await.map(|c| c.item().to_string()) });
    let v = json_when(r, &["delay-queue", "/dq", "--json"], |v| {
        v["waiting_consumers"] == 1
    })
    .await;
    assert_eq!(v["claims"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        v["items"][1]["claimed_by"],
        format!("{:#x}", b.session_id().0)
    );
    waiting.abort();
    claim.complete().await.unwrap();
    also.complete().await.unwrap();
    let v = zkit(r, &["delay-queue", "/dq", "--json"]).await.json();
    assert_eq!(
        (v["depth"].clone(), v["due_now"].clone()),
        (json!(2), json!(0))
    );
    assert!(
        v["oldest"]["overdue_ms"].as_i64().unwrap() < 0,
        "not due yet: {v}"
    );
    let missing = zkit(r, &["delay-queue", "/nope"]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    a.close().await.unwrap();
    b.close().await.unwrap();
}
