#!/usr/bin/env bash
# What TLS costs: the ops benchmark against one real ZooKeeper 3.8 (Debian) serving a plain
# and a TLS client port (Netty, PEM stores, ssl.clientAuth=need), run by zkit
# (examples/bench) and by the Java client (shared/bench-peers' JavaAsync) over each port,
# interleaved, REPEAT times (default 3). Prints JSON lines, then a table of medians.
#
#   scripts/bench-tls.sh                 # BENCH_N, BENCH_WINDOW, ... are passed to every run
#   REPEAT=5 scripts/bench-tls.sh
#   SERVER=bundled scripts/bench-tls.sh  # the same zoo.cfg on the release zkit-server instead, so
#                                        # the client side of TLS is what is measured
#
# Each JSON line gets `client_cpu_us_per_op`: the client process's user+sys time over every
# operation it issued (warm-up and latency phases included), from /usr/bin/time.
#
# Peers: zkit-async / zkit-async-tls, java-async / java-async-tls. Needs the Debian
# zookeeper package (scripts/install-zookeeper.sh), openssl, a JDK (javac) and
# ../shared/bench-peers. Never run it while something else builds (2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
peers=${BENCH_PEERS:-$root/../shared/bench-peers}
REPEAT=${REPEAT:-3}
W=$(mktemp -d "${TMPDIR:-/tmp}/zkit-bench-tls.XXXXXX")
PLAIN=${ZK_PORT:-22191}
SECURE=${ZK_SECURE_PORT:-22192}
J=/usr/share/java
SERVER_CP=/etc/zookeeper/conf:$J/zookeeper.jar:$J/netty-codec.jar:$J/netty-resolver.jar:$J/slf4j-log4j12.jar:$J/log4j-1.2.jar
CLIENT_CP=$J/zookeeper.jar:$J/zookeeper-jute.jar:$J/slf4j-nop.jar:$J/netty-codec.jar:$J/netty-resolver.jar

cleanup() {
  [[ -f $W/pid ]] && kill "$(cat "$W/pid")" 2>/dev/null || true
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$W"
}
trap cleanup EXIT

log() { echo "bench-tls: $*" >&2; }

# Certificates: a CA, the server (localhost, 127.0.0.1), a client; PEM key stores.
(
  cd "$W"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=zkit-bench-ca" -keyout ca.key -out ca.pem
  openssl req -newkey rsa:2048 -nodes -subj "/O=zkit/CN=localhost" -keyout server.key -out server.csr
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem
  openssl req -newkey rsa:2048 -nodes -subj "/O=zkit/CN=bench" -keyout client.key -out client.csr
  printf 'extendedKeyUsage=clientAuth\n' > client.ext
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.pem
  cat server.pem server.key > server-keystore.pem
  cat client.pem client.key > client-keystore.pem
) > "$W/openssl.log" 2>&1

mkdir -p "$W/data"
cat > "$W/zoo.cfg" <<EOF
tickTime=500
dataDir=$W/data
clientPort=$PLAIN
clientPortAddress=127.0.0.1
secureClientPort=$SECURE
secureClientPortAddress=127.0.0.1
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=$W/server-keystore.pem
ssl.keyStore.type=PEM
ssl.trustStore.location=$W/ca.pem
ssl.trustStore.type=PEM
ssl.clientAuth=need
maxClientCnxns=0
forceSync=${ZK_FORCESYNC:-yes}
4lw.commands.whitelist=*
admin.enableServer=false
EOF

# Build everything before the server starts.
cargo build --release --quiet --example bench
[[ ${SERVER:-zookeeper} == bundled ]] && cargo build --release --quiet -p zkit-server --bin zkit-server
"$peers/java/run.sh" --build
java_build=${BENCH_PEERS_WORK:-${TMPDIR:-/tmp}/zkit-bench-peers}/java-build

if [[ ${SERVER:-zookeeper} == bundled ]]; then
  nohup target/release/zkit-server --config "$W/zoo.cfg" > "$W/server.log" 2>&1 < /dev/null &
else
  nohup /usr/bin/java -Xms512m -Xmx512m -Djava.awt.headless=true -Dzookeeper.jmx.log4j.disable=true \
    -cp "$SERVER_CP" org.apache.zookeeper.server.ZooKeeperServerMain "$W/zoo.cfg" \
    > "$W/server.log" 2>&1 < /dev/null &
fi
echo $! > "$W/pid"
for _ in $(seq 150); do
  if [[ $( (exec 3<>/dev/tcp/127.0.0.1/$PLAIN && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null) == imok ]] &&
     (exec 3<>/dev/tcp/127.0.0.1/$SECURE) 2>/dev/null; then
    break
  fi
  sleep 0.2
done
log "${SERVER:-zookeeper} at 127.0.0.1:$PLAIN (plain) and 127.0.0.1:$SECURE (TLS); $REPEAT rounds"

OUT=$W/results.jsonl
: > "$OUT"
run() { # peer-name command...
  local name=$1 line
  shift
  log "$name"
  line=$(/usr/bin/time -f '%U %S' -o "$W/time" "$@" 2>>"$W/peers.log" | tail -1) || true
  [[ $line == \{* ]] || line="{\"peer\":\"$name\",\"ok\":false}"
  # The Java peer names itself java-async: tag the TLS runs. Add the client's CPU per op.
  line=$(NAME=$name TIMES=$(tail -1 "$W/time") python3 -c '
import json, os, sys
d = json.loads(sys.stdin.read())
d["peer"] = os.environ["NAME"]
u, s = (float(x) for x in os.environ["TIMES"].split())
ops = 4 * d.get("n", 0) + d.get("warmup", 0) + d.get("sync_n", 0) + min(d.get("sync_n", 0), 200)
d["server"] = os.environ.get("SERVER", "zookeeper")
if ops:
    d["client_cpu_us_per_op"] = round((u + s) * 1e6 / ops, 2)
print(json.dumps(d))' <<< "$line") || true
  echo "$line" | tee -a "$OUT"
}
java_tls_props=(
  -Dzookeeper.client.secure=true
  -Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty
  "-Dzookeeper.ssl.keyStore.location=$W/client-keystore.pem" -Dzookeeper.ssl.keyStore.type=PEM
  "-Dzookeeper.ssl.trustStore.location=$W/ca.pem" -Dzookeeper.ssl.trustStore.type=PEM
)
for ((r = 1; r <= REPEAT; r++)); do
  run zkit-async target/release/examples/bench "127.0.0.1:$PLAIN"
  run zkit-async-tls target/release/examples/bench "127.0.0.1:$SECURE" \
    --tls-ca "$W/ca.pem" --tls-cert "$W/client.pem" --tls-key "$W/client.key"
  run java-async /usr/bin/java -Xmx1g -cp "$java_build:$CLIENT_CP" JavaAsync "127.0.0.1:$PLAIN"
  run java-async-tls /usr/bin/java -Xmx1g "${java_tls_props[@]}" -cp "$java_build:$CLIENT_CP" JavaAsync "127.0.0.1:$SECURE"
done
python3 "$peers/table.py" --spread "$OUT"
python3 - "$OUT" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if "client_cpu_us_per_op" in d:
        runs.setdefault(d["peer"], []).append(d["client_cpu_us_per_op"])
print("\n| peer | client CPU µs per op (median) |\n|---|---|")
for peer, v in runs.items():
    print(f"| {peer} | {statistics.median(v):.2f} |")
PY
