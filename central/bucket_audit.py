"""Bucket audit: compare the bucket's object versions with the clips the central index holds."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class Kind(StrEnum):
    """What can be wrong with an archived clip's object, worst first (the report's order)."""

    DELETED = "deleted"
    MISSING = "missing"
    ALTERED = "altered"  # --deep: other bytes than the clip's (read back, or the store's checksum)
    OVERWRITTEN = "overwritten"
    UNINDEXED = "unindexed"


@dataclass(frozen=True)
class Finding:
    """One problem: its :class:`Kind`, the object key and what was seen."""

    kind: Kind
    key: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def classify(
    expected: Mapping[str, int],
    versions: Iterable[Mapping[str, Any]],
    delete_markers: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    grace: timedelta = timedelta(minutes=30),
) -> list[Finding]:
    """Pure: the findings for the ``expected`` archive keys (key -> the size the index
    registered) against a version listing.

    ``versions`` and ``delete_markers`` are S3 ListObjectVersions entries (Key, VersionId,
    IsLatest, Size). Clip keys carry the clip's SHA-256 (``objstore.clip_key``), and the
    archiver verified the bytes on upload. A clip whose newest entry is a delete marker was
    deleted (its locked versions are still there, but every plain GET answers 404); a key with
    more than one version was written again; so was one whose newest version has another size
    than the index's (an unversioned bucket keeps one version only); a clip object the
    index does not know is reported too, because a forger's upload would look like that, unless
    it is younger than ``grace`` (archived, not yet registered centrally).
    """
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for v in versions:
        by_key.setdefault(str(v["Key"]), []).append(v)
    latest_marker = {str(m["Key"]) for m in delete_markers if m.get("IsLatest")}
    out: list[Finding] = []
    for key in sorted(expected):
        vs = by_key.get(key, [])
        if key in latest_marker:
            out.append(Finding(Kind.DELETED, key, f"a delete marker hides {len(vs)} version(s)"))
        elif not vs:
            out.append(Finding(Kind.MISSING, key, "no version of the object is in the bucket"))
        if len(vs) > 1:
            out.append(Finding(Kind.OVERWRITTEN, key, f"{len(vs)} versions of a write-once object"))
        sizes = [int(x.get("Size", -1)) for x in vs if x.get("IsLatest")]
        if key not in latest_marker and sizes and sizes[0] != expected[key]:
            what = f"the object is {sizes[0]} bytes, the index registered {expected[key]}"
            out.append(Finding(Kind.OVERWRITTEN, key, what))
    for key in sorted(set(by_key) - set(expected)):
        newest = max((v["LastModified"] for v in by_key[key]), default=now)
        if key.endswith(".mp4") and "/clips/" in key and newest < now - grace:
            what = "a clip object the central index does not hold"
            out.append(Finding(Kind.UNINDEXED, key, what))
    return by_kind(out)


def list_versions(
    client: Any, bucket: str, prefix: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every object version and delete marker under ``prefix`` (paginated)."""
    versions: list[dict[str, Any]] = []
    markers: list[dict[str, Any]] = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        versions.extend(page.get("Versions", []))
        markers.extend(page.get("DeleteMarkers", []))
    return versions, markers


def deep_audit(
    check: Callable[[str, int, str], str | None],
    expected: Mapping[str, tuple[int, str]],
    *,
    skip: Iterable[str] = (),
) -> list[Finding]:
    """The archived clips (key -> the size and SHA-256 the index registered) whose object is
    not those bytes, by ``check`` (``ObjectStore.check_archived``: the store's SHA-256
    checksum, else one download per clip): other bytes under the clip's size and
    ``x-amz-meta-sha256`` look right to the listing. Keys in ``skip`` (found deleted or
    missing) are not asked; a store that cannot be asked raises (no verdict)."""
    left_out = set(skip)
    out: list[Finding] = []
    for key in sorted(set(expected) - left_out):
        size, sha256 = expected[key]
        why = check(key, size, sha256)
        if why is not None:
            out.append(Finding(Kind.ALTERED, key, why))
            log.warning("bucket audit: %s %s (%s)", Kind.ALTERED, key, why)
    log.info("deep bucket audit: %d clip object(s) checked, %d altered",
             len(set(expected) - left_out), len(out))  # fmt: skip
    return out


def by_kind(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first, then by key (the report's order)."""
    return sorted(findings, key=lambda f: (list(Kind).index(f.kind), f.key))


def audit_bucket(
    client: Any,
    bucket: str,
    prefix: str,
    expected: Mapping[str, int],
    *,
    now: datetime | None = None,
) -> list[Finding]:
    """List ``bucket`` under ``prefix`` with an admin (list-versions) key and classify it
    against ``expected`` (archive key -> the size the index registered)."""
    versions, markers = list_versions(client, bucket, prefix)
    findings = classify(expected, versions, markers, now=now or datetime.now(UTC))
    for f in findings:
        log.warning("bucket audit: %s %s (%s)", f.kind, f.key, f.detail)
    log.info(
        "bucket audit of %s/%s: %d indexed clip object(s), %d version(s), %d delete marker(s),"
        " %d finding(s)",
        bucket,
        prefix,
        len(expected),
        len(versions),
        len(markers),
        len(findings),
    )
    return findings
