#!/usr/bin/env bash
# Assembles the root file system of one image: the static binary, an /etc/passwd and
# /etc/group naming the non-root uid 1000, and an empty directory that a new named volume
# inherits, owned by 1000 at COPY time (/app/keys for dcr-bootstrap, /var/lib/idp for the
# emulator's --state-file). Nothing else: no shell, no libc, no
# CA bundle (the binary carries Mozilla's roots; DCR_CA_FILE adds a private CA).
# Used by scripts/image.sh on the host and by the Dockerfile's build stage, so both produce
# the same image.
#   scripts/rootfs.sh BINARY OUT_DIR
set -euo pipefail
bin=$1
out=$2
name=$(basename "$bin")
rm -rf "$out"
mkdir -p "$out/rootfs/etc"
install -m 0755 "$bin" "$out/rootfs/$name"
printf 'root:x:0:0:root:/:/nonexistent\napp:x:1000:1000:app:/:/nonexistent\n' >"$out/rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' >"$out/rootfs/etc/group"
chmod 0644 "$out/rootfs/etc/passwd" "$out/rootfs/etc/group"
if [ "$name" = dcr-bootstrap ]; then
  install -d -m 0700 "$out/app-keys"
fi
# The emulator's --state-file directory, which a new named volume inherits (owned by 1000).
if [ "$name" = dcr-idp-emulator ]; then
  install -d -m 0700 "$out/idp-state"
fi
