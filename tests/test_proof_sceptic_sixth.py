"""A sixth sceptic round: a bundle without key frames."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    Store,
    bundle_index,
    resign_bundle,
    run_kit,
    store,
    tsa_ec,
)

from station.proof.bundle import export_order
from station.proof.verify import AUTHENTIC, TAMPERED, verify_bundle

LINE = re.compile(r"^(OK|FAIL|WARN) +.*\[([a-z0-9-]+)\]$", re.M)


@pytest.fixture(scope="module")
def b2(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return export_order(store.cfg, "B2", tmp_path_factory.mktemp("sceptic6") / "B2.zip").path


def _without_frames(st: Store, src: Path, dst: Path) -> Path:
    """``src`` with its key frames left out (bundle.json listing none), re-signed by the key
    holder: every member left is the station's, signed."""
    idx = bundle_index(src)
    changes: dict[str, bytes | None] = {}
    for e in idx["clips"]:
        changes.update((f["file"], None) for f in e["frames"])
        e["frames"] = []
    changes["bundle.json"] = json.dumps(idx).encode()
    return resign_bundle(src, dst, st.station_key(), changes)


def _noted(out: str, status: str) -> set[str]:
    return {code for s, code in LINE.findall(out) if s == status}


def test_a_bundle_without_key_frames_is_named_by_both_verifiers(
    store: Store,  # noqa: F811
    b2: Path,
    tmp_path: Path,
) -> None:
    """The key frames are what lets a person hold the clock burned into the pictures to the
    signed times (the re-timed clip of test_proof_sceptic_fifth leaves them out). A bundle
    whose clip is here with no key frame listed was AUTHENTIC with not a word about it; both
    verifiers now warn (`bundle-frames-missing`), as an honest central bundle of a clip the
    station had freed after archiving it has none either: the verdict stands."""
    bundle = _without_frames(store, b2, tmp_path / "bare.zip")
    report = verify_bundle(bundle, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC, report.lines()
    (warned,) = [c for c in report.checks if c.code == "bundle-frames-missing"]
    assert warned.status == "warn" and "burned" in warned.reason, warned
    rc, out = run_kit(KIT, bundle, tmp_path, *store.pins())
    assert rc == 0, out
    assert "bundle-frames-missing" in _noted(out, "WARN"), out


def test_an_exported_bundle_has_no_such_warning(
    store: Store,  # noqa: F811
    b2: Path,
    tmp_path: Path,
) -> None:
    report = verify_bundle(b2, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC and "bundle-frames-missing" not in report.reasons()
    rc, out = run_kit(KIT, b2, tmp_path, *store.pins())
    assert rc == 0 and "bundle-frames-missing" not in out, out


def test_a_tampered_clip_without_key_frames_is_not_also_warned_of(
    store: Store,  # noqa: F811
    b2: Path,
    tmp_path: Path,
) -> None:
    """The warning is for the signed clip: a clip that is not the recorded one fails, and
    neither verifier adds a note about pictures of a clip it already refused."""
    bare = _without_frames(store, b2, tmp_path / "bare.zip")
    clip = bundle_index(bare)["clips"][0]["clip"]
    bad = resign_bundle(bare, tmp_path / "bad.zip", store.station_key(), {clip: b"\0" * 4096})
    report = verify_bundle(bad, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED and "bundle-frames-missing" not in report.reasons()
    rc, out = run_kit(KIT, bad, tmp_path, *store.pins())
    assert rc == 1 and "bundle-frames-missing" not in out, out
