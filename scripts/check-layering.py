#!/usr/bin/env python3
"""Checks that imports between the crate's top-level modules flow one way.

Reads every `src/**/*.rs` of the library (not `src/main.rs`, not `src/bin/`),
finds each reference to another top-level module (`crate::x::…`,
`use crate::{x, y::…}`, `super::…` paths that climb to the crate root, and
serde's `with = "crate::x::…"`), and fails when

  - a module imports one in a higher layer (an upward import), or
  - the modules import each other in a cycle (within a layer too).

The layers, lowest first, are declared below; ARCHITECTURE.md draws them. A
new top-level module must be given a layer here, or the check fails.

    scripts/check-layering.py           # exit 0: one-way; 1: violations listed
    scripts/check-layering.py --graph   # also print who imports whom
"""

import re
import sys
from pathlib import Path

# Lowest first. A module may import modules of its own layer or below;
# imports within a layer must not form a cycle.
LAYERS = [
    ("leaf utilities", ["secret", "clock", "text", "conf", "metrics"]),
    ("outbound transport", ["outbound"]),
    ("domain: ingest, routing, storage", ["ingest", "route", "store"]),
    ("stage: enrich", ["enrich"]),
    ("stage: act", ["act"]),
    ("configuration root", ["settings", "telemetry"]),
    ("pipeline and worker", ["pipeline", "worker"]),
    ("HTTP", ["http"]),
    ("wiring: startup and command line", ["startup", "cli"]),
]

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def strip_comments(text: str) -> str:
    """Removes // and /* */ comments (doc comments link modules they do not
    import), keeping string literals: serde's `with = "crate::…"` is a real
    dependency."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(text[i:end])
            i = end
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:]):
            # A char literal ('"' would otherwise open a string).
            m = re.match(r"'(\\.|[^\\'])'", text[i:])
            out.append(text[i : i + m.end()])
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def group_heads(body: str) -> list:
    """The first identifier of each path in a `{…}` use group."""
    heads, depth, current = [], 0, ""
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 0 and ch == ",":
            m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", current)
            if m:
                heads.append(m.group(1))
            current = ""
        else:
            current += ch
    return heads


def module_path(path: Path) -> list:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def references(path: Path, modules: set) -> set:
    text = strip_comments(path.read_text(encoding="utf-8"))
    found = set()
    for m in re.finditer(r"\bcrate::\{", text):
        start = m.end()
        depth, j = 1, start
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        found.update(group_heads(text[start : j - 1]))
    found.update(re.findall(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)", text))
    # super::super::x from a file n levels deep reaches the root after n supers.
    own = module_path(path)
    for m in re.finditer(r"\b((?:super::)+)([A-Za-z_][A-Za-z0-9_]*)", text):
        ups = m.group(1).count("super::")
        if ups == len(own):
            found.add(m.group(2))
    return {r for r in found if r in modules}


def cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    layer_of = {}
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            layer_of[name] = i
    lib = strip_comments((SRC / "lib.rs").read_text(encoding="utf-8"))
    modules = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", lib, re.M))
    problems = []
    for m in sorted(modules - set(layer_of)):
        problems.append(f"module {m} has no layer: add it to LAYERS in scripts/check-layering.py")

    graph, via = {m: set() for m in modules}, {}
    for path in sorted(SRC.rglob("*.rs")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "bin" or rel.as_posix() in ("main.rs", "lib.rs"):
            continue
        owner = module_path(path)[0]
        if owner not in modules:
            continue
        for target in references(path, modules):
            if target != owner:
                graph[owner].add(target)
                via.setdefault((owner, target), []).append(rel.as_posix())

    for (a, b), files in sorted(via.items()):
        if a in layer_of and b in layer_of and layer_of[b] > layer_of[a]:
            problems.append(
                f"upward import: {a} ({LAYERS[layer_of[a]][0]}) uses {b} ({LAYERS[layer_of[b]][0]}) in {', '.join(sorted(set(files)))}"
            )
    for comp in cycles(graph):
        edges = [f"{a} -> {b} ({', '.join(sorted(set(via[(a, b)])))})" for a in comp for b in sorted(graph[a]) if b in comp]
        problems.append("import cycle among " + ", ".join(comp) + ": " + "; ".join(edges))

    if "--graph" in sys.argv:
        for i, (name, names) in reversed(list(enumerate(LAYERS))):
            print(f"layer {i} ({name}):")
            for m in names:
                print(f"  {m} -> {', '.join(sorted(graph.get(m, ()))) or '(nothing)'}")
    if problems:
        for p in problems:
            print(f"check-layering: {p}", file=sys.stderr)
        print(f"check-layering: FAILED, {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-layering: OK, {len(modules)} top-level modules in {len(LAYERS)} layers, imports flow one way")
    return 0


if __name__ == "__main__":
    sys.exit(main())
