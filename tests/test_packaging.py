"""What a wheel of packcam holds (its package data, one version number); the tests' time limit."""

from __future__ import annotations

import importlib.metadata
import subprocess
import tomllib
from pathlib import Path

import station

REPO = Path(__file__).resolve().parents[1]


def tracked(*paths: str) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", *paths], capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def setuptools_config() -> dict:
    with (REPO / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_each_package_data_pattern_matches_files_and_covers_every_data_file() -> None:
    config = setuptools_config()
    packages = config["packages"]["find"]["include"]
    roots = sorted({p.rstrip("*") for p in packages})
    data = [f for f in tracked(*roots) if not f.endswith(".py")]
    covered: set[str] = set()
    for package, patterns in config["package-data"].items():
        base = REPO / package.replace(".", "/")
        for pattern in patterns:
            matched = {str(p.relative_to(REPO)) for p in base.glob(pattern) if p.is_file()}
            assert matched, f"package-data {package}: {pattern!r} matches nothing"
            covered |= matched
    assert [f for f in data if f not in covered] == []  # a data file the wheel would lose


def test_the_version_is_written_once() -> None:
    with (REPO / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert setuptools_config()["dynamic"]["version"] == {"attr": "station.__version__"}
    assigned = [
        f for f in tracked("*.py") if "\n__version__ = " in (REPO / f).read_text(encoding="utf-8")
    ]
    assert assigned == ["station/__init__.py"]
    assert importlib.metadata.version("packcam") == station.__version__


def test_every_test_has_a_time_limit(pytestconfig) -> None:
    """pytest-timeout is active with a default: a hang fails its test, not the whole run."""
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert 0 < float(pytestconfig.getini("timeout")) <= 300
