#!/usr/bin/env python3
"""Checks deploy/kubernetes/*.yaml beyond the schemas (kubernetes-validate does those):
every pod meets the restricted Pod Security profile and mounts no service-account token,
every environment variable given to dcr-bootstrap is one it knows (`--help`), and every
other container that mounts dcr-bootstrap's volume can read each file written there (the
output, the dotenv view, the key), given the uids, groups and modes in the manifests.

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


def ids(spec, c):
    """(uid, gid, groups) of container c in a pod spec, container settings first."""
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup", 0))
    groups = {gid, *psc.get("supplementalGroups", [])}
    if "fsGroup" in psc:
        groups.add(psc["fsGroup"])
    return uid, gid, groups


def volume_key(spec, pod_name, name):
    """What identifies a volume across pods: its claim, or the pod for an emptyDir."""
    for v in spec.get("volumes", []):
        if v["name"] == name:
            if "persistentVolumeClaim" in v:
                return ("pvc", v["persistentVolumeClaim"]["claimName"])
            if "emptyDir" in v:
                return ("emptyDir", pod_name, name)
            return None  # a Secret or ConfigMap: not written by dcr-bootstrap
    return None


def mount_of(spec, pod_name, c, path):
    """(volume key, path relative to the mount) of a file path in container c."""
    best = None
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/") + "/"
        if path.startswith(mp) and (best is None or len(mp) > len(best[0])):
            best = (mp, m["name"])
    if best is None:
        return None
    key = volume_key(spec, pod_name, best[1])
    return key and (key, path[len(best[0]):])


def written_files(spec, pod_name, c):
    """The files dcr-bootstrap writes, with their modes, group and volume."""
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    out_mode = int(env.get("DCR_OUTPUT_MODE") or "0600", 8)
    key_mode = int(env.get("DCR_KEY_MODE") or oct(0o600 | (out_mode & 0o040)), 8)
    uid, gid, _ = ids(spec, c)
    group = spec.get("securityContext", {}).get("fsGroup", gid)
    for var, mode in [("DCR_OUTPUT", out_mode), ("BFF_CLIENT_CRED_PATH", out_mode),
                      ("DCR_ENV_OUTPUT", out_mode), ("DCR_SIGNING_KEY", key_mode)]:
        if env.get(var):
            where = mount_of(spec, pod_name, c, env[var])
            if where:
                yield var, where, mode, uid, group


def check_readers(pods):
    """Every other container mounting a written file's volume must be able to read it."""
    files = [(where, f) for where, spec, pod_name, c in pods if c["name"] == "dcr-bootstrap"
             for f in written_files(spec, pod_name, c)]
    for where, spec, pod_name, c in pods:
        if c["name"] == "dcr-bootstrap":
            continue
        mounted = {volume_key(spec, pod_name, m["name"]) for m in c.get("volumeMounts", [])}
        uid, _, groups = ids(spec, c)
        for writer, (var, (vol, rel), mode, wuid, wgroup) in files:
            if vol not in mounted:
                continue
            readable = (uid == wuid and mode & 0o400) or (wgroup in groups and mode & 0o040) \
                or mode & 0o004
            if not readable:
                failures.append(
                    f"{where} container {c['name']} (uid {uid}, groups {sorted(groups)}) cannot read "
                    f"{rel} ({var}, mode {mode:04o}, owner {wuid}, group {wgroup}) written by {writer}")


pods = 0
containers = []
for path in manifests:
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            for spec in pod_specs(doc):
                pods += 1
                where = f"{path} {doc['kind']}/{doc['metadata']['name']}"
                check(where, spec)
                for c in spec.get("initContainers", []) + spec.get("containers", []):
                    containers.append((where, spec, where, c))
check_readers(containers)

for f in failures:
    print("FAIL", f)
print(f"{pods} pod templates in {len(manifests)} files checked against the restricted profile "
      f"and for readable outputs; {len(failures)} failure(s)")
sys.exit(1 if failures or pods == 0 else 0)
