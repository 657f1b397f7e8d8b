//! Recipe inspection against locks, elections, queues, services, members
//! and jobs made with zkit-recipes in the test.

mod common;

use std::time::Duration;

use common::{client, fresh_root, hosts, normalise_table, zkit};
use serde_json::json;
use zkit_recipes::discovery::{ServiceDiscovery, ServiceInstance};
use zkit_recipes::scheduler::{JobSpec, Jobs};
use zkit_recipes::{GroupMember, LeaderLatch, Lock, Queue, Sessions};

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
