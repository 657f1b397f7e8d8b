#!/usr/bin/env bash
# Client efficiency, with the server out of the way: the ops benchmark of zkit and of its peers
# (../shared/bench-peers: the Java client, the zookeeper-client crate) against the bundled server
# in memory (release build), on this machine, in one run. Prints one markdown table of medians.
#
#   scripts/bench-client.sh                    # 3 interleaved repeats
#   REPEAT=5 N=200000 SYNC_N=5000 scripts/bench-client.sh
#   CLIENTS="zkit zkit-current zkit-spawned zkit-busy" scripts/bench-client.sh   # zkit's variants
#   SERVER_BIN=/tmp/old/zkit-server BENCH_BIN=/tmp/old/bench scripts/bench-client.sh   # a before/after
#
# Columns: pipelined get/set/create/delete per second (window 1000), one-at-a-time getData p50 and
# p99, and CPU per operation of the client and of the server (user + sys over every operation the
# run issued: warm-up, the four phases, the one-at-a-time gets). Client and server share the
# machine's CPUs: when client CPU/op + server CPU/op times the rate fills every CPU, the machine
# bounds the phase, and the side with the larger share bounds it first. zkit's runs also report
# that per phase (`--server-pid`): a second table.
# JSON lines of every run go to target/bench-client/run-<time>.jsonl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REPEAT=${REPEAT:-3}
N=${N:-200000}
SYNC_N=${SYNC_N:-5000}
WARMUP=${WARMUP:-5000}
CLIENTS=${CLIENTS:-"java rzc zkit zkit-current"}
PEERS=${PEERS_DIR:-../shared/bench-peers}
PORT=${PORT:-23999}
EXTRA=${EXTRA_ARGS:-}

if [[ -z ${SERVER_BIN:-} ]]; then
  cargo build --quiet --release -p zkit-server --bin zkit-server
  SERVER_BIN=$PWD/target/release/zkit-server
fi
if [[ -z ${BENCH_BIN:-} ]]; then
  cargo build --quiet --release --example bench
  BENCH_BIN=$PWD/target/release/examples/bench
fi
BENCH=$BENCH_BIN
out_dir=target/bench-client
mkdir -p "$out_dir"
out=$out_dir/run-$(date +%Y%m%d-%H%M%S).jsonl
: >"$out"

# Peers compile on first use: not inside a measurement.
for c in $CLIENTS; do
  case $c in
    java) "$PEERS/bin/java-async" --help >/dev/null 2>&1 || true ;;
    rzc) "$PEERS/bin/rust-zookeeper-client" --help >/dev/null 2>&1 || true ;;
  esac
done

"$SERVER_BIN" --listen "127.0.0.1:$PORT" >"$out_dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.05
done

# CPU seconds (user + sys) of a process so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

args=(--n "$N" --window 1000 --warmup "$WARMUP" --sync-n "$SYNC_N")
for r in $(seq "$REPEAT"); do
  for c in $CLIENTS; do
    case $c in
      java) cmd=("$PEERS/bin/java-async") ;;
      rzc) cmd=("$PEERS/bin/rust-zookeeper-client") ;;
      zkit) cmd=("$BENCH" --server-pid "$server") ;;
      zkit-current) cmd=("$BENCH" --server-pid "$server" --runtime current --peer zkit-async-current) ;;
      zkit-spawned) cmd=("$BENCH" --server-pid "$server" --caller spawned --peer zkit-async-spawned) ;;
      zkit-busy) cmd=("$BENCH" --server-pid "$server" --busy-poll-us "${BUSY_POLL_US:-100}" --peer zkit-async-busy-poll) ;;
      zkit-*) cmd=("$BENCH" --server-pid "$server" --peer "$c") ;;
      *) echo "unknown client $c" >&2; exit 2 ;;
    esac
    s0=$(cpu_of "$server")
    line=$(/usr/bin/time -f '%U %S' -o "$out_dir/time" "${cmd[@]}" "127.0.0.1:$PORT" "${args[@]}" $EXTRA 2>/dev/null | tail -1)
    s1=$(cpu_of "$server")
    read -r u s <"$out_dir/time"
    python3 - "$c" "$r" "$u" "$s" "$s0" "$s1" "$line" >>"$out" <<'PY'
import json, sys
c, r, u, s, s0, s1, line = sys.argv[1:]
d = json.loads(line)
ops = d["warmup"] + 4 * d["n"] + d["sync_n"] + min(d["sync_n"], 200)
d.update(bench_client=c, repeat=int(r), ops_total=ops,
         client_cpu_us_per_op=(float(u) + float(s)) / ops * 1e6,
         server_cpu_us_per_op=(float(s1) - float(s0)) / ops * 1e6)
print(json.dumps(d))
PY
    echo "$c #$r done" >&2
  done
done

python3 - "$out" "$(nproc)" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpus = int(sys.argv[2])
names = {"java": "Java client 3.8 (java-async)", "rzc": "`zookeeper-client` 0.11",
         "zkit": "zkit (multi-thread runtime, the default)", "zkit-current": "zkit (current-thread runtime)",
         "zkit-spawned": "zkit (multi-thread, caller in a spawned task)",
         "zkit-busy": "zkit (multi-thread, `busy_poll` 100 µs)"}
by = {}
for d in rows:
    by.setdefault(d["bench_client"], []).append(d)
med = lambda xs: statistics.median(xs)
def k(v):
    return f"{v/1e6:.2f}M" if v >= 1e6 else f"{v/1e3:.0f}k"
print(f"\n{len(rows)} runs, {cpus} CPUs; medians of {max(len(v) for v in by.values())} interleaved repeats\n")
print("| client | get/s | set/s | create/s | delete/s | sync get p50 | sync get p99 | client CPU/op | server CPU/op | verified |")
print("|---|---|---|---|---|---|---|---|---|---|")
for c, ds in by.items():
    g = lambda key: med([d[key] for d in ds])
    print(f"| {names.get(c, c)} | {k(g('get_ops_s'))} | {k(g('set_ops_s'))} | {k(g('create_ops_s'))} | {k(g('delete_ops_s'))} "
          f"| {g('sync_get_p50_us'):.1f} µs | {g('sync_get_p99_us'):.1f} µs | {g('client_cpu_us_per_op'):.2f} µs "
          f"| {g('server_cpu_us_per_op'):.2f} µs | {all(d.get('verified') for d in ds)} |")
# Which side each phase costs most (zkit's runs report both per phase):
# CPU use = (client + server CPU per op) x rate, in CPUs of this machine.
print("\nPer phase, zkit's runs: CPU per op of the client and of the server, and the CPUs they kept busy\n")
print("| client | phase | ops/s | client CPU/op | server CPU/op | CPUs busy (of %d) |" % cpus)
print("|---|---|---|---|---|---|")
for c, ds in by.items():
    if "get_client_cpu_us_per_op" not in ds[0]:
        continue
    for ph in ["get", "set", "create", "delete"]:
        g = lambda key: med([d[key] for d in ds if key in d])
        rate, cl, sv = g(f"{ph}_ops_s"), g(f"{ph}_client_cpu_us_per_op"), g(f"{ph}_server_cpu_us_per_op")
        print(f"| {names.get(c, c)} | {ph} | {k(rate)} | {cl:.2f} µs | {sv:.2f} µs | {(cl + sv) * rate / 1e6:.2f} |")
print(f"\nJSON lines: {sys.argv[1]}")
PY
