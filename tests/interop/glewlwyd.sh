#!/usr/bin/env bash
# Starts glewlwyd (Debian package `glewlwyd`, written by Nicolas Mora, not by us) on
# 127.0.0.1:PORT with its own sqlite database in DIR, configured through its own admin API:
# an OpenID Connect plugin "oidc" with RFC 7591 registration and RFC 7592 management on, and a
# confidential client "registrar" whose client-credentials token of scope "dcr" is what
# glewlwyd asks of a registration (register-client-auth-scope). Writes the server's PID to
# DIR/pid and its log to DIR/log; exits once the server answers.
#   tests/interop/glewlwyd.sh DIR PORT
set -euo pipefail
dir=$1
port=$2
base="http://127.0.0.1:$port"
mkdir -p "$dir"
rm -f "$dir/db" "$dir/cookies"
schema=/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3
sqlite3 "$dir/db" <"$schema"
# The package's own configuration, pointed at our port, database and console log.
sed -e "s/^port=.*/port=$port/" \
    -e "s#^external_url=.*#external_url=\"$base\"#" \
    -e 's/^log_mode=.*/log_mode="console"/' \
    -e "s#^@include .*#database = { type = \"sqlite3\"\n path = \"$dir/db\" };#" \
    /etc/glewlwyd/glewlwyd.conf >"$dir/glewlwyd.conf"
glewlwyd --config-file="$dir/glewlwyd.conf" >"$dir/log" 2>&1 &
echo $! >"$dir/pid"
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "$base/api/auth/scheme/" 2>/dev/null && break
  curl -s -o /dev/null -w '%{http_code}' "$base/api/" 2>/dev/null | grep -qv '^000$' && break
  sleep 0.1
done

api() { curl -sf -b "$dir/cookies" -c "$dir/cookies" -H 'Content-Type: application/json' "$@"; }
# The package's default administrator (admin / password), as a fresh install has it.
api -X POST "$base/api/auth/" -d '{"username":"admin","password":"password"}' >/dev/null
api -X POST "$base/api/scope/" \
  -d '{"name":"dcr","display_name":"DCR","description":"Register clients","password_required":false,"scheme":{}}' >/dev/null
api -X POST "$base/api/mod/plugin/" -d "$(cat <<JSON
{"module":"oidc","name":"oidc","display_name":"OIDC","enabled":true,"parameters":{
  "iss":"$base/api/oidc","jwt-type":"sha","jwt-key-size":"256","key":"interop-signing-secret",
  "code-duration":600,"refresh-token-duration":1209600,"access-token-duration":3600,
  "allow-non-oidc":true,"auth-type-client-enabled":true,"auth-type-code-enabled":true,
  "auth-type-refresh-enabled":true,
  "register-client-allowed":true,"register-client-auth-scope":["dcr"],
  "register-client-credentials-scope":["openid"],"register-client-management-allowed":true,
  "request-parameter-allow":true,"request-maximum-exp":3600,
  "client-jwks-parameter":"jwks","client-jwks_uri-parameter":"jwks_uri","client-pubkey-parameter":"",
  "client-enc-parameter":"enc","client-alg-parameter":"alg","client-alg_kid-parameter":"alg_kid"}}
JSON
)" >/dev/null
api -X POST "$base/api/client/" -d '{"client_id":"registrar","name":"registrar","confidential":true,
  "password":"registrar-secret-123","authorization_type":["client_credentials"],
  "token_endpoint_auth_method":["client_secret_basic","client_secret_post"],"scope":["dcr"],"enabled":true}' >/dev/null
curl -sf -o /dev/null "$base/api/oidc/.well-known/openid-configuration"
