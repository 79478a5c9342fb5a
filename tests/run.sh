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
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --locked --no-fail-fast -- --test-threads="${ROUTED6D_TEST_THREADS:-4}" \
    2>&1 | tee "$log" || status=$?

# The tally: every test binary's "test result:" line summed, and the skipped ones named.
skipped="$(grep -c '^SKIPPED' "$log" || true)"
awk -v skipped="$skipped" '
    /^test result:/ { for (i = 1; i <= NF; i++) {
        if ($(i + 1) ~ /^passed/) passed += $i
        if ($(i + 1) ~ /^failed/) failed += $i } }
    END { printf "== tally: %d passed, %d failed (%d of the passed skipped for want of root)\n",
          passed, failed, skipped }' "$log"
exit "$status"
