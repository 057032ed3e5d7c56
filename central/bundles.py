"""Central site: an order's evidence bundle streamed from the bucket (signed parts + clips)."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Response, abort, request

from central.media import NotAsSigned, checked_chunks, media_store
from station.fleet.objstore import ObjectStore, bundle_parts_dir, clip_key
from station.proof.trust import Anchors
from station.proof.verify import BUNDLE_MANIFEST, TAMPERED, Report, verify_bundle
from station.store.clips import recording_order
from station.store.ledger import ClipRecord
from web.errors import ArchivedCopyAltered, StationUnavailable
from web.handles import site_config
from web.streaming import content_disposition

log = logging.getLogger(__name__)

MAX_PARTS = 64 << 20  # manifests, proofs, key frames and the summary of one order


class BundleNotReady(Exception):
    """No signed parts in the bucket cover every archived clip of the order (yet)."""


class ObjectAltered(Exception):
    """A clip's bucket object is not the clip the station signed: another size than the index
    registered, or other bytes than the signed SHA-256 (found while streaming)."""

    def __init__(self, order_id: str, member: str, key: str, sha256: str, why: str) -> None:
        super().__init__(
            f"{member} of order {order_id!r} in the bucket ({key}) is not the signed clip: {why}"
        )
        self.member = member
        self.sha256 = sha256  # the signed digest: which clip of the order it is


@dataclass(frozen=True)
class ClipObject:
    """A clip member's bucket object and what it must hold."""

    key: str
    size: int  # the index's registered size (the object's, when the index lacks the clip)
    sha256: str  # the member's digest in the station-signed bundle manifest


@dataclass(frozen=True)
class CentralBundle:
    """What to stream: the station's signed parts and, per clip member, its bucket object."""

    order_id: str
    station: str
    parts_key: str
    parts: bytes
    clips: dict[str, ClipObject]  # member name -> its object
    # SHA-256 of the clips the parts carry as deleted by the station's retention (each with
    # its signed record, judged by the verifiers): the bucket never had them
    deleted: frozenset[str] = frozenset()


def _signing_key(clip: ClipRecord) -> str | None:
    meta = clip.extra.get("archive_meta")
    leaf = meta.get("log") if isinstance(meta, dict) else None
    fp = leaf.get("key_fingerprint") if isinstance(leaf, dict) else None
    return str(fp) if fp else None


def pick_station(clips: list[ClipRecord], clip_id: int | None = None) -> list[ClipRecord]:
    """The clips one bundle covers: the named clip's station (and signing key), else the
    newest clip's (recorded last: ``recording_order``). A bundle is one station's signed log;
    an order packed at two stations has one bundle per station."""
    anchor = next((c for c in clips if c.id == clip_id), None) if clip_id is not None else None
    anchor = anchor or recording_order(clips)[-1]
    key = _signing_key(anchor)
    return [c for c in clips if c.station == anchor.station and _signing_key(c) == key]


def locate(
    store: ObjectStore, prefix: str, order_id: str, clips: list[ClipRecord]
) -> CentralBundle:
    """The newest signed parts of ``order_id`` that cover every one of ``clips`` (one station,
    one signing key), with each clip's object; BundleNotReady saying what is missing,
    ObjectAltered when an object's size is not the one the index registered."""
    station = clips[0].station
    key_fp = _signing_key(clips[0])
    if key_fp is None or any(not c.extra.get("archive_key") for c in clips):
        raise BundleNotReady(f"not every clip of order {order_id!r} at {station} is archived yet")
    where = bundle_parts_dir(prefix, station, order_id, key_fp)
    found: list[tuple[str, int]] = []
    for page in store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=where
    ):
        found += [(o["Key"], int(o["Size"])) for o in page.get("Contents", [])]
    found = [f for f in found if re.fullmatch(r"\d{10}\.zip", f[0][len(where) :])]
    if not found:
        raise BundleNotReady(f"{station} has not uploaded a signed bundle of order {order_id!r}")
    parts_key, size = max(found)  # named by tree size: the newest checkpoint covers the most
    if size > MAX_PARTS:
        raise BundleNotReady(f"{parts_key} is larger than {MAX_PARTS >> 20} MB")
    parts = store.get_bytes(parts_key)
    with zipfile.ZipFile(io.BytesIO(parts)) as zf:
        manifest = json.loads(zf.read(BUNDLE_MANIFEST))
        index = json.loads(zf.read("bundle.json"))
        deleted = frozenset(
            str(json.loads(zf.read(d["manifest"])).get("sha256"))
            for d in index.get("deleted_clips") or []
        )
    members: dict[str, str] = manifest["members"]
    covered = {members[c["clip"]]: c["clip"] for c in index["clips"] if c["clip"] in members}
    missing = [c for c in clips if c.sha256 not in covered]
    if missing:
        raise BundleNotReady(
            f"the newest signed bundle of order {order_id!r} ({parts_key}) does not cover "
            + ", ".join(Path(c.path).name for c in missing)
        )
    indexed = {c.sha256: c.size for c in clips}
    objects: dict[str, ClipObject] = {}
    for sha, name in covered.items():
        obj = clip_key(prefix, station, sha)
        head = store.head(obj)
        if head is None:
            raise BundleNotReady(f"{name} of order {order_id!r} is not in the bucket yet")
        size = int(head["ContentLength"])
        want = indexed.get(sha, size)
        if size != want:
            raise ObjectAltered(order_id, name, obj, sha, f"{size} bytes, registered {want}")
        objects[name] = ClipObject(obj, want, sha)
    return CentralBundle(order_id, station, parts_key, parts, objects, deleted)


def locate_for(
    store: ObjectStore, prefix: str, order_id: str, clips: list[ClipRecord], clip_id: int | None
) -> CentralBundle:
    """``locate`` for the clips ``pick_station`` picks. Clips the bucket never got are served
    by the bundle of their station's archived clips of the order when it carries each of
    them as deleted by the station's retention (its signed record) before the archiver sent
    it; a clip merely not archived yet has no bundle yet (BundleNotReady)."""
    group = pick_station(clips, clip_id)
    try:
        return locate(store, prefix, order_id, group)
    except BundleNotReady:
        archived = [c for c in clips if c.station == group[0].station and _signing_key(c)]
        if _signing_key(group[0]) is not None or not archived:
            raise
        newest = recording_order(archived)[-1]
        bundle = locate(store, prefix, order_id, pick_station(clips, newest.id))
        if {c.sha256 for c in group} <= bundle.deleted:
            return bundle
        raise


class _Sink(io.RawIOBase):
    """An unseekable file for zipfile: it writes data descriptors, and we hand on the bytes."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.buf += b
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


def _checked(body: Any, bundle: CentralBundle, name: str) -> Iterator[bytes]:
    """The object's chunks, checked against the signed clip as they pass
    (``media.checked_chunks``): ObjectAltered (logged) when they are not it; the index's size
    is all that was checked before the headers went."""
    obj = bundle.clips[name]
    try:
        yield from checked_chunks(body, obj.size, obj.sha256)
    except NotAsSigned as why:
        exc = ObjectAltered(bundle.order_id, name, obj.key, obj.sha256, str(why))
        log.error("evidence bundle of %s: %s; the download is cut", bundle.station, exc)
        raise exc from None


def stream(store: ObjectStore, bundle: CentralBundle) -> Iterator[bytes]:
    """The bundle as a zip written on the fly: the parts' members as the station wrote them,
    each clip read from the bucket in 256 KB chunks (stored, as the station stores clips).
    Nothing touches the disk; closing the iterator early closes the open object body. A clip
    object that is not the signed clip raises ObjectAltered mid-way: the zip is never
    finished (no central directory), and the server drops the connection instead of ending
    the response cleanly."""
    sink = _Sink()
    # Closed on any exit: an aborted zip's end record stays in the sink, never sent.
    with (
        zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as out,
        zipfile.ZipFile(io.BytesIO(bundle.parts)) as parts,
    ):
        names = sorted(set(parts.namelist()) | set(bundle.clips))
        for name in names:
            if name in bundle.clips:
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED
                info.file_size = bundle.clips[name].size
                key = bundle.clips[name].key
                body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"]
                try:
                    with out.open(info, "w") as dst:
                        for chunk in _checked(body, bundle, name):
                            dst.write(chunk)
                            yield sink.take()
                finally:
                    body.close()
            else:
                info = parts.getinfo(name)
                out.writestr(info, parts.read(info))
            yield sink.take()
    yield sink.take()


def verify_archived(
    store: ObjectStore,
    prefix: str,
    order_id: str,
    clips: list[ClipRecord],
    anchors: Anchors,
    spool: Path,
    *,
    max_bytes: int,
    headroom: int,
    check: Callable[[Report], None] | None = None,
) -> list[Report]:
    """Per clip, the verdict of the bundle the site would hand out (``verify_bundle`` on the
    streamed bundle, spooled under ``spool`` on the data disk and removed afterwards, then
    ``check``: what this site holds the bundle to beyond its own contents, the witness record
    as the /verify page does). A bundle needing more than ``max_bytes`` (zip + unpacked clips),
    or more than the disk has above ``headroom``, is not checked here (its clips say so)."""

    reports: dict[int | None, Report] = {}
    deleted: dict[str, dict[str, Any]] = {}  # sha256 -> a verified bundle's deleted clip
    groups: dict[tuple[str, str | None], list[ClipRecord]] = {}
    for c in clips:
        groups.setdefault((c.station, _signing_key(c)), []).append(c)
    spool.mkdir(parents=True, exist_ok=True)
    for group in groups.values():
        try:
            bundle = locate(store, prefix, order_id, group)
        except BundleNotReady as exc:
            for c in group:
                reports[c.id] = _not_checked(c, str(exc), "bundle-not-signed")
            continue
        except ObjectAltered as exc:
            log.error("summary of order %r: %s", order_id, exc)
            reports.update(_altered(group, exc))
            continue
        need = 2 * sum(o.size for o in bundle.clips.values()) + len(bundle.parts)
        if need > max_bytes or shutil.disk_usage(spool).free - need < headroom:
            for c in group:
                reports[c.id] = _not_checked(
                    c,
                    f"the bundle (~{need >> 20} MB) is too large to "
                    "check on this site: verify it with packcam verify",
                    "bundle-too-large",
                )
            continue
        work = Path(tempfile.mkdtemp(prefix="summary-", dir=spool))
        try:
            zpath = work / "bundle.zip"
            with zpath.open("wb") as f:
                for block in stream(store, bundle):
                    f.write(block)
            whole = verify_bundle(zpath, anchors=anchors, tmp_dir=work)
            if check is not None:
                check(whole)
        except ObjectAltered as exc:  # logged by stream; the site would cut this bundle off
            reports.update(_altered(group, exc))
            continue
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for c in group:
            reports[c.id] = split_report(whole, c)
        if whole.verdict != TAMPERED:
            deleted.update((d["sha256"], d) for d in whole.facts.get("deleted_clips", []))
    for c in clips:  # never archived: the station's retention deleted it before, by its record
        if c.sha256 in deleted and not _signing_key(c):
            reports[c.id] = _not_checked(
                c,
                "deleted by the station's retention before it was archived, by its own signed "
                "record (in the evidence bundle of the order's other clips)",
                "clip-deleted-by-retention",
            )
            reports[c.id].facts["deleted"] = deleted[c.sha256]
    return [reports[c.id] for c in clips]


def _not_checked(clip: ClipRecord, why: str, code: str) -> Report:
    """Nothing checked (not verified), and why, by a reason code (docs/proof.md) as the
    station's summary names one (``clip-deleted-by-retention``)."""
    report = Report(subject=Path(clip.path).name)
    report.add("bundle", "info", why, code)
    return report


def _altered(group: list[ClipRecord], exc: ObjectAltered) -> dict[int | None, Report]:
    """The summary's reports when the site cannot hand the bundle out: the altered clip
    fails, the others are not checked (there is no bundle to check them in)."""
    out: dict[int | None, Report] = {}
    for c in group:
        if c.sha256 == exc.sha256:
            report = Report(subject=Path(c.path).name)
            report.add("bucket object", "fail", str(exc), "clip-altered")
            out[c.id] = report
        else:
            out[c.id] = _not_checked(
                c,
                f"the bundle is not handed out: {exc.member} in the bucket is not the signed clip",
                "bundle-withheld",
            )
    return out


def split_report(whole: Report, clip: ClipRecord) -> Report:
    """One clip's share of a bundle's report: the bundle-wide checks (signer, bundle manifest,
    checkpoint) and that clip's own; a clip not in the bundle is not verified."""
    facts = next((f for f in whole.facts.get("clips", []) if f.get("sha256") == clip.sha256), None)
    if facts is None:
        return _not_checked(clip, "not in the bundle", "bundle-not-signed")
    prefix = None
    for c in whole.checks:
        m = re.match(r"clip\[(\d+)\] (.+?) sha256$", c.name)
        if m and m.group(2) == facts["file"]:
            prefix = f"clip[{m.group(1)}] {facts['file']}"
    out = Report(subject=facts["file"])
    out.signer_anchored = whole.signer_anchored
    out.covered = whole.covered
    own = [c for c in whole.checks if prefix and c.name.startswith(prefix)]
    out.checks = [c for c in whole.checks if not c.name.startswith("clip[")] + own
    n = int(prefix[5 : prefix.index("]")]) if prefix else -1
    # time_anchors has one entry per clip with a signed manifest, in bundle order
    with_manifest = sorted(
        int(m.group(1))
        for c in whole.checks
        if (m := re.match(r"clip\[(\d+)\] .+ manifest\.signature$", c.name))
    )
    pos = with_manifest.index(n) if n in with_manifest else -1
    out.time_anchors = [whole.time_anchors[pos]] if 0 <= pos < len(whole.time_anchors) else [False]
    out.facts = {
        k: v for k, v in whole.facts.items() if k in ("station_key", "trusted_ca", "compare")
    }
    if whole.signer_anchored and "station" in whole.facts:
        out.facts["station"] = whole.facts["station"]
    out.facts.update(facts)
    out.facts["size"] = clip.size
    out.facts["tokens"] = [
        t for t in whole.facts.get("tokens", []) if prefix and str(t["check"]).startswith(prefix)
    ]
    cp = whole.facts.get("checkpoint")
    if cp and not any(c.status == "fail" and c.name.startswith(("checkpoint", prefix or "-"))
                      for c in whole.checks):  # fmt: skip
        out.facts["checkpoint"] = dict(cp)
    return out


def respond(order_id: str, clips: list[ClipRecord], clip_id: int | None, download_name: str) -> Any:
    """The Flask response: the bundle streamed (200, no Range: it is written as it is sent),
    503 + Retry-After while the station has not uploaded signed parts covering every clip,
    503 (logged; ArchivedCopyAltered: the page says the copy is not the signed one) when a
    clip's object has another size than the index registered; an object whose bytes are not
    the signed ones cuts the stream (``stream``)."""

    store = media_store()
    if store is None:
        abort(503)
    prefix = site_config().archive.prefix
    try:
        bundle = locate_for(store, prefix, order_id, clips, clip_id)
    except BundleNotReady as exc:
        log.warning("evidence bundle of order %r not available centrally: %s", order_id, exc)
        raise StationUnavailable(description="bundle-not-signed", retry_after=60) from exc
    except ObjectAltered as exc:
        log.error("evidence bundle of order %r not served: %s", order_id, exc)
        raise ArchivedCopyAltered() from exc
    headers = {
        "Content-Disposition": content_disposition(download_name, True),
        "Cache-Control": "private, no-store",
        "Accept-Ranges": "none",
    }
    if request.method == "HEAD":
        return Response(status=200, headers=headers, mimetype="application/zip")
    log.info("streaming the evidence bundle of order %r from %s (%d clips)", order_id,
             bundle.parts_key, len(bundle.clips))  # fmt: skip
    return Response(
        stream(store, bundle), headers=headers, mimetype="application/zip",
        direct_passthrough=True,
    )  # fmt: skip
