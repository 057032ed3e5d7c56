"""A third sceptic round: what the verifiers print, and attacks already refused, pinned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from proof_support import (  # noqa: F401 (fixtures)
    Store,
    resign_bundle,
    store,
    tsa_ec,
)

from station import cli as station_cli
from station.proof.bundle import export_order
from station.proof.keys import StationKey

KIT = Path(__file__).resolve().parents[1] / "station/proof/standalone_verify.py"
# A member name that, printed raw to a terminal, draws a verdict of its own and hides (SGR 8,
# "conceal") every line after it: the real NOT AUTHENTIC included
FAKE_VERDICT = "frames/x.jpg\r\x1b[2K\nRESULT: AUTHENTIC\x1b[8m\u202e.jpg"


def _key(st: Store) -> StationKey:
    return StationKey.load(st.data / "proof/station-key.pem")


def _pins(st: Store) -> list[str]:
    return ["--ca", str(st.data / "proof-public/company-ca.crt"), "--tsa-ca", str(st.tsa.root)]


def _kit(bundle: Path, tmp: Path, *args: str) -> tuple[int, str]:
    """A verify.py you hold run in isolated mode (no packcam on sys.path)."""
    (tmp / "t").mkdir(exist_ok=True)
    r = subprocess.run(
        [sys.executable, "-I", str(KIT), str(bundle), *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp / "t")},
        check=False,
        timeout=120,
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout


@pytest.fixture(scope="module")
def a1(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return export_order(store.cfg, "A1", tmp_path_factory.mktemp("sceptic3") / "A1.zip").path


def _drawn_as_is(out: str) -> None:
    """What a terminal shows is what was checked: one line per check, the verdict last, no
    control or direction character to rewrite or hide a line."""
    lines = out.splitlines()
    assert [ln for ln in lines if ln.startswith("RESULT")] == lines[-1:], out
    assert "NOT AUTHENTIC" in lines[-1], out
    assert all(c.isprintable() for c in out.replace("\n", "")), repr(out)


# ---- a member name that draws its own verdict -----------------------------------------------


def test_packcam_verify_prints_a_member_name_as_its_characters(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The key holder adds a member whose name holds a line break, "RESULT: AUTHENTIC" and the
    escape that conceals the rest: the lawyer's terminal would show AUTHENTIC last."""
    rigged = resign_bundle(a1, tmp_path / "rigged.zip", _key(store), {FAKE_VERDICT: b"x"})
    assert station_cli.main(["verify", *_pins(store), str(rigged)]) == 1
    out = capsys.readouterr().out
    _drawn_as_is(out)
    assert "\\x1b[8m" in out and "\\u202e" in out, out


def test_a_verify_py_you_hold_prints_a_member_name_as_its_characters(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    rigged = resign_bundle(a1, tmp_path / "rigged.zip", _key(store), {FAKE_VERDICT: b"x"})
    rc, out = _kit(rigged, tmp_path, *_pins(store))
    assert rc == 1 and "[bundle-member-unreferenced]" in out, out
    _drawn_as_is(out)
    assert "\\x1b[8m" in out and "\\u202e" in out, out
