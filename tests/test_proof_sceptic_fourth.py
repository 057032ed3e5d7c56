"""A fourth sceptic round: a saved witness record, edited by the seller or a buyer.

Only each checkpoint's cosignature is the witness's word in ``GET /witness/<station>``; the
rest of the record (the rotations it lists, the sizes it says it never cosigned) travels
unsigned beside it. A verifier given the file must not let that rest accuse an honest bundle.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    Store,
    TsaServer,
    build_store,
    bundle_index,
    read_zip,
    run_kit,
    store,
    tsa_ec,
    witness_doc,
)
from test_bundle_deleted_clip import deleted_when, partial  # noqa: F401 (fixtures)
from verify_support import verify_page

from central.witness import cosign, sizes_statement
from station.proof.bundle import export_order
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey
from station.proof.log import checkpoint_body
from station.proof.verify import AUTHENTIC, EXIT_PARTIAL, TAMPERED, UNANCHORED, verify_bundle
from station.store.ledger import ClipRecord
from web import create_app


@pytest.fixture(scope="module")
def a1(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return export_order(store.cfg, "A1", tmp_path_factory.mktemp("sceptic4") / "A1.zip").path


@pytest.fixture(scope="module")
def witness(tmp_path_factory: pytest.TempPathFactory) -> StationKey:
    """The central site's witness key (the one a stranger pins)."""
    return StationKey.load_or_create(tmp_path_factory.mktemp("witness") / "witness-key.pem")[0]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _both(
    st: Store, bundle: Path, tmp: Path, doc: dict[str, Any], pin: str
) -> tuple[Any, int, str]:
    """`packcam verify` and a verify.py you hold, each given ``doc`` as the saved witness
    record and ``pin`` as the witness key."""
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp, witness=doc, witness_pin=pin)
    saved = tmp / "witness.json"
    saved.write_text(json.dumps(doc))
    rc, out = run_kit(KIT, bundle, tmp, *st.pins(), "--witness", str(saved), "--witness-key", pin)
    return report, rc, out


def _other_log_entry(witness: StationKey, station: str, size: int, tmp: Path) -> dict[str, Any]:
    """A checkpoint the witness genuinely cosigned at ``size``: of another log (``station``'s,
    another key), with another root; as a buyer copies it from a public record, without the
    checkpoint body."""
    other = StationKey.load_or_create(tmp / f"other-{station}.pem")[0]
    root = bytes(range(32))
    body = canonical_json(checkpoint_body(station, other, size, root, datetime.now(UTC)))
    cosigned, cosignature = cosign(witness, station, body, size, root.hex())
    return {
        "tree_size": size,
        "root_sha256": root.hex(),
        "cosigned_b64": _b64(cosigned),
        "cosignature_b64": _b64(cosignature),
    }


@pytest.mark.parametrize("station", ["station-02", "own-name"])
def test_a_cosigned_checkpoint_of_another_log_does_not_make_an_honest_bundle_a_fork(
    store: Store,  # noqa: F811
    a1: Path,
    witness: StationKey,
    tmp_path: Path,
    station: str,
) -> None:
    """A buyer adds to the genuine record of A1's station a checkpoint the same witness
    cosigned at the bundle's size for another station (or for this station's log under an
    earlier key, sizes repeat after a rotation), its body left out: neither verifier may call
    the honest bundle a fork on the strength of a cosignature that is not of its log."""
    doc = witness_doc(a1, witness)
    cp = json.loads(read_zip(a1, bundle_index(a1)["checkpoint"]["body"]))
    name = cp["station"] if station == "own-name" else station
    doc["checkpoints"].append(_other_log_entry(witness, name, int(cp["tree_size"]), tmp_path))
    report, rc, out = _both(store, a1, tmp_path, doc, witness.fingerprint)
    assert report.verdict == AUTHENTIC and "log-fork" not in report.codes(), report.codes()
    assert rc == 0 and "[log-fork]" not in out, out


def test_a_rotation_listed_in_the_record_but_signed_by_nobody_accuses_nothing(
    store: Store,  # noqa: F811
    a1: Path,
    witness: StationKey,
    tmp_path: Path,
) -> None:
    """A buyer adds to the record a rotation of the bundle's key "at 1 entry" (a record's
    rotations carry no cosignature): the honest bundle's log goes past 1, and a verifier that
    takes the line at its word says the seller signed after retiring the key (a stolen key).
    Only a final checkpoint the key itself signed can say the key was retired."""
    doc = witness_doc(a1, witness)
    fp = json.loads(read_zip(a1, bundle_index(a1)["checkpoint"]["body"]))["key"]
    doc["rotations"] = [{"old_key": fp, "new_key": "SHA256:" + "0" * 64, "tree_size": 1}]
    report, rc, out = _both(store, a1, tmp_path, doc, witness.fingerprint)
    assert report.verdict == AUTHENTIC, report.codes()
    assert "log-after-rotation" not in report.codes(), report.lines()
    assert rc == 0 and "[log-after-rotation]" not in out, out
    doc["rotations"][0].update(body_b64=_b64(b"{}"), signature_old_b64=_b64(b"\0" * 64))
    report, rc, out = _both(store, a1, tmp_path, doc, witness.fingerprint)
    assert "log-after-rotation" not in report.codes(), report.lines()
    assert rc == 0 and "[log-after-rotation]" not in out, out


def _forking_record(bundle: Path, witness: StationKey) -> dict[str, Any]:
    """The witness's record of the bundle's station at the bundle's checkpoint size, as
    ``GET /witness/<station>?tree_size=N`` serves it, for a log of which the witness cosigned
    another root at that size: the bundle is of a fork (A1's genuine bundle stands in for
    the seller's re-signed one; what a verifier makes of the record is the same)."""
    doc = witness_doc(bundle, witness)
    cp = json.loads(base64.b64decode(doc["checkpoints"][0]["body_b64"]))
    other = {**cp, "root_sha256": "ab" * 32}
    body = canonical_json(other)
    size = int(cp["tree_size"])
    cosigned, cosignature = cosign(witness, str(cp["station"]), body, size, other["root_sha256"])
    raw, sig = sizes_statement(witness, str(cp["station"]), [size], [body])
    doc["checkpoints"] = [
        {
            "tree_size": size,
            "root_sha256": other["root_sha256"],
            "body_b64": _b64(body),
            "cosigned_b64": _b64(cosigned),
            "cosignature_b64": _b64(cosignature),
        }
    ]
    doc.update(
        requested_sizes=[size],
        never_witnessed_sizes=[],
        sizes_statement_b64=_b64(raw),
        sizes_signature_b64=_b64(sig),
    )
    return doc


@pytest.mark.parametrize("edit", ["lists", "dropped", "bodiless", "empty-body"])
def test_a_fork_s_checkpoint_left_out_of_the_record_is_never_said_to_be_unwitnessed(
    store: Store,  # noqa: F811
    a1: Path,
    witness: StationKey,
    tmp_path: Path,
    edit: str,
) -> None:
    """The seller's log forked at the bundle's size: the witness's record of that size holds
    the cosigned checkpoint that makes it ``log-fork``. The seller edits the saved file: the
    checkpoint dropped and its size moved into ``never_witnessed_sizes`` (lists no one
    signs, the witness's signed statement of the sizes dropped too: "lists"), or the
    statement kept ("dropped"), or the checkpoint kept without its body ("bodiless", or an
    empty one: both verifiers alike). The
    verifiers may only say the record leaves that size out and where to fetch it, never that
    the witness says it never cosigned one: not the witness's word."""
    doc = _forking_record(a1, witness)
    report, rc, out = _both(store, a1, tmp_path, doc, witness.fingerprint)
    assert report.codes() == {"log-fork"} and rc == 1 and "[log-fork]" in out, report.codes()
    size = int(doc["checkpoints"][0]["tree_size"])
    if edit == "bodiless":
        del doc["checkpoints"][0]["body_b64"]
    elif edit == "empty-body":
        doc["checkpoints"][0]["body_b64"] = ""
    else:
        doc["checkpoints"] = []
        doc["never_witnessed_sizes"] = [size]
    if edit == "lists":
        del doc["sizes_statement_b64"], doc["sizes_signature_b64"]
    report, rc, out = _both(store, a1, tmp_path, doc, witness.fingerprint)
    (check,) = [c for c in report.checks if c.name == "witness"]
    line = next(ln for ln in out.splitlines() if " witness:" in ln)
    assert check.code == "checkpoint-unwitnessed" and "[checkpoint-unwitnessed]" in line, line
    for text in (check.reason, line):
        assert "never cosigned" not in text and f"tree_size={size}" in text, text


# ---- RFC 3161 tokens whose TSA states its time only to within hours ----------------------


@pytest.fixture(scope="module")
def tsa_loose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TsaServer]:
    """A TSA (one the verifier trusts) whose tokens say their time is right to ± 2 hours."""
    srv = TsaServer(tmp_path_factory.mktemp("tsa-loose"), "ec")
    cnf = srv.dir / "tsa.cnf"
    cnf.write_text(cnf.read_text().replace("accuracy = secs:1", "accuracy = secs:7200"))
    yield srv
    srv.stop()


def test_a_token_accurate_only_to_hours_does_not_stretch_the_time_bound(
    tsa_loose: TsaServer, tmp_path: Path
) -> None:
    """The key holder re-signs a clip an hour after its recorded end and has it timestamped
    by a TSA the verifier trusts, whose tokens state an accuracy of ± 2 h. The token says
    only that the TSA saw the manifest by genTime + 2 h: the clip is not shown to have been
    signed within 15 minutes of its recorded end, whichever way the accuracy is read; the
    old rule widened the bound by the accuracy, in the signer's favour. The token is late
    (`time-late`, once `time-out-of-bounds`): it anchors nothing, the clip is not AUTHENTIC."""
    st = build_store(tmp_path / "st", tsa_loose, ["A1"], c2pa=False, ago=timedelta(hours=1))
    bundle = export_order(st.cfg, "A1", tmp_path / "A1.zip").path
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == UNANCHORED and "time-late" in report.reasons(), report.lines()
    assert report.signer_anchored and not report.time_anchored, report.lines()
    said = " ".join(c.reason for c in report.checks if c.code == "time-late")
    assert "accuracy" in said, said
    rc, out = run_kit(KIT, bundle, tmp_path, *st.pins())
    assert rc == 4 and "[time-late]" in out and "accuracy of only ± 7200 s" in out, out


@pytest.mark.parametrize("ahead", [timedelta(seconds=30), timedelta(minutes=14)])
def test_a_loose_token_a_moment_before_the_end_does_not_call_the_clip_forged(
    tsa_loose: TsaServer, tmp_path: Path, ahead: timedelta
) -> None:
    """An honest station whose clock runs a little ahead, timestamped at once by a trusted TSA
    stating ± 2 h: genTime falls a little before the recorded end and start. The TSA vouches
    only that it saw each statement between genTime − 2 h and genTime + 2 h, so nothing says
    it saw them before the times they state: no contradiction, no forgery. The old rule read
    the loose accuracy against the signer on the early side too and called the clip TAMPERED
    (`time-out-of-bounds`, `start-time-inconsistent`). It anchors nothing either (the doubt is
    hours): a warning, the clip not AUTHENTIC, in both verifiers."""
    st = build_store(tmp_path / "st", tsa_loose, ["A1"], c2pa=False, ago=-ahead)
    bundle = export_order(st.cfg, "A1", tmp_path / "A1.zip").path
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == UNANCHORED and not report.failures, report.lines()
    assert {"time-late", "start-unanchored"} <= set(report.reasons()), report.lines()
    assert not report.time_anchored, report.lines()
    said = " ".join(c.reason for c in report.checks if c.code == "time-late")
    assert "before the recorded end" in said and "accuracy" in said, said
    rc, out = run_kit(KIT, bundle, tmp_path, *st.pins())
    assert rc == 4 and "[time-late]" in out, out
    assert "[time-out-of-bounds]" not in out and "[start-time-inconsistent]" not in out, out
    assert "before the recorded end" in out, out
    # the /verify page says why the time is not anchored: not "seen only after the delay"
    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    for lang, said in (("en", "too loosely"), ("zh_CN", "精度过粗")):
        body = html.unescape(verify_page(app, bundle.read_bytes(), lang, "A1.zip"))
        assert said in body, body[-3000:]
        assert "only after the allowed delay" not in body and "超过允许的延迟才" not in body


def test_a_loose_token_hours_before_the_end_still_fails(
    tsa_loose: TsaServer, tmp_path: Path
) -> None:
    """A manifest stating an end 3 h after a TSA stating ± 2 h saw it: even the latest time
    the TSA allows is before the end (beyond the 15 min bound), a contradiction in both
    verifiers, as a precise token's would be."""
    st = build_store(tmp_path / "st", tsa_loose, ["A1"], c2pa=False, ago=-timedelta(hours=3))
    bundle = export_order(st.cfg, "A1", tmp_path / "A1.zip").path
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED, report.lines()
    assert {"time-out-of-bounds", "start-time-inconsistent"} <= set(report.codes())
    rc, out = run_kit(KIT, bundle, tmp_path, *st.pins())
    assert rc == 1 and "[time-out-of-bounds]" in out and "[start-time-inconsistent]" in out, out


def _stating(tmp: Path, accuracy: str) -> TsaServer:
    """A TSA (one the verifier trusts) whose tokens state ``accuracy`` (openssl's syntax)."""
    srv = TsaServer(tmp, "ec")
    cnf = srv.dir / "tsa.cnf"
    cnf.write_text(cnf.read_text().replace("accuracy = secs:1", f"accuracy = {accuracy}"))
    return srv


@pytest.mark.parametrize(
    ("stated", "seconds"),
    [("secs:1, millisecs:500, microsecs:250", 1.50025), ("millisecs:900", 0.9),
     ("secs:-1, millisecs:500", -0.5)],
    ids=["1 s 500 ms 250 us", "900 ms", "a negative second"],
)  # fmt: skip
def test_both_verifiers_read_a_tokens_accuracy_to_the_microsecond(
    tmp_path: Path, stated: str, seconds: float
) -> None:
    """A token stating ± 1 s 500 ms 250 µs is read as 1.50025 s by both verifiers (verify.py
    read only the whole seconds, 1 s: at the bound the two verdicts differed); so is one in
    milliseconds only, and one whose seconds are negative (openssl prints "0x-01")."""
    import hashlib

    from station.proof.standalone_verify import token_time
    from station.proof.tsa import request_token, verify_token

    srv = _stating(tmp_path / "tsa", stated)
    digest = hashlib.sha256(b"a signed manifest").digest()
    try:
        token, _ = request_token(srv.url, digest)
    finally:
        srv.stop()
    tst = tmp_path / "token.tst"
    tst.write_bytes(token)
    when, kit_accuracy = token_time(tst, tmp_path)
    info = verify_token(token, digest)
    assert when == info.gen_time
    assert kit_accuracy == info.accuracy_s == pytest.approx(seconds, abs=1e-9)


def test_a_token_accuracy_stated_in_milliseconds_counts_in_both_verifiers(tmp_path: Path) -> None:
    """A trusted TSA states its tokens' accuracy as 1 s and 120,000 ms (2 min 1 s); the
    clip's manifest was timestamped 14 minutes after its recorded end: within 15 minutes,
    but not once the 2 minutes of doubt past the first second count against the signer.
    packcam verify said so; verify.py read 1 s and called the clip authentic. The token is
    late (`time-late`, once `time-out-of-bounds`): not AUTHENTIC in either verifier."""
    srv = _stating(tmp_path / "tsa", "secs:1, millisecs:120000")
    try:
        st = build_store(tmp_path / "st", srv, ["A1"], c2pa=False, ago=timedelta(minutes=14))
        bundle = export_order(st.cfg, "A1", tmp_path / "A1.zip").path
    finally:
        srv.stop()
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == UNANCHORED and "time-late" in report.reasons(), report.lines()
    assert report.signer_anchored and not report.time_anchored, report.lines()
    rc, out = run_kit(KIT, bundle, tmp_path, *st.pins())
    assert rc == 4 and "[time-late]" in out and "accuracy of only ± 121 s" in out, out


def test_time_beyond_counts_accuracy_past_a_second_against_the_signer() -> None:
    """Up to 1 s (what real TSAs state) the accuracy is slack, as genTime's precision is;
    beyond it the doubt it adds is the signer's, either way."""
    from station.proof.standalone_verify import time_beyond

    bound = 15 * 60
    assert not time_beyond(bound + 2.0, 1.0, bound)  # as before: ± accuracy + 1 s precision
    assert time_beyond(bound + 3.0, 1.0, bound)
    assert not time_beyond(bound - 60, 60.0, bound) and time_beyond(bound - 55, 60.0, bound)
    assert time_beyond(60.0, 7200.0, bound) and time_beyond(-60.0, 7200.0, bound)
    assert time_beyond(3600.0, 7200.0, bound)  # the old rule: within 15 min + 2 h


# ---- a deletion record as cover ----------------------------------------------------------

# What each reader must be told of a deletion record's date: the key holder writes it, and
# no TSA sees it (retention signs the record, nothing timestamps it).
UNDATED = {"en": "no time-stamp authority saw it", "zh": "没有可信时间戳机构见证"}


def test_a_deletion_record_s_date_is_said_to_be_the_seller_s_own(
    partial: tuple[Store, Path, ClipRecord],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The key holder deletes the clip that shows the wrong item after the buyer complains
    and signs a retention record dated weeks earlier (here 2027-03-01: a date in the future
    is taken as readily). Both verifiers, the bundle's summary.html and the /verify page
    told the reader the record "explains the gap and when it arose" and to note whether the
    clip was deleted after the dispute began: a date only the seller vouches for, read as
    the deletion's time. Each now says the date is the seller's too."""
    st, path, _ = partial
    report = verify_bundle(path, anchors=st.anchors(), tmp_dir=tmp_path)
    (line,) = [c.reason for c in report.checks if c.code == "clip-deleted-by-retention"]
    assert UNDATED["en"] in line, line
    rc, out = run_kit(KIT, path, tmp_path, *st.pins())
    assert rc == EXIT_PARTIAL and UNDATED["en"] in out, out
    summary = read_zip(path, "summary.html").decode()
    assert UNDATED["en"] in summary and UNDATED["zh"] in summary
    assert "when it arose" not in summary and "whether it was deleted after" not in summary
    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    for lang in ("en", "zh-CN"):
        client = app.test_client()
        head = {"Accept-Language": lang}
        assert client.get("/verify", headers=head).status_code == 200
        with client.session_transaction() as sess:
            token = sess.get("csrf")
        resp = client.post(
            "/verify",
            data={"csrf_token": token, "file": (io.BytesIO(path.read_bytes()), "A1.zip")},
            headers=head,
        )
        body = html.unescape(resp.get_data(as_text=True))
        assert resp.status_code == 200 and UNDATED[lang[:2]] in body, body[-3000:]


def test_a_statement_older_than_the_bundle_s_checkpoint_says_nothing_of_it(
    store: Store,  # noqa: F811
    a1: Path,
    witness: StationKey,
    tmp_path: Path,
) -> None:
    """Planning a fork, the seller asks the witness, before his station gets there, for the
    sizes it will reach (?tree_size=N): the witness truthfully signs that it never cosigned
    N. Once the honest log of N is cosigned, he forks at N and hands over that old statement
    with the record. It says nothing of a checkpoint signed after it: not the witness's word
    that this one was never cosigned. A statement as new as the checkpoint is, and the reader
    is told as of when."""
    doc = _forking_record(a1, witness)
    size = int(doc["checkpoints"][0]["tree_size"])
    station = json.loads(read_zip(a1, bundle_index(a1)["checkpoint"]["body"]))["station"]
    stale = json.loads(base64.b64decode(doc["sizes_statement_b64"]))
    stale.update(checkpoints=[], time="2020-01-01T00:00:00+00:00")
    raw = canonical_json(stale)
    doc.update(
        checkpoints=[],
        never_witnessed_sizes=[size],
        sizes_statement_b64=_b64(raw),
        sizes_signature_b64=_b64(witness.sign(raw)),
    )
    report, _, out = _both(store, a1, tmp_path, doc, witness.fingerprint)
    (check,) = [c for c in report.checks if c.name == "witness"]
    line = next(ln for ln in out.splitlines() if " witness:" in ln)
    for text in (check.reason, line):
        assert "never cosigned" not in text and f"tree_size={size}" in text, text
    fresh, sig = sizes_statement(witness, station, [size], [])
    doc.update(sizes_statement_b64=_b64(fresh), sizes_signature_b64=_b64(sig))
    when = json.loads(fresh)["time"]
    report, _, out = _both(store, a1, tmp_path, doc, witness.fingerprint)
    (check,) = [c for c in report.checks if c.name == "witness"]
    line = next(ln for ln in out.splitlines() if " witness:" in ln)
    for text in (check.reason, line):
        assert f"never cosigned a checkpoint of this log at {size}" in text and when in text, text
