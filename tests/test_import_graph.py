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
FORBIDDEN = {"station": {"web", "central", "packcam"}, "web": {"central", "packcam"}}
FORBIDDEN["central"] = {"packcam"}
# Edges still to be moved into the composition layer, each with why it is still here. This
# list only shrinks: a test below fails when an entry is no longer needed.
_CLI = """the `packcam` entry point (and `python -m station`) is station.cli.main, which loads
the web, proof and central subcommand groups by name; moving main into a packcam/ composition
package changes the installed entry point, `python -m station` and the systemd units"""
_DEMO = "`packcam demo` serves the web site beside the station (station.service._start_web)"
_MEDIA = """central mode: clips, frames and bundles come from the object store; web/ should be
handed a media store (a Protocol kept in app.extensions) instead of importing central.media"""
_CENTRAL_APP = """create_app(central=True) sets up the central index and media store itself;
the composition layer should build them and pass them in (get_index already takes the index
from app.extensions["packcam"]["index"])"""
ALLOWED: dict[tuple[str, str], str] = {
    ("station.cli", "web.cli"): _CLI,
    ("station.cli", "central.cli"): _CLI,
    ("station.cli", "web"): _CLI,  # the names of the optional parts, in its ImportError check
    ("station.service", "web.cli"): _DEMO,
    ("web", "central.api"): _CENTRAL_APP,
    ("web", "central.media"): _CENTRAL_APP,
    ("web.cli", "central.api"): _CENTRAL_APP + " (web.cli checks the DSN before serving)",
    ("web.clips", "central.media"): _MEDIA,
    ("web.clips", "central.bundles"): _MEDIA,
    ("web.share", "central.bundles"): _MEDIA,
    ("web.share", "central.media"): _MEDIA,
    ("web.verify", "central.api"): _MEDIA + "; and the central index for a bundle's clips",
    ("web.verify", "central.verify"): _MEDIA + "; and the central index for a bundle's clips",
    ("web.verify", "central.media"): _MEDIA,
}


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
    assert not bad, "imports against the direction station <- web <- packcam:\n" + "\n".join(bad)


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
    assert "station.hardware.evdev_scanner" in g["station.scanner"]  # inside a function
    assert "web.cli" in g["station.service"]  # inside a function, allowed above
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
