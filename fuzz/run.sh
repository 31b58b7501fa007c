#!/usr/bin/env bash
# Builds the fuzz targets and fuzzes each for a fixed time (default 60 s) from the committed
# seeds, printing executions and duration per target. Needs only the stable toolchain:
# libfuzzer-sys links libFuzzer, and the coverage instrumentation cargo-fuzz would add is
# passed as the same rustc flags (no sanitizer, which needs nightly). `--target` keeps the
# flags off build scripts and proc macros. New corpus entries go to a temp dir.
#   bash fuzz/run.sh [seconds-per-target]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
target=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/../target/fuzz}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
cargo build --locked --release --target "$target" --quiet
work=$(mktemp -d)
failed=0
printf '%-18s %12s %10s %10s %s\n' target executions seconds exec/s result
for t in client_metadata idp_responses retry_after stored_output; do
  mkdir -p "$work/$t"
  log="$work/$t.log"
  if "$CARGO_TARGET_DIR/$target/release/$t" "$work/$t" "seeds/$t" \
       -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log)"
    failed=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "$secs")
  printf '%-18s %12s %10s %10s %s\n' "$t" "$runs" "$took" "$(( runs / (took > 0 ? took : 1) ))" "$result"
done
exit $failed
