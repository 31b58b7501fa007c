#!/usr/bin/env bash
# Runs the main job against the bundled IdP emulator on loopback and shows the result.
# Needs only cargo. Everything it creates lives in a fresh temp directory.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --workspace --quiet
work=$(mktemp -d)
target/debug/dcr-idp-emulator --port 0 --admin-token demo-admin-token-7f3a9c2e51 >"$work/emulator.out" 2>"$work/emulator.log" &
emulator=$!
trap 'kill "$emulator" 2>/dev/null || true' EXIT

# The emulator prints its URL once it accepts connections.
url=""
for _ in $(seq 1 100); do
  url=$(grep -o 'http://[0-9.:]*' "$work/emulator.out" || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "emulator did not start; see $work/emulator.log" >&2; exit 1; }

printf 'demo-admin-token-7f3a9c2e51\n' >"$work/admin-token"
export IDP_BASE_URL="$url"
export BOOTSTRAP_ADMIN_TOKEN_FILE="$work/admin-token"
export DCR_OUTPUT="$work/keys/bff_client.json"
export DCR_ENV_OUTPUT="$work/keys/bff.env"
export DCR_SIGNING_KEY="$work/keys/bff-sig-001.pem"
export BFF_KID=bff-sig-001
export DCR_CLIENT_ID=bff-server
export DCR_CLIENT_PROFILE=code-flow-pkjwt
export DCR_REDIRECT_URIS="https://localhost:8000/auth/callback"
export DCR_SCOPE="openid profile email offline_access"

echo "== first run: mints an IAT and registers"
target/debug/dcr-bootstrap
echo "== second run: verifies the stored registration, registers nothing"
target/debug/dcr-bootstrap
echo
echo "credentials: $DCR_OUTPUT"
ls -l "$work/keys"
echo "emulator counters: $(curl -s -H 'Authorization: Bearer demo-admin-token-7f3a9c2e51' "$url/_emulator/stats" 2>/dev/null || echo '(curl not installed)')"
