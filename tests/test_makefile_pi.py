"""The Makefile's Raspberry Pi branch, forced on this machine: the commands it would run, and
its final import check run for real against stand-in modules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PI_APT = ["python3-venv", "python3-picamera2", "python3-evdev", "python3-gpiozero", "python3-lgpio"]
BASE_APT = ["libzbar0", "fonts-wqy-zenhei", "openssl", "alsa-utils", "espeak-ng"]


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("make")
    if exe is None:  # CI runs `make test`: make is always there; never skip silently
        pytest.fail("make is not installed")
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PACKCAM_PI", "PI_PYTHON", "EXTRAS", "MAKEFLAGS")
    }
    full_env.update(env or {})
    return subprocess.run(
        [exe, "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def dry_run(pi: str, python: str = "3.11") -> list[str]:
    """`make -n -B venv`: every command the venv target would run, nothing executed, on a Pi
    whose python3 is ``python`` (Bookworm's unless told)."""
    before = sorted(p.name for p in REPO.iterdir())
    result = make("-n", "-B", f"PACKCAM_PI={pi}", f"PI_PYTHON={python}", "venv")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in REPO.iterdir()) == before  # a dry run leaves nothing behind
    # -B remakes every target: the lock that exists must not be "remade" by the missing-lock
    # error, which a real `make -B venv` would then stop on.
    assert "no requirements/" not in result.stdout
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def apt_list(lines: list[str]) -> list[str]:
    (loop,) = [line for line in lines if "dpkg-query" in line]
    m = re.search(r"for p in (.*?); do", loop)
    assert m, loop
    assert "apt-get install -y -qq --no-install-recommends $missing" in loop
    return m.group(1).split()


def test_pi_branch_installs_from_apt_sees_system_packages_installs_the_pi_lock_and_checks() -> None:
    lines = dry_run("1")
    assert apt_list(lines) == BASE_APT + PI_APT
    (stale,) = [i for i, line in enumerate(lines) if "lock.py --check" in line]
    assert lines[stale] == "python3 requirements/lock.py --check pi"
    (venv,) = [i for i, line in enumerate(lines) if " -m venv " in line]
    assert lines[venv].split() == ["python3", "-m", "venv", "--system-site-packages", ".venv"]
    (lock,) = [i for i, line in enumerate(lines) if "--require-hashes" in line]
    # Every locked package into the venv, apt's numpy 1.24 and simplejpeg notwithstanding.
    assert lines[lock].split() == [
        ".venv/bin/python", "-m", "pip", "install", "-q", "--require-hashes",
        "--ignore-installed", "-r", "requirements/pi.lock",
    ]  # fmt: skip
    (own,) = [i for i, line in enumerate(lines) if line.endswith(" -e .")]
    assert "--no-deps --no-build-isolation" in lines[own]
    (check,) = [i for i, line in enumerate(lines) if "for m in picamera2 evdev gpiozero" in line]
    assert stale < venv < lock < own < check
    assert lines[check + 1] == "echo pi > .venv/.installed"  # the check is the last step
    assert "exit 1" in lines[check] and "dtype size changed" in lines[check]
    assert not any("pip install" in line and "simplejpeg" in line for line in lines[:check])


def test_the_pi_lock_brings_simplejpeg_for_numpy_2_and_leaves_evdev_and_gpiozero_to_apt() -> None:
    pins = dict(
        line.split(" ", 1)[0].split("==")
        for line in (REPO / "requirements/pi.lock").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    )
    assert int(pins["numpy"].split(".")[0]) >= 2
    major, minor = (int(x) for x in pins["simplejpeg"].split(".")[:2])
    assert (major, minor) >= (1, 8)  # the first simplejpeg built for numpy 2
    assert not {"evdev", "gpiozero", "colorzero"} & pins.keys()


def test_a_non_root_user_hands_apt_its_noninteractive_frontend_through_sudo() -> None:
    """`make venv` as the Pi's own user runs apt through sudo, whose env_reset drops a
    DEBIAN_FRONTEND set in front of sudo: it must be set behind it."""
    result = make("-n", "-B", "PACKCAM_PI=1", "PI_PYTHON=3.11", "SUDO=sudo", "venv")
    assert result.returncode == 0, result.stderr
    (loop,) = [line for line in result.stdout.splitlines() if "dpkg-query" in line]
    assert "sudo apt-get update -qq" in loop
    assert "sudo DEBIAN_FRONTEND=noninteractive apt-get install" in loop


def test_the_pc_branch_installs_the_dev_lock() -> None:
    lines = dry_run("0")
    assert apt_list(lines) == BASE_APT
    assert lines[-5:] == [
        "python3 requirements/lock.py --check dev",
        "python3 -m venv  .venv",
        ".venv/bin/python -m pip install -q --require-hashes  -r requirements/dev.lock",
        ".venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .",
        "echo dev > .venv/.installed",
    ]
    assert not any("simplejpeg" in line or "picamera2" in line for line in lines)


@pytest.mark.parametrize(
    ("python", "lock"),
    [("3.11", "pi"), ("3.13", "pi-trixie")],  # Bookworm, Trixie
)
def test_the_pi_s_python_chooses_the_lock_of_its_release(python: str, lock: str) -> None:
    lines = dry_run("1", python)
    assert f"python3 requirements/lock.py --check {lock}" in lines
    assert any(line.endswith(f"--ignore-installed -r requirements/{lock}.lock") for line in lines)
    assert lines[-1] == f"echo {lock} > .venv/.installed"
    assert apt_list(lines) == BASE_APT + PI_APT


def test_the_release_is_told_by_the_python_that_makes_the_venv(tmp_path: Path) -> None:
    python = tmp_path / "python3"  # answers the Makefile's version question as Trixie's would
    python.write_text("#!/bin/sh\necho 3.13\n")
    python.chmod(0o755)
    result = make("-n", "-B", "PACKCAM_PI=1", f"PYTHON={python}", "venv")
    assert result.returncode == 0, result.stderr
    assert f"{python} requirements/lock.py --check pi-trixie" in result.stdout
    assert "-r requirements/pi-trixie.lock" in result.stdout


@pytest.mark.parametrize("python", ["3.12", "3.14", ""])  # "": python3 did not answer
def test_a_pi_whose_python_no_lock_targets_stops_at_once_saying_what_to_flash(
    python: str,
) -> None:
    result = make("-n", "-B", "PACKCAM_PI=1", f"PI_PYTHON={python}", "venv")
    assert result.returncode != 0
    assert result.stdout == ""  # before apt, before pip: not one command
    (message,) = [line for line in result.stderr.splitlines() if "packcam:" in line]
    assert f"python3 is Python {python or '(no answer)'};" in message
    assert "Python 3.11 (Raspberry Pi OS Bookworm)" in message
    assert "Python 3.13 (Raspberry Pi OS Trixie)" in message
    assert "Raspberry Pi OS Lite (64-bit)" in message and "docs/raspberry-pi.md" in message


def fake_commands(where: Path, **scripts: str) -> dict[str, str]:
    """Shell scripts named as commands in ``where``, found before the real ones: the env to
    hand to make or sh."""
    where.mkdir(exist_ok=True)
    for name, body in scripts.items():
        exe = where / name.replace("_", "-")
        exe.write_text(f"#!/bin/sh\n{body}\n")
        exe.chmod(0o755)
    return {"PATH": f"{where}{os.pathsep}{os.environ['PATH']}"}


# A Raspberry Pi OS whose userland is 32-bit (armhf) on the Pi's 64-bit kernel: uname -m says
# aarch64, the Python and dpkg are armhf, and no wheel in the Pi's locks is for it.
UNAME_AARCH64 = 'case "$1" in -m) echo aarch64;; *) echo Linux;; esac'


@pytest.mark.parametrize("arch", ["armhf", "armel"])
@pytest.mark.parametrize("python", ["3.11", "3.13", "3.9"])
def test_a_32_bit_raspberry_pi_os_stops_at_once_naming_the_64_bit_one_to_flash(
    tmp_path: Path, arch: str, python: str
) -> None:
    env = fake_commands(tmp_path, uname=UNAME_AARCH64, dpkg=f"echo {arch}")
    result = make("-n", "-B", "PACKCAM_PI=1", f"PI_PYTHON={python}", "venv", env=env)
    assert result.returncode != 0
    assert result.stdout == ""  # before apt, before pip: not one command
    (message,) = [line for line in result.stderr.splitlines() if "packcam:" in line]
    assert f"32-bit Raspberry Pi OS (dpkg says {arch}," in message
    assert "Raspberry Pi OS Lite (64-bit)" in message and "docs/raspberry-pi.md" in message
    assert "Trixie" in message and "Bookworm" in message


def test_a_64_bit_raspberry_pi_os_goes_on(tmp_path: Path) -> None:
    env = fake_commands(tmp_path, uname=UNAME_AARCH64, dpkg="echo arm64")
    result = make("-n", "-B", "PACKCAM_PI=1", "PI_PYTHON=3.13", "venv", env=env)
    assert result.returncode == 0, result.stderr
    assert "-r requirements/pi-trixie.lock" in result.stdout


def test_a_pc_does_not_ask_dpkg_its_architecture(tmp_path: Path) -> None:
    env = fake_commands(tmp_path, dpkg="echo armhf")  # a 32-bit PC: the dev lock's business
    result = make("-n", "-B", "PACKCAM_PI=0", "venv", env=env)
    assert result.returncode == 0, result.stderr
    assert "-r requirements/dev.lock" in result.stdout


# dpkg-query -W [-f=FORMAT] [NAME...] as Debian's answers it, from a status database in
# $FAKE_DPKG (package|status|provides per line): by name it finds real packages only, never
# one another provides; without names it lists every package dpkg knows.
FAKE_DPKG_QUERY = """\
import fnmatch, os, re, sys
db = [dict(zip(("Package", "Status", "Provides"), line.split("|")))
      for line in open(os.environ["FAKE_DPKG"]).read().splitlines()]
fmt, names = "${Package}\\n", []
for arg in sys.argv[1:]:
    if arg.startswith("-f="): fmt = arg[3:]
    elif arg != "-W": names.append(arg)
rc, rows = 0, db
if names:
    rows = []
    for name in names:
        found = [p for p in db if fnmatch.fnmatchcase(p["Package"], name)]
        if not found:
            print(f"dpkg-query: no packages found matching {name}", file=sys.stderr)
            rc = 1
        rows += found
for p in rows:
    out = re.sub(r"\\$\\{([^}]*)\\}", lambda m: p.get(m.group(1), ""), fmt)
    sys.stdout.write(out.replace("\\\\n", "\\n"))
sys.exit(rc)
"""

OK = "install ok installed"


def apt_asked(tmp_path: Path, status: list[tuple[str, str, str]]) -> list[str]:
    """Runs the apt step of a Trixie Pi's `make venv` (`make deps`) against a dpkg status
    database; returns the apt-get commands it ran."""
    result = make("-n", "-B", "PACKCAM_PI=1", "PI_PYTHON=3.13", "SUDO=", "deps")
    assert result.returncode == 0, result.stderr
    (loop,) = [line for line in result.stdout.splitlines() if "dpkg-query" in line]
    (tmp_path / "dpkg-query.py").write_text(FAKE_DPKG_QUERY)
    (tmp_path / "status").write_text("".join(f"{'|'.join(row)}\n" for row in status))
    env = fake_commands(
        tmp_path / "bin",
        dpkg_query=f'exec {sys.executable} {tmp_path / "dpkg-query.py"} "$@"',
        apt_get=f'echo "apt-get $*" >> {tmp_path / "apt.log"}',
    )
    env["FAKE_DPKG"] = str(tmp_path / "status")
    subprocess.run(["sh", "-c", loop], env=env, check=True, timeout=60)
    log = tmp_path / "apt.log"
    return log.read_text().splitlines() if log.exists() else []


def test_apt_is_not_run_when_every_package_is_installed(tmp_path: Path) -> None:
    assert apt_asked(tmp_path, [(p, OK, "") for p in BASE_APT + PI_APT]) == []


def test_trixie_s_libzbar0t64_is_the_libzbar0_apt_needs_not_install(tmp_path: Path) -> None:
    """Debian 13 renamed libzbar0 to libzbar0t64 (the 64-bit time_t transition), which
    provides libzbar0 on arm64: dpkg-query by the old name finds nothing."""
    others = [(p, OK, "") for p in BASE_APT + PI_APT if p != "libzbar0"]
    status = [("libzbar0t64", OK, "libzbar0 (= 0.23.93-7)"), *others]
    assert apt_asked(tmp_path, status) == []


def test_apt_installs_what_is_missing_removed_or_only_provided_by_a_removed_package(
    tmp_path: Path,
) -> None:
    status = [
        ("libzbar0t64", "deinstall ok config-files", "libzbar0 (= 0.23.93-7)"),
        ("libzbar-dev", OK, "libzbar0-dev"),  # a name that only begins like a wanted one
        ("openssl", "deinstall ok config-files", ""),
        *[(p, OK, "") for p in BASE_APT + PI_APT if p not in ("libzbar0", "openssl", "espeak-ng")],
    ]
    assert apt_asked(tmp_path, status) == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends libzbar0 openssl espeak-ng",
    ]


def test_a_pc_does_not_ask_which_python_the_pi_has() -> None:
    result = make("-n", "-B", "PACKCAM_PI=0", "PI_PYTHON=3.12", "venv")
    assert result.returncode == 0, result.stderr
    assert "-r requirements/dev.lock" in result.stdout


@pytest.mark.parametrize(
    ("python", "extras", "lock"),
    [
        ("3.11", "dev,pi", "dev-pi"),
        ("3.11", "pi,dev", "dev-pi"),
        ("3.11", "fleet", "fleet"),
        ("3.11", "pi,fleet", "fleet-pi"),
        ("3.13", "dev,pi", "dev-pi-trixie"),
        ("3.13", "pi,fleet", "fleet-pi-trixie"),
    ],
)
def test_extras_choose_their_lock(python: str, extras: str, lock: str) -> None:
    result = make("-n", "-B", "PACKCAM_PI=1", f"PI_PYTHON={python}", f"EXTRAS={extras}", "venv")
    assert result.returncode == 0, result.stderr
    assert f"-r requirements/{lock}.lock" in result.stdout


def test_extras_without_a_lock_stop_with_the_way_to_add_one() -> None:
    result = make("EXTRAS=dev,nosuch", "requirements/dev-nosuch.lock")
    assert result.returncode != 0
    assert "no requirements/dev-nosuch.lock for EXTRAS=dev,nosuch" in result.stderr
    assert "dev.lock" in result.stderr and "make lock" in result.stderr


@pytest.fixture
def fake_venv(tmp_path: Path) -> Path:
    """A "venv" whose python is this interpreter, with stand-in modules on PYTHONPATH."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/python").symlink_to(sys.executable)
    (tmp_path / "mods").mkdir()
    return tmp_path


def pi_check(venv: Path) -> subprocess.CompletedProcess[str]:
    # -o: take the venv as made, so only the import check runs.
    return make(
        "-s", "-o", f"{venv}/.installed", "PACKCAM_PI=1", "PI_PYTHON=3.11", f"VENV={venv}",
        "pi-check",
        env={"PYTHONPATH": str(venv / "mods")},
    )  # fmt: skip


def test_import_check_passes_when_all_three_import(fake_venv: Path) -> None:
    for name in ("picamera2", "evdev", "gpiozero"):
        (fake_venv / "mods" / f"{name}.py").write_text("")
    result = pi_check(fake_venv)
    assert result.returncode == 0, result.stderr
    assert "picamera2, evdev and gpiozero import" in result.stdout


def test_import_check_names_the_numpy_mismatch_and_its_fix(fake_venv: Path) -> None:
    (fake_venv / "mods/picamera2.py").write_text(
        'raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. '
        'Expected 96 from C header, got 88 from PyObject")\n'
    )
    result = pi_check(fake_venv)
    assert result.returncode != 0
    assert "'import picamera2' fails" in result.stderr
    assert "ValueError: numpy.dtype size changed" in result.stderr
    assert "pip install --force-reinstall --no-deps 'simplejpeg>=1.8.1'" in result.stderr


def test_import_check_names_a_missing_module_and_the_apt_packages(fake_venv: Path) -> None:
    (fake_venv / "mods/picamera2.py").write_text("")
    (fake_venv / "mods/gpiozero.py").write_text("")  # evdev missing
    result = pi_check(fake_venv)
    assert result.returncode != 0
    assert "'import evdev' fails" in result.stderr and "No module named 'evdev'" in result.stderr
    assert "sudo apt install python3-venv python3-picamera2 python3-evdev" in result.stderr
    assert "--system-site-packages" in result.stderr


@pytest.mark.parametrize(
    ("made_from", "extras", "installs"),
    [("dev", "dev", False), ("", "dev", False), ("pi", "dev", True), ("pi", "fleet,pi", True)],
)
def test_a_venv_made_from_another_lock_is_installed_again(
    tmp_path: Path, made_from: str, extras: str, installs: bool
) -> None:
    """The stamp names its lock: `make EXTRAS=pi,fleet venv` on a station's `pi` venv installs
    the new lock; the same lock (or a stamp from before locks, empty) does nothing."""
    stamp = tmp_path / ".installed"
    stamp.write_text(f"{made_from}\n" if made_from else "")
    later = (REPO / "pyproject.toml").stat().st_mtime + 3600
    os.utime(stamp, (later, later))  # newer than pyproject.toml and every lock
    result = make("-n", f"VENV={tmp_path}", f"EXTRAS={extras}", "PACKCAM_PI=0", "venv")
    assert result.returncode == 0, result.stderr
    assert ("--require-hashes" in result.stdout) == installs, result.stdout
