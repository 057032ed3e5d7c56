"""The hashed locks in requirements/ match pyproject.toml, and pyproject bounds every dependency."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("packcam_lock", REPO / "requirements/lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def pins(path: Path) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) of a lock file."""
    out: dict[str, tuple[Version, int]] = {}
    name = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            req = line.rstrip(" \\").split(";")[0].strip()
            name, _, version = req.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            name = canonicalize_name(name)
            out[name] = (Version(version), 0)
        elif line.strip().startswith("--hash=sha256:"):
            version, n = out[name]
            out[name] = (version, n + 1)
    return out


def direct(lock: ModuleType, entry: Any, project: dict) -> list[Requirement]:
    env = {"platform_machine": entry.platform.split("-")[0], "python_version": entry.python}
    reqs = [Requirement(r) for r in lock.inputs(entry, project)]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def test_every_lock_was_made_from_this_pyproject(lock: ModuleType) -> None:
    """Fails when someone changed pyproject's dependencies and forgot `make lock`."""
    project = lock.load_project()
    stale = [entry.name for entry in lock.stale(project)]
    assert stale == [], f"requirements/{{{','.join(stale)}}}.lock are stale: run `make lock`"


def test_every_lock_pins_every_requirement_within_pyproject_with_hashes(lock: ModuleType) -> None:
    project = lock.load_project()
    for entry in lock.LOCKS:
        pinned = pins(entry.path)
        for req in direct(lock, entry, project):
            name = canonicalize_name(req.name)
            assert name in pinned, f"{entry.name}.lock lacks {req}"
            version, _ = pinned[name]
            assert req.specifier.contains(version, prereleases=True), (entry.name, req, version)
        assert all(n >= 1 for _, n in pinned.values()), entry.name
        # What apt supplies on a Pi is left out of the Pi's locks (the venv sees apt's).
        assert not set(entry.from_apt) & pinned.keys(), entry.name


def test_the_locks_agree_on_the_versions_they_share(lock: ModuleType) -> None:
    """A station, a central server and the tests run the same version of each package."""
    seen: dict[str, tuple[Version, str]] = {}
    for entry in lock.LOCKS:
        for name, (version, _) in pins(entry.path).items():
            first = seen.setdefault(name, (version, entry.name))
            assert first[0] == version, (
                f"{name}: {first[1]}.lock {first[0]}, {entry.name} {version}"
            )


def test_pyproject_bounds_each_major_and_pins_pre_1_0_exactly(lock: ModuleType) -> None:
    project = lock.load_project()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    dev = pins(REPO / "requirements/dev.lock")
    for req in reqs:
        ops = {spec.operator for spec in req.specifier}
        assert ops & {"<", "==", "~="}, f"{req} has no upper bound"
        version = dev.get(canonicalize_name(req.name), (None, 0))[0]
        if version is not None and version.major == 0:
            assert ops == {"=="}, f"{req}: pre-1.0, so pinned exactly"


def test_a_changed_dependency_makes_exactly_the_locks_that_use_it_stale(lock: ModuleType) -> None:
    project = lock.load_project()
    assert lock.stale(project) == []
    changed = copy.deepcopy(project)
    changed["project"]["optional-dependencies"]["dev"].append("tomli-w>=1,<2")
    assert {entry.name for entry in lock.stale(changed)} == {"dev", "dev-pi", "dev-pi-trixie"}
    changed = copy.deepcopy(project)
    changed["project"]["dependencies"][0] += ",!=18.0.0"
    assert {entry.name for entry in lock.stale(changed)} == {
        entry.name for entry in lock.LOCKS if not entry.tools
    }
    changed = copy.deepcopy(project)
    changed["project"]["optional-dependencies"]["pi"].append("evdev>=1.6,<2")  # apt's anyway
    assert {entry.name for entry in lock.stale(changed)} == set()


def test_lock_check_fails_naming_the_stale_lock_and_the_fix(lock: ModuleType, tmp_path) -> None:
    ok = subprocess.run(
        [sys.executable, str(REPO / "requirements/lock.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    # The same script in a copy of the tree whose pyproject gained a dependency.
    (tmp_path / "requirements").mkdir()
    for f in (REPO / "requirements").iterdir():
        if f.suffix in (".py", ".lock"):
            (tmp_path / "requirements" / f.name).write_bytes(f.read_bytes())
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    text = text.replace("dependencies = [\n", 'dependencies = [\n    "tomli-w>=1,<2",\n', 1)
    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, str(tmp_path / "requirements/lock.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "requirements/dev.lock was not made from this pyproject.toml: run `make lock`" in (
        bad.stderr
    )
    assert "tools.lock" not in bad.stderr


def test_each_pi_release_the_makefile_knows_has_a_lock_for_every_pi_extras(
    lock: ModuleType,
) -> None:
    """`make venv` on a Pi picks requirements/<extras>[-trixie].lock by its Python (the
    Makefile's PI_RELEASES): each of those Pythons has the same Pi locks, resolved for it."""
    line = next(
        line
        for line in (REPO / "Makefile").read_text(encoding="utf-8").splitlines()
        if line.startswith("PI_RELEASES")
    )
    releases = dict(pair.split("=") for pair in line.split(":=")[1].split())
    assert releases == {"3.11": "Bookworm", "3.13": "Trixie"}
    pi = [entry for entry in lock.LOCKS if entry.platform in lock.RELEASES]
    by_python: dict[str, set[tuple[str, ...]]] = {}
    for entry in pi:
        assert lock.RELEASES[entry.platform] == releases[entry.python], entry.name
        suffix = "" if entry.python == "3.11" else f"-{releases[entry.python].lower()}"
        assert entry.name == "-".join(sorted(entry.extras)) + suffix
        by_python.setdefault(entry.python, set()).add(entry.extras)
    assert by_python.keys() == releases.keys()
    assert by_python["3.11"] == by_python["3.13"]
