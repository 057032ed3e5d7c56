"""The start statement: what a station fixes at a clip's first frame for a TSA to timestamp."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from station.proof.canonical import canonical_json
from station.proof.standalone_verify import START_TYPE

START_VERSION = 1


def statement(
    *,
    station: str,
    station_key: str,
    order_id: str,
    clip: str,
    started_at: datetime,
    nonce: str | None = None,
) -> dict[str, Any]:
    """The start statement of the clip named ``clip`` (its file name as started, without
    ``.mp4``) whose first frame is ``started_at`` (aware; the pre-roll's first frame, by the
    clock then). The signed manifest carries it (``start_statement``) and a TSA timestamps its
    canonical bytes (``digest``) at once: a start written later gets a later token. The nonce
    (random, 128 bits) keeps two statements apart and the statement from being guessed ahead
    of the clip. Its fields are the ones the verifiers hold to the manifest
    (``standalone_verify.start_statement_problem``)."""
    if started_at.tzinfo is None:
        raise ValueError("a start statement needs a time with its UTC offset")
    return {
        "type": START_TYPE,
        "version": START_VERSION,
        "station": station,
        "station_key": station_key,
        "order_id": order_id,
        "clip": clip,
        "started_at": started_at.isoformat(timespec="milliseconds"),
        "nonce": nonce if nonce is not None else secrets.token_hex(16),
    }


def digest(st: dict[str, Any]) -> str:
    """SHA-256 (hex) of the statement's canonical JSON: the imprint its tokens carry."""
    return hashlib.sha256(canonical_json(st)).hexdigest()
