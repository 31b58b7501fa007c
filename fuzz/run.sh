#!/usr/bin/env bash
# Fuzzes every target for a fixed time (default 60 s each) from the committed seeds and prints
# executions and duration per target. Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). New corpus entries go to a temp dir, not into the repo.
#   bash fuzz/run.sh [seconds-per-target]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
work=$(mktemp -d)
printf '%-18s %12s %10s %10s %s\n' target executions seconds exec/s result
for target in client_metadata idp_responses retry_after stored_output; do
  mkdir -p "$work/$target"
  log="$work/$target.log"
  if cargo +nightly fuzz run "$target" "$work/$target" "seeds/$target" -- \
       -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log)"
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "$secs")
  printf '%-18s %12s %10s %10s %s\n' "$target" "$runs" "$took" "$(( runs / (took > 0 ? took : 1) ))" "$result"
done
