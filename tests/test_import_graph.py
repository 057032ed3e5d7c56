"""Import direction and cycles, read from the source with ast (function-level imports too)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("packcam", "station", "web", "central")
# The composition layer: the only code that knows every package (it builds a station, the web
# site and the central site from config), so it alone may import all of them.
COMPOSITION = "packcam"
# Which packages each package must never import.
FORBIDDEN = {
    "station": {"web", "central", COMPOSITION},
    "web": {"central", COMPOSITION},
    "central": {COMPOSITION},
}
# Edges not yet moved into the composition layer, each with why it is still here: a list that
# only shrinks (a test below fails on an entry no longer needed). Empty: the cross-package
# wiring lives in packcam/ (the CLI, the demo's web site) and central/site.py (the central
# site's index and media store, handed to web.create_app).
ALLOWED: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out[module_name(path)] = path
    return out


def _resolve(mod: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(mod: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement in the file, at any depth, and every
    ``importlib.import_module("...")`` with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(mod, node, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in known else target), node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno
        elif (
            isinstance(node, ast.Tuple | ast.List | ast.Set)
            and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in known
                for e in node.elts
            )
            and node.elts
        ):
            # A literal list of module names (e.g. subcommand groups loaded by name).
            for e in node.elts:
                yield str(e.value), node.lineno  # type: ignore[union-attr]


def graph() -> dict[str, dict[str, int]]:
    mods = source_modules()
    known = set(mods)
    out: dict[str, dict[str, int]] = {}
    for mod, path in mods.items():
        edges = out.setdefault(mod, {})
        for target, line in imports_of(mod, path, known):
            if target.split(".")[0] in PACKAGES and target != mod:
                edges.setdefault(target, line)
    return out


def top(mod: str) -> str:
    return mod.split(".")[0]


def test_packages_import_one_way() -> None:
    bad = []
    for mod, edges in graph().items():
        for target, line in edges.items():
            if top(target) in FORBIDDEN.get(top(mod), set()) and (mod, target) not in ALLOWED:
                bad.append(f"{mod}:{line} imports {target}")
    direction = "packcam -> central -> web -> station"
    assert not bad, f"imports against the direction {direction}:\n" + "\n".join(bad)


def cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in g:
        if root in index:
            continue
        work = [(root, iter(g.get(root, {})))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in g:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(g.get(nxt, {}))))
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    g = graph()
    for mod, target in ALLOWED:
        g[mod].pop(target, None)
    found = cycles(g)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_allow_list_only_shrinks() -> None:
    """Every allowed edge still exists: once moved, it must leave the list too."""
    g = graph()
    stale = [f"{a} -> {b}" for a, b in ALLOWED if b not in g.get(a, {})]
    assert not stale, "remove from ALLOWED (no longer imported):\n" + "\n".join(stale)


def test_the_checks_see_function_level_imports_and_cycles() -> None:
    """The graph is not vacuous: a known function-level import is found, and a cycle is."""
    g = graph()
    assert "station.barcodes" in g["station.service"]  # inside a function
    assert "central.site" in g["packcam.cli"] and "web.cli" in g["packcam.cli"]
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
