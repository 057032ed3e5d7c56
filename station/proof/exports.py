"""Evidence bundles the station builds and signs on request: order IDs in, signed zips out."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station.capture.codes import sanitize
from station.config import Config
from station.errors import RejectedCode
from station.proof import ProofError
from station.proof.bundle import ExportRefused, ExportResult, export_order, witness_state
from station.proof.log import ProofLog
from station.store.cursors import WITNESSED_CURSOR, SyncCursors
from station.store.files import (
    SpoolFileError,
    atomic_file,
    fsync_dir,
    remove_path,
    spool_json,
    take_spool_file,
)
from station.store.ledger import ClipRecord, Ledger
from station.store.retention import Policy
from station.store.sqlitedb import Database

log = logging.getLogger(__name__)

REQUESTS_DIR = "export-requests"  # the web (group packcam) writes here; the station reads
EXPORTS_DIR = "exports"  # the station writes here; the web (group packcam) only reads
HEARTBEAT = ".alive"  # in EXPORTS_DIR, touched while the worker runs, removed when it stops
REQUEST_SUFFIX = ".json"
ERROR_SUFFIX = ".error"
WARNINGS_SUFFIX = ".warnings"  # beside a bundle whose export warned: what the seller is told
MAX_REQUEST_BYTES = 4096
MAX_WARNINGS_BYTES = 1 << 20
MAX_ORDER_ID = 512
MAX_PENDING = 8  # requests the web may leave waiting; the station reads no more per pass
TTL_S = 600.0  # long enough to resume a download with Range, short enough to pick up new tokens
GRACE_S = 120.0  # kept past the TTL so a download the web just started can still open it
ERROR_TTL_S = 30.0
PART_STALE_S = 3600.0
BEAT_S = 2.0
ALIVE_S = 15.0  # the web's patience with a silent heartbeat
BUILDS_PER_WINDOW = 30
BUILD_WINDOW_S = 600.0
PER_CLIP = 1 << 20  # its manifest, proofs and up to 8 key frames, beside the clip itself
_KEY = re.compile(r"[0-9a-f]{40}")


class ExportRequestError(ValueError):
    """A request file the station refuses (not a regular small file, not the expected JSON)."""


def bundle_key(order_id: str, clips: Sequence[ClipRecord], witness: str = "") -> str:
    """Names an order's bundle: covers the order, its clips' IDs, hashes and sizes, and what
    the central witness has accepted of them (``order_witness``)."""
    h = hashlib.sha256(order_id.encode("utf-8", "surrogatepass"))
    for c in sorted(clips, key=lambda c: c.id or 0):
        h.update(f"|{c.id}:{c.sha256}:{c.size}".encode())
    if witness:  # "" keeps the key of a station without a witness as it was
        h.update(f"|witness:{witness}".encode())
    return h.hexdigest()[:40]


def order_witness(db: Database, clips: Sequence[ClipRecord]) -> str:
    """``bundle.witness_state`` of the order's clips, read from the index ``db`` (the station's
    own, or the web site's read-only handle on it)."""
    return witness_state(ProofLog(db), list(clips), SyncCursors(db).cursor(WITNESSED_CURSOR))


def bundle_need(clips: Sequence[ClipRecord]) -> int:
    """Bytes a bundle of ``clips`` may take (the clips themselves plus a margin for the rest)."""
    return sum(c.size + PER_CLIP for c in clips)


def request_body(order_id: str) -> bytes:
    return json.dumps({"order_id": order_id}, ensure_ascii=False).encode()


def parse_request(raw: bytes) -> str:
    """The order ID in a request file's bytes, or ExportRequestError saying why not.

    The order ID is only ever a query parameter for the station's own index (never part of a
    path), but anything that could not be a printed label is refused here already.
    """
    order_id = spool_json(raw, MAX_REQUEST_BYTES, ("order_id",), ExportRequestError)["order_id"]
    if not isinstance(order_id, str):
        raise ExportRequestError("order_id is not a string")

    try:
        clean = sanitize(order_id, MAX_ORDER_ID)
    except RejectedCode as exc:
        raise ExportRequestError(f"order_id refused: {exc}") from exc
    if clean != order_id:
        raise ExportRequestError("order_id is not in normal form")
    return order_id


@dataclass(frozen=True)
class ExportDirs:
    """The spool the web writes requests to and the folder the station writes bundles to."""

    requests: Path
    exports: Path

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> ExportDirs:
        return cls(data_dir / REQUESTS_DIR, data_dir / EXPORTS_DIR)

    def bundle(self, key: str) -> Path:
        return self.exports / f"{key}.zip"

    def error(self, key: str) -> Path:
        return self.exports / f"{key}{ERROR_SUFFIX}"

    def request(self, key: str) -> Path:
        return self.requests / f"{key}{REQUEST_SUFFIX}"

    def warnings(self, key: str) -> Path:
        return self.exports / f"{key}{WARNINGS_SUFFIX}"


class ExportWorker:
    """Builds and signs the evidence bundles the web site asks for, one at a time.

    The web cannot read the station key, so it drops ``{"order_id": ...}`` into
    ``<data>/export-requests/``; this worker (a thread, started with the station) reads and
    removes each request, looks the order up in the station's own index and builds the bundle
    from its own files with ``export_order`` (so it signs only what it built), then renames it
    to ``<data>/exports/<bundle_key>.zip`` (0640; the folder is the station's, group-readable).
    A refusal goes to ``<key>.error`` (JSON: status, message) so the web can answer at once;
    the export's warnings to ``<key>.warnings`` (``warnings_body``) before the bundle has its
    name, so the web shows them to whoever downloads it from the order page (not in the bundle:
    the next sync may make them untrue).
    ``.alive`` in the exports folder is touched every ``BEAT_S`` by a second thread (so a long
    build does not look like a stopped station). Bundles are kept ``TTL_S`` (+ grace) within
    ``web.bundle_cache_mb`` and the disk floor; at most
    ``BUILDS_PER_WINDOW`` builds per ``BUILD_WINDOW_S``. A bad request is logged and dropped.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.time,
        free_bytes: Callable[[Path], tuple[int, int]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.dirs = ExportDirs.in_data_dir(cfg.station.data_dir)
        self.cap = cfg.web.bundle_cache_mb << 20
        self.poll_s = poll_s
        self.clock = clock
        self._free = free_bytes or _disk_free
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._builds: deque[float] = deque()
        self._sweep_lock = threading.Lock()
        self.ensure_dirs()

    def ensure_dirs(self) -> None:
        """Requests: group-writable (the web writes); exports: group may only read."""
        for d, mode in ((self.dirs.requests, 0o770), (self.dirs.exports, 0o750)):
            d.mkdir(parents=True, exist_ok=True)
            st = d.stat()
            want = mode | (st.st_mode & stat.S_ISGID)  # keep the data dir's setgid group
            if stat.S_IMODE(st.st_mode) != want:
                d.chmod(want)

    # ---- thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("export worker already started")
        self._stop.clear()
        # One station per data dir (its lock): a partial build here is a stopped one's.
        for part in self.dirs.exports.glob("*.part"):
            part.unlink(missing_ok=True)
        self.beat()
        # The heartbeat has its own thread so that a long build does not look like a dead station.
        for target, name in ((self._run, "export-worker"), (self._beat_loop, "export-heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop; the web sees no heartbeat from now on. A build still running after ``timeout``
        is left to its daemon thread (its ``.part`` is removed at the next start)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        (self.dirs.exports / HEARTBEAT).unlink(missing_ok=True)

    def __enter__(self) -> ExportWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        log.info("export worker: waiting for bundle requests in %s", self.dirs.requests)
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("export worker: pass failed; trying again")
            self._stop.wait(self.poll_s)

    # ---- one pass -------------------------------------------------------------------------

    def _beat_loop(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                self.beat()
            except OSError as exc:
                log.warning("export worker: heartbeat failed: %s", exc)

    def beat(self) -> None:
        """Tell the web site the worker is there (the mtime of ``exports/.alive``)."""
        hb = self.dirs.exports / HEARTBEAT
        hb.touch()
        now = self.clock()
        os.utime(hb, (now, now))

    def run_once(self) -> int:
        """Handle the waiting requests (oldest first); the number of bundles built."""
        built = 0
        for path in self._pending():
            if self._stop.is_set():
                break
            try:
                built += self.handle(path)
            except Exception:
                log.exception("export worker: request %s failed", path.name[:80])
                stem = path.name.removesuffix(REQUEST_SUFFIX)
                if _KEY.fullmatch(stem):
                    self._refuse(stem, 500, "the station could not build the bundle (see its log)")
        return built

    def _pending(self) -> list[Path]:
        now = self.clock()
        found = []
        try:
            entries = list(os.scandir(self.dirs.requests))
        except FileNotFoundError:
            self.ensure_dirs()
            return []
        for e in entries:
            if e.name.startswith("."):  # the web's temporary files before their rename
                try:
                    if now - e.stat(follow_symlinks=False).st_mtime > PART_STALE_S:
                        remove_path(Path(e.path))
                except OSError:
                    pass
                continue
            try:
                found.append((e.stat(follow_symlinks=False).st_mtime, Path(e.path)))
            except OSError:
                continue
        found.sort()
        return [p for _, p in found[:MAX_PENDING]]

    def handle(self, path: Path) -> int:
        """Read, remove and answer one request file; 1 if a bundle was built."""
        stem = path.name.removesuffix(REQUEST_SUFFIX)
        web_key = stem if path.name.endswith(REQUEST_SUFFIX) and _KEY.fullmatch(stem) else None
        try:
            order_id = parse_request(take_spool_file(path, MAX_REQUEST_BYTES))  # and removed
        except (SpoolFileError, ExportRequestError) as exc:
            log.warning("export worker: request %r rejected: %s", path.name[:80], exc)
            if web_key:
                self._refuse(web_key, 400, f"bad export request: {exc}")
            return 0
        if web_key is None:
            log.warning("export worker: request %r rejected: bad file name", path.name[:80])
            return 0
        ledger = Ledger.in_data_dir(self.cfg.station.data_dir)
        try:
            clips = ledger.clips(order_id)
            witness = order_witness(ledger.db, clips)
        finally:
            ledger.close()
        if not clips:
            log.warning("export worker: request for unknown order %r rejected", order_id[:80])
            self._refuse(web_key, 404, "no such order on this station")
            return 0
        key = bundle_key(order_id, clips, witness)
        if key != web_key:
            # a clip came or went, or a sync moved the witness, since the web asked
            log.info("export worker: order %r changed since the request; building anew", order_id)
            self._refuse(web_key, 503, "the order's clips changed; try again")
        return self.build(order_id, clips, key)

    def build(self, order_id: str, clips: Sequence[ClipRecord], key: str) -> int:
        """Build ``exports/<key>.zip`` unless a fresh one is there; 1 if built."""

        out = self.dirs.bundle(key)
        now = self.clock()
        try:
            if now - out.stat().st_mtime < TTL_S:
                return 0  # the web asked twice before it saw the first one
        except FileNotFoundError:
            pass
        need = bundle_need(clips)
        if need > self.cap:
            msg = (
                f"the bundle of order {order_id!r} (~{need >> 20} MB) is larger than the "
                f"download cache ({self.cap >> 20} MB): export it on the station"
            )
            return self._refuse(key, 507, msg)
        while self._builds and now - self._builds[0] > BUILD_WINDOW_S:
            self._builds.popleft()
        if len(self._builds) >= BUILDS_PER_WINDOW:
            return self._refuse(key, 503, "too many evidence bundles asked for; try again later")
        self.sweep(need)
        if not self._room(need):
            return self._refuse(
                key, 507, f"no room above the free-space floor for ~{need >> 20} MB"
            )
        self._builds.append(now)
        t0 = time.monotonic()
        # built under another name: the web serves a bundle once it has its name, and its
        # warnings must be there by then (the sweep removes one a crash left)
        staged = out.with_name(f".{out.name}.build")
        try:
            res = export_order(self.cfg, order_id, staged, perm=0o640)  # the web's group reads it
        except ProofError as exc:
            log.warning("export worker: order %r not exported: %s", order_id, exc)
            staged.with_name(staged.name + ".part").unlink(missing_ok=True)
            if isinstance(exc, ExportRefused):
                return self._refuse(key, 409, str(exc), exc.code, exc.params)
            return self._refuse(key, 409, str(exc))
        except BaseException:
            staged.with_name(staged.name + ".part").unlink(missing_ok=True)
            raise
        self._write_warnings(key, res)
        os.replace(staged, out)
        fsync_dir(out.parent)
        self.dirs.error(key).unlink(missing_ok=True)
        log.info(
            "export worker: order %r signed and bundled in %.1f s (%d MB)",
            order_id,
            time.monotonic() - t0,
            out.stat().st_size >> 20,
        )
        return 1

    def _refuse(
        self,
        key: str,
        status: int,
        message: str,
        code: str = "",
        params: dict[str, str | int] | None = None,
    ) -> int:
        """Answer the web: ``<key>.error``; ``code`` and ``params``: ``ExportRefused``'s, which
        the web says in its reader's language (the message names the station's files)."""
        err = self.dirs.error(key)
        tmp = err.with_name(f".{err.name}.part")
        body = {"status": status, "message": message, "code": code, "params": params or {}}
        tmp.write_text(json.dumps(body, ensure_ascii=False))
        tmp.chmod(0o640)
        os.replace(tmp, err)
        return 0

    def _write_warnings(self, key: str, res: ExportResult) -> None:
        """Durable before the bundle has its name: no power cut leaves one without its own."""
        path = self.dirs.warnings(key)
        if not res.warnings:
            path.unlink(missing_ok=True)  # an older bundle's of the same key
            return
        with atomic_file(path, "w", suffix=".part", perm=0o640, encoding="utf-8") as f:
            json.dump(warnings_body(res), f, ensure_ascii=False)

    def _room(self, need: int) -> bool:

        free, total = self._free(self.dirs.exports)
        floor = Policy.from_config(self.cfg.retention, archiving=self.cfg.archive.enabled).floor(
            total
        )
        return free - need >= floor + (self.cfg.web.verify_headroom_mb << 20)

    def sweep(self, need: int = 0, *, release: int = 0) -> int:
        """Remove expired bundles, old refusals and stale partial builds, then the oldest
        bundles until ``need`` more fits the cap and ``release`` bytes are freed (retention:
        the disk is below its floor); the bytes freed. Called by the worker before a build, by
        the station's cache sweep and by retention, on their threads: one at a time. A bundle
        being downloaded stays readable to the site, which holds it open."""
        with self._sweep_lock:
            return self._sweep(need, release)

    def usage(self) -> int:
        """Bytes the bundles and their companions take on disk (what ``sweep`` may free)."""
        total = 0
        for p in _entries(self.dirs.exports):
            if p.name != HEARTBEAT:
                try:
                    total += p.lstat().st_blocks * 512
                except FileNotFoundError:
                    continue
        return total

    def release(self, need: int) -> int:
        """Free at least ``need`` bytes of bundles if there are as many; the bytes freed."""
        return self.sweep(release=need)

    def _sweep(self, need: int, release: int) -> int:
        now = self.clock()
        bundles = []
        freed = 0
        for p in _entries(self.dirs.exports):
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            age = now - st.st_mtime
            on_disk = st.st_blocks * 512
            if p.name == HEARTBEAT:
                continue
            if p.name.endswith(".part"):
                if age > PART_STALE_S:
                    p.unlink(missing_ok=True)
                    freed += on_disk
            elif p.name.endswith(ERROR_SUFFIX):
                if age > 2 * ERROR_TTL_S:
                    p.unlink(missing_ok=True)
            elif p.name.endswith(WARNINGS_SUFFIX):
                if not p.with_suffix(".zip").exists():  # they go with their bundle
                    p.unlink(missing_ok=True)
            elif age >= TTL_S + GRACE_S or not p.name.endswith(".zip"):
                log.debug("exports: removing %s", p.name)
                remove_path(p)
                freed += on_disk
            else:
                bundles.append((st.st_mtime, st.st_size, on_disk, p))
        total = sum(size for _, size, _, _ in bundles)
        for _mtime, size, on_disk, p in sorted(bundles, key=lambda e: e[0]):
            if total + need <= self.cap and freed >= release:
                break
            log.info("exports: removing %s (%d MB) to make room", p.name, size >> 20)
            p.unlink(missing_ok=True)
            p.with_suffix(WARNINGS_SUFFIX).unlink(missing_ok=True)
            total -= size
            freed += on_disk
        return freed


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:  # made again by the worker's next pass (ensure_dirs)
        return []


def _disk_free(path: Path) -> tuple[int, int]:
    u = shutil.disk_usage(path)
    return u.free, u.total


def warnings_body(res: ExportResult) -> dict[str, Any]:
    """What ``<key>.warnings`` holds: ``warnings``, the English texts the bundle's own
    ``bundle.json`` holds, and ``notes``, those it does not ({"code", "params", "text"}: see
    ``ExportNote``)."""
    noted = {n.text for n in res.notes}
    return {
        "warnings": [w for w in res.warnings if w not in noted],
        "notes": [{"code": n.code, "params": dict(n.params), "text": n.text} for n in res.notes],
    }


def read_warnings(path: Path) -> dict[str, list[Any]]:
    """A bundle's warnings (``warnings_body``) as the worker wrote them; empty lists when there
    are none or the file is not what the worker writes."""
    empty: dict[str, list[Any]] = {"warnings": [], "notes": []}
    try:
        body = json.loads(path.read_bytes()[:MAX_WARNINGS_BYTES])
    except (OSError, ValueError):
        return empty
    if not isinstance(body, dict):
        return empty
    texts = [str(w) for w in body.get("warnings") or [] if isinstance(w, str)]
    notes = [
        n
        for n in body.get("notes") or []
        if isinstance(n, dict)
        and isinstance(n.get("code"), str)
        and isinstance(n.get("params"), dict)
        and isinstance(n.get("text"), str)
    ]
    return {"warnings": texts, "notes": notes}


def read_error(path: Path) -> dict[str, Any] | None:
    """A refusal the worker wrote (status, message, code, params: ``_refuse``), or None when
    there is none; a code or param that is not what the worker writes is left out."""
    try:
        body = json.loads(path.read_bytes()[:MAX_REQUEST_BYTES])
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("status"), int):
        return None
    code = body.get("code")
    params = body.get("params")
    return {
        "status": body["status"],
        "message": str(body.get("message", ""))[:500],
        "code": code[:64] if isinstance(code, str) else "",
        "params": {
            str(k)[:64]: v if isinstance(v, int) else v[:100]
            for k, v in (params.items() if isinstance(params, dict) else ())
            if isinstance(v, int | str) and not isinstance(v, bool)
        },
    }
