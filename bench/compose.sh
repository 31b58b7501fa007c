#!/usr/bin/env bash
# The compose stack on a real engine: image sizes, and the time from the IdP container
# listening to the BFF container started (the init service's whole job, as compose sees it),
# over N cold `up`s. Needs Docker and the images of scripts/image.sh.
#   bash bench/compose.sh [N]        # default 10
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
compose=(docker-compose)
docker compose version >/dev/null 2>&1 && compose=(docker compose)
project=dcrbench$$
c() { "${compose[@]}" -p "$project" -f compose/docker-compose.yml "$@"; }
trap 'c down -v -t 1 >/dev/null 2>&1 || true' EXIT

echo "image sizes:"
docker image inspect -f '{{index .RepoTags 0}} {{.Size}}' dcr-bootstrap:latest dcr-idp-emulator:latest |
  awk '{printf "  %-26s %9d bytes (%.1f MB)\n", $1, $2, $2/1e6}'

ms() { python3 -c 'import sys,datetime as d
def t(s):
    s=s.strip().rstrip("Z"); head,_,frac=s.partition(".")
    return d.datetime.fromisoformat(head).timestamp()+float("0."+(frac or "0"))
print(round((t(sys.argv[2])-t(sys.argv[1]))*1000))' "$1" "$2"; }

results=()
for i in $(seq 1 "$runs"); do
  c down -v -t 1 >/dev/null 2>&1
  c up -d >/dev/null 2>&1
  bff=$(c ps -q bff)
  idp=$(c ps -q idp)
  listening=$(docker logs -t "$idp" 2>&1 | grep -m1 'listening on' | cut -d' ' -f1)
  started=$(docker inspect -f '{{.State.StartedAt}}' "$bff")
  results+=("$(ms "$listening" "$started")")
  echo "  run $i: IdP listening -> BFF started: ${results[-1]} ms"
done
printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END {
  m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
  printf "IdP listening -> BFF started over %d runs: median %d ms, max %d ms\n", NR, m, a[NR] }'
