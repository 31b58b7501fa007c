#!/usr/bin/env bash
# Runs every benchmark and prints the tables (bench/README.md explains them).
#   bash bench/run.sh                 # all sections, ~4 minutes after the build
#   BENCH=cold,footprint bash bench/run.sh
#   STATIC=1 bash bench/run.sh        # also build and size a static (crt-static) binary
# Needs: bash, curl, jq, python3 with requests, strace, /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in curl jq strace python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool" >&2; exit 1; }
done
if [ "${STATIC:-0}" = 1 ]; then
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
    --target x86_64-unknown-linux-gnu --target-dir target/static -p dcr-bootstrap
fi
# Many processes at once in the fleet section.
ulimit -n 65536 2>/dev/null || true
cargo bench --locked --bench dcr
