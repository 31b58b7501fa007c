#!/usr/bin/env python3
"""Checks deploy/kubernetes/*.yaml beyond the schemas (kubernetes-validate does those):
every pod meets the restricted Pod Security profile and mounts no service-account token,
and every environment variable given to dcr-bootstrap is one it knows (`--help`).

usage: check-manifests.py BINARY MANIFEST..."""
import re
import subprocess
import sys

import yaml

binary, manifests = sys.argv[1], sys.argv[2:]
known = set(re.findall(r"\[env: ([A-Z0-9_]+)=", subprocess.run(
    [binary, "--help"], capture_output=True, text=True, check=True).stdout))
# *_FILE variants of the secret variables are documented with their base variable.
known |= {v + "_FILE" for v in known}
failures = []


def pod_specs(doc):
    kind = doc.get("kind")
    spec = doc.get("spec", {})
    if kind == "Pod":
        yield spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        yield spec["template"]["spec"]
    elif kind == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]


def check(where, spec):
    def need(cond, what):
        if not cond:
            failures.append(f"{where}: {what}")

    sc = spec.get("securityContext", {})
    need(spec.get("automountServiceAccountToken") is False, "automountServiceAccountToken: false")
    need(sc.get("runAsNonRoot") is True, "securityContext.runAsNonRoot: true")
    need(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccompProfile RuntimeDefault")
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        csc = c.get("securityContext", {})
        name = f"container {c['name']}"
        need(csc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation: false")
        need(csc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem: true")
        need(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities.drop [ALL]")
        need(not csc.get("privileged"), f"{name}: not privileged")
        if c["name"] == "dcr-bootstrap":
            for e in c.get("env", []):
                need(e["name"] in known, f"{name}: {e['name']} is not a dcr-bootstrap variable")
    for v in spec.get("volumes", []):
        need("hostPath" not in v, f"volume {v['name']}: no hostPath")


pods = 0
for path in manifests:
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            for spec in pod_specs(doc):
                pods += 1
                check(f"{path} {doc['kind']}/{doc['metadata']['name']}", spec)

for f in failures:
    print("FAIL", f)
print(f"{pods} pod templates in {len(manifests)} files checked against the restricted profile; "
      f"{len(failures)} failure(s)")
sys.exit(1 if failures or pods == 0 else 0)
