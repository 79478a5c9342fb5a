#!/usr/bin/env bash
# Build routed6d's .deb and .rpm from the metadata in Cargo.toml and packaging/:
#   packaging/build.sh            both, into target/debian and target/generate-rpm
#   packaging/build.sh deb        only the .deb (likewise: rpm)
# Installs cargo-deb and cargo-generate-rpm when missing. No make needed.
set -euo pipefail
cd "$(dirname "$0")/.."

want="${1:-all}"
profile="${ROUTED6D_PACKAGE_PROFILE:-release}"
target="${CARGO_TARGET_DIR:-target}"

need_tool() {
    command -v "$1" >/dev/null 2>&1 || cargo install --locked "$1"
}

echo "== building routed6d ($profile) and generating man pages and completions"
cargo build --locked --profile "$profile" --bin routed6d
rm -rf target/assets
cargo run --locked --quiet --example gen_assets -- target/assets
gzip -9nf target/assets/*.8

if [ "$want" = all ] || [ "$want" = deb ]; then
    need_tool cargo-deb
    cargo deb --locked --no-build --profile "$profile" --output "$target/debian/"
fi
if [ "$want" = all ] || [ "$want" = rpm ]; then
    need_tool cargo-generate-rpm
    mkdir -p "$target/generate-rpm"
    cargo generate-rpm --profile "$profile" --target-dir "$target" \
        --output "$target/generate-rpm/routed6d.rpm"
fi
ls -l "$target"/debian/*.deb "$target"/generate-rpm/*.rpm 2>/dev/null || true
