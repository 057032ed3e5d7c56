"""The stations' HTTP API on the central site: hello, clips, checkpoints, order clips, health."""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any

from flask import Blueprint, Flask, abort, current_app, g, jsonify, request
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.wrappers import Response

from central import witness
from central.db import NO_KEY, CentralDB
from central.errors import CentralError, Unavailable
from central.witness import ACCEPT, witness_key
from station.fleet.central_sync import KEY_HEADER
from station.proof.keys import load_public_pem, verify_signature
from web.handles import SiteHandles, get_db, site_config
from web.scope import peer_stations

log = logging.getLogger(__name__)

bp = Blueprint("fleet", __name__, url_prefix="/api/fleet/v1")

MAX_BODY = 16 * 1024 * 1024  # a batch of 200 clips with their events is well below this
MAX_ITEMS = 5000


def key_refusal(
    name: str, *, enrolled: bool, enrolled_key: str | None, said: str | None, writes: bool
) -> tuple[int, str] | None:
    """Pure: why a request of station ``name`` (its token) must be refused, as (status,
    message), None to take it. ``said``: the key fingerprint the request names (KEY_HEADER;
    "" for a station without a key, None for a station older than this, which names none);
    ``writes``: clips or checkpoints, which need the station's hello first.

    The token names the station; the key is the machine. A second Pi set up with the same
    token (its own data dir, so its own key) has its hello refused but posted its health onto
    the first station's row. So a request naming another key than the enrolled one is
    refused (403), whatever it is; clips and checkpoints need a hello that enrolled the key
    they name (409). Health before any key is enrolled is taken: there is no other machine to
    mistake it for, and it says why the hello fails (a new enrolment refused a key)."""
    if enrolled_key is not None and said is not None and said != enrolled_key:
        return 403, (
            f"station {name!r} is enrolled with key {enrolled_key}; this request comes from "
            f"{'a machine with key ' + said if said else 'a machine without a key'}: another "
            "machine with this station's token? Its hello is refused; give it a token of its "
            "own (`packcam central add-station`), or `replace-station` if it replaces the "
            "station"
        )
    if not writes:
        return None
    if not enrolled or (enrolled_key is None and said):
        what = f"enrolled key {said} (its hello was refused, or not sent)" if said else "said hello"
        return (
            409,
            f"station {name!r} has not {what}: POST /hello first, it enrols the station's key",
        )
    return None


class _Handles(threading.local):
    db: CentralDB | None = None


def central_db() -> CentralDB:
    """This server thread's connection to the central index (kept between requests)."""
    handles: _Handles = current_app.extensions["packcam_central"]["handles"]
    if handles.db is None:
        site: SiteHandles = current_app.extensions["packcam"]["handles"]
        handles.db = site.keep(CentralDB(current_app.config["CENTRAL_DSN"]))
    return handles.db


def init_app(app: Flask, dsn: str) -> None:
    """Central mode: remember the DSN, make the per-thread handles, migrate once."""
    app.config["CENTRAL_DSN"] = dsn
    # "db": how other central blueprints (the witness) reach the index without importing this.
    app.extensions["packcam_central"] = {"handles": _Handles(), "db": central_db}
    app.register_error_handler(Unavailable, _site_unavailable)

    app.register_blueprint(witness.bp)  # public: the cosigned checkpoints, for anyone
    db = CentralDB(dsn)
    try:
        db.migrate()
    except Unavailable as exc:  # the site still starts; requests answer 503 until PG is up
        log.error("central index not reachable at start-up (%s); retrying per request", exc)
    finally:
        db.close()


def _site_unavailable(exc: Unavailable) -> Any:
    """PostgreSQL down: the site's pages and API answer 503, not 500."""

    log.warning("central index unavailable: %s", exc)
    return current_app.handle_user_exception(ServiceUnavailable())


def _error(status: int, message: str) -> Response:
    resp = jsonify(error=message)
    resp.status_code = status
    return resp


@bp.before_request
def _authenticate() -> Response | None:
    request.max_content_length = MAX_BODY
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    station = central_db().station_for_token(token)
    if station is None:
        log.warning("fleet API: bad station token from %s", request.remote_addr)
        return _error(401, "unknown station token")
    g.station = station
    return None


def _check_key(*, writes: bool) -> None:
    """Refuse a request from a machine that is not the one the station enrolled (key_refusal)."""
    st = g.station
    said = request.headers.get(KEY_HEADER)
    refused = key_refusal(st["name"], enrolled=bool(st["enrolled"]),
                          enrolled_key=st["key_fingerprint"], said=said, writes=writes)  # fmt: skip
    if refused is not None:
        status, message = refused
        log.warning("fleet API: %s %s refused: %s", request.method, request.path, message)
        abort(_error(status, message))


@bp.errorhandler(Unavailable)
def _unavailable(exc: Unavailable) -> Response:
    log.warning("fleet API: %s", exc)
    resp = _error(503, "central index unavailable, retry later")
    resp.headers["Retry-After"] = "5"
    return resp


@bp.errorhandler(CentralError)
def _refused(exc: CentralError) -> Response:
    log.warning("fleet API: station %r: %s", g.get("station", {}).get("name"), exc)
    return _error(409, str(exc))


def _items(name: str) -> list[dict[str, Any]]:
    doc = request.get_json(silent=True)
    if not isinstance(doc, dict) or not isinstance(doc.get(name), list):
        raise CentralError(f"expected a JSON object with a list {name!r}")
    items: list[dict[str, Any]] = doc[name]
    if len(items) > MAX_ITEMS or not all(isinstance(i, dict) for i in items):
        raise CentralError(f"{name}: at most {MAX_ITEMS} objects")
    return items


@bp.post("/hello")
def hello() -> Response:
    doc = request.get_json(silent=True) or {}
    st = g.station
    if doc.get("station") != st["name"]:
        raise CentralError(f"this token belongs to station {st['name']!r}")
    high = central_db().hello(
        st["id"],
        key_fingerprint=str(doc.get("key_fingerprint") or ""),
        public_key=str(doc.get("public_key") or ""),
        software=str(doc.get("software") or ""),
    )
    return jsonify(station=st["name"], have=high, witness=central_db().witness_latest(st["id"]))


def _behind(db: CentralDB, what: str, after: Any) -> Response | None:
    """The answer to a batch that follows the station's cursors ``after`` ({"clips": id,
    ...}) when this index holds less than that (restored from an older backup while the
    station synced on): nothing is registered, and the high-water marks and the witness's
    newest checkpoint send the station back to what was lost. None: go on."""
    if not isinstance(after, dict):
        return None
    high = db.held(g.station["id"])
    if not any(isinstance(v, int) and high.get(k, v) < v for k, v in after.items()):
        return None
    log.warning("fleet API: station %r sent %s after %s, this index holds %s"
                " (restored from a backup?): sent back", g.station["name"], what, after,
                high)  # fmt: skip
    return jsonify(registered=0, conflicts=[], have=high, behind=True,
                   witness=db.witness_latest(g.station["id"]))  # fmt: skip


@bp.post("/clips")
def clips() -> Response:
    _check_key(writes=True)
    items = _items("clips")
    # "conflicts": "report": a clip whose local id is held with another SHA-256 is left out
    # and named in the answer, with the high-water marks (a station restored from a backup)
    doc = request.get_json(silent=True) or {}
    report = doc.get("conflicts") == "report"
    conflicts: list[int] | None = [] if report else None
    db = central_db()
    if report and (back := _behind(db, "clips", doc.get("after"))) is not None:
        return back
    try:
        n = db.register_clips(g.station["id"], g.station["name"], items, conflicts=conflicts)
    except (KeyError, TypeError, ValueError) as exc:
        raise CentralError(f"malformed clip: {exc}") from exc
    if conflicts is None:
        return jsonify(registered=n)
    if conflicts:
        log.warning("fleet API: station %r: clips %s are held with other SHA-256s (restored?)",
                    g.station["name"], conflicts)  # fmt: skip
    return jsonify(registered=n, conflicts=conflicts, have=db.high_water(g.station["id"]))


@bp.post("/checkpoints")
def checkpoints() -> Response:
    _check_key(writes=True)
    db = central_db()
    # "after": the checkpoint cursor these follow, as for /clips (a station that sends none,
    # older than this, has its checkpoints judged as they come)
    doc = request.get_json(silent=True) or {}
    if (back := _behind(db, "checkpoints", doc.get("after"))) is not None:
        return back
    pem = db.public_key(g.station["id"])
    public = load_public_pem(pem.encode()) if pem else None
    rows: list[dict[str, Any]] = []
    for cp in _items("checkpoints"):
        try:
            body = base64.b64decode(cp["body_b64"], validate=True)
            sig = base64.b64decode(cp["signature_b64"], validate=True)
            row: dict[str, Any] = {
                "local_id": int(cp["local_id"]),
                "tree_size": int(cp["tree_size"]),
                "root_hash": str(cp["root_hash"]),
                "body": body,
                "signature": sig,
                "created_utc": str(cp["created_utc"]),
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise CentralError(f"malformed checkpoint: {exc}") from exc
        if public is None or not verify_signature(public, body, sig):
            for r in db.retired_keys(g.station["id"]):
                if verify_signature(load_public_pem(r["old_public_key"].encode()), body, sig):
                    detail = (f"checkpoint {row['local_id']} ({row['tree_size']} entries) is "
                              f"signed by the retired key {r['old_key']}, whose log was closed "
                              f"at {r['tree_size']}")  # fmt: skip
                    db.witness_alarm(g.station["id"], "log-after-rotation", detail, body,
                                     row["tree_size"], row["root_hash"])  # fmt: skip
                    raise CentralError(f"log-after-rotation: {detail}")
            raise CentralError(f"checkpoint {row['local_id']} is not signed by the station key")
        consistency = cp.get("consistency")
        cons: dict[str, Any] = consistency if isinstance(consistency, dict) else {}
        try:
            old_size = int(cons["old_size"]) if "old_size" in cons else None
            proof = [bytes.fromhex(h) for h in cons.get("proof", [])]
        except (TypeError, ValueError) as exc:
            raise CentralError(f"malformed consistency proof: {exc}") from exc
        # the witness: only append-only growth of the log is accepted (and cosigned)
        j = db.witness_checkpoint(
            g.station["id"],
            g.station["name"],
            row,
            old_size,
            proof,
            witness_key(site_config()),
        )
        if j.verdict != ACCEPT:
            db.register_checkpoints(g.station["id"], rows)  # the ones before it are fine
            raise CentralError(f"{j.verdict}: checkpoint {row['local_id']}: {j.reason}")
        rows.append(row)
    return jsonify(
        registered=db.register_checkpoints(g.station["id"], rows),
        witness=db.witness_latest(g.station["id"]),
    )


@bp.post("/rotation")
def rotation() -> Response:
    """A station retired its key (`packcam keys rotate`): the old log's final checkpoint,
    signed by the enrolled key and the successor, with a consistency proof from the last
    checkpoint witnessed for the old key. Accepted: cosigned, the station moves to the new key.
    Without the right proof: ``need_old_size`` says which one to send."""
    doc = request.get_json(silent=True) or {}
    try:
        body = base64.b64decode(doc["body_b64"], validate=True)
        sig_old = base64.b64decode(doc["signature_old_b64"], validate=True)
        sig_new = base64.b64decode(doc["signature_new_b64"], validate=True)
        new_pem = str(doc["new_public_key"])
        consistency = doc.get("consistency")
        cons: dict[str, Any] = consistency if isinstance(consistency, dict) else {}
        old_size = int(cons["old_size"]) if "old_size" in cons else None
        proof = [bytes.fromhex(h) for h in cons.get("proof", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise CentralError(f"malformed rotation: {exc}") from exc
    db = central_db()
    j = db.witness_rotation(
        g.station["id"], g.station["name"], body, sig_old, sig_new, new_pem, old_size, proof,
        witness_key(site_config()),
    )  # fmt: skip
    if j.verdict == ACCEPT:
        return jsonify(accepted=True, reason=j.reason)
    if j.verdict == "no-proof":
        return jsonify(accepted=False, need_old_size=j.need)
    if j.verdict == NO_KEY:  # a new enrolment (replace-station): the station's hello enrols
        return jsonify(accepted=False, no_key=True, reason=j.reason)
    raise CentralError(f"{j.verdict}: {j.reason}")


MAX_ORDER_ID = 512


@bp.get("/order-clips")
def order_clips() -> Response:
    """The clips of ``?order=`` at every station, earliest first (the stations' duplicate
    check before it records a repack, station/fleet/duplicates.py). Other stations' clips
    (their buyers' orders): a machine that is not the one the station enrolled is refused as
    for health (key_refusal, a read); a request naming no key, from a station older than
    this, is taken as on the other endpoints."""
    _check_key(writes=False)
    order = request.args.get("order", "")
    if not order or len(order) > MAX_ORDER_ID or not order.isprintable():
        return _error(400, "order: 1 to 512 printable characters")
    peers = peer_stations(g.station["name"], get_db().groups())
    return jsonify(order=order, clips=central_db().order_clips(order, stations=peers))


@bp.post("/health")
def health() -> Response:
    _check_key(writes=False)
    doc = request.get_json(silent=True)
    if not isinstance(doc, dict):
        raise CentralError("expected a JSON object")
    central_db().set_health(g.station["id"], doc)
    return jsonify(ok=True)
