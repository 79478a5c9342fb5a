#!/usr/bin/env bash
# Every test routed6d has, as CI runs them: formatting, lints, unit tests, the
# simulated-provider tests and the real-kernel tests in private network namespaces.
# Installs what it needs on a fresh Debian machine (root); as non-root the kernel
# tests report themselves SKIPPED.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "!! missing ${need[*]}: the real-kernel tests that use them will fail" >&2
  fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --all-targets --locked -- --test-threads="${ROUTED6D_TEST_THREADS:-4}"
