#!/usr/bin/env bash
# What TLS costs: the ops benchmark against one real ZooKeeper 3.8 (Debian) serving a plain
# and a TLS client port (Netty, PEM stores, ssl.clientAuth=need), run by zkit
# (examples/bench) and by the Java client (shared/bench-peers' JavaAsync) over each port,
# interleaved, REPEAT times (default 3). Prints JSON lines, then a table of medians.
#
#   scripts/bench-tls.sh                 # BENCH_N, BENCH_WINDOW, ... are passed to every run
#   REPEAT=5 scripts/bench-tls.sh
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
"$peers/java/run.sh" --build
java_build=${BENCH_PEERS_WORK:-${TMPDIR:-/tmp}/zkit-bench-peers}/java-build

nohup /usr/bin/java -Xms512m -Xmx512m -Djava.awt.headless=true -Dzookeeper.jmx.log4j.disable=true \
  -cp "$SERVER_CP" org.apache.zookeeper.server.ZooKeeperServerMain "$W/zoo.cfg" \
  > "$W/server.log" 2>&1 < /dev/null &
echo $! > "$W/pid"
for _ in $(seq 150); do
  if [[ $( (exec 3<>/dev/tcp/127.0.0.1/$PLAIN && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null) == imok ]] &&
     (exec 3<>/dev/tcp/127.0.0.1/$SECURE) 2>/dev/null; then
    break
  fi
  sleep 0.2
done
log "ZooKeeper at 127.0.0.1:$PLAIN (plain) and 127.0.0.1:$SECURE (TLS); $REPEAT rounds"

OUT=$W/results.jsonl
: > "$OUT"
run() { # peer-name command...
  local name=$1 line
  shift
  log "$name"
  line=$("$@" 2>>"$W/peers.log" | tail -1) || true
  [[ $line == \{* ]] || line="{\"peer\":\"$name\",\"ok\":false}"
  # The Java peer names itself java-async: tag the TLS runs.
  line=$(printf '%s' "$line" | sed "s/\"peer\":\"[^\"]*\"/\"peer\":\"$name\"/")
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
