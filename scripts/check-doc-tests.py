#!/usr/bin/env python3
"""Every test a document cites exists: a backticked `name` or `area::name` that reads like a
test (four or more words joined by underscores) must be a word of the sources (a test's
`fn`, or a field, quirk or metric name; a test that was renamed or deleted is neither).

usage: check-doc-tests.py FILE..."""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
fns, quoted = set(), set()
for src in list(root.glob("src/**/*.rs")) + list(root.glob("tests/**/*.rs")) + list(root.glob("emulator/**/*.rs")):
    text = src.read_text()
    fns.update(re.findall(r"\bfn\s+([a-z0-9_]+)", text))
    quoted.update(re.findall(r"\b([a-z0-9_]+)\b", text))
missing = []
for doc in sys.argv[1:]:
    text = pathlib.Path(doc).read_text()
    for cited in re.findall(r"`([a-z0-9_:]+)`", text):
        name = cited.split("::")[-1]
        if name.count("_") >= 3 and name not in fns and name not in quoted:
            missing.append(f"{doc}: `{cited}` names no test")
for m in missing:
    print("FAIL", m)
print(f"{len(sys.argv) - 1} documents checked for cited tests; {len(missing)} missing")
sys.exit(1 if missing else 0)
