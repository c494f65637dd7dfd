"""The shape of the package: no import cycle inside src/transferkit (lazy imports count too),
modules small enough to read, no branching on the kind of data in the orchestrators, and no
public name that shadows a subpackage."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "transferkit"
ORCHESTRATORS = ("pipeline.py", "run.py", "comparison.py", "cli.py")
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    mods = {}
    for f in (SRC / PKG).rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (every import statement, inside functions too)."""

    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in mods}
    for m, f in mods.items():
        base = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    b = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    head = ".".join(b + ([node.module] if node.module else []))
                else:
                    head = node.module or ""
                targets = [head + "." + a.name for a in node.names] + [head]
            for t in targets:
                r = resolve(t) if t.startswith(PKG) else None
                if r and r != m and not m.startswith(r + "."):  # a module may import its own package's __init__
                    graph[m].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    sys.setrecursionlimit(10_000)
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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


def test_no_import_cycle_inside_the_package():
    found = cycles(import_graph(_modules()))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_modules_fit_in_ones_head():
    long = {str(f.relative_to(SRC)): n for f in (SRC / PKG).rglob("*.py") if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_orchestrators_do_not_branch_on_the_kind_of_data():
    pattern = re.compile(r"""(kind|modality|\.name)\s*[!=]=\s*["'](image|text)["']|["'](image|text)["']\s*[!=]=|isinstance\([^)]*(TextDataset|ImageDataset|TextBackbone)""")
    hits = []
    for name in ORCHESTRATORS:
        for n, line in enumerate((SRC / PKG / name).read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{name}:{n}: {line.strip()}")
    assert not hits, hits


def test_no_public_name_shadows_a_subpackage():
    import transferkit as tk

    # a submodule import would replace the lazily exported function of the same name
    subpackages = {p.name for p in (SRC / PKG).iterdir() if (p / "__init__.py").is_file()} | {p.stem for p in (SRC / PKG).glob("*.py")}
    assert not subpackages & set(tk.__all__), subpackages & set(tk.__all__)
    assert callable(tk.train) and tk.train.__module__ == "transferkit.pipeline"
