#!/usr/bin/env bash
# The seed's two calls (shared/docs/seed-mint-iat-and-dcr.md), written as a careful operator
# would for a shell init container: curl's own retries for both calls, jq for the IAT, the
# result written with umask 077 through a temp file and mv, and an existing output skips the
# run. This is the baseline the benchmarks compare dcr-bootstrap against.
#
# Env: IDP_BASE_URL, BOOTSTRAP_ADMIN_TOKEN, OUTPUT, CLIENT_METADATA (JSON).
set -euo pipefail
: "${IDP_BASE_URL:?}" "${BOOTSTRAP_ADMIN_TOKEN:?}" "${OUTPUT:?}"
CLIENT_METADATA=${CLIENT_METADATA:-'{"client_name":"bff-server","redirect_uris":["https://app.example/cb"]}'}

if [ -s "$OUTPUT" ]; then
  echo "credentials already at $OUTPUT; nothing to do"
  exit 0
fi
umask 077
mkdir -p "$(dirname "$OUTPUT")"
retry=(--retry 30 --retry-connrefused --retry-max-time 300)

# Answers go to files, not stdout: with --retry, curl truncates an --output file before each
# new attempt, but on stdout the bodies of failed attempts (a proxy's 503 page) would be
# glued in front of the real answer.
mint=$(mktemp "$(dirname "$OUTPUT")/.mint.XXXXXX")
tmp=$(mktemp "$(dirname "$OUTPUT")/.creds.XXXXXX")
trap 'rm -f "$tmp" "$mint"' EXIT
curl -sS --fail-with-body "${retry[@]}" -o "$mint" -X POST \
  "$IDP_BASE_URL/api/admin/dcr/initial-access-tokens" \
  -H "Authorization: Bearer $BOOTSTRAP_ADMIN_TOKEN" -H "Content-Type: application/json" \
  -d '{"label":"bff bootstrap","expires_in":600,"max_uses":1}'
iat=$(jq -r .token "$mint")
if [ -z "$iat" ] || [ "$iat" = null ]; then
  echo "no IAT in the mint response" >&2
  exit 1
fi

curl -sS --fail-with-body "${retry[@]}" -o "$tmp" -X POST "$IDP_BASE_URL/api/oidc/dcr/register" \
  -H "Authorization: Bearer $iat" -H "Content-Type: application/json" \
  -d "$CLIENT_METADATA"
mv "$tmp" "$OUTPUT"
rm -f "$mint"
trap - EXIT
echo "registered; credentials at $OUTPUT"
