#!/usr/bin/env bash
# Usage: advisory-db.sh BUNDLE DB_DIR
# Clones the RustSec snapshot BUNDLE (a git bundle) into DB_DIR for `cargo deny --offline`,
# and clones it again whenever BUNDLE changes: a clone of an older snapshot would hide the
# advisories published since.
set -euo pipefail
bundle=$1
db=$2
sum=$(sha256sum "$bundle" | cut -d' ' -f1)
if [ "$(cat "$db.bundle-sha256" 2>/dev/null)" != "$sum" ]; then
  rm -rf "$db"
  mkdir -p "$(dirname "$db")"
  git -c init.defaultBranch=main clone -q "$bundle" "$db"
  echo "$sum" >"$db.bundle-sha256"
fi
