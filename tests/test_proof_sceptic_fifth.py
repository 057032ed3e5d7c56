"""A fifth sceptic round: bundles the two verifiers used to judge differently.

A bundle's verdict must not depend on which verifier reads it: `packcam verify` (and the
/verify page) and the stranger's verify.py one holds give the same verdict and reason codes.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    Store,
    bundle_index,
    forge_log,
    presentation_s,
    read_zip,
    resign_bundle,
    run_kit,
    store,
    tsa_ec,
)
from test_bundle_deleted_clip import deleted_when, partial  # noqa: F401 (fixtures)

from station.proof.bundle import export_order
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey
from station.proof.standalone_verify import file_and_folder, member_name_problem
from station.proof.tsa import request_token
from station.proof.verify import AUTHENTIC, TAMPERED, verify_bundle
from station.proof.videohash import video_digests
from station.store.ledger import ClipRecord

CODE = re.compile(r"^FAIL .*\[([a-z0-9-]+)\]$", re.M)


@pytest.fixture(scope="module")
def a1(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return export_order(store.cfg, "A1", tmp_path_factory.mktemp("sceptic5") / "A1.zip").path


def _both_fail(st: Store, bundle: Path, tmp: Path) -> tuple[set[str], set[str]]:
    """The failed reason codes of `packcam verify` and of a verify.py you hold (both must
    say NOT AUTHENTIC)."""
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp)
    assert report.verdict == TAMPERED, report.lines()
    rc, out = run_kit(KIT, bundle, tmp, *st.pins())
    assert rc == 1, out
    return report.codes(), set(CODE.findall(out))


def _renamed(
    src: Path, dst: Path, key: StationKey, rename: Callable[[str], str], frames: bool = False
) -> Path:
    """The bundle with its clips' member names (``frames``: its key frames') written otherwise
    (``rename``), bundle.json naming them so, the bundle manifest listing them so and signed
    again by the key holder: the same bytes under names an export never writes."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist() if n != "SHA256SUMS"}
    entries = bundle_index(src)["clips"]
    clips = (
        {f["file"] for e in entries for f in e["frames"]}
        if frames
        else {e["clip"] for e in entries}
    )

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return rename(v) if v in clips else v

    members["bundle.json"] = json.dumps(walk(bundle_index(src))).encode()
    bm = json.loads(members.pop("bundle/manifest.json"))
    del members["bundle/manifest.sig"]
    named = {rename(n) if n in clips else n: d for n, d in members.items()}
    bm["members"] = {n: hashlib.sha256(d).hexdigest() for n, d in named.items()}
    signed = canonical_json(bm)
    named.update({"bundle/manifest.json": signed, "bundle/manifest.sig": key.sign(signed)})
    with zipfile.ZipFile(dst, "w") as z:
        for n, d in named.items():
            z.writestr(n, d)
    return dst


@pytest.mark.parametrize(
    "rename",
    [
        pytest.param(lambda n: n.replace("clips/", "clips//"), id="empty-part"),
        pytest.param(lambda n: n.replace("clips/", "clips/./"), id="dot-part"),
        pytest.param(lambda n: "./" + n, id="dot-first"),
    ],
)
def test_a_member_name_an_export_never_writes_is_malformed_in_both_verifiers(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    rename: Callable[[str], str],
) -> None:
    """The clips stored as ``clips//X.mp4`` (or ``clips/./X.mp4``), bundle.json and the
    re-signed bundle manifest naming them so. `packcam verify` read the zip's names as they
    are and called it AUTHENTIC; verify.py unpacks to ``clips/X.mp4``, which nothing names,
    and called it NOT AUTHENTIC (bundle-member-unreferenced, -missing, -unsigned). An export
    writes every name in one form: both now refuse another as a malformed bundle."""
    bundle = _renamed(a1, tmp_path / "renamed.zip", store.station_key(), rename)
    packcam, kit = _both_fail(store, bundle, tmp_path)
    assert packcam == kit == {"bundle-malformed"}, (packcam, kit)


def test_bundle_json_naming_a_member_otherwise_is_malformed_in_both_verifiers(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """The members as exported, bundle.json (re-signed) naming a clip ``clips/./X.mp4``:
    verify.py found the file by that name on disk and failed the bundle for the member
    bundle.json then does not name (bundle-member-unreferenced); `packcam verify` found no
    such member (bundle-malformed). One reason now."""
    idx = bundle_index(a1)
    idx["clips"][0]["clip"] = idx["clips"][0]["clip"].replace("clips/", "clips/./")
    bundle = resign_bundle(
        a1, tmp_path / "ref.zip", store.station_key(), {"bundle.json": json.dumps(idx).encode()}
    )
    packcam, kit = _both_fail(store, bundle, tmp_path)
    assert packcam == kit == {"bundle-malformed"}, (packcam, kit)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("clips/station-01_A1_20261207T191105_289.mp4", True),
        ("bundle.json", True),
        ("clips/", True),  # a folder entry (a bundle unzipped and zipped again)
        ("打包台1/帧.jpg", True),
        ("clips//a.mp4", False),
        ("clips/./a.mp4", False),
        ("./a", False),
        ("/a", False),
        ("a/../b", False),
        ("clips\\a.mp4", False),
        ("C:a", False),
        ("", False),
        ("clips//", False),
    ],
)
def test_which_member_names_an_export_writes(name: str, ok: bool) -> None:
    assert (member_name_problem(name) is None) is ok, name


@pytest.mark.parametrize("field", ["deleted_utc", "started_utc"])
def test_a_deletion_record_with_a_time_without_offset_gets_one_reason_in_both(
    partial: tuple[Store, Path, ClipRecord],  # noqa: F811
    tmp_path: Path,
    field: str,
) -> None:
    """The key holder's deletion record with a time that is no instant (no UTC offset):
    `packcam verify` compared it with an aware time, raised, and called the whole bundle
    malformed; verify.py refused the record (deletion-record-invalid, order-incomplete).
    Both now judge it by the one shared rule."""
    st, path, _ = partial
    (gone,) = bundle_index(path)["deleted_clips"]
    record = json.loads(read_zip(path, gone["deletion_record"]))
    record[field] = record[field][:19]  # 2026-12-07T19:14:02, its Z cut off
    forged = canonical_json(record)
    key = StationKey.load(st.data / "proof/station-key.pem")
    bundle = resign_bundle(
        path,
        tmp_path / "naive.zip",
        key,
        {gone["deletion_record"]: forged, gone["deletion_signature"]: key.sign(forged)},
    )
    packcam, kit = _both_fail(st, bundle, tmp_path)
    assert packcam == kit == {"deletion-record-invalid", "order-incomplete"}, (packcam, kit)


def test_two_names_a_mac_unpacks_to_one_file_are_malformed_in_both_verifiers(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """Key frames stored as ``…_é.jpg`` (é one character) and a picture of another packing as
    ``…_é.jpg`` with é as e + U+0301, listed in the re-signed bundle manifest: two files on
    Linux, one on a Mac (APFS, HFS+), where the person unzipping is shown the other picture
    and verify.py, run there, checks only one. Both verifiers refuse it as two members
    unpacking to one file (they said bundle-member-unreferenced: which one, the platform
    decided)."""
    key = store.station_key()
    nfc = _renamed(
        a1, tmp_path / "nfc.zip", key, lambda n: n.replace(".jpg", "_\u00e9.jpg"), frames=True
    )
    frame = bundle_index(nfc)["clips"][0]["frames"][0]["file"]
    other = bundle_index(nfc)["clips"][-1]["frames"][-1]["file"]
    twin = frame.replace("\u00e9", "e\u0301")
    bad = resign_bundle(nfc, tmp_path / "twin.zip", key, {twin: read_zip(nfc, other)})
    packcam, kit = _both_fail(store, bad, tmp_path)
    assert packcam == kit == {"bundle-malformed"}, (packcam, kit)


def _folder_first(src: Path, dst: Path, folder: str) -> Path:
    """``src`` with a folder entry ``folder`` before its members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        zout.writestr(folder, b"")
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
    return dst


@pytest.mark.parametrize("how", ["folder-after", "folder-before", "file-as-folder"])
def test_a_member_that_is_a_file_and_a_folder_is_malformed_in_both_verifiers(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    how: str,
) -> None:
    """A key frame's name also given as a folder (a folder entry ``X/``, or a member
    ``X/y.jpg``), listed in the re-signed bundle manifest: no unzip tool writes both, so the
    person unzipping is not shown the frame (or the other member). `packcam verify` checked
    the zip's members and called it AUTHENTIC (for a member inside it:
    bundle-member-unreferenced); verify.py could not unpack it (bundle-malformed). Both now
    refuse it as members unpacking to one place."""
    key = store.station_key()
    frame = bundle_index(a1)["clips"][0]["frames"][0]["file"]
    if how == "folder-after":
        bad = resign_bundle(a1, tmp_path / "bad.zip", key, {frame + "/": b""})
    elif how == "folder-before":
        folder = _folder_first(a1, tmp_path / "folder.zip", frame + "/")
        bad = resign_bundle(folder, tmp_path / "bad.zip", key, {})
    else:
        bad = resign_bundle(a1, tmp_path / "bad.zip", key, {frame + "/x.jpg": b"x"})
    packcam, kit = _both_fail(store, bad, tmp_path)
    assert packcam == kit == {"bundle-malformed"}, (packcam, kit)


@pytest.mark.parametrize(
    ("keys", "clash"),
    [
        (["clips/", "clips/a.mp4", "bundle.json"], None),
        (["frames/a.jpg", "frames/a.jpg/"], "frames/a.jpg"),
        (["frames/a.jpg/", "frames/a.jpg"], "frames/a.jpg"),
        (["frames/a.jpg", "frames/a.jpg/x.jpg"], "frames/a.jpg"),
        (["clips", "clips/a.mp4"], "clips"),
    ],
)
def test_which_unpacked_names_are_a_file_and_a_folder(keys: list[str], clash: str | None) -> None:
    assert file_and_folder(keys) == clash


def _retimed(src: Path, dst: Path, factor: int) -> None:
    """The clip's packets copied unchanged (no picture re-encoded), their timestamps
    ``factor`` times further apart: a container that plays its frames over a longer time."""
    fragmented = {"movflags": "frag_keyframe+empty_moov"}
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options=fragmented) as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        copy.time_base = stream.time_base
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            tb = packet.time_base
            packet.pts, packet.dts = packet.pts * factor, packet.dts * factor
            packet.stream, packet.time_base = copy, tb
            out.mux(packet)


def _retimed_bundle(st: Store, tmp_path: Path, *, own_start: bool, step_back: bool = False) -> Path:
    """B2's bundle as the key holder re-times it within --max-delay of its end: the clip's
    1.2 s stretched 100 000-fold (one frame every 2.8 hours), a manifest saying it ran from the
    day before, timestamped now, a log of his own, no key frames, no C2PA claim. ``own_start``:
    he writes a start statement of his own for the new start and has it timestamped now too;
    else he keeps the recording's start statement and its token (the only ones a TSA saw
    when the clip began). ``step_back``: he keeps them and states a clock step back by the
    day he moved the start (``clock_step_s``), so the statement, by "the clock before the
    step", agrees with the manifest."""
    b2 = export_order(st.cfg, "B2", tmp_path / "B2.zip").path
    clip = bundle_index(b2)["clips"][0]["clip"]
    (tmp_path / "in.mp4").write_bytes(read_zip(b2, clip))
    _retimed(tmp_path / "in.mp4", tmp_path / "out.mp4", 100_000)
    played = presentation_s(tmp_path / "out.mp4")
    assert played is not None and played > 86_400
    data = (tmp_path / "out.mp4").read_bytes()
    statements: list[dict[str, Any]] = []

    def edit(body: dict[str, Any]) -> None:
        end = datetime.fromisoformat(body["ended_at"])
        started = (end - timedelta(seconds=played)).isoformat(timespec="milliseconds")
        body.update(
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            started_at=started,
            duration_s=round(played, 3),
            video=video_digests(tmp_path / "out.mp4"),
            c2pa=None,
        )
        assert body["start_statement"]["started_at"] != started  # the recording's own
        if step_back:
            recorded = datetime.fromisoformat(body["start_statement"]["started_at"])
            body["clock_step_s"] = round(
                (datetime.fromisoformat(started) - recorded).total_seconds(), 3
            )
        if own_start:
            body["start_statement"] = {**body["start_statement"], "started_at": started}
            statements.append(body["start_statement"])

    forged = forge_log(b2, tmp_path / "log.zip", st.station_key(), st.tsa.url, edit)
    idx = bundle_index(forged)
    changes: dict[str, bytes | None] = {clip: data}
    for e in idx["clips"]:
        changes.update((f["file"], None) for f in e["frames"])
        e["frames"] = []
        assert e["start_timestamps"], "the recording's start was timestamped"
        for name, own in zip(e["start_timestamps"], statements, strict=False):
            digest = hashlib.sha256(canonical_json(own)).digest()
            changes[name] = request_token(st.tsa.url, digest)[0]
    changes["bundle.json"] = json.dumps(idx).encode()
    return resign_bundle(forged, tmp_path / "retimed.zip", st.station_key(), changes)


def test_a_clip_retimed_and_resigned_within_the_bound_passes_offline(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The documented limit (docs/proof.md, Out of scope): a TSA saw the re-timed clip's
    start statement only now, a day after the start it states, as it would an honest
    station's that was offline when the clip began; so both verifiers still call it
    AUTHENTIC, but both say its start is not anchored (start-unanchored) and name the missing
    key frames (bundle-frames-missing), so a person looks at the clock burned into the
    pictures. Before the start was timestamped nothing in the verdict named it."""
    bundle = _retimed_bundle(store, tmp_path, own_start=True)
    report = verify_bundle(bundle, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC, report.lines()  # the documented limit
    assert {"bundle-frames-missing", "start-unanchored"} <= report.reasons(), report.lines()
    assert not any("start timestamped" in line for line in report.lines())
    rc, out = run_kit(KIT, bundle, tmp_path, *store.pins())
    assert rc == 0 and "[bundle-frames-missing]" in out, out
    assert re.search(r"^WARN .*timestamped only \d+ min after .*\[start-unanchored\]$", out, re.M)


def test_a_clip_retimed_with_its_recorded_start_token_fails(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The same re-timed clip, but the key holder keeps the start statement a TSA saw when
    the clip began (a statement of his own would be timestamped only now, above): it states
    the recording's start, the manifest one a day earlier. The end token holds the end and
    the start token the start, so a stretched duration fails in both verifiers."""
    bundle = _retimed_bundle(store, tmp_path, own_start=False)
    mine, kit = _both_fail(store, bundle, tmp_path)
    assert mine == kit == {"start-time-inconsistent"}, (mine, kit)


def test_a_clip_retimed_by_a_stated_clock_step_is_not_start_timestamped(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The re-timed clip keeping the recording's start statement and token, its manifest
    stating that the clock stepped back by the day the start moved (``clock_step_s`` about
    -86 400): the statement, by the clock before the step, agrees with the manifest. Both
    verifiers held the token to the statement's own time and said "start timestamped" of a
    manifest whose start (by the clock after the step, the clock the TSA is held to) is a
    day before any TSA saw its statement. A stated step moves nothing a token is held to:
    the start token is a day late for the start the manifest states (start-unanchored)."""
    bundle = _retimed_bundle(store, tmp_path, own_start=False, step_back=True)
    report = verify_bundle(bundle, anchors=store.anchors(), tmp_dir=tmp_path)
    assert "start-unanchored" in report.reasons(), report.lines()
    assert not any("start timestamped" in line for line in report.lines()), report.lines()
    rc, out = run_kit(KIT, bundle, tmp_path, *store.pins())
    assert "start timestamped" not in out, out
    assert re.search(r"^WARN .*timestamped only \d+ min after .*\[start-unanchored\]$", out, re.M)
    assert (report.verdict == AUTHENTIC) == (rc == 0), (report.lines(), out)


@pytest.mark.parametrize(
    ("started", "step"),
    [("9999-12-31T23:59:58.000+00:00", -1e9), ("0001-01-01T00:00:01.000+00:00", 1e9)],
)
def test_a_start_and_step_beyond_the_calendar_get_a_verdict_in_both(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    started: str,
    step: float,
) -> None:
    """A manifest the key holder signs with a start at the calendar's edge and a clock step
    of 31 years back to a start statement: both verifiers moved the start by the step to
    compare it with the statement, went past year 9999 (or before year 1) and raised
    OverflowError (`packcam verify` out of verify_bundle, verify.py a traceback): no verdict.
    They compare the two instants and the step as numbers of seconds."""

    def edit(body: dict[str, Any]) -> None:
        body.update(started_at=started, clock_step_s=step)

    forged = forge_log(a1, tmp_path / "edge.zip", store.station_key(), store.tsa.url, edit)
    mine, kit = _both_fail(store, forged, tmp_path)
    assert "start-time-inconsistent" in mine & kit, (mine, kit)
    assert mine == kit, (mine, kit)
