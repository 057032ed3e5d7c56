"""Import direction, cycles and function-level imports, read from the source with ast."""

from __future__ import annotations

import ast
import functools
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
# The only libraries a function may import (at its first use instead of at start-up), each
# with why: optional ones a machine may lack, so a module that needs them only on one path
# still imports (and `packcam --help`, the web site and the tests run) without them.
# picamera2 is not here: its adapter imports it at module level in a guarded try (so it can
# explain a broken install at start-up). A list that only shrinks (a test fails on an unused
# entry).
LAZY_IMPORTS = {
    "evdev": "extra `pi`: the USB scanner's keyboard events, Linux input only",
    "gpiozero": "extra `pi`: the pedal's GPIO pin",
    "boto3": "extra `fleet`: the S3 archive; a lone station has no object store",
    "botocore": "comes with boto3",
    "psycopg": "extra `fleet`: the central PostgreSQL index, on the central server only",
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


@functools.cache
def _parse(text: str, filename: str) -> ast.Module:
    """The tree of a source text, parsed once for all the checks (keyed by the text itself,
    so a changed file is parsed again; no check changes a tree)."""
    return ast.parse(text, filename)


def parse(path: Path) -> ast.Module:
    return _parse(path.read_text(encoding="utf-8"), str(path))


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
    tree = parse(path)
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


def function_level_imports(path: Path) -> Iterator[tuple[str, int]]:
    """(top-level module, line) of every import inside a function (or lambda) in the file."""
    tree = parse(path)
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    for func in (n for n in ast.walk(tree) if isinstance(n, scopes)):
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name.split(".")[0], node.lineno
            elif isinstance(node, ast.ImportFrom):
                yield ("." if node.level else (node.module or "").split(".")[0]), node.lineno


def test_no_function_level_imports_but_optional_libraries() -> None:
    """Imports live at the top of the module, where a reader (and the graph above) sees them;
    a function may import only an optional library of LAZY_IMPORTS."""
    bad = sorted(
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in source_modules().values()
        for name, line in set(function_level_imports(path))
        if name not in LAZY_IMPORTS
    )
    assert not bad, "move these imports to the top of their module:\n" + "\n".join(bad)


def test_every_lazy_import_is_still_used() -> None:
    used = {name for p in source_modules().values() for name, _ in function_level_imports(p)}
    assert not set(LAZY_IMPORTS) - used, "remove from LAZY_IMPORTS (no function imports it)"


def test_the_checks_see_function_level_imports_and_cycles(tmp_path: Path) -> None:
    """The checks are not vacuous: an import inside a function is an edge of the graph and is
    found, nested or in a lambda; and a cycle is found."""
    src = tmp_path / "m.py"
    src.write_text(
        "import json\n"
        "def f():\n    if True:\n        from station import config\n"
        "g = lambda: __import__('x')\n"
        "class C:\n    def m(self):\n        import evdev\n        from . import sib\n",
        encoding="utf-8",
    )
    assert sorted(function_level_imports(src)) == [(".", 9), ("evdev", 8), ("station", 4)]
    edges = dict(imports_of("station.m", src, {"station.config"}))
    assert edges["station.config"] == 4
    g = graph()
    assert "central.site" in g["packcam.cli"] and "web.cli" in g["packcam.cli"]
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def test_run_time_imports_only_in_the_command_table() -> None:
    """``importlib.import_module`` (an import by another name) is used in one place: the
    station CLI's command table, so `packcam --help` does not load the recording stack."""
    users = sorted(
        str(path.relative_to(ROOT))
        for path in source_modules().values()
        if "import_module(" in path.read_text(encoding="utf-8")
    )
    assert users == ["station/cli.py"]


def config_reads(path: Path) -> Iterator[int]:
    """Lines of ``path`` that read the site's config by its key (``config["PACKCAM"]`` or
    ``config.get("PACKCAM")``): untyped (``Any``), so a typo or a wrong attribute passes mypy."""
    for node in ast.walk(parse(path)):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            key = node.slice if node.value.attr == "config" else None
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "config"
            and node.args
        ):
            key = node.args[0]
        if isinstance(key, ast.Constant) and key.value == "PACKCAM":
            yield node.lineno


def test_the_sites_config_is_read_through_its_typed_accessor() -> None:
    """The web and central sites read their packcam ``Config`` through ``web.handles.
    site_config`` (typed), the one place that reads the Flask config's key."""
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for mod, path in source_modules().items()
        if top(mod) in ("web", "central") and mod != "web.handles"
        for line in config_reads(path)
    ]
    assert not found, found
    assert list(config_reads(ROOT / "web/handles.py"))  # the check sees a read
