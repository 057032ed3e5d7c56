"""Station side of the central index: push clips, archive state, checkpoints and health."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import station
from station.capture.codes import safe_component
from station.config import CentralSection, Config
from station.errors import StationError
from station.proof import merkle
from station.proof.keys import StationKey
from station.proof.paths import ProofPaths
from station.proof.tables import ProofTables
from station.runtime.background import IndexWorker, Schedule
from station.runtime.clock import clock_synced
from station.store.cursors import WITNESSED_CURSOR
from station.store.ledger import Ledger

log = logging.getLogger(__name__)

CLIPS_CURSOR = "central:clips"
ARCHIVED_CURSOR = "central:archived"
CHECKPOINTS_CURSOR = WITNESSED_CURSOR
ROTATIONS_CURSOR = "central:rotations"
# Every request names the key the station signs with (its fingerprint, empty without one):
# the site refuses a request of another key than the one the station's hello enrolled, so a
# second Pi given this station's token (its own data dir, its own key) reports nothing onto
# this station's row (central/api.py, key_refusal).
KEY_HEADER = "X-Packcam-Station-Key"
LATE_WAYBILLS_CURSOR = "central:late-waybills"  # a waybills rowid, not a clip id
MAX_BACKOFF_S = 300.0

_T = TypeVar("_T")


def read_token(c: CentralSection) -> str:
    """The station's token for the central site's fleet API (``token_file`` wins)."""
    if c.token_file:
        try:
            return Path(c.token_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StationError(f"central.token_file: cannot read it: {exc}") from exc
    return c.token


def signing_key(cfg: Config) -> tuple[str, str]:
    """The fingerprint and public PEM of the key the station signs with, ("", "") without
    one: what every fleet request names (KEY_HEADER). Read each time: a key made after the
    start, or rotated, is named from then on."""
    key_path = ProofPaths.from_config(cfg).key
    if key_path.exists():
        try:
            key = StationKey.load(key_path)
            return key.fingerprint, key.public_pem().decode("ascii")
        except StationError as exc:
            log.warning("cannot read the station key: %s", exc)
    return "", ""


class SyncError(StationError):
    """The central server refused a request or could not be reached."""


class CentralSync(IndexWorker):
    """Keeps the central index up to date with this station, and catches up after outages.

    The outbox is the station index itself, followed with cursors kept in ``sync_cursors``:
    clips by id, archivings by ``archive_seq``, checkpoints by id, and waybills linked to a
    clip after it was signed (``linked_utc``) by their rowid: their clip is sent again (the
    server adds waybills it lacks, changes none). A cursor moves only after
    the central server acknowledged the batch, so a crash, a dead network or a PostgreSQL
    restart on the other side loses nothing; the server's upserts make a repeated batch
    harmless. On every (re)connection ``hello`` also tells us what the server already holds,
    and a cursor ahead of that (the central database was restored from a backup) moves back.

    Threads: one daemon thread (``start``/``stop``); ``sync_once`` for the CLI and tests.
    """

    def __init__(self, cfg: Config, *, ledger: Ledger | None = None) -> None:
        self.c = cfg.central
        # a failed push is retried after the interval, backing off up to MAX_BACKOFF_S
        schedule = Schedule(
            self.c.interval_s, self.c.interval_s, max(MAX_BACKOFF_S, self.c.interval_s)
        )
        super().__init__(
            cfg,
            ledger,
            name="central-sync",
            job=self.sync_once,
            schedule=schedule,
            on_error=self._forget_hello,
        )
        self.proof = ProofTables(self.index)
        # What the push loops watch: the thread's stop event, except during the final push.
        self._halt: threading.Event = self._stop
        self.base = self.c.url.rstrip("/") + "/api/fleet/v1"
        self._token = self._read_token()
        self._hello_done = False
        self._key_pem = ""
        self._key_fp = ""  # the fingerprint of the key this round signs with ("" without one)
        self._said_fp: str | None = None  # the one the last successful hello enrolled
        self._witness_size = 0  # tree size of the last checkpoint the witness accepted
        self.last_ok: float | None = None

    def _read_token(self) -> str:
        return read_token(self.c)

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        super().start()
        log.info("central sync: reporting to %s", self.c.url)

    def stop(self, timeout: float | None = None, *, final_push: bool = False) -> None:
        """Stop the thread; with ``final_push``, first send once more what is new.

        At shutdown the archiver may have verified a clip moments before: without the last push
        the central site would list it as not archived (404 to viewers) until the next start,
        which for a replaced or retired station is never. One bounded pass (each request
        times out after ``central.timeout_s``); a failure is logged and resumes at the next start.
        """
        self._repeater.stop(self.STOP_TIMEOUT_S if timeout is None else timeout)
        if final_push and self._repeater.alive:
            log.warning("central sync: still busy at shutdown; no final push (next start sends)")
        elif final_push:
            self._halt = threading.Event()  # the stop event is set: let the loops run once
            try:
                sent = self.sync_once()
                log.info("central sync: final push at shutdown sent %s", sent)
            except Exception as exc:  # the next start pushes it: nothing is lost
                log.warning("central sync: final push at shutdown failed: %s", exc)
            finally:
                self._halt = self._stop
        super().stop(timeout=0)

    def _forget_hello(self, _exc: Exception) -> None:
        # The central site may have restarted or been replaced: introduce ourselves again.
        self._hello_done = False

    # ---- HTTP -----------------------------------------------------------------------------

    def _post(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self._token}",
                KEY_HEADER: self._key_fp,
                "User-Agent": f"packcam-station/{station.__version__}",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.c.timeout_s) as resp:
                return dict(json.loads(resp.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise SyncError(f"{path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SyncError(f"{path}: {exc}") from exc

    # ---- one round ---------------------------------------------------------------------------

    def sync_once(self) -> dict[str, int]:
        """Push everything new; return how many clips, archivings, checkpoints and clips with
        late waybills were sent.

        Each step runs even when another one failed: a witness refusing the checkpoints (a
        station restored from a backup) must not keep the clips, the late waybills or the
        health report from the site. The health report names the steps that failed (the
        dashboard shows the station up, with its problem), then the round raises SyncError
        naming them all, so it still counts as failed (back-off, hello again).
        """
        failed: dict[str, str] = {}
        self._key_fp, self._key_pem = signing_key(self.cfg)
        if self._key_fp != self._said_fp:  # a key made or rotated since: enrol it first
            self._hello_done = False
        if not self._hello_done:
            self._step("rotation", self._push_rotations, failed)  # the site knows the old key
            if not failed:
                self._step("hello", self._hello, failed)
        sent = dict.fromkeys(("clips", "archived", "checkpoints", "waybills"), 0)
        if self._hello_done:  # hello first: it moves cursors and the clip id floor
            for step, push in (
                ("clips", self._push_clips),
                ("archived", self._push_archived),
                ("checkpoints", self._push_checkpoints),
                ("waybills", self._push_late_waybills),
            ):
                sent[step] = self._step(step, push, failed) or 0
        self._step("health", lambda: self._push_health(failed), failed)
        if failed:
            raise SyncError("; ".join(f"{step}: {why}" for step, why in failed.items()))
        self.last_ok = time.monotonic()
        return sent

    @staticmethod
    def _step(step: str, push: Callable[[], _T], failed: dict[str, str]) -> _T | None:
        """One step of a round: a refusal or an unreachable site is logged and noted in
        ``failed`` (None); a programming error still raises at once."""
        try:
            return push()
        except SyncError as exc:
            log.info("central sync: %s failed (the other steps go on): %s", step, exc)
            failed[step] = str(exc).strip()[:500]
            return None

    def _hello(self) -> None:
        fp, pem = self._key_fp, self._key_pem
        resp = self._post(
            "/hello",
            {
                "station": self.cfg.station.name,
                "key_fingerprint": fp,
                "public_key": pem,
                "software": f"packcam {station.__version__}",
            },
        )
        self._witness_size = int((resp.get("witness") or {}).get("tree_size") or 0)
        have = resp.get("have") or {}
        self._rewind(have)
        high = int(have.get("clips", 0))
        if high >= self.clips.next_clip_id():
            log.warning(
                "central sync: the server holds clip ids up to %d, this index is below"
                " (restored from a backup, or the first start of a replacement Pi):"
                " new clips are numbered above it",
                high,
            )
            self.clips.raise_id_floor(high)
        self._said_fp = fp
        self._hello_done = True

    def _rewind(self, have: dict[str, Any]) -> bool:
        """Move back each cursor past the server's high-water mark in ``have`` (its database
        was restored from a backup): what it lost is sent again. True if one moved."""
        moved = False
        for name, field in (
            (CLIPS_CURSOR, "clips"),
            (ARCHIVED_CURSOR, "archived"),
            (CHECKPOINTS_CURSOR, "checkpoints"),
        ):
            mine, theirs = self.cursors.cursor(name), int(have.get(field, 0))
            if theirs < mine:
                log.warning("central sync: the server has %s up to %d, we had sent up to %d;"
                            " sending again from there", field, theirs, mine)  # fmt: skip
                self.cursors.set_cursor(name, theirs)
                moved = True
        return moved

    def _clip_doc(self, clip_id: int) -> dict[str, Any] | None:
        """The clip as ``/clips`` takes it (its waybills included), None if it is gone."""
        rec = self.ledger.clip(clip_id)
        if rec is None:
            return None
        doc = rec.to_json()
        # a waybill linked after the clip was signed (a late camera read) is in no signed
        # manifest: the site must say so, as this station's pages and `packcam verify` do
        late = {
            w["waybill"]: w["linked_utc"]
            for w in self.clips.waybill_rows(clip_id)
            if w["linked_utc"] is not None
        }
        for w in doc["waybills"]:
            if w["waybill"] in late:
                w["linked_utc"] = late[w["waybill"]]
        doc["started_utc"] = _utc(rec.started_at)
        doc["ended_utc"] = _utc(rec.ended_at)
        doc["tz"] = rec.started_at.strftime("%z") or "+0000"
        return doc

    def _clip_docs(self, cursor: int, *, archived: bool) -> list[tuple[int, dict[str, Any]]]:
        rows = self.clips.sync_rows(cursor, self.c.batch, archived=archived)
        out = []
        for r in rows:
            doc = self._clip_doc(int(r["id"]))
            if doc is None:
                continue
            if r["archived_utc"]:
                doc["archived_utc"] = r["archived_utc"]
                doc["archive_key"] = r["archive_key"]
                doc["archive_meta"] = r["archive_meta"] or {}
                doc["archive_seq"] = r["archive_seq"]
            out.append((int(r["archive_seq" if archived else "id"]), doc))
        return out

    def _push_clips(self) -> int:
        return self._push_clip_docs(CLIPS_CURSOR, archived=False)

    def _push_archived(self) -> int:
        return self._push_clip_docs(ARCHIVED_CURSOR, archived=True)

    def _push_clip_docs(self, cursor: str, *, archived: bool) -> int:
        """Post the clips past ``cursor`` in batches (``_clip_docs``), moving the cursor after
        each acknowledged batch; the number posted."""
        total = 0
        field = "archived" if archived else "clips"
        while not self._halt.is_set():
            after = self.cursors.cursor(cursor)
            docs = self._clip_docs(after, archived=archived)
            if not docs:
                break
            if not self._post_clips([d for _, d in docs], after={field: after}):
                continue  # the server holds less than the cursor says: sent again from there
            self.cursors.set_cursor(cursor, docs[-1][0])
            total += len(docs)
        return total

    def _post_clips(self, docs: list[dict[str, Any]], after: dict[str, int] | None = None) -> bool:
        """Post ``docs``; with ``after`` (the cursor they follow), the server registers
        nothing when it holds less than that (its database was restored from a backup while
        this process synced on: no hello tells it): the cursors and the witnessed size go
        back (False)."""
        doc: dict[str, Any] = {"clips": docs, "conflicts": "report"}
        if after is not None:
            doc["after"] = after
        resp = self._post("/clips", doc)
        if self._sent_back("/clips", after, resp):
            return False
        refused = [int(i) for i in resp.get("conflicts") or []]
        if refused:
            self._renumber(refused, int((resp.get("have") or {}).get("clips") or 0))
        return True

    def _sent_back(self, path: str, after: dict[str, int] | None, resp: dict[str, Any]) -> bool:
        """Whether the server answered a batch that follows the cursors ``after`` with
        "behind" (it holds less: restored from a backup): then the cursors and the witnessed
        size go back to what it holds, and the batch is not acknowledged."""
        if not resp.get("behind"):
            return False
        if not self._rewind(resp.get("have") or {}):
            raise SyncError(f"{path}: the server says it is behind {after}, but has {resp}")
        # the witness was restored with it: checkpoints are proven from what it holds now
        self._witness_size = int((resp.get("witness") or {}).get("tree_size") or 0)
        return True

    def _push_late_waybills(self) -> int:
        """Send again, with all their waybills, the clips a waybill was linked to after they
        were signed (a late camera read); the number of clips sent.

        Only clips the clips cursor has passed: one not sent yet takes its waybills with it.
        The archive fields are left out (the server keeps what it has)."""
        total = 0
        while not self._halt.is_set():
            after = self.cursors.cursor(LATE_WAYBILLS_CURSOR)
            top, links = self.clips.waybills_linked_late(after, self.c.batch)
            if top == after:
                break
            sent_up_to = self.cursors.cursor(CLIPS_CURSOR)
            ids = sorted({c for _w, c in links if c <= sent_up_to})
            docs = [d for d in map(self._clip_doc, ids) if d is not None]
            if docs:
                self._post_clips(docs)
                log.info("central sync: waybills linked after signing sent for clips %s", ids)
            self.cursors.set_cursor(LATE_WAYBILLS_CURSOR, top)
            total += len(docs)
        return total

    def _renumber(self, refused: list[int], high: int) -> None:
        """The server holds these local ids with other SHA-256s: this index was restored from
        a backup and reused them. The clips were never registered, so they take new ids above
        the server's (the clips cursor reaches them again) and nothing there is overwritten."""
        if not refused or high < max(refused):
            raise SyncError(f"/clips: refused {refused} without the server's high-water mark")
        try:
            moved = self.clips.renumber_clips(refused, above=high)
        except StationError as exc:
            raise SyncError(f"/clips: clips {refused} are held with other SHA-256s: {exc}") from exc
        for old, new in moved.items():
            log.warning(
                "central sync: clip %d is held by the server with another SHA-256"
                " (this index was restored from a backup?): it is clip %d now",
                old,
                new,
            )
        if len(moved) != len(set(refused)):
            raise SyncError(f"/clips: refused {refused}, of which only {sorted(moved)} are here")

    def _push_checkpoints(self) -> int:
        total = 0
        while not self._halt.is_set():
            after = {"checkpoints": self.cursors.cursor(CHECKPOINTS_CURSOR)}
            rows = self.proof.checkpoints(after_id=after["checkpoints"], limit=self.c.batch)
            if not rows:
                break
            items = []
            old = self._witness_size
            leaves = self._leaves(max(r.tree_size for r in rows))
            for r in rows:
                size = r.tree_size
                # the witness accepts a checkpoint only with a consistency proof from the last
                # one it accepted (RFC 9162 2.1.4)
                proof = merkle.consistency_proof(old, leaves[:size]) if 0 < old < size else []
                items.append(
                    {
                        "local_id": r.id,
                        "tree_size": size,
                        "root_hash": r.root_hash,
                        "body_b64": base64.b64encode(r.body).decode("ascii"),
                        "signature_b64": base64.b64encode(r.signature).decode("ascii"),
                        "created_utc": r.created_utc,
                        "consistency": {"old_size": old, "proof": [h.hex() for h in proof]},
                    }
                )
                old = max(old, size)
            resp = self._post("/checkpoints", {"checkpoints": items, "after": after})
            if self._sent_back("/checkpoints", after, resp):
                continue  # sent again from what the server holds, proven from its witness
            self._witness_size = int((resp.get("witness") or {}).get("tree_size") or old)
            self.cursors.set_cursor(CHECKPOINTS_CURSOR, rows[-1].id)
            total += len(rows)
        return total

    def _push_rotations(self) -> int:
        """Each key rotation (`packcam keys rotate`) once: the old log's final checkpoint signed
        by both keys, with the consistency proof the witness asks for."""
        rows = self.proof.rotations(after_id=self.cursors.cursor(ROTATIONS_CURSOR))
        for r in rows:
            body = r.body
            size = int(json.loads(body)["tree_size"])
            leaves = [
                merkle.leaf_hash(e.manifest)
                for e in self.proof.archived_entries(r.old_key, below=size)
            ]
            doc: dict[str, Any] = {
                "body_b64": base64.b64encode(body).decode("ascii"),
                "signature_old_b64": base64.b64encode(r.signature_old).decode("ascii"),
                "signature_new_b64": base64.b64encode(r.signature_new).decode("ascii"),
                "new_public_key": r.new_public_pem.decode("ascii"),
                "consistency": {"old_size": size, "proof": []},
            }
            resp = self._post("/rotation", doc)
            if resp.get("no_key"):
                # A new enrolment (`replace-station`): no key of ours to retire there, so
                # nothing to witness; the hello that follows enrols the current key.
                log.warning(
                    "central sync: key rotation %s -> %s not witnessed: the central enrolment"
                    " is new and has no key yet",
                    r.old_key,
                    r.new_key,
                )
                self.cursors.set_cursor(ROTATIONS_CURSOR, r.id)
                continue
            if not resp.get("accepted"):
                old = int(resp.get("need_old_size") or 0)
                proof = merkle.consistency_proof(old, leaves) if 0 < old < size else []
                doc["consistency"] = {"old_size": old, "proof": [h.hex() for h in proof]}
                resp = self._post("/rotation", doc)
                if not resp.get("accepted"):
                    raise SyncError(f"/rotation: not accepted: {resp}")
            log.info("central sync: key rotation %s -> %s witnessed", r.old_key, r.new_key)
            self.cursors.set_cursor(ROTATIONS_CURSOR, r.id)
        return len(rows)

    def _leaves(self, size: int) -> list[bytes]:
        return [merkle.leaf_hash(m) for m in self.proof.manifests(0, size)]

    def health(self) -> dict[str, Any]:
        """What the central dashboard shows of this station."""
        doc: dict[str, Any] = {}
        live = self.data_dir / "live" / f"{safe_component(self.cfg.station.name, 32)}.json"
        try:
            loaded = json.loads(live.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                doc.update({k: loaded.get(k) for k in (
                    "state", "order_id", "elapsed_s", "fps", "dropped", "last_error",
                    "updated_utc", "disk_free_bytes", "clock_synced",
                )})  # fmt: skip
        except (OSError, ValueError):
            pass
        if doc.get("disk_free_bytes") is None:
            with contextlib.suppress(OSError):
                doc["disk_free_bytes"] = shutil.disk_usage(self.data_dir).free
        if doc.get("clock_synced") is None:
            doc["clock_synced"] = clock_synced()
        doc["last_clip_utc"] = self.clips.last_started_utc()
        doc["archive_backlog"] = self.ledger.archive_backlog()
        doc["archive_backlog_bytes"] = self.ledger.archive_backlog_bytes()
        # this station's own wall clock: the central site compares it with its receive time
        doc["sent_utc"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        doc["software"] = f"packcam {station.__version__}"
        return doc

    def _push_health(self, failed: dict[str, str]) -> None:
        """The health report, with the steps of this round that failed and why (empty: the
        round went through), e.g. ``{"checkpoints": "... log-fork ..."}``."""
        self._post("/health", {**self.health(), "sync_failed": dict(failed)})


def _utc(dt: Any) -> str:
    return str(dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
