"""Regenerate the hashed lock files in requirements/ from pyproject.toml (uv), or check them."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYPROJECT = HERE.parent / "pyproject.toml"
PYTHON_VERSION = "3.11"
# Debian 12 and Raspberry Pi OS Bookworm both have glibc 2.36: wheels built for a newer glibc
# would not load there, so the resolver must not pick them.
PC = "x86_64-manylinux_2_36"
PI = "aarch64-manylinux_2_36"
# Raspberry Pi OS Trixie (the Imager's default since late 2025): Python 3.13, glibc 2.41. uv
# 0.13 knows manylinux tags up to 2_40, and a wheel for 2_40 loads on 2.41.
PI_TRIXIE = "aarch64-manylinux_2_40"
PI_TRIXIE_PYTHON = "3.13"
# The Pi's releases by platform: the Makefile's PI_RELEASES picks a Pi's locks by its Python.
RELEASES = {PI: "Bookworm", PI_TRIXIE: "Trixie"}
# On a Pi these come from apt into a --system-site-packages venv (evdev has no aarch64 wheel and
# Lite cannot build it; gpiozero needs apt's lgpio): pip finds them there, so the Pi's locks
# leave them out (pyproject's bounds still say which versions packcam works with).
PI_FROM_APT = ("gpiozero", "evdev")
# The one tool `make lock` needs, itself locked (requirements/tools.lock) and kept on this
# minor until someone raises it here.
TOOLS = ("uv>=0.13.9,<0.14",)
FINGERPRINT = "# inputs-sha256: "
# uv's words when the registry cannot be reached (then its cache may still do).
NETWORK_ERRORS = ("Failed to fetch", "error sending request", "dns error", "timed out", "connect")


class LockError(Exception):
    """uv could not resolve a lock; the message is uv's."""


@dataclass(frozen=True)
class Lock:
    """One lock file: the extras it installs and the machine it is for."""

    name: str
    extras: tuple[str, ...]
    platform: str
    from_apt: tuple[str, ...] = ()
    tools: bool = False
    python: str = PYTHON_VERSION

    @property
    def path(self) -> Path:
        return HERE / f"{self.name}.lock"

    @property
    def purpose(self) -> str:
        if self.tools:
            return "the tools `make lock` runs (uv)"
        release = RELEASES.get(self.platform)
        where = f"a Raspberry Pi (aarch64, {release})" if release else "a PC (x86_64)"
        extras = ",".join(self.extras)
        apt = f" ({', '.join(self.from_apt)} from apt)" if self.from_apt else ""
        return f"packcam[{extras}] on {where}, Python {self.python}{apt}"


# The Makefile picks requirements/<EXTRAS, sorted, joined by "-">.lock, with "-trixie" on a
# Trixie Pi. The first is made first, and the others take its versions: a station runs what
# the tests ran, on either release.
LOCKS = (
    Lock("dev", ("dev",), PC),  # `make test`, `make demo` on a PC
    Lock("fleet", ("fleet",), PC),  # a central server
    Lock("pi", ("pi",), PI, PI_FROM_APT),  # a station
    Lock("fleet-pi", ("fleet", "pi"), PI, PI_FROM_APT),  # a station that archives to S3
    Lock("dev-pi", ("dev", "pi"), PI, PI_FROM_APT),  # the tests on a Pi
    Lock("pi-trixie", ("pi",), PI_TRIXIE, PI_FROM_APT, python=PI_TRIXIE_PYTHON),
    Lock("fleet-pi-trixie", ("fleet", "pi"), PI_TRIXIE, PI_FROM_APT, python=PI_TRIXIE_PYTHON),
    Lock("dev-pi-trixie", ("dev", "pi"), PI_TRIXIE, PI_FROM_APT, python=PI_TRIXIE_PYTHON),
    Lock("tools", (), PC, tools=True),
)


def inputs(lock: Lock, project: dict) -> list[str]:
    """The requirements this lock is resolved from, straight from pyproject.toml: packcam
    itself is not built, so locking needs neither setuptools nor a network for packcam."""
    if lock.tools:
        return list(TOOLS)
    # setuptools is locked too: `make venv` installs packcam with --no-build-isolation, so no
    # unpinned build dependency is downloaded.
    reqs = list(project["build-system"]["requires"])
    reqs += project["project"]["dependencies"]
    optional = project["project"]["optional-dependencies"]
    for extra in lock.extras:
        reqs += optional[extra]
    return [r for r in reqs if name_of(r) not in lock.from_apt]


def name_of(requirement: str) -> str:
    """The normalised project name a PEP 508 requirement starts with."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not m:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", m.group(1)).lower()


def fingerprint(lock: Lock, project: dict) -> str:
    """A hash of everything the lock was resolved from: it changes when pyproject's
    dependencies for this lock (or this script's settings for it) change."""
    data = {
        "requires": inputs(lock, project),
        "requires-python": project["project"].get("requires-python"),
        "python": lock.python,
        "platform": lock.platform,
        "from-apt": sorted(lock.from_apt),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def recorded(path: Path) -> str | None:
    """The fingerprint written in a lock's header, or None."""
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.startswith(FINGERPRINT):
                    return line[len(FINGERPRINT) :].strip()
                if not line.startswith("#"):
                    return None
    except FileNotFoundError:
        return None
    return None


def load_project() -> dict:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)


def stale(project: dict, locks: tuple[Lock, ...] = LOCKS) -> list[Lock]:
    return [lk for lk in locks if recorded(lk.path) != fingerprint(lk, project)]


def header(lock: Lock, project: dict) -> str:
    source = "TOOLS in requirements/lock.py" if lock.tools else "pyproject.toml"
    return (
        f"# requirements/{lock.name}.lock: {lock.purpose}.\n"
        f"# Made by `make lock` (requirements/lock.py) from {source}; do not edit by hand.\n"
        f"# Install: pip install --require-hashes -r requirements/{lock.name}.lock\n"
        f"{FINGERPRINT}{fingerprint(lock, project)}\n"
    )


def pinned(path: Path) -> list[str]:
    """The ``name==version`` lines of a lock file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split()[0] for line in lines if "==" in line and line[0] not in " #"]


def compile_lock(
    uv: str, lock: Lock, project: dict, upgrade: bool, offline: bool, like: Lock | None = None
) -> None:
    """Resolve one lock with uv, keeping the versions the current lock already has (uv reads
    the output file's pins as preferences) unless ``upgrade``, and the versions of ``like``
    for every package the two share."""
    with tempfile.TemporaryDirectory(prefix="packcam-lock-") as tmp:
        req_in = Path(tmp) / "pyproject.in"
        req_in.write_text("\n".join(inputs(lock, project)) + "\n", encoding="utf-8")
        out = Path(tmp) / f"{lock.name}.lock"
        if lock.path.exists() and not upgrade:
            shutil.copyfile(lock.path, out)
        cmd = [
            uv, "pip", "compile", str(req_in), "--output-file", str(out), "--quiet",
            "--generate-hashes", "--no-header", "--annotation-style", "line",
            "--python-version", lock.python, "--python-platform", lock.platform,
            "--only-binary", ":all:",  # nothing is compiled on a Pi without python3-dev
        ]  # fmt: skip
        if like is not None:
            same = Path(tmp) / "same-versions.txt"
            same.write_text("\n".join(pinned(like.path)) + "\n", encoding="utf-8")
            cmd += ["--constraint", str(same)]
        if upgrade:
            cmd.append("--upgrade")
        if offline:
            cmd.append("--offline")
        env = dict(os.environ)
        env.pop("UV_INDEX_URL", None)  # the hashes are PyPI's: what pip downloads on a station
        env.pop("UV_EXTRA_INDEX_URL", None)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LockError(done.stderr.strip() or f"uv exited with {done.returncode}")
        source = "requirements/lock.py" if lock.tools else "pyproject.toml"
        text = out.read_text(encoding="utf-8").replace(f"-r {req_in}", source)
        if like is not None:
            text = text.replace(f"-c {same}", f"requirements/{like.name}.lock")
        text = header(lock, project) + text
        # Unchanged locks keep their mtime, so `make` does not reinstall a venv for nothing.
        if not lock.path.exists() or lock.path.read_text(encoding="utf-8") != text:
            lock.path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check the locks are current")
    parser.add_argument("--uv", default="uv", help="the uv executable (default: uv on PATH)")
    parser.add_argument("--upgrade", action="store_true", help="newest versions pyproject allows")
    parser.add_argument(
        "--offline", action="store_true", help="resolve from uv's cache only, no network"
    )
    parser.add_argument("names", nargs="*", help="locks to make (default: all)")
    args = parser.parse_args(argv)
    project = load_project()
    known = {lk.name: lk for lk in LOCKS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown lock {', '.join(unknown)}; known: {', '.join(known)}")
    selected = tuple(known[n] for n in args.names) or LOCKS
    if args.check:
        old = stale(project, selected)
        for lk in old:
            print(
                f"requirements/{lk.name}.lock was not made from this pyproject.toml: "
                "run `make lock`",
                file=sys.stderr,
            )
        return 1 if old else 0
    first = LOCKS[0]
    for lk in selected:
        print(f"locking requirements/{lk.name}.lock ({lk.purpose})")
        like = None if lk is first or lk.tools or not first.path.exists() else first
        try:
            try:
                compile_lock(args.uv, lk, project, args.upgrade, args.offline, like)
            except LockError as exc:
                if args.offline or not any(w in str(exc) for w in NETWORK_ERRORS):
                    raise
                # No registry (or a flaky one): uv's cache usually holds every file these locks
                # name, since the last `make lock` downloaded their metadata.
                print(f"{exc}\nretrying from uv's cache (--offline)", file=sys.stderr)
                compile_lock(args.uv, lk, project, args.upgrade, True, like)
        except LockError as exc:
            print(f"requirements/{lk.name}.lock not made:\n{exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
