#!/usr/bin/env bash
# The project's test command: formatting, lints and the whole workspace's tests, including
# the tests against real Apache ZooKeeper (installed first by scripts/install-zookeeper.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export RUST_BACKTRACE=1

run() {
  echo "+ $*" >&2
  "$@"
}

run scripts/install-zookeeper.sh
# The protocol and session layers are sans-IO: no runtime, sockets, clocks or global RNG.
if grep -rnE 'tokio|std::net|Instant::now|SystemTime::now|thread_rng|rand::rng\(' proto/src src/session --include='*.rs' | grep -v '^src/session/tests.rs' | grep -v '^proto/src/tests.rs' | grep -vE '^[^:]+:[0-9]+:\s*//'; then
  echo "sans-IO boundary violated (see lines above)" >&2
  exit 1
fi
run cargo fmt --all -- --check
run cargo clippy --workspace --all-targets -- -D warnings
run cargo clippy -p zkit --all-targets --features gssapi -- -D warnings
run cargo clippy -p zkit --all-targets --features metrics -- -D warnings
run cargo clippy -p zkit-recipes --all-targets --features metrics -- -D warnings
# The fixtures' bundled backend runs the zkit-server binary: build it once, up
# front, instead of letting the first test that needs it build it mid-run.
run cargo build --quiet -p zkit-server --bin zkit-server
export ZKIT_SERVER_BIN="$PWD/target/debug/zkit-server"
# Tests that drive Curator, kazoo, zkCli.sh and the C client as peers run (and
# fail if one is missing) instead of skipping as under plain `cargo test`.
export ZKIT_TEST_PEERS=1
# Every suite against real Apache ZooKeeper: standalone, 3-node ensembles with
# fault injection, interop, and the bundled server compared with the real one.
# (The scheduler's multi-process proof runs longer here: 60 s; the partitioner's 30 s, as on
# the bundled server below. ZKIT_SIM_SCHEDULES=10000 for a deeper sim; the proofs take
# ZKIT_SCHEDULER_PROOF_SECS / ZKIT_PARTITION_PROOF_SECS.)
ZKIT_TEST_BACKEND=zookeeper ZKIT_SCHEDULER_PROOF_SECS=60 ZKIT_PARTITION_PROOF_SECS=30 run cargo test --workspace
# The client and recipe suites again on the bundled zkit-server (what plain
# `cargo test` runs; the tests that need real ZooKeeper processes skip here).
ZKIT_TEST_BACKEND=bundled run cargo test -p zkit -p zkit-recipes -p zkit-cli --tests
# Once more with a data directory: every reply waits for the transaction log.
ZKIT_TEST_BACKEND=bundled-durable run cargo test -p zkit --test ops --test watches --test multi --test acl \
  --test chroot --test pipeline --test session
# Client metrics (feature `metrics`) scraped through the Prometheus exporter, on both backends.
ZKIT_TEST_BACKEND=zookeeper run cargo test -p zkit --features metrics --test metrics
ZKIT_TEST_BACKEND=bundled run cargo test -p zkit --features metrics --test metrics
ZKIT_TEST_BACKEND=zookeeper run cargo test -p zkit-recipes --features metrics --test metrics
ZKIT_TEST_BACKEND=bundled run cargo test -p zkit-recipes --features metrics --test metrics
# SASL GSSAPI (feature `gssapi`) against real ZooKeeper with a private MIT KDC.
ZKIT_TEST_BACKEND=zookeeper run cargo test -p zkit --features gssapi --lib --test gssapi
# The recipes' lock and leader suites once more over mutual TLS + SASL
# DIGEST-MD5, against real ZooKeeper and the bundled server.
ZKIT_TEST_BACKEND=zookeeper ZKIT_TEST_SECURE=1 run cargo test -p zkit-recipes --test lock --test leader
ZKIT_TEST_BACKEND=bundled ZKIT_TEST_SECURE=1 run cargo test -p zkit-recipes --test lock --test leader
# Randomized fault schedules with safety checkers (zkit-chaos), a short run per backend.
run cargo run --quiet -p zkit-chaos -- --backend bundled --schedules 3 --secs 5 --seed "${ZKIT_CHAOS_SEED:-1000}"
run cargo run --quiet -p zkit-chaos -- --backend zookeeper --schedules 2 --secs 8 --seed "${ZKIT_CHAOS_SEED:-2000}"
# Deterministic simulation: client + bundled server on a virtual clock and a simulated
# network, 4,000 seeded fault schedules (optimized build: about two minutes on 2 cores). Built
# with tokio_unstable (in target/sim) so that tokio's own random choices follow the seed too
# and every failure replays exactly.
RUSTFLAGS="--cfg tokio_unstable" run cargo build --quiet --release --target-dir target/sim -p zkit-chaos -p zkit-server
run target/sim/release/zkit-chaos sim --schedules "${ZKIT_SIM_SCHEDULES:-4000}" --seed "${ZKIT_SIM_SEED:-100000}"
# One client abusing the bundled server (a million watches, a huge transaction, deep paths, a
# child list beyond the frame limit, 10k connections): each line gives another client's latency
# alone and during the abuse; it fails if the server stops serving.
run target/sim/release/zkit-chaos abuse
# The fuzz targets (a crate of their own: cargo-fuzz wants nightly to fuzz with
# coverage) build on stable and each runs over a few thousand random inputs.
run cargo build --quiet --release --manifest-path fuzz/Cargo.toml
for target in decode_frame decode_records server_requests; do
  run fuzz/target/release/"$target" -runs=3000 -max_total_time=10 -seed=1 -max_len=4096
done
# The README's demo command works (on the in-process bundled server).
run cargo run --quiet --example tour > /dev/null
run cargo run --quiet --example quickstart > /dev/null
RUSTDOCFLAGS="-D warnings" run cargo doc --workspace --no-deps
