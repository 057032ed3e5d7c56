"""The station key stays the station's: proof/ is 0700, public material is published for the web."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from proof_support import Store, store, tsa_ec  # noqa: F401 (fixtures)

from station import config as config_mod
from station.proof import ProofError
from station.proof.keys import StationKey, station_public_key
from station.proof.paths import ProofPaths

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def paths_in(root: Path) -> ProofPaths:
    return ProofPaths.from_config(config_mod.load(None).with_data_dir(root / "data"))


def test_private_folder_is_0700_and_the_public_key_is_published(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    paths.ensure_dirs()
    key, created = StationKey.load_or_create(paths.key, public_path=paths.public_key)
    assert created
    assert (mode(paths.dir), mode(paths.key)) == (0o700, 0o600)
    assert (mode(paths.public_dir), mode(paths.public_key)) == (0o755, 0o644)
    assert paths.public_key.read_bytes() == key.public_pem()
    assert (
        paths.key_cert.parent == paths.ca_cert.parent == paths.c2pa_cert.parent == paths.public_dir
    )
    assert paths.c2pa_key.parent == paths.ca_dir.parent == paths.dir
    paths.public_key.write_bytes(b"tampered")  # republished on the next start
    StationKey.load_or_create(paths.key, public_path=paths.public_key)
    assert paths.public_key.read_bytes() == key.public_pem()


def test_a_new_key_folder_is_created_0700(tmp_path: Path) -> None:
    key_path = tmp_path / "elsewhere" / "station-key.pem"
    StationKey.load_or_create(key_path)
    assert mode(key_path.parent) == 0o700


def test_a_loose_private_folder_is_tightened(tmp_path: Path, caplog) -> None:
    paths = paths_in(tmp_path)
    paths.dir.mkdir(parents=True, mode=0o755)
    paths.dir.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        paths.ensure_dirs()
    assert mode(paths.dir) == 0o700
    assert "setting 0700" in caplog.text


def test_a_private_folder_of_another_user_is_refused(tmp_path: Path, monkeypatch) -> None:
    paths = paths_in(tmp_path)
    paths.dir.mkdir(parents=True, mode=0o700)
    owner = paths.dir.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)
    with pytest.raises(ProofError, match="must be the station's own"):
        paths.ensure_dirs()


def test_the_public_key_is_read_without_the_private_one(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    paths.ensure_dirs()
    key, _ = StationKey.load_or_create(paths.key, public_path=paths.public_key)
    paths.key.unlink()  # as if the private key were not readable
    assert station_public_key(paths.public_key, paths.key) == key.public
    paths.public_key.unlink()
    with pytest.raises(ProofError, match="no station public key"):
        station_public_key(paths.public_key, paths.key)


def test_the_station_finalizer_publishes_its_public_key(tmp_path: Path) -> None:
    from station.proof.finalizer import ProofFinalizer

    cfg = config_mod.load(None).with_data_dir(tmp_path / "data")
    fin = ProofFinalizer(cfg, start_worker=False)
    try:
        paths = ProofPaths.from_config(cfg)
        assert mode(paths.dir) == 0o700 and mode(paths.public_key) == 0o644
        assert paths.public_key.read_bytes() == fin.key.public_pem()
    finally:
        fin.close()


def _web_checks(data: Path) -> dict[str, object]:
    """What the web site does with a store: /verify a recorded clip, export a bundle."""
    sys.path.insert(0, str(TESTS))
    from conftest_web import FAST_PW, csrf_of, login

    from web import create_app

    cfg = config_mod.load(None).with_data_dir(data)
    # the site trusts the TSA root the station uses (a public file): else nothing is
    # "authentic", only "intact, but not anchored"
    cfg = cfg.replace("proof", tsa_ca_path=str(data / "proof-public/tsa-roots.pem"))
    app = create_app(cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40,
                                       "PASSWORD_METHOD": FAST_PW})  # fmt: skip
    client = app.test_client()
    clip = sorted(data.glob("clips/**/*.mp4"))[0]
    resp = client.post(
        "/verify",
        data={"csrf_token": csrf_of(client), "file": (io.BytesIO(clip.read_bytes()), "c.mp4")},
    )
    body = resp.get_data(as_text=True)
    login(client, "viewer")
    bundle = client.get("/clips/1/bundle.zip", buffered=True)
    bundle.close()
    try:
        (data / "proof/station-key.pem").read_bytes()
        key = "readable"
    except (PermissionError, FileNotFoundError):
        key = "denied"
    return {
        "verify": resp.status_code,
        "authentic": "Authentic: matches" in body,
        "bundle": bundle.status_code,
        "key": key,
    }


def test_the_web_site_needs_no_private_key(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """/verify and the evidence bundle work with the private keys gone."""
    from conftest_web import add_users

    st = store.copy(tmp_path / "data")
    shutil.copy(store.tsa.root, st.data / "proof-public/tsa-roots.pem")
    add_users(st.data)
    shutil.rmtree(st.data / "proof")
    assert _web_checks(st.data) == {
        "verify": 200,
        "authentic": True,
        "bundle": 200,
        "key": "denied",
    }


STATION_UID, WEB_UID, SHARED_GID = 40001, 40002, 40000


def _as_deployed(data: Path) -> None:
    """Owners and modes as systemd/install.sh and the units' UMask=0007 leave them."""
    for p in [data, *data.rglob("*")]:
        os.chown(p, STATION_UID, SHARED_GID, follow_symlinks=False)
        if p.is_dir():
            p.chmod(0o2770)
        elif p.is_file():
            p.chmod(0o660)
    proof, public = data / "proof", data / "proof-public"
    for p in [proof, *proof.rglob("*")]:
        p.chmod(0o700 if p.is_dir() else 0o600)
    for p in [public, *public.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the site as another user")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_web_user_cannot_read_the_key_yet_verifies_and_exports(store: Store) -> None:  # noqa: F811
    """The deployed layout, for real: the site runs as another uid in the shared group."""
    from conftest_web import add_users

    root = Path(tempfile.mkdtemp(prefix="packcam-users-", dir="/tmp"))
    try:
        root.chmod(0o755)
        st = store.copy(root / "data")
        shutil.copy(store.tsa.root, st.data / "proof-public/tsa-roots.pem")
        add_users(st.data)
        _as_deployed(st.data)
        child = (
            f"import json, sys; sys.path.insert(0, {str(TESTS)!r}); "
            "from test_key_separation import _web_checks; from pathlib import Path; "
            f"print(json.dumps(_web_checks(Path({str(st.data)!r}))))"
        )
        cmd = ["setpriv", f"--reuid={WEB_UID}", f"--regid={SHARED_GID}", "--clear-groups",
               sys.executable, "-c", child]  # fmt: skip
        probe = subprocess.run(
            [*cmd[:4], sys.executable, "-c", "import web, conftest_web"],
            capture_output=True,
            cwd=TESTS,
        )
        if probe.returncode != 0:
            pytest.skip(f"the venv is not usable by uid {WEB_UID}: {probe.stderr[-200:]!r}")
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result == {"verify": 200, "authentic": True, "bundle": 200, "key": "denied"}
    finally:
        shutil.rmtree(root, ignore_errors=True)
