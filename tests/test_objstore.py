"""Object-store unit tests: token bucket, keys, idempotent verified puts, multipart resume (moto).

moto stands in for S3 here only to keep these fast; tests/test_fleet.py runs the same code
against a real SeaweedFS.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from station import config as config_mod
from station.fleet.objstore import (
    LocalFileChanged,
    ObjectStore,
    ThrottledBody,
    TokenBucket,
    UploadJournal,
    VerifyError,
    clip_key,
    station_prefix,
)
from station.store.index import open_index
from station.store.sqlitedb import Database

BUCKET = "packcam-unit"  # created by the moto_s3 fixture (conftest)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_paces_to_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.t += s

    monkeypatch.setattr("station.fleet.objstore.time.sleep", sleep)
    bucket = TokenBucket(1000, clock=clock)
    assert bucket.consume(1000)  # the initial burst
    assert slept == []
    assert bucket.consume(2500)
    assert sum(slept) == pytest.approx(2.5)


def test_token_bucket_stops_waiting_when_told() -> None:
    stop = threading.Event()
    stop.set()
    bucket = TokenBucket(10)
    assert bucket.consume(5, stop)
    assert bucket.consume(100, stop) is False


def test_throttled_body_reads_rewinds_and_paces_only_when_sending() -> None:
    class Counting(TokenBucket):
        taken = 0

        def consume(self, n: int, stop: threading.Event | None = None) -> bool:
            Counting.taken += n
            return True

    body = ThrottledBody(b"x" * 200_000, Counting(1e9), chunk=65536)
    body.paced = False  # botocore hashing the payload for SigV4
    assert len(body.read()) == 200_000 and Counting.taken == 0
    body.seek(0)
    body.paced = True
    got = b"".join(iter(lambda: body.read(50_000), b""))
    assert got == b"x" * 200_000 and Counting.taken == 200_000
    assert body.tell() == 200_000 and len(body) == 200_000


def test_keys_are_deterministic_and_safe() -> None:
    digest = "ab" * 32
    assert clip_key("packcam/", "station-01", digest) == (
        f"packcam/stations/station-01/clips/{digest}.mp4"
    )
    assert clip_key("p", "station-01", digest).startswith("p/stations/")
    weird = station_prefix("", "桌1/../x")
    assert ".." not in weird.split("/") and weird.startswith("stations/") and "/x" not in weird


_JOURNAL_DBS: list[Database] = []  # the index connections _store opened, closed after each test


@pytest.fixture(autouse=True)
def _close_journals() -> Iterator[None]:
    yield
    while _JOURNAL_DBS:
        _JOURNAL_DBS.pop().close()


def _store(tmp_path: Path, **archive: object) -> ObjectStore:
    cfg = config_mod.load(None).with_data_dir(tmp_path / "data")
    cfg = cfg.replace("archive", enabled=True, bucket=BUCKET, **{"part_size_mb": 5, **archive})
    (tmp_path / "data").mkdir(exist_ok=True)
    _JOURNAL_DBS.append(open_index(tmp_path / "data" / "index.sqlite3"))
    return ObjectStore(cfg.archive, journal=UploadJournal(_JOURNAL_DBS[-1]))


def _versions(store: ObjectStore, key: str) -> int:
    resp = store.client.list_object_versions(Bucket=BUCKET, Prefix=key)
    return len([v for v in resp.get("Versions", []) if v["Key"] == key])


def test_put_bytes_is_idempotent_and_verified(tmp_path: Path, moto_s3: None) -> None:
    store = _store(tmp_path)
    store.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    first = store.put_bytes("k/a.json", b'{"a": 1}', content_type="application/json")
    again = store.put_bytes("k/a.json", b'{"a": 1}')
    assert first.uploaded and not again.uploaded
    assert again.verified_by  # proven by the store's checksum or ETag
    assert _versions(store, "k/a.json") == 1  # a retried upload never makes a duplicate


def test_a_wrong_object_in_the_bucket_is_replaced(
    tmp_path: Path, moto_s3: None, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(tmp_path, checksum="md5")
    store.client.put_object(
        Bucket=BUCKET, Key="k/b", Body=b"tampered", Metadata={"sha256": "0" * 64}
    )
    with caplog.at_level(logging.ERROR, logger="station.fleet.objstore"):
        res = store.put_bytes("k/b", b"the real bytes")
    assert res.uploaded and "wrong" in caplog.text
    assert store.get_bytes("k/b") == b"the real bytes"
    with pytest.raises(VerifyError, match="size"):
        store.verify("k/b", store_expect(b"other"))


def store_expect(data: bytes):
    import base64

    from station.fleet.objstore import Expect

    sha = hashlib.sha256(data)
    return Expect(
        len(data),
        sha.hexdigest(),
        base64.b64encode(sha.digest()).decode(),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
    )


def test_multipart_resumes_after_a_failure_with_the_journalled_parts(
    tmp_path: Path, moto_s3: None
) -> None:
    data = os.urandom(12 * 1024 * 1024 + 123)
    path = tmp_path / "big.mp4"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    store = _store(tmp_path)
    real = store.client.upload_part
    calls = {"n": 0}

    def flaky(**kw: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("network went away")
        return real(**kw)

    store.client.upload_part = flaky  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        store.put_file("clips/big.mp4", path, sha256=sha, size=len(data))
    assert store.journal is not None
    state = store.journal.get("clips/big.mp4")
    assert state is not None and sorted(state.parts) == [1]

    # "restart": a new store on the same journal resumes the same upload id
    fresh = _store(tmp_path)
    sent: list[int] = []
    real2 = fresh.client.upload_part

    def counting(**kw: object) -> object:
        sent.append(int(kw["PartNumber"]))  # type: ignore[arg-type]
        return real2(**kw)

    fresh.client.upload_part = counting  # type: ignore[method-assign]
    res = fresh.put_file("clips/big.mp4", path, sha256=sha, size=len(data))
    assert sent == [2, 3]  # part 1 was not sent again
    assert res.uploaded and res.verified_by
    assert fresh.sha256_of("clips/big.mp4") == (sha, len(data))
    assert fresh.journal is not None and fresh.journal.get("clips/big.mp4") is None
    # and once stored, a further call sends nothing
    again = fresh.put_file("clips/big.mp4", path, sha256=sha, size=len(data))
    assert not again.uploaded and sent == [2, 3]


def test_a_changed_local_file_is_never_archived(tmp_path: Path, moto_s3: None) -> None:
    store = _store(tmp_path)
    path = tmp_path / "c.mp4"
    path.write_bytes(b"recorded bytes")
    sha = hashlib.sha256(b"recorded bytes").hexdigest()
    path.write_bytes(b"recorded BYTES")  # same size, edited afterwards
    with pytest.raises(LocalFileChanged):
        store.put_file("clips/c.mp4", path, sha256=sha, size=len(b"recorded bytes"))
    assert store.head("clips/c.mp4") is None


def test_parts_sent_from_a_changed_file_are_never_completed_into_the_clip(
    tmp_path: Path, moto_s3: None
) -> None:
    """A multipart upload refused at the end because the file was not the indexed bytes
    (another file copied over it, a card returning bad data) had journalled its parts: once
    the file was right again, the next pass reused those wrong parts, the whole-file hash of
    the right file matched, and the object was completed from them, verified against their
    own checksums and marked archived: wrong bytes in the bucket under the clip's SHA-256,
    and retention then free to delete the only right copy. The refused upload is aborted and
    forgotten, so the next pass starts from the file as it is."""
    good = os.urandom(12 * 1024 * 1024 + 123)
    sha = hashlib.sha256(good).hexdigest()
    path = tmp_path / "big.mp4"
    bad = bytearray(good)
    bad[100] ^= 0xFF  # part 1 differs
    path.write_bytes(bytes(bad))
    store = _store(tmp_path)
    with pytest.raises(LocalFileChanged):
        store.put_file("clips/big.mp4", path, sha256=sha, size=len(good))
    assert store.head("clips/big.mp4") is None
    # aborted and forgotten: no parts left in the store, nothing in the journal to resume
    assert not store.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    assert store.journal is not None and store.journal.get("clips/big.mp4") is None
    path.write_bytes(good)  # restored
    fresh = _store(tmp_path)
    assert fresh.put_file("clips/big.mp4", path, sha256=sha, size=len(good)).uploaded
    assert fresh.sha256_of("clips/big.mp4") == (sha, len(good))


def test_a_part_journalled_from_other_bytes_is_sent_again(tmp_path: Path, moto_s3: None) -> None:
    """The same, cut off before the end (network gone, power cut): the journal holds a part
    sent while the file was wrong, and the resumed upload must not reuse it."""
    good = os.urandom(12 * 1024 * 1024 + 123)
    sha = hashlib.sha256(good).hexdigest()
    path = tmp_path / "big.mp4"
    bad = bytearray(good)
    bad[100] ^= 0xFF
    path.write_bytes(bytes(bad))
    store = _store(tmp_path)
    real = store.client.upload_part

    def cut(**kw: object) -> object:
        if kw["PartNumber"] == 2:
            raise ConnectionError("network went away")
        return real(**kw)

    store.client.upload_part = cut  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        store.put_file("clips/big.mp4", path, sha256=sha, size=len(good))
    path.write_bytes(good)
    fresh = _store(tmp_path)
    res = fresh.put_file("clips/big.mp4", path, sha256=sha, size=len(good))
    assert res.uploaded
    assert fresh.sha256_of("clips/big.mp4") == (sha, len(good))


def test_object_lock_missing_on_the_bucket_degrades_with_a_log_line(
    tmp_path: Path, moto_s3: None, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(tmp_path, object_lock_mode="COMPLIANCE", object_lock_days=30)
    with caplog.at_level(logging.WARNING, logger="station.fleet.objstore"):
        assert store.detect_object_lock() is False
    assert "without retention" in caplog.text
    assert store.put_bytes("k/c", b"data").uploaded


@pytest.mark.parametrize("part_size_mb", [6, 16])  # other parts; one part (no multipart now)
def test_a_multipart_object_sent_with_another_part_size_is_proven_not_sent_again(
    tmp_path: Path, moto_s3: None, part_size_mb: int
) -> None:
    """A clip completed in the bucket but not marked archived (a crash right after), and
    ``part_size_mb`` changed before the next pass: the store's composite SHA-256 is over other
    parts than ours now. That proves nothing either way (a read-back does); taken as "another
    object" it was sent again, a second version of a write-once clip on a versioned bucket,
    which the bucket audit reports as overwritten."""
    data = os.urandom(11 * 1024 * 1024)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    first = _store(tmp_path)
    first.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    assert first.put_file("k/clip.mp4", path, sha256=sha, size=len(data)).uploaded
    again = _store(tmp_path, part_size_mb=part_size_mb).put_file("k/clip.mp4", path, sha256=sha,
                                                       size=len(data))  # fmt: skip
    assert not again.uploaded and "read-back-sha256" in again.verified_by
    assert _versions(first, "k/clip.mp4") == 1
