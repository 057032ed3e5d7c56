"""Every tamper from issue 4 is detected, each with its own reason code."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import pytest
from cryptography import x509
from proof_support import (  # noqa: F401 (fixtures)
    Store,
    bundle_index,
    read_zip,
    rewrite_zip,
    store,
    tsa_ec,
)

from station.proof import manifest as manifest_mod
from station.proof.bundle import export_order
from station.proof.ca import CompanyCa
from station.proof.keys import StationKey
from station.proof.log import ProofLog
from station.proof.verify import Report, audit, verify_bundle, verify_clip
from station.store.ledger import INDEX_NAME


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def reencode(path: Path) -> None:
    """Decode every frame and encode again (what an editing tool or a re-upload does)."""
    tmp = path.with_name("re.mp4")
    with av.open(str(path)) as src, av.open(str(tmp), "w") as dst:
        vin = src.streams.video[0]
        out = dst.add_stream("libx264", rate=10)
        out.width, out.height, out.pix_fmt = vin.width, vin.height, "yuv420p"
        for frame in src.decode(vin):
            frame.pts = None
            for p in out.encode(frame):
                dst.mux(p)
        for p in out.encode():
            dst.mux(p)
    tmp.replace(path)


def _clips(data: Path) -> list[Path]:
    return sorted(data.glob("clips/**/*.mp4"))


def _assert_detected(report: Report, code: str) -> None:
    assert not report.ok, report.lines()
    assert code in report.codes(), (code, report.lines())


# ---- the store: `packcam audit` --------------------------------------------------------------


@pytest.mark.parametrize(
    ("tamper", "code"),
    [(flip_byte, "clip-altered"), (truncate, "clip-truncated"), (reencode, "clip-reencoded")],
)
def test_audit_names_how_a_clip_changed(
    store: Store,  # noqa: F811
    tmp_path: Path,
    tamper: Callable[[Path], None],
    code: str,
) -> None:
    st = store.copy(tmp_path / "data")
    tamper(_clips(st.data)[1])
    _assert_detected(audit(st.cfg), code)


@pytest.mark.parametrize(
    ("tamper", "code"), [(flip_byte, "clip-altered"), (truncate, "clip-truncated")]
)
def test_bare_clip_verify_explains_the_change(
    store: Store,  # noqa: F811
    tmp_path: Path,
    tamper: Callable[[Path], None],
    code: str,
) -> None:
    st = store.copy(tmp_path / "data")
    clip = tmp_path / "downloaded.mp4"
    shutil.copy(_clips(st.data)[0], clip)
    tamper(clip)
    report = verify_clip(clip, st.cfg)
    _assert_detected(report, code)
    assert report.facts["claimed_log_index"] == 0  # found through its C2PA assertion


def test_audit_clip_deleted(store: Store, tmp_path: Path) -> None:  # noqa: F811
    st = store.copy(tmp_path / "data")
    _clips(st.data)[0].unlink()
    _assert_detected(audit(st.cfg), "clip-missing")


def test_audit_extra_clip(store: Store, tmp_path: Path) -> None:  # noqa: F811
    st = store.copy(tmp_path / "data")
    shutil.copy(_clips(st.data)[0], _clips(st.data)[0].with_name("planted.mp4"))
    _assert_detected(audit(st.cfg), "clip-extra")


def test_audit_manifests_swapped(store: Store, tmp_path: Path) -> None:  # noqa: F811
    st = store.copy(tmp_path / "data")
    a, b = (c.with_suffix(".json") for c in _clips(st.data)[:2])
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    _assert_detected(audit(st.cfg), "manifest-swapped")


@contextmanager
def _db(st: Store) -> Iterator[sqlite3.Connection]:
    """The station's index with foreign keys off (a tamperer's edits), closed afterwards: a
    ``with sqlite3.connect(...)`` block only commits (Python 3.13 warns of the unclosed one)."""
    conn = sqlite3.connect(st.data / INDEX_NAME, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=OFF")
        yield conn
    finally:
        conn.close()


def test_audit_index_row_deleted(store: Store, tmp_path: Path) -> None:  # noqa: F811
    st = store.copy(tmp_path / "data")
    with _db(st) as conn:
        conn.execute("DELETE FROM clips WHERE id = 2")
    _assert_detected(audit(st.cfg), "index-row-deleted")


@pytest.mark.parametrize(
    ("column", "value"), [("order_id", "OTHER"), ("sha256", "0" * 64), ("started_at", "2020")]
)
def test_audit_index_row_edited(store: Store, tmp_path: Path, column: str, value: str) -> None:  # noqa: F811
    st = store.copy(tmp_path / "data")
    with _db(st) as conn:
        conn.execute(f"UPDATE clips SET {column} = ? WHERE id = 1", (value,))
    report = audit(st.cfg)
    _assert_detected(report, "index-row-edited")
    assert any(column in c.reason for c in report.failures)


def _resign_leaf(st: Store, seq: int, change: dict, key: StationKey) -> None:
    with _db(st) as conn:
        row = conn.execute("SELECT manifest FROM proof_log WHERE seq = ?", (seq,)).fetchone()
        body = {**json.loads(row[0]), **change}
        m = manifest_mod.sign(body, key)
        conn.execute(
            "UPDATE proof_log SET manifest = ?, signature = ?, manifest_sha256 = ? WHERE seq = ?",
            (m.canonical, m.signature, m.sha256, seq),
        )


def test_audit_log_leaf_replaced_even_with_the_station_key(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """The strongest insider: re-signs a changed manifest with the real station key."""
    st = store.copy(tmp_path / "data")
    key = StationKey.load(st.data / "proof/station-key.pem")
    _resign_leaf(st, 1, {"order_id": "FORGED"}, key)
    report = audit(st.cfg)
    _assert_detected(report, "log-history-rewritten")  # the signed checkpoints no longer hold
    assert "log-leaf-replaced" in report.codes()  # and leaf 2 no longer chains to it


def test_audit_log_leaf_signed_by_another_key(store: Store, tmp_path: Path) -> None:  # noqa: F811
    st = store.copy(tmp_path / "data")
    _resign_leaf(st, 2, {"finish_reason": "timeout"}, StationKey.generate())
    _assert_detected(audit(st.cfg), "log-bad-signature")


def test_audit_log_leaves_reordered(store: Store, tmp_path: Path) -> None:  # noqa: F811
    st = store.copy(tmp_path / "data")
    with _db(st) as conn:
        conn.execute("UPDATE proof_log SET seq = -1 WHERE seq = 0")
        conn.execute("UPDATE proof_log SET seq = 0 WHERE seq = 1")
        conn.execute("UPDATE proof_log SET seq = 1 WHERE seq = -1")
    _assert_detected(audit(st.cfg), "log-reordered")


def test_audit_timestamp_token_swapped(store: Store, tmp_path: Path) -> None:  # noqa: F811
    st = store.copy(tmp_path / "data")
    plog = ProofLog.in_data_dir(st.data)
    e0, e1 = plog.entries()[:2]
    t1 = plog.timestamps_for(e1.manifest_sha256)[0].token
    plog.close()
    with _db(st) as conn:
        conn.execute(
            "UPDATE proof_timestamps SET token = ? WHERE subject_sha256 = ?",
            (t1, e0.manifest_sha256),
        )
    report = audit(st.cfg)
    _assert_detected(report, "tsa-other-data")
    assert any("other data" in c.reason for c in report.failures)


# ---- the bundle: `packcam verify BUNDLE` ---------------------------------------------------


@pytest.fixture(scope="module")
def bundle(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """Order A1: two clips."""
    path = tmp_path_factory.mktemp("bundle") / "A1.zip"
    export_order(store.cfg, "A1", path)
    assert verify_bundle(path).ok
    return path


@pytest.mark.parametrize(
    ("tamper", "code"),
    [(flip_byte, "clip-altered"), (truncate, "clip-truncated"), (reencode, "clip-reencoded")],
)
def test_bundle_clip_changed(
    bundle: Path, tmp_path: Path, tamper: Callable[[Path], None], code: str
) -> None:
    name = bundle_index(bundle)["clips"][0]["clip"]
    clip = tmp_path / "x.mp4"
    clip.write_bytes(read_zip(bundle, name))
    tamper(clip)
    bad = rewrite_zip(bundle, tmp_path / "bad.zip", {name: clip.read_bytes()})
    _assert_detected(verify_bundle(bad), code)


def test_bundle_manifests_swapped(bundle: Path, tmp_path: Path) -> None:
    a, b = bundle_index(bundle)["clips"]
    changes = {}
    for x, y in ((a, b), (b, a)):
        for part in ("manifest", "signature", "inclusion"):
            changes[x[part]] = read_zip(bundle, y[part])
    bad = rewrite_zip(bundle, tmp_path / "bad.zip", changes)
    _assert_detected(verify_bundle(bad), "manifest-swapped")


def test_bundle_manifest_signed_by_another_key(bundle: Path, tmp_path: Path) -> None:
    item = bundle_index(bundle)["clips"][0]
    body = json.loads(read_zip(bundle, item["manifest"]))
    body["order_id"] = "SOMEONE-ELSES"
    forged = manifest_mod.sign(body, StationKey.generate())
    bad = rewrite_zip(
        bundle,
        tmp_path / "bad.zip",
        {item["manifest"]: forged.canonical, item["signature"]: forged.signature},
    )
    _assert_detected(verify_bundle(bad), "manifest-bad-signature")


def test_bundle_timestamp_token_for_other_data(bundle: Path, tmp_path: Path) -> None:
    a, b = bundle_index(bundle)["clips"]
    bad = rewrite_zip(
        bundle, tmp_path / "bad.zip", {a["timestamps"][0]: read_zip(bundle, b["timestamps"][0])}
    )
    _assert_detected(verify_bundle(bad), "tsa-other-data")


def test_bundle_inclusion_proof_forged(bundle: Path, tmp_path: Path) -> None:
    item = bundle_index(bundle)["clips"][0]
    inc = json.loads(read_zip(bundle, item["inclusion"]))
    inc["audit_path"][0] = "00" * 32
    bad = rewrite_zip(bundle, tmp_path / "bad.zip", {item["inclusion"]: json.dumps(inc).encode()})
    _assert_detected(verify_bundle(bad), "log-not-included")


def test_bundle_certificate_from_a_foreign_ca(
    bundle: Path,
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    # A foreign CA with the same name certifies the same station key.
    foreign = CompanyCa.create(tmp_path / "foreign", "Test Co CA")
    pub = StationKey.load(store.data / "proof/station-key.pem").public
    certs = foreign.issue_station("station-01", pub)
    index = bundle_index(bundle)["keys"]
    bad = rewrite_zip(
        bundle, tmp_path / "bad.zip", {index["station_key_certificate"]: certs.key_cert_pem}
    )
    _assert_detected(verify_bundle(bad), "cert-foreign-ca")
    # A wholly consistent foreign chain passes its own bundled CA, but not the CA you pinned.
    both = rewrite_zip(
        bundle,
        tmp_path / "bad2.zip",
        {
            index["station_key_certificate"]: certs.key_cert_pem,
            index["company_ca"]: certs.ca_cert_pem,
        },
    )
    trusted = [
        x509.load_pem_x509_certificate((store.data / "proof-public/company-ca.crt").read_bytes())
    ]
    _assert_detected(verify_bundle(both, trusted_ca=trusted), "cert-foreign-ca")


def test_every_tamper_has_its_own_reason() -> None:
    codes = [
        "clip-altered",
        "clip-truncated",
        "clip-reencoded",
        "manifest-swapped",
        "clip-missing",
        "index-row-deleted",
        "index-row-edited",
        "log-history-rewritten",
        "log-reordered",
        "log-bad-signature",
        "manifest-bad-signature",
        "tsa-other-data",
        "cert-foreign-ca",
    ]
    assert len(set(codes)) == len(codes)
