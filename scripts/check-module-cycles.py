#!/usr/bin/env python3
"""Fails when the crate's modules import each other in a cycle.

Every `.rs` file under a crate's `src/` is one module. An edge A -> B is any path that A names
starting with `crate::` (or `super::`, resolved), pointing to the longest module prefix B of that
path. Test modules (`#[cfg(test)]` to the end of the file) are left out, since tests may reach
anywhere. A parent module that only declares and re-exports its children points at them; a child
that names its parent's re-exports instead of the sibling would close a cycle and is reported.
Usage: scripts/check-module-cycles.py [SRC_DIR ...]  (default: src)
"""
import re
import sys
from pathlib import Path


def module_of(path: Path, src: Path) -> tuple:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_tests_and_comments(text: str) -> str:
    cut = re.search(r"^#\[cfg\(test\)\]", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^{}]*)\}")


def check(src: Path) -> list:
    files = sorted(p for p in src.rglob("*.rs"))
    modules = {module_of(p, src): p for p in files}
    edges = {m: set() for m in modules}
    for mod, path in modules.items():
        text = strip_tests_and_comments(path.read_text())
        paths = []
        for m in GROUP.finditer(text):
            for item in m.group(3).split(","):
                item = item.strip().split(" as ")[0].strip()
                if item and item != "self":
                    paths.append((m.group(1), m.group(2) + "::" + item.split("::")[0]))
                elif item == "self":
                    paths.append((m.group(1), m.group(2)))
        for m in PATH.finditer(text):
            paths.append((m.group(1), m.group(2)))
        # Paths relative to this module: `use child::Item` or `child::f()` for a declared child.
        for child in re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;", text, re.M):
            if re.search(r"(?<![:\w])" + child + r"::", text):
                paths.append(("crate", "::" + "::".join(mod + (child,))))
        for root, rest in paths:
            segs = [s for s in rest.split("::") if s]
            if root == "crate":
                target = segs
            else:
                # `super` is the parent of this module, whether it is a file or a folder's mod.rs.
                base = list(mod[:-1])
                while segs and segs[0] == "super":
                    segs.pop(0)
                    base = base[:-1]
                target = base + segs
            best = None
            for n in range(len(target), 0, -1):
                if tuple(target[:n]) in modules:
                    best = tuple(target[:n])
                    break
            if best is not None and best != mod and best != ():
                edges[mod].add(best)
    # Tarjan's strongly connected components.
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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

    sys.setrecursionlimit(10000)
    for v in modules:
        if v not in index:
            visit(v)
    return out


def main() -> int:
    dirs = [Path(a) for a in sys.argv[1:]] or [Path("src")]
    failed = False
    for src in dirs:
        for comp in check(src):
            failed = True
            names = ", ".join("::".join(m) or "crate" for m in comp)
            print(f"{src}: import cycle between modules: {names}")
    if not failed:
        print("no import cycles between modules in " + ", ".join(map(str, dirs)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
