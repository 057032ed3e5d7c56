"""JSON API for scripts: order lookup, clip search, station status, and its OpenAPI document."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import replace
from datetime import datetime
from typing import Any

from flask import Blueprint, g, jsonify, request, url_for
from werkzeug.wrappers import Response

from station.store.ledger import ClipRecord
from web.auth import basic_auth_user, require
from web.dashboard import summary
from web.handles import get_db, get_index, site_config
from web.index import SearchTimeout
from web.serving import PAGE_SIZE, order_url, search_args
from web.stations import StationStatus

bp = Blueprint("api", __name__, url_prefix="/api")
bp.before_request(basic_auth_user)

API_VERSION = "1.0.0"


def clip_json(clip: ClipRecord, *, full: bool = True) -> dict[str, Any]:
    d = clip.to_json()
    d.update(
        video_url=url_for("clips.video", clip_id=clip.id),
        download_url=url_for("clips.download", clip_id=clip.id),
        thumbnail_url=url_for("clips.thumb", clip_id=clip.id),
        order_url=order_url(clip.order_id),
    )
    if not full:
        d.pop("events", None)
    return d


def _error(status: int, message: str) -> Response:
    resp = jsonify(error=message)
    resp.status_code = status
    return resp


@bp.get("/orders/<path:order_id>")
@require("viewer")
def order(order_id: str) -> Response:
    index = get_index()
    clips = index.order(order_id)
    if not clips:
        return _error(404, "no such order")
    info = index.order_info(order_id) or {}
    get_db().log_access(
        order_id, "view", user=g.user.name, remote_addr=request.remote_addr, detail="api"
    )
    waybills = sorted({w.waybill for c in clips for w in c.waybills})
    return jsonify(
        order_id=order_id,
        first_seen_utc=info.get("first_seen_utc"),
        last_clip_utc=info.get("last_clip_utc"),
        waybills=waybills,
        clips=[clip_json(c) for c in clips],
    )


@bp.get("/clips")
@require("viewer")
def clips() -> Response:
    args = search_args()
    if args["bad_dates"]:
        return _error(400, "from/to must be dates like 2026-11-30")
    try:
        limit = max(1, min(500, int(request.args.get("limit", PAGE_SIZE))))
        offset = max(0, min(10_000_000, int(request.args.get("offset", 0))))
    except ValueError:
        return _error(400, "limit and offset must be integers")
    try:
        found = get_index().search(replace(args["query"], limit=limit + 1, offset=offset))
    except SearchTimeout:
        return _error(503, "the search took too long; add characters or a date range")
    return jsonify(
        clips=[clip_json(c, full=False) for c in found[:limit]],
        limit=limit,
        offset=offset,
        more=len(found) > limit,
    )


@bp.get("/stations")
@require("viewer")
def stations() -> Response:

    s = summary()
    return jsonify(
        stations=[st.to_json() for st in s["stations"]],
        clips_today=s["per_station"],
        clips_today_per_hour=s["per_hour"],
        disk_free_bytes=s["disk_free"],
        bytes_per_day=round(s["bytes_per_day"]),
        days_left=None if s["days_left"] is None else round(s["days_left"], 1),
        generated_utc=s["generated_utc"],
    )


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(site_config().station.name))


_JSON_TYPES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    datetime: {"type": "string", "format": "date-time"},
    type(None): {"type": "null"},
}


def record_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of a record type as its ``to_json``/``asdict`` sends it: a dataclass
    is an object of its fields, a tuple or list an array, ``X | None`` either."""
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        props = {f.name: record_schema(hints[f.name]) for f in dataclasses.fields(tp)}
        return {"type": "object", "properties": props}
    if tp in _JSON_TYPES:
        return dict(_JSON_TYPES[tp])
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple):
        return array_of(record_schema(args[0]))
    if origin is dict:
        return {"type": "object"}
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        node = record_schema(inner)
        return {**node, "type": [node["type"], "null"]}
    raise TypeError(f"no JSON Schema for {tp!r}")  # a new field type: say how it is sent


def ref(name: str) -> dict[str, Any]:
    """A reference to one of the document's component schemas."""
    return {"$ref": f"#/components/schemas/{name}"}


def array_of(items: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **more}


def per_station(value: dict[str, Any], description: str) -> dict[str, Any]:
    """An object keyed by station name."""
    return {"type": "object", "additionalProperties": value, "description": description}


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(title_suffix: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API (kept beside the code it describes)."""
    err = {"$ref": "#/components/responses/Error"}
    date_param = {"type": "string", "format": "date", "example": "2026-11-30"}
    clip_props: dict[str, Any] = {
        **record_schema(ClipRecord)["properties"],
        # what ClipRecord.to_json and clip_json add to the record's fields
        "waybill": {"type": ["string", "null"]},
        "path": {"type": "string", "description": "relative to the data directory"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "video_url": {"type": "string"},
        "download_url": {"type": "string"},
        "thumbnail_url": {"type": "string"},
        "order_url": {"type": "string"},
        # the index's own times (web/index.py)
        "started_utc": {"type": "string"},
        "ended_utc": {"type": "string"},
        "tz": {"type": "string", "example": "+0800"},
        "deleted_utc": {
            "type": "string",
            "description": "when the station's retention deleted the clip's file (only then)",
        },
        "late_waybills": array_of(
            {"type": "string"},
            description="waybills linked in the index after the clip was signed (a camera read "
            "decoded late): not in its signed manifest, so not proven by it (only then)",
        ),
        # the packing floor (docs/integration.md): ClipRecord reads these from ``extra``
        "kind": {"type": "string", "enum": ["order", "return"]},
        "packer": {"type": "string"},
        "repack_of": array_of(
            {"type": "integer"}, description="ids of this order's earlier clips at this station"
        ),
        "repack_of_fleet": array_of(
            {"type": "object"},
            description='this order\'s earlier clips at other stations: {"station", '
            '"clip_id" (its id at that station), "started"}',
        ),
        # only on the central site (central/db.py)
        "local_id": {"type": "integer", "description": "the clip's id at its station"},
        "station_id": {"type": "integer", "description": "the station's enrolment"},
        "archived_utc": {"type": ["string", "null"]},
        "archive_key": {"type": ["string", "null"]},
        "archive_meta": {"type": ["object", "null"]},
    }
    del clip_props["extra"]  # spread into the clip's fields above, never sent as one
    station_props = {
        **record_schema(StationStatus)["properties"],
        "shown_state": {"type": "string", "description": "state, or silent"},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "packcam" + (f" ({title_suffix})" if title_suffix else ""),
            "version": API_VERSION,
            "description": "Find packing clips by order or waybill. Authenticate with the "
            "site's session cookie or HTTP Basic (over HTTPS).",
        },
        "security": [{"basic": []}, {"cookie": []}],
        "paths": {
            "/api/orders/{order_id}": {
                "get": {
                    "summary": "An order with all its clips, waybills, times and hashes",
                    "parameters": [
                        {
                            "name": "order_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": "percent-encode reserved characters",
                        }
                    ],
                    "responses": {
                        "200": json_answer("the order", ref("Order")),
                        "401": err,
                        "404": err,
                    },
                }
            },
            "/api/clips": {
                "get": {
                    "summary": "Search clips by any part of an order ID or waybill (any case)",
                    "parameters": [
                        {"name": "q", "in": "query", "schema": {"type": "string"}},
                        {"name": "from", "in": "query", "schema": date_param},
                        {"name": "to", "in": "query", "schema": date_param},
                        {"name": "station", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                        },
                        {"name": "offset", "in": "query", "schema": {"type": "integer"}},
                    ],
                    "responses": {
                        "200": json_answer(
                            "matching clips, newest first",
                            {
                                "type": "object",
                                "properties": {
                                    "clips": array_of(ref("Clip")),
                                    "limit": {"type": "integer"},
                                    "offset": {"type": "integer"},
                                    "more": {"type": "boolean"},
                                },
                            },
                        ),
                        "400": err,
                        "401": err,
                        "503": err,
                    },
                }
            },
            "/api/stations": {
                "get": {
                    "summary": "Station status, clips today, disk free and days left",
                    "responses": {
                        "200": json_answer("status", ref("Stations")),
                        "401": err,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "packcam_session"},
            },
            "schemas": {
                "Clip": {"type": "object", "properties": clip_props},
                "Order": {
                    "type": "object",
                    "properties": {
                        "order_id": {"type": "string"},
                        "first_seen_utc": {"type": ["string", "null"]},
                        "last_clip_utc": {"type": ["string", "null"]},
                        "waybills": array_of({"type": "string"}),
                        "clips": array_of(ref("Clip")),
                    },
                },
                "Stations": {
                    "type": "object",
                    "properties": {
                        "stations": array_of(ref("Station")),
                        "clips_today": per_station(
                            {"type": "integer"}, "station -> clips since local midnight"
                        ),
                        "clips_today_per_hour": per_station(
                            array_of({"type": "integer"}), "station -> 24 counts, by local hour"
                        ),
                        "disk_free_bytes": {"type": "integer"},
                        "bytes_per_day": {"type": "integer"},
                        "days_left": {"type": ["number", "null"]},
                        "generated_utc": {"type": "string", "format": "date-time"},
                    },
                },
                "Station": {"type": "object", "properties": station_props},
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            },
            "responses": {
                "Error": json_answer("error", ref("Error")),
            },
        },
    }
