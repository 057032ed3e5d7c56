"""The central site as a witness of each station's log: append-only growth only, cosign, alarm."""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from station.proof import merkle
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey
from station.proof.standalone_verify import SIZES_STATEMENT_TYPE, WITNESS_SIZES_MAX
from web.handles import site_config

log = logging.getLogger(__name__)

COSIGNATURE_TYPE = "packcam-witness-cosignature"
ACCEPT, ROLLBACK, FORK, NO_PROOF = "accept", "log-rollback", "log-fork", "no-proof"

# GET /witness/<station> lists this many newest cosigned checkpoints (the page stays small);
# older ones only at the sizes asked for (?tree_size=N: the sizes a bundle cites).
NEWEST = 1000
_MAX_SIZE = (1 << 63) - 1  # tree_size is a PostgreSQL bigint

bp = Blueprint("witness", __name__)


def parse_tree_sizes(values: list[str]) -> list[int]:
    """The tree sizes of ``?tree_size=`` (repeated, or comma lists), in the order given, each
    once; ValueError with what is wrong for anything but up to WITNESS_SIZES_MAX integers."""
    sizes: list[int] = []
    for value in values:
        for part in value.split(","):
            text = part.strip()
            if not (text.isascii() and text.isdigit()) or int(text) > _MAX_SIZE:
                raise ValueError(f"tree_size must be whole numbers of log entries, not {part!r}")
            if int(text) not in sizes:
                sizes.append(int(text))
    if len(sizes) > WITNESS_SIZES_MAX:
        raise ValueError(f"at most {WITNESS_SIZES_MAX} tree_size values at once, not {len(sizes)}")
    return sizes


@dataclass(frozen=True)
class Judgement:
    verdict: str  # accept | log-rollback | log-fork | no-proof | rotation-unsigned
    reason: str
    need: int | None = None  # no-proof: the size the consistency proof must start from


def judge(
    last: tuple[int, str] | None,
    new_size: int,
    new_root: str,
    old_size: int | None,
    proof: list[bytes],
) -> Judgement:
    """May a station's log with ``new_size`` leaves and root ``new_root`` follow the last
    checkpoint the witness accepted (``last``: size, root hex)? Pure; RFC 9162 2.1.4.

    The first checkpoint of a station is accepted on first use. A smaller tree is a rollback;
    the same size with another root, or a consistency proof that does not verify, a fork.
    """
    if last is None:
        return Judgement(ACCEPT, "first checkpoint of this station (trust on first use)")
    size, root = last
    if new_size < size:
        return Judgement(ROLLBACK, f"tree of {new_size} leaves after one of {size}: rolled back")
    if new_size == size:
        if new_root == root:
            return Judgement(ACCEPT, "same tree as the last one witnessed")
        return Judgement(FORK, f"another root for the same {size} leaves: a forked log")
    if old_size != size:
        return Judgement(
            NO_PROOF,
            f"needs a consistency proof from {size} leaves (got one from {old_size})",
            need=size,
        )
    if merkle.verify_consistency(
        size, new_size, proof, bytes.fromhex(root), bytes.fromhex(new_root)
    ):
        return Judgement(ACCEPT, f"extends the witnessed tree of {size} leaves")
    return Judgement(FORK, f"does not extend the witnessed tree of {size} leaves: a forked log")


def witness_key(cfg: Any) -> StationKey:
    """The witness's Ed25519 key: ``<data_dir>/central-witness/witness-key.pem`` (0600)."""
    path = Path(cfg.station.data_dir) / "central-witness" / "witness-key.pem"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return StationKey.load_or_create(path)[0]


def cosign(key: StationKey, station: str, body: bytes, size: int, root: str) -> tuple[bytes, bytes]:
    """The witness's statement "I saw this checkpoint of this station, consistent with all I
    saw before"; returns (canonical bytes, Ed25519 signature)."""
    doc = {
        "type": COSIGNATURE_TYPE,
        "version": 1,
        "station": station,
        "checkpoint_sha256": hashlib.sha256(body).hexdigest(),
        "tree_size": size,
        "root_sha256": root,
        "witness_key": key.fingerprint,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    raw = canonical_json(doc)
    return raw, key.sign(raw)


def sizes_statement(
    key: StationKey, station: str, sizes: list[int], bodies: list[bytes]
) -> tuple[bytes, bytes]:
    """The witness's word "these (``bodies``) are every checkpoint of this station I cosigned
    at these tree sizes": what lets a verifier say a size was never cosigned in a bundle's
    log, which a record's plain lists cannot (anyone can edit a saved file). Returns
    (canonical bytes, Ed25519 signature)."""
    doc = {
        "type": SIZES_STATEMENT_TYPE,
        "version": 1,
        "station": station,
        "tree_sizes": sorted(set(sizes)),
        "checkpoints": sorted(hashlib.sha256(b).hexdigest() for b in bodies),
        "witness_key": key.fingerprint,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    raw = canonical_json(doc)
    return raw, key.sign(raw)


def _b64(b: bytes) -> str:
    return base64.b64encode(bytes(b)).decode("ascii")


@bp.get("/witness")
def witness_index() -> Response:
    """Who the witness is (its public key, and ``witness_key``: the fingerprint a verifier
    pins with ``--witness-key``) and the newest cosigned checkpoint of each station."""
    key = witness_key(site_config())
    return jsonify(
        witness_key=key.fingerprint,
        public_key_pem=key.public_pem().decode("ascii"),
        stations=current_app.extensions["packcam_central"]["db"]().witness_latest_all(),
    )


@bp.get("/witness/<path:station>")
def witness_station(station: str) -> Response | tuple[Response, int]:
    """A station's cosigned checkpoints (the newest, and any older ones at the sizes asked for
    with ``?tree_size=N``) and its fork/rollback alarms: public, so anyone can hold the seller
    to them (`packcam verify --witness FILE --witness-key FP`)."""
    try:
        sizes = parse_tree_sizes(request.args.getlist("tree_size"))
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    db = current_app.extensions["packcam_central"]["db"]()
    newest = int(current_app.config.get("WITNESS_NEWEST", NEWEST))
    return jsonify(station_record(db, witness_key(site_config()), station, sizes, newest))


def station_record(
    db: Any, key: StationKey, station: str, tree_sizes: list[int] | None = None,
    newest: int = NEWEST,
) -> dict[str, Any]:  # fmt: skip
    """What ``GET /witness/<station>`` publishes: the witness key, the station's ``newest``
    cosigned checkpoints and those at ``tree_sizes`` however old (newest first; a size asked
    for that none has is in ``never_witnessed_sizes``: the witness cosigned no checkpoint of
    that size, which a record that merely leaves it out would not say; with sizes, the
    witness's signed word on them: sizes_statement), its alarms and its witnessed key
    rotations (``db``: a central.db.CentralDB, which imports this module)."""
    sizes = tree_sizes or []
    rows = db.witnessed(station, newest, sizes)
    have = {int(r["tree_size"]) for r in rows}
    signed: dict[str, str] = {}
    if sizes:  # the lists below are the site's text; this is the witness's signed word
        raw, sig = sizes_statement(
            key, station, sizes, [bytes(r["body"]) for r in rows if int(r["tree_size"]) in sizes]
        )
        signed = {"sizes_statement_b64": _b64(raw), "sizes_signature_b64": _b64(sig)}
    return dict(
        station=station,
        witness_key=key.fingerprint,
        public_key_pem=key.public_pem().decode("ascii"),
        newest=newest,
        requested_sizes=sizes,
        never_witnessed_sizes=[s for s in sizes if s not in have],
        checkpoints=[
            {
                "tree_size": r["tree_size"],
                "root_sha256": r["root_hash"],
                "body_b64": _b64(r["body"]),
                "signature_b64": _b64(r["signature"]),
                "cosignature_b64": _b64(r["cosignature"]),
                "cosigned_b64": _b64(r["cosigned"]),
                "witnessed_utc": r["witnessed_utc"].isoformat(),
            }
            for r in rows
        ],
        alarms=[
            {"kind": a["kind"], "detail": a["detail"], "at_utc": a["at_utc"].isoformat()}
            for a in db.witness_alarms(station)
        ],
        rotations=[
            {
                "old_key": r["old_key"],
                "new_key": r["new_key"],
                "tree_size": r["tree_size"],
                "root_sha256": r["root_hash"],
                "body_b64": _b64(r["body"]),
                "signature_old_b64": _b64(r["signature_old"]),
                "signature_new_b64": _b64(r["signature_new"]),
                "old_public_key_pem": r["old_public_key"],
                "witnessed_utc": r["witnessed_utc"].isoformat(),
            }
            for r in db.witness_rotations(station)
        ],
        **signed,
    )
