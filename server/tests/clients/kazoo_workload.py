#!/usr/bin/python3
"""Differential workload for kazoo (run by server/tests/thirdparty.rs).

Usage: kazoo_workload.py HOST:PORT
Prints one JSON object per line; zxids, times and session ids are normalised
so the output is identical against real ZooKeeper and zkit-server.
"""
import json
import sys
import threading
import time

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import AuthFailedError, KazooException
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import make_digest_acl, make_acl, OPEN_ACL_UNSAFE

HOSTS = sys.argv[1]
ROOT = "/kz"


def out(step, value):
    print(json.dumps({"step": step, "value": value}, sort_keys=True), flush=True)


def norm_stat(st):
    if st is None:
        return None
    return {
        "version": st.version,
        "cversion": st.cversion,
        "aversion": st.aversion,
        "dataLength": st.dataLength,
        "numChildren": st.numChildren,
        "ephemeral": st.ephemeralOwner != 0,
        "czxid==mzxid": st.czxid == st.mzxid,
        "pzxid>=czxid": st.pzxid >= st.czxid,
        "ctime==mtime": st.ctime == st.mtime,
    }


def norm(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return {"bytes": v.decode("latin-1")}
    if hasattr(v, "czxid"):
        return norm_stat(v)
    if hasattr(v, "type") and hasattr(v, "state") and hasattr(v, "path"):
        return {"event": str(v.type), "state": str(v.state), "path": v.path}
    if hasattr(v, "perms") and hasattr(v, "id"):
        return {"perms": v.perms, "scheme": v.id.scheme, "id": v.id.id}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {str(k): norm(x) for k, x in v.items()}
    if isinstance(v, BaseException):
        return {"exception": type(v).__name__}
    return {"repr": type(v).__name__}


def step(name, fn):
    try:
        out(name, norm(fn()))
    except (KazooException, ValueError) as e:
        out(name, {"exception": type(e).__name__})


def client(**kw):
    c = KazooClient(hosts=HOSTS, timeout=10.0, **kw)
    c.start(timeout=15)
    return c


zk = client()
events = []
ev_lock = threading.Lock()


def record(tag):
    def cb(ev):
        with ev_lock:
            events.append((tag, norm(ev)))
    return cb


def drain(name, expect, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with ev_lock:
            if len(events) >= expect:
                break
        time.sleep(0.01)
    time.sleep(0.1)
    with ev_lock:
        got = sorted(events, key=lambda e: json.dumps(e, sort_keys=True))
        events.clear()
    out(name, got)


# --- create / get / set -----------------------------------------------------
step("create plain", lambda: zk.create(ROOT, b"root"))
step("create again", lambda: zk.create(ROOT, b"x"))
step("create no parent", lambda: zk.create(ROOT + "/a/b", b""))
step("create with data", lambda: zk.create(ROOT + "/data", b"hello"))
step("create ephemeral", lambda: zk.create(ROOT + "/eph", b"e", ephemeral=True))
step("create child of ephemeral", lambda: zk.create(ROOT + "/eph/c", b""))
step("create seq 1", lambda: zk.create(ROOT + "/seq-", b"", sequence=True))
step("create seq 2", lambda: zk.create(ROOT + "/seq-", b"", sequence=True))
step("create eph seq", lambda: zk.create(ROOT + "/es-", b"", ephemeral=True, sequence=True))
step("create makepath", lambda: zk.create(ROOT + "/mp/x/y", b"deep", makepath=True))
step("create_stat", lambda: zk.create(ROOT + "/cs", b"abc", include_data=True))
step("get", lambda: zk.get(ROOT + "/data"))
step("get missing", lambda: zk.get(ROOT + "/missing"))
step("set", lambda: zk.set(ROOT + "/data", b"v1"))
step("set version ok", lambda: zk.set(ROOT + "/data", b"v2", version=1))
step("set bad version", lambda: zk.set(ROOT + "/data", b"v3", version=7))
step("set missing", lambda: zk.set(ROOT + "/missing", b""))
step("get after set", lambda: zk.get(ROOT + "/data"))
step("get root stat", lambda: zk.exists(ROOT))
step("children", lambda: sorted(zk.get_children(ROOT)))
step("children stat", lambda: (sorted(zk.get_children(ROOT, include_data=True)[0]),
                               zk.get_children(ROOT, include_data=True)[1]))
step("children missing", lambda: zk.get_children(ROOT + "/missing"))
step("exists missing", lambda: zk.exists(ROOT + "/missing"))
step("delete bad version", lambda: zk.delete(ROOT + "/data", version=9))
step("delete not empty", lambda: zk.delete(ROOT + "/mp"))
step("delete missing", lambda: zk.delete(ROOT + "/missing"))
step("big data", lambda: (zk.create(ROOT + "/big", b"x" * 100000), zk.get(ROOT + "/big")[1]))

# --- watches ----------------------------------------------------------------
step("exists watch (missing)", lambda: zk.exists(ROOT + "/w", watch=record("exists")))
step("create /w", lambda: zk.create(ROOT + "/w", b"0"))
drain("events after create", 1)
step("data watch", lambda: zk.get(ROOT + "/w", watch=record("data")))
step("exists watch", lambda: zk.exists(ROOT + "/w", watch=record("exists2")))
step("child watch", lambda: zk.get_children(ROOT + "/w", watch=record("child")))
step("set /w", lambda: zk.set(ROOT + "/w", b"1"))
drain("events after set", 2)
step("create /w/c", lambda: zk.create(ROOT + "/w/c", b""))
drain("events after child create", 1)
step("data watch 2", lambda: zk.get(ROOT + "/w", watch=record("data2")))
step("child watch 2", lambda: zk.get_children(ROOT + "/w", watch=record("child2")))
step("child data watch", lambda: zk.get(ROOT + "/w/c", watch=record("cdata")))
step("delete /w/c", lambda: zk.delete(ROOT + "/w/c"))
drain("events after child delete", 2)
step("delete /w", lambda: zk.delete(ROOT + "/w"))
drain("events after delete", 2)

# --- transactions ----------------------------------------------------------
def txn_ok():
    t = zk.transaction()
    t.create(ROOT + "/t1", b"a")
    t.create(ROOT + "/t1/c", b"b")
    t.set_data(ROOT + "/t1", b"c")
    t.check(ROOT + "/t1", 1)
    t.create(ROOT + "/ts-", b"", sequence=True)
    return t.commit()


def txn_fail():
    t = zk.transaction()
    t.create(ROOT + "/t2", b"")
    t.check(ROOT + "/t1", 99)
    t.delete(ROOT + "/t1/c")
    return t.commit()


def txn_fail_missing():
    t = zk.transaction()
    t.delete(ROOT + "/nope")
    t.create(ROOT + "/t3", b"")
    return t.commit()


step("txn ok", txn_ok)
step("txn fail check", txn_fail)
step("txn fail missing", txn_fail_missing)
step("txn effects", lambda: (zk.exists(ROOT + "/t2"), zk.get(ROOT + "/t1/c")[0], zk.exists(ROOT + "/t3")))

# --- lock with two clients ---------------------------------------------------
zk2 = client()
lock1 = zk.Lock(ROOT + "/lock", "one")
lock2 = zk2.Lock(ROOT + "/lock", "two")
step("lock1 acquire", lambda: lock1.acquire(timeout=5))
step("lock2 nonblocking", lambda: lock2.acquire(blocking=False))
step("lock contenders", lambda: lock1.contenders())
got2 = threading.Event()


def waiter():
    if lock2.acquire(timeout=10):
        got2.set()


th = threading.Thread(target=waiter)
th.start()
time.sleep(0.3)
step("lock2 waiting", lambda: got2.is_set())
step("lock1 release", lambda: lock1.release())
th.join(12)
step("lock2 acquired", lambda: got2.is_set())
step("lock contenders 2", lambda: lock2.contenders())
step("lock2 release", lambda: lock2.release())
step("lock children", lambda: zk.get_children(ROOT + "/lock"))

# --- ensure_path / delete recursive -----------------------------------------
step("ensure_path", lambda: zk.ensure_path(ROOT + "/ens/a/b/c"))
step("ensure_path again", lambda: zk.ensure_path(ROOT + "/ens/a/b/c"))
step("ensure stat", lambda: zk.exists(ROOT + "/ens/a"))
step("delete recursive", lambda: zk.delete(ROOT + "/ens", recursive=True))
step("deleted", lambda: zk.exists(ROOT + "/ens"))

# --- ephemerals disappear with the session ----------------------------------
step("zk2 ephemeral", lambda: zk2.create(ROOT + "/eph2", b"", ephemeral=True))
step("watch eph2", lambda: zk.exists(ROOT + "/eph2", watch=record("eph2")))
zk2.stop()
zk2.close()
drain("events after zk2 close", 1)
step("eph2 gone", lambda: zk.exists(ROOT + "/eph2"))

# --- system nodes, sync, recipes --------------------------------------------
step("get /", lambda: zk.get("/"))
step("children /zookeeper", lambda: sorted(zk.get_children("/zookeeper")))
step("get /zookeeper", lambda: zk.get("/zookeeper"))
step("get /zookeeper/config", lambda: zk.get("/zookeeper/config"))
step("get /zookeeper/quota", lambda: zk.get("/zookeeper/quota"))
step("acl /zookeeper", lambda: zk.get_acls("/zookeeper"))
step("create under /zookeeper", lambda: zk.create("/zookeeper/x", b""))
step("set /zookeeper", lambda: zk.set("/zookeeper", b"x"))
step("delete /zookeeper", lambda: zk.delete("/zookeeper"))
step("sync", lambda: zk.sync(ROOT))
step("sync missing", lambda: zk.sync(ROOT + "/missing"))
step("counter", lambda: (lambda c: (c.__add__(5), c.__sub__(2), c.value)[2])(zk.Counter(ROOT + "/counter")))
step("queue", lambda: (lambda q: (q.put(b"a"), q.put(b"b"), q.put(b"c", priority=10), len(q), q.get(), q.get())[3:])(zk.Queue(ROOT + "/queue")))
step("lockingqueue", lambda: (lambda q: (q.put(b"x"), q.put_all([b"y", b"z"]), len(q), q.get(timeout=2), q.consume(), q.get(timeout=2), q.holds_lock())[2:])(zk.LockingQueue(ROOT + "/lq")))
step("semaphore", lambda: (lambda s: (s.acquire(timeout=2), s.lease_holders(), s.release()))(zk.Semaphore(ROOT + "/sem", "me", max_leases=2)))
step("election contenders", lambda: zk.Election(ROOT + "/elect", "me").contenders())
step("party", lambda: (lambda p: (p.join(), len(p), list(p), p.leave(), len(p)))(zk.Party(ROOT + "/party", "me")))
step("barrier", lambda: (lambda b: (b.create(), b.wait(timeout=0.2), b.remove(), b.wait(timeout=1)))(zk.Barrier(ROOT + "/barrier")))
step("bad path", lambda: zk.create("kz-bad", b""))
step("trailing slash", lambda: zk.exists(ROOT + "/"))
step("double slash", lambda: zk.exists(ROOT + "//x"))
step("dot path", lambda: zk.exists(ROOT + "/./x"))
step("seq with slash end", lambda: zk.create(ROOT + "/seqdir/", b"", sequence=True, makepath=True))
step("children after seqdir", lambda: sorted(zk.get_children(ROOT + "/seqdir")))
step("null data get", lambda: (zk.create(ROOT + "/nodata"), zk.get(ROOT + "/nodata")[0]))
step("version overflow-ish", lambda: zk.set(ROOT + "/nodata", b"", version=-2))
step("delete version -1", lambda: zk.delete(ROOT + "/nodata", version=-1))

# --- auth / ACL ---------------------------------------------------------------
acl = make_digest_acl("alice", "secret", all=True)
step("create digest acl", lambda: zk.create(ROOT + "/secure", b"s", acl=[acl]))
step("get NoAuth", lambda: zk.get(ROOT + "/secure"))
step("set NoAuth", lambda: zk.set(ROOT + "/secure", b""))
step("exists no auth needed", lambda: zk.exists(ROOT + "/secure"))
step("get_acls", lambda: zk.get_acls(ROOT + "/secure"))
step("create read-only acl", lambda: zk.create(ROOT + "/ro", b"r",
                                                acl=[make_acl("world", "anyone", read=True)]))
step("set read-only", lambda: zk.set(ROOT + "/ro", b"w"))
step("create under read-only", lambda: zk.create(ROOT + "/ro/c", b""))
step("set_acls bad version", lambda: zk.set_acls(ROOT + "/ro", OPEN_ACL_UNSAFE, version=5))
step("invalid acl", lambda: zk.create(ROOT + "/badacl", b"",
                                       acl=[make_acl("bogus", "x", all=True)]))
step("auth acl without auth", lambda: zk.create(ROOT + "/authacl", b"",
                                                 acl=[make_acl("auth", "", all=True)]))
zk3 = client(auth_data=[("digest", "alice:secret")])
step("get with auth", lambda: zk3.get(ROOT + "/secure"))
step("set with auth", lambda: zk3.set(ROOT + "/secure", b"t"))
step("auth acl with auth", lambda: zk3.create(ROOT + "/authacl", b"",
                                               acl=[make_acl("auth", "", all=True)]))
step("auth acl result", lambda: zk3.get_acls(ROOT + "/authacl"))
step("set_acls", lambda: zk3.set_acls(ROOT + "/secure", OPEN_ACL_UNSAFE))
step("get after set_acls", lambda: zk.get(ROOT + "/secure"))
def bad_auth():
    c = KazooClient(hosts=HOSTS, timeout=10.0, auth_data=[("nosuchscheme", "x")])
    states = []
    c.add_listener(states.append)
    try:
        c.start(timeout=15)
    except KazooTimeoutError:
        # kazoo's start() races its own connection thread: the session is
        # CONNECTED before the auth packet goes out, and when the server's
        # AuthFailed reply is handled before start() looks, start() reports
        # a time-out for a session that connected and was then LOST to the
        # auth failure (a fast server makes this likely). A real time-out
        # never connects, so never loses.
        deadline = time.time() + 1.0
        while KazooState.LOST not in states and time.time() < deadline:
            time.sleep(0.01)
        if KazooState.LOST in states:
            raise AuthFailedError()
        raise
    return c.get(ROOT)


step("bad auth", bad_auth)

# --- cleanup ------------------------------------------------------------------
step("delete all", lambda: zk3.delete(ROOT, recursive=True))
zk3.stop()
zk3.close()
step("root children", lambda: sorted(c for c in zk.get_children("/") if c != "zookeeper"))
zk.stop()
zk.close()
out("done", True)
