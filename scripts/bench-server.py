#!/usr/bin/env python3
"""Bundled server benchmark: zkit-server (in-memory and durable) against Apache
ZooKeeper 3.8 standalone, with the same clients, in one run.

    scripts/bench-server.py [--repeat R] [--peers DIR] [--out FILE]

For each server kind (zookeeper with forceSync=yes, zkit-server in-memory,
zkit-server with a data dir and fsync), interleaved over R repeats: start a
fresh server, time its start-up (spawn -> `srvr` answers), run the zkit ops
benchmark (examples/bench.rs, peer zkit-async) and, when ../shared/bench-peers
is there, the Java client's (java-async), then read the server's RSS and stop
it. Prints one JSON line per run and a table of medians (min-max).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZK_CP = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def srvr(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"srvr")
            out = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
            return out.decode(errors="replace")
    except OSError:
        return ""


def classpath():
    # The Debian package's jar manifest names its dependencies.
    return ("/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:"
            "/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar")


class Server:
    def __init__(self, kind, workdir, tick=500, heap="512m"):
        self.kind = kind
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"zkit-bench-{kind}-", dir=workdir)
        log = open(os.path.join(self.dir, "server.log"), "w")
        if kind == "zookeeper":
            data = os.path.join(self.dir, "data")
            os.makedirs(data)
            cfg = os.path.join(self.dir, "zoo.cfg")
            with open(cfg, "w") as f:
                f.write(f"tickTime={tick}\ndataDir={data}\nclientPort={self.port}\n"
                        "clientPortAddress=127.0.0.1\nmaxClientCnxns=0\n"
                        "4lw.commands.whitelist=*\nadmin.enableServer=false\n")
            cmd = ["java", f"-Xms{heap}", f"-Xmx{heap}", "-Djava.awt.headless=true", "-Dzookeeper.forceSync=yes",
                   "-Dzookeeper.log.dir=" + self.dir,
                   "-cp", classpath(), "org.apache.zookeeper.server.ZooKeeperServerMain", cfg]
        else:
            cfg = os.path.join(self.dir, "zoo.cfg")
            with open(cfg, "w") as f:
                f.write(f"tickTime={tick}\nclientPort={self.port}\n"
                        "clientPortAddress=127.0.0.1\nmaxClientCnxns=0\n"
                        "4lw.commands.whitelist=*\n")
                if kind == "zkit-server-fsync":
                    f.write(f"dataDir={os.path.join(self.dir, 'data')}\n")
            cmd = [os.path.join(ROOT, "target/release/zkit-server"), "--config", cfg]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        while "Mode: standalone" not in srvr(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} exited at start, see {self.dir}/server.log")
            if time.monotonic() - t0 > 60:
                raise RuntimeError(f"{kind} did not start")
            time.sleep(0.002)
        self.start_ms = (time.monotonic() - t0) * 1000
        self.connect = f"127.0.0.1:{self.port}"

    def rss_kib(self, key="VmRSS:"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_client(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    for line in reversed(out.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    return {"ok": False, "error": (out.stderr or out.stdout)[-300:]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peers", default=os.path.join(ROOT, "..", "shared", "bench-peers"))
    ap.add_argument("--kinds", default="zookeeper,zkit-server-memory,zkit-server-fsync")
    ap.add_argument("--out", default=None)
    ap.add_argument("--scale", action="store_true",
                    help="run examples/scale (1M znodes, 10k sessions) instead of the ops benchmarks")
    ap.add_argument("--scale-args", default="")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "zkit-server",
                    "--bin", "zkit-server"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "zkit",
                    "--example", "bench"], cwd=ROOT, check=True)
    clients = [("zkit-async", [os.path.join(ROOT, "target/release/examples/bench")])]
    java = os.path.join(args.peers, "bin", "java-async")
    if os.path.exists(java):
        clients.append(("java-async", [java]))
    tick, heap = 500, "512m"
    if args.scale:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "zkit",
                        "--example", "scale"], cwd=ROOT, check=True)
        clients = [("zkit-scale", [os.path.join(ROOT, "target/release/examples/scale")]
                    + args.scale_args.split())]
        tick, heap = 2000, "3g"
    workdir = tempfile.mkdtemp(prefix="zkit-bench-server-")
    rows = []
    out = open(args.out, "a") if args.out else None
    try:
        for r in range(args.repeat):
            for kind in args.kinds.split(","):
                srv = Server(kind, workdir, tick, heap)
                try:
                    for name, cmd in clients:
                        res = run_client(cmd + [srv.connect])
                        res.update({"server": kind, "repeat": r, "client_peer": name,
                                    "server_start_ms": round(srv.start_ms, 1),
                                    "server_rss_kib": srv.rss_kib(),
                                    "server_peak_rss_kib": srv.rss_kib("VmHWM:")})
                        line = json.dumps(res)
                        print(line, flush=True)
                        if out:
                            out.write(line + "\n")
                        rows.append(res)
                finally:
                    srv.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    keys = ["get_ops_s", "set_ops_s", "create_ops_s", "delete_ops_s",
            "sync_get_p50_us", "sync_get_p99_us", "server_rss_kib", "server_start_ms"]
    if args.scale:
        keys = ["base_p50_us", "base_p99_us", "loaded_p50_us", "loaded_p99_us", "p99_ratio",
                "create_ops_s", "server_peak_rss_kib", "server_start_ms"]
    print()
    print("| server | client | " + " | ".join(keys) + " | ok/verified |")
    print("|---|---|" + "---|" * len(keys) + "---|")
    groups = {}
    for row in rows:
        groups.setdefault((row["server"], row["client_peer"]), []).append(row)
    for (server, client), rs in groups.items():
        cells = []
        for k in keys:
            vals = [x[k] for x in rs if isinstance(x.get(k), (int, float))]
            if not vals:
                cells.append("-")
                continue
            med = statistics.median(vals)
            fmt = (lambda v: f"{v:.2f}") if med < 10 else (lambda v: f"{v:.0f}")
            cells.append(f"{fmt(med)} ({fmt(min(vals))}-{fmt(max(vals))})" if len(vals) > 1 else fmt(med))
        ok = sum(1 for x in rs if x.get("ok"))
        ver = sum(1 for x in rs if x.get("verified"))
        print(f"| {server} | {client} | " + " | ".join(cells) + f" | {ok}/{ver} of {len(rs)} |")


if __name__ == "__main__":
    sys.exit(main())
