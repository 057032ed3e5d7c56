"""What bundle.json names must be in the bundle, in the form an export writes: both verifiers
refuse a name of an absent member, or a field of names of another shape, for one reason."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
from test_bundle_deleted_clip import deleted_when, partial  # noqa: F401 (fixtures)
from test_proof_rotation import bundles, rotated  # noqa: F401 (fixtures)

from station.proof.bundle import export_order
from station.proof.keys import StationKey
from station.proof.standalone_verify import OK, WARN, judge_start, unheld_reference
from station.proof.verify import TAMPERED, verify_bundle

CODE = re.compile(r"^FAIL .*\[([a-z0-9-]+)\]$", re.M)
Index = dict[str, Any]


@pytest.fixture(scope="module")
def a1(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return export_order(store.cfg, "A1", tmp_path_factory.mktemp("named") / "A1.zip").path


def _clip(i: Index) -> Index:
    return i["clips"][0]


# Each: the member bundle.json names that the key holder drops (the bundle manifest re-signed
# without it), or an edit of bundle.json (re-signed) giving a field of names another shape.
DROPPED: dict[str, Callable[[Index], str]] = {
    "clip-token": lambda i: _clip(i)["timestamps"][0],
    "start-token": lambda i: _clip(i)["start_timestamps"][0],
    "checkpoint-token": lambda i: i["checkpoint"]["timestamps"][0],
    "checkpoint-signature": lambda i: i["checkpoint"]["signature"],
    "manifest": lambda i: _clip(i)["manifest"],
    "signature": lambda i: _clip(i)["signature"],
    "inclusion": lambda i: _clip(i)["inclusion"],
    "frame": lambda i: _clip(i)["frames"][0]["file"],
    "first-checkpoint-body": lambda i: _clip(i)["first_checkpoint"]["body"],
    "first-checkpoint-consistency": lambda i: _clip(i)["first_checkpoint"]["consistency"],
    "first-checkpoint-token": lambda i: _clip(i)["first_checkpoint"]["timestamps"][0],
    "station-key": lambda i: i["keys"]["station_public_key"],
    "key-certificate": lambda i: i["keys"]["station_key_certificate"],
    "company-ca": lambda i: i["keys"]["company_ca"],
    "tsa-roots": lambda i: i["keys"]["tsa_roots"],
}


def _as_dict(i: Index) -> None:
    _clip(i)["timestamps"] = {t: t for t in _clip(i)["timestamps"]}


def _start_as_dict(i: Index) -> None:
    _clip(i)["start_timestamps"] = {"token": _clip(i)["start_timestamps"][0]}


def _as_string(i: Index) -> None:
    _clip(i)["timestamps"] = _clip(i)["timestamps"][0]


def _start_as_string(i: Index) -> None:
    _clip(i)["start_timestamps"] = _clip(i)["start_timestamps"][0]


def _number_in_list(i: Index) -> None:
    _clip(i)["start_timestamps"].append(7)


def _checkpoint_tokens_dict(i: Index) -> None:
    i["checkpoint"]["timestamps"] = {"t": i["checkpoint"]["timestamps"][0]}


def _frame_not_a_dict(i: Index) -> None:
    _clip(i)["frames"][0] = _clip(i)["frames"][0]["file"]


def _manifest_as_list(i: Index) -> None:
    _clip(i)["manifest"] = [_clip(i)["manifest"]]


EDITED: dict[str, Callable[[Index], None]] = {
    "clip-tokens-dict": _as_dict,
    "start-tokens-dict": _start_as_dict,
    "clip-tokens-string": _as_string,
    "start-tokens-string": _start_as_string,
    "start-tokens-number": _number_in_list,
    "checkpoint-tokens-dict": _checkpoint_tokens_dict,
    "frame-not-a-dict": _frame_not_a_dict,
    "manifest-a-list": _manifest_as_list,
}


def _both(st: Store, bundle: Path, tmp: Path) -> tuple[set[str], set[str]]:
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp)
    assert report.verdict == TAMPERED, report.lines()
    rc, out = run_kit(KIT, bundle, tmp, *st.pins())
    assert rc == 1, out
    return {c.code for c in report.failures}, set(CODE.findall(out))


@pytest.mark.parametrize("what", sorted(DROPPED))
def test_a_named_member_dropped_is_malformed_in_both_verifiers(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    what: str,
) -> None:
    """The key holder drops a member bundle.json names and signs the bundle manifest again:
    `packcam verify` said bundle-malformed (or, for a token, the kit said tsa-invalid, for a
    frame nothing): both now say the index does not hold together, and nothing else."""
    gone = DROPPED[what](bundle_index(a1))
    bundle = resign_bundle(a1, tmp_path / "dropped.zip", store.station_key(), {gone: None})
    packcam, kit = _both(store, bundle, tmp_path)
    assert packcam == kit == {"bundle-malformed"}, (packcam, kit)


@pytest.mark.parametrize("what", sorted(EDITED))
def test_a_field_of_names_of_another_shape_is_malformed_in_both_verifiers(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    what: str,
) -> None:
    idx = bundle_index(a1)
    EDITED[what](idx)
    bundle = resign_bundle(
        a1, tmp_path / "edited.zip", store.station_key(), {"bundle.json": json.dumps(idx).encode()}
    )
    packcam, kit = _both(store, bundle, tmp_path)
    assert packcam == kit == {"bundle-malformed"}, (packcam, kit)


ROTATION = ["checkpoint", "signature_old", "signature_new", "successor_public_key",
            "successor_certificate", "timestamps"]  # fmt: skip
DELETED = ["manifest", "signature", "inclusion", "deletion_record", "deletion_signature"]


@pytest.mark.parametrize("field", ROTATION)
def test_a_rotation_member_dropped_is_malformed_in_both_verifiers(
    rotated: Store,  # noqa: F811
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    field: str,
) -> None:
    """A member of the key chain's link (the retired log's final checkpoint, its signatures,
    tokens, the successor's key or certificate) dropped, the bundle manifest re-signed."""
    link = bundle_index(bundles["A1"])["rotations"][0]
    gone = link[field][0] if field == "timestamps" else link[field]
    bundle = resign_bundle(bundles["A1"], tmp_path / "r.zip", rotated.station_key(), {gone: None})
    packcam, kit = _both(rotated, bundle, tmp_path)
    assert packcam == kit == {"bundle-malformed"}, (packcam, kit)


@pytest.mark.parametrize("field", DELETED)
def test_a_deleted_clips_member_dropped_is_malformed_in_both_verifiers(
    partial: tuple[Store, Path, Any],  # noqa: F811
    tmp_path: Path,
    field: str,
) -> None:
    """A member that accounts for a clip deleted by retention dropped, re-signed."""
    st, path, _ = partial
    (gone,) = bundle_index(path)["deleted_clips"]
    key = StationKey.load(st.data / "proof/station-key.pem")
    bundle = resign_bundle(path, tmp_path / "d.zip", key, {gone[field]: None})
    packcam, kit = _both(st, bundle, tmp_path)
    assert packcam == kit == {"bundle-malformed"}, (packcam, kit)


def _index() -> Index:
    return {
        "keys": {"station_public_key": "keys/s.pem", "company_ca": None},
        "checkpoint": {"body": "cp.json", "signature": "cp.sig", "timestamps": ["cp.0.tst"]},
        "rotations": [
            {
                "checkpoint": "r.json",
                "signature_old": "r.o",
                "signature_new": "r.n",
                "timestamps": [],
                "successor_public_key": "r.pem",
                "successor_certificate": None,
            },
        ],
        "clips": [
            {
                "clip": "c.mp4",
                "manifest": "m.json",
                "signature": "m.sig",
                "inclusion": "i.json",
                "timestamps": ["m.0.tst"],
                "frames": [{"file": "f.jpg", "t_clip_s": 0}],
            },
            {
                "clip": "d.mp4",
                "manifest": None,
                "signature": None,
                "inclusion": None,
                "timestamps": [],
            },
        ],
        "deleted_clips": [
            {
                "clip": "gone.mp4",
                "manifest": "g.json",
                "signature": "g.sig",
                "inclusion": "g.inc",
                "deletion_record": "g.del",
                "deletion_signature": "g.dsig",
            },
        ],
    }


def _names(index: Index) -> set[str]:
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, w in v.items():
                if k != "clip" or v is not index["deleted_clips"][0]:
                    walk(w)
        elif isinstance(v, list):
            for w in v:
                walk(w)
        elif isinstance(v, str):
            found.add(v)

    walk(index)
    return found


def test_unheld_reference_accepts_an_index_whose_names_are_all_held() -> None:
    index = _index()
    assert unheld_reference(index, _names(index)) is None


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda i: i["rotations"][0].update(timestamps={"a": "b"}), "rotations[0].timestamps"),
        (lambda i: i["rotations"][0].update(signature_old=5), "rotations[0].signature_old"),
        (lambda i: i["deleted_clips"][0].update(deletion_record=3), "deletion_record"),
        (lambda i: i["clips"][1].update(start_timestamps="x.tst"), "clips[1].start_timestamps"),
        (lambda i: i["clips"][0].update(frames={"file": "f.jpg"}), "clips[0].frames"),
        (lambda i: i["keys"].update(tsa_roots=["x"]), "keys.tsa_roots"),
        (lambda i: i["checkpoint"].update(timestamps=None), "checkpoint.timestamps"),
        (lambda i: i.update(clips={"clip": "c.mp4"}), "clips"),
    ],
)
def test_unheld_reference_names_the_field_of_another_shape(
    edit: Callable[[Index], None], said: str
) -> None:
    index = _index()
    names = _names(index)
    edit(index)
    assert said in (unheld_reference(index, names) or ""), unheld_reference(index, names)


@pytest.mark.parametrize(
    "gone", ["r.n", "g.del", "f.jpg", "m.0.tst", "keys/s.pem", "cp.sig", "r.pem", "c.mp4"]
)
def test_unheld_reference_names_the_member_missing(gone: str) -> None:
    index = _index()
    problem = unheld_reference(index, _names(index) - {gone})
    assert problem is not None and repr(gone) in problem, problem


def test_a_deleted_clip_is_named_by_bundle_json_but_not_held() -> None:
    """A retention deletion accounts for a clip the bundle cannot hold: its name is no member."""
    index = _index()
    assert unheld_reference(index, _names(index) - {"gone.mp4"}) is None


T0 = datetime(2026, 12, 7, 19, 0, tzinfo=UTC)


def test_judge_start_says_an_unpinned_token_is_from_a_tsa_you_did_not_pin() -> None:
    status, code, text = judge_start(T0, [(T0 + timedelta(seconds=2), 1.0, False)], 900)
    assert (status, code) == (WARN, "start-unanchored")
    assert "not from a TSA you pinned" in text, text


def test_judge_start_says_a_pinned_token_was_late_when_only_an_unpinned_one_was_in_time() -> None:
    """A pinned TSA's token there but late, an unpinned TSA's in time: "not from a TSA you
    pinned" was said, and the pinned token's lateness went unsaid."""
    seen = [(T0 + timedelta(hours=1), 1.0, True), (T0 + timedelta(seconds=2), 1.0, False)]
    status, code, text = judge_start(T0, seen, 900)
    assert (status, code) == (WARN, "start-unanchored")
    assert "not from a TSA you pinned" not in text, text
    assert "60 min after" in text and "you did not pin" in text, text


def test_judge_start_in_time_from_a_pinned_tsa_is_ok() -> None:
    seen = [(T0 + timedelta(hours=1), 1.0, False), (T0 + timedelta(seconds=2), 1.0, True)]
    assert judge_start(T0, seen, 900)[:2] == (OK, "")
