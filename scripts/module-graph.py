#!/usr/bin/env python3
"""Prints the module graph of each crate (who uses whom) and fails if it has a cycle, or if
the module table in src/lib.rs leaves out a module.

Every `crate::a::b` or `super::x` path in a file is an edge from that file's module to the
longest module path that names a file. Two levels are checked: files, and the top-level
areas (job, config, idp, local, ...). Tests inside a file (`#[cfg(test)] mod tests`) are
ignored: they may use anything. Both crates are checked: dcr-bootstrap (src/) and the
emulator (emulator/src/).

Usage: python3 scripts/module-graph.py [--quiet]
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CRATES = (("dcr-bootstrap", os.path.join(ROOT, "src")), ("dcr-idp-emulator", os.path.join(ROOT, "emulator", "src")))


def modules(src):
    """module path (tuple) -> file path"""
    out = {}
    SRC = src
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), SRC)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                continue
            if rel[-1] == "mod":
                rel = rel[:-1]
            out[tuple(rel)] = os.path.join(root, f)
    return out


def code_without_tests(path):
    text = open(path).read()
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def edges(mods):
    out = {m: set() for m in mods}
    for m, path in mods.items():
        text = code_without_tests(path)
        # `use` trees are expanded (`use crate::{a, b::c}`); other paths are taken as written.
        paths = []
        for stmt in re.findall(r"\buse\s+((?:crate|super)\b[^;]*);", text):
            paths.extend(expand(stmt))
        text = re.sub(r"\buse\s+[^;]*;", "", text)
        paths.extend(re.findall(r"\b(?:crate|super)(?:::\w+)+", text))
        for target in paths:
            resolved = resolve(m, target, mods)
            if resolved and resolved != m and not is_ancestor(resolved, m):
                out[m].add(resolved)
    return out


def expand(stmt):
    stmt = stmt.replace(" ", "").replace("\n", "")
    m = re.match(r"^(.*?)::\{(.*)\}$", stmt)
    if not m:
        return [stmt]
    head, body = m.groups()
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    res = []
    for p in parts:
        if p:
            res.extend(expand(head + "::" + p))
    return res


def resolve(current, path, mods):
    segs = path.split("::")
    if segs[0] == "crate":
        base, rest = (), segs[1:]
    else:
        base = current
        rest = segs
        while rest and rest[0] == "super":
            # `super` of a file module is its parent directory module.
            base = base[:-1]
            rest = rest[1:]
    best = None
    for i in range(len(rest) + 1):
        cand = base + tuple(rest[:i])
        if cand in mods:
            best = cand
    return best


def is_ancestor(a, b):
    return len(a) < len(b) and b[: len(a)] == a


def find_cycle(graph):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def name(m):
    return "::".join(m)


def table_gaps(src):
    """Top-level modules that lib.rs declares but its module table (the ```text block of its
    doc comment) does not name."""
    lib = open(os.path.join(src, "lib.rs")).read()
    declared = re.findall(r"^(?:pub )?mod (\w+);", lib, re.M)
    block = re.search(r"//! ```text\n(.*?)//! ```", lib, re.S)
    if not block:
        return declared
    words = set(re.findall(r"\w+", block.group(1)))
    return [m for m in declared if m not in words]


def check_crate(label, src, quiet):
    mods = modules(src)
    files = edges(mods)
    areas = {}
    for m, targets in files.items():
        a = m[:1]
        areas.setdefault(a, set())
        for t in targets:
            if t[:1] != a:
                areas[a].add(t[:1])
    failed = False
    for kind, graph in (("files", files), ("areas", areas)):
        cycle = find_cycle(graph)
        if cycle:
            print(f"{label}: CYCLE among {kind}: " + " -> ".join(name(c) for c in cycle))
            failed = True
    gaps = table_gaps(src) if label == "dcr-bootstrap" else []
    if gaps:
        print(f"{label}: src/lib.rs declares {', '.join(gaps)} but its module table does not name them")
        failed = True
    if not quiet:
        print(label)
        # Layers: a module sits above everything it uses.
        depth = {}

        def d(n):
            if n not in depth:
                depth[n] = 0
                depth[n] = 1 + max((d(t) for t in areas[n]), default=-1)
            return depth[n]

        for n in areas:
            d(n)
        for level in sorted(set(depth.values()), reverse=True):
            row = sorted(name(n) for n in areas if depth[n] == level)
            for n in row:
                uses = ", ".join(sorted(name(t) for t in areas[(n,)]))
                print(f"  {'  ' * (max(depth.values()) - level)}{n:<10} -> {uses or '(nothing)'}")
    return failed


def main():
    quiet = "--quiet" in sys.argv
    failed = False
    for label, src in CRATES:
        failed |= check_crate(label, src, quiet)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
