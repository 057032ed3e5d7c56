"""`packcam keys|ca|export|verify|audit|checkpoint` through station.cli.main (the real parser)."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from proof_support import Store, garbage_bundles, store, tsa_ec  # noqa: F401 (fixtures)

from station import cli as station_cli
from station.proof.verify import verify_bundle

COMMANDS = [
    ["keys", "init"],
    ["ca", "init"],
    ["ca", "issue"],
    ["export"],
    ["verify"],
    ["audit"],
    ["checkpoint"],
]


def _main(argv: list[str]) -> int:
    """The real `packcam` parser: station.cli loads station.proof.cli.register()."""
    return station_cli.main(argv)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _main([*cmd, "--help"])
    assert exc.value.code == 0
    assert len(capsys.readouterr().out) > 100


def test_keys_and_ca_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert _main(["keys", "init", "--data", data]) == 0
    first = capsys.readouterr().out
    key = tmp_path / "data/proof/station-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and "SHA256:" in first
    assert _main(["keys", "init", "--data", data]) == 0
    assert "existing" in capsys.readouterr().out and key.exists()
    assert _main(["ca", "init", "--data", data, "--name", "Acme 公司 CA"]) == 0
    assert stat.S_IMODE((tmp_path / "data/proof/ca/ca.key").stat().st_mode) == 0o600
    assert _main(["ca", "init", "--data", data]) == 3  # never overwrite a CA
    assert _main(["ca", "issue", "station-01", "--data", data]) == 0
    assert _main(["ca", "issue", "other-station", "--data", data]) == 3  # needs its public key
    chain = x509.load_pem_x509_certificates(
        (tmp_path / "data/proof-public/station-c2pa-chain.pem").read_bytes()
    )
    leaf, root = chain
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    ekus = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in ekus
    assert leaf.issuer == root.subject != leaf.subject  # not self-signed
    leaf.verify_directly_issued_by(root)
    assert stat.S_IMODE((tmp_path / "data/proof/station-c2pa-key.pem").stat().st_mode) == 0o600
    out = tmp_path / "other"
    pub = tmp_path / "data/proof-public/station-key.pub.pem"
    assert (
        _main(
            [
                "ca",
                "issue",
                "other-station",
                "--data",
                data,
                "--station-key",
                str(pub),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "station-key.crt").exists() and (out / "station-c2pa-chain.pem").exists()


def test_export_verify_audit_exit_codes(
    store: Store,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no per-user trust file
    st = store.copy(tmp_path / "data")
    data = str(st.data)
    ca = str(st.data / "proof-public/company-ca.crt")
    pins = ["--ca", ca, "--tsa-ca", str(store.tsa.root)]
    bundle = tmp_path / "b.zip"
    assert _main(["export", "A1", "-o", str(bundle), "--data", data]) == 0
    assert "2 clip(s)" in capsys.readouterr().out
    # nothing pinned: intact, but the CA and TSA shipped inside vouch for nothing
    assert _main(["verify", str(bundle)]) == 4
    out = capsys.readouterr().out
    assert "INTACT BUT NOT ANCHORED" in out and "company CA SHA256:" in out
    assert _main(["verify", *pins, str(bundle)]) == 0
    assert "RESULT b.zip: AUTHENTIC" in capsys.readouterr().out
    assert _main(["verify", "--json", *pins, str(bundle)]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["verdict"] == "authentic" and j["authentic"] is True and j["exit_code"] == 0
    assert _main(["verify", "--json", str(bundle)]) == 4
    j = json.loads(capsys.readouterr().out)
    assert j["verdict"] == "intact-unanchored" and j["authentic"] is False
    assert {"signer-unanchored", "time-unanchored"} <= set(j["reasons"])
    assert _main(["audit", "--data", data, *pins]) == 0
    assert _main(["audit", "--data", data]) == 4
    assert _main(["checkpoint", "--data", data]) == 0
    clip = sorted(st.data.glob("clips/**/*.mp4"))[0]
    assert _main(["verify", "--data", data, *pins, str(clip)]) == 0
    assert _main(["verify", "--data", data, str(clip)]) == 4
    with clip.open("r+b") as f:
        f.seek(5000)
        b = f.read(1)
        f.seek(5000)
        f.write(bytes([b[0] ^ 0xFF]))
    capsys.readouterr()
    assert _main(["verify", "--data", data, *pins, str(clip)]) == 1
    assert "[clip-altered]" in capsys.readouterr().out
    assert _main(["audit", "--data", data, *pins]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert _main(["export", "NO-SUCH-ORDER", "-o", str(tmp_path / "x.zip"), "--data", data]) == 3
    assert _main(["verify", str(tmp_path / "missing.zip")]) == 3


# `packcam export` that stops, once it has written a clip into the bundle's .part, until a
# signal ends it (stdin is a pipe the test never writes to).
EXPORT_THAT_WAITS = """
import sys, zipfile
from packcam import cli
real = zipfile.ZipFile.write
def write(self, *args, **kw):
    real(self, *args, **kw)
    print("writing", flush=True)
    sys.stdin.read()
zipfile.ZipFile.write = write
sys.exit(cli.main(sys.argv[1:]))
"""


def _export_stopped_by(signum: int, out: Path, data: str) -> tuple[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", EXPORT_THAT_WAITS, "export", "A1", "-o", str(out), "--data", data],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    part = out.with_name(out.name + ".part")
    written = part.stat().st_size if part.exists() else 0
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert line == "writing\n" and written > 0, stderr[-2000:]
    return proc.returncode, stderr


def test_an_export_ended_by_sigterm_leaves_no_part_and_a_killed_ones_is_written_over(
    store: Store,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``kill`` (systemd, a shell's timeout) ends `packcam export` as Ctrl-C does: the
    ``.part`` in the user's folder is removed and the exit status is 128 + SIGTERM. A SIGKILL
    cannot be caught: its ``.part`` stays until the next export to that path writes over it."""
    data = str(store.copy(tmp_path / "data").data)
    out = tmp_path / "out" / "A1.zip"
    assert _export_stopped_by(signal.SIGKILL, out, data)[0] == -signal.SIGKILL
    assert [p.name for p in out.parent.iterdir()] == ["A1.zip.part"]
    status, stderr = _export_stopped_by(signal.SIGTERM, out, data)
    assert status == 128 + signal.SIGTERM, stderr[-2000:]
    assert list(out.parent.iterdir()) == []
    out.with_name("A1.zip.part").write_bytes(b"\xff" * (4 << 20))  # longer than the bundle
    assert _main(["export", "A1", "-o", str(out), "--data", data]) == 0
    assert [p.name for p in out.parent.iterdir()] == ["A1.zip"]
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None and "bundle.json" in zf.namelist()
    assert "2 clip(s)" in capsys.readouterr().out


def test_verify_a_garbage_bundle_is_a_clear_verdict_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for what, path in garbage_bundles(tmp_path).items():
        capsys.readouterr()
        assert _main(["verify", str(path), "--no-default-trust"]) == 1, what
        out = capsys.readouterr().out
        assert "[bundle-malformed]" in out and "NOT AUTHENTIC" in out, (what, out)
        report = verify_bundle(path, tmp_dir=scratch)
        assert report.codes() == {"bundle-malformed"}, (what, report.lines())
        assert not list(scratch.iterdir()), what  # nothing left behind
