#!/usr/bin/env python3
"""The in-process approach, in the style of the BFF's own dcr_bootstrap.py: requests, a
simple retry loop, and a temp file + rename. A baseline for what a Python start-up costs.

Env: IDP_BASE_URL, BOOTSTRAP_ADMIN_TOKEN, OUTPUT, CLIENT_METADATA (JSON).
"""
import json
import os
import sys
import tempfile
import time

import requests

BASE = os.environ["IDP_BASE_URL"]
ADMIN = os.environ["BOOTSTRAP_ADMIN_TOKEN"]
OUTPUT = os.environ["OUTPUT"]
METADATA = json.loads(os.environ.get(
    "CLIENT_METADATA",
    '{"client_name":"bff-server","redirect_uris":["https://app.example/cb"]}'))
TRANSIENT = {408, 425, 429, 500, 502, 503, 504}


def post(url, token, body, deadline):
    delay = 0.5
    while True:
        try:
            r = requests.post(url, json=body, timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
            if r.status_code not in TRANSIENT:
                r.raise_for_status()
                return r.json()
        except requests.ConnectionError:
            pass
        if time.monotonic() + delay > deadline:
            sys.exit(f"gave up on {url}")
        time.sleep(delay)
        delay = min(delay * 2, 8)


def main():
    if os.path.exists(OUTPUT) and os.path.getsize(OUTPUT) > 0:
        print(f"credentials already at {OUTPUT}")
        return
    deadline = time.monotonic() + 300
    iat = post(f"{BASE}/api/admin/dcr/initial-access-tokens", ADMIN,
               {"label": "bff bootstrap", "expires_in": 600, "max_uses": 1}, deadline)["token"]
    reg = post(f"{BASE}/api/oidc/dcr/register", iat, METADATA, deadline)
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(OUTPUT), prefix=".creds.")
    with os.fdopen(fd, "w") as f:
        json.dump(reg, f)
    os.replace(tmp, OUTPUT)
    print(f"registered; credentials at {OUTPUT}")


if __name__ == "__main__":
    main()
