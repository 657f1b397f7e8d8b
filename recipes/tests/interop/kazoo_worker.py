"""A kazoo participant for zkit's interop tests (recipes/tests/interop.rs).

    kazoo_worker.py CONNECT LOCK_PATH COUNTER_PATH ROUNDS

kazoo Lock with extra_lock_patterns=["-lock-"] (so it sees Curator-style and
zkit nodes as contenders): ROUNDS times acquire, read the counter, sleep
2 ms, write counter+1 with the version read (BadVersion = two holders),
release. Prints "violations N" and "done".
"""
import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError

connect, lock_path, counter, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
zk = KazooClient(hosts=connect, timeout=10)
zk.start()
lock = zk.Lock(lock_path, "kazoo", extra_lock_patterns=["-lock-"])
violations = 0
for _ in range(rounds):
    with lock:
        data, stat = zk.get(counter)
        time.sleep(0.002)
        try:
            zk.set(counter, str(int(data) + 1).encode(), version=stat.version)
        except BadVersionError:
            violations += 1
print("violations", violations)
print("done", flush=True)
zk.stop()
zk.close()
