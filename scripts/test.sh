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
run cargo test --workspace
# The same client integration tests against the bundled zkit-server (the
# ensemble fault tests need real ZooKeeper processes and run above only).
ZKIT_TEST_BACKEND=bundled run cargo test -p zkit --test ops --test watches --test multi --test acl \
  --test chroot --test pipeline --test session
ZKIT_TEST_BACKEND=bundled run cargo test -p zkit-recipes --tests
# Once more with a data directory: every reply waits for the transaction log.
ZKIT_TEST_BACKEND=bundled-durable run cargo test -p zkit --test ops --test watches --test multi --test acl \
  --test chroot --test pipeline --test session
# The README's demo command works (on the in-process bundled server).
run cargo run --quiet --example tour > /dev/null
run cargo run --quiet --example quickstart > /dev/null
RUSTDOCFLAGS="-D warnings" run cargo doc --workspace --no-deps
